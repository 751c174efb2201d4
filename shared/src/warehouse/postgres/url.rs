//! `postgres://` URLs: what the driver reads, Tapline's own parameters (`schema`, `bi_schema`,
//! TLS verification), and the redacted form that messages show.

use std::path::PathBuf;
use std::str::FromStr;

use tokio_postgres::Config;

use super::tls::TlsPolicy;
use crate::config::ConfigError;
use crate::warehouse::naming::MAX_IDENTIFIER_BYTES;
use crate::warehouse::url_redaction;

/// What the BI schema's name adds to the raw schema's by default (`public` → `public_bi`).
const BI_SCHEMA_SUFFIX: &str = "_bi";

/// What a `postgres://` URL says, with Tapline's own parameters taken out.
pub(super) struct ParsedUrl {
    pub(super) config: Config,
    pub(super) schema: String,
    /// The schema of the typed views (`bi_schema=NAME`, default `<schema>_bi`).
    pub(super) bi_schema: String,
    pub(super) tls: TlsPolicy,
    pub(super) target: String,
}

/// The URL with any password replaced by `***`, for messages and logs (see
/// [`url_redaction::redact_url`], which every scheme shares).
pub fn redact(url: &str) -> String {
    url_redaction::redact_url(url)
}

/// Parses a `postgres://` URL; errors never show its password.
pub(super) fn parse_url(url: &str) -> Result<ParsedUrl, ConfigError> {
    let bad = |reason: String| ConfigError::Warehouse {
        url: redact(url),
        reason,
    };
    // The driver would read anything else as a key-value string, whose errors echo its text.
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(bad("use postgres://USER@HOST/DB".to_string()));
    }
    // The query starts after the credentials (which the driver ends at the first `@`): a
    // password may hold `?`.
    let credentials_end = url.find('@').map_or(0, |at| at + 1);
    let (base, query) = match url[credentials_end..].find('?') {
        Some(i) => (&url[..credentials_end + i], &url[credentials_end + i + 1..]),
        None => (url, ""),
    };
    let mut schema = "public".to_string();
    let mut bi_schema = None;
    let mut root_cert = None;
    let mut verify = false;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", value)) if !value.is_empty() => schema = value.to_string(),
            Some(("bi_schema", value)) if !value.is_empty() => bi_schema = Some(value.to_string()),
            Some(("sslrootcert", value)) if !value.is_empty() => {
                root_cert = Some(PathBuf::from(value))
            }
            // tokio-postgres knows disable/prefer/require; verification is ours to do.
            Some(("sslmode", "verify-ca" | "verify-full")) => {
                verify = true;
                kept.push("sslmode=require");
            }
            _ => kept.push(pair),
        }
    }
    check_schema_name("schema", &schema).map_err(&bad)?;
    let bi_schema = match bi_schema {
        Some(name) => {
            check_schema_name("bi_schema", &name).map_err(&bad)?;
            name
        }
        None => {
            let name = format!("{schema}{BI_SCHEMA_SUFFIX}");
            check_schema_name("bi_schema", &name).map_err(|_| {
                bad(format!(
                    "the default bi_schema ({schema}{BI_SCHEMA_SUFFIX}) passes \
                     {MAX_IDENTIFIER_BYTES} bytes: name one with bi_schema=NAME"
                ))
            })?;
            name
        }
    };
    if bi_schema == schema {
        return Err(bad(
            "bi_schema must differ from schema: the typed views are named like the raw tables"
                .to_string(),
        ));
    }
    let rebuilt = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config = Config::from_str(&rebuilt).map_err(|e| {
        // The driver's messages name parameters, and a password parameter holding `&` or `=`
        // would have its tail read as one.
        if url_redaction::has_secret_parameter(url) {
            bad(
                "the driver cannot read it (details withheld: the URL has a password parameter; \
                 percent-encode `&`, `=` and `%` in it)"
                    .to_string(),
            )
        } else {
            bad(e.to_string())
        }
    })?;
    // The driver ends credentials at the first `@`: a password holding one leaves the rest in
    // the host name, which messages show.
    if config
        .get_hosts()
        .iter()
        .any(|h| matches!(h, tokio_postgres::config::Host::Tcp(name) if name.contains('@')))
    {
        return Err(bad(
            "the host name holds `@`: percent-encode `@` in the password as %40".to_string(),
        ));
    }
    if config.get_application_name().is_none() {
        config.application_name("tapline");
    }
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_string());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let target = format!(
        "postgres://{}@{host}:{port}/{}?schema={schema}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    );
    let tls = if verify || root_cert.is_some() {
        TlsPolicy::Verify { root_cert }
    } else {
        TlsPolicy::EncryptOnly
    };
    Ok(ParsedUrl {
        config,
        schema,
        bi_schema,
        tls,
        target,
    })
}

/// A schema name PostgreSQL keeps as given: longer names are cut to 63 bytes without an error
/// (two long names could become one), and control characters have no place in one.
fn check_schema_name(parameter: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "{parameter} passes {MAX_IDENTIFIER_BYTES} bytes, PostgreSQL's limit for a name"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{parameter} holds a control character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_leave_the_url() {
        assert_eq!(
            redact("postgres://app:s3cret@db.example:5432/w?schema=ct&sslmode=require"),
            "postgres://app:***@db.example:5432/w?schema=ct&sslmode=require"
        );
        assert_eq!(
            redact("postgresql://u@h/d?password=s3cret&x=1"),
            "postgresql://u@h/d?password=***"
        );
        assert_eq!(redact("postgres://h/d"), "postgres://h/d");
    }

    #[test]
    fn unusable_urls_are_refused_without_their_password() {
        // (url, the secret text that must not show)
        for (url, secret) in [
            ("postgres://u:p@zz9@db/w", "zz9"),
            ("postgres://u:s3/cr?et@db:notaport/w", "s3/cr?et"),
            ("postgres://u:50%off@db:99999999/w", "50%off"),
            ("postgres://u@db/w?password=s3c&ret=1", "ret"),
            ("postgres://u@db/w?password=s3c&ret", "ret"),
            ("postgres:u:s3cret@db/w", "s3cret"),
            ("host=db password=s3cret", "s3cret"),
        ] {
            let err = parse_url(url).err().map(|e| e.to_string());
            let err = err.unwrap_or_else(|| panic!("{url} parsed"));
            assert!(!err.contains(secret), "{url}: {err}");
        }
        let err = parse_url("postgres://u:p@zz9@db/w")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("percent-encode `@` in the password as %40"),
            "{err}"
        );
    }

    #[test]
    fn passwords_with_url_characters_parse_when_encoded_or_before_the_first_at() {
        let parsed = parse_url("postgres://u:p%40ss/w?x@db/w").unwrap();
        assert_eq!(parsed.config.get_password(), Some(&b"p@ss/w?x"[..]));
        assert_eq!(parsed.target, "postgres://u@db:5432/w?schema=public");
    }

    #[test]
    fn url_parameters_of_our_own_are_taken_out() {
        let parsed =
            parse_url("postgres://app:s3cret@db:6543/w?schema=clevertap&sslmode=require").unwrap();
        assert_eq!(parsed.schema, "clevertap");
        assert_eq!(parsed.bi_schema, "clevertap_bi");
        assert_eq!(parsed.target, "postgres://app@db:6543/w?schema=clevertap");
        assert_eq!(parsed.config.get_application_name(), Some("tapline"));
        assert_eq!(parsed.tls, TlsPolicy::EncryptOnly);
        let full = parse_url("postgres://h/w?sslmode=verify-full").unwrap();
        assert_eq!(full.tls, TlsPolicy::Verify { root_cert: None });
        assert_eq!(
            full.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let rooted = parse_url("postgres://h/w?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert_eq!(
            rooted.tls,
            TlsPolicy::Verify {
                root_cert: Some(PathBuf::from("/ca.pem"))
            }
        );
        let err = match parse_url("postgres://app:s3cret@db/w?sslmode=bogus") {
            Err(e) => e.to_string(),
            Ok(_) => panic!("bogus sslmode accepted"),
        };
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn the_bi_schema_is_named_or_follows_the_schema_within_postgres_limits() {
        let bi = |url: &str| {
            parse_url(url)
                .map(|p| p.bi_schema)
                .map_err(|e| e.to_string())
        };
        assert_eq!(bi("postgres://h/w").as_deref(), Ok("public_bi"));
        assert_eq!(
            bi("postgres://h/w?bi_schema=reporting").as_deref(),
            Ok("reporting")
        );
        assert_eq!(
            bi("postgres://h/w?schema=ct&bi_schema=ct_typed").as_deref(),
            Ok("ct_typed")
        );
        let sixty_one = "s".repeat(61);
        let err = bi(&format!("postgres://h/w?schema={sixty_one}")).unwrap_err();
        assert!(err.contains("name one with bi_schema=NAME"), "{err}");
        assert!(
            bi(&format!(
                "postgres://h/w?schema={sixty_one}&bi_schema=typed"
            ))
            .is_ok()
        );
        let err = bi(&format!("postgres://h/w?bi_schema={}", "b".repeat(64))).unwrap_err();
        assert!(err.contains("bi_schema passes 63 bytes"), "{err}");
        let err = bi(&format!("postgres://h/w?schema={}", "s".repeat(64))).unwrap_err();
        assert!(err.contains("schema passes 63 bytes"), "{err}");
        let err = bi("postgres://h/w?schema=ct&bi_schema=ct").unwrap_err();
        assert!(err.contains("bi_schema must differ from schema"), "{err}");
        let err = bi("postgres://h/w?bi_schema=a\u{7}b").unwrap_err();
        assert!(err.contains("control character"), "{err}");
    }
}
