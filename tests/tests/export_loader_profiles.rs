//! `tapline load` of profile exports end to end: the built binary on a folder holding an event
//! day and profile exports (legacy and Export Center names, CSV and JSON), checked in the
//! SQLite file: snapshot rows in `profile_snapshots`, `ts` = the run time from the name,
//! lineage, exactly once, and a new version replacing its rows.

use std::path::PathBuf;

use tapline_tests::{export_csv, gzip, sqlite_rows, sqlite_value, tapline};

/// A legacy profile export: `<account>-<request>-<run ts>-<database>-<format>.gz`, run at
/// 2022-09-21T18:30:00Z.
const LEGACY: &str = "100000000-55-1663785000-0-csv.gz";
/// An Export Center profile export in its `profile/` folder, run at 2025-10-28T11:42:01Z.
const EXPORT_CENTER: &str = "profile/100000000-1761651721-1761651721-0.json.gz";
/// An event day beside them.
const EVENTS: &str = "1663664837-1663785000-Charged-20220921-0-0.csv.gz";

const LEGACY_CSV: &str = "identity,all_identities,clevertapId,Email,Blood Group\n\
    u1,\"[u1, a@example.com]\",__g1,a@example.com,O+\n\
    ,,__g2,b@example.com,\n\
    u1,\"[u1, a@example.com]\",__g1,a@example.com,A-\n";

fn export_center_json() -> String {
    [
        r#"{"identity":"u1","all_identities":["u1","a@example.com"],"clevertapId":"__g1","Email":"a@example.com","Blood Group":"O+"}"#,
        r#"{"identity":"u3","Email":"c@example.com","ts":1,"subscriptionGroups":{"group1":"Subscribed"},"MSG-push":true}"#,
    ]
    .join("\n")
}

tapline_tests::export_case!();

impl Case {
    fn new() -> Self {
        let case = Self(tapline_tests::ExportCase::new());
        std::fs::create_dir_all(case.root.join("profile")).unwrap();
        case
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.root.join(name);
        std::fs::write(&path, gzip(text.as_bytes())).unwrap();
        path
    }

    fn load(&self) -> tapline_tests::Run {
        self.0.load(&[])
    }

    fn count(&self, sql: &str) -> u64 {
        self.value(sql).unwrap().parse().unwrap()
    }
}

fn s(text: &str) -> Option<String> {
    Some(text.to_string())
}

#[test]
fn profile_exports_load_as_snapshots_beside_an_event_day() {
    let case = Case::new();
    case.write(EVENTS, &export_csv("Charged", 4));
    let legacy = case.write(LEGACY, LEGACY_CSV);
    case.write(EXPORT_CENTER, &export_center_json());
    let run = case.load();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(case.count("SELECT count(*) FROM charged"), 4);

    let snapshots = "SELECT identity, ts, email, blood_group, all_identities, clevertap_id, \
                     ts_property, subscription_groups_group1, msg_push, _source_line \
                     FROM profile_snapshots ORDER BY _source_uri, _source_line";
    let legacy_rows = vec![
        vec![
            s("u1"),
            s("2022-09-21T18:30:00Z"),
            s("a@example.com"),
            s("O+"),
            s(r#"["u1","a@example.com"]"#),
            s("__g1"),
            None,
            None,
            None,
            s("2"),
        ],
        vec![
            s("__g2"),
            s("2022-09-21T18:30:00Z"),
            s("b@example.com"),
            None,
            None,
            s("__g2"),
            None,
            None,
            None,
            s("3"),
        ],
        vec![
            s("u1"),
            s("2022-09-21T18:30:00Z"),
            s("a@example.com"),
            s("A-"),
            s(r#"["u1","a@example.com"]"#),
            s("__g1"),
            None,
            None,
            None,
            s("4"),
        ],
    ];
    let export_center_rows = vec![
        vec![
            s("u1"),
            s("2025-10-28T11:42:01Z"),
            s("a@example.com"),
            s("O+"),
            s(r#"["u1","a@example.com"]"#),
            s("__g1"),
            None,
            None,
            None,
            s("1"),
        ],
        vec![
            s("u3"),
            s("2025-10-28T11:42:01Z"),
            s("c@example.com"),
            None,
            None,
            None,
            s("1"),
            s("Subscribed"),
            s("true"),
            s("2"),
        ],
    ];
    // `_source_uri` orders the legacy file (at the folder's root) before `profile/…`.
    let mut expected = legacy_rows;
    expected.extend(export_center_rows.clone());
    assert_eq!(case.rows(snapshots), expected);

    // Lineage: each row names its object and load; the profiles stay out of `all_events`.
    assert_eq!(
        case.count(
            "SELECT count(*) FROM profile_snapshots p JOIN _tapline_loads l \
             ON l.load_id = p._load_id AND l.uri = p._source_uri WHERE l.status = 'loaded'"
        ),
        5
    );
    assert_eq!(case.count("SELECT count(*) FROM all_events"), 4);
    // The same profile (u1 in the CSV and in the JSON, same properties) has the same hash; a
    // changed property changes it.
    let hashes = case
        .rows("SELECT count(DISTINCT profile_hash) FROM profile_snapshots WHERE identity = 'u1'");
    assert_eq!(hashes, vec![vec![s("2")]], "O+ twice, A- once");
    assert_eq!(
        case.count(
            "SELECT count(*) FROM profile_snapshots WHERE length(profile_hash) = 16 \
             AND json_valid(record)"
        ),
        5
    );

    // Again: nothing changes.
    let again = case.load();
    assert_eq!(again.code, 0, "{}", again.stdout);
    assert!(
        again.stdout.contains("already loaded      3"),
        "{}",
        again.stdout
    );
    assert_eq!(
        case.rows(snapshots),
        expected,
        "loading again changes nothing"
    );

    // A new version of the legacy object replaces its rows, and only its rows.
    std::fs::write(
        &legacy,
        gzip(b"identity,Email,Blood Group\nu1,a@example.com,B+\n"),
    )
    .unwrap();
    let replaced = case.load();
    assert_eq!(replaced.code, 0, "{}", replaced.stdout);
    let mut expected = vec![vec![
        s("u1"),
        s("2022-09-21T18:30:00Z"),
        s("a@example.com"),
        s("B+"),
        None,
        None,
        None,
        None,
        None,
        s("2"),
    ]];
    expected.extend(export_center_rows);
    assert_eq!(case.rows(snapshots), expected);
    assert_eq!(case.count("SELECT count(*) FROM charged"), 4);

    // `tapline status` lists the profile loads as loaded.
    let status = tapline(&["status", "--warehouse", &case.warehouse()]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    for name in [LEGACY, EXPORT_CENTER] {
        let line = status
            .stdout
            .lines()
            .find(|l| l.contains(name) && l.contains("loaded"))
            .unwrap_or_else(|| panic!("{name} not listed as loaded:\n{}", status.stdout));
        assert!(!line.contains("replaced"), "{line}");
        assert!(line.contains(" profiles "), "the load's kind: {line}");
    }
    assert!(
        status
            .stdout
            .contains("Profiles: 2 identities from 3 snapshots"),
        "{}",
        status.stdout
    );

    // A profile view that cannot be read is said; the ledger is still listed.
    rusqlite::Connection::open(&case.db)
        .unwrap()
        .execute_batch("DROP VIEW events_with_profile; DROP VIEW profiles_history")
        .unwrap();
    let status = tapline(&["status", "--warehouse", &case.warehouse()]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stderr.contains(
            "Profiles cannot be summarised: warehouse query failed: no such table: profiles_history"
        ),
        "{}",
        status.stderr
    );
    assert!(status.stdout.contains(LEGACY) && !status.stdout.contains("Profiles:"));
}

#[test]
fn a_broken_profile_parquet_is_quarantined_xml_skipped_and_a_profile_without_a_key_is_a_reject() {
    let case = Case::new();
    case.write("100000000-56-1663785000-0-parquet.gz", "PAR1");
    case.write("profile/100000000-2-1761651721-0.xml.gz", "<p/>");
    let mut csv = String::from("identity,clevertapId,Email\n");
    for n in 0..200 {
        csv.push_str(&format!("u{n},,u{n}@example.com\n"));
    }
    csv.push_str(",,nobody@example.com\n");
    case.write(LEGACY, &csv);
    let run = tapline(&[
        "load",
        case.root.to_str().unwrap(),
        "--warehouse",
        &case.warehouse(),
        "--list-files",
    ]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let parquet = run
        .stdout
        .lines()
        .find(|l| l.contains("100000000-56-1663785000-0-parquet.gz"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        parquet.starts_with("quarantined")
            && parquet.contains("not a Parquet file, or its footer is damaged"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("XML exports are not supported yet"),
        "{}",
        run.stdout
    );
    assert_eq!(case.count("SELECT count(*) FROM profile_snapshots"), 200);
    assert_eq!(
        case.rows("SELECT line, column_name, reason, raw_line FROM _tapline_rejects"),
        vec![vec![
            s("202"),
            s("identity"),
            s("a profile needs an identity or a clevertapId"),
            s(",,nobody@example.com"),
        ]]
    );
}

/// `tapline-sample-exports profiles` writes a CSV and a JSON profile export of the demo's users
/// a day apart: beside the demo's event files they load as two snapshots per profile, the
/// unchanged profiles with one hash in both formats, and their identities are the events'.
#[test]
fn the_sample_profile_exports_load_beside_the_demo_events() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let generate = |command: &str| {
        let out = std::process::Command::new(tapline_tests::bin("tapline-sample-exports"))
            .args([command, "--out", exports.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    generate("demo");
    let stdout = generate("profiles");
    let expected = tapline_tests::expected_counts(&stdout);
    let db = dir.path().join("w.sqlite");
    let run = tapline(&[
        "load",
        exports.to_str().unwrap(),
        "--warehouse",
        &format!("sqlite://{}", db.display()),
        "--timezone",
        "Asia/Kolkata",
    ]);
    assert_eq!(run.code, 2, "the demo's corrupt file: {}", run.stdout);
    let count = |sql: &str| -> u64 { sqlite_value(&db, sql).unwrap().parse().unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM profile_snapshots"),
        expected["profile_rows"]
    );
    assert_eq!(
        count("SELECT count(DISTINCT identity) FROM profile_snapshots"),
        expected["profiles"]
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM (SELECT identity FROM profile_snapshots GROUP BY identity \
             HAVING count(DISTINCT profile_hash) = 2)"
        ),
        expected["changed"],
        "only the changed profiles have a second hash, CSV and JSON alike"
    );
    assert_eq!(
        sqlite_rows(&db, "SELECT DISTINCT ts FROM profile_snapshots ORDER BY ts"),
        vec![
            vec![Some("2022-09-18T18:30:00Z".to_string())],
            vec![Some("2022-09-20T18:30:00Z".to_string())]
        ]
    );
    // The views: one row per identity, one history period more per changed profile, and every
    // event once in events_with_profile (periods do not overlap).
    assert_eq!(count("SELECT count(*) FROM profiles"), expected["profiles"]);
    assert_eq!(
        count("SELECT count(*) FROM profiles_history"),
        expected["profiles"] + expected["changed"]
    );
    assert_eq!(
        count("SELECT count(*) FROM profiles_history WHERE valid_to IS NOT NULL"),
        expected["changed"]
    );
    assert_eq!(
        count("SELECT count(*) FROM events_with_profile"),
        count("SELECT count(*) FROM all_events")
    );
    let after_change = count(
        "SELECT count(*) FROM events_with_profile WHERE ts >= '2022-09-20T18:30:00Z' \
         AND profile_valid_from = '2022-09-20T18:30:00Z'",
    );
    let before_change = count(
        "SELECT count(*) FROM events_with_profile WHERE ts < '2022-09-20T18:30:00Z' \
         AND profile_valid_from = '2022-09-18T18:30:00Z' AND user_customer_type IS NOT NULL",
    );
    assert!(
        after_change > 0 && before_change > 0,
        "{after_change} events after the change see it, {before_change} before see the first run"
    );
    let shared = count(
        "SELECT count(DISTINCT p.identity) FROM profile_snapshots p \
         JOIN all_events e ON e.profile_identity = p.identity",
    );
    assert!(shared > 100, "{shared} identities shared with the events");
    assert_eq!(
        count("SELECT count(*) FROM _tapline_rejects"),
        3,
        "the demo's bad rows only"
    );
}

/// The same profile exports into PostgreSQL 15: `ts` a `timestamptz` at the run time, the same
/// hash for the same profile in CSV and JSON, and a second load changes nothing.
#[test]
fn profile_exports_load_into_postgres() {
    let case = Case::new();
    case.write(LEGACY, LEGACY_CSV);
    case.write(EXPORT_CENTER, &export_center_json());
    let db = tapline_tests::servers::pg::PgSchema::new("profiles");
    let root = case.root.to_str().unwrap();
    let run = db.load(root);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        db.psql(
            "SELECT string_agg(identity || ' ' || ts || ' ' || coalesce(blood_group, '-') \
             || ' ' || _source_line, ', ' ORDER BY _source_uri, _source_line) \
             FROM profile_snapshots"
        ),
        "u1 2022-09-21 18:30:00+00 O+ 2, __g2 2022-09-21 18:30:00+00 - 3, \
         u1 2022-09-21 18:30:00+00 A- 4, u1 2025-10-28 11:42:01+00 O+ 1, \
         u3 2025-10-28 11:42:01+00 - 2"
    );
    assert_eq!(
        db.psql(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = \
             current_schema() AND table_name = 'profile_snapshots' AND column_name = 'ts'"
        ),
        "timestamp with time zone"
    );
    assert_eq!(
        db.psql(
            "SELECT count(DISTINCT profile_hash) FROM profile_snapshots \
             WHERE identity = 'u1' AND blood_group = 'O+'"
        ),
        "1",
        "u1 as CSV and as JSON: one hash"
    );
    let again = db.load(root);
    assert_eq!(again.code, 0, "{}", again.stdout);
    assert_eq!(db.psql("SELECT count(*) FROM profile_snapshots"), "5");
    assert_eq!(
        db.psql("SELECT count(*) || ' ' || min(status) FROM _tapline_loads"),
        "2 loaded"
    );
}

/// Export Center's Parquet profile layout (`identity`, then maps of unions whose entries are the
/// properties): the first run's profiles written as Parquet beside its CSV give, for every
/// profile, the CSV's hash and no column the CSV lacks, so they add no history period. An event
/// Parquet export filed as a profile export is quarantined: none of its rows has a profile key.
#[test]
fn profile_parquet_gives_the_csvs_snapshots() {
    let case = Case::new();
    let out = std::process::Command::new(tapline_tests::bin("tapline-sample-exports"))
        .args([
            "profiles",
            "--parquet",
            "--out",
            case.root.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let expected = tapline_tests::expected_counts(&String::from_utf8(out.stdout).unwrap());
    let events = std::process::Command::new(tapline_tests::bin("tapline-sample-exports"))
        .args([
            "parquet",
            "--out",
            case.dir().join("events").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(events.status.success(), "{events:?}");
    let event_parquet = std::fs::read_dir(case.dir().join("events/parquet"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let misfiled = case.root.join("profile/100000000-9-1663525800-0.parquet");
    std::fs::copy(event_parquet, &misfiled).unwrap();

    let run = case.load();
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        case.count("SELECT count(*) FROM profile_snapshots"),
        expected["profile_rows"]
    );
    assert_eq!(
        case.count(
            "SELECT count(*) FROM profile_snapshots c JOIN profile_snapshots p \
             ON p.identity = c.identity AND p.profile_hash = c.profile_hash \
             WHERE p._source_uri LIKE '%.parquet' AND c._source_uri LIKE '%.csv.gz'"
        ),
        expected["profiles"],
        "every Parquet snapshot hashes like its CSV twin"
    );
    assert_eq!(
        case.rows(
            "SELECT DISTINCT l.uri FROM _tapline_columns c JOIN _tapline_loads l \
             ON l.load_id = c.added_by_load WHERE c.table_name = 'profile_snapshots'"
        )
        .len(),
        1,
        "only the first file loaded added columns"
    );
    assert_eq!(
        case.count("SELECT count(*) FROM profiles_history"),
        expected["profiles"] + expected["changed"]
    );
    let misfiled_row = case.rows(&format!(
        "SELECT status, rows_rejected > 0, error FROM _tapline_loads WHERE uri LIKE '%{}'",
        misfiled.file_name().unwrap().to_str().unwrap()
    ));
    assert_eq!(misfiled_row.len(), 1, "{misfiled_row:?}");
    assert_eq!(
        misfiled_row[0][0].as_deref(),
        Some("quarantined"),
        "{misfiled_row:?}"
    );
    assert_eq!(misfiled_row[0][1].as_deref(), Some("1"), "{misfiled_row:?}");
}
