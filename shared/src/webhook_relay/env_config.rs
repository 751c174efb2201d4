//! The relay's configuration on Lambda (feature `sqs`), as `infra/aws` wires it: the TOML itself in
//! `TAPLINE_RELAY_CONFIG_TOML` (or a file named by `TAPLINE_RELAY_CONFIG`), and the secrets it
//! names (`secret_env`, `url_env`, …) that the function's [`ConfigMode`] needs, from the
//! environment or, when missing there, from AWS Secrets Manager through
//! `TAPLINE_RELAY_SECRET_ARNS`, a JSON map NAME → ARN. Read once, at cold start; secret values
//! never reach a log. A warehouse destination's `TAPLINE_WAREHOUSE` gets its password from
//! `TAPLINE_WAREHOUSE_SECRET_ARN`, as in the other functions (never on the endpoint).

use std::collections::HashMap;
use std::path::Path;

use crate::config::ENV_WAREHOUSE;

use crate::webhook_relay::config::{ConfigError, ConfigMode, RelayConfig};

/// The path of the TOML file (default `relay.toml` beside the bootstrap).
pub const ENV_CONFIG: &str = "TAPLINE_RELAY_CONFIG";
/// The TOML itself; wins over [`ENV_CONFIG`] (what `infra/aws` sets).
pub const ENV_CONFIG_TOML: &str = "TAPLINE_RELAY_CONFIG_TOML";
/// JSON map of secret name → Secrets Manager ARN.
pub const ENV_SECRET_ARNS: &str = "TAPLINE_RELAY_SECRET_ARNS";
/// JSON list of the waits of the delivery queue's retry schedule (`["5s", "5m", …]`), which
/// Terraform derives the queue's redelivery limits from: every route's default schedule.
pub const ENV_RETRY_SCHEDULE: &str = "TAPLINE_RELAY_RETRY_SCHEDULE";

/// A variable a cloud function needs is missing or empty: it fails its start.
#[derive(Debug, thiserror::Error)]
#[error("{name} is not set{why}")]
pub struct MissingEnv {
    /// The variable.
    pub name: &'static str,
    /// What it holds, as `": …"`, or empty.
    pub why: &'static str,
}

/// The value of `name`, which must be set and not empty.
pub fn required_env(name: &'static str) -> Result<String, MissingEnv> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(MissingEnv { name, why: "" })
}

/// The Lambda configuration could not be put together: the function fails its cold start.
#[derive(Debug, thiserror::Error)]
pub enum LambdaConfigError {
    /// The TOML, or a secret it names, is wrong or missing.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `TAPLINE_RELAY_SECRET_ARNS` is not a JSON object of strings.
    #[error("{ENV_SECRET_ARNS} is not a JSON object of secret name to ARN")]
    SecretArns(#[source] serde_json::Error),
    /// `TAPLINE_RELAY_RETRY_SCHEDULE` is not a JSON list of strings.
    #[error("{ENV_RETRY_SCHEDULE} is not a JSON list of waits such as [\"5s\", \"5m\"]")]
    RetrySchedule(#[source] serde_json::Error),
    /// A secret could not be read (permissions, a wrong ARN, the service).
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
}

/// The values of the secrets in `arns_json` (NAME → ARN) named in `needed` that `env` does not
/// already have, read from Secrets Manager; the others are never asked for. Trailing line
/// breaks are dropped (a secret pasted with `echo`).
pub async fn secrets_from_arns(
    arns_json: &str,
    needed: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<String, String>, LambdaConfigError> {
    let arns: HashMap<String, String> =
        serde_json::from_str(arns_json).map_err(LambdaConfigError::SecretArns)?;
    let mut values = HashMap::new();
    for (name, arn) in arns {
        if !needed.contains(&name) || env(&name).is_some_and(|v| !v.is_empty()) {
            continue;
        }
        let value = crate::secret::read_secret(&arn).await?;
        values.insert(name, value.expose().to_string());
    }
    Ok(values)
}

/// The configuration for `mode` from `env` (the process environment in the functions; a map in
/// tests): the endpoint reads route secrets only, the worker destination secrets only.
pub async fn relay_config(
    mode: ConfigMode,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RelayConfig, LambdaConfigError> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    let (origin, text) = match set(ENV_CONFIG_TOML) {
        Some(text) => (ENV_CONFIG_TOML.to_string(), text),
        None => {
            let path = set(ENV_CONFIG).unwrap_or_else(|| "relay.toml".into());
            let text =
                std::fs::read_to_string(Path::new(&path)).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
            (path, text)
        }
    };
    let needed = RelayConfig::secret_variables(mode, &origin, &text)?;
    let mut secrets = match set(ENV_SECRET_ARNS) {
        Some(json) => secrets_from_arns(&json, &needed, &set).await?,
        None => HashMap::new(),
    };
    // `TAPLINE_WAREHOUSE` with its password, put together as every Tapline function does; the
    // endpoint never opens the warehouse, so it reads neither.
    if needed.iter().any(|var| var == ENV_WAREHOUSE)
        && let Some(url) = crate::secret::warehouse_url_from(&set).await?
    {
        secrets.insert(ENV_WAREHOUSE.to_string(), url);
    }
    let config = RelayConfig::parse_for(mode, &origin, &text, |var| {
        // The warehouse URL with its password wins over the bare one in the environment.
        if var == ENV_WAREHOUSE && secrets.contains_key(var) {
            return secrets.get(var).cloned();
        }
        set(var).or_else(|| secrets.get(var).cloned())
    })?;
    match set(ENV_RETRY_SCHEDULE) {
        Some(json) => {
            let waits: Vec<String> =
                serde_json::from_str(&json).map_err(LambdaConfigError::RetrySchedule)?;
            let waits = crate::webhook_relay::config::schedule("*", ENV_RETRY_SCHEDULE, &waits)?;
            Ok(config.with_queue_schedule(waits)?)
        }
        None => Ok(config),
    }
}

/// [`relay_config`] over the process environment: what the Lambda functions and the Cloud Run
/// services call at start, each with its own mode.
pub async fn relay_config_from_env(mode: ConfigMode) -> Result<RelayConfig, LambdaConfigError> {
    relay_config(mode, |name| std::env::var(name).ok()).await
}
