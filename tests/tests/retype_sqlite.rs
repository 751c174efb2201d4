//! `tapline retype` on a SQLite file from before column kinds (every old column text): each
//! column's kind read again off its values, the typed views rebuilt, the changes printed; run
//! again, nothing changes.

use tapline_tests::{fixed_header, fixed_row, gzip, tapline};

tapline_tests::export_case!();

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

impl Case {
    fn retype(&self) -> tapline_tests::Run {
        tapline(&["retype", "--warehouse", &self.warehouse()])
    }

    fn kinds(&self) -> Vec<Vec<Option<String>>> {
        self.rows(
            "SELECT column_name, kind FROM _tapline_columns WHERE table_name = 'charged' \
             AND column_name LIKE 'event_props_%' OR column_name = 'ts' AND table_name = 'charged' \
             ORDER BY column_name",
        )
    }

    fn typed_layer(&self) -> Vec<Vec<Option<String>>> {
        self.rows(
            "SELECT name, sql FROM sqlite_master WHERE name LIKE 'bi\\_%' ESCAPE '\\' ORDER BY name",
        )
    }
}

/// A "Charged" export: a decimal, an integer, a boolean, an identifier with a leading zero, a
/// column of only empty values.
fn loaded_before_kinds() -> Case {
    let case = Case(tapline_tests::ExportCase::new());
    let csv = format!(
        "{},eventProps.Amount,eventProps.Qty,eventProps.Paid,eventProps.Code,eventProps.Nothing\n{}\n{}\n",
        fixed_header(),
        fixed_row(
            "20220921000000",
            "Charged",
            "u1",
            &["12.5", "2", "true", "007", ""]
        ),
        fixed_row(
            "20220921000001",
            "Charged",
            "u2",
            &["7", "3", "false", "12", ""]
        ),
    );
    case.write_bytes(
        "1663664837-1663785000-Charged-20220921-0-0.csv.gz",
        &gzip(csv.as_bytes()),
    );
    let run = case.load(&[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // Back to the schema of a file written before kinds and typed views.
    let conn = rusqlite::Connection::open(&case.db).unwrap();
    conn.execute_batch(
        "DROP VIEW bi_charged; DROP VIEW bi_all_events;
         ALTER TABLE _tapline_columns DROP COLUMN kind;",
    )
    .unwrap();
    case
}

#[test]
fn retype_reads_each_kind_off_the_values_and_rebuilds_the_typed_views() {
    let case = loaded_before_kinds();
    let run = case.retype();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // Opening the file gave every old column `text`; the values say otherwise. The fixed
    // columns the export left empty have no kind (text until a value comes); `event_name`,
    // `profile_identity` and the code `007` stay text, so they are not listed.
    let empty = [
        "control_group_name",
        "device_info_app_version",
        "device_info_browser",
        "device_info_dimensions_height",
        "device_info_dimensions_unit",
        "device_info_dimensions_width",
        "device_info_dpi",
        "device_info_make",
        "device_info_model",
        "device_info_os_version",
        "device_info_sdk_version",
        "event_props_nothing",
        "profile_all_identities",
        "profile_email",
        "profile_name",
        "profile_object_id",
        "profile_phone",
        "profile_platform",
        "profile_push_token",
    ];
    let mut expected: Vec<Vec<&str>> = empty
        .iter()
        .map(|c| vec!["charged", *c, "text", "(none)"])
        .chain([
            vec!["charged", "event_props_amount", "text", "decimal"],
            vec!["charged", "event_props_paid", "text", "boolean"],
            vec!["charged", "event_props_qty", "text", "integer"],
            vec!["charged", "ts", "text", "timestamp"],
        ])
        .collect();
    expected.sort();
    let listed: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(listed, expected, "{}", run.stdout);
    assert_eq!(
        run.stdout.lines().take(2).collect::<Vec<_>>(),
        [
            "table    column                         was   now      ",
            "-------  -----------------------------  ----  ---------"
        ]
        .map(str::trim_end),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "\n23 column(s) re-typed in 1 table(s); their typed views (bi_*) were rebuilt.\n"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(
        case.kinds(),
        vec![
            vec![s("event_props_amount"), s("decimal")],
            vec![s("event_props_code"), s("text")],
            vec![s("event_props_nothing"), None],
            vec![s("event_props_paid"), s("boolean")],
            vec![s("event_props_qty"), s("integer")],
            vec![s("ts"), s("timestamp")],
        ]
    );
    // The typed view is back, its values beside the raw text.
    assert_eq!(
        case.rows(
            "SELECT v.event_props_amount, typeof(v.event_props_amount), t.event_props_amount, \
             v.event_props_qty, typeof(v.event_props_qty), v.event_props_paid, t.event_props_paid, \
             v.event_props_code FROM bi_charged v JOIN charged t USING (_source_uri, _source_line) \
             ORDER BY t._source_line"
        ),
        vec![
            vec![
                s("12.5"),
                s("real"),
                s("12.5"),
                s("2"),
                s("integer"),
                s("1"),
                s("true"),
                s("007")
            ],
            vec![
                s("7"),
                s("real"),
                s("7"),
                s("3"),
                s("integer"),
                s("0"),
                s("false"),
                s("12")
            ],
        ]
    );
    assert_eq!(
        case.value("SELECT count(*) FROM bi_all_events"),
        s("2"),
        "bi_all_events is back too"
    );

    // Again: nothing to change, and the typed layer is left as it is.
    let layer = case.typed_layer();
    let again = case.retype();
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(
        again.stdout,
        "Every column's kind already fits its values: nothing changed.\n"
    );
    assert_eq!(case.typed_layer(), layer);

    // A later load widens from the re-read kinds as from any other.
    let csv = format!(
        "{},eventProps.Amount\n{}\n",
        fixed_header(),
        fixed_row("20220921000002", "Charged", "u3", &["n/a"]),
    );
    case.write_bytes(
        "1663664837-1663785000-Charged-20220921-1-0.csv.gz",
        &gzip(csv.as_bytes()),
    );
    assert_eq!(case.load(&[]).code, 0);
    assert_eq!(case.kinds()[0], vec![s("event_props_amount"), s("text")]);
}

#[test]
fn retype_refuses_a_warehouse_that_is_not_sqlite() {
    let run = tapline(&[
        "retype",
        "--warehouse",
        "postgres://loader:hunter2@127.0.0.1:1/analytics",
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("expected a SQLite URL"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
}
