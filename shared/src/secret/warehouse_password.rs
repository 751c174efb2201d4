//! The warehouse URL with its password: `TAPLINE_WAREHOUSE`, plus the password from the secret
//! `TAPLINE_WAREHOUSE_SECRET_ARN` names (AWS or Google, see [`super::read_secret`]) or from
//! `TAPLINE_WAREHOUSE_PASSWORD` (what Cloud Run sets from a Secret Manager secret, or Kubernetes
//! from a Secret). Errors show the URL redacted.

use super::{Secret, SecretError, read_secret};
use crate::config::{ConfigError, ENV_WAREHOUSE};
use crate::warehouse::url_redaction::{has_secret_parameter, redact_url};

/// The variable naming the Secrets Manager secret that holds the warehouse password.
pub const ENV_WAREHOUSE_SECRET_ARN: &str = "TAPLINE_WAREHOUSE_SECRET_ARN";
/// The variable holding the warehouse password, injected by the platform from its secret store.
pub const ENV_WAREHOUSE_PASSWORD: &str = "TAPLINE_WAREHOUSE_PASSWORD";
/// libpq's password variable, which the command line honours for a PostgreSQL URL without one.
pub const ENV_PGPASSWORD: &str = "PGPASSWORD";

/// `url` with `password` as the password of its user: `postgres://u@h/db` →
/// `postgres://u:PASSWORD@h/db`, the password percent-encoded. A URL that already carries a
/// password, or names no user, is refused: which one to use would be a guess.
pub fn with_password(url: &str, password: &str) -> Result<String, ConfigError> {
    let refuse = |reason: &str| ConfigError::Warehouse {
        url: redact_url(url),
        reason: reason.to_string(),
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| refuse("not a URL"))?;
    // Credentials end at the first `@`, as the PostgreSQL driver reads them; an `@` after a `/`
    // or `?` with no `:` before it belongs to the path or query.
    let (user, host_and_tail) = rest
        .split_once('@')
        .filter(|(user, _)| user.contains(':') || !user.contains(['/', '?']))
        .ok_or_else(|| {
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
    Ok(format!("{scheme}://{user}:{encoded}@{host_and_tail}"))
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
/// `TAPLINE_WAREHOUSE` is not set. Empty values count as unset.
pub async fn warehouse_url_from(
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, SecretError> {
    match env(ENV_WAREHOUSE).filter(|v| !v.is_empty()) {
        Some(url) => Ok(Some(with_configured_password(&url, env).await?)),
        None => Ok(None),
    }
}

/// `url` with the password `TAPLINE_WAREHOUSE_SECRET_ARN` or `TAPLINE_WAREHOUSE_PASSWORD` gives
/// in `env` (see [`with_password`]), or `url` as it is when neither is set; both set is refused.
/// Empty values count as unset; trailing line breaks of the password are dropped (a secret
/// pasted with `echo`). The command line calls it for `--warehouse` too.
pub async fn with_configured_password(
    url: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, SecretError> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    let password = match (set(ENV_WAREHOUSE_SECRET_ARN), set(ENV_WAREHOUSE_PASSWORD)) {
        (None, None) => return Ok(url.to_string()),
        (Some(_), Some(_)) => {
            return Err(ConfigError::Warehouse {
                url: redact_url(url),
                reason: format!(
                    "both {ENV_WAREHOUSE_SECRET_ARN} and {ENV_WAREHOUSE_PASSWORD} are set: keep one"
                ),
            }
            .into());
        }
        (Some(arn), None) => read_secret(&arn).await?,
        (None, Some(password)) => Secret::new(password.trim_end_matches(['\r', '\n'])),
    };
    Ok(with_password(url, password.expose())?)
}

/// `url` with libpq's `PGPASSWORD` from `env` as its password when it is a PostgreSQL URL with
/// a user and no password of its own; otherwise `url` unchanged (as libpq, which uses the
/// variable only when the connection string has no password).
pub fn with_libpq_password(url: &str, env: impl Fn(&str) -> Option<String>) -> String {
    let postgres = ["postgres://", "postgresql://"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    });
    match env(ENV_PGPASSWORD).filter(|v| !v.is_empty()) {
        Some(password) if postgres && !has_secret_parameter(url) => {
            with_password(url, &password).unwrap_or_else(|_| url.to_string())
        }
        _ => url.to_string(),
    }
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

    /// Passwords holding what URL parsers stop at or decode.
    const NASTY: &[&str] = &["s3cr/et", "s3cr?et", "s3cr@et", "s3cr%et", "s3/c?r@e%t#1"];

    fn encoded(password: &str) -> String {
        with_password("x://u@h", password).unwrap()["x://u:".len()..]
            .trim_end_matches("@h")
            .to_string()
    }

    /// On Lambda and Cloud Run the URL gets its password before it is opened: a typo in the URL
    /// must not print the secret, encoded or not.
    #[tokio::test]
    async fn a_typo_in_the_configured_url_never_prints_the_password() {
        let mut urls = vec![
            "postgress://loader@db.example/w",
            "Postgress://loader@db.example/w",
            "bigquery://loader@acme/clevertap",
            "sqlite://loader@?journal=bogus",
        ];
        if cfg!(feature = "postgres") {
            urls.extend([
                "Postgres://loader@db.example:notaport/w",
                "postgres://loader@127.0.0.1:1/w?connect_timeout=2",
                "postgres://loader@db.example/w?unknown=1",
            ]);
        }
        for password in NASTY {
            for url in &urls {
                let env = |name: &str| match name {
                    ENV_WAREHOUSE => Some(url.to_string()),
                    ENV_WAREHOUSE_PASSWORD => Some(format!("{password}\n")),
                    _ => None,
                };
                let full = warehouse_url_from(env).await.unwrap().unwrap();
                assert!(full.contains(&encoded(password)), "{full}");
                let err = match crate::warehouse::open::open(&full).await {
                    Ok(_) => panic!("{url} opened"),
                    Err(e) => crate::error::chain::error_chain(&e),
                };
                assert!(!err.contains(password), "{url}: {err}");
                assert!(!err.contains(&encoded(password)), "{url}: {err}");
                assert!(
                    err.contains("loader:***@") || !err.contains("loader:"),
                    "{err}"
                );
            }
        }
    }

    #[tokio::test]
    async fn refusals_never_print_the_password_already_in_the_url() {
        for password in NASTY {
            let url = format!("postgres://loader:{password}@db.example/w");
            let env = |name: &str| match name {
                ENV_WAREHOUSE => Some(url.clone()),
                ENV_WAREHOUSE_PASSWORD => Some("other".to_string()),
                ENV_WAREHOUSE_SECRET_ARN => Some("arn:aws:secretsmanager:x".to_string()),
                _ => None,
            };
            let err = warehouse_url_from(env).await.unwrap_err().to_string();
            assert!(err.contains("keep one"), "{err}");
            assert!(!err.contains(password), "{err}");
            let err = with_password(&url, "new").unwrap_err().to_string();
            assert!(err.contains("keep only the secret"), "{url}: {err}");
            assert!(!err.contains(password), "{err}");
        }
    }

    #[test]
    fn pgpassword_fills_only_a_postgres_url_without_a_password() {
        let env = |name: &str| (name == ENV_PGPASSWORD).then(|| "s3/c?r@e%t".to_string());
        assert_eq!(
            with_libpq_password("Postgres://loader@db/w", env),
            "Postgres://loader:s3%2Fc%3Fr%40e%25t@db/w"
        );
        for kept in [
            "postgres://loader:own@db/w",
            "postgres://db/w",
            "postgres://loader@db/w?password=own",
            "sqlite://loader@file",
        ] {
            assert_eq!(with_libpq_password(kept, env), kept);
        }
        assert_eq!(
            with_libpq_password("postgres://loader@db/w", |_| None),
            "postgres://loader@db/w"
        );
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
