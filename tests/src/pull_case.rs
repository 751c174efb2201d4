//! A `tapline pull …` case against the CleverTap API double: the double, a temporary folder,
//! a warehouse (a SQLite file there unless a test names another) and the variables every run
//! of the case gets, so that a test states only the double's data and faults, its flags and
//! its assertions.

use std::path::PathBuf;

use serde_json::Value;

use crate::Run;
use crate::doubles::clevertap_api::{ClevertapApi, Seen};

/// One case: the double, its folder, its warehouse.
pub struct PullCase {
    /// The temporary folder (the SQLite warehouse lives in it as `w.sqlite`).
    pub dir: tempfile::TempDir,
    /// The SQLite warehouse file (not created by this builder; unused when the warehouse is
    /// another).
    pub db: PathBuf,
    /// The CleverTap API double the runs talk to.
    pub api: ClevertapApi,
    warehouse: String,
    env: Vec<(String, String)>,
}

/// The arguments and variables of one `tapline` run; the case's warehouse is added by
/// [`PullCase::run`].
#[derive(Clone, Debug)]
pub struct Args {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Args {
    /// Adds arguments as they are (`["--event", "Charged"]`, `["-vv"]`).
    pub fn arg(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// `--event EVENT`.
    pub fn event(self, event: &str) -> Self {
        self.arg(&["--event", event])
    }

    /// `--from FROM --to TO`.
    pub fn days(self, from: &str, to: &str) -> Self {
        self.arg(&["--from", from, "--to", to])
    }

    /// `--from DAY --to DAY`.
    pub fn day(self, day: &str) -> Self {
        self.days(day, day)
    }

    /// Sets `name=value` for this run (over the case's own variables).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// The arguments so far.
    pub fn to_vec(&self) -> Vec<String> {
        self.args.clone()
    }
}

impl PullCase {
    /// A case whose warehouse is `w.sqlite` in its temporary folder.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.sqlite");
        let warehouse = format!("sqlite://{}", db.display());
        Self {
            dir,
            db,
            api: ClevertapApi::start().await,
            warehouse,
            env: Vec::new(),
        }
    }

    /// A case whose warehouse is `url` (PostgreSQL).
    pub async fn on(url: String) -> Self {
        let mut case = Self::sqlite().await;
        case.warehouse = url;
        case
    }

    /// Sets `name=value` for every run of this case.
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// The warehouse URL.
    pub fn warehouse(&self) -> &str {
        &self.warehouse
    }

    /// `tapline ARGS` (no warehouse: commands that are not pulls).
    pub fn tapline(&self, args: &[&str]) -> Args {
        Args {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
        }
    }

    /// `tapline pull KIND`.
    pub fn pull(&self, kind: &str) -> Args {
        self.tapline(&["pull", kind])
    }

    /// `tapline pull events --batch-size 10`: ten records a page, so the double's records
    /// make several pages.
    pub fn events(&self) -> Args {
        self.pull("events").arg(&["--batch-size", "10"])
    }

    /// [`Self::events`] for `event` on 2022-09-22 alone.
    pub fn events_day(&self, event: &str) -> Args {
        self.events().event(event).day("2022-09-22")
    }

    fn command(&self, args: &Args) -> std::process::Command {
        let mut argv = args.args.clone();
        argv.extend(["--warehouse".to_string(), self.warehouse.clone()]);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .chain(&args.env)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.api.command(&argv, &env)
    }

    /// Runs `args` with `--warehouse` (this case's) on a blocking thread, so the double keeps
    /// answering meanwhile.
    pub async fn run(&self, args: &Args) -> Run {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || Run::from(command.output().expect("run tapline")))
            .await
            .unwrap()
    }

    /// [`Self::run`], which must exit 0; its stdout.
    pub async fn run_ok(&self, args: &Args) -> String {
        let run = self.run(args).await;
        assert_ok(&run);
        run.stdout
    }

    /// Runs `args` and kills the process while it waits for page `page` of `stream` (an event,
    /// or `profiles/EVENT`), which the double holds back until then.
    pub async fn run_killed_at_page(&self, args: &Args, stream: &str, page: u64) {
        self.api.block_at(stream, page);
        let mut child = self.command(args).spawn().unwrap();
        self.api.wait_until_blocked().await;
        child.kill().unwrap();
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        assert!(!status.success());
        self.api.unblock();
    }

    /// `tapline status` on this case's warehouse: its stdout.
    pub async fn status(&self) -> String {
        self.run_ok(&self.tapline(&["status"])).await
    }

    /// A number from a query on the SQLite warehouse.
    pub fn count(&self, sql: &str) -> u64 {
        crate::sqlite_value(&self.db, sql).unwrap().parse().unwrap()
    }

    /// The checkpoint stored under `clevertap/TEST-ACC-1/KEY` in the SQLite warehouse
    /// (`events/Charged/2022-09-22`), which must be there once.
    pub fn checkpoint(&self, key: &str) -> Value {
        let key = format!("clevertap/TEST-ACC-1/{key}");
        let rows = crate::sqlite_rows(
            &self.db,
            &format!("SELECT value FROM _tapline_state WHERE key = '{key}'"),
        );
        assert_eq!(rows.len(), 1, "one checkpoint for {key}");
        serde_json::from_str(rows[0][0].as_deref().unwrap()).unwrap()
    }

    /// How many (ts, profile_identity) pairs stand more than once in `table`.
    pub fn duplicates(&self, table: &str) -> u64 {
        self.count(&format!(
            "SELECT count(*) FROM (SELECT ts, profile_identity FROM {table} \
             GROUP BY ts, profile_identity HAVING count(*) > 1)"
        ))
    }

    /// How many requests of the double's kind `kind` it has seen (`Seen::Page`, `Seen::Open`).
    pub fn seen_count(&self, kind: fn(&Seen) -> bool) -> usize {
        self.api.seen().iter().filter(|s| kind(s)).count()
    }
}

/// The first five cells of the line of `status` (the stdout of `tapline status`) that starts
/// with `kind ` (`events`, `profiles`): kind, event, window, pages, rows.
pub fn unfinished_cells(status: &str, kind: &str) -> Vec<String> {
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{kind} ")))
        .unwrap_or_else(|| panic!("no {kind} line in:\n{status}"));
    line.split_whitespace()
        .take(5)
        .map(str::to_string)
        .collect()
}

/// Asserts that `run` exited 0, showing its output otherwise.
pub fn assert_ok(run: &Run) {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

/// Asserts that `text` contains `part`, showing `text` otherwise.
pub fn assert_says(text: &str, part: &str) {
    assert!(text.contains(part), "{part:?} in:\n{text}");
}
