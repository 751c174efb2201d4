//! The warehouse conformance suite: the guarantees every `Warehouse` adapter gives, checked
//! through the port alone. Each adapter's test file runs it with
//! [`warehouse_conformance_tests!`](crate::warehouse_conformance_tests) and a [`Harness`].

use std::sync::Arc;

use async_trait::async_trait;
use tapline::export::{Reject, RowBatch, Schema};
use tapline::warehouse::{
    Begin, Committed, LoadRecord, LoadStatus, Outcome, SourceObject, StateWrite, Warehouse,
};

/// Opens warehouses for the suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Opens the store called `name`, empty on first use; the same name is the same store
    /// (a second handle, like a second process).
    async fn open(&self, name: &str) -> Box<dyn Warehouse>;
}

/// A batch of rows with these raw columns (must include `ts`, as UTC ISO-8601 text, and
/// `eventName`).
pub fn batch(columns: &[&str], rows: &[(u64, Vec<Option<&str>>)]) -> RowBatch {
    let event_index = columns
        .iter()
        .position(|c| *c == "eventName")
        .expect("eventName column");
    let schema = Arc::new(Schema::new(columns.iter().map(|c| c.to_string()).collect()));
    let ts_index = columns.iter().position(|c| *c == "ts").expect("ts column");
    let mut b = RowBatch::new(schema, event_index);
    for (line, values) in rows {
        assert_eq!(values.len(), columns.len(), "row width");
        let ts = values[ts_index]
            .and_then(tapline::time::parse_utc)
            .expect("ts as UTC ISO-8601 text");
        b.start_row(*line, ts * tapline::time::MICROS_PER_SECOND);
        for v in values {
            b.push_field(*v);
        }
    }
    b
}

/// A batch of profile snapshot rows ([`RowBatch::for_profiles`]) with these raw columns (must
/// include `ts`, the snapshot instant as UTC ISO-8601 text).
pub fn profile_batch(columns: &[&str], rows: &[(u64, Vec<Option<&str>>)]) -> RowBatch {
    let schema = Arc::new(Schema::new(columns.iter().map(|c| c.to_string()).collect()));
    let ts_index = columns.iter().position(|c| *c == "ts").expect("ts column");
    let mut b = RowBatch::for_profiles(schema);
    for (line, values) in rows {
        assert_eq!(values.len(), columns.len(), "row width");
        let ts = values[ts_index]
            .and_then(tapline::time::parse_utc)
            .expect("ts as UTC ISO-8601 text");
        b.start_row(*line, ts * tapline::time::MICROS_PER_SECOND);
        for v in values {
            b.push_field(*v);
        }
    }
    b
}

/// A source object.
pub fn object(uri: &str, version: &str) -> SourceObject {
    SourceObject {
        uri: uri.to_string(),
        version: version.to_string(),
        bytes: Some(100),
    }
}

fn loaded(rows: u64, rejected: u64) -> Outcome {
    Outcome::Loaded {
        bytes: 100,
        rows,
        rejected,
    }
}

async fn start(
    w: &dyn Warehouse,
    o: &SourceObject,
) -> Box<dyn tapline::warehouse::LoadTransaction> {
    match w.begin_load(o, false).await.expect("begin") {
        Begin::Started(t) => t,
        Begin::Done(r) => panic!("expected a new load, ledger says {:?}", r.status),
    }
}

/// Query rows, with timestamps as UTC ISO-8601 text whichever way the warehouse prints them
/// (SQLite stores that text; PostgreSQL prints `timestamptz` as `2022-09-21 04:39:25+00`).
async fn rows(w: &dyn Warehouse, sql: &str) -> Vec<Vec<Option<String>>> {
    w.query(sql)
        .await
        .expect(sql)
        .rows
        .into_iter()
        .map(|r| r.into_iter().map(|v| v.map(normalise_timestamp)).collect())
        .collect()
}

fn normalise_timestamp(value: String) -> String {
    let b = value.as_bytes();
    let looks_like =
        b.len() == 22 && b[4] == b'-' && b[10] == b' ' && b[13] == b':' && value.ends_with("+00");
    if looks_like {
        format!("{}T{}Z", &value[..10], &value[11..19])
    } else {
        value
    }
}

async fn count(w: &dyn Warehouse, table: &str) -> u64 {
    rows(w, &format!("SELECT count(*) FROM {table}")).await[0][0]
        .as_deref()
        .expect("count")
        .parse()
        .expect("number")
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

const ORDER: &[&str] = &["ts", "eventName", "profile.identity", "eventProps.Amount"];

fn order_rows() -> Vec<(u64, Vec<Option<&'static str>>)> {
    vec![
        (
            2,
            vec![
                Some("2022-09-21T04:39:25Z"),
                Some("Order Placed"),
                Some("u1"),
                Some("499.00"),
            ],
        ),
        (
            3,
            vec![
                Some("2022-09-21T05:00:00Z"),
                Some("Order Placed"),
                None,
                Some("10"),
            ],
        ),
    ]
}

/// Rows and ledger commit together; tables, columns and lineage follow the naming rule.
pub async fn rows_and_ledger_commit_together(h: &dyn Harness) {
    let w = h.open("commit").await;
    let o = object("file:///x/1-2-Order-Placed-20220921-0-0.csv.gz", "v1");
    let mut t = start(w.as_ref(), &o).await;
    let load_id = t.load_id();
    t.append(batch(ORDER, &order_rows())).await.unwrap();
    let record = ours(t.commit(loaded(2, 0), vec![]).await);
    assert_eq!(record.status, LoadStatus::Loaded);
    assert_eq!(
        (record.rows_loaded, record.rows_rejected, record.load_id),
        (2, 0, load_id)
    );
    assert_eq!(
        rows(
            w.as_ref(),
            "SELECT ts, event_name, profile_identity, event_props_amount, _source_uri, _source_line, _load_id \
             FROM order_placed ORDER BY _source_line"
        )
        .await,
        vec![
            vec![s("2022-09-21T04:39:25Z"), s("Order Placed"), s("u1"), s("499.00"), s(&o.uri), s("2"), s(&load_id.to_string())],
            vec![s("2022-09-21T05:00:00Z"), s("Order Placed"), None, s("10"), s(&o.uri), s("3"), s(&load_id.to_string())],
        ]
    );
    let loaded_at = rows(w.as_ref(), "SELECT DISTINCT _loaded_at FROM order_placed").await;
    assert_eq!(loaded_at, vec![vec![s(&record.started_at)]]);
    assert_eq!(
        rows(
            w.as_ref(),
            "SELECT column_name, raw_name FROM _tapline_columns WHERE table_name = 'order_placed' ORDER BY column_name"
        )
        .await,
        vec![
            vec![s("event_name"), s("eventName")],
            vec![s("event_props_amount"), s("eventProps.Amount")],
            vec![s("profile_identity"), s("profile.identity")],
            vec![s("ts"), s("ts")],
        ]
    );
    let ledger = w.recent_loads(10).await.unwrap();
    assert_eq!(ledger, vec![record]);
}

/// The same version again is a no-op reported as done.
pub async fn same_version_is_done(h: &dyn Harness) {
    let w = h.open("same").await;
    let o = object("s3://b/k.csv.gz", "etag-1");
    let mut t = start(w.as_ref(), &o).await;
    t.append(batch(ORDER, &order_rows())).await.unwrap();
    let first = ours(t.commit(loaded(2, 0), vec![]).await);
    match w.begin_load(&o, false).await.unwrap() {
        Begin::Done(r) => assert_eq!(r, first),
        Begin::Started(_) => panic!("loaded twice"),
    }
    match w.begin_load(&o, true).await.unwrap() {
        Begin::Done(r) => assert_eq!(r.status, LoadStatus::Loaded),
        Begin::Started(_) => panic!("retry_quarantined must not reload a loaded version"),
    }
    assert_eq!(count(w.as_ref(), "order_placed").await, 2);
}

/// A transaction dropped without commit leaves nothing: no rows, tables or ledger row.
pub async fn dropped_load_leaves_nothing(h: &dyn Harness) {
    let w = h.open("dropped").await;
    let o = object("s3://b/k.csv.gz", "etag-1");
    let mut t = start(w.as_ref(), &o).await;
    t.append(batch(ORDER, &order_rows())).await.unwrap();
    drop(t);
    assert!(w.recent_loads(10).await.unwrap().is_empty());
    let tables = rows(w.as_ref(), "SELECT count(*) FROM _tapline_tables").await;
    assert_eq!(tables, vec![vec![s("0")]]);
    // The next attempt starts cleanly and loads once.
    let mut t = start(w.as_ref(), &o).await;
    t.append(batch(ORDER, &order_rows())).await.unwrap();
    ours(t.commit(loaded(2, 0), vec![]).await);
    assert_eq!(count(w.as_ref(), "order_placed").await, 2);
}

/// A state value a load carries (an API page's checkpoint) becomes visible with the load's rows
/// and ledger row, never without them: a load dropped before its commit leaves the old value.
pub async fn state_commits_with_its_load(h: &dyn Harness) {
    let w = h.open("state_at_commit").await;
    let key = "clevertap/ACC/events/Order Placed/2022-09-21";
    w.put_state(key, r#"{"pages":1}"#).await.unwrap();
    let o = object(
        "clevertap-api://ACC/events/Order%20Placed/2022-09-21/page-1",
        "pull-1",
    );
    let past = StateWrite {
        key: key.to_string(),
        value: r#"{"pages":2}"#.to_string(),
    };

    let mut t = start(w.as_ref(), &o).await;
    t.append(batch(ORDER, &order_rows())).await.unwrap();
    t.write_state_at_commit(past.clone());
    drop(t);
    assert_eq!(
        w.get_state(key).await.unwrap().as_deref(),
        Some(r#"{"pages":1}"#)
    );
    assert!(w.recent_loads(10).await.unwrap().is_empty());

    let mut t = start(w.as_ref(), &o).await;
    t.append(batch(ORDER, &order_rows())).await.unwrap();
    t.write_state_at_commit(past);
    ours(t.commit(loaded(2, 0), vec![]).await);
    assert_eq!(
        w.get_state(key).await.unwrap().as_deref(),
        Some(r#"{"pages":2}"#)
    );
    assert_eq!(count(w.as_ref(), "order_placed").await, 2);
}

/// A quarantined file keeps its ledger row and rejects, and none of its rows or tables.
pub async fn quarantine_keeps_ledger_and_rejects_only(h: &dyn Harness) {
    let w = h.open("quarantine").await;
    let o = object("s3://b/bad.csv.gz", "etag-1");
    let mut t = start(w.as_ref(), &o).await;
    t.append(batch(ORDER, &order_rows())).await.unwrap();
    let reject = Reject::new(
        4,
        Some("ts".into()),
        "ts \"x\" is neither".into(),
        b"x,Order Placed",
    );
    let record = ours(
        t.commit(
            Outcome::Quarantined {
                reason: "too many rejects".into(),
                bytes: 100,
                rows: 2,
                rejected: 1,
            },
            vec![reject],
        )
        .await,
    );
    assert_eq!(record.status, LoadStatus::Quarantined);
    assert_eq!(record.error.as_deref(), Some("too many rejects"));
    assert_eq!((record.rows_loaded, record.rows_rejected), (0, 1));
    assert_eq!(
        rows(w.as_ref(), "SELECT count(*) FROM _tapline_tables").await,
        vec![vec![s("0")]]
    );
    assert_eq!(
        rows(
            w.as_ref(),
            "SELECT uri, line, column_name, reason, raw_line FROM _tapline_rejects"
        )
        .await,
        vec![vec![
            s(&o.uri),
            s("4"),
            s("ts"),
            s("ts \"x\" is neither"),
            s("x,Order Placed")
        ]]
    );
    // Stays quarantined unless asked to retry.
    assert!(
        matches!(w.begin_load(&o, false).await.unwrap(), Begin::Done(r) if r.status == LoadStatus::Quarantined)
    );
    let mut t = match w.begin_load(&o, true).await.unwrap() {
        Begin::Started(t) => t,
        Begin::Done(_) => panic!("retry_quarantined must retry"),
    };
    t.append(batch(ORDER, &order_rows())).await.unwrap();
    let record = ours(t.commit(loaded(2, 0), vec![]).await);
    assert_eq!((record.status, record.attempts), (LoadStatus::Loaded, 2));
    assert_eq!(count(w.as_ref(), "order_placed").await, 2);
}

/// A new version of a uri replaces the old version's rows in the same transaction.
pub async fn new_version_replaces_old_rows(h: &dyn Harness) {
    let w = h.open("replace").await;
    let v1 = object("s3://b/k.csv.gz", "etag-1");
    let mut t = start(w.as_ref(), &v1).await;
    t.append(batch(ORDER, &order_rows())).await.unwrap();
    let first = ours(t.commit(loaded(2, 0), vec![]).await);
    // Another file's rows in the same table must survive the replacement.
    let other = object("s3://b/other.csv.gz", "etag-9");
    let mut t = start(w.as_ref(), &other).await;
    t.append(batch(ORDER, &order_rows()[..1])).await.unwrap();
    ours(t.commit(loaded(1, 0), vec![]).await);

    let v2 = object("s3://b/k.csv.gz", "etag-2");
    let mut t = start(w.as_ref(), &v2).await;
    t.append(batch(
        ORDER,
        &[(
            2,
            vec![
                Some("2022-09-21T06:00:00Z"),
                Some("Order Placed"),
                Some("u9"),
                Some("1"),
            ],
        )],
    ))
    .await
    .unwrap();
    let second = ours(t.commit(loaded(1, 0), vec![]).await);
    assert_eq!(
        rows(
            w.as_ref(),
            "SELECT _source_uri, profile_identity FROM order_placed ORDER BY _source_uri, ts"
        )
        .await,
        vec![
            vec![s("s3://b/k.csv.gz"), s("u9")],
            vec![s("s3://b/other.csv.gz"), s("u1")]
        ]
    );
    let ledger = rows(
        w.as_ref(),
        &format!(
            "SELECT status FROM _tapline_loads WHERE load_id = {}",
            first.load_id
        ),
    )
    .await;
    assert_eq!(ledger, vec![vec![s("replaced")]]);
    assert_eq!(second.status, LoadStatus::Loaded);
    // The old version arriving again (a late duplicate event) does not come back.
    assert!(
        matches!(w.begin_load(&v1, false).await.unwrap(), Begin::Done(r) if r.status == LoadStatus::Replaced)
    );
}

/// New columns are added, old rows read NULL there; nothing is renamed or dropped.
pub async fn new_columns_are_added(h: &dyn Harness) {
    let w = h.open("evolve").await;
    let mut t = start(w.as_ref(), &object("s3://b/1.csv", "1")).await;
    t.append(batch(ORDER, &order_rows())).await.unwrap();
    ours(t.commit(loaded(2, 0), vec![]).await);
    let wider = [
        "eventProps.Coupon Code",
        "ts",
        "eventName",
        "eventProps.Amount",
    ];
    let mut t = start(w.as_ref(), &object("s3://b/2.csv", "1")).await;
    t.append(batch(
        &wider,
        &[(
            2,
            vec![
                Some("SAVE10"),
                Some("2022-09-22T00:00:00Z"),
                Some("Order Placed"),
                Some("5"),
            ],
        )],
    ))
    .await
    .unwrap();
    ours(t.commit(loaded(1, 0), vec![]).await);
    assert_eq!(
        rows(w.as_ref(), "SELECT event_props_coupon_code, profile_identity, event_props_amount FROM order_placed ORDER BY ts").await,
        vec![
            vec![None, s("u1"), s("499.00")],
            vec![None, None, s("10")],
            vec![s("SAVE10"), None, s("5")],
        ]
    );
    let added_by = rows(
        w.as_ref(),
        "SELECT raw_name FROM _tapline_columns WHERE column_name = 'event_props_coupon_code'",
    )
    .await;
    assert_eq!(added_by, vec![vec![s("eventProps.Coupon Code")]]);
}

/// Names that collide after normalising get numeric suffixes; raw names are kept.
pub async fn collisions_get_suffixes(h: &dyn Harness) {
    let w = h.open("collide").await;
    let cols = ["ts", "eventName", "eventProps.Amount", "eventProps.amount"];
    let mut t = start(w.as_ref(), &object("s3://b/1.csv", "1")).await;
    t.append(batch(
        &cols,
        &[
            (
                2,
                vec![
                    Some("2022-09-21T00:00:00Z"),
                    Some("Order Placed"),
                    Some("1"),
                    Some("2"),
                ],
            ),
            (
                3,
                vec![
                    Some("2022-09-21T00:00:00Z"),
                    Some("Order-Placed"),
                    Some("3"),
                    Some("4"),
                ],
            ),
            (
                4,
                vec![
                    Some("2022-09-21T00:00:00Z"),
                    Some("Profiles"),
                    Some("5"),
                    None,
                ],
            ),
        ],
    ))
    .await
    .unwrap();
    ours(t.commit(loaded(3, 0), vec![]).await);
    assert_eq!(
        rows(
            w.as_ref(),
            "SELECT event_name, table_name FROM _tapline_tables ORDER BY table_name"
        )
        .await,
        vec![
            vec![s("Order Placed"), s("order_placed")],
            vec![s("Order-Placed"), s("order_placed_2")],
            vec![s("Profiles"), s("profiles_2")],
        ]
    );
    assert_eq!(
        rows(
            w.as_ref(),
            "SELECT event_props_amount, event_props_amount_2 FROM order_placed"
        )
        .await,
        vec![vec![s("1"), s("2")]]
    );
    assert_eq!(
        rows(w.as_ref(), "SELECT raw_name FROM _tapline_columns WHERE table_name = 'order_placed' AND column_name = 'event_props_amount_2'").await,
        vec![vec![s("eventProps.amount")]]
    );
    assert_eq!(count(w.as_ref(), "order_placed_2").await, 1);
}

/// `all_events` spans every event table with the standard columns, NULL where missing.
pub async fn all_events_spans_tables(h: &dyn Harness) {
    let w = h.open("view").await;
    let mut t = start(w.as_ref(), &object("s3://b/1.csv", "1")).await;
    t.append(batch(ORDER, &order_rows())).await.unwrap();
    t.append(batch(
        &["ts", "eventName", "eventProps.CT Source"],
        &[(
            2,
            vec![
                Some("2022-09-21T01:00:00Z"),
                Some("App Launched"),
                Some("Mobile"),
            ],
        )],
    ))
    .await
    .unwrap();
    ours(t.commit(loaded(3, 0), vec![]).await);
    assert_eq!(
        rows(
            w.as_ref(),
            "SELECT event_name, profile_identity, device_info_make FROM all_events ORDER BY ts"
        )
        .await,
        vec![
            vec![s("App Launched"), None, None],
            vec![s("Order Placed"), s("u1"), None],
            vec![s("Order Placed"), None, None],
        ]
    );
}

/// Loads one profile export: snapshot rows `(identity, hash, Email)` at `at`, plus a
/// `Blood Group` column when `blood` is given.
async fn load_profiles(
    w: &dyn Warehouse,
    uri: &str,
    at: &str,
    profiles: &[(&str, &str, &str)],
    blood: Option<&str>,
) -> LoadRecord {
    let mut columns = vec!["identity", "ts", "_profile_hash", "_record", "Email"];
    if blood.is_some() {
        columns.push("Blood Group");
    }
    let rows: Vec<(u64, Vec<Option<&str>>)> = profiles
        .iter()
        .enumerate()
        .map(|(i, (identity, hash, email))| {
            let mut values = vec![
                Some(*identity),
                Some(at),
                Some(*hash),
                Some("{}"),
                Some(*email),
            ];
            if blood.is_some() {
                values.push(blood);
            }
            (i as u64 + 2, values)
        })
        .collect();
    let mut t = start(w, &object(uri, "1")).await;
    t.append(profile_batch(&columns, &rows)).await.unwrap();
    ours(t.commit(loaded(rows.len() as u64, 0), vec![]).await)
}

/// Profile snapshots stay out of `all_events`; `profiles` holds each identity's latest snapshot,
/// `profiles_history` one row per period of unchanged attributes (an unchanged profile and a
/// late, older export add no period), and `events_with_profile` gives each event the profile of
/// its time (none before the first snapshot).
pub async fn profile_views_follow_snapshots(h: &dyn Harness) {
    let w = h.open("people").await;
    let w = w.as_ref();
    let mut t = start(w, &object("s3://b/1-2-Order-Placed-20220921-0-0.csv", "1")).await;
    let mut events = order_rows();
    events[1].1[0] = Some("2022-09-19T12:00:00Z");
    events[1].1[2] = Some("u1");
    t.append(batch(ORDER, &events)).await.unwrap();
    ours(t.commit(loaded(2, 0), vec![]).await);

    let first = load_profiles(
        w,
        "s3://b/profile/1-7-1663632000-0.csv.gz",
        "2022-09-20T00:00:00Z",
        &[("u1", "h1", "a@x.io"), ("u2", "h2", "u2@x.io")],
        None,
    )
    .await;
    let second = load_profiles(
        w,
        "s3://b/profile/1-8-1663718400-0.csv.gz",
        "2022-09-21T00:00:00Z",
        &[("u1", "h1b", "b@x.io"), ("u2", "h2", "u2@x.io")],
        Some("O+"),
    )
    .await;
    // An older export found late, the same as the first for u1: no new period.
    load_profiles(
        w,
        "s3://b/profile/1-9-1663675200-0.csv.gz",
        "2022-09-20T12:00:00Z",
        &[("u1", "h1", "a@x.io")],
        None,
    )
    .await;

    assert_eq!(count(w, "all_events").await, 2, "snapshots are not events");
    assert_eq!(
        rows(
            w,
            "SELECT identity, snapshot_at, email, blood_group FROM profiles ORDER BY identity"
        )
        .await,
        vec![
            vec![s("u1"), s("2022-09-21T00:00:00Z"), s("b@x.io"), s("O+")],
            vec![s("u2"), s("2022-09-21T00:00:00Z"), s("u2@x.io"), s("O+")],
        ]
    );
    let history = rows(
        w,
        "SELECT identity, valid_from, valid_to, email, blood_group, _load_id FROM profiles_history \
         ORDER BY identity, valid_from",
    )
    .await;
    let id = |r: &LoadRecord| s(&r.load_id.to_string());
    assert_eq!(
        history,
        vec![
            vec![
                s("u1"),
                s("2022-09-20T00:00:00Z"),
                s("2022-09-21T00:00:00Z"),
                s("a@x.io"),
                None,
                id(&first)
            ],
            vec![
                s("u1"),
                s("2022-09-21T00:00:00Z"),
                None,
                s("b@x.io"),
                s("O+"),
                id(&second)
            ],
            vec![
                s("u2"),
                s("2022-09-20T00:00:00Z"),
                None,
                s("u2@x.io"),
                None,
                id(&first)
            ],
        ]
    );
    assert_eq!(
        rows(
            w,
            "SELECT ts, event_name, profile_identity, profile_valid_from, user_email, user_blood_group \
             FROM events_with_profile ORDER BY ts"
        )
        .await,
        vec![
            vec![s("2022-09-19T12:00:00Z"), s("Order Placed"), s("u1"), None, None, None],
            vec![s("2022-09-21T04:39:25Z"), s("Order Placed"), s("u1"), s("2022-09-21T00:00:00Z"), s("b@x.io"), s("O+")],
        ]
    );
    // A new event table afterwards rebuilds all_events, and events_with_profile over it.
    let mut t = start(w, &object("s3://b/1-2-App-Launched-20220921-0-0.csv", "1")).await;
    t.append(batch(
        &["ts", "eventName", "profile.identity"],
        &[(
            2,
            vec![
                Some("2022-09-20T06:00:00Z"),
                Some("App Launched"),
                Some("u2"),
            ],
        )],
    ))
    .await
    .unwrap();
    ours(t.commit(loaded(1, 0), vec![]).await);
    assert_eq!(
        rows(
            w,
            "SELECT event_name, user_email FROM events_with_profile WHERE profile_identity = 'u2'"
        )
        .await,
        vec![vec![s("App Launched"), s("u2@x.io")]]
    );
}

/// The table `profiles` an earlier Tapline's `pull profiles` wrote (as a fixed table).
pub const LEGACY_PROFILES: tapline::warehouse::FixedTable = tapline::warehouse::FixedTable {
    name: "profiles",
    columns: &[
        ("identity", tapline::warehouse::ColumnType::Text),
        ("profile_data", tapline::warehouse::ColumnType::Text),
    ],
    key: &["identity"],
};

/// A warehouse that has the earlier `profiles` table: the first profile snapshot renames it to
/// `_tapline_profiles_v1` (rows kept) and `profiles` becomes the view (SQLite, PostgreSQL).
pub async fn legacy_profiles_table_is_kept(h: &dyn Harness) {
    let w = h.open("legacy").await;
    let w = w.as_ref();
    let old = vec![vec![s("u1"), s(r#"{"favoriteFood":"pizza"}"#)]];
    w.replace_rows(&LEGACY_PROFILES, &old).await.unwrap();
    load_profiles(
        w,
        "s3://b/profile/1-7-1663632000-0.csv.gz",
        "2022-09-20T00:00:00Z",
        &[("u1", "h1", "a@x.io")],
        None,
    )
    .await;
    assert_eq!(
        rows(w, "SELECT identity, profile_data FROM _tapline_profiles_v1").await,
        old
    );
    assert_eq!(
        rows(w, "SELECT identity, email FROM profiles").await,
        vec![vec![s("u1"), s("a@x.io")]]
    );
}

/// On BigQuery, which cannot turn a table into a view, the first profile load into a dataset
/// holding the earlier `profiles` table fails before it commits, saying how to rename it.
pub async fn legacy_profiles_table_is_refused(h: &dyn Harness) {
    let w = h.open("legacy").await;
    let w = w.as_ref();
    let old = vec![vec![s("u1"), s("{}")]];
    w.replace_rows(&LEGACY_PROFILES, &old).await.unwrap();
    let o = object("s3://b/profile/1-7-1663632000-0.csv.gz", "1");
    let mut t = start(w, &o).await;
    t.append(profile_batch(
        &["identity", "ts", "_profile_hash", "_record"],
        &[(
            2,
            vec![
                Some("u1"),
                Some("2022-09-20T00:00:00Z"),
                Some("h"),
                Some("{}"),
            ],
        )],
    ))
    .await
    .unwrap();
    let err = t.commit(loaded(1, 0), vec![]).await.unwrap_err();
    assert!(!err.is_retryable());
    let chain = tapline::error::error_chain(&err);
    assert!(
        chain.contains(
            "has a table named profiles (from an earlier Tapline's pull profiles); profiles is now \
             a view over profile_snapshots: rename the table (ALTER TABLE "
        ) && chain.ends_with(".profiles RENAME TO _tapline_profiles_v1) and load again"),
        "{chain}"
    );
    assert_eq!(count(w, "profiles").await, 1, "the old table is untouched");
    let ledger = rows(w, "SELECT status FROM _tapline_loads").await;
    assert!(!ledger.contains(&vec![s("loaded")]), "{ledger:?}");
}

/// A failed attempt is recorded, and a retry loads and counts the attempt.
pub async fn failure_is_recorded_then_retried(h: &dyn Harness) {
    let w = h.open("failure").await;
    let o = object("s3://b/k.csv.gz", "etag-1");
    let t = start(w.as_ref(), &o).await;
    drop(t);
    w.record_failure(&o, "reading the source failed: connection reset")
        .await
        .unwrap();
    let ledger = w.recent_loads(1).await.unwrap();
    assert_eq!(ledger[0].status, LoadStatus::Failed);
    assert_eq!(
        ledger[0].error.as_deref(),
        Some("reading the source failed: connection reset")
    );
    let mut t = start(w.as_ref(), &o).await;
    t.append(batch(ORDER, &order_rows())).await.unwrap();
    let record = ours(t.commit(loaded(2, 0), vec![]).await);
    assert_eq!(
        (record.status, record.attempts, record.error),
        (LoadStatus::Loaded, 2, None)
    );
    // A late failure report for a loaded version does not overwrite it.
    w.record_failure(&o, "late").await.unwrap();
    assert_eq!(
        w.recent_loads(1).await.unwrap()[0].status,
        LoadStatus::Loaded
    );
}

/// Two handles (two processes) loading the same object: the rows and the ledger's `loaded` row
/// are written once. Where the warehouse can lock (SQLite, PostgreSQL) the second loader is
/// told at `begin_load` that the version is done; where it cannot (BigQuery) both may begin and
/// the second commit finds the first's and returns its ledger row instead of writing.
pub async fn concurrent_loaders_load_once(h: &dyn Harness) {
    let a = h.open("race").await;
    let b = h.open("race").await;
    let o = object("s3://b/race.csv.gz", "etag-1");
    // Whether this loader's commit is the one that loaded (`true`), or it found the version
    // done at `begin_load` or committed by the other (`false`).
    let run = |w: Box<dyn Warehouse>, o: SourceObject| async move {
        let (record, mine) = match w.begin_load(&o, false).await.expect("begin") {
            Begin::Started(mut t) => {
                t.append(batch(ORDER, &order_rows())).await.unwrap();
                match t.commit(loaded(2, 0), vec![]).await.unwrap() {
                    Committed::Ours(r) => (r, true),
                    Committed::Theirs(r) => (r, false),
                }
            }
            Begin::Done(r) => (r, false),
        };
        (record, mine, w)
    };
    let (ra, rb) = tokio::join!(
        tokio::spawn(run(a, o.clone())),
        tokio::spawn(run(b, o.clone()))
    );
    let (ra, mine_a, w) = ra.unwrap();
    let (rb, mine_b, _) = rb.unwrap();
    // Exactly one loader says it loaded the file, so a summary counts it once.
    assert!(mine_a ^ mine_b, "loaded by a: {mine_a}, by b: {mine_b}");
    assert_eq!(
        (ra.status, rb.status),
        (LoadStatus::Loaded, LoadStatus::Loaded)
    );
    assert_eq!(ra.load_id, rb.load_id, "both must report the one load");
    assert_eq!(count(w.as_ref(), "order_placed").await, 2);
    assert_eq!(
        rows(
            w.as_ref(),
            "SELECT count(*) FROM _tapline_loads WHERE uri = 's3://b/race.csv.gz' AND status = 'loaded'"
        )
        .await,
        vec![vec![s("1")]]
    );
}

/// `_tapline_state` keeps one value per key; a new value replaces the old one, and a second
/// handle (another process) reads what the first wrote.
pub async fn state_is_kept_per_key(h: &dyn Harness) {
    let w = h.open("state").await;
    assert_eq!(
        w.get_state("events/Charged/2022-09-01").await.unwrap(),
        None
    );
    w.put_state("events/Charged/2022-09-01", r#"{"page":1}"#)
        .await
        .unwrap();
    w.put_state("events/App Launched/2022-09-01", r#"{"page":7}"#)
        .await
        .unwrap();
    w.put_state("events/Charged/2022-09-01", r#"{"page":2,"cursor":"a'b"}"#)
        .await
        .unwrap();
    let other = h.open("state").await;
    assert_eq!(
        other
            .get_state("events/Charged/2022-09-01")
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"page":2,"cursor":"a'b"}"#)
    );
    assert_eq!(
        other
            .get_state("events/App Launched/2022-09-01")
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"page":7}"#)
    );
    let keys = rows(
        other.as_ref(),
        "SELECT key FROM _tapline_state WHERE updated_at IS NOT NULL ORDER BY key",
    )
    .await;
    assert_eq!(
        keys,
        vec![
            vec![Some("events/App Launched/2022-09-01".to_string())],
            vec![Some("events/Charged/2022-09-01".to_string())],
        ]
    );
}

/// A fixed-schema table like `event_counts`.
const COUNTS: tapline::warehouse::FixedTable = tapline::warehouse::FixedTable {
    name: "event_counts",
    columns: &[
        ("event_name", tapline::warehouse::ColumnType::Text),
        ("day", tapline::warehouse::ColumnType::Text),
        ("count", tapline::warehouse::ColumnType::Integer),
        ("note", tapline::warehouse::ColumnType::Text),
    ],
    key: &["event_name", "day"],
};

fn count_row(event: &str, day: &str, count: &str, note: Option<&str>) -> Vec<Option<String>> {
    vec![
        Some(event.to_string()),
        Some(day.to_string()),
        Some(count.to_string()),
        note.map(str::to_string),
    ]
}

/// `replace_rows` creates a fixed-schema table, replaces rows by key and adds the others, with
/// integers stored as integers; a row of the wrong width is refused and writes nothing.
pub async fn fixed_rows_are_replaced_by_key(h: &dyn Harness) {
    let w = h.open("fixed").await;
    let first = [
        count_row("Charged", "2022-09-01", "500", Some("first")),
        count_row("Charged", "2022-09-02", "7", None),
    ];
    assert_eq!(w.replace_rows(&COUNTS, &first).await.unwrap(), 2);
    let second = [
        count_row("Charged", "2022-09-02", "1200", Some("late data")),
        count_row("App Launched", "2022-09-02", "31", None),
    ];
    assert_eq!(w.replace_rows(&COUNTS, &second).await.unwrap(), 2);
    let bad = [vec![Some("Charged".to_string())]];
    let err = w.replace_rows(&COUNTS, &bad).await.unwrap_err();
    assert!(!err.is_retryable());
    let other = h.open("fixed").await;
    assert_eq!(
        rows(
            other.as_ref(),
            "SELECT event_name, day, count + 1, note FROM event_counts ORDER BY event_name, day"
        )
        .await,
        vec![
            count_row("App Launched", "2022-09-02", "32", None),
            count_row("Charged", "2022-09-01", "501", Some("first")),
            count_row("Charged", "2022-09-02", "1201", Some("late data")),
        ]
    );
}

/// Names at the limits: an event and a column whose names are exactly 63 bytes (PostgreSQL's
/// identifier limit, which every adapter applies), and an event and a raw column name far past
/// BigQuery's metadata limits (friendlyName and field description: 1,024 characters). Both load,
/// load again into the same table and columns, and keep their full raw names in the catalog.
pub async fn longest_names_load_and_load_again(h: &dyn Harness) {
    let w = h.open("long_names").await;
    let event63 = format!("E{}", "v".repeat(62));
    let column63 = format!("c{}", "o".repeat(62));
    let event_long = format!("Long {}", "event ".repeat(400));
    let column_long = format!("eventProps.{}", "x".repeat(1_600));
    let table_long = tapline::warehouse::naming::snake_case(&event_long);
    let column_long_name = tapline::warehouse::naming::snake_case(&column_long);
    assert_eq!((event63.len(), column63.len()), (63, 63));
    assert_eq!((table_long.len(), column_long_name.len()), (63, 63));
    assert!(event_long.len() > 2000 && column_long.len() > 1600);
    for (version, line) in [("v1", 2), ("v2", 3)] {
        for (event, column) in [(&event63, &column63), (&event_long, &column_long)] {
            let o = object(&format!("s3://b/{}-{version}.csv", event.len()), version);
            let mut t = start(w.as_ref(), &o).await;
            let cols = ["ts", "eventName", column.as_str()];
            t.append(batch(
                &cols,
                &[(
                    line,
                    vec![
                        Some("2022-09-21T04:39:25Z"),
                        Some(event.as_str()),
                        Some("x"),
                    ],
                )],
            ))
            .await
            .unwrap();
            let record = ours(t.commit(loaded(1, 0), vec![]).await);
            assert_eq!(record.status, LoadStatus::Loaded);
        }
    }
    let event63_table = event63.to_lowercase();
    for (table, column) in [
        (event63_table.as_str(), column63.as_str()),
        (table_long.as_str(), column_long_name.as_str()),
    ] {
        assert_eq!(
            rows(
                w.as_ref(),
                &format!("SELECT {column}, _source_line FROM {table} ORDER BY _source_line")
            )
            .await,
            vec![vec![s("x"), s("2")], vec![s("x"), s("3")]],
            "{table}"
        );
    }
    assert_eq!(
        rows(
            w.as_ref(),
            "SELECT table_name, event_name FROM _tapline_tables ORDER BY table_name"
        )
        .await,
        vec![
            vec![s(&event63_table), s(&event63)],
            vec![s(&table_long), s(&event_long)],
        ]
    );
    assert_eq!(
        rows(
            w.as_ref(),
            "SELECT table_name, column_name, raw_name FROM _tapline_columns \
             WHERE column_name NOT IN ('ts', 'event_name') ORDER BY table_name"
        )
        .await,
        vec![
            vec![s(&event63_table), s(&column63), s(&column63)],
            vec![s(&table_long), s(&column_long_name), s(&column_long)],
        ]
    );
}

/// A sweep's ledger read: every version under a uri prefix (taken literally: `_` and `%` are
/// no wildcards) with its current status, one read.
pub async fn ledger_versions_are_read_per_prefix(h: &dyn Harness) {
    use tapline::warehouse::LedgerVersion;
    let handle = h.open("ledger_read").await;
    let w: &dyn Warehouse = handle.as_ref();
    let commit = |uri: &'static str, version: &'static str, quarantine: bool| async move {
        let mut t = start(w, &object(uri, version)).await;
        t.append(batch(ORDER, &order_rows())).await.unwrap();
        let outcome = if quarantine {
            Outcome::Quarantined {
                reason: "too many rejects".into(),
                bytes: 100,
                rows: 2,
                rejected: 1,
            }
        } else {
            loaded(2, 0)
        };
        ours(t.commit(outcome, vec![]).await);
    };
    commit("s3://b/a_c/1.csv", "v1", false).await;
    commit("s3://b/a_c/1.csv", "v2", false).await;
    commit("s3://b/a_c/2.csv", "v1", true).await;
    commit("s3://b/abc/1.csv", "v1", false).await;
    commit("s3://b/a%/1.csv", "v1", false).await;
    let failed = object("s3://b/a_c/3.csv", "v1");
    drop(start(w, &failed).await);
    w.record_failure(&failed, "connection reset").await.unwrap();

    let read = |prefix: &'static str| async move {
        let mut versions = w.ledger_versions(prefix).await.expect("ledger read");
        versions.sort_by(|a, b| (&a.uri, &a.version).cmp(&(&b.uri, &b.version)));
        versions
    };
    let v = |uri: &str, version: &str, status| LedgerVersion {
        uri: uri.into(),
        version: version.into(),
        status,
    };
    assert_eq!(
        read("s3://b/a_c/").await,
        vec![
            v("s3://b/a_c/1.csv", "v1", LoadStatus::Replaced),
            v("s3://b/a_c/1.csv", "v2", LoadStatus::Loaded),
            v("s3://b/a_c/2.csv", "v1", LoadStatus::Quarantined),
            v("s3://b/a_c/3.csv", "v1", LoadStatus::Failed),
        ]
    );
    assert_eq!(
        read("s3://b/a%").await,
        vec![v("s3://b/a%/1.csv", "v1", LoadStatus::Loaded)]
    );
    assert!(read("s3://c/").await.is_empty());
    assert_eq!(read("").await.len(), 6);
}

/// Declares one `#[tokio::test]` per conformance case for a harness expression.
/// `single_loader: HARNESS` leaves out [`concurrent_loaders_load_once`], for a target that
/// cannot arbitrate two loaders the way the real warehouse does (bqemulator runs a second job
/// under a used job id where BigQuery answers `409 duplicate`).
#[macro_export]
macro_rules! warehouse_conformance_tests {
    ($harness:expr) => {
        $crate::warehouse_conformance_tests!(single_loader: $harness);
        $crate::warehouse_conformance_tests!(@cases $harness; concurrent_loaders_load_once);
    };
    (single_loader: $harness:expr) => {
        $crate::warehouse_conformance_tests!(@cases $harness;
            rows_and_ledger_commit_together,
            same_version_is_done,
            dropped_load_leaves_nothing,
            quarantine_keeps_ledger_and_rejects_only,
            new_version_replaces_old_rows,
            new_columns_are_added,
            collisions_get_suffixes,
            all_events_spans_tables,
            failure_is_recorded_then_retried,
            state_is_kept_per_key,
            state_commits_with_its_load,
            fixed_rows_are_replaced_by_key,
            longest_names_load_and_load_again,
            ledger_versions_are_read_per_prefix,
            profile_views_follow_snapshots,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $harness;
                $crate::conformance::warehouse::$case(&harness).await;
            }
        )*
    };
}

/// The record of a commit that must be this load's own (a single loader).
fn ours(committed: Result<Committed, tapline::warehouse::WarehouseError>) -> LoadRecord {
    match committed.expect("commit") {
        Committed::Ours(record) => record,
        Committed::Theirs(record) => {
            panic!("a lone loader's commit was taken by another: {record:?}")
        }
    }
}
