//! A PostgreSQL schema of its own per test, on the server `with-postgres.sh` started, and psql
//! for checks from outside Tapline.

use std::process::Command;

use crate::{Run, postgres_url, tapline};

/// One test's schema (`<prefix>_<test>_<pid>`).
pub struct PgSchema {
    /// The schema name.
    pub schema: String,
}

impl PgSchema {
    /// The schema for `test`; Tapline creates it on first load.
    pub fn new(test: &str) -> Self {
        Self {
            schema: format!("cli_{test}_{}", std::process::id()),
        }
    }

    /// The warehouse URL for this schema.
    pub fn url(&self) -> String {
        with_param(&postgres_url(), &format!("schema={}", self.schema))
    }

    /// Runs `sql` with this schema first on the search path; the output unaligned, trimmed.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                postgres_url().as_str(),
                "-tAq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
            ])
            .arg(format!("SET search_path TO {}; {sql}", self.schema))
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `tapline load PATH --warehouse <this schema>`.
    pub fn load(&self, path: &str) -> Run {
        tapline(&["load", path, "--warehouse", &self.url()])
    }
}

/// `url` with one more query parameter.
pub fn with_param(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}
