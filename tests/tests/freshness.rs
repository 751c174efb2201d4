//! Freshness (issue 20): each loaded object's creation time in its bucket (a local file's mtime,
//! S3 `LastModified` through moto, GCS `timeCreated` through fake-gcs-server) lands in the
//! ledger's `object_created_at`; implausible times are unknown and fail nothing; warehouses from
//! before the column gain it at open; `tapline status` prints the Freshness block, naming the
//! oldest object a sweep would load; the port's `commits_since` answers the same on SQLite,
//! PostgreSQL and BigQuery (our double and bqemulator).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tapline::config::LoadConfig;
use tapline::export_loader::freshness::{self, Freshness, latency_seconds};
use tapline::export_loader::load::{FileOutcome, load_object};
use tapline::storage::ObjectSource;
use tapline::storage::local::LocalSource;
use tapline::time::format_utc;
use tapline::warehouse::Warehouse;
use tapline_tests::doubles::bigquery::target::BigQueryTarget;
use tapline_tests::servers::pg::PgSchema;
use tapline_tests::{export_csv, gzip, sqlite_rows, sqlite_value, tapline};

/// A CleverTap export name of `event` (one chunk, 2022-09-21).
fn export_name(event: &str, chunk: u32) -> String {
    format!("1663664837-1663785000-{event}-20220921-{chunk}-0.csv.gz")
}

/// Writes a gzip export of `rows` rows of `event` at `dir/name`, its mtime set to `mtime`.
fn write_export(dir: &Path, name: &str, event: &str, rows: usize, mtime: SystemTime) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, gzip(export_csv(event, rows).as_bytes())).unwrap();
    set_mtime(&path, mtime);
    path
}

fn set_mtime(path: &Path, mtime: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

fn seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// `now` minus hours, minutes and seconds.
fn ago(h: u64, m: u64, s: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(h * 3600 + m * 60 + s)
}

/// The ledger's uri of a local file, as the loader lists it.
async fn file_uri(dir: &Path, name: &str) -> String {
    LocalSource
        .list(dir.to_str().unwrap())
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.key.ends_with(name))
        .unwrap()
        .uri
}

/// The Freshness block as `tapline status` printed it: from its title to the blank line after.
fn freshness_block(stdout: &str) -> String {
    let start = stdout.find("Freshness:").expect("a Freshness block");
    let rest = &stdout[start..];
    let body = rest.find("\n\n").expect("a title line") + 2;
    let end = rest[body..]
        .find("\n\n")
        .map_or(rest.len(), |i| body + i + 1);
    rest[..end].to_string()
}

#[tokio::test]
async fn a_local_load_records_the_mtime_and_status_names_the_oldest_unloaded_object() {
    let tmp = tempfile::tempdir().unwrap();
    let exports = tmp.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    let db = tmp.path().join("w.sqlite");
    let wh = format!("sqlite://{}", db.display());
    let two_hours = ago(2, 0, 30);
    let five_hours = ago(5, 0, 30);
    write_export(
        &exports,
        &export_name("Charged", 0),
        "Charged",
        3,
        two_hours,
    );
    write_export(
        &exports,
        &export_name("Charged", 1),
        "Charged",
        2,
        five_hours,
    );

    let run = tapline(&["load", exports.to_str().unwrap(), "--warehouse", &wh]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let uri = file_uri(&exports, &export_name("Charged", 0)).await;
    assert_eq!(
        sqlite_rows(
            &db,
            &format!("SELECT status, object_created_at FROM _tapline_loads WHERE uri = '{uri}'")
        ),
        vec![vec![
            Some("loaded".to_string()),
            Some(format_utc(seconds(two_hours)))
        ]]
    );
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM charged").as_deref(),
        Some("5"),
        "every row loaded once"
    );

    // Not loaded yet: one export three hours old, one whose mtime is from 2005 (counted, but
    // never named the oldest: its time is not believed), and a file that is no export.
    let three_hours = ago(3, 0, 30);
    write_export(
        &exports,
        &export_name("Charged", 2),
        "Charged",
        1,
        three_hours,
    );
    write_export(
        &exports,
        &export_name("Charged", 3),
        "Charged",
        1,
        UNIX_EPOCH + Duration::from_secs(1_104_537_600),
    );
    std::fs::write(exports.join("README.txt"), "not an export").unwrap();
    let waiting = file_uri(&exports, &export_name("Charged", 2)).await;

    let run = tapline(&[
        "status",
        "--warehouse",
        &wh,
        "--source",
        exports.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        freshness_block(&run.stdout),
        format!(
            "Freshness: from an object's creation in the bucket to its rows committing\n\n  \
             Last 24 h: p50 2h 00m, p95 5h 00m (from 2 loads)\n  \
             Not yet loaded: 2 export objects; the oldest is {waiting} (created {}, 3h 00m ago)\n",
            format_utc(seconds(three_hours))
        ),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn implausible_creation_times_are_stored_as_unknown_and_the_files_still_load() {
    let tmp = tempfile::tempdir().unwrap();
    let exports = tmp.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    let db = tmp.path().join("w.sqlite");
    let wh = format!("sqlite://{}", db.display());
    // Before 2010, and a day in the future.
    write_export(
        &exports,
        &export_name("Charged", 0),
        "Charged",
        3,
        UNIX_EPOCH + Duration::from_secs(1_104_537_600),
    );
    write_export(
        &exports,
        &export_name("Charged", 1),
        "Charged",
        4,
        SystemTime::now() + Duration::from_secs(86_400),
    );

    let run = tapline(&["load", exports.to_str().unwrap(), "--warehouse", &wh]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT status, object_created_at FROM _tapline_loads ORDER BY uri"
        ),
        vec![vec![Some("loaded".to_string()), None]; 2]
    );
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM charged").as_deref(),
        Some("7")
    );

    let run = tapline(&["status", "--warehouse", &wh]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        freshness_block(&run.stdout),
        "Freshness: from an object's creation in the bucket to its rows committing\n\n  \
         Last 24 h: no load with a known creation time\n  \
         Not yet loaded: not listed (give --source URI, the export location)\n",
        "{}",
        run.stdout
    );
}

/// `_tapline_loads` as Tapline wrote it before freshness, with one loaded row.
const OLD_SQLITE_LEDGER: &str = "
CREATE TABLE _tapline_loads (
    load_id       INTEGER PRIMARY KEY,
    uri           TEXT NOT NULL,
    version       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('loading','loaded','quarantined','failed','replaced')),
    bytes         INTEGER,
    rows_loaded   INTEGER NOT NULL DEFAULT 0,
    rows_rejected INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 1,
    replaced_by   INTEGER,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    UNIQUE (uri, version)
);
INSERT INTO _tapline_loads (uri, version, status, rows_loaded, started_at, finished_at)
VALUES ('file:///old/1663664837-1663785000-Charged-20220920-0-0.csv.gz', '1-1', 'loaded', 5,
        strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 hour'),
        strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 hour'));
";

#[tokio::test]
async fn an_old_sqlite_file_gains_the_column_and_its_loads_read_as_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("old.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(OLD_SQLITE_LEDGER)
        .unwrap();
    let wh = format!("sqlite://{}", db.display());

    let run = tapline(&["status", "--warehouse", &wh]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("Last 24 h: no load with a known creation time")
    );
    assert!(run.stdout.contains("Charged-20220920"), "{}", run.stdout);
    assert_eq!(
        sqlite_rows(&db, "SELECT status, object_created_at FROM _tapline_loads"),
        vec![vec![Some("loaded".to_string()), None]]
    );

    // A load into it records its time beside the old row.
    let exports = tmp.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    let made = ago(2, 0, 30);
    write_export(&exports, &export_name("Charged", 0), "Charged", 2, made);
    let run = tapline(&["load", exports.to_str().unwrap(), "--warehouse", &wh]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT object_created_at FROM _tapline_loads ORDER BY load_id"
        ),
        vec![vec![None], vec![Some(format_utc(seconds(made)))]]
    );
    let run = tapline(&["status", "--warehouse", &wh]);
    assert!(
        run.stdout
            .contains("Last 24 h: p50 2h 00m, p95 2h 00m (from 1 load)"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn an_old_postgres_schema_gains_the_column_and_its_loads_read_as_unknown() {
    let pg = PgSchema::new("fresh_old");
    let url = pg.url();
    // The ledger as an older Tapline made it: without object_created_at.
    let ddl = format!(
        "CREATE SCHEMA {0}; CREATE TABLE {0}._tapline_loads (
           load_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, uri TEXT NOT NULL,
           version TEXT NOT NULL, status TEXT NOT NULL, bytes BIGINT,
           rows_loaded BIGINT NOT NULL DEFAULT 0, rows_rejected BIGINT NOT NULL DEFAULT 0,
           error TEXT, attempts INTEGER NOT NULL DEFAULT 1, replaced_by BIGINT,
           started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, UNIQUE (uri, version));
         INSERT INTO {0}._tapline_loads (uri, version, status, started_at, finished_at)
         VALUES ('file:///old/a.csv.gz', '1', 'loaded', now(), now());",
        pg.schema
    );
    let out = std::process::Command::new("psql")
        .args([
            tapline_tests::postgres_url().as_str(),
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &ddl,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let w = tapline::warehouse::open::open(&url).await.unwrap();
    let old = w.recent_loads(5).await.unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].object_created_at, None);
    assert_eq!(
        freshness::last_day(w.as_ref(), jiff::Timestamp::now())
            .await
            .unwrap(),
        None
    );
    latencies_are_recorded_and_read_back(w.as_ref()).await;
}

#[tokio::test]
async fn the_port_answers_freshness_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tapline::warehouse::open::open(&format!(
        "sqlite://{}",
        tmp.path().join("w.sqlite").display()
    ))
    .await
    .unwrap();
    latencies_are_recorded_and_read_back(w.as_ref()).await;
}

#[tokio::test]
async fn the_port_answers_freshness_on_postgres() {
    let pg = PgSchema::new("fresh_port");
    let w = tapline::warehouse::open::open(&pg.url()).await.unwrap();
    latencies_are_recorded_and_read_back(w.as_ref()).await;
}

async fn the_port_answers_freshness_on_bigquery(target: BigQueryTarget) {
    let w = target.open().await;
    latencies_are_recorded_and_read_back(w.as_ref()).await;
}

tapline_tests::on_both_bigquery_targets!(the_port_answers_freshness_on_bigquery);

/// Loads three exports created 1 min, 2 h and 3 h ago and one from 2005 through the loader, then
/// reads the ledger back: each known creation time is kept to the second, the 2005 one is
/// unknown, and the freshness figures are those of the three latencies (over the last day and
/// for today's date).
async fn latencies_are_recorded_and_read_back(w: &dyn Warehouse) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("exports");
    std::fs::create_dir(&dir).unwrap();
    let times = [
        Some(ago(0, 1, 0)),
        Some(ago(2, 0, 0)),
        Some(ago(3, 0, 0)),
        None,
    ];
    for (i, t) in times.iter().enumerate() {
        let mtime = t.unwrap_or(UNIX_EPOCH + Duration::from_secs(1_104_537_600));
        write_export(&dir, &export_name("Charged", i as u32), "Charged", 2, mtime);
    }
    let entries = LocalSource.list(dir.to_str().unwrap()).await.unwrap();
    assert_eq!(entries.len(), 4);
    for entry in &entries {
        let report = load_object(
            &LocalSource,
            w,
            entry,
            &LoadConfig::default(),
            Arc::new(AtomicU64::new(0)),
        )
        .await;
        assert!(
            matches!(report.outcome, FileOutcome::Loaded(_)),
            "{:?}",
            report.outcome
        );
    }
    let loads = w.recent_loads(10).await.unwrap();
    for (i, t) in times.iter().enumerate() {
        let name = export_name("Charged", i as u32);
        let record = loads.iter().find(|l| l.uri.ends_with(&name)).unwrap();
        // To the second, whatever fraction the warehouse prints (BigQuery keeps microseconds).
        let stored = record
            .object_created_at
            .as_deref()
            .map(|t| t.parse::<jiff::Timestamp>().unwrap().as_second());
        assert_eq!(stored, t.map(seconds), "{name}");
    }
    let expected = Freshness::of(loads.iter().filter_map(latency_seconds).collect()).unwrap();
    assert_eq!(expected.loads, 3);
    // Nearest rank of three: the median is the two-hour-old object, p95 the three-hour-old one.
    assert!(
        expected.p50_seconds >= 7_200 && expected.p95_seconds >= 10_800,
        "{expected:?}"
    );
    let now = jiff::Timestamp::now();
    assert_eq!(freshness::last_day(w, now).await.unwrap(), Some(expected));
    let today = jiff::tz::TimeZone::UTC.to_datetime(now).date();
    let days = freshness::per_day(w, today, today, &jiff::tz::TimeZone::UTC)
        .await
        .unwrap();
    // A load that committed just before midnight UTC belongs to yesterday: read it the same way.
    let committed_today: Vec<_> = loads
        .iter()
        .filter(|l| {
            l.finished_at
                .as_deref()
                .is_some_and(|f| f.starts_with(&today.to_string()))
        })
        .collect();
    assert_eq!(
        days,
        vec![freshness::DayLoads {
            day: today,
            committed: committed_today.len(),
            rejected_rows: committed_today.iter().map(|l| l.rows_rejected).sum(),
            freshness: Freshness::of(
                committed_today
                    .iter()
                    .copied()
                    .filter_map(latency_seconds)
                    .collect()
            ),
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_load_records_last_modified_and_status_names_what_waits() {
    use tapline_tests::servers::s3::{client, new_bucket, put};
    let s3 = client().await;
    let bucket = new_bucket(&s3, "freshness").await;
    let last_modified = async |key: &str| {
        let head = s3
            .head_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        format_utc(head.last_modified().unwrap().secs())
    };
    let loaded = format!("exports/{}", export_name("Charged", 0));
    put(
        &s3,
        &bucket,
        &loaded,
        gzip(export_csv("Charged", 3).as_bytes()),
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("w.sqlite");
    let wh = format!("sqlite://{}", db.display());
    let prefix = format!("s3://{bucket}/exports/");

    let run = tapline(&["load", &prefix, "--warehouse", &wh]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT uri, status, object_created_at FROM _tapline_loads"
        ),
        vec![vec![
            Some(format!("s3://{bucket}/{loaded}")),
            Some("loaded".to_string()),
            Some(last_modified(&loaded).await)
        ]]
    );

    let waiting = format!("exports/{}", export_name("Charged", 1));
    put(
        &s3,
        &bucket,
        &waiting,
        gzip(export_csv("Charged", 2).as_bytes()),
    )
    .await;
    let run = tapline(&["status", "--warehouse", &wh, "--source", &prefix]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let block = freshness_block(&run.stdout);
    assert!(block.contains("Last 24 h: p50 "), "{block}");
    assert!(block.contains("(from 1 load)"), "{block}");
    assert!(
        block.contains(&format!(
            "Not yet loaded: 1 export object; the oldest is s3://{bucket}/{waiting} (created {}, ",
            last_modified(&waiting).await
        )),
        "{block}"
    );
}

#[tokio::test]
async fn a_gcs_load_records_time_created() {
    use tapline_tests::servers::gcs::{gcs_url, new_bucket, put};
    let bucket = new_bucket("freshness").await;
    let key = format!("events/{}", export_name("Charged", 0));
    put(&bucket, &key, gzip(export_csv("Charged", 3).as_bytes())).await;
    let resource: serde_json::Value = reqwest::get(format!(
        "{}/storage/v1/b/{bucket}/o/{}",
        gcs_url(),
        key.replace('/', "%2F")
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let created: jiff::Timestamp = resource["timeCreated"].as_str().unwrap().parse().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("w.sqlite");
    let wh = format!("sqlite://{}", db.display());

    let run: tapline_tests::Run = tapline_tests::tapline_command()
        .args([
            "load",
            &format!("gs://{bucket}/events/"),
            "--warehouse",
            &wh,
        ])
        .env("STORAGE_EMULATOR_HOST", gcs_url())
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT uri, status, object_created_at FROM _tapline_loads"
        ),
        vec![vec![
            Some(format!("gs://{bucket}/{key}")),
            Some("loaded".to_string()),
            Some(format_utc(created.as_second()))
        ]]
    );
}
