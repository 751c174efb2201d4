//! `make fuzz`: a mutational fuzzer over the load path of one export object, on stable Rust.
//!
//! A case is an object name and its stored bytes, run through `tapline::export_loader::load::load_object` with
//! a discarding warehouse ([`one_object_load`]); its peak heap is measured by the counting
//! allocator below, which every binary linking this crate uses. See `tests/README.md`.

pub mod case_files;
pub mod counting_allocator;
pub mod json_flatten_differential;
pub mod mutations;
pub mod one_object_load;
pub mod seeds;

use counting_allocator::CountingAllocator;

/// The process's allocator: the fuzzer and the regression test measure each case with it.
#[global_allocator]
pub static ALLOCATOR: CountingAllocator = CountingAllocator::new();
