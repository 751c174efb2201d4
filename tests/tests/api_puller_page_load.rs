//! API pages load through the export loader's one batch-load path: the same reject cap, the
//! same reject-ratio judgement (a page past it is quarantined and the slice's checkpoint stays
//! before it) and the same failure record as an export file. Real SQLite; the faults are
//! SQLite triggers, so the warehouse fails where a real one would.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use tapline::api_puller::PullError;
use tapline::api_puller::events::{EventsPull, pull_events};
use tapline::api_puller::page_load::{
    PageCounts, event_parse_options, event_record_as_export, load_event_page,
};
use tapline::api_puller::profiles::pull_profiles;
use tapline::clevertap::{ApiConfig, ClevertapClient};
use tapline::export::ParseOptions;
use tapline::warehouse::sqlite::{Journal, SqliteWarehouse};
use tapline::warehouse::{MAX_STORED_REJECTS, SourceObject, Warehouse};
use tapline_tests::doubles::clevertap_api::{ClevertapApi, event_records, profile_records};
use tapline_tests::{sqlite_rows, sqlite_value};

const DAY: i64 = 20220922;

fn count(db: &Path, sql: &str) -> u64 {
    sqlite_value(db, sql).unwrap().parse().unwrap()
}

fn checkpoint(db: &Path) -> Value {
    let text = sqlite_value(
        db,
        "SELECT value FROM _tapline_state WHERE key = 'clevertap/TEST-ACC-1/events/Charged/2022-09-22'",
    )
    .expect("a checkpoint");
    serde_json::from_str(&text).unwrap()
}

/// A record the parser rejects: not an object.
fn bad_record() -> Value {
    json!(["not", "an", "event"])
}

async fn open(db: &Path) -> Arc<dyn Warehouse> {
    Arc::new(SqliteWarehouse::open(db, Journal::Rollback).await.unwrap())
}

fn client(api: &ClevertapApi) -> ClevertapClient {
    let env = api.env();
    let lookup = move |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
    ClevertapClient::new(ApiConfig::from_lookup(lookup).unwrap()).unwrap()
}

/// Six records, two a page: page 0 good, page 1 all rejects, page 2 good.
fn pull_of_three_pages(api: &ClevertapApi) -> EventsPull {
    let mut records = event_records(DAY, 4);
    records.insert(2, bad_record());
    records.insert(3, bad_record());
    api.set_events("Charged", DAY, records);
    let day = jiff::civil::date(2022, 9, 22);
    let mut pull = EventsPull::new(vec!["Charged".into()], day, day, jiff::tz::TimeZone::UTC);
    pull.batch_size = 2;
    pull
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_stores_its_first_rejects_and_counts_every_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let warehouse = open(&db).await;
    let mut records = event_records(DAY, 1);
    records.extend((0..MAX_STORED_REJECTS + 1).map(|_| bad_record()));
    let object = SourceObject {
        uri: "clevertap-api://TEST-ACC-1/events/Charged/2022-09-22/page-0".into(),
        version: "pull-1".into(),
        bytes: None,
    };
    let opts = event_parse_options(
        "Charged",
        &jiff::tz::TimeZone::UTC,
        jiff::civil::date(2022, 9, 22),
        warehouse.max_columns(),
    );

    let counts = load_event_page(
        warehouse.as_ref(),
        &object,
        "Charged",
        records,
        opts,
        1.0,
        None,
    )
    .await
    .unwrap();

    assert_eq!(counts.rows, 1);
    assert_eq!(counts.rejected, MAX_STORED_REJECTS as u64 + 1);
    assert!(!counts.already_loaded);
    assert_eq!(count(&db, "SELECT count(*) FROM charged"), 1);
    // Before the one path, a page stored every reject it had.
    assert_eq!(
        count(&db, "SELECT count(*) FROM _tapline_rejects"),
        MAX_STORED_REJECTS as u64
    );
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT status, rows_loaded, rows_rejected FROM _tapline_loads"
        ),
        vec![vec![
            Some("loaded".to_string()),
            Some("1".to_string()),
            Some((MAX_STORED_REJECTS + 1).to_string()),
        ]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_past_the_reject_ratio_is_quarantined_and_the_checkpoint_stays_before_it() {
    let api = ClevertapApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let warehouse = open(&db).await;
    let pull = pull_of_three_pages(&api);

    for run in 0..2 {
        let reports = pull_events(&client(&api), warehouse.clone(), &pull, 1).await;
        assert_eq!(reports.len(), 1);
        match &reports[0].result {
            Err(PullError::Quarantined { uri, reason }) => {
                assert_eq!(
                    uri,
                    "clevertap-api://TEST-ACC-1/events/Charged/2022-09-22/page-1"
                );
                assert_eq!(
                    reason, "2 of 2 rows rejected (100.00 %), above the 1.00 % limit",
                    "run {run}"
                );
            }
            other => panic!("run {run}: expected the page quarantined, got {other:?}"),
        }
        // The second run meets the quarantined page again rather than skipping its records.
        let cp = checkpoint(&db);
        assert_eq!(
            cp["pages"], 1,
            "run {run}: the checkpoint stays before page 1"
        );
        assert_eq!(cp["status"], "in_progress");
        assert_eq!(cp["rows"], 2);
        assert_eq!(count(&db, "SELECT count(*) FROM charged"), 2, "run {run}");
        assert_eq!(
            sqlite_rows(
                &db,
                "SELECT uri, status, rows_loaded, rows_rejected FROM _tapline_loads ORDER BY uri"
            ),
            vec![
                vec![
                    Some("clevertap-api://TEST-ACC-1/events/Charged/2022-09-22/page-0".into()),
                    Some("loaded".into()),
                    Some("2".into()),
                    Some("0".into()),
                ],
                vec![
                    Some("clevertap-api://TEST-ACC-1/events/Charged/2022-09-22/page-1".into()),
                    Some("quarantined".into()),
                    Some("0".into()),
                    Some("2".into()),
                ],
            ],
            "run {run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_under_a_raised_ratio_loads_with_its_rejects() {
    let api = ClevertapApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let warehouse = open(&db).await;
    let mut pull = pull_of_three_pages(&api);
    pull.max_reject_ratio = 1.0;

    let reports = pull_events(&client(&api), warehouse.clone(), &pull, 1).await;

    assert!(reports[0].result.is_ok(), "{:?}", reports[0].result);
    assert_eq!((reports[0].rows, reports[0].rejected), (4, 2));
    assert_eq!(count(&db, "SELECT count(*) FROM charged"), 4);
    assert_eq!(count(&db, "SELECT count(*) FROM _tapline_rejects"), 2);
    assert_eq!(checkpoint(&db)["status"], "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_page_load_is_recorded_and_a_rerun_resumes_without_duplicates() {
    let api = ClevertapApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let warehouse = open(&db).await;
    api.set_events("Charged", DAY, event_records(DAY, 6));
    let day = jiff::civil::date(2022, 9, 22);
    let mut pull = EventsPull::new(vec!["Charged".into()], day, day, jiff::tz::TimeZone::UTC);
    pull.batch_size = 2;
    // The warehouse refuses to mark page 1 loaded: the commit of its load fails.
    let fault = rusqlite::Connection::open(&db).unwrap();
    fault
        .execute_batch(
            "CREATE TRIGGER injected_fault BEFORE UPDATE OF status ON _tapline_loads
             WHEN NEW.status = 'loaded' AND NEW.uri LIKE '%/page-1'
             BEGIN SELECT RAISE(ABORT, 'injected commit fault'); END;",
        )
        .unwrap();

    let reports = pull_events(&client(&api), warehouse.clone(), &pull, 1).await;

    match &reports[0].result {
        Err(PullError::Load { uri, error, .. }) => {
            assert_eq!(
                uri,
                "clevertap-api://TEST-ACC-1/events/Charged/2022-09-22/page-1"
            );
            assert!(error.contains("injected commit fault"), "{error}");
        }
        other => panic!("expected the page's load to fail, got {other:?}"),
    }
    // Before the one path, a page's failed load was not recorded in the ledger.
    let ledger = sqlite_rows(
        &db,
        "SELECT status, error FROM _tapline_loads WHERE uri LIKE '%/page-1'",
    );
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0][0].as_deref(), Some("failed"));
    assert!(
        ledger[0][1]
            .as_deref()
            .unwrap()
            .contains("injected commit fault")
    );
    assert_eq!(checkpoint(&db)["pages"], 1);
    assert_eq!(count(&db, "SELECT count(*) FROM charged"), 2);

    fault.execute_batch("DROP TRIGGER injected_fault").unwrap();
    let reports = pull_events(&client(&api), warehouse.clone(), &pull, 1).await;

    assert!(reports[0].result.is_ok(), "{:?}", reports[0].result);
    assert_eq!(reports[0].resumed_at_page, Some(1));
    assert_eq!(count(&db, "SELECT count(*) FROM charged"), 6);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM (SELECT ts, profile_identity FROM charged \
             GROUP BY ts, profile_identity HAVING count(*) > 1)"
        ),
        0
    );
    assert_eq!(checkpoint(&db)["status"], "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_and_its_checkpoint_commit_together_or_not_at_all() {
    let api = ClevertapApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let warehouse = open(&db).await;
    api.set_events("Charged", DAY, event_records(DAY, 6));
    let day = jiff::civil::date(2022, 9, 22);
    let mut pull = EventsPull::new(vec!["Charged".into()], day, day, jiff::tz::TimeZone::UTC);
    pull.batch_size = 2;
    // The warehouse fails writing the checkpoint past page 1. Before the checkpoint went
    // into the page's transaction, page 1's rows were committed and the checkpoint was not.
    let fault = rusqlite::Connection::open(&db).unwrap();
    fault
        .execute_batch(
            r#"CREATE TRIGGER injected_fault BEFORE UPDATE ON _tapline_state
             WHEN NEW.value LIKE '%"pages":2%'
             BEGIN SELECT RAISE(ABORT, 'injected checkpoint fault'); END;"#,
        )
        .unwrap();

    let reports = pull_events(&client(&api), warehouse.clone(), &pull, 1).await;

    match &reports[0].result {
        Err(PullError::Load { uri, error, .. }) => {
            assert_eq!(
                uri,
                "clevertap-api://TEST-ACC-1/events/Charged/2022-09-22/page-1"
            );
            assert!(error.contains("injected checkpoint fault"), "{error}");
        }
        other => panic!("expected the page's commit to fail, got {other:?}"),
    }
    // Neither page 1's rows nor its checkpoint.
    assert_eq!(count(&db, "SELECT count(*) FROM charged"), 2);
    assert_eq!(checkpoint(&db)["pages"], 1);
    assert_eq!(
        sqlite_value(
            &db,
            "SELECT status FROM _tapline_loads WHERE uri LIKE '%/page-1'"
        )
        .as_deref(),
        Some("failed")
    );

    fault.execute_batch("DROP TRIGGER injected_fault").unwrap();
    let reports = pull_events(&client(&api), warehouse.clone(), &pull, 1).await;

    assert!(reports[0].result.is_ok(), "{:?}", reports[0].result);
    assert_eq!(reports[0].resumed_at_page, Some(1));
    assert_eq!((reports[0].rows, reports[0].pages), (6, 3));
    assert_eq!(count(&db, "SELECT count(*) FROM charged"), 6);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM (SELECT ts, profile_identity FROM charged \
             GROUP BY ts, profile_identity HAVING count(*) > 1)"
        ),
        0
    );
    let cp = checkpoint(&db);
    assert_eq!(
        (cp["status"].as_str(), cp["rows"].as_u64()),
        (Some("complete"), Some(6))
    );
}

/// The page's size as the JSON lines of its records in the export's shape.
fn page_size(records: &[Value]) -> u64 {
    records
        .iter()
        .map(|r| {
            serde_json::to_vec(&event_record_as_export(r.clone(), "Charged"))
                .unwrap()
                .len() as u64
                + 1
        })
        .sum()
}

fn page_object(n: usize) -> SourceObject {
    SourceObject {
        uri: format!("clevertap-api://TEST-ACC-1/events/Charged/2022-09-22/page-{n}"),
        version: "pull-1".into(),
        bytes: None,
    }
}

fn day_options(warehouse: &dyn Warehouse) -> ParseOptions {
    event_parse_options(
        "Charged",
        &jiff::tz::TimeZone::UTC,
        jiff::civil::date(2022, 9, 22),
        warehouse.max_columns(),
    )
}

/// Page `n` of `Charged` on the test day, every reject allowed, no checkpoint.
async fn load_day_page(warehouse: &dyn Warehouse, n: usize, records: Vec<Value>) -> PageCounts {
    load_event_page(
        warehouse,
        &page_object(n),
        "Charged",
        records,
        day_options(warehouse),
        1.0,
        None,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_keeps_its_size_as_json_lines_and_its_rejects_as_json_text() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let warehouse = open(&db).await;
    let mut records = event_records(DAY, 2);
    records.insert(1, bad_record());
    records.push(json!({"ts": "not a time", "event_props": {"Café ☕": "e\u{301}"}}));
    let size = page_size(&records);

    let counts = load_day_page(warehouse.as_ref(), 0, records).await;

    assert_eq!((counts.rows, counts.rejected), (2, 2));
    assert_eq!(
        sqlite_rows(&db, "SELECT status, bytes FROM _tapline_loads"),
        vec![vec![Some("loaded".into()), Some(size.to_string())]]
    );
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT line, column_name, reason, raw_line FROM _tapline_rejects ORDER BY line"
        ),
        vec![
            vec![
                Some("2".into()),
                None,
                Some("expected a JSON object, found an array".into()),
                Some(r#"["not","an","event"]"#.into()),
            ],
            vec![
                Some("4".into()),
                Some("ts".into()),
                Some("ts \"not a time\" is neither yyyyMMddHHmmss nor epoch seconds".into()),
                Some(
                    "{\"eventName\":\"Charged\",\"eventProps\":{\"Café ☕\":\"e\u{301}\"},\"ts\":\"not a time\"}"
                        .into()
                ),
            ],
        ]
    );
    let rows = sqlite_rows(
        &db,
        "SELECT profile_identity, event_props_amount FROM charged ORDER BY ts",
    );
    assert_eq!(
        rows,
        vec![
            vec![Some("u0".into()), Some("0".into())],
            vec![Some("u1".into()), Some("1".into())],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_past_the_size_limit_quarantines_the_page_with_its_whole_size() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let warehouse = open(&db).await;
    let mut records = event_records(DAY, 2);
    let mut big = records[0].clone();
    big["event_props"]["Note"] = json!("x".repeat(2000));
    records.insert(1, big);
    let size = page_size(&records);
    let mut opts = day_options(warehouse.as_ref());
    // Room for the small records' lines, not the big one's.
    opts.max_record_bytes = 1000;

    let result = load_event_page(
        warehouse.as_ref(),
        &page_object(0),
        "Charged",
        records,
        opts,
        1.0,
        None,
    )
    .await;

    match result {
        Err(PullError::Quarantined { reason, .. }) => assert_eq!(
            reason,
            "the record at line 2 is larger than 1000 bytes (an unterminated quote?)"
        ),
        other => panic!("expected the page quarantined, got {other:?}"),
    }
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT status, bytes, rows_loaded, rows_rejected FROM _tapline_loads"
        ),
        vec![vec![
            Some("quarantined".into()),
            Some(size.to_string()),
            Some("0".into()),
            Some("0".into()),
        ]]
    );
}

/// Before records went to the parser as values, a page's first record that was a bare string,
/// number, boolean or null was read as a JSON export's first-line event name: neither a row nor
/// a reject, and counted nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_value_as_a_page_s_first_record_is_rejected_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let warehouse = open(&db).await;
    for (n, first) in [json!("Charged"), json!(42), json!(null)]
        .into_iter()
        .enumerate()
    {
        let mut records = event_records(DAY, 1);
        records.insert(0, first.clone());

        let counts = load_day_page(warehouse.as_ref(), n, records).await;

        assert_eq!((counts.rows, counts.rejected), (1, 1), "{first}");
        let reject = sqlite_rows(
            &db,
            &format!("SELECT line, raw_line FROM _tapline_rejects WHERE uri LIKE '%/page-{n}'"),
        );
        assert_eq!(
            reject,
            vec![vec![Some("1".into()), Some(first.to_string())]],
            "{first}"
        );
    }
}

/// A profiles page past the reject ratio (records with neither an identity nor a CleverTap
/// ID) is quarantined like an event page: the pull stops there, the page's rows are not loaded,
/// the checkpoint stays before it, and a second run stops at the same page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profiles_page_past_the_reject_ratio_is_quarantined_and_the_checkpoint_stays_before_it() {
    let api = ClevertapApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let warehouse = open(&db).await;
    let mut records = profile_records(46, "blue");
    for record in &mut records[23..] {
        record.as_object_mut().unwrap().remove("identity");
        record.as_object_mut().unwrap().remove("platformInfo");
    }
    api.set_profiles("Charged", DAY, records);
    let day = jiff::civil::date(2022, 9, 22);
    let page_1 = "clevertap-api://TEST-ACC-1/profiles/Charged/2022-09-22..2022-09-22/page-1";
    for _ in 0..2 {
        let result =
            pull_profiles(&client(&api), warehouse.as_ref(), "Charged", day, day, 23).await;
        match result {
            Err(PullError::Quarantined { uri, reason }) => {
                assert_eq!(uri, page_1);
                assert_eq!(
                    reason,
                    "23 of 23 rows rejected (100.00 %), above the 1.00 % limit"
                );
            }
            other => panic!("expected the page quarantined, got {other:?}"),
        }
        assert_eq!(count(&db, "SELECT count(*) FROM profile_snapshots"), 23);
        let cp: Value = serde_json::from_str(
            &sqlite_value(
                &db,
                "SELECT value FROM _tapline_state WHERE key = \
                 'clevertap/TEST-ACC-1/profiles/Charged/2022-09-22..2022-09-22'",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (cp["status"].as_str(), cp["pages"].as_u64()),
            (Some("in_progress"), Some(1))
        );
        assert_eq!(
            sqlite_rows(
                &db,
                "SELECT uri, status, rows_loaded FROM _tapline_loads ORDER BY uri"
            ),
            vec![
                vec![
                    Some(page_1.replace("page-1", "page-0")),
                    Some("loaded".to_string()),
                    Some("23".to_string())
                ],
                vec![
                    Some(page_1.to_string()),
                    Some("quarantined".to_string()),
                    Some("0".to_string())
                ],
            ]
        );
    }
}
