//! Secrets by reference: the warehouse password, the CleverTap passcode and the relay's route
//! secrets live in a secret store, and the function's environment carries only their names.
//!
//! A reference is read by its form ([`SecretReference`]): `arn:aws:secretsmanager:…` (or any
//! other secret id) from AWS Secrets Manager (feature `aws-secrets`),
//! `projects/P/secrets/S/versions/V` from Google Secret Manager (feature `gcp-secrets`), so the
//! same variables (`TAPLINE_WAREHOUSE_SECRET_ARN`, `CLEVERTAP_PASSCODE_SECRET_ARN`,
//! `TAPLINE_RELAY_SECRET_ARNS`) work on both clouds. Values are read once, at start; they never
//! reach a log.
//!
//! `TAPLINE_WAREHOUSE_SECRET_ARN` names the secret whose value is the password for the user in
//! `TAPLINE_WAREHOUSE`.
//! `TAPLINE_WAREHOUSE_PASSWORD` carries the password itself: what Cloud Run sets from a Secret
//! Manager secret (`infra/gcp` wires it that way), or Kubernetes from a Secret.

use crate::config::{ConfigError, ENV_WAREHOUSE};

/// The variable naming the Secrets Manager secret that holds the warehouse password.
pub const ENV_WAREHOUSE_SECRET_ARN: &str = "TAPLINE_WAREHOUSE_SECRET_ARN";
/// The variable holding the warehouse password, injected by the platform from its secret store.
pub const ENV_WAREHOUSE_PASSWORD: &str = "TAPLINE_WAREHOUSE_PASSWORD";

/// Why the warehouse URL could not be put together.
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

/// `url` with `password` as the password of its user: `postgres://u@h/db` →
/// `postgres://u:PASSWORD@h/db`, the password percent-encoded. A URL that already carries a
/// password, or names no user, is refused: which one to use would be a guess.
pub fn with_password(url: &str, password: &str) -> Result<String, ConfigError> {
    let refuse = |reason: &str| ConfigError::Warehouse {
        url: hide_password(url),
        reason: reason.to_string(),
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| refuse("not a URL"))?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (user, host) = authority.rsplit_once('@').ok_or_else(|| {
        refuse("a password from a secret needs a user in the URL (postgres://USER@HOST/DB)")
    })?;
    if user.contains(':') {
        return Err(refuse(
            "the URL has a password and a secret was named too: keep only the secret",
        ));
    }
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!("{scheme}://{user}:{encoded}@{host}{tail}"))
}

/// `url` with any password in it replaced by `***`.
fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}{}", &rest[authority_end..])
        }
        _ => url.to_string(),
    }
}

/// The warehouse URL from the environment: `TAPLINE_WAREHOUSE`, with the password from
/// `TAPLINE_WAREHOUSE_SECRET_ARN` (an AWS or a Google secret reference, see [`read_secret`]) or
/// `TAPLINE_WAREHOUSE_PASSWORD` when one of them is set. Both set is refused.
pub async fn warehouse_url_from_env() -> Result<String, SecretError> {
    warehouse_url_from(|name| std::env::var(name).ok())
        .await?
        .ok_or_else(|| {
            ConfigError::Warehouse {
                url: String::new(),
                reason: format!("{ENV_WAREHOUSE} is not set"),
            }
            .into()
        })
}

/// [`warehouse_url_from_env`] over any environment (`env` gives a variable's value): `None` when
/// `TAPLINE_WAREHOUSE` is not set. Empty values count as unset. Trailing line breaks of the
/// password are dropped (a secret pasted with `echo`).
pub async fn warehouse_url_from(
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, SecretError> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    let Some(url) = set(ENV_WAREHOUSE) else {
        return Ok(None);
    };
    let password = match (set(ENV_WAREHOUSE_SECRET_ARN), set(ENV_WAREHOUSE_PASSWORD)) {
        (None, None) => return Ok(Some(url)),
        (Some(_), Some(_)) => {
            return Err(ConfigError::Warehouse {
                url: hide_password(&url),
                reason: format!(
                    "both {ENV_WAREHOUSE_SECRET_ARN} and {ENV_WAREHOUSE_PASSWORD} are set: keep one"
                ),
            }
            .into());
        }
        (Some(arn), None) => read_secret(&arn).await?,
        (None, Some(password)) => password,
    };
    Ok(Some(with_password(
        &url,
        password.trim_end_matches(['\r', '\n']),
    )?))
}

/// Which store a secret reference points into, by its form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretReference {
    /// Google Secret Manager: a version's resource name, `projects/P/secrets/S/versions/V`
    /// (`V` a number or `latest`); `projects/P/secrets/S` means its latest version.
    GoogleVersion(String),
    /// AWS Secrets Manager: an ARN (`arn:aws:secretsmanager:…`) or a secret name.
    Aws(String),
}

impl SecretReference {
    /// Classifies `reference`. Anything not shaped like a Secret Manager name is an AWS secret
    /// id, so existing AWS deployments (ARNs or names) read as before.
    pub fn parse(reference: &str) -> Self {
        let parts: Vec<&str> = reference.split('/').collect();
        let named = |i: usize| parts.get(i).is_some_and(|p| !p.is_empty());
        match parts.as_slice() {
            ["projects", _, "secrets", _] if named(1) && named(3) => {
                SecretReference::GoogleVersion(format!("{reference}/versions/latest"))
            }
            ["projects", _, "secrets", _, "versions", _] if named(1) && named(3) && named(5) => {
                SecretReference::GoogleVersion(reference.to_string())
            }
            _ => SecretReference::Aws(reference.to_string()),
        }
    }
}

/// The string value of the secret `reference` names: an AWS Secrets Manager ARN or a Google
/// Secret Manager version (see [`SecretReference`]). Never log what it returns.
pub async fn read_secret(reference: &str) -> Result<String, SecretError> {
    match SecretReference::parse(reference) {
        SecretReference::GoogleVersion(name) => read_gcp_secret(&name).await,
        SecretReference::Aws(id) => read_aws_secret(&id).await,
    }
}

/// The string value of the Secrets Manager secret `arn` (the usual AWS credential chain and
/// `AWS_ENDPOINT_URL`).
#[cfg(feature = "aws-secrets")]
async fn read_aws_secret(arn: &str) -> Result<String, SecretError> {
    let shared = aws_config::load_from_env().await;
    let client = aws_sdk_secretsmanager::Client::new(&shared);
    let read_err = |source: Box<dyn std::error::Error + Send + Sync>| SecretError::Read {
        arn: arn.to_string(),
        source,
    };
    let value = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            read_err(
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                    .to_string()
                    .into(),
            )
        })?;
    value.secret_string().map(str::to_string).ok_or_else(|| {
        read_err("the secret has no string value (binary secrets are not supported)".into())
    })
}

/// Fails: this build has no Secrets Manager client.
#[cfg(not(feature = "aws-secrets"))]
async fn read_aws_secret(arn: &str) -> Result<String, SecretError> {
    Err(SecretError::Read {
        arn: arn.to_string(),
        source: "this build reads no AWS Secrets Manager (the `aws-secrets` feature is off)".into(),
    })
}

/// The value of the Secret Manager version `name` (`projects/P/secrets/S/versions/V`), through
/// Google's endpoint or `SECRET_MANAGER_ENDPOINT` (see [`crate::gcp_secrets`]).
#[cfg(feature = "gcp-secrets")]
async fn read_gcp_secret(name: &str) -> Result<String, SecretError> {
    crate::gcp_secrets::SecretManager::from_env()
        .map_err(|e| SecretError::Read {
            arn: name.to_string(),
            source: Box::new(e),
        })?
        .access(name)
        .await
}

/// Fails: this build has no Secret Manager client.
#[cfg(not(feature = "gcp-secrets"))]
async fn read_gcp_secret(name: &str) -> Result<String, SecretError> {
    Err(SecretError::Read {
        arn: name.to_string(),
        source: "this build reads no Google Secret Manager (the `gcp-secrets` feature is off)"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_goes_into_the_user_info_encoded() {
        assert_eq!(
            with_password(
                "postgres://loader@db.example.com:5432/analytics?schema=ct",
                "p@ss:w/rd"
            )
            .unwrap(),
            "postgres://loader:p%40ss%3Aw%2Frd@db.example.com:5432/analytics?schema=ct"
        );
        assert_eq!(
            with_password("postgres://u@h", "x").unwrap(),
            "postgres://u:x@h"
        );
    }

    #[test]
    fn references_are_read_by_their_form() {
        use SecretReference::*;
        assert_eq!(
            SecretReference::parse("projects/acme/secrets/tapline-passcode/versions/3"),
            GoogleVersion("projects/acme/secrets/tapline-passcode/versions/3".into())
        );
        assert_eq!(
            SecretReference::parse("projects/acme/secrets/tapline-passcode"),
            GoogleVersion("projects/acme/secrets/tapline-passcode/versions/latest".into())
        );
        for aws in [
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tapline/passcode-AbCdEf",
            "tapline/passcode",
            "projects/acme/secrets//versions/1",
            "projects/acme/topics/t",
        ] {
            assert_eq!(SecretReference::parse(aws), Aws(aws.into()), "{aws}");
        }
    }

    #[test]
    fn ambiguous_urls_are_refused_without_showing_a_password() {
        let err = with_password("postgres://u:old@h/db", "new")
            .unwrap_err()
            .to_string();
        assert!(err.contains("keep only the secret"), "{err}");
        assert!(!err.contains("old"), "{err}");
        let err = with_password("postgres://h/db", "new")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a user"), "{err}");
    }
}
