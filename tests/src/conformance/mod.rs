//! Conformance suites: one list of cases each, run against every adapter of a port.

pub mod claim_store;
pub mod relay_queue;
pub mod storage;
pub mod warehouse;
