//! Typed views on BigQuery, on both targets (our double and bqemulator): each column's inferred
//! kind in `_tapline_columns`, the BI dataset's views (`<dataset>_bi`) giving each bad input's
//! typed value next to its raw value, widening across files, a pinned column whose misfits
//! `column_misfits` counts, and the types a BI tool reads off the view.

use std::sync::Arc;

use tapline::google_auth::GoogleAuth;
use tapline::warehouse::bigquery::BigQueryWarehouse;
use tapline::warehouse::column_kinds::ColumnKind;
use tapline::warehouse::column_types::ColumnTypes;
use tapline::warehouse::{Begin, ColumnMisfit, Outcome, Warehouse};
use tapline_tests::conformance::warehouse::{batch, object};
use tapline_tests::doubles::bigquery::target::BigQueryTarget;

async fn open(target: &BigQueryTarget, types: Option<&str>) -> Box<dyn Warehouse> {
    let types = types.map(|t| Arc::new(ColumnTypes::parse(t, "test").expect("types")));
    Box::new(
        BigQueryWarehouse::open_at(
            &target.url(),
            Some(target.endpoint()),
            GoogleAuth::anonymous(),
        )
        .await
        .expect("open bigquery")
        .with_column_types(types),
    )
}

const COLUMNS: [&str; 11] = [
    "ts",
    "eventName",
    "Amount",
    "Code",
    "Big",
    "When",
    "Paid",
    "Since",
    "Items",
    "Qty",
    "Nothing",
];

/// Loads `rows` (values of [`COLUMNS`] after `ts` and `eventName`) of event Charged as `uri`.
async fn load(w: &dyn Warehouse, uri: &str, rows: &[Vec<Option<&str>>]) {
    let rows: Vec<(u64, Vec<Option<&str>>)> = rows
        .iter()
        .enumerate()
        .map(|(i, values)| {
            let mut row = vec![Some("2022-09-21T04:32:45Z"), Some("Charged")];
            row.extend(values.iter().copied());
            (i as u64 + 1, row)
        })
        .collect();
    let mut t = match w.begin_load(&object(uri, "v1"), false).await.unwrap() {
        Begin::Started(t) => t,
        Begin::Done(r) => panic!("already {:?}", r.status),
    };
    t.append(batch(&COLUMNS, &rows)).await.unwrap();
    t.commit(
        Outcome::Loaded {
            bytes: 100,
            rows: rows.len() as u64,
            rejected: 0,
        },
        Vec::new(),
    )
    .await
    .expect("commit");
}

fn bi(target: &BigQueryTarget) -> String {
    format!("{}_bi", target.dataset())
}

/// The stored kind of each data column, by column name.
async fn kinds(target: &BigQueryTarget) -> Vec<(String, Option<String>)> {
    target
        .rows("SELECT column_name, kind FROM _tapline_columns ORDER BY column_name")
        .await
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone()))
        .collect()
}

/// A typed value as text, the same on both targets: numbers as Rust prints them, timestamps as
/// UTC ISO-8601, booleans as `true`/`false` (the double's SQLite has 1/0).
fn typed(kind: &str, value: Option<String>) -> Option<String> {
    let v = value?;
    Some(match kind {
        "FLOAT" => v.parse::<f64>().unwrap().to_string(),
        "BOOLEAN" => match v.as_str() {
            "1" | "true" => "true".into(),
            "0" | "false" => "false".into(),
            other => panic!("a BOOL of {other}"),
        },
        // int64 microseconds (bqemulator, asked for them) or float seconds (the double).
        "TIMESTAMP" => tapline::warehouse::bigquery::api::timestamp_to_utc(&v)
            .unwrap_or_else(|| panic!("a TIMESTAMP of {v}")),
        _ => v,
    })
}

/// `(typed value, raw value)` of `column` per row of `charged`, in file and line order; the
/// typed value normalised by [`typed`] for the REST type `kind`.
async fn typed_and_raw(
    target: &BigQueryTarget,
    column: &str,
    kind: &str,
) -> Vec<(Option<String>, Option<String>)> {
    let order = "ORDER BY _source_uri, _source_line";
    let view = target
        .rows_in(
            &bi(target),
            &format!("SELECT {column} FROM charged {order}"),
        )
        .await;
    let raw = target
        .rows(&format!("SELECT {column} FROM charged {order}"))
        .await;
    assert_eq!(view.len(), raw.len());
    view.into_iter()
        .zip(raw)
        .map(|(v, r)| (typed(kind, v[0].clone()), r[0].clone()))
        .collect()
}

/// The view's columns and their types: tables.get on the view where it answers a schema
/// (BigQuery, the double), else the types of a query over it (bqemulator gives views none).
async fn view_types(target: &BigQueryTarget, view: &str) -> Vec<(String, String)> {
    let resource = target.table_in(&bi(target), view).await.expect("the view");
    assert_eq!(resource["type"], "VIEW");
    match (&resource["schema"]["fields"], target) {
        (serde_json::Value::Array(fields), _) => fields
            .iter()
            .map(|f| {
                let text = |k: &str| f[k].as_str().unwrap().to_string();
                (text("name"), text("type"))
            })
            .collect(),
        (_, BigQueryTarget::Emulator { emulator, .. }) => {
            emulator
                .answer_types(&bi(target), &format!("SELECT * FROM {view}"))
                .await
        }
        (_, BigQueryTarget::Double { .. }) => panic!("the double answers a view's schema"),
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn pair(typed: Option<&str>, raw: &str) -> (Option<String>, Option<String>) {
    (typed.map(str::to_string), s(raw))
}

tapline_tests::on_both_bigquery_targets!(
    bad_inputs_get_kinds_typed_values_and_keep_raw_values,
    a_pinned_column_counts_its_misfits,
);

/// Mixed types in one file, 64 digits, an impossible date, then a second file that brings a
/// text value to a numeric column and `1` to a boolean one: the kinds widen, never narrow, and
/// the view follows them while the raw table keeps every value.
async fn bad_inputs_get_kinds_typed_values_and_keep_raw_values(target: BigQueryTarget) {
    let w = open(&target, None).await;
    let sixty_four_digits = "1234567890".repeat(6) + "1234";
    load(
        w.as_ref(),
        "file:///exports/charged-1.csv",
        &[
            vec![
                Some("12"),
                Some("007"),
                Some(&sixty_four_digits),
                Some("2022-02-30T00:00:00Z"),
                Some("true"),
                Some("$D_1663735165"),
                Some("[1,2]"),
                Some("3"),
                None,
            ],
            vec![
                Some("12.5"),
                Some("12"),
                Some("5"),
                Some("2022-09-21T04:39:25+05:30"),
                Some("false"),
                Some("2022-09-21"),
                Some("{\"a\":1}"),
                Some("4"),
                None,
            ],
        ],
    )
    .await;
    let kind = |column: &str, kind: Option<&str>| (column.to_string(), kind.map(str::to_string));
    assert_eq!(
        kinds(&target).await,
        [
            kind("amount", Some("decimal")),
            kind("big", Some("text")),  // 64 digits do not fit an integer
            kind("code", Some("text")), // `007` is an identifier
            kind("event_name", Some("text")),
            kind("items", Some("json")),
            kind("nothing", Some("")), // only NULLs so far
            kind("paid", Some("boolean")),
            kind("qty", Some("integer")),
            kind("since", Some("timestamp")),
            kind("ts", Some("timestamp")),
            kind("when", Some("text")), // 30 February is no date
        ]
    );
    assert_eq!(
        typed_and_raw(&target, "amount", "FLOAT").await,
        [pair(Some("12"), "12"), pair(Some("12.5"), "12.5")]
    );
    assert_eq!(
        typed_and_raw(&target, "big", "STRING").await,
        [
            pair(Some(&sixty_four_digits), &sixty_four_digits),
            pair(Some("5"), "5")
        ]
    );
    assert_eq!(
        typed_and_raw(&target, "`when`", "STRING").await,
        [
            pair(Some("2022-02-30T00:00:00Z"), "2022-02-30T00:00:00Z"),
            pair(
                Some("2022-09-21T04:39:25+05:30"),
                "2022-09-21T04:39:25+05:30"
            )
        ]
    );
    assert_eq!(
        typed_and_raw(&target, "paid", "BOOLEAN").await,
        [pair(Some("true"), "true"), pair(Some("false"), "false")]
    );
    assert_eq!(
        typed_and_raw(&target, "since", "TIMESTAMP").await,
        [
            pair(Some("2022-09-21T04:39:25Z"), "$D_1663735165"),
            pair(Some("2022-09-21T00:00:00Z"), "2022-09-21")
        ]
    );
    assert_eq!(
        typed_and_raw(&target, "qty", "INTEGER").await,
        [pair(Some("3"), "3"), pair(Some("4"), "4")]
    );
    let types = view_types(&target, "charged").await;
    let type_of = |c: &str| {
        types
            .iter()
            .find(|(n, _)| n == c)
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("{c} in {types:?}"))
    };
    assert_eq!(
        [
            "ts", "amount", "big", "paid", "since", "items", "qty", "nothing"
        ]
        .map(type_of),
        [
            "TIMESTAMP",
            "FLOAT",
            "STRING",
            "BOOLEAN",
            "TIMESTAMP",
            "JSON",
            "INTEGER",
            "STRING"
        ]
    );
    let all_events = view_types(&target, "all_events").await;
    assert!(
        all_events
            .iter()
            .any(|(n, t)| n == "ts" && t == "TIMESTAMP"),
        "{all_events:?}"
    );

    // A second file: text in the integer column, `1` in the boolean one, an integer in the
    // decimal one.
    load(
        w.as_ref(),
        "file:///exports/charged-2.csv",
        &[vec![
            Some("7"),
            None,
            None,
            None,
            Some("1"),
            None,
            None,
            Some("many"),
            Some("x"),
        ]],
    )
    .await;
    let widened = kinds(&target).await;
    for (column, want) in [
        ("amount", "decimal"),
        ("paid", "text"),
        ("qty", "text"),
        ("nothing", "text"),
        ("since", "timestamp"),
    ] {
        assert!(
            widened.contains(&kind(column, Some(want))),
            "{column}: {widened:?}"
        );
    }
    assert_eq!(
        typed_and_raw(&target, "qty", "STRING").await,
        [
            pair(Some("3"), "3"),
            pair(Some("4"), "4"),
            pair(Some("many"), "many")
        ]
    );
    assert_eq!(
        typed_and_raw(&target, "paid", "STRING").await,
        [
            pair(Some("true"), "true"),
            pair(Some("false"), "false"),
            pair(Some("1"), "1")
        ]
    );
    assert_eq!(
        typed_and_raw(&target, "amount", "FLOAT").await,
        [
            pair(Some("12"), "12"),
            pair(Some("12.5"), "12.5"),
            pair(Some("7"), "7")
        ]
    );
    let types = view_types(&target, "charged").await;
    assert!(
        types.contains(&("qty".to_string(), "STRING".to_string())),
        "{types:?}"
    );
    assert_eq!(
        w.column_misfits().await.unwrap(),
        [],
        "nothing pinned, nothing counted"
    );
}

/// A pinned column is cast to its pin whatever its values say; a value that does not fit is
/// NULL in the view, kept in the raw table, and counted. A load without a types file keeps the
/// pins; one with a file that no longer names the column removes its pin.
async fn a_pinned_column_counts_its_misfits(target: BigQueryTarget) {
    let types = "[charged]\nCode = \"integer\"\n\n[\"*\"]\nQty = \"text\"\n";
    let w = open(&target, Some(types)).await;
    let row = |code: &'static str, qty: &'static str| {
        let mut values: Vec<Option<&str>> = vec![None; 9];
        values[1] = Some(code);
        values[7] = Some(qty);
        values
    };
    let (a, b) = (row("007", "3"), row("12", "4"));
    load(
        w.as_ref(),
        "file:///exports/pinned-1.csv",
        &[a.clone(), b.clone()],
    )
    .await;
    let pins = target
        .rows("SELECT column_name, kind, pinned FROM _tapline_columns WHERE pinned IS NOT NULL ORDER BY column_name")
        .await;
    assert_eq!(
        pins,
        [
            vec![s("code"), s("text"), s("integer")],
            vec![s("qty"), s("integer"), s("text")]
        ]
    );
    assert_eq!(
        typed_and_raw(&target, "code", "INTEGER").await,
        [pair(None, "007"), pair(Some("12"), "12")]
    );
    assert_eq!(
        typed_and_raw(&target, "qty", "STRING").await,
        [pair(Some("3"), "3"), pair(Some("4"), "4")]
    );
    assert_eq!(
        w.column_misfits().await.unwrap(),
        [ColumnMisfit {
            table: "charged".into(),
            column: "code".into(),
            kind: ColumnKind::Integer,
            values: 1
        }]
    );

    // Without a types file the pins stay; with one that names neither column they go.
    let plain = open(&target, None).await;
    load(
        plain.as_ref(),
        "file:///exports/pinned-2.csv",
        std::slice::from_ref(&a),
    )
    .await;
    assert_eq!(plain.column_misfits().await.unwrap()[0].values, 2);
    let other = open(&target, Some("[charged]\nAmount = \"decimal\"\n")).await;
    load(other.as_ref(), "file:///exports/pinned-3.csv", &[b]).await;
    assert_eq!(
        target
            .rows("SELECT column_name, pinned FROM _tapline_columns WHERE pinned IS NOT NULL")
            .await,
        [vec![s("amount"), s("decimal")]]
    );
    assert_eq!(other.column_misfits().await.unwrap(), []);
    assert_eq!(
        typed_and_raw(&target, "code", "STRING").await,
        [
            pair(Some("007"), "007"),
            pair(Some("12"), "12"),
            pair(Some("007"), "007"),
            pair(Some("12"), "12")
        ]
    );
}

/// The BI dataset is created by the first load that builds typed views (opening a dataset to
/// read it needs no more rights than before), beside the raw one: in its location, with its
/// labels; `bi_dataset=NAME` names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bi_dataset_is_created_where_the_raw_one_is() {
    let target = BigQueryTarget::double("unused").await;
    let double = target.as_double().unwrap();
    reqwest::Client::new()
        .post(format!(
            "{}/bigquery/v2/projects/tapline-test/datasets",
            double.endpoint
        ))
        .json(&serde_json::json!({
            "datasetReference": { "projectId": "tapline-test", "datasetId": "clevertap" },
            "location": "europe-west1",
            "labels": { "team": "growth" },
        }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let url = "bigquery://tapline-test/clevertap?bi_dataset=reports";
    let w = BigQueryWarehouse::open_at(url, Some(&double.endpoint), GoogleAuth::anonymous())
        .await
        .expect("open");
    assert!(!double.has_dataset("reports"), "not at open");
    load(&w, "file:///exports/charged.csv", &[vec![Some("1"); 9]]).await;
    assert_eq!(
        double.dataset("reports").unwrap(),
        serde_json::json!({ "location": "europe-west1", "labels": { "team": "growth" } })
    );
    assert!(!double.has_dataset("clevertap_bi"));
    assert_eq!(double.tables("reports"), ["all_events", "charged"]);
    load(&w, "file:///exports/charged-2.csv", &[vec![Some("2"); 9]]).await;
    assert_eq!(
        double.count("datasets.insert"),
        2,
        "the raw one and the BI one, once"
    );
}

/// Without the right to create datasets, the load that would build the typed views says which
/// dataset to create, and that a retry would not help; its rows are committed all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bi_dataset_that_cannot_be_created_is_named() {
    let target = BigQueryTarget::double("clevertap").await;
    let double = target.as_double().unwrap();
    double.fail_next("datasets.insert", 403, "accessDenied");
    let w = open(&target, None).await;
    let mut t = match w
        .begin_load(&object("file:///exports/charged.csv", "v1"), false)
        .await
        .unwrap()
    {
        Begin::Started(t) => t,
        Begin::Done(r) => panic!("already {:?}", r.status),
    };
    let mut row = vec![Some("2022-09-21T04:32:45Z"), Some("Charged")];
    row.extend([Some("1"); 9]);
    t.append(batch(&COLUMNS, &[(1, row)])).await.unwrap();
    let error = t
        .commit(
            Outcome::Loaded {
                bytes: 100,
                rows: 1,
                rejected: 0,
            },
            Vec::new(),
        )
        .await
        .expect_err("the rebuild fails");
    let text = tapline::error::error_chain(&error);
    assert!(
        text.contains("cannot create dataset tapline-test:clevertap_bi for the typed views"),
        "{text}"
    );
    assert!(text.contains("--location=US"), "{text}");
    assert!(!error.is_retryable(), "{text}");
    assert_eq!(target.value("SELECT count(*) FROM charged").await, s("1"));
    assert_eq!(
        target.value("SELECT status FROM _tapline_loads").await,
        s("loaded")
    );
}

/// A table in the BI dataset named like a typed view is left as it is; that event gets no
/// typed view, and the others (and `all_events`) do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_named_like_a_typed_view_is_left() {
    let target = BigQueryTarget::double("clevertap").await;
    let double = target.as_double().unwrap();
    double.add_dataset("clevertap_bi");
    reqwest::Client::new()
        .post(format!(
            "{}/bigquery/v2/projects/tapline-test/datasets/clevertap_bi/tables",
            double.endpoint
        ))
        .json(&serde_json::json!({
            "tableReference": { "projectId": "tapline-test", "datasetId": "clevertap_bi", "tableId": "charged" },
            "schema": { "fields": [{ "name": "mine", "type": "STRING" }] },
        }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let w = open(&target, None).await;
    load(
        w.as_ref(),
        "file:///exports/charged.csv",
        &[vec![Some("1"); 9]],
    )
    .await;
    let table = double.table("clevertap_bi", "charged").unwrap();
    assert_eq!(table["type"], "TABLE");
    assert_eq!(table["schema"]["fields"][0]["name"], "mine");
    assert_eq!(double.tables("clevertap_bi"), ["all_events", "charged"]);
}

/// A dataset from before column kinds: `_tapline_columns` gains `kind` and `pinned` at open,
/// and its rows (kind NULL) read as text, so a later load's integers never narrow a column
/// whose older values were never classified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_dataset_gains_kinds_and_its_columns_stay_text() {
    let target = BigQueryTarget::double("clevertap").await;
    let double = target.as_double().unwrap();
    let old_fields = serde_json::json!([
        { "name": "table_name", "type": "STRING", "mode": "REQUIRED" },
        { "name": "column_name", "type": "STRING", "mode": "REQUIRED" },
        { "name": "raw_name", "type": "STRING", "mode": "REQUIRED" },
        { "name": "added_by_load", "type": "INT64", "mode": "REQUIRED" },
        { "name": "added_at", "type": "TIMESTAMP", "mode": "REQUIRED" },
    ]);
    reqwest::Client::new()
        .post(format!(
            "{}/bigquery/v2/projects/tapline-test/datasets/clevertap/tables",
            double.endpoint
        ))
        .json(&serde_json::json!({
            "tableReference": { "projectId": "tapline-test", "datasetId": "clevertap", "tableId": "_tapline_columns" },
            "schema": { "fields": old_fields },
        }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let w = open(&target, None).await;
    let fields: Vec<String> =
        double.table("clevertap", "_tapline_columns").unwrap()["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(&fields[5..], ["kind", "pinned"]);
    let mut values = vec![None; 9];
    values[7] = Some("3");
    load(
        w.as_ref(),
        "file:///exports/charged-1.csv",
        &[values.clone()],
    )
    .await;
    // As an older Tapline left them: no kinds, no typed views.
    double.execute(
        "clevertap",
        "UPDATE clevertap._tapline_columns SET kind = NULL",
    );
    for view in ["charged", "all_events"] {
        reqwest::Client::new()
            .delete(format!(
                "{}/bigquery/v2/projects/tapline-test/datasets/clevertap_bi/tables/{view}",
                double.endpoint
            ))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }
    values[7] = Some("4");
    load(w.as_ref(), "file:///exports/charged-2.csv", &[values]).await;
    assert_eq!(
        target
            .value("SELECT kind FROM _tapline_columns WHERE column_name = 'qty'")
            .await,
        None,
        "read as text, which no kind widens"
    );
    let types = view_types(&target, "charged").await;
    assert!(
        types.contains(&("qty".to_string(), "STRING".to_string())),
        "{types:?}"
    );
    assert_eq!(
        typed_and_raw(&target, "qty", "STRING").await,
        [pair(Some("3"), "3"), pair(Some("4"), "4")]
    );
}

/// Google's own client (`google-cloud-bigquery`, as Looker Studio's and other tools'
/// connectors read BigQuery) against bqemulator: the typed view's field types come from
/// tables.get on the view, and a row's numbers come back as Python numbers, its timestamp as
/// a datetime and its boolean as a bool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn googles_client_reads_the_typed_view_on_bqemulator() {
    let target = BigQueryTarget::emulator("google_client").await;
    let w = open(&target, None).await;
    load(
        w.as_ref(),
        "file:///exports/charged-1.csv",
        &[
            vec![
                Some("12.5"),
                Some("007"),
                None,
                None,
                Some("true"),
                Some("$D_1663735165"),
                Some("[1,2]"),
                Some("3"),
                None,
            ],
            vec![
                Some("2"),
                Some("8"),
                None,
                None,
                Some("false"),
                None,
                None,
                Some("4"),
                None,
            ],
        ],
    )
    .await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let expected = serde_json::json!({
        "types": {
            "ts": "TIMESTAMP", "amount": "FLOAT", "code": "STRING", "paid": "BOOLEAN",
            "since": "TIMESTAMP", "items": "JSON", "qty": "INTEGER",
        },
        "row": {
            "amount": ["float", 12.5],
            "qty": ["int", 3],
            "paid": ["bool", true],
            "code": ["str", "007"],
            "since": ["datetime", "2022-09-21T04:39:25Z"],
        },
    });
    let mut child = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/scripts/bigquery_client_reads_typed_view.py"))
        .args([target.endpoint(), "tapline-test", &bi(&target), "charged"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run .venv/bin/python (tests/scripts/with-bqemulator.sh installs it)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(expected.to_string().as_bytes()).unwrap();
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "the client script failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Two loaders widening one column: the commit widens the kind stored when it runs, not the one
/// its load began with, so a wider kind another loader committed meanwhile is never narrowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_widened_meanwhile_is_not_narrowed() {
    let target = BigQueryTarget::double("clevertap").await;
    let double = target.as_double().unwrap();
    let w = open(&target, None).await;
    let qty = |v: &'static str| {
        let mut values: Vec<Option<&str>> = vec![None; 9];
        values[7] = Some(v);
        values
    };
    load(w.as_ref(), "file:///exports/charged-1.csv", &[qty("3")]).await;
    let mut t = match w
        .begin_load(&object("file:///exports/charged-2.csv", "v1"), false)
        .await
        .unwrap()
    {
        Begin::Started(t) => t,
        Begin::Done(r) => panic!("already {:?}", r.status),
    };
    let mut row = vec![Some("2022-09-21T04:32:45Z"), Some("Charged")];
    row.extend(qty("2.5"));
    t.append(batch(&COLUMNS, &[(1, row)])).await.unwrap();
    // Another loader's commit, between this load's start (qty: integer) and its commit.
    double.execute(
        "clevertap",
        "UPDATE clevertap._tapline_columns SET kind = 'text' WHERE column_name = 'qty'",
    );
    t.commit(
        Outcome::Loaded {
            bytes: 100,
            rows: 1,
            rejected: 0,
        },
        Vec::new(),
    )
    .await
    .expect("commit");
    assert_eq!(
        target
            .value("SELECT kind FROM _tapline_columns WHERE column_name = 'qty'")
            .await,
        s("text"),
        "integer → decimal here, text there: text"
    );
    assert_eq!(
        typed_and_raw(&target, "qty", "STRING").await,
        [pair(Some("3"), "3"), pair(Some("2.5"), "2.5")]
    );
}
