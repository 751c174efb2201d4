//! Typed views on SQLite through `tapline load`: each column's inferred kind in
//! `_tapline_columns`, the `bi_*` views' values beside the raw text, widening across files.

use tapline_tests::{fixed_header, fixed_row, gzip, sqlite_rows, sqlite_value};

tapline_tests::export_case!();

impl Case {
    fn new() -> Self {
        Self(tapline_tests::ExportCase::new())
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
        std::fs::write(self.root.join(name), gzip(text.as_bytes())).unwrap();
    }

    fn load(&self) -> tapline_tests::Run {
        self.0.load(&[])
    }

    fn kind(&self, table: &str, column: &str) -> Option<String> {
        sqlite_value(
            &self.db,
            &format!(
                "SELECT kind FROM _tapline_columns WHERE table_name = '{table}' AND column_name = '{column}'"
            ),
        )
    }

    /// `(typed value, its SQLite type, raw value)` of `column` per row, in `ts` order.
    fn typed_and_raw(&self, table: &str, column: &str) -> Vec<Vec<Option<String>>> {
        sqlite_rows(
            &self.db,
            &format!(
                "SELECT v.{column}, typeof(v.{column}), t.{column} FROM bi_{table} v \
                 JOIN {table} t ON t._source_uri = v._source_uri AND t._source_line = v._source_line \
                 ORDER BY t._load_id, t._source_line"
            ),
        )
    }

    /// Every typed view's SQL and every stored kind: what a load must leave alone.
    fn typed_layer(&self) -> Vec<Vec<Option<String>>> {
        let mut rows = sqlite_rows(
            &self.db,
            "SELECT name, sql FROM sqlite_master WHERE name LIKE 'bi\\_%' ESCAPE '\\' ORDER BY name",
        );
        rows.extend(sqlite_rows(
            &self.db,
            "SELECT table_name, column_name, kind FROM _tapline_columns ORDER BY 1, 2",
        ));
        rows
    }
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// One typed row: the view's value, its SQLite type, the raw text.
fn typed(value: Option<&str>, sqlite_type: &str, raw: Option<&str>) -> Vec<Option<String>> {
    vec![
        value.map(str::to_string),
        s(sqlite_type),
        raw.map(str::to_string),
    ]
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
    let case = Case::new();
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
    let run = case.load();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    let kinds: Vec<Option<String>> = [
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
            s("timestamp"),
            s("text"),
            s("decimal"),
            s("text"), // `007` is an identifier
            s("text"), // 64 digits do not fit an integer
            s("text"), // 30 February is no date
            s("boolean"),
            s("timestamp"),
            s("json"),
            s("integer"),
            None, // only NULLs so far
        ]
    );
    let check = |column: &str, want: Vec<Vec<Option<String>>>| {
        assert_eq!(case.typed_and_raw("charged", column), want, "{column}");
    };
    check(
        "event_props_amount",
        vec![
            // A REAL, which the test reads back through Rust's f64 formatting.
            typed(Some("12"), "real", Some("12")),
            typed(Some("12.5"), "real", Some("12.5")),
        ],
    );
    check(
        "event_props_code",
        vec![
            typed(Some("007"), "text", Some("007")),
            typed(Some("12"), "text", Some("12")),
        ],
    );
    check(
        "event_props_big",
        vec![
            typed(Some(&sixty_four_digits), "text", Some(&sixty_four_digits)),
            typed(Some("5"), "text", Some("5")),
        ],
    );
    check(
        "event_props_when",
        vec![
            typed(
                Some("2022-02-30T00:00:00Z"),
                "text",
                Some("2022-02-30T00:00:00Z"),
            ),
            typed(
                Some("2022-09-21T04:39:25+05:30"),
                "text",
                Some("2022-09-21T04:39:25+05:30"),
            ),
        ],
    );
    check(
        "event_props_paid",
        vec![
            typed(Some("1"), "integer", Some("true")),
            typed(Some("0"), "integer", Some("false")),
        ],
    );
    check(
        "event_props_since",
        vec![
            typed(Some("2022-09-21T04:39:25Z"), "text", Some("$D_1663735165")),
            typed(Some("2022-09-21T00:00:00Z"), "text", Some("2022-09-21")),
        ],
    );
    check(
        "event_props_items",
        vec![
            typed(Some("[1,2]"), "text", Some("[1,2]")),
            typed(Some("{\"a\":1}"), "text", Some("{\"a\":1}")),
        ],
    );
    check(
        "event_props_qty",
        vec![
            typed(Some("3"), "integer", Some("3")),
            typed(Some("4"), "integer", Some("4")),
        ],
    );
    check(
        "event_props_nothing",
        vec![typed(None, "null", None), typed(None, "null", None)],
    );

    // A later file: the boolean column holds `1`, the integer column a word. Both widen to
    // text, the views follow, and every raw value is still there.
    case.csv(
        "Charged",
        1,
        &["eventProps.Paid", "eventProps.Qty"],
        &[vec!["1", "many"]],
    );
    assert_eq!(case.load().code, 0);
    assert_eq!(case.kind("charged", "event_props_paid"), s("text"));
    assert_eq!(case.kind("charged", "event_props_qty"), s("text"));
    check(
        "event_props_paid",
        vec![
            typed(Some("true"), "text", Some("true")),
            typed(Some("false"), "text", Some("false")),
            typed(Some("1"), "text", Some("1")),
        ],
    );
    assert_eq!(
        sqlite_rows(
            &case.db,
            "SELECT event_props_qty FROM bi_charged ORDER BY _load_id, _source_line"
        ),
        vec![vec![s("3")], vec![s("4")], vec![s("many")]]
    );
    assert_eq!(case.kind("charged", "event_props_amount"), s("decimal"));
}

#[test]
fn a_numeric_column_sums_without_a_cast_until_one_text_value_widens_it() {
    let case = Case::new();
    let amounts: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let rows: Vec<Vec<&str>> = amounts.iter().map(|a| vec![a.as_str()]).collect();
    case.csv("Order Placed", 0, &["eventProps.Amount"], &rows);
    assert_eq!(case.load().code, 0);
    assert_eq!(
        case.kind("order_placed", "event_props_amount"),
        s("integer")
    );
    let sum =
        "SELECT SUM(event_props_amount), typeof(SUM(event_props_amount)) FROM bi_order_placed";
    assert_eq!(
        sqlite_rows(&case.db, sum),
        vec![vec![s("499500"), s("integer")]]
    );

    // A decimal widens integer to decimal: still summed as a number.
    case.csv("Order Placed", 1, &["eventProps.Amount"], &[vec!["0.5"]]);
    assert_eq!(case.load().code, 0);
    assert_eq!(
        case.kind("order_placed", "event_props_amount"),
        s("decimal")
    );
    assert_eq!(
        sqlite_rows(&case.db, sum),
        vec![vec![s("499500.5"), s("real")]]
    );

    // Numeric for 500 rows, then one text value in the same file: the column is text from
    // this file on, and the view gives every value as its raw text.
    let mut rows: Vec<Vec<&str>> = amounts[..500].iter().map(|a| vec![a.as_str()]).collect();
    rows.push(vec!["n/a"]);
    case.csv("Order Placed", 2, &["eventProps.Amount"], &rows);
    assert_eq!(case.load().code, 0);
    assert_eq!(case.kind("order_placed", "event_props_amount"), s("text"));
    assert_eq!(
        sqlite_rows(
            &case.db,
            "SELECT typeof(event_props_amount), count(*) FROM bi_order_placed GROUP BY 1"
        ),
        vec![vec![s("text"), s("1502")]]
    );
    assert_eq!(
        sqlite_value(
            &case.db,
            "SELECT count(*) FROM bi_order_placed WHERE event_props_amount = 'n/a'"
        ),
        s("1")
    );
    assert_eq!(
        sqlite_value(&case.db, "SELECT count(*) FROM order_placed"),
        s("1502"),
        "raw rows unchanged"
    );
}

#[test]
fn bi_all_events_types_the_standard_columns_across_tables() {
    let case = Case::new();
    for (event, phone) in [
        ("Charged", "919876543210"),
        ("App Launched", "+919876543210"),
    ] {
        let text = format!("ts,eventName,profile.phone\n20220921000000,{event},{phone}\n");
        let name = format!(
            "1663664837-1663785000-{}-20220921-0-0.csv.gz",
            event.replace(' ', "-")
        );
        std::fs::write(case.root.join(name), gzip(text.as_bytes())).unwrap();
    }
    let run = case.load();
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(case.kind("charged", "profile_phone"), s("integer"));
    assert_eq!(case.kind("app_launched", "profile_phone"), s("text"));
    // A number in one table and text in the other: text in bi_all_events, both values kept.
    assert_eq!(
        sqlite_rows(
            &case.db,
            "SELECT _table, profile_phone, typeof(profile_phone), ts FROM bi_all_events ORDER BY _table"
        ),
        vec![
            vec![
                s("app_launched"),
                s("+919876543210"),
                s("text"),
                s("2022-09-21T00:00:00Z")
            ],
            vec![
                s("charged"),
                s("919876543210"),
                s("text"),
                s("2022-09-21T00:00:00Z")
            ],
        ]
    );
    assert_eq!(
        sqlite_value(&case.db, "SELECT typeof(profile_phone) FROM bi_charged"),
        s("integer")
    );
}

#[test]
fn loading_again_or_a_quarantined_file_changes_no_kind_and_no_view() {
    let case = Case::new();
    case.csv(
        "Charged",
        0,
        &["eventProps.Amount"],
        &[vec!["5"], vec!["6"]],
    );
    assert_eq!(case.load().code, 0);
    let before = case.typed_layer();
    assert!(before.iter().any(|r| r[0] == s("bi_charged")), "{before:?}");

    let run = case.load();
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("already loaded"), "{}", run.stdout);
    assert_eq!(
        case.typed_layer(),
        before,
        "loading again changed the typed layer"
    );

    // 95 text amounts and 5 bad rows: above the reject limit, so the file is quarantined and
    // its text values widen nothing.
    let mut rows: Vec<Vec<&str>> = (0..95).map(|_| vec!["free"]).collect();
    rows.extend((0..5).map(|_| vec!["x", "too", "many"]));
    case.csv("Charged", 1, &["eventProps.Amount"], &rows);
    let run = case.load();
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_eq!(
        sqlite_value(
            &case.db,
            "SELECT status FROM _tapline_loads WHERE uri LIKE '%-1-0.csv.gz'"
        ),
        s("quarantined")
    );
    assert_eq!(
        case.typed_layer(),
        before,
        "a quarantined load changed kinds"
    );
    assert_eq!(case.kind("charged", "event_props_amount"), s("integer"));
}

#[test]
fn json_exports_give_numbers_booleans_and_arrays_their_kinds() {
    let case = Case::new();
    let json = concat!(
        r#"{"profile":{"identity":"u1"},"ts":20220921000000,"eventProps":{"Amount":7.5,"Paid":true,"Items":[1,2],"Count":3}}"#,
        "\n",
        r#"{"profile":{"identity":"u2"},"ts":20220921000001,"eventProps":{"Amount":1e+30,"Paid":false,"Items":[],"Count":-4}}"#,
        "\n"
    );
    std::fs::write(
        case.root
            .join("1663664837-1663785000-Charged-20220921-0-0.json.gz"),
        gzip(json.as_bytes()),
    )
    .unwrap();
    assert_eq!(case.load().code, 0);
    let kinds: Vec<Option<String>> = [
        "event_props_amount",
        "event_props_paid",
        "event_props_items",
        "event_props_count",
    ]
    .iter()
    .map(|c| case.kind("charged", c))
    .collect();
    assert_eq!(kinds, [s("decimal"), s("boolean"), s("json"), s("integer")]);
    assert_eq!(
        sqlite_rows(
            &case.db,
            "SELECT event_props_amount, event_props_paid, event_props_items, event_props_count \
             FROM bi_charged ORDER BY ts"
        ),
        vec![
            vec![s("7.5"), s("1"), s("[1,2]"), s("3")],
            vec![
                s(&format!("1{}", "0".repeat(30))), /* 1e30 as REAL */
                s("0"),
                s("[]"),
                s("-4")
            ],
        ]
    );
}

#[test]
fn pragma_table_info_reports_the_typed_view_columns() {
    let case = Case::new();
    case.csv(
        "Charged",
        0,
        &["eventProps.Amount", "eventProps.Qty", "eventProps.Paid"],
        &[vec!["1.5", "2", "true"]],
    );
    assert_eq!(case.load().code, 0);
    let info = sqlite_rows(
        &case.db,
        "SELECT name, type FROM pragma_table_info('bi_charged') \
         WHERE name IN ('ts', 'event_name', 'event_props_amount', 'event_props_qty', 'event_props_paid') \
         ORDER BY cid",
    );
    assert_eq!(
        info,
        vec![
            vec![s("ts"), s("TEXT")],
            vec![s("event_name"), s("TEXT")],
            vec![s("event_props_amount"), s("")],
            vec![s("event_props_qty"), s("")],
            vec![s("event_props_paid"), s("")],
        ]
    );
}

#[test]
fn a_file_from_before_kinds_keeps_its_columns_as_text_and_gets_its_views() {
    let case = Case::new();
    case.csv("Charged", 0, &["eventProps.Amount"], &[vec!["5"]]);
    case.csv("App Launched", 0, &["eventProps.Screen"], &[vec!["home"]]);
    assert_eq!(case.load().code, 0);
    // Back to the schema of a file written before kinds and typed views.
    let conn = rusqlite::Connection::open(&case.db).unwrap();
    conn.execute_batch(
        "DROP VIEW bi_charged; DROP VIEW bi_app_launched; DROP VIEW bi_all_events;
         ALTER TABLE _tapline_columns DROP COLUMN kind;
         ALTER TABLE _tapline_columns DROP COLUMN pinned;",
    )
    .unwrap();
    drop(conn);

    case.csv(
        "Charged",
        1,
        &["eventProps.Amount", "eventProps.Qty"],
        &[vec!["6", "2"]],
    );
    assert_eq!(case.load().code, 0);
    // Rows loaded before were never classified: text hides none of them.
    assert_eq!(case.kind("charged", "event_props_amount"), s("text"));
    assert_eq!(case.kind("app_launched", "event_props_screen"), s("text"));
    assert_eq!(case.kind("charged", "event_props_qty"), s("integer"));
    assert_eq!(
        case.value("SELECT count(*) FROM _tapline_columns WHERE pinned IS NULL"),
        case.value("SELECT count(*) FROM _tapline_columns"),
        "pins added, none set"
    );
    assert_eq!(
        sqlite_rows(
            &case.db,
            "SELECT name FROM sqlite_master WHERE name LIKE 'bi\\_%' ESCAPE '\\' ORDER BY name"
        ),
        vec![
            vec![s("bi_all_events")],
            vec![s("bi_app_launched")],
            vec![s("bi_charged")]
        ]
    );
    assert_eq!(
        sqlite_rows(
            &case.db,
            "SELECT event_props_amount, event_props_qty FROM bi_charged ORDER BY _load_id"
        ),
        vec![vec![s("5"), None], vec![s("6"), s("2")]]
    );
}

/// Pinned column types (`--column-types`): the file's helpers and tests.
mod pinned {
    use super::*;

    const KIND_ERROR: &str = "\"charged\".\"amount\": the kind must be one of \"integer\", \
         \"decimal\", \"boolean\", \"timestamp\", \"json\", \"text\"";

    impl Case {
        /// Writes `text` as the types file `name` beside the exports; its path.
        fn types(&self, name: &str, text: &str) -> String {
            let path = self.dir().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_string()
        }

        /// `tapline load` with `--column-types types`.
        fn load_typed(&self, types: &str) -> tapline_tests::Run {
            self.0.load(&["--column-types", types])
        }

        /// `(table, column, inferred kind, pin)` of every pinned column.
        fn pins(&self) -> Vec<Vec<Option<String>>> {
            self.rows(
                "SELECT table_name, column_name, kind, pinned FROM _tapline_columns \
                 WHERE pinned IS NOT NULL ORDER BY 1, 2",
            )
        }

        /// `tapline status`'s "Typed columns" block (title, blank line, table), or nothing.
        fn typed_columns_status(&self) -> Vec<String> {
            let run = tapline_tests::tapline(&["status", "--warehouse", &self.warehouse()]);
            assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
            assert_eq!(run.stderr, "");
            let lines: Vec<&str> = run.stdout.lines().collect();
            let Some(start) = lines.iter().position(|l| l.starts_with("Typed columns")) else {
                return Vec::new();
            };
            let end = lines[start + 2..]
                .iter()
                .position(|l| l.is_empty())
                .map_or(lines.len(), |i| start + 2 + i);
            lines[start..end].iter().map(|l| l.to_string()).collect()
        }
    }

    const STATUS_TITLE: &str = "Typed columns: values that do not fit the pinned kind (NULL in \
         the typed views, kept in the raw tables)";

    #[test]
    fn a_pinned_decimal_holding_a_word_is_null_in_the_view_kept_raw_and_counted_in_status() {
        let case = Case::new();
        case.csv(
            "Charged",
            0,
            &["eventProps.Amount"],
            &[vec!["12"], vec!["n/a"], vec!["7.5"]],
        );
        let types = case.types(
            "types.toml",
            "[charged]\n\"eventProps.Amount\" = \"decimal\"\n",
        );
        let run = case.load_typed(&types);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

        // Inferred text (a word among numbers), read as the pinned decimal.
        assert_eq!(
            case.pins(),
            vec![vec![
                s("charged"),
                s("event_props_amount"),
                s("text"),
                s("decimal")
            ]]
        );
        assert_eq!(
            case.typed_and_raw("charged", "event_props_amount"),
            vec![
                typed(Some("12"), "real", Some("12")),
                typed(None, "null", Some("n/a")),
                typed(Some("7.5"), "real", Some("7.5")),
            ]
        );
        assert_eq!(
            case.rows("SELECT SUM(event_props_amount), count(*) FROM bi_charged"),
            vec![vec![s("19.5"), s("3")]]
        );
        assert_eq!(
            case.typed_columns_status(),
            [
                STATUS_TITLE,
                "",
                "table    column              kind     values",
                "-------  ------------------  -------  ------",
                "charged  event_props_amount  decimal       1",
            ]
        );
    }

    #[test]
    fn a_star_pin_applies_to_every_event_table() {
        let case = Case::new();
        case.csv("Charged", 0, &["eventProps.Qty"], &[vec!["2"], vec!["x"]]);
        case.csv("App Launched", 0, &["eventProps.Qty"], &[vec!["3"]]);
        let types = case.types("types.toml", "[\"*\"]\nevent_props_qty = \"integer\"\n");
        assert_eq!(case.load_typed(&types).code, 0);

        assert_eq!(
            case.pins(),
            vec![
                vec![
                    s("app_launched"),
                    s("event_props_qty"),
                    s("integer"),
                    s("integer")
                ],
                vec![s("charged"), s("event_props_qty"), s("text"), s("integer")],
            ]
        );
        assert_eq!(
            case.typed_and_raw("charged", "event_props_qty"),
            vec![
                typed(Some("2"), "integer", Some("2")),
                typed(None, "null", Some("x")),
            ]
        );
        assert_eq!(
            case.typed_and_raw("app_launched", "event_props_qty"),
            vec![typed(Some("3"), "integer", Some("3"))]
        );
        // Only the column with a value that does not fit is listed.
        assert_eq!(
            case.typed_columns_status(),
            [
                STATUS_TITLE,
                "",
                "table    column           kind     values",
                "-------  ---------------  -------  ------",
                "charged  event_props_qty  integer       1",
            ]
        );
    }

    #[test]
    fn the_file_is_the_whole_set_and_a_load_without_one_keeps_the_stored_pins() {
        let case = Case::new();
        // Coupon is pinned before any table has it.
        let first = case.types(
            "types.toml",
            "[charged]\n\"eventProps.Amount\" = \"text\"\nevent_props_coupon = \"decimal\"\n",
        );
        case.csv(
            "Charged",
            0,
            &["eventProps.Amount"],
            &[vec!["5"], vec!["6"]],
        );
        assert_eq!(case.load_typed(&first).code, 0);
        assert_eq!(
            case.typed_and_raw("charged", "event_props_amount"),
            vec![
                typed(Some("5"), "text", Some("5")),
                typed(Some("6"), "text", Some("6")),
            ],
            "pinned text over the inferred integer"
        );

        // The load that creates Coupon pins it in its own commit.
        case.csv(
            "Charged",
            1,
            &["eventProps.Amount", "eventProps.Coupon"],
            &[vec!["7", "10"]],
        );
        assert_eq!(case.load_typed(&first).code, 0);
        let pinned = vec![
            vec![
                s("charged"),
                s("event_props_amount"),
                s("integer"),
                s("text"),
            ],
            vec![
                s("charged"),
                s("event_props_coupon"),
                s("integer"),
                s("decimal"),
            ],
        ];
        assert_eq!(case.pins(), pinned);
        assert_eq!(
            case.typed_and_raw("charged", "event_props_coupon"),
            vec![
                typed(None, "null", None),
                typed(None, "null", None),
                typed(Some("10"), "real", Some("10")),
            ]
        );

        // A load without --column-types (of another table) keeps the stored pins and views.
        case.csv("App Launched", 0, &["eventProps.Screen"], &[vec!["home"]]);
        assert_eq!(case.load().code, 0);
        assert_eq!(case.pins(), pinned);
        assert_eq!(
            case.rows("SELECT event_props_amount, typeof(event_props_amount) FROM bi_charged"),
            vec![
                vec![s("5"), s("text")],
                vec![s("6"), s("text")],
                vec![s("7"), s("text")]
            ]
        );

        // A file that no longer names Charged's columns, loaded with a file of App Launched
        // only: Charged's pins go and its view (untouched by the load) gets the inferred kinds.
        let second = case.types(
            "types2.toml",
            "[app_launched]\n\"eventProps.Screen\" = \"text\"\n",
        );
        case.csv("App Launched", 1, &["eventProps.Screen"], &[vec!["cart"]]);
        let run = case.load_typed(&second);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        assert_eq!(
            case.pins(),
            vec![vec![
                s("app_launched"),
                s("event_props_screen"),
                s("text"),
                s("text")
            ]]
        );
        assert_eq!(
            case.rows(
                "SELECT event_props_amount, typeof(event_props_amount), \
                 event_props_coupon, typeof(event_props_coupon) FROM bi_charged ORDER BY _load_id"
            ),
            vec![
                vec![s("5"), s("integer"), None, s("null")],
                vec![s("6"), s("integer"), None, s("null")],
                vec![s("7"), s("integer"), s("10"), s("integer")],
            ]
        );
        assert_eq!(
            case.rows("SELECT count(*) FROM bi_all_events"),
            vec![vec![s("5")]]
        );
        assert_eq!(case.typed_columns_status(), Vec::<String>::new());
    }

    #[test]
    fn a_bad_types_file_stops_every_loading_command_before_anything_is_written() {
        let case = Case::new();
        case.csv("Charged", 0, &["eventProps.Amount"], &[vec!["5"]]);
        let bad = case.types("bad.toml", "[charged]\namount = \"money\"\n");
        let missing = case.dir().join("missing.toml");
        let missing = missing.to_str().unwrap();
        let wh = case.warehouse();
        let root = case.root.to_str().unwrap();
        let pull = [
            "pull",
            "events",
            "--event",
            "Charged",
            "--from",
            "2022-09-01",
            "--to",
            "2022-09-01",
            "--warehouse",
            &wh,
        ];
        let profiles = [
            "pull",
            "profiles",
            "--event",
            "Charged",
            "--from",
            "2022-09-01",
            "--to",
            "2022-09-01",
            "--warehouse",
            &wh,
        ];
        for (types, reason) in [
            (bad.as_str(), KIND_ERROR.to_string()),
            (
                missing,
                "cannot open it: No such file or directory (os error 2)".to_string(),
            ),
        ] {
            let want = format!("error: column types in {types}: {reason}\n");
            for command in [
                &["load", root, "--warehouse", &wh][..],
                &["sweep", root, "--warehouse", &wh][..],
                &pull[..],
                &profiles[..],
            ] {
                let mut args = command.to_vec();
                args.extend(["--column-types", types]);
                let run = tapline_tests::tapline(&args);
                assert_eq!(
                    (run.code, run.stderr.as_str()),
                    (1, want.as_str()),
                    "{args:?}"
                );
                assert_eq!(run.stdout, "", "{args:?}");
                assert!(!case.db.exists(), "{args:?} created the warehouse");
            }
        }

        // On a warehouse with a load already: the ledger, tables and pins stay as they were.
        assert_eq!(case.load().code, 0);
        let before = case.rows("SELECT load_id, uri, version, status FROM _tapline_loads");
        case.csv("Charged", 1, &["eventProps.Amount"], &[vec!["6"]]);
        let run = case.load_typed(&bad);
        assert_eq!(run.code, 1);
        assert_eq!(
            run.stderr,
            format!("error: column types in {bad}: {KIND_ERROR}\n")
        );
        assert_eq!(
            case.rows("SELECT load_id, uri, version, status FROM _tapline_loads"),
            before
        );
        assert_eq!(
            case.rows("SELECT count(*) FROM charged"),
            vec![vec![s("1")]]
        );
    }

    /// The functions read `TAPLINE_COLUMN_TYPES` once at start: a bad value (or a missing
    /// `@FILE`) stops the start (exit 1) with the message in the logs, before the warehouse is
    /// opened.
    #[test]
    fn the_services_stop_at_start_on_bad_column_types() {
        let case = Case::new();
        let missing = case.dir().join("missing.toml");
        let at_missing = format!("@{}", missing.display());
        for (value, origin, reason) in [
            (
                "[charged]\namount = \"money\"\n",
                "TAPLINE_COLUMN_TYPES".to_string(),
                KIND_ERROR.to_string(),
            ),
            (
                at_missing.as_str(),
                missing.display().to_string(),
                "cannot open it: No such file or directory (os error 2)".to_string(),
            ),
        ] {
            let want = format!("column types in {origin}: {reason}");
            for binary in ["export-loader-cloud-run", "api-puller-cloud-run"] {
                let run: tapline_tests::Run =
                    std::process::Command::new(tapline_tests::bin(binary))
                        .env_clear()
                        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                        .env("TAPLINE_WAREHOUSE", case.warehouse())
                        .env("TAPLINE_COLUMN_TYPES", value)
                        .env("CLEVERTAP_ACCOUNT_ID", "TEST-ACC-1")
                        .env("CLEVERTAP_PASSCODE", "passcode")
                        .env("TAPLINE_PULL_EVENTS", "Charged")
                        .env("PORT", "0")
                        .env("TAPLINE_LISTEN_HOST", "127.0.0.1")
                        .output()
                        .unwrap()
                        .into();
                assert_eq!(run.code, 1, "{binary}: {}{}", run.stdout, run.stderr);
                let errors: Vec<String> = format!("{}{}", run.stdout, run.stderr)
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .filter_map(|l| l["error"].as_str().map(str::to_string))
                    .collect();
                assert_eq!(
                    errors,
                    std::slice::from_ref(&want),
                    "{binary}: {}{}",
                    run.stdout,
                    run.stderr
                );
                assert!(!case.db.exists(), "{binary} opened the warehouse");
            }
        }
    }
}
