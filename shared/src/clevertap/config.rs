//! Where the CleverTap API is and who calls it: region, account, passcode, limits and backoff,
//! read once at start.

use std::time::Duration;

use crate::secret::Secret;

/// Environment variable: the CleverTap account (project) id.
pub const ENV_ACCOUNT_ID: &str = "CLEVERTAP_ACCOUNT_ID";
/// Environment variable: the account's passcode (a secret: never logged).
pub const ENV_PASSCODE: &str = "CLEVERTAP_PASSCODE";
/// Environment variable: the data region (`eu1` when unset).
pub const ENV_REGION: &str = "CLEVERTAP_REGION";
/// Environment variable: a base URL replacing the regional host (proxies, tests).
pub const ENV_API_URL: &str = "CLEVERTAP_API_URL";
/// Environment variable: concurrent requests per account (default 3, CleverTap's read limit).
pub const ENV_CONCURRENCY: &str = "CLEVERTAP_CONCURRENCY";
/// Environment variable: the first backoff delay in milliseconds (default 1000); later delays
/// double up to 30 times this, with jitter.
pub const ENV_BACKOFF_MS: &str = "CLEVERTAP_BACKOFF_MS";

/// Environment variable: the largest answer read, in bytes (default 64 MiB); a larger one
/// fails its request.
pub const ENV_MAX_RESPONSE_BYTES: &str = "CLEVERTAP_MAX_RESPONSE_BYTES";
/// Environment variable: the most pages one slice (an event's day, a profiles window) may take
/// (default 100,000); past it the slice stops with an error.
pub const ENV_MAX_PAGES_PER_SLICE: &str = "CLEVERTAP_MAX_PAGES_PER_SLICE";

/// 64 MiB: a page of 5,000 records is a few MB; the puller's Lambda has 256 MB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// 100,000 pages of up to 5,000 records: 500 million records for one event's day.
pub const DEFAULT_MAX_PAGES_PER_SLICE: u64 = 100_000;

/// CleverTap's read APIs allow 3 concurrent requests per account.
pub const DEFAULT_CONCURRENCY: usize = 3;

/// A CleverTap data region and its API host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Region {
    /// Europe: `api.clevertap.com` (the default host).
    #[default]
    Eu1,
    /// India.
    In1,
    /// Singapore.
    Sg1,
    /// United States.
    Us1,
    /// Indonesia.
    Aps3,
    /// Middle East.
    Mec1,
    /// South Korea (older docs).
    Sk1,
}

impl Region {
    /// Every region, in the order the docs list them.
    pub const ALL: [Region; 7] = [
        Region::Eu1,
        Region::In1,
        Region::Sg1,
        Region::Us1,
        Region::Aps3,
        Region::Mec1,
        Region::Sk1,
    ];

    /// The region's code (`eu1`, `in1`, …).
    pub fn code(self) -> &'static str {
        match self {
            Region::Eu1 => "eu1",
            Region::In1 => "in1",
            Region::Sg1 => "sg1",
            Region::Us1 => "us1",
            Region::Aps3 => "aps3",
            Region::Mec1 => "mec1",
            Region::Sk1 => "sk1",
        }
    }

    /// Parses a region code, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        Region::ALL.into_iter().find(|r| r.code() == text)
    }

    /// The HTTPS base URL of the region's API (paths are prefixed `/1/`).
    pub fn base_url(self) -> String {
        match self {
            // The documented default host; `eu1.api.clevertap.com` is the same service.
            Region::Eu1 => "https://api.clevertap.com".to_string(),
            other => format!("https://{}.api.clevertap.com", other.code()),
        }
    }
}

/// How long to wait between attempts, and how many to make.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryLimits {
    /// First delay after a throttle (HTTP 429 or body code 1); doubles each time, with jitter.
    pub backoff_base: Duration,
    /// Longest delay between two attempts.
    pub backoff_max: Duration,
    /// Throttled answers tolerated for one request before giving up.
    pub max_throttled: u32,
    /// Server errors (5xx) and timeouts tolerated for one request.
    pub max_transient: u32,
    /// Delay before asking again for a cursor page that is "in progress" (body code 2).
    pub not_ready_delay: Duration,
    /// "In progress" answers tolerated for one cursor page.
    pub max_not_ready: u32,
    /// Time limit of one HTTP request.
    pub request_timeout: Duration,
}

impl RetryLimits {
    /// The defaults scaled from a base delay: CleverTap's own downloader waits 30 s after a
    /// throttle and 5 s for a cursor that is not ready; we start lower and grow to those.
    pub fn with_base(base: Duration) -> Self {
        Self {
            backoff_base: base,
            backoff_max: base * 30,
            max_throttled: 10,
            max_transient: 5,
            not_ready_delay: base * 5,
            max_not_ready: 60,
            request_timeout: Duration::from_secs(120),
        }
    }
}

impl Default for RetryLimits {
    fn default() -> Self {
        Self::with_base(Duration::from_secs(1))
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ApiConfigError {
    /// A required variable is missing or empty.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// The region is not one CleverTap has.
    #[error("unknown CleverTap region {0:?}: use one of eu1, in1, sg1, us1, aps3, mec1, sk1")]
    Region(String),
    /// The base URL is not http(s).
    #[error("{ENV_API_URL} must be an http:// or https:// URL, got {0:?}")]
    ApiUrl(String),
    /// A number is not a positive integer.
    #[error("{name} must be a positive integer, got {value:?}")]
    Number {
        /// The variable.
        name: &'static str,
        /// What was given.
        value: String,
    },
}

/// Everything the client needs; built once, shared by every request.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The account (project) id: `X-CleverTap-Account-Id`.
    pub account_id: String,
    /// `X-CleverTap-Passcode`.
    pub passcode: Secret,
    /// The region (informational when `base_url` was overridden).
    pub region: Region,
    /// Scheme and host (and optional path prefix) without a trailing slash.
    pub base_url: String,
    /// Concurrent requests for this account in this process.
    pub concurrency: usize,
    /// Backoff and retry limits.
    pub retry: RetryLimits,
    /// The largest answer read, in bytes.
    pub max_response_bytes: u64,
    /// The most pages one cursor slice may take.
    pub max_pages_per_slice: u64,
}

impl ApiConfig {
    /// A configuration for `account_id` in `region`, with the defaults.
    pub fn new(account_id: impl Into<String>, passcode: Secret, region: Region) -> Self {
        Self {
            account_id: account_id.into(),
            passcode,
            region,
            base_url: region.base_url(),
            concurrency: DEFAULT_CONCURRENCY,
            retry: RetryLimits::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_pages_per_slice: DEFAULT_MAX_PAGES_PER_SLICE,
        }
    }

    /// Replaces the regional host with `url` (checked to be http or https).
    pub fn with_base_url(mut self, url: &str) -> Result<Self, ApiConfigError> {
        let trimmed = url.trim().trim_end_matches('/');
        if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
            return Err(ApiConfigError::ApiUrl(url.to_string()));
        }
        self.base_url = trimmed.to_string();
        Ok(self)
    }

    /// Reads the `CLEVERTAP_*` variables through `get` (the process environment in `main`,
    /// a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ApiConfigError> {
        let required = |name: &'static str| {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ApiConfigError::Missing(name))
        };
        let account = required(ENV_ACCOUNT_ID)?;
        let passcode = Secret::new(required(ENV_PASSCODE)?);
        let region = match get(ENV_REGION).filter(|v| !v.trim().is_empty()) {
            Some(text) => Region::parse(&text).ok_or(ApiConfigError::Region(text))?,
            None => Region::default(),
        };
        let mut config = Self::new(account.trim(), passcode, region);
        if let Some(url) = get(ENV_API_URL).filter(|v| !v.trim().is_empty()) {
            config = config.with_base_url(&url)?;
        }
        let number = |name: &'static str| -> Result<Option<u64>, ApiConfigError> {
            match get(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(ApiConfigError::Number { name, value: v }),
                },
            }
        };
        if let Some(n) = number(ENV_CONCURRENCY)? {
            config.concurrency = n as usize;
        }
        if let Some(ms) = number(ENV_BACKOFF_MS)? {
            config.retry = RetryLimits::with_base(Duration::from_millis(ms));
        }
        if let Some(bytes) = number(ENV_MAX_RESPONSE_BYTES)? {
            config.max_response_bytes = bytes;
        }
        if let Some(pages) = number(ENV_MAX_PAGES_PER_SLICE)? {
            config.max_pages_per_slice = pages;
        }
        Ok(config)
    }

    /// Reads the `CLEVERTAP_*` variables of the process environment.
    pub fn from_env() -> Result<Self, ApiConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn regions_map_to_their_hosts_and_eu1_is_the_default() {
        let config = ApiConfig::from_lookup(lookup(&[
            (ENV_ACCOUNT_ID, "ACC-1"),
            (ENV_PASSCODE, "SECRET"),
        ]))
        .unwrap();
        assert_eq!(config.region, Region::Eu1);
        assert_eq!(config.base_url, "https://api.clevertap.com");
        assert_eq!(config.concurrency, 3);
        assert_eq!(config.max_response_bytes, 64 * 1024 * 1024);
        assert_eq!(config.max_pages_per_slice, 100_000);
        let hosts: Vec<String> = Region::ALL.iter().map(|r| r.base_url()).collect();
        assert_eq!(
            hosts[1..],
            [
                "https://in1.api.clevertap.com",
                "https://sg1.api.clevertap.com",
                "https://us1.api.clevertap.com",
                "https://aps3.api.clevertap.com",
                "https://mec1.api.clevertap.com",
                "https://sk1.api.clevertap.com",
            ]
        );
        assert_eq!(Region::parse(" IN1 "), Some(Region::In1));
    }

    #[test]
    fn the_api_url_overrides_the_region_and_bad_values_are_named() {
        let config = ApiConfig::from_lookup(lookup(&[
            (ENV_ACCOUNT_ID, "ACC-1"),
            (ENV_PASSCODE, "SECRET"),
            (ENV_REGION, "us1"),
            (ENV_API_URL, "http://127.0.0.1:9/"),
        ]))
        .unwrap();
        assert_eq!(config.region, Region::Us1);
        assert_eq!(config.base_url, "http://127.0.0.1:9");

        let err = |pairs: &[(&str, &str)]| ApiConfig::from_lookup(lookup(pairs)).unwrap_err();
        assert_eq!(
            err(&[(ENV_PASSCODE, "S")]).to_string(),
            "CLEVERTAP_ACCOUNT_ID is not set"
        );
        assert_eq!(
            err(&[
                (ENV_ACCOUNT_ID, "A"),
                (ENV_PASSCODE, "S"),
                (ENV_REGION, "mars")
            ])
            .to_string(),
            "unknown CleverTap region \"mars\": use one of eu1, in1, sg1, us1, aps3, mec1, sk1"
        );
        assert_eq!(
            err(&[
                (ENV_ACCOUNT_ID, "A"),
                (ENV_PASSCODE, "S"),
                (ENV_API_URL, "ftp://x")
            ])
            .to_string(),
            "CLEVERTAP_API_URL must be an http:// or https:// URL, got \"ftp://x\""
        );
        assert_eq!(
            err(&[
                (ENV_ACCOUNT_ID, "A"),
                (ENV_PASSCODE, "S"),
                (ENV_CONCURRENCY, "0")
            ])
            .to_string(),
            "CLEVERTAP_CONCURRENCY must be a positive integer, got \"0\""
        );
    }

    #[test]
    fn the_passcode_never_prints() {
        let config = ApiConfig::new("ACC", Secret::new("TOP-SECRET-42"), Region::Eu1);
        let debug = format!("{config:?}");
        assert!(!debug.contains("TOP-SECRET-42"), "{debug}");
        assert!(debug.contains("passcode: [redacted]"), "{debug}");
        assert_eq!(config.passcode.to_string(), "[redacted]");
    }
}
