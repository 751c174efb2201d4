//! Secrets: the one type that holds a secret value ([`Secret`], printed as `[redacted]`), and
//! secrets by reference (the warehouse password, the CleverTap passcode, the relay's route and
//! destination secrets live in a secret store; the function's environment carries their names).
//!
//! A reference is read by its form ([`SecretReference`], [`read_secret`]): AWS Secrets Manager
//! (feature `aws-secrets`) or Google Secret Manager (`gcp`, feature `gcp-secrets`), so the same
//! variables (`TAPLINE_WAREHOUSE_SECRET_ARN`, `CLEVERTAP_PASSCODE_SECRET_ARN`,
//! `TAPLINE_RELAY_SECRET_ARNS`) work on both clouds. Values are read once, at start; they never
//! reach a log.

mod aws;
#[cfg(feature = "gcp-secrets")]
pub mod gcp;
mod reference;
mod warehouse_password;

use std::fmt;

use crate::config::ConfigError;

pub use reference::{SecretReference, read_secret};
pub use warehouse_password::{
    ENV_PGPASSWORD, ENV_WAREHOUSE_PASSWORD, ENV_WAREHOUSE_SECRET_ARN, warehouse_url_from,
    warehouse_url_from_env, with_configured_password, with_libpq_password, with_password,
};

/// What `Debug` and `Display` print in place of a secret.
pub const REDACTED: &str = "[redacted]";

/// A secret value: a password, a passcode, a token, a webhook URL, a signing key. `Debug` and
/// `Display` print `[redacted]`, so no log line, error or derived `Debug` carries it by accident;
/// [`Secret::expose`] gives the value to the one place that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: pass it on (a header, a connection), never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Why a secret could not be read, or the warehouse URL put together with one.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A variable is missing or unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The secret could not be read (permissions, a wrong ARN or name, the service).
    #[error("cannot read secret {arn}")]
    Read {
        /// The secret's reference: an ARN or a Secret Manager version name (not a secret itself).
        arn: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_its_value() {
        let secret = Secret::new("TOP-SECRET-42");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), "TOP-SECRET-42");
    }
}
