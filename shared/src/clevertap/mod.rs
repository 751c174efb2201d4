//! CleverTap's REST API: auth and regions ([`config`]), one client with the account's
//! concurrency limit and backoff ([`client`]), the cursor protocol of Get Events and Get
//! Profiles ([`cursor`]), counts polled while partial ([`counts`]), campaigns and their reports ([`campaigns`]), message reports
//! ([`messages`]), and what can go wrong
//! ([`error`]).
//!
//! See `reference/clevertap.md` (section 1) for the quirks this module absorbs.

pub mod campaigns;
pub mod client;
pub mod config;
pub mod counts;
pub mod cursor;
pub mod error;
pub mod messages;

pub use client::{ClevertapClient, Method};
pub use config::{ApiConfig, Region, RetryLimits};
pub use cursor::{CursorApi, CursorPager, Page};
pub use error::ApiError;
