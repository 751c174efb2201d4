//! The relay's typed configuration: a TOML file naming routes, their auth and destinations.
//! Secrets (tokens, passwords, webhook URLs, signing keys) are named by environment variable and
//! resolved once, at start; the file never holds one. Every problem is reported before anything
//! listens.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

use crate::webhook_relay::retry::{Backoff, DeliveryRetry, RouteRetry};
use crate::webhook_relay::signature::SigningKeys;

/// Default largest body accepted: 1 MiB, far above CleverTap's payloads and below abuse.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 1024 * 1024;
/// Default dedupe window: CleverTap retries within seconds; ten minutes covers slow retries.
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(600);
/// Default time delivered payloads are kept (then pruned).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default time dead letters are kept after they became dead (then pruned), unless replayed.
pub const DEFAULT_DEAD_LETTER_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
pub use crate::webhook_relay::retry::{DEFAULT_DELIVERY_TIMEOUT, DEFAULT_RETRY_SCHEDULE};
/// Default first backoff of `backoff_base_ms`-style (exponential) retries.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Default longest backoff of exponential retries.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(600);
/// Waits a `retry_schedule` may list at most.
pub const MAX_SCHEDULE_WAITS: usize = 100;

/// A configuration that cannot be used; nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read relay configuration {path}")]
    Read {
        /// The file as given.
        path: String,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected shape.
    #[error("relay configuration {path} is not valid")]
    Parse {
        /// The file as given (or `<string>`).
        path: String,
        /// The TOML error, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// An environment variable named by the configuration is not set or empty.
    #[error("route {route:?}: environment variable {var} is not set (it holds the {what})")]
    MissingEnv {
        /// The route whose setting names it.
        route: String,
        /// The variable's name.
        var: String,
        /// What the variable should hold, e.g. "auth secret".
        what: &'static str,
    },
    /// A value is present but unusable.
    #[error("route {route:?}: {reason}")]
    Invalid {
        /// The route concerned (`*` for global settings).
        route: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// A secret value resolved from the environment: the one redacting type of the library.
pub use crate::secret::Secret;

/// Which half of the relay a process runs, and so which secrets its configuration reads: the
/// public endpoint never holds a destination's credentials, the worker never a route's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigMode {
    /// Accepts webhooks only (the function URL, Cloud Run's `endpoint`): route secrets are read;
    /// destinations are checked for shape, their secrets (and `TAPLINE_WAREHOUSE`) are not.
    Endpoint,
    /// Delivers only (the SQS worker, Cloud Run's `worker`): destination secrets are read; route
    /// auth is checked for shape, its secret is not (every request would be refused).
    Worker,
    /// Both in one process (`tapline relay serve`): every secret is read.
    Both,
}

impl ConfigMode {
    /// Whether route auth secrets are resolved.
    pub fn reads_route_secrets(self) -> bool {
        matches!(self, ConfigMode::Endpoint | ConfigMode::Both)
    }
    /// Whether destination secrets (URLs, signing keys, passcodes, the warehouse URL) are
    /// resolved.
    pub fn reads_destination_secrets(self) -> bool {
        matches!(self, ConfigMode::Worker | ConfigMode::Both)
    }
}

/// Settings shared by every route.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest request body accepted; larger bodies get 413.
    pub body_limit_bytes: usize,
    /// The same body on the same route within this window is accepted but delivered once.
    pub dedupe_window: Duration,
    /// Payloads whose every delivery was delivered are deleted this long after they came in.
    /// At least the dedupe window, so that deduplication still sees them.
    pub retention: Duration,
    /// Attempts, waits and jitter of deliveries, per route when a route has its own.
    pub retry: DeliveryRetry,
    /// Whether the file's `[settings]` chose the default retries (`retry_schedule`,
    /// `max_attempts`, `backoff_*`); in the cloud they come from the queue's schedule instead.
    pub retry_from_file: bool,
    /// Time one delivery attempt may take.
    pub delivery_timeout: Duration,
    /// Dead letters are deleted this long after they became dead (local queue).
    pub dead_letter_retention: Duration,
    /// The local queue's backlog cap and free-disk watermark.
    pub queue_limits: crate::webhook_relay::queue::limits::QueueLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
            retention: DEFAULT_RETENTION,
            retry: DeliveryRetry::default(),
            retry_from_file: false,
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            dead_letter_retention: DEFAULT_DEAD_LETTER_RETENTION,
            queue_limits: crate::webhook_relay::queue::limits::QueueLimits::default(),
        }
    }
}

/// How a route authenticates its caller (CleverTap signs nothing: a shared secret it is).
#[derive(Debug, Clone)]
pub enum RouteAuth {
    /// A header carrying the secret, e.g. `X-Tapline-Token: <secret>`.
    Header {
        /// The header's name.
        name: HeaderName,
        /// Its expected value.
        secret: Secret,
    },
    /// HTTP Basic auth with this user name and password.
    Basic {
        /// The expected user name.
        username: String,
        /// The expected password.
        password: Secret,
    },
    /// Parsed for the worker ([`ConfigMode::Worker`]): the secret was not read, so every
    /// request is refused.
    Unresolved,
}

/// Where a route's payloads go.
#[derive(Debug, Clone)]
pub enum DestinationKind {
    /// A Slack incoming webhook; the URL is itself a credential.
    Slack {
        /// `https://hooks.slack.com/services/…`.
        url: Secret,
    },
    /// Any HTTP endpoint, sent the body as received, signed with HMAC-SHA256.
    Http {
        /// The endpoint (may hold a token, so treated as a secret).
        url: Secret,
        /// The Standard Webhooks keys (`whsec_…`, the current one first) of `webhook-signature`.
        signing_keys: SigningKeys,
    },
    /// CleverTap's upload API, fed through a mapping.
    CleverTap {
        /// `https://<region>.api.clevertap.com/1/upload`, or the `url_env` override.
        url: String,
        /// `X-CleverTap-Account-Id`.
        account_id: String,
        /// `X-CleverTap-Passcode`.
        passcode: Secret,
        /// Payload → records.
        mapping: crate::webhook_relay::destinations::clevertap_upload::UploadMapping,
    },
    /// A warehouse's `webhook_events` table (see [`crate::webhook_relay::destinations::warehouse`]).
    Warehouse {
        /// `sqlite://…`, `postgres://…` or `bigquery://…` (may hold a password).
        url: Secret,
    },
    /// CleverTap's export status: a sweep of the request's objects and a reconcile of their
    /// days (see [`crate::webhook_relay::destinations::export_status`]).
    ExportStatus {
        /// Where the exports land: `s3://bucket/prefix`, `gs://bucket/prefix` or a folder.
        source: String,
        /// Where the sweep and the reconcile run: here (a warehouse URL), or in the loader
        /// and the puller (`loader`, `puller`).
        mode: crate::webhook_relay::destinations::export_status::ExportStatusMode,
    },
    /// Parsed for the endpoint ([`ConfigMode::Endpoint`]): its shape was checked, its secrets
    /// were not read, so nothing can be delivered to it.
    Unresolved,
}

/// One destination of a route.
///
/// (The CleverTap variant's mapping is in [`crate::webhook_relay::destinations::clevertap_upload`].)
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    /// Unique within the route: the `name` in the file, or `<type>-<position>` (`slack-1`).
    pub name: String,
    /// Its type and settings.
    pub kind: DestinationKind,
}

/// One route: `POST /hooks/<name>`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The path segment after `/hooks/`.
    pub name: String,
    /// How callers authenticate.
    pub auth: RouteAuth,
    /// Deliver CleverTap's `is_test` payloads too (by default they are answered 200 and dropped).
    pub forward_tests: bool,
    /// Where payloads go (fan-out: each gets its own delivery).
    pub destinations: Vec<DestinationConfig>,
}

/// The whole relay configuration, validated, secrets resolved.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Settings shared by all routes.
    pub settings: Settings,
    /// The routes, in file order.
    pub routes: Vec<RouteConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayFile {
    #[serde(default)]
    settings: SettingsFile,
    #[serde(default)]
    routes: Vec<RouteFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    body_limit_bytes: Option<usize>,
    dedupe_window_secs: Option<u64>,
    retention_days: Option<f64>,
    max_attempts: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_max_secs: Option<u64>,
    retry_schedule: Option<Vec<String>>,
    delivery_timeout_secs: Option<u64>,
    dead_letter_retention_days: Option<f64>,
    max_queue_mib: Option<u64>,
    min_free_disk_percent: Option<u8>,
    min_free_disk_mib: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    name: String,
    auth: AuthFile,
    #[serde(default)]
    forward_tests: bool,
    retry_schedule: Option<Vec<String>>,
    #[serde(default)]
    destinations: Vec<DestinationFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    header: Option<String>,
    secret_env: Option<String>,
    username: Option<String>,
    password_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum DestinationFile {
    Slack {
        name: Option<String>,
        url_env: String,
    },
    Http {
        name: Option<String>,
        url_env: String,
        signing_secret_env: String,
    },
    Clevertap(ClevertapFile),
    Warehouse {
        name: Option<String>,
        url_env: Option<String>,
    },
    #[serde(rename = "export-status")]
    ExportStatus {
        name: Option<String>,
        source: String,
        url_env: Option<String>,
        loader: Option<String>,
        puller: Option<String>,
        loader_env: Option<String>,
        puller_env: Option<String>,
        reconcile_days: Option<u32>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadRuleFile {
    when: Option<WhenFile>,
    event: Option<String>,
    #[serde(default)]
    profile: bool,
    #[serde(default)]
    properties: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenFile {
    field: String,
    equals: Option<String>,
}

impl RelayConfig {
    /// Reads and validates the file at `path` for a process that both accepts and delivers
    /// (`tapline relay serve`), resolving every secret from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text, |var| {
            std::env::var(var).ok()
        })
    }

    /// [`Self::parse_for`] in [`ConfigMode::Both`]: every secret is resolved.
    pub fn parse(
        path: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::parse_for(ConfigMode::Both, path, text, env)
    }

    /// Parses and validates TOML `text` for `mode`; `env` resolves the variables it names that
    /// `mode` needs, and is never asked for the others (tests pass a map instead of touching
    /// the process environment).
    pub fn parse_for(
        mode: ConfigMode,
        path: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = relay_file(path, text)?;
        let mut settings = settings(file.settings)?;
        if file.routes.is_empty() {
            return Err(invalid("*", "no [[routes]]: add at least one"));
        }
        let mut names = HashSet::new();
        let mut routes = Vec::with_capacity(file.routes.len());
        for route in file.routes {
            let name = route.name.clone();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    &name,
                    "a route name is a URL path segment: letters, digits, '-' and '_' only",
                ));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(&name, "route name used twice"));
            }
            if let Some(waits) = &route.retry_schedule {
                let retry = RouteRetry::schedule(schedule(&name, "retry_schedule", waits)?);
                settings.retry.routes.insert(name.clone(), retry);
            }
            routes.push(route_config(mode, route, &env)?);
        }
        Ok(Self { settings, routes })
    }

    /// The environment variables TOML `text` names whose values `mode` reads (route secrets,
    /// destination secrets, or both): what a cloud function fetches from its secret store
    /// before [`Self::parse_for`], so that it never asks for a secret it does not need.
    pub fn secret_variables(
        mode: ConfigMode,
        path: &str,
        text: &str,
    ) -> Result<Vec<String>, ConfigError> {
        let file = relay_file(path, text)?;
        let mut vars = Vec::new();
        for route in &file.routes {
            if mode.reads_route_secrets() {
                vars.extend(route.auth.secret_env.iter().cloned());
                vars.extend(route.auth.password_env.iter().cloned());
            }
            if mode.reads_destination_secrets() {
                for dest in &route.destinations {
                    vars.extend(dest.secret_variables());
                }
            }
        }
        vars.sort();
        vars.dedup();
        Ok(vars)
    }

    /// In the cloud: the delivery queue's schedule (`TAPLINE_RELAY_RETRY_SCHEDULE`, which the
    /// queue's redelivery limits are derived from in Terraform) becomes every route's default.
    /// Refused when the file's `[settings]` chose other retries, or a route's own schedule has
    /// more attempts than the queue allows.
    pub fn with_queue_schedule(mut self, waits: Vec<Duration>) -> Result<Self, ConfigError> {
        if self.settings.retry_from_file {
            return Err(invalid(
                "*",
                "settings.retry_schedule, max_attempts and backoff_* are set by the deployment \
                 here (TAPLINE_RELAY_RETRY_SCHEDULE, webhook_relay_retry_schedule in Terraform): \
                 remove them from the file",
            ));
        }
        let queue = RouteRetry::schedule(waits);
        for (route, retry) in &self.settings.retry.routes {
            if retry.max_attempts > queue.max_attempts {
                return Err(invalid(
                    route,
                    format!(
                        "retry_schedule has {} attempts; the delivery queue allows {} \
                         (webhook_relay_retry_schedule in Terraform)",
                        retry.max_attempts, queue.max_attempts
                    ),
                ));
            }
        }
        self.settings.retry.default = queue;
        Ok(self)
    }

    /// The route called `name`, if configured.
    pub fn route(&self, name: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|r| r.name == name)
    }
}

fn relay_file(path: &str, text: &str) -> Result<RelayFile, ConfigError> {
    toml::from_str(text).map_err(|source| ConfigError::Parse {
        path: path.to_string(),
        source,
    })
}

fn invalid(route: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        route: route.to_string(),
        reason: reason.into(),
    }
}

/// A `retry_schedule`: 1 to [`MAX_SCHEDULE_WAITS`] waits such as `"5s"`, `"5m"`, `"2h"`.
pub fn schedule(route: &str, key: &str, waits: &[String]) -> Result<Vec<Duration>, ConfigError> {
    if waits.is_empty() || waits.len() > MAX_SCHEDULE_WAITS {
        return Err(invalid(
            route,
            format!("{key} lists 1 to {MAX_SCHEDULE_WAITS} waits"),
        ));
    }
    waits
        .iter()
        .map(|w| {
            crate::webhook_relay::retry::parse_wait(w).ok_or_else(|| {
                invalid(
                    route,
                    format!("{key}: {w:?} is not a wait like \"30s\", \"5m\" or \"2h\""),
                )
            })
        })
        .collect()
}

fn settings(file: SettingsFile) -> Result<Settings, ConfigError> {
    let mut s = Settings::default();
    if let Some(limit) = file.body_limit_bytes {
        if limit == 0 {
            return Err(invalid("*", "settings.body_limit_bytes must be above 0"));
        }
        s.body_limit_bytes = limit;
    }
    if let Some(secs) = file.dedupe_window_secs {
        s.dedupe_window = Duration::from_secs(secs);
    }
    if let Some(retention) = days("retention_days", file.retention_days)? {
        s.retention = retention;
    }
    if s.retention < s.dedupe_window {
        return Err(invalid(
            "*",
            "settings.retention_days must cover settings.dedupe_window_secs: a pruned payload \
             can no longer be recognised as a duplicate",
        ));
    }
    s.retry_from_file = file.retry_schedule.is_some()
        || file.max_attempts.is_some()
        || file.backoff_base_ms.is_some()
        || file.backoff_max_secs.is_some();
    if let Some(waits) = &file.retry_schedule {
        if file.max_attempts.is_some()
            || file.backoff_base_ms.is_some()
            || file.backoff_max_secs.is_some()
        {
            return Err(invalid(
                "*",
                "settings.retry_schedule sets the attempts (its waits + 1) and the waits: \
                 drop max_attempts and backoff_*",
            ));
        }
        s.retry.default = RouteRetry::schedule(schedule("*", "settings.retry_schedule", waits)?);
    }
    if file.backoff_base_ms.is_some() || file.backoff_max_secs.is_some() {
        s.retry.default.backoff = Backoff::Exponential {
            base: file
                .backoff_base_ms
                .map_or(DEFAULT_BACKOFF_BASE, Duration::from_millis),
            max_delay: file
                .backoff_max_secs
                .map_or(DEFAULT_BACKOFF_MAX, Duration::from_secs),
        };
    }
    if let Some(n) = file.max_attempts {
        if n == 0 {
            return Err(invalid("*", "settings.max_attempts must be at least 1"));
        }
        // With the default schedule, more attempts repeat its last wait.
        s.retry.default.max_attempts = n;
    }
    if let Some(secs) = file.delivery_timeout_secs {
        if secs == 0 {
            return Err(invalid(
                "*",
                "settings.delivery_timeout_secs must be above 0",
            ));
        }
        s.delivery_timeout = Duration::from_secs(secs);
    }
    // Every handler that retries bounds its attempts by the same timeout (see `DeliveryRetry`).
    s.retry.attempt_timeout = s.delivery_timeout;
    queue_bounds(&file, &mut s)?;
    Ok(s)
}

/// A `settings.<key>` number of days (fractions allowed) as a duration: negative, not a number,
/// or past what a duration holds (`1e300`) is refused by name.
fn days(key: &str, days: Option<f64>) -> Result<Option<Duration>, ConfigError> {
    let Some(days) = days else {
        return Ok(None);
    };
    if !days.is_finite() || days < 0.0 {
        return Err(invalid(
            "*",
            format!("settings.{key} must be a number of days"),
        ));
    }
    Duration::try_from_secs_f64(days * 86_400.0)
        .map(Some)
        .map_err(|_| invalid("*", format!("settings.{key} is too many days")))
}

/// The local queue's dead-letter retention, backlog cap and free-disk watermark.
fn queue_bounds(file: &SettingsFile, s: &mut Settings) -> Result<(), ConfigError> {
    const MIB: u64 = 1024 * 1024;
    if let Some(retention) = days(
        "dead_letter_retention_days",
        file.dead_letter_retention_days,
    )? {
        s.dead_letter_retention = retention;
    }
    if s.dead_letter_retention < s.dedupe_window {
        return Err(invalid(
            "*",
            "settings.dead_letter_retention_days must cover settings.dedupe_window_secs",
        ));
    }
    if let Some(mib) = file.max_queue_mib {
        if mib == 0 {
            return Err(invalid("*", "settings.max_queue_mib must be above 0"));
        }
        s.queue_limits.max_backlog_bytes = mib.saturating_mul(MIB);
    }
    if let Some(percent) = file.min_free_disk_percent {
        if percent > 99 {
            return Err(invalid(
                "*",
                "settings.min_free_disk_percent is a share of the disk, 0 to 99",
            ));
        }
        s.queue_limits.min_free_disk_percent = percent;
    }
    if let Some(mib) = file.min_free_disk_mib {
        s.queue_limits.min_free_disk_bytes = mib.saturating_mul(MIB);
    }
    Ok(())
}

fn secret(
    route: &str,
    var: &str,
    what: &'static str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    match env(var) {
        Some(value) if !value.trim().is_empty() => Ok(Secret::new(value.trim())),
        _ => Err(ConfigError::MissingEnv {
            route: route.to_string(),
            var: var.to_string(),
            what,
        }),
    }
}

/// Shortest route secret (header token or Basic password) accepted: a guessable one would make
/// the public endpoint open to anyone.
pub const MIN_ROUTE_SECRET_BYTES: usize = 32;

/// A route's auth secret from `var`, refused when shorter than [`MIN_ROUTE_SECRET_BYTES`]
/// (the error names the route and the variable, never the value).
fn route_secret(
    route: &str,
    var: &str,
    what: &'static str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    let value = secret(route, var, what, env)?;
    if value.expose().len() < MIN_ROUTE_SECRET_BYTES {
        return Err(invalid(
            route,
            format!(
                "the {what} in {var} is shorter than {MIN_ROUTE_SECRET_BYTES} bytes: \
                 use a random one (e.g. openssl rand -hex 32)"
            ),
        ));
    }
    Ok(value)
}

/// The Standard Webhooks signing keys in `var`: `whsec_…` secrets separated by spaces.
fn signing_keys(
    route: &str,
    var: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<SigningKeys, ConfigError> {
    let value = secret(route, var, "signing secret", env)?;
    SigningKeys::parse(value.expose()).map_err(|e| invalid(route, format!("{var}: {e}")))
}

fn destination_url(
    route: &str,
    var: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    let url = secret(route, var, "destination URL", env)?;
    // Checked here so that a typo fails at start, not at the first delivery. The URL is not
    // echoed: it may carry a token (Slack's always does).
    match reqwest::Url::parse(url.expose()) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(url),
        _ => Err(invalid(
            route,
            format!("{var} does not hold an http(s) URL"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClevertapFile {
    name: Option<String>,
    account_id_env: String,
    passcode_env: String,
    region: Option<String>,
    url_env: Option<String>,
    identity: String,
    timestamp: Option<String>,
    #[serde(default)]
    records: Vec<UploadRuleFile>,
}

fn clevertap_destination(
    route: &str,
    file: ClevertapFile,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<DestinationKind, ConfigError> {
    let url = match &file.url_env {
        Some(var) => destination_url(route, var, env)?.expose().to_string(),
        None => crate::webhook_relay::destinations::clevertap_upload::upload_url(
            file.region.as_deref().unwrap_or("eu1"),
        ),
    };
    let account_id = secret(route, &file.account_id_env, "CleverTap account id", env)?;
    let passcode = secret(route, &file.passcode_env, "CleverTap passcode", env)?;
    Ok(DestinationKind::CleverTap {
        url,
        account_id: account_id.expose().to_string(),
        passcode,
        mapping: clevertap_mapping(route, file)?,
    })
}

/// A clevertap destination's mapping (payload → records): checked in every mode, since it
/// holds no secret.
fn clevertap_mapping(
    route: &str,
    file: ClevertapFile,
) -> Result<crate::webhook_relay::destinations::clevertap_upload::UploadMapping, ConfigError> {
    use crate::webhook_relay::destinations::clevertap_upload::{
        UploadMapping, UploadRecordKind, UploadRule,
    };
    if file.records.is_empty() {
        return Err(invalid(
            route,
            "a clevertap destination needs [[routes.destinations.records]] (its mapping)",
        ));
    }
    let mut rules = Vec::with_capacity(file.records.len());
    for rule in file.records {
        let kind = match (rule.event, rule.profile) {
            (Some(event), false) if !event.is_empty() => UploadRecordKind::Event(event),
            (None, true) => UploadRecordKind::Profile,
            _ => {
                return Err(invalid(
                    route,
                    "each clevertap record is either event = \"Name\" or profile = true",
                ));
            }
        };
        let (when_field, when_equals) = match rule.when {
            Some(when) => (Some(when.field), when.equals),
            None => (None, None),
        };
        rules.push(UploadRule {
            when_field,
            when_equals,
            kind,
            properties: rule.properties.into_iter().collect(),
        });
    }
    Ok(UploadMapping {
        identity: file.identity,
        timestamp: file.timestamp,
        rules,
    })
}

fn warehouse_destination(
    route: &str,
    url_env: Option<&str>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<DestinationKind, ConfigError> {
    Ok(DestinationKind::Warehouse {
        url: warehouse_url(route, url_env, env)?,
    })
}

/// A destination's warehouse URL from `url_env` (default `TAPLINE_WAREHOUSE`), its scheme checked.
fn warehouse_url(
    route: &str,
    url_env: Option<&str>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    let var = url_env.unwrap_or(crate::webhook_relay::destinations::warehouse::DEFAULT_URL_ENV);
    let url = secret(route, var, "warehouse URL", env)?;
    // The scheme is checked now so that a typo fails at start; the rest when the worker opens
    // it. The URL is not echoed: it may carry a password.
    let scheme = url.expose().split_once(':').map(|(s, _)| s);
    if !matches!(
        scheme,
        Some("sqlite" | "postgres" | "postgresql" | "bigquery")
    ) {
        return Err(invalid(
            route,
            format!(
                "{var} does not hold a warehouse URL (sqlite://FILE, postgres://USER@HOST/DB or \
                 bigquery://PROJECT/DATASET)"
            ),
        ));
    }
    Ok(url)
}

/// An export-status `field` (`loader`, `puller`) as written, or read from the variable
/// `field_env` names (what Terraform sets: the function's name or service URL is known only once
/// it is deployed). Both at once, or a variable that is not set, is refused.
fn target_text(
    route: &str,
    field: &str,
    given: Option<String>,
    var: Option<String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    match (given, var) {
        (Some(_), Some(_)) => Err(invalid(
            route,
            format!("export-status: set `{field}` or `{field}_env`, not both"),
        )),
        (None, Some(var)) => match env(&var).filter(|v| !v.trim().is_empty()) {
            Some(text) => Ok(Some(text)),
            None => Err(invalid(
                route,
                format!("export-status `{field}_env`: {var} is not set"),
            )),
        },
        (given, None) => Ok(given),
    }
}

/// An `export-status` destination: local (a warehouse URL from `url_env`) or cloud (`loader`
/// and `puller`, both Lambda functions or both Cloud Run services).
fn export_status_destination(
    route: &str,
    source: String,
    url_env: Option<&str>,
    [loader, puller]: [Option<String>; 2],
    reconcile_days: Option<u32>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<DestinationKind, ConfigError> {
    use crate::webhook_relay::destinations::export_status::{
        DEFAULT_RECONCILE_DAYS, ExportStatusMode,
    };
    use crate::webhook_relay::destinations::function_invoke::{
        ENV_LAMBDA_ENDPOINT, FunctionTarget,
    };
    if source.trim().is_empty() || source.chars().any(char::is_control) {
        return Err(invalid(
            route,
            "an export-status destination needs `source`: where the exports land \
             (s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or a folder)"
                .to_string(),
        ));
    }
    let load =
        crate::config::LoadConfig::from_vars(env).map_err(|e| invalid(route, e.to_string()))?;
    let mode = match (loader, puller) {
        (None, None) => {
            if reconcile_days.is_some() {
                return Err(invalid(
                    route,
                    "export-status: `reconcile_days` is for the cloud mode (with `loader` and \
                     `puller`); locally the swept days are reconciled"
                        .to_string(),
                ));
            }
            ExportStatusMode::Local {
                url: warehouse_url(route, url_env, env)?,
                load,
            }
        }
        (Some(loader), Some(puller)) => {
            if url_env.is_some() {
                return Err(invalid(
                    route,
                    "export-status: with `loader` and `puller` the relay needs no warehouse: \
                     remove `url_env`"
                        .to_string(),
                ));
            }
            let target = |field: &str, text: &str| {
                FunctionTarget::parse(text)
                    .map_err(|e| invalid(route, format!("export-status `{field}`: {e}")))
            };
            let (loader, puller) = (target("loader", &loader)?, target("puller", &puller)?);
            if loader.is_lambda() != puller.is_lambda() {
                return Err(invalid(
                    route,
                    "export-status: `loader` and `puller` are both Lambda functions \
                     (lambda:NAME) or both Cloud Run services (https://…)"
                        .to_string(),
                ));
            }
            let reconcile_days = reconcile_days.unwrap_or(DEFAULT_RECONCILE_DAYS);
            if !(1..=366).contains(&reconcile_days) {
                return Err(invalid(
                    route,
                    "export-status `reconcile_days` is from 1 to 366".to_string(),
                ));
            }
            let lambda_endpoint = env(ENV_LAMBDA_ENDPOINT).filter(|e| !e.trim().is_empty());
            if let Some(endpoint) = &lambda_endpoint
                && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
            {
                return Err(invalid(
                    route,
                    format!("{ENV_LAMBDA_ENDPOINT} is not an http(s):// URL"),
                ));
            }
            ExportStatusMode::Cloud {
                loader,
                puller,
                reconcile_days,
                timezone: load.timezone,
                lambda_endpoint,
            }
        }
        _ => {
            return Err(invalid(
                route,
                "export-status: set both `loader` and `puller` (the cloud mode), or neither \
                 (the sweep runs in the relay, into the warehouse `url_env` names)"
                    .to_string(),
            ));
        }
    };
    Ok(DestinationKind::ExportStatus { source, mode })
}

impl DestinationFile {
    /// The name in the file, or `<type>-<position>` (`slack-1`) for the one at `index`.
    fn name(&self, index: usize) -> String {
        let (given, kind) = match self {
            DestinationFile::Slack { name, .. } => (name, "slack"),
            DestinationFile::Http { name, .. } => (name, "http"),
            DestinationFile::Clevertap(file) => (&file.name, "clevertap"),
            DestinationFile::Warehouse { name, .. } => (name, "warehouse"),
            DestinationFile::ExportStatus { name, .. } => (name, "export-status"),
        };
        given
            .clone()
            .unwrap_or_else(|| format!("{kind}-{}", index + 1))
    }

    /// The environment variables holding this destination's secrets.
    fn secret_variables(&self) -> Vec<String> {
        match self {
            DestinationFile::Slack { url_env, .. } => vec![url_env.clone()],
            DestinationFile::Http {
                url_env,
                signing_secret_env,
                ..
            } => vec![url_env.clone(), signing_secret_env.clone()],
            DestinationFile::Clevertap(file) => [&file.url_env]
                .into_iter()
                .flatten()
                .chain([&file.account_id_env, &file.passcode_env])
                .cloned()
                .collect(),
            // In cloud mode (a loader and a puller) the relay holds no warehouse URL.
            DestinationFile::ExportStatus {
                loader,
                puller,
                loader_env,
                puller_env,
                ..
            } if loader.is_some()
                || puller.is_some()
                || loader_env.is_some()
                || puller_env.is_some() =>
            {
                Vec::new()
            }
            DestinationFile::Warehouse { url_env, .. }
            | DestinationFile::ExportStatus { url_env, .. } => vec![
                url_env
                    .as_deref()
                    .unwrap_or(crate::webhook_relay::destinations::warehouse::DEFAULT_URL_ENV)
                    .to_string(),
            ],
        }
    }

    /// The destination with its secrets resolved from `env`.
    fn resolve(
        self,
        route: &str,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<DestinationKind, ConfigError> {
        Ok(match self {
            DestinationFile::Slack { url_env, .. } => DestinationKind::Slack {
                url: destination_url(route, &url_env, env)?,
            },
            DestinationFile::Http {
                url_env,
                signing_secret_env,
                ..
            } => DestinationKind::Http {
                url: destination_url(route, &url_env, env)?,
                signing_keys: signing_keys(route, &signing_secret_env, env)?,
            },
            DestinationFile::Warehouse { url_env, .. } => {
                warehouse_destination(route, url_env.as_deref(), env)?
            }
            DestinationFile::ExportStatus {
                source,
                url_env,
                loader,
                puller,
                loader_env,
                puller_env,
                reconcile_days,
                ..
            } => {
                let loader = target_text(route, "loader", loader, loader_env, env)?;
                let puller = target_text(route, "puller", puller, puller_env, env)?;
                export_status_destination(
                    route,
                    source,
                    url_env.as_deref(),
                    [loader, puller],
                    reconcile_days,
                    env,
                )?
            }
            DestinationFile::Clevertap(file) => clevertap_destination(route, file, env)?,
        })
    }

    /// The destination checked for shape only, its secrets not read (the endpoint's view).
    fn unresolved(self, route: &str) -> Result<DestinationKind, ConfigError> {
        if let DestinationFile::Clevertap(file) = self {
            clevertap_mapping(route, file)?;
        }
        Ok(DestinationKind::Unresolved)
    }
}

fn route_auth(
    mode: ConfigMode,
    name: &str,
    auth: AuthFile,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<RouteAuth, ConfigError> {
    match auth {
        AuthFile {
            header: Some(header),
            secret_env: Some(var),
            username: None,
            password_env: None,
        } => {
            let header_name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                invalid(name, format!("auth.header {header:?} is not a header name"))
            })?;
            if !mode.reads_route_secrets() {
                return Ok(RouteAuth::Unresolved);
            }
            Ok(RouteAuth::Header {
                name: header_name,
                secret: route_secret(name, &var, "auth secret", env)?,
            })
        }
        AuthFile {
            header: None,
            secret_env: None,
            username: Some(username),
            password_env: Some(var),
        } => {
            if username.is_empty() || username.contains(':') {
                return Err(invalid(
                    name,
                    "auth.username must be non-empty, without ':'",
                ));
            }
            if !mode.reads_route_secrets() {
                return Ok(RouteAuth::Unresolved);
            }
            Ok(RouteAuth::Basic {
                username,
                password: route_secret(name, &var, "Basic auth password", env)?,
            })
        }
        _ => Err(invalid(
            name,
            "auth must be { header = \"X-Token\", secret_env = \"VAR\" } or \
             { username = \"clevertap\", password_env = \"VAR\" }",
        )),
    }
}

fn route_config(
    mode: ConfigMode,
    route: RouteFile,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<RouteConfig, ConfigError> {
    let name = route.name;
    let auth = route_auth(mode, &name, route.auth, env)?;
    if route.destinations.is_empty() {
        return Err(invalid(
            &name,
            "no [[routes.destinations]]: add at least one",
        ));
    }
    let mut destinations = Vec::with_capacity(route.destinations.len());
    let mut seen = HashSet::new();
    for (i, dest) in route.destinations.into_iter().enumerate() {
        let given = dest.name(i);
        let kind = if mode.reads_destination_secrets() {
            dest.resolve(&name, env)?
        } else {
            dest.unresolved(&name)?
        };
        if !seen.insert(given.clone()) {
            return Err(invalid(
                &name,
                format!("destination name {given:?} used twice"),
            ));
        }
        destinations.push(DestinationConfig { name: given, kind });
    }
    Ok(RouteConfig {
        name,
        auth,
        forward_tests: route.forward_tests,
        destinations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        match var {
            "ALERTS_TOKEN" => Some("s3cret-s3cret-s3cret-s3cret-s3cret".into()),
            "SHORT_TOKEN" => Some("x".into()),
            "SLACK_ALERTS_URL" => Some("https://hooks.slack.com/services/T/B/x".into()),
            "BAD_URL" => Some("file:///etc/passwd".into()),
            "TAPLINE_WAREHOUSE" => Some("postgres://app:pw@db/w".into()),
            _ => None,
        }
    }

    const ISSUE_SHAPE: &str = r#"
[[routes]]
name = "alerts"
auth = { header = "X-Tapline-Token", secret_env = "ALERTS_TOKEN" }
[[routes.destinations]]
type = "slack"
url_env = "SLACK_ALERTS_URL"
"#;

    #[test]
    fn the_issue_shape_parses_with_defaults() {
        let config = RelayConfig::parse("t", ISSUE_SHAPE, env).unwrap();
        let route = config.route("alerts").unwrap();
        assert_eq!(route.destinations[0].name, "slack-1");
        assert!(!route.forward_tests);
        assert_eq!(config.settings.body_limit_bytes, DEFAULT_BODY_LIMIT_BYTES);
        assert!(
            !format!("{config:?}").contains("s3cret"),
            "secrets never in Debug"
        );
    }

    #[test]
    fn retention_defaults_to_a_week_and_must_cover_the_dedupe_window() {
        let config = RelayConfig::parse("t", ISSUE_SHAPE, env).unwrap();
        assert_eq!(config.settings.retention, DEFAULT_RETENTION);
        let text = format!("[settings]\nretention_days = 0.5\n{ISSUE_SHAPE}");
        let config = RelayConfig::parse("t", &text, env).unwrap();
        assert_eq!(config.settings.retention, Duration::from_secs(43_200));
        let text =
            format!("[settings]\nretention_days = 1\ndedupe_window_secs = 90000\n{ISSUE_SHAPE}");
        let err = RelayConfig::parse("t", &text, env).unwrap_err();
        assert!(err.to_string().contains("dedupe_window_secs"), "{err}");
    }

    #[test]
    fn a_warehouse_destination_reads_its_url_from_tapline_warehouse_by_default() {
        let text = format!("{ISSUE_SHAPE}[[routes.destinations]]\ntype = \"warehouse\"\n");
        let config = RelayConfig::parse("t", &text, env).unwrap();
        let dest = &config.route("alerts").unwrap().destinations[1];
        assert_eq!(dest.name, "warehouse-2");
        let DestinationKind::Warehouse { url } = &dest.kind else {
            panic!("warehouse")
        };
        assert_eq!(url.expose(), "postgres://app:pw@db/w");
        assert!(!format!("{config:?}").contains("pw@"), "URL never in Debug");

        let text = format!("{text}url_env = \"BAD_URL\"\n");
        let err = RelayConfig::parse("t", &text, env).unwrap_err();
        assert!(
            err.to_string()
                .contains("BAD_URL does not hold a warehouse URL"),
            "{err}"
        );
        assert!(!err.to_string().contains("passwd"), "{err}");
    }

    #[test]
    fn retry_schedules_parse_for_the_settings_and_per_route_and_conflicts_are_refused() {
        let config = RelayConfig::parse("t", ISSUE_SHAPE, env).unwrap();
        assert_eq!(
            config.settings.retry.default,
            RouteRetry::schedule(DEFAULT_RETRY_SCHEDULE.to_vec())
        );
        let text = format!(
            "[settings]\nretry_schedule = [\"1m\"]\n{}",
            ISSUE_SHAPE.replace(
                "auth = {",
                "retry_schedule = [\"5s\", \"5m\", \"2h\"]\nauth = {"
            )
        );
        let config = RelayConfig::parse("t", &text, env).unwrap();
        let secs = Duration::from_secs;
        assert_eq!(
            config.settings.retry.default,
            RouteRetry::schedule(vec![secs(60)])
        );
        assert_eq!(
            config.settings.retry.route("alerts"),
            &RouteRetry::schedule(vec![secs(5), secs(300), secs(7200)])
        );
        let err = RelayConfig::parse(
            "t",
            &format!("[settings]\nretry_schedule = [\"1m\"]\nmax_attempts = 3\n{ISSUE_SHAPE}"),
            env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("drop max_attempts"), "{err}");
        let err = RelayConfig::parse("t", &text.replace("\"2h\"", "\"2d\""), env).unwrap_err();
        assert!(err.to_string().contains("\"2d\" is not a wait"), "{err}");
        let err = RelayConfig::parse("t", &text.replace("[\"1m\"]", "[]"), env).unwrap_err();
        assert!(err.to_string().contains("1 to 100 waits"), "{err}");
    }

    #[test]
    fn the_queue_s_schedule_is_the_default_in_the_cloud_and_bounds_the_routes() {
        let secs = Duration::from_secs;
        let route_schedule = ISSUE_SHAPE.replace(
            "auth = {",
            "retry_schedule = [\"5s\", \"5m\", \"2h\"]\nauth = {",
        );
        let config = RelayConfig::parse("t", &route_schedule, env)
            .unwrap()
            .with_queue_schedule(vec![secs(1), secs(2), secs(3)])
            .unwrap();
        assert_eq!(config.settings.retry.default.max_attempts, 4);
        let err = RelayConfig::parse("t", &route_schedule, env)
            .unwrap()
            .with_queue_schedule(vec![secs(1)])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("retry_schedule has 4 attempts; the delivery queue allows 2"),
            "{err}"
        );
        let err = RelayConfig::parse(
            "t",
            &format!("[settings]\nmax_attempts = 3\n{ISSUE_SHAPE}"),
            env,
        )
        .unwrap()
        .with_queue_schedule(vec![secs(1)])
        .unwrap_err();
        assert!(
            err.to_string().contains("TAPLINE_RELAY_RETRY_SCHEDULE"),
            "{err}"
        );
    }

    /// A route with one destination of each type, every secret in its own variable.
    const EVERY_DESTINATION: &str = r#"
[[routes]]
name = "alerts"
auth = { header = "X-Tapline-Token", secret_env = "ALERTS_TOKEN" }
[[routes.destinations]]
type = "slack"
url_env = "SLACK_ALERTS_URL"
[[routes.destinations]]
type = "http"
url_env = "CRM_URL"
signing_secret_env = "CRM_SIGNING"
[[routes.destinations]]
type = "clevertap"
account_id_env = "CT_ACCOUNT"
passcode_env = "CT_PASSCODE"
identity = "profile.identity"
[[routes.destinations.records]]
event = "Relayed"
[[routes.destinations]]
type = "warehouse"
"#;

    #[test]
    fn the_endpoint_reads_route_secrets_only_and_still_checks_destination_shapes() {
        let asked = std::cell::RefCell::new(Vec::new());
        let config = RelayConfig::parse_for(ConfigMode::Endpoint, "t", EVERY_DESTINATION, |var| {
            asked.borrow_mut().push(var.to_string());
            env(var)
        })
        .unwrap();
        assert_eq!(asked.into_inner(), ["ALERTS_TOKEN"]);
        let route = config.route("alerts").unwrap();
        assert!(matches!(route.auth, RouteAuth::Header { .. }));
        let names: Vec<_> = route.destinations.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["slack-1", "http-2", "clevertap-3", "warehouse-4"]);
        assert!(
            route
                .destinations
                .iter()
                .all(|d| matches!(d.kind, DestinationKind::Unresolved))
        );
        assert_eq!(
            RelayConfig::secret_variables(ConfigMode::Endpoint, "t", EVERY_DESTINATION).unwrap(),
            ["ALERTS_TOKEN"]
        );
        // Shapes are still checked: a mapping without records, a name used twice.
        let text =
            EVERY_DESTINATION.replace("[[routes.destinations.records]]\nevent = \"Relayed\"\n", "");
        let err = RelayConfig::parse_for(ConfigMode::Endpoint, "t", &text, env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "route \"alerts\": a clevertap destination needs [[routes.destinations.records]] \
             (its mapping)"
        );
        let text = format!("{EVERY_DESTINATION}name = \"slack-1\"\n");
        let err = RelayConfig::parse_for(ConfigMode::Endpoint, "t", &text, env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "route \"alerts\": destination name \"slack-1\" used twice"
        );
        // And its route secret is required.
        let err = RelayConfig::parse_for(ConfigMode::Endpoint, "t", EVERY_DESTINATION, |_| None)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "route \"alerts\": environment variable ALERTS_TOKEN is not set (it holds the auth \
             secret)"
        );
    }

    #[test]
    fn the_worker_reads_destination_secrets_only_and_refuses_to_start_without_one() {
        let full = |var: &str| match var {
            "CRM_URL" => Some("https://crm.example/hook".into()),
            "CRM_SIGNING" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            "CT_ACCOUNT" => Some("acct".into()),
            "CT_PASSCODE" => Some("pass".into()),
            "ALERTS_TOKEN" => None,
            other => env(other),
        };
        let asked = std::cell::RefCell::new(Vec::new());
        let config = RelayConfig::parse_for(ConfigMode::Worker, "t", EVERY_DESTINATION, |var| {
            asked.borrow_mut().push(var.to_string());
            full(var)
        })
        .unwrap();
        let mut asked = asked.into_inner();
        asked.sort();
        let expected = [
            "CRM_SIGNING",
            "CRM_URL",
            "CT_ACCOUNT",
            "CT_PASSCODE",
            "SLACK_ALERTS_URL",
            "TAPLINE_WAREHOUSE",
        ];
        assert_eq!(asked, expected, "never the route's token");
        assert_eq!(
            RelayConfig::secret_variables(ConfigMode::Worker, "t", EVERY_DESTINATION).unwrap(),
            expected
        );
        let route = config.route("alerts").unwrap();
        assert!(matches!(route.auth, RouteAuth::Unresolved));
        assert!(matches!(
            route.destinations[0].kind,
            DestinationKind::Slack { .. }
        ));
        // A destination secret missing: the worker does not start, naming the variable.
        let err = RelayConfig::parse_for(ConfigMode::Worker, "t", EVERY_DESTINATION, |var| {
            (var != "CT_PASSCODE").then(|| full(var)).flatten()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "route \"alerts\": environment variable CT_PASSCODE is not set (it holds the \
             CleverTap passcode)"
        );
        // The auth's shape is still checked.
        let text = EVERY_DESTINATION.replace("X-Tapline-Token", "X Token");
        let err = RelayConfig::parse_for(ConfigMode::Worker, "t", &text, full).unwrap_err();
        assert_eq!(
            err.to_string(),
            "route \"alerts\": auth.header \"X Token\" is not a header name"
        );
    }

    #[test]
    fn both_reads_every_secret_as_before() {
        let full = |var: &str| match var {
            "CRM_URL" => Some("https://crm.example/hook".into()),
            "CRM_SIGNING" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            "CT_ACCOUNT" => Some("acct".into()),
            "CT_PASSCODE" => Some("pass".into()),
            other => env(other),
        };
        let config = RelayConfig::parse("t", EVERY_DESTINATION, full).unwrap();
        let route = config.route("alerts").unwrap();
        assert!(matches!(route.auth, RouteAuth::Header { .. }));
        assert!(
            !route
                .destinations
                .iter()
                .any(|d| matches!(d.kind, DestinationKind::Unresolved))
        );
        assert_eq!(
            RelayConfig::secret_variables(ConfigMode::Both, "t", EVERY_DESTINATION)
                .unwrap()
                .len(),
            7
        );
        for missing in ["ALERTS_TOKEN", "SLACK_ALERTS_URL", "TAPLINE_WAREHOUSE"] {
            let err = RelayConfig::parse("t", EVERY_DESTINATION, |var| {
                (var != missing).then(|| full(var)).flatten()
            })
            .unwrap_err();
            assert!(
                matches!(&err, ConfigError::MissingEnv { var, .. } if var == missing),
                "{err}"
            );
        }
    }

    #[test]
    fn a_missing_secret_names_the_variable() {
        let text = ISSUE_SHAPE.replace("ALERTS_TOKEN", "NOPE");
        let err = RelayConfig::parse("t", &text, env).unwrap_err();
        assert!(err.to_string().contains("NOPE"), "{err}");
    }

    #[test]
    fn a_route_secret_shorter_than_32_bytes_is_refused_naming_the_route_not_the_secret() {
        let text = ISSUE_SHAPE.replace("ALERTS_TOKEN", "SHORT_TOKEN");
        let err = RelayConfig::parse("t", &text, env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "route \"alerts\": the auth secret in SHORT_TOKEN is shorter than 32 bytes: \
             use a random one (e.g. openssl rand -hex 32)"
        );
        let basic = ISSUE_SHAPE.replace(
            "{ header = \"X-Tapline-Token\", secret_env = \"ALERTS_TOKEN\" }",
            "{ username = \"clevertap\", password_env = \"SHORT_TOKEN\" }",
        );
        let err = RelayConfig::parse("t", &basic, env).unwrap_err();
        assert!(
            err.to_string()
                .contains("Basic auth password in SHORT_TOKEN"),
            "{err}"
        );
    }

    #[test]
    fn signing_secrets_are_standard_webhooks_whsec_keys() {
        let http = |value: &'static str| {
            let text = format!(
                "{ISSUE_SHAPE}[[routes.destinations]]\ntype = \"http\"\nurl_env = \"SLACK_ALERTS_URL\"\nsigning_secret_env = \"SIGNING\"\n"
            );
            RelayConfig::parse("t", &text, move |var| match var {
                "SIGNING" => Some(value.to_string()),
                other => env(other),
            })
        };
        let config =
            http("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
                .unwrap();
        assert!(
            !format!("{config:?}").contains("MfKQ"),
            "keys never in Debug"
        );
        let err = http("a-raw-secret-that-is-long-enough-anyway").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("route \"alerts\": SIGNING: secret #1 does not start with whsec_"),
            "{err}"
        );
        assert!(!err.to_string().contains("long-enough"), "{err}");
    }

    #[test]
    fn non_http_urls_and_typos_are_refused() {
        let text = ISSUE_SHAPE.replace("SLACK_ALERTS_URL", "BAD_URL");
        assert!(RelayConfig::parse("t", &text, env).is_err());
        let text = ISSUE_SHAPE.replace("url_env", "urlenv");
        assert!(matches!(
            RelayConfig::parse("t", &text, env),
            Err(ConfigError::Parse { .. })
        ));
        let text = ISSUE_SHAPE.replace("\"alerts\"", "\"a/b\"");
        assert!(RelayConfig::parse("t", &text, env).is_err());
    }
}
