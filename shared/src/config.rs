//! Typed configuration of a load, read once at start by each entry point.

use jiff::tz::TimeZone;

/// Environment variable naming the CleverTap project time zone (IANA name, e.g. `Asia/Kolkata`).
pub const ENV_TIMEZONE: &str = "TAPLINE_TIMEZONE";
/// Environment variable for the quarantine threshold (fraction of bad rows, e.g. `0.01`).
pub const ENV_MAX_REJECT_RATIO: &str = "TAPLINE_MAX_REJECT_RATIO";
/// Environment variable naming the warehouse URL (`sqlite://tapline.sqlite`).
pub const ENV_WAREHOUSE: &str = "TAPLINE_WAREHOUSE";

/// Default quarantine threshold: more than 1 % bad rows quarantines the whole file.
pub const DEFAULT_MAX_REJECT_RATIO: f64 = 0.01;

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The time zone is not a known IANA name.
    #[error("unknown time zone {name:?}: use an IANA name such as \"UTC\" or \"Asia/Kolkata\"")]
    TimeZone {
        /// What was given.
        name: String,
    },
    /// The reject ratio is outside `0.0..=1.0`.
    #[error("max reject ratio must be between 0 and 1, got {0}")]
    RejectRatio(f64),
    /// The warehouse URL has a scheme Tapline does not know or lacks a part.
    #[error("cannot use warehouse {url:?}: {reason}")]
    Warehouse {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// How a file's rows are validated; the same for every source and warehouse.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The CleverTap project's time zone: export `ts` values are local times in it.
    pub timezone: TimeZone,
    /// The IANA name of [`Self::timezone`], for logs and the ledger.
    pub timezone_name: String,
    /// A file whose share of rejected rows is above this is quarantined whole.
    pub max_reject_ratio: f64,
    /// Try files again whose same version was quarantined before (after a fix or a new threshold).
    pub retry_quarantined: bool,
}

impl LoadConfig {
    /// Builds a configuration, checking each value.
    pub fn new(timezone: &str, max_reject_ratio: f64) -> Result<Self, ConfigError> {
        let tz = TimeZone::get(timezone).map_err(|_| ConfigError::TimeZone {
            name: timezone.to_string(),
        })?;
        if !(0.0..=1.0).contains(&max_reject_ratio) || max_reject_ratio.is_nan() {
            return Err(ConfigError::RejectRatio(max_reject_ratio));
        }
        Ok(Self {
            timezone: tz,
            timezone_name: timezone.to_string(),
            max_reject_ratio,
            retry_quarantined: false,
        })
    }
}

impl LoadConfig {
    /// Reads [`ENV_TIMEZONE`] (default `UTC`) and [`ENV_MAX_REJECT_RATIO`] (default 0.01): the
    /// functions' configuration, read once at cold start.
    pub fn from_env() -> Result<Self, ConfigError> {
        let timezone = std::env::var(ENV_TIMEZONE).unwrap_or_else(|_| "UTC".to_string());
        let ratio = match std::env::var(ENV_MAX_REJECT_RATIO) {
            Ok(text) => text
                .parse()
                .map_err(|_| ConfigError::RejectRatio(f64::NAN))?,
            Err(_) => DEFAULT_MAX_REJECT_RATIO,
        };
        Self::new(&timezone, ratio)
    }
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            timezone: TimeZone::UTC,
            timezone_name: "UTC".to_string(),
            max_reject_ratio: DEFAULT_MAX_REJECT_RATIO,
            retry_quarantined: false,
        }
    }
}
