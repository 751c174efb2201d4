//! Delivery from the local queue: the worker that claims due deliveries, runs each through its
//! destination with dedupe, pause, breaker and retry, and settles the outcome.

pub mod worker;
