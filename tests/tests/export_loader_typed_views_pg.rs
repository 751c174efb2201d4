//! Typed views on a real PostgreSQL 15 (see `tests/scripts/with-postgres.sh`) through
//! `tapline load`: each column's inferred kind in `_tapline_columns`, the views of the BI schema
//! (`<schema>_bi`) with their values beside the raw text, widening in the load's own
//! transaction, an upgraded schema, pins and their misfits.

use std::sync::Arc;

use tapline::warehouse::column_kinds::{ColumnKind, classify};
use tapline::warehouse::column_types::ColumnTypes;
use tapline::warehouse::open::{OpenOptions, open_with};
use tapline::warehouse::{Begin, ColumnMisfit, Outcome, SourceObject};
use tapline_tests::servers::pg::PgSchema;
use tapline_tests::{Run, fixed_header, fixed_row, gzip, tapline};

/// A schema of its own, and an exports folder.
struct Case {
    db: PgSchema,
    files: tapline_tests::ExportCase,
}

impl Case {
    fn new(test: &str) -> Self {
        Self {
            db: PgSchema::new(&format!("tv_{test}")),
            files: tapline_tests::ExportCase::new(),
        }
    }

    fn bi(&self) -> String {
        format!("{}_bi", self.db.schema)
    }

    /// Writes a gzipped CSV export of `event` (file part `part`): the fixed columns plus
    /// `props` (raw names), one row per entry of `rows`, a second apart from midnight.
    fn csv(&self, event: &str, part: u32, props: &[&str], rows: &[Vec<&str>]) {
        let mut text = fixed_header();
        for p in props {
            text.push(',');
            text.push_str(p);
        }
        text.push('\n');
        for (i, values) in rows.iter().enumerate() {
            let quoted: Vec<String> = values.iter().map(|v| csv_field(v)).collect();
            let quoted: Vec<&str> = quoted.iter().map(String::as_str).collect();
            let ts = format!("2022092100{:02}{:02}", i / 60 % 60, i % 60);
            text.push_str(&fixed_row(&ts, event, &format!("u{i}"), &quoted));
            text.push('\n');
        }
        let name = format!(
            "1663664837-1663785000-{}-20220921-{part}-0.csv.gz",
            event.replace(' ', "-")
        );
        self.files.write_bytes(&name, &gzip(text.as_bytes()));
    }

    fn load(&self) -> Run {
        self.db.load(self.files.root.to_str().unwrap())
    }

    fn load_ok(&self) {
        let run = self.load();
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    }

    /// Rows of `sql` (fields split at `|`), read in the session zone Asia/Kolkata: a typed
    /// timestamp must not depend on the reader's zone.
    fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let out = self
            .db
            .psql(&format!("SET TIME ZONE 'Asia/Kolkata'; {sql}"));
        out.lines()
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect()
    }

    fn kind(&self, table: &str, column: &str) -> String {
        self.db.psql(&format!(
            "SELECT coalesce(kind, 'NULL') FROM _tapline_columns \
             WHERE table_name = '{table}' AND column_name = '{column}'"
        ))
    }

    /// `[typed value, its type, raw value]` of `column` per row, in load and line order
    /// (`NULL` for a NULL).
    fn typed_and_raw(&self, table: &str, column: &str) -> Vec<Vec<String>> {
        self.rows(&format!(
            "SELECT coalesce(v.{column}::text, 'NULL'), pg_typeof(v.{column}), coalesce(t.{column}, 'NULL') \
             FROM {bi}.{table} v JOIN {table} t USING (_source_uri, _source_line) \
             ORDER BY t._load_id, t._source_line",
            bi = self.bi()
        ))
    }

    /// The transaction that last wrote the typed view `view` (its `pg_class` row).
    fn view_xmin(&self, view: &str) -> String {
        self.db.psql(&format!(
            "SELECT xmin FROM pg_class WHERE oid = '{}.{view}'::regclass",
            self.bi()
        ))
    }

    /// Opens the warehouse with `types` pinned and commits an empty load: the commit makes the
    /// stored pins these and rebuilds what they change.
    async fn pin(&self, types: &str, version: &str) {
        let types = ColumnTypes::parse(types, "types.toml").unwrap();
        let options = OpenOptions {
            column_types: Some(Arc::new(types)),
        };
        let warehouse = open_with(&self.db.url(), &options).await.unwrap();
        let object = SourceObject {
            uri: "test://pins".to_string(),
            version: version.to_string(),
            bytes: Some(0),
        };
        let Begin::Started(load) = warehouse.begin_load(&object, false).await.unwrap() else {
            panic!("a new version is loaded");
        };
        let outcome = Outcome::Loaded {
            bytes: 0,
            rows: 0,
            rejected: 0,
        };
        load.commit(outcome, Vec::new()).await.unwrap();
    }

    async fn misfits(&self) -> Vec<ColumnMisfit> {
        let warehouse = open_with(&self.db.url(), &OpenOptions::default())
            .await
            .unwrap();
        warehouse.column_misfits().await.unwrap()
    }
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn row(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

const PROPS: [&str; 9] = [
    "eventProps.Amount",
    "eventProps.Code",
    "eventProps.Big",
    "eventProps.When",
    "eventProps.Paid",
    "eventProps.Since",
    "eventProps.Items",
    "eventProps.Qty",
    "eventProps.Nothing",
];

#[test]
fn each_bad_input_gets_its_kind_a_typed_value_and_keeps_its_raw_value() {
    let case = Case::new("bad");
    let sixty_four_digits = "1234567890".repeat(6) + "1234";
    case.csv(
        "Charged",
        0,
        &PROPS,
        &[
            vec![
                "12",
                "007",
                &sixty_four_digits,
                "2022-02-30T00:00:00Z",
                "true",
                "$D_1663735165",
                "[1,2]",
                "3",
                "",
            ],
            vec![
                "12.5",
                "12",
                "5",
                "2022-09-21T04:39:25+05:30",
                "false",
                "2022-09-21",
                "{\"a\":1}",
                "4",
                "",
            ],
        ],
    );
    case.load_ok();
    let kinds: Vec<String> = [
        "ts",
        "event_name",
        "event_props_amount",
        "event_props_code",
        "event_props_big",
        "event_props_when",
        "event_props_paid",
        "event_props_since",
        "event_props_items",
        "event_props_qty",
        "event_props_nothing",
    ]
    .iter()
    .map(|c| case.kind("charged", c))
    .collect();
    assert_eq!(
        kinds,
        [
            "timestamp",
            "text",
            "decimal",
            "text", // `007` is an identifier
            "text", // 64 digits do not fit an integer
            "text", // 30 February is no date
            "boolean",
            "timestamp",
            "json",
            "integer",
            "NULL", // only NULLs so far
        ]
    );
    let check = |column: &str, want: Vec<Vec<String>>| {
        assert_eq!(case.typed_and_raw("charged", column), want, "{column}");
    };
    check(
        "event_props_amount",
        vec![
            row(&["12", "numeric", "12"]),
            row(&["12.5", "numeric", "12.5"]),
        ],
    );
    check(
        "event_props_code",
        vec![row(&["007", "text", "007"]), row(&["12", "text", "12"])],
    );
    check(
        "event_props_big",
        vec![
            row(&[&sixty_four_digits, "text", &sixty_four_digits]),
            row(&["5", "text", "5"]),
        ],
    );
    check(
        "event_props_when",
        vec![
            row(&["2022-02-30T00:00:00Z", "text", "2022-02-30T00:00:00Z"]),
            row(&[
                "2022-09-21T04:39:25+05:30",
                "text",
                "2022-09-21T04:39:25+05:30",
            ]),
        ],
    );
    check(
        "event_props_paid",
        vec![
            row(&["true", "boolean", "true"]),
            row(&["false", "boolean", "false"]),
        ],
    );
    // Read in Asia/Kolkata: `$D_` is epoch seconds, a date without an offset is UTC midnight.
    check(
        "event_props_since",
        vec![
            row(&[
                "2022-09-21 10:09:25+05:30",
                "timestamp with time zone",
                "$D_1663735165",
            ]),
            row(&[
                "2022-09-21 05:30:00+05:30",
                "timestamp with time zone",
                "2022-09-21",
            ]),
        ],
    );
    check(
        "event_props_items",
        vec![
            row(&["[1, 2]", "jsonb", "[1,2]"]),
            row(&["{\"a\": 1}", "jsonb", "{\"a\":1}"]),
        ],
    );
    check(
        "event_props_qty",
        vec![row(&["3", "bigint", "3"]), row(&["4", "bigint", "4"])],
    );
    check(
        "event_props_nothing",
        vec![
            row(&["NULL", "text", "NULL"]),
            row(&["NULL", "text", "NULL"]),
        ],
    );

    // A later file: the boolean column holds `1`, the integer column a word. Both widen to
    // text, the view follows, and every raw value is still there.
    case.csv(
        "Charged",
        1,
        &["eventProps.Paid", "eventProps.Qty"],
        &[vec!["1", "many"]],
    );
    case.load_ok();
    assert_eq!(case.kind("charged", "event_props_paid"), "text");
    assert_eq!(case.kind("charged", "event_props_qty"), "text");
    check(
        "event_props_paid",
        vec![
            row(&["true", "text", "true"]),
            row(&["false", "text", "false"]),
            row(&["1", "text", "1"]),
        ],
    );
    check(
        "event_props_qty",
        vec![
            row(&["3", "text", "3"]),
            row(&["4", "text", "4"]),
            row(&["many", "text", "many"]),
        ],
    );
    assert_eq!(case.kind("charged", "event_props_amount"), "decimal");
}

#[test]
fn a_numeric_column_sums_without_a_cast_and_widens_in_the_loads_transaction() {
    let case = Case::new("sum");
    let amounts: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let rows: Vec<Vec<&str>> = amounts.iter().map(|a| vec![a.as_str()]).collect();
    case.csv("Order Placed", 0, &["eventProps.Amount"], &rows);
    case.load_ok();
    assert_eq!(case.kind("order_placed", "event_props_amount"), "integer");
    let sum = format!(
        "SELECT SUM(event_props_amount), pg_typeof(SUM(event_props_amount)) FROM {}.order_placed",
        case.bi()
    );
    assert_eq!(case.rows(&sum), vec![row(&["499500", "numeric"])]);

    // A decimal widens integer to decimal: still summed as a number, exactly.
    case.csv("Order Placed", 1, &["eventProps.Amount"], &[vec!["0.5"]]);
    case.load_ok();
    assert_eq!(case.kind("order_placed", "event_props_amount"), "decimal");
    assert_eq!(case.rows(&sum), vec![row(&["499500.5", "numeric"])]);

    // Numeric for 500 rows, then one text value in the same file: text from this file on,
    // every value its raw text. The widening is in the load's own transaction: while a trigger
    // refuses the ledger row at its very end, the kind and the view stay as they were.
    let mut rows: Vec<Vec<&str>> = amounts[..500].iter().map(|a| vec![a.as_str()]).collect();
    rows.push(vec!["n/a"]);
    case.csv("Order Placed", 2, &["eventProps.Amount"], &rows);
    // A read-only BI role keeps its grant across the rebuild.
    let reader = format!("{}_reader", case.db.schema);
    case.db.psql(&format!(
        "CREATE ROLE {reader}; GRANT USAGE ON SCHEMA {bi} TO {reader}; \
         GRANT SELECT ON ALL TABLES IN SCHEMA {bi} TO {reader};",
        bi = case.bi()
    ));
    let view_before = case.view_xmin("order_placed");
    case.db.psql(
        "CREATE FUNCTION refuse_loaded() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
         CREATE TRIGGER refuse BEFORE UPDATE ON _tapline_loads FOR EACH ROW \
         WHEN (NEW.status = 'loaded') EXECUTE FUNCTION refuse_loaded();",
    );
    let run = case.load();
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("refused by the test"), "{}", run.stdout);
    assert_eq!(case.kind("order_placed", "event_props_amount"), "decimal");
    assert_eq!(case.view_xmin("order_placed"), view_before);
    assert_eq!(case.rows(&sum), vec![row(&["499500.5", "numeric"])]);

    case.db
        .psql("DROP TRIGGER refuse ON _tapline_loads; DROP FUNCTION refuse_loaded();");
    case.load_ok();
    assert_eq!(case.kind("order_placed", "event_props_amount"), "text");
    assert_ne!(case.view_xmin("order_placed"), view_before);
    assert_eq!(
        case.db.psql(&format!(
            "SET ROLE {reader}; SELECT count(*) FROM {}.order_placed",
            case.bi()
        )),
        "1502"
    );
    assert_eq!(
        case.rows(&format!(
            "SELECT pg_typeof(event_props_amount), count(*), count(*) FILTER (WHERE event_props_amount = 'n/a') \
             FROM {}.order_placed GROUP BY 1",
            case.bi()
        )),
        vec![row(&["text", "1502", "1"])]
    );
    assert_eq!(
        case.db.psql("SELECT count(*) FROM order_placed"),
        "1502",
        "raw rows unchanged"
    );
}

#[test]
fn loading_again_or_a_quarantined_file_changes_no_kind_and_no_view() {
    let case = Case::new("again");
    case.csv(
        "Charged",
        0,
        &["eventProps.Amount"],
        &[vec!["5"], vec!["6"]],
    );
    case.load_ok();
    let layer = || {
        (
            case.view_xmin("charged"),
            case.view_xmin("all_events"),
            case.db.psql(
                "SELECT string_agg(column_name || '=' || coalesce(kind, 'NULL'), ',' ORDER BY column_name) \
                 FROM _tapline_columns",
            ),
        )
    };
    let before = layer();
    let run = case.load();
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("already loaded"), "{}", run.stdout);
    assert_eq!(layer(), before, "loading again changed the typed layer");

    // Text amounts and too many bad rows: the file is quarantined and widens nothing.
    let mut rows: Vec<Vec<&str>> = (0..95).map(|_| vec!["free"]).collect();
    rows.extend((0..5).map(|_| vec!["x", "too", "many"]));
    case.csv("Charged", 1, &["eventProps.Amount"], &rows);
    let run = case.load();
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_eq!(
        case.db
            .psql("SELECT status FROM _tapline_loads WHERE uri LIKE '%-1-0.csv.gz'"),
        "quarantined"
    );
    assert_eq!(
        layer(),
        before,
        "a quarantined load changed the typed layer"
    );
    assert_eq!(case.kind("charged", "event_props_amount"), "integer");
}

#[test]
fn typed_all_events_types_the_standard_columns_across_tables() {
    let case = Case::new("all");
    for (event, phone) in [
        ("Charged", "919876543210"),
        ("App Launched", "+919876543210"),
    ] {
        let text = format!("ts,eventName,profile.phone\n20220921000000,{event},{phone}\n");
        let name = format!(
            "1663664837-1663785000-{}-20220921-0-0.csv.gz",
            event.replace(' ', "-")
        );
        case.files.write_bytes(&name, &gzip(text.as_bytes()));
    }
    case.load_ok();
    assert_eq!(case.kind("charged", "profile_phone"), "integer");
    assert_eq!(case.kind("app_launched", "profile_phone"), "text");
    // A number in one table and text in the other: text in all_events, both values kept.
    assert_eq!(
        case.rows(&format!(
            "SELECT _table, profile_phone, pg_typeof(profile_phone), ts, pg_typeof(ts) \
             FROM {}.all_events ORDER BY _table",
            case.bi()
        )),
        vec![
            row(&[
                "app_launched",
                "+919876543210",
                "text",
                "2022-09-21 05:30:00+05:30",
                "timestamp with time zone"
            ]),
            row(&[
                "charged",
                "919876543210",
                "text",
                "2022-09-21 05:30:00+05:30",
                "timestamp with time zone"
            ]),
        ]
    );
    assert_eq!(
        case.rows(&format!(
            "SELECT profile_phone, pg_typeof(profile_phone) FROM {}.charged",
            case.bi()
        )),
        vec![row(&["919876543210", "bigint"])]
    );
}

#[test]
fn information_schema_reports_the_typed_columns() {
    let case = Case::new("info");
    case.csv(
        "Charged",
        0,
        &[
            "eventProps.Amount",
            "eventProps.Qty",
            "eventProps.Paid",
            "eventProps.When",
            "eventProps.Items",
            "eventProps.Note",
        ],
        &[vec![
            "1.5",
            "2",
            "true",
            "2022-09-21T04:39:25Z",
            "[1]",
            "hi",
        ]],
    );
    case.load_ok();
    assert_eq!(
        case.rows(&format!(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = '{}' AND table_name = 'charged' \
             AND (column_name LIKE 'event%' OR column_name IN ('ts', '_source_line')) \
             ORDER BY ordinal_position",
            case.bi()
        )),
        vec![
            row(&["ts", "timestamp with time zone"]),
            row(&["event_name", "text"]),
            row(&["event_props_amount", "numeric"]),
            row(&["event_props_qty", "bigint"]),
            row(&["event_props_paid", "boolean"]),
            row(&["event_props_when", "timestamp with time zone"]),
            row(&["event_props_items", "jsonb"]),
            row(&["event_props_note", "text"]),
            row(&["_source_line", "bigint"]),
        ]
    );
    // The BI schema holds the typed views only (and the JSON cast): no raw table, no ledger.
    assert_eq!(
        case.db.psql(&format!(
            "SELECT string_agg(table_name || ':' || table_type, ',' ORDER BY table_name) \
             FROM information_schema.tables WHERE table_schema = '{}'",
            case.bi()
        )),
        "all_events:VIEW,charged:VIEW"
    );
}

#[test]
fn a_schema_from_before_kinds_keeps_its_columns_as_text_and_gets_its_views() {
    let case = Case::new("upgrade");
    case.csv("Charged", 0, &["eventProps.Amount"], &[vec!["5"]]);
    case.csv("App Launched", 0, &["eventProps.Screen"], &[vec!["home"]]);
    case.load_ok();
    // Back to a schema written before kinds and typed views.
    case.db.psql(&format!(
        "DROP SCHEMA {} CASCADE; ALTER TABLE _tapline_columns DROP COLUMN kind, DROP COLUMN pinned;",
        case.bi()
    ));
    case.csv(
        "Charged",
        1,
        &["eventProps.Amount", "eventProps.Qty"],
        &[vec!["6", "2"]],
    );
    case.load_ok();
    // Rows loaded before were never classified: text hides none of them.
    assert_eq!(case.kind("charged", "event_props_amount"), "text");
    assert_eq!(case.kind("app_launched", "event_props_screen"), "text");
    assert_eq!(case.kind("charged", "event_props_qty"), "integer");
    assert_eq!(
        case.db.psql(&format!(
            "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.views \
             WHERE table_schema = '{}'",
            case.bi()
        )),
        "all_events,app_launched,charged"
    );
    assert_eq!(
        case.rows(&format!(
            "SELECT event_props_amount, pg_typeof(event_props_amount), coalesce(event_props_qty::text, 'NULL'), \
             pg_typeof(event_props_qty) FROM {}.charged ORDER BY _load_id",
            case.bi()
        )),
        vec![
            row(&["5", "text", "NULL", "bigint"]),
            row(&["6", "text", "2", "bigint"])
        ]
    );
}

#[test]
fn a_relation_in_the_way_or_a_view_over_a_typed_view_never_fails_a_load() {
    let case = Case::new("inway");
    case.csv("Charged", 0, &["eventProps.Amount"], &[vec!["5"]]);
    case.load_ok();
    // A table of the user's in the BI schema, named like the next event's view, and a view of
    // the user's over the typed view of Charged.
    case.db.psql(&format!(
        "CREATE TABLE {bi}.app_launched (note text); \
         CREATE VIEW {bi}.big_charges AS SELECT event_props_amount FROM {bi}.charged WHERE event_props_amount > 1",
        bi = case.bi()
    ));
    case.csv("App Launched", 0, &["eventProps.Screen"], &[vec!["home"]]);
    case.csv("Charged", 1, &["eventProps.Amount"], &[vec!["lots"]]);
    let root = case.files.root.to_str().unwrap();
    let run = tapline(&["load", root, "--warehouse", &case.db.url(), "-v"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("A relation named like the typed view is not a view"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Other views depend on the typed view"),
        "{}",
        run.stderr
    );
    // The user's table and view are untouched; Charged's typed view keeps its integer type
    // (the widened text value is NULL in it, and kept in the raw table).
    assert_eq!(
        case.db.psql(&format!(
            "SELECT c.relname || ':' || c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = '{}' AND c.relname IN ('app_launched', 'big_charges') ORDER BY 1",
            case.bi()
        )),
        "app_launched:r\nbig_charges:v"
    );
    assert_eq!(case.kind("charged", "event_props_amount"), "text");
    assert_eq!(
        case.typed_and_raw("charged", "event_props_amount"),
        vec![row(&["5", "bigint", "5"]), row(&["NULL", "bigint", "lots"])]
    );
    // all_events is rebuilt with the new table in it.
    assert_eq!(
        case.db.psql(&format!(
            "SELECT string_agg(DISTINCT _table, ',' ORDER BY _table) FROM {}.all_events",
            case.bi()
        )),
        "app_launched,charged"
    );
}

#[test]
fn the_bi_schema_can_be_named() {
    let case = Case::new("named");
    case.csv("Charged", 0, &["eventProps.Amount"], &[vec!["5"]]);
    let bi = format!("{}_reporting", case.db.schema);
    let url = format!("{}&bi_schema={bi}", case.db.url());
    let run = tapline(&[
        "load",
        case.files.root.to_str().unwrap(),
        "--warehouse",
        &url,
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        case.db
            .psql(&format!("SELECT event_props_amount + 1 FROM {bi}.charged")),
        "6"
    );
    assert_eq!(
        case.db.psql(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = '{}'",
            case.bi()
        )),
        "0"
    );
}

/// Values on each side of every kind's edge: every pinned cast gives a value exactly when
/// the inference says the value is of that kind (decimal: any finite JSON number, as on
/// SQLite), NULL otherwise, and never an error.
const EDGES: &[&str] = &[
    "0",
    "-0",
    "007",
    "+1",
    "-12",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "1234567890123456789012345678901234567890123456789012345678901234",
    "1.5",
    "-0.25",
    "1e+30",
    "1E5",
    "1e-400",
    "1e00000000005",
    ".5",
    "1.",
    "NaN",
    "Infinity",
    "true",
    "True",
    "false",
    "t",
    "1",
    "2022-09-21",
    "2022-02-29",
    "2024-02-29",
    "1900-02-29",
    "2000-02-29",
    "0000-01-01",
    "2022-02-30T00:00:00Z",
    "2022-04-31",
    "2022-09-21T04:39:25+05:30",
    "2022-09-21T04:39:25+23:59",
    "2022-09-21 04:39:25.123456789Z",
    "2022-09-21T04:39:25.1234567891Z",
    "2022-09-21T24:00:00Z",
    "2022-09-21T04:39:25+0530",
    "9999-12-31T23:59:59Z",
    "$D_1663735165",
    "$D_-62135596800",
    "$D_253402300800",
    "$D_",
    "[1,2]",
    "{\"a\":{\"b\":[true]}}",
    "[1,",
    "{}",
    "\"x\"",
    "null",
    "[\"\\u0000\"]",
    "[1e999999]",
    "hello",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_columns_cast_what_fits_and_count_what_does_not() {
    let case = Case::new("pins");
    let long_decimal = format!("0.{}", "1".repeat(15_998));
    // Past the server's stack depth: jsonb fails with a program limit, not a data error.
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut values: Vec<&str> = EDGES.to_vec();
    values.push(&long_decimal);
    values.push(&deep_json);
    let props = [
        "eventProps.Int",
        "eventProps.Dec",
        "eventProps.Bool",
        "eventProps.When",
        "eventProps.Doc",
    ];
    let rows: Vec<Vec<&str>> = values.iter().map(|v| vec![*v; props.len()]).collect();
    case.csv("Charged", 0, &props, &rows);
    case.load_ok();
    assert_eq!(case.kind("charged", "event_props_int"), "text");
    let types = "[charged]\n\"eventProps.Int\" = \"integer\"\n\"eventProps.Dec\" = \"decimal\"\n\
                 event_props_bool = \"boolean\"\n\"eventProps.When\" = \"timestamp\"\n\
                 [\"*\"]\n\"eventProps.Doc\" = \"json\"\n";
    let before = case.view_xmin("charged");
    case.pin(types, "1").await;
    assert_ne!(case.view_xmin("charged"), before, "pins rebuild the view");
    assert_eq!(
        case.db.psql(
            "SELECT string_agg(column_name || '=' || pinned, ',' ORDER BY column_name) \
             FROM _tapline_columns WHERE pinned IS NOT NULL"
        ),
        "event_props_bool=boolean,event_props_dec=decimal,event_props_doc=json,\
         event_props_int=integer,event_props_when=timestamp"
    );

    let columns = [
        ("event_props_int", ColumnKind::Integer),
        ("event_props_dec", ColumnKind::Decimal),
        ("event_props_bool", ColumnKind::Boolean),
        ("event_props_when", ColumnKind::Timestamp),
        ("event_props_doc", ColumnKind::Json),
    ];
    // Per row: whether each typed value is non-NULL, and the raw value.
    let select: Vec<String> = columns
        .iter()
        .map(|(c, _)| format!("(v.{c} IS NOT NULL)::int"))
        .collect();
    let got = case.rows(&format!(
        "SELECT {}, t.event_props_int FROM {}.charged v JOIN charged t USING (_source_uri, _source_line) \
         ORDER BY t._source_line",
        select.join(", "),
        case.bi()
    ));
    assert_eq!(got.len(), values.len());
    let mut misfits = [0u64; 5];
    for (raw, got) in values.iter().zip(&got) {
        assert!(got[5] == *raw, "raw value {raw:.60?}");
        let inferred = classify(raw);
        for (i, (column, kind)) in columns.iter().enumerate() {
            let fits = match kind {
                ColumnKind::Decimal => serde_json::from_str::<serde_json::Number>(raw).is_ok(),
                _ => inferred == *kind,
            };
            // jsonb refuses what JSON (and the inference) allow past its own limits: the NUL
            // character, numbers past NUMERIC's range, nesting past the server's stack.
            let fits = fits && !["[\"\\u0000\"]", "[1e999999]", deep_json.as_str()].contains(raw);
            assert_eq!(got[i] == "1", fits, "{column} of {raw:.60?}");
            misfits[i] += u64::from(!fits);
        }
    }
    let mut want: Vec<ColumnMisfit> = columns
        .iter()
        .zip(misfits)
        .filter(|(_, values)| *values > 0)
        .map(|((column, kind), values)| ColumnMisfit {
            table: "charged".to_string(),
            column: column.to_string(),
            kind: *kind,
            values,
        })
        .collect();
    want.sort_by(|a, b| a.column.cmp(&b.column));
    assert_eq!(want.len(), 5);
    assert_eq!(case.misfits().await, want);

    // Exact values of a few, read in Asia/Kolkata.
    assert_eq!(
        case.rows(&format!(
            "SELECT v.event_props_when, v.event_props_dec, v.event_props_int FROM {}.charged v \
             JOIN charged t USING (_source_uri, _source_line) \
             WHERE t.event_props_when IN ('2022-09-21T04:39:25+23:59', '9223372036854775807', '1e+30') \
             ORDER BY t._source_line",
            case.bi()
        )),
        vec![
            row(&["", "9223372036854775807", "9223372036854775807"]),
            row(&["", "1000000000000000000000000000000", ""]),
            row(&["2022-09-20 10:10:25+05:30", "", ""]),
        ]
    );

    // A types file without those pins removes them: the view is text again, nothing misfits.
    case.pin("[charged]\n", "2").await;
    assert_eq!(
        case.db
            .psql("SELECT count(*) FROM _tapline_columns WHERE pinned IS NOT NULL"),
        "0"
    );
    assert_eq!(
        case.rows(&format!(
            "SELECT DISTINCT pg_typeof(event_props_int), pg_typeof(event_props_doc) FROM {}.charged",
            case.bi()
        )),
        vec![row(&["text", "text"])]
    );
    assert_eq!(case.misfits().await, Vec::new());
}

#[test]
fn python_clients_read_typed_columns() {
    let python = std::env::var("TAPLINE_TEST_PG_PYTHON").unwrap_or_else(|_| {
        panic!(
            "TAPLINE_TEST_PG_PYTHON is not set: run under tests/scripts/with-postgres.sh, which \
             installs psycopg and SQLAlchemy into .venv/"
        )
    });
    let case = Case::new("py");
    case.csv(
        "Charged",
        0,
        &[
            "eventProps.Amount",
            "eventProps.Qty",
            "eventProps.Paid",
            "eventProps.When",
            "eventProps.Items",
            "eventProps.Code",
        ],
        &[
            vec!["12.5", "3", "true", "2022-09-21T04:39:25Z", "[1,2]", "007"],
            vec![
                "7",
                "4",
                "false",
                "2022-09-21T04:39:25+05:30",
                "{\"a\":1}",
                "12",
            ],
        ],
    );
    case.load_ok();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg_typed_views_clients.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(tapline_tests::postgres_url())
        .arg(case.bi())
        .output()
        .expect("run the Python client script");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("typed views read by psycopg 3."),
        "{stdout}"
    );
}

/// The sample profile exports beside the demo's events: the BI schema's `profiles`,
/// `profiles_history` and `events_with_profile` hold the raw views' rows with the snapshot
/// columns typed (`msg_push` boolean, `dob` a timestamp), `events_with_profile` bound to the
/// typed `all_events`, and a later event load that rebuilds `all_events` keeps them.
#[test]
fn the_profile_views_are_typed_in_the_bi_schema() {
    let db = tapline_tests::servers::pg::PgSchema::new("typed_profiles");
    let dir = tempfile::tempdir().unwrap();
    for command in ["demo", "profiles"] {
        let out = std::process::Command::new(tapline_tests::bin("tapline-sample-exports"))
            .args([command, "--out", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let load = |path: &str| {
        tapline_tests::tapline(&[
            "load",
            path,
            "--warehouse",
            &db.url(),
            "--timezone",
            "Asia/Kolkata",
        ])
    };
    let run = load(dir.path().to_str().unwrap());
    assert_eq!(run.code, 2, "the demo's corrupt file only: {}", run.stdout);
    let bi = format!("{}_bi", db.schema);
    let types = db.psql(&format!(
        "SELECT string_agg(table_name || '.' || column_name || ' ' || data_type, ', ' \
         ORDER BY table_name, column_name) FROM information_schema.columns \
         WHERE table_schema = '{bi}' AND column_name IN ('msg_push', 'user_msg_push', 'dob', \
         'snapshot_at', 'valid_from', 'identity')"
    ));
    assert_eq!(
        types,
        "events_with_profile.user_msg_push boolean, profiles.dob timestamp with time zone, \
         profiles.identity text, profiles.msg_push boolean, profiles.snapshot_at timestamp with \
         time zone, profiles_history.dob timestamp with time zone, profiles_history.identity \
         text, profiles_history.msg_push boolean, profiles_history.valid_from timestamp with \
         time zone"
    );
    let same_rows = |view: &str| {
        assert_eq!(
            db.psql(&format!("SELECT count(*) FROM {bi}.{view}")),
            db.psql(&format!("SELECT count(*) FROM {view}")),
            "{view}"
        );
    };
    for view in ["profiles", "profiles_history", "events_with_profile"] {
        same_rows(view);
    }
    // Each typed boolean is its raw text read as one.
    assert_eq!(
        db.psql(&format!(
            "SELECT count(*) FROM {bi}.profiles t JOIN profiles r USING (identity) \
             WHERE t.msg_push IS DISTINCT FROM (CASE r.msg_push WHEN 'true' THEN true \
             WHEN 'false' THEN false END)"
        )),
        "0"
    );
    // A new event table replaces the typed all_events, which events_with_profile reads.
    let more = tempfile::tempdir().unwrap();
    std::fs::write(
        more.path()
            .join("1663664837-1663785000-Wishlisted-20220921-0-0.csv.gz"),
        tapline_tests::gzip(tapline_tests::export_csv("Wishlisted", 3).as_bytes()),
    )
    .unwrap();
    let run = load(more.path().to_str().unwrap());
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    same_rows("events_with_profile");
    assert_eq!(
        db.psql(&format!(
            "SELECT count(*) FROM {bi}.events_with_profile WHERE event_name = 'Wishlisted'"
        )),
        "3"
    );
}
