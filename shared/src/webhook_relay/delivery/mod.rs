//! Delivery: one round per delivery (dedupe, pause, attempt, breaker, settle) behind the
//! [`round::Redelivery`] port that each queue adapts, and the worker that runs rounds over the
//! local queue.

pub mod round;
pub mod worker;
