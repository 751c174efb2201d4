//! The system allocator, counting live heap bytes and their peak, with a hard cap.
//!
//! Each fuzz case resets the peak and reads it after: that is the case's memory. Past the hard
//! cap an allocation fails (the process aborts), so one runaway case cannot take the machine
//! down; the supervisor in `main.rs` reads which case that was from the in-flight file.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts heap bytes of every thread (the parser runs on a blocking thread of its own).
pub struct CountingAllocator {
    live: AtomicUsize,
    peak: AtomicUsize,
    hard_cap: AtomicUsize,
}

/// Written at offset 0 of the in-flight file when the hard cap refused an allocation.
pub const HARD_CAP_MARK: u8 = b'H';

/// The in-flight file of a worker: the allocator marks it before an allocation fails.
static IN_FLIGHT: OnceLock<File> = OnceLock::new();

impl CountingAllocator {
    /// An allocator with no cap.
    pub const fn new() -> Self {
        Self {
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            hard_cap: AtomicUsize::new(usize::MAX),
        }
    }

    /// Live heap bytes now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Starts a new peak from the live bytes now; returns them (the case's baseline).
    pub fn reset_peak(&self) -> usize {
        let live = self.live();
        self.peak.store(live, Ordering::Relaxed);
        live
    }

    /// Highest live heap bytes since [`Self::reset_peak`].
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Allocations that would take live bytes past `bytes` fail from now on.
    pub fn set_hard_cap(&self, bytes: usize) {
        self.hard_cap.store(bytes, Ordering::Relaxed);
    }

    /// The file marked with [`HARD_CAP_MARK`] when the cap refuses an allocation.
    pub fn set_in_flight_file(file: File) {
        let _ = IN_FLIGHT.set(file);
    }

    fn grow(&self, size: usize) -> bool {
        let live = self.live.fetch_add(size, Ordering::Relaxed) + size;
        if live > self.hard_cap.load(Ordering::Relaxed) {
            self.live.fetch_sub(size, Ordering::Relaxed);
            // No allocation here: a positioned write through a file opened before the run.
            if let Some(file) = IN_FLIGHT.get() {
                let _ = file.write_all_at(&[HARD_CAP_MARK], 0);
            }
            return false;
        }
        self.peak.fetch_max(live, Ordering::Relaxed);
        true
    }
}

impl Default for CountingAllocator {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.grow(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `layout`.
        let ptr = unsafe { System.alloc(layout) };
        if ptr.is_null() {
            self.live.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.grow(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if ptr.is_null() {
            self.live.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every path above forwards).
        unsafe { System.dealloc(ptr, layout) };
        self.live.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !self.grow(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if new.is_null() {
            if new_size > old {
                self.live.fetch_sub(new_size - old, Ordering::Relaxed);
            }
        } else if new_size < old {
            self.live.fetch_sub(old - new_size, Ordering::Relaxed);
        }
        new
    }
}
