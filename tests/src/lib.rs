//! Shared helpers for Tapline's integration tests, grouped by what they are:
//!
//! - [`conformance`]: the suites every adapter of a port runs (warehouse, storage, the relay's
//!   delivery queue and claim store);
//! - [`doubles`]: our own stand-ins where no local real part exists (CleverTap, Slack, BigQuery
//!   faults, Secret Manager, Pub/Sub) and fault injection;
//! - [`completeness_set`]: the export set of `tapline-sample-exports completeness`, read back;
//! - [`servers`]: the real local servers (PostgreSQL, moto, fake-gcs-server, cargo-lambda, the
//!   Cloud Run binaries) and their clients;
//! - here: running the built binaries, making export files, reading a SQLite warehouse.

pub mod completeness_set;
pub mod conformance;
pub mod doubles;
pub mod pull_case;
pub mod servers;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flate2::Compression;
use flate2::write::GzEncoder;

/// The header of CleverTap's event CSV export: its 21 documented fixed columns.
pub fn fixed_header() -> String {
    tapline::export::FIXED_EVENT_COLUMNS.join(",")
}

/// Gzip-compresses `data` as one member.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// A binary built by cargo in this workspace (`tapline`, `tapline-sample-exports`).
pub fn bin(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` (make test does)",
        path.display()
    );
    path
}

/// What a command did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `tapline` with `args`, without inheriting Tapline's environment variables.
pub fn tapline(args: &[&str]) -> Run {
    tapline_command()
        .args(args)
        .output()
        .expect("run tapline")
        .into()
}

/// The `tapline` binary with none of the developer's own settings (see [`command_without_user_env`]).
pub fn tapline_command() -> Command {
    command_without_user_env(bin("tapline"))
}

/// `program` with none of the developer's own settings: every `TAPLINE_*` variable (warehouse,
/// time zone, limits, passwords), every `CLEVERTAP_*` one and libpq's `PGPASSWORD` are removed, so
/// a test sees the defaults unless it sets a variable itself. `TAPLINE_TEST_*` (the suite's own
/// servers) stay.
pub fn command_without_user_env(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let user_setting = (name.starts_with("TAPLINE_") && !name.starts_with("TAPLINE_TEST_"))
            || name.starts_with("CLEVERTAP_")
            || name == "PGPASSWORD";
        if user_setting {
            command.env_remove(name.as_ref());
        }
    }
    command
}

/// A `tapline load` fixture: an `exports/` folder and a SQLite warehouse file in a temporary
/// directory (removed when dropped). Test files wrap it with their own helpers.
pub struct ExportCase {
    dir: tempfile::TempDir,
    /// The exports folder (`<tmp>/exports`, created).
    pub root: PathBuf,
    /// The SQLite warehouse file (`<tmp>/w.sqlite`, created by the first load).
    pub db: PathBuf,
}

impl Default for ExportCase {
    fn default() -> Self {
        Self::new()
    }
}

impl ExportCase {
    /// A fresh temporary directory with an empty `exports/` folder.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path().join("exports");
        std::fs::create_dir_all(&root).expect("exports folder");
        let db = dir.path().join("w.sqlite");
        Self { dir, root, db }
    }

    /// The temporary directory holding `exports/` and the warehouse.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` to `exports/<name>`, creating its folders.
    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("folders");
        std::fs::write(&path, bytes).expect("write");
        path
    }

    /// The warehouse URL.
    pub fn warehouse(&self) -> String {
        format!("sqlite://{}", self.db.display())
    }

    /// `tapline load exports/ --warehouse … <extra>`.
    pub fn load(&self, extra: &[&str]) -> Run {
        let root = self.root.to_str().expect("UTF-8 path").to_string();
        let wh = self.warehouse();
        let mut args = vec!["load", root.as_str(), "--warehouse", wh.as_str()];
        args.extend_from_slice(extra);
        tapline(&args)
    }

    /// Rows of a query on the warehouse file.
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        sqlite_rows(&self.db, sql)
    }

    /// The first value of a query on the warehouse file.
    pub fn value(&self, sql: &str) -> Option<String> {
        sqlite_value(&self.db, sql)
    }
}

/// Declares `struct Case(ExportCase)`, dereferencing to [`ExportCase`], for a test file to add
/// its own helpers to.
#[macro_export]
macro_rules! export_case {
    () => {
        /// The shared `tapline load` fixture, with this file's helpers.
        struct Case($crate::ExportCase);

        impl std::ops::Deref for Case {
            type Target = $crate::ExportCase;

            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }
    };
}

/// The counts on the sample generator's last line (`EXPECTED good_rows=7146 bad_rows=3 …`).
pub fn expected_counts(generator_stdout: &str) -> std::collections::HashMap<String, u64> {
    let line = generator_stdout.lines().last().unwrap_or_default();
    let pairs = line
        .strip_prefix("EXPECTED ")
        .unwrap_or_else(|| panic!("no EXPECTED line in {generator_stdout}"));
    pairs
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            (k.to_string(), v.parse().expect("a count"))
        })
        .collect()
}

/// Runs a query on a SQLite file directly (not through Tapline), every value as text.
pub fn sqlite_rows(path: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let conn = rusqlite::Connection::open(path).expect("open sqlite");
    let mut stmt = conn.prepare(sql).expect("prepare");
    let n = stmt.column_count();
    stmt.query_map([], |row| {
        (0..n)
            .map(|i| {
                Ok(match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => None,
                    rusqlite::types::ValueRef::Integer(v) => Some(v.to_string()),
                    rusqlite::types::ValueRef::Real(v) => Some(v.to_string()),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        Some(String::from_utf8_lossy(t).into_owned())
                    }
                })
            })
            .collect()
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// One value from a query on a SQLite file.
pub fn sqlite_value(path: &Path, sql: &str) -> Option<String> {
    sqlite_rows(path, sql)
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .flatten()
}

/// A valid CSV export of `rows` rows of `event` on 2022-09-21: the documented fixed columns
/// plus `eventProps.Amount`, one row a second from midnight.
pub fn export_csv(event: &str, rows: usize) -> String {
    let mut text = format!("{},eventProps.Amount\n", fixed_header());
    for i in 0..rows {
        let ts = format!(
            "20220921{:02}{:02}{:02}",
            i / 3600 % 24,
            i / 60 % 60,
            i % 60
        );
        text.push_str(&fixed_row(&ts, event, &format!("u{i}"), &[&i.to_string()]));
        text.push('\n');
    }
    text
}

/// A row of CleverTap's fixed columns plus extra values, ts and event first.
pub fn fixed_row(ts: &str, event: &str, identity: &str, extra: &[&str]) -> String {
    let mut fields = vec![ts.to_string(), event.to_string(), identity.to_string()];
    fields.extend(std::iter::repeat_n(String::new(), 18));
    fields.extend(extra.iter().map(|s| s.to_string()));
    fields.join(",")
}

/// The PostgreSQL server the suite runs against (`tests/scripts/with-postgres.sh` starts one
/// and sets `TAPLINE_TEST_POSTGRES_URL`; `make test` runs the suite under it).
pub fn postgres_url() -> String {
    std::env::var("TAPLINE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "TAPLINE_TEST_POSTGRES_URL is not set: run `make test`, or \
             `tests/scripts/with-postgres.sh cargo test` to start a throwaway PostgreSQL"
        )
    })
}
