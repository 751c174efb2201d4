//! Typed configuration of a load, read once at start by each entry point.

use jiff::tz::TimeZone;

use crate::export::ExportLimits;

/// Environment variable naming the CleverTap project time zone (IANA name, e.g. `Asia/Kolkata`).
pub const ENV_TIMEZONE: &str = "TAPLINE_TIMEZONE";
/// Environment variable for the quarantine threshold (fraction of bad rows, e.g. `0.01`).
pub const ENV_MAX_REJECT_RATIO: &str = "TAPLINE_MAX_REJECT_RATIO";
/// Environment variable naming the warehouse URL (`sqlite://tapline.sqlite`).
pub const ENV_WAREHOUSE: &str = "TAPLINE_WAREHOUSE";

/// Environment variable for the most decoded bytes per compressed byte of an object (`100`).
pub const ENV_MAX_DECOMPRESSED_RATIO: &str = "TAPLINE_MAX_DECOMPRESSED_RATIO";
/// Environment variable for the most decoded bytes of one object (`8589934592`, 8 GiB).
pub const ENV_MAX_DECOMPRESSED_BYTES: &str = "TAPLINE_MAX_DECOMPRESSED_BYTES";
/// Environment variable for the longest raw column name accepted, in bytes (`1024`).
pub const ENV_MAX_COLUMN_NAME_BYTES: &str = "TAPLINE_MAX_COLUMN_NAME_BYTES";

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
    /// A size limit is not a whole number (or is 0 where 0 means nothing).
    #[error("{name} must be a whole number{hint}, got {value:?}")]
    Limit {
        /// The variable or flag.
        name: &'static str,
        /// What was given.
        value: String,
        /// What else the value must be.
        hint: &'static str,
    },
    /// The warehouse URL has a scheme Tapline does not know or lacks a part.
    #[error("cannot use warehouse {url:?}: {reason}")]
    Warehouse {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A column-types file (`--column-types`, `TAPLINE_COLUMN_TYPES`) cannot be used.
    #[error("column types in {origin}: {reason}")]
    ColumnTypes {
        /// Where the file came from (a path or an environment variable).
        origin: String,
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
    /// Per-object bounds (decoded size, column names): past them a file is quarantined or a
    /// row rejected, with the reason.
    pub limits: ExportLimits,
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
            limits: ExportLimits::default(),
        })
    }

    /// Replaces the per-object limits, checking them: a column name limit of 0 would refuse
    /// every file.
    pub fn with_limits(mut self, limits: ExportLimits) -> Result<Self, ConfigError> {
        if limits.max_column_name_bytes == 0 {
            return Err(ConfigError::Limit {
                name: ENV_MAX_COLUMN_NAME_BYTES,
                value: "0".to_string(),
                hint: " above 0",
            });
        }
        self.limits = limits;
        Ok(self)
    }
}

impl LoadConfig {
    /// Reads [`ENV_TIMEZONE`] (default `UTC`), [`ENV_MAX_REJECT_RATIO`] (default 0.01) and the
    /// limits [`ENV_MAX_DECOMPRESSED_RATIO`], [`ENV_MAX_DECOMPRESSED_BYTES`],
    /// [`ENV_MAX_COLUMN_NAME_BYTES`]: the functions' configuration, read once at cold start.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any variable lookup, so tests need not set the process's.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let timezone = var(ENV_TIMEZONE).unwrap_or_else(|| "UTC".to_string());
        let ratio = match var(ENV_MAX_REJECT_RATIO) {
            Some(text) => text
                .parse()
                .map_err(|_| ConfigError::RejectRatio(f64::NAN))?,
            None => DEFAULT_MAX_REJECT_RATIO,
        };
        let defaults = ExportLimits::default();
        let number = |name: &'static str, default: u64| match var(name) {
            Some(text) => text.trim().parse::<u64>().map_err(|_| ConfigError::Limit {
                name,
                value: text,
                hint: "",
            }),
            None => Ok(default),
        };
        let limits = ExportLimits {
            max_decompressed_ratio: number(
                ENV_MAX_DECOMPRESSED_RATIO,
                defaults.max_decompressed_ratio,
            )?,
            max_decompressed_bytes: number(
                ENV_MAX_DECOMPRESSED_BYTES,
                defaults.max_decompressed_bytes,
            )?,
            max_column_name_bytes: usize::try_from(number(
                ENV_MAX_COLUMN_NAME_BYTES,
                defaults.max_column_name_bytes as u64,
            )?)
            .unwrap_or(usize::MAX),
        };
        Self::new(&timezone, ratio)?.with_limits(limits)
    }
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            timezone: TimeZone::UTC,
            timezone_name: "UTC".to_string(),
            max_reject_ratio: DEFAULT_MAX_REJECT_RATIO,
            retry_quarantined: false,
            limits: ExportLimits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<LoadConfig, ConfigError> {
        LoadConfig::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn limits_default_and_read_from_their_variables() {
        assert_eq!(from(&[]).unwrap().limits, ExportLimits::default());
        let config = from(&[
            (ENV_MAX_DECOMPRESSED_RATIO, "20"),
            (ENV_MAX_DECOMPRESSED_BYTES, "1000000"),
            (ENV_MAX_COLUMN_NAME_BYTES, "64"),
        ])
        .unwrap();
        assert_eq!(
            config.limits,
            ExportLimits {
                max_column_name_bytes: 64,
                max_decompressed_ratio: 20,
                max_decompressed_bytes: 1_000_000,
            }
        );
    }

    #[test]
    fn a_bad_limit_names_its_variable() {
        let err = from(&[(ENV_MAX_DECOMPRESSED_BYTES, "8GiB")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TAPLINE_MAX_DECOMPRESSED_BYTES must be a whole number, got \"8GiB\""
        );
        let err = from(&[(ENV_MAX_COLUMN_NAME_BYTES, "0")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TAPLINE_MAX_COLUMN_NAME_BYTES must be a whole number above 0, got \"0\""
        );
    }
}
