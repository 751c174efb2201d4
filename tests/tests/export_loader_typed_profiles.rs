//! The typed profile views on SQLite through `tapline load`: the sample profile exports beside
//! the demo's events give `bi_profiles`, `bi_profiles_history` and `bi_events_with_profile`,
//! whose values are the raw views' cast by each snapshot column's kind; a later profile export
//! that widens a kind rebuilds them in its load.

use std::path::{Path, PathBuf};

use tapline_tests::{gzip, sqlite_rows, sqlite_value, tapline};

/// The demo's events and the two sample profile exports, loaded into one SQLite file.
struct Loaded {
    _dir: tempfile::TempDir,
    exports: PathBuf,
    db: PathBuf,
}

impl Loaded {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let exports = dir.path().join("exports");
        for command in ["demo", "profiles"] {
            let out = std::process::Command::new(tapline_tests::bin("tapline-sample-exports"))
                .args([command, "--out", exports.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        let db = dir.path().join("w.sqlite");
        let loaded = Self {
            _dir: dir,
            exports,
            db,
        };
        let run = loaded.load();
        assert_eq!(run.code, 2, "the demo's corrupt file: {}", run.stdout);
        loaded
    }

    fn load(&self) -> tapline_tests::Run {
        tapline(&[
            "load",
            self.exports.to_str().unwrap(),
            "--warehouse",
            &format!("sqlite://{}", self.db.display()),
            "--timezone",
            "Asia/Kolkata",
        ])
    }

    fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        sqlite_rows(&self.db, sql)
    }

    fn count(&self, sql: &str) -> u64 {
        sqlite_value(&self.db, sql).unwrap().parse().unwrap()
    }

    fn kinds(&self) -> Vec<Vec<Option<String>>> {
        self.rows(
            "SELECT column_name, kind FROM _tapline_columns WHERE table_name = 'profile_snapshots' \
             ORDER BY column_name",
        )
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn kind(column: &str, kind: &str) -> Vec<Option<String>> {
    vec![s(column), s(kind)]
}

/// Rows of the typed view beside the raw one whose typed value is not the raw value cast:
/// `MSG-push` / `MSG-email` `true`/`false` → 1/0, `DOB` `YYYY-MM-DD` → `YYYY-MM-DDT00:00:00Z`,
/// text unchanged.
fn mismatches(raw_view: &str, typed_view: &str, prefix: &str, key: &str) -> String {
    format!(
        "SELECT count(*) FROM {typed_view} t JOIN {raw_view} r USING ({key}) WHERE \
         t.{prefix}msg_push IS NOT (CASE r.{prefix}msg_push WHEN 'true' THEN 1 WHEN 'false' THEN 0 END) \
         OR typeof(t.{prefix}msg_push) NOT IN ('integer', 'null') \
         OR t.{prefix}msg_email IS NOT (CASE r.{prefix}msg_email WHEN 'true' THEN 1 WHEN 'false' THEN 0 END) \
         OR t.{prefix}dob IS NOT (r.{prefix}dob || 'T00:00:00Z') \
         OR t.{prefix}customer_type IS NOT r.{prefix}customer_type \
         OR t.{prefix}phone IS NOT r.{prefix}phone"
    )
}

#[test]
fn the_sample_profiles_read_typed_beside_the_demo_events() {
    let w = Loaded::new();
    // The kinds the load inferred for the snapshot columns (the `$profiles` key's table).
    assert_eq!(
        w.kinds(),
        vec![
            kind("all_identities", "json"),
            kind("blood_group", "text"),
            kind("clevertap_id", "text"),
            kind("clevertap_ids", "json"),
            kind("customer_type", "text"),
            kind("dob", "timestamp"),
            kind("email", "text"),
            kind("gender", "text"),
            kind("identity", "text"),
            kind("msg_email", "boolean"),
            kind("msg_push", "boolean"),
            kind("name", "text"),
            kind("phone", "text"),
            kind("profile_hash", "text"),
            kind("record", "json"),
            kind("subscription_groups_offers", "text"),
            kind("token", "text"),
            kind("ts", "timestamp"),
        ]
    );
    assert_eq!(
        w.rows(
            "SELECT name, type FROM sqlite_master WHERE name IN ('bi_profiles', \
             'bi_profiles_history', 'bi_events_with_profile') ORDER BY name"
        ),
        vec![
            vec![s("bi_events_with_profile"), s("view")],
            vec![s("bi_profiles"), s("view")],
            vec![s("bi_profiles_history"), s("view")],
        ]
    );

    // Every row of each typed view is its raw view's row, cast.
    for (raw, typed, key) in [
        ("profiles", "bi_profiles", "identity"),
        (
            "profiles_history",
            "bi_profiles_history",
            "identity, valid_from",
        ),
    ] {
        assert_eq!(
            w.count(&format!("SELECT count(*) FROM {typed}")),
            w.count(&format!("SELECT count(*) FROM {raw}")),
            "{typed}"
        );
        assert_eq!(w.count(&mismatches(raw, typed, "", key)), 0, "{typed}");
    }
    let events = w.count("SELECT count(*) FROM all_events");
    assert_eq!(events, 7_146);
    assert_eq!(
        w.count("SELECT count(*) FROM bi_events_with_profile"),
        events
    );
    let key = "_source_uri, _source_line, _table";
    assert_eq!(
        w.count(&mismatches(
            "events_with_profile",
            "bi_events_with_profile",
            "user_",
            key
        )),
        0
    );
    assert_eq!(
        w.count(
            "SELECT count(*) FROM bi_events_with_profile t JOIN events_with_profile r \
             USING (_source_uri, _source_line, _table) WHERE t.profile_valid_from IS NOT r.profile_valid_from \
             OR t.profile_identity IS NOT r.profile_identity OR t.ts IS NOT r.ts"
        ),
        0,
        "the join is the raw view's"
    );
    assert_eq!(
        w.count("SELECT count(*) FROM bi_events_with_profile WHERE user_msg_push IS NOT NULL"),
        w.count("SELECT count(*) FROM events_with_profile WHERE user_msg_push IS NOT NULL"),
    );

    // Two events exactly, typed value beside raw value.
    let sample = w.rows(
        "SELECT t.ts, t.profile_identity, t.device_info_dpi, typeof(t.device_info_dpi), \
         r.device_info_dpi, t.user_dob, r.user_dob, t.user_msg_push, typeof(t.user_msg_push), \
         r.user_msg_push, t.user_customer_type, t.profile_valid_from \
         FROM bi_events_with_profile t JOIN events_with_profile r USING (_source_uri, _source_line, _table) \
         WHERE t.user_dob IS NOT NULL AND t.device_info_dpi IS NOT NULL ORDER BY t.ts LIMIT 2",
    );
    assert_eq!(
        sample,
        vec![
            vec![
                s("2022-09-18T18:31:55Z"),
                s("U100069"),
                s("440"),
                s("integer"),
                s("440"),
                s("2002-09-26T00:00:00Z"),
                s("2002-09-26"),
                s("0"),
                s("integer"),
                s("false"),
                s("silver"),
                s("2022-09-18T18:30:00Z"),
            ],
            vec![
                s("2022-09-18T18:38:58Z"),
                s("kavya.nair41@example.com"),
                s("460"),
                s("integer"),
                s("460"),
                s("1969-10-17T00:00:00Z"),
                s("1969-10-17"),
                s("1"),
                s("integer"),
                s("true"),
                s("gold"),
                s("2022-09-18T18:30:00Z"),
            ],
        ]
    );
}

/// A legacy profile export (`<account>-<request>-<run ts>-<database>-csv.gz`, run at
/// 2022-09-22T18:30:00Z) in which one profile's `MSG-push` is `yes` and one `DOB` is an
/// impossible date.
fn write_widening_profiles(exports: &Path) {
    let csv = "identity,MSG-push,DOB\nU100069,yes,2002-02-30\n";
    std::fs::write(
        exports.join("100000000-56-1663871400-0-csv.gz"),
        gzip(csv.as_bytes()),
    )
    .unwrap();
}

#[test]
fn a_profile_export_that_widens_a_kind_rebuilds_the_typed_profile_views_in_its_load() {
    let w = Loaded::new();
    write_widening_profiles(&w.exports);
    let run = w.load();
    // The demo's corrupt file is tried again and still quarantined.
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        w.count(
            "SELECT count(*) FROM _tapline_loads WHERE uri LIKE '%-56-1663871400-0-csv.gz' \
             AND status = 'loaded' AND rows_loaded = 1"
        ),
        1
    );
    let kinds = w.kinds();
    assert!(kinds.contains(&kind("msg_push", "text")), "{kinds:?}");
    assert!(kinds.contains(&kind("dob", "text")), "{kinds:?}");
    assert!(kinds.contains(&kind("msg_email", "boolean")), "{kinds:?}");
    // The latest snapshot of U100069 is the new one: raw text, nothing lost.
    assert_eq!(
        w.rows(
            "SELECT t.msg_push, typeof(t.msg_push), t.dob, t.msg_email, t.snapshot_at, r.msg_push \
             FROM bi_profiles t JOIN profiles r USING (identity) WHERE identity = 'U100069'"
        ),
        vec![vec![
            s("yes"),
            s("text"),
            s("2002-02-30"),
            None,
            s("2022-09-22T18:30:00Z"),
            s("yes"),
        ]]
    );
    // Another profile's boolean is now its text, beside it in the same view.
    assert_eq!(
        w.count(
            "SELECT count(*) FROM bi_profiles WHERE typeof(msg_push) = 'text' \
             AND msg_push IN ('true', 'false')"
        ),
        w.count("SELECT count(*) FROM profiles WHERE msg_push IN ('true', 'false')")
    );
    assert_eq!(
        w.count("SELECT count(*) FROM bi_profiles WHERE typeof(msg_email) = 'integer'"),
        w.count("SELECT count(*) FROM profiles WHERE msg_email IN ('true', 'false')")
    );
    assert_eq!(
        w.count("SELECT count(*) FROM bi_events_with_profile"),
        7_146
    );
    assert_eq!(
        w.rows(
            "SELECT user_msg_push, user_dob FROM bi_events_with_profile \
             WHERE profile_identity = 'U100069' AND ts >= '2022-09-22T18:30:00Z'"
        ),
        Vec::<Vec<Option<String>>>::new(),
        "no demo event is after the new snapshot"
    );
}
