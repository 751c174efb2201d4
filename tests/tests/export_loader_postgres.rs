//! `tapline load` into a real PostgreSQL 15 (see `tests/scripts/with-postgres.sh`): races,
//! a connection lost mid-COPY, the server down, and secrets kept out of output.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tapline_tests::servers::pg::{PgSchema as Db, with_param};
use tapline_tests::{Run, export_csv, gzip, tapline};

const FILE: &str = "1663664837-1663785000-Charged-20220921-0-0.csv.gz";

fn export(rows: usize) -> Vec<u8> {
    gzip(export_csv("Charged", rows).as_bytes())
}

fn temp_export(rows: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    std::fs::write(&path, export(rows)).unwrap();
    (dir, path)
}

#[test]
fn loads_into_the_schema_with_typed_timestamps() {
    let db = Db::new("typed");
    let (_dir, path) = temp_export(100);
    let run = db.load(path.to_str().unwrap());
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(db.psql("SELECT count(*) FROM charged"), "100");
    assert_eq!(
        db.psql("SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'charged' AND column_name = 'ts'"),
        "timestamp with time zone"
    );
    assert_eq!(
        db.psql("SELECT min(ts) FROM charged"),
        "2022-09-21 00:00:00+00"
    );
    assert_eq!(db.psql("SELECT status FROM _tapline_loads"), "loaded");
}

#[test]
fn two_processes_racing_on_one_file_load_it_once() {
    let db = Db::new("race");
    let (_dir, path) = temp_export(20_000);
    let url = db.url();
    let spawn = || {
        tapline_tests::tapline_command()
            .args(["load", path.to_str().unwrap(), "--warehouse", &url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let a: Run = a.wait_with_output().unwrap().into();
    let b: Run = b.wait_with_output().unwrap().into();
    assert_eq!((a.code, b.code), (0, 0), "{a:?}\n{b:?}");
    assert_eq!(db.psql("SELECT count(*) FROM charged"), "20000");
    assert_eq!(
        db.psql("SELECT count(*) || ' ' || min(status) FROM _tapline_loads"),
        "1 loaded"
    );
}

#[test]
fn server_down_at_start_is_a_clear_error_without_the_password() {
    let (_dir, path) = temp_export(3);
    let url = "postgres://app:hunter2secret@127.0.0.1:1/warehouse?connect_timeout=5";
    let run = tapline(&["load", path.to_str().unwrap(), "--warehouse", url, "-vv"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot open warehouse postgres://app@127.0.0.1:1/warehouse?schema=public"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("hunter2secret") && !run.stdout.contains("hunter2secret"));
    let bad = tapline(&[
        "load",
        path.to_str().unwrap(),
        "--warehouse",
        "postgres://app:hunter2secret@h/w?sslmode=bogus",
    ]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("postgres://app:***@h/w"),
        "{}",
        bad.stderr
    );
    assert!(!bad.stderr.contains("hunter2secret"));
}

#[test]
fn secrets_stay_out_of_logs_and_summaries() {
    let db = Db::new("secrets");
    let (_dir, path) = temp_export(10);
    // The test server trusts every password, so this one is accepted and must never be echoed.
    let url = db.url().replacen("postgres@", "postgres:hunter2secret@", 1);
    assert!(url.contains("hunter2secret"));
    for format in ["text", "json"] {
        let run = tapline(&[
            "load",
            path.to_str().unwrap(),
            "--warehouse",
            &url,
            "-vv",
            "--log-format",
            format,
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(!run.stderr.contains("hunter2secret"), "{}", run.stderr);
        assert!(!run.stdout.contains("hunter2secret"), "{}", run.stdout);
    }
    let status = tapline(&["status", "--warehouse", &url]);
    assert!(
        !status.stdout.contains("hunter2secret"),
        "{}",
        status.stdout
    );
}

/// The loader reads a FIFO; once it is inside its transaction, its backend is terminated.
#[cfg(unix)]
#[test]
fn connection_lost_mid_copy_rolls_back_and_the_rerun_loads_once() {
    let db = Db::new("lost");
    let rows = 200_000;
    let full = export(rows);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join(FILE);
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let app = format!("tapline_lost_{}", std::process::id());
    let url = with_param(&db.url(), &format!("application_name={app}"));
    let child = tapline_tests::tapline_command()
        .args(["load", fifo.to_str().unwrap(), "--warehouse", &url])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    pipe.write_all(&full[..full.len() * 8 / 10]).unwrap();
    // Most of the file is consumed (a pipe holds 64 KiB; at most four batches wait between
    // parser and warehouse), so COPYs ran inside the open transaction. End the backend.
    let killed = db.psql(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = '{app}' AND xact_start IS NOT NULL"
    ));
    assert_eq!(killed, "1", "the loader's backend was inside a transaction");
    let _ = pipe.write_all(&full[full.len() * 8 / 10..]);
    drop(pipe);
    let run: Run = child.wait_with_output().unwrap().into();
    assert_eq!(
        run.code, 2,
        "a lost connection fails the file: {}",
        run.stdout
    );
    assert!(run.stdout.contains("(will retry)"), "{}", run.stdout);
    assert_eq!(
        db.psql("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'charged'"),
        "0",
        "nothing of the interrupted load remains"
    );
    assert_eq!(
        db.psql("SELECT status FROM _tapline_loads"),
        "failed",
        "the reconnect recorded the failure"
    );

    std::fs::remove_file(&fifo).unwrap();
    std::fs::write(&fifo, &full).unwrap();
    let rerun = db.load(fifo.to_str().unwrap());
    assert_eq!(rerun.code, 0, "{}", rerun.stdout);
    assert_eq!(db.psql("SELECT count(*) FROM charged"), rows.to_string());
    assert_eq!(
        db.psql("SELECT count(*) FROM _tapline_loads"),
        "2",
        "the FIFO and the file are two versions"
    );
    assert_eq!(
        db.psql("SELECT string_agg(status, ',' ORDER BY load_id) FROM _tapline_loads"),
        "failed,loaded"
    );
}

/// TLS follows libpq: `require` encrypts without verifying; `verify-full` refuses an unknown CA;
/// `sslrootcert` makes it trusted. (The script's server has a throwaway CA; needs openssl.)
#[test]
fn tls_modes_follow_libpq() {
    let ca = std::env::var("TAPLINE_TEST_POSTGRES_CA")
        .expect("tests/scripts/with-postgres.sh sets TAPLINE_TEST_POSTGRES_CA (needs openssl)");
    let db = Db::new("tls");
    let (_dir, path) = temp_export(5);
    let path = path.to_str().unwrap();
    let app = format!("tapline_tls_{}", std::process::id());
    let required = with_param(
        &with_param(&db.url(), "sslmode=require"),
        &format!("application_name={app}"),
    );
    let run = tapline(&["load", path, "--warehouse", &required]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(db.psql("SELECT count(*) FROM charged"), "5");

    let verify = with_param(&db.url(), "sslmode=verify-full");
    let refused = tapline(&["status", "--warehouse", &verify]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("UnknownIssuer"),
        "{}",
        refused.stderr
    );
    let trusted = with_param(&verify, &format!("sslrootcert={ca}"));
    let run = tapline(&["status", "--warehouse", &trusted]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("loaded"), "{}", run.stdout);
}
