//! The profile views every warehouse builds over `profile_snapshots`, in one place so SQLite,
//! PostgreSQL and BigQuery give the same columns and the same answers:
//!
//! - `profiles`: one row per identity, its latest snapshot (ties: the later load, then the later
//!   line), with `snapshot_at` (the instant of that snapshot) and the whole record as `record`;
//! - `profiles_history`: type-2 history, one row per identity per period in which its attributes
//!   did not change (`valid_from`, `valid_to`; NULL for the current period). A snapshot whose
//!   attribute hash equals the one before it (by snapshot time) starts no period, so an unchanged
//!   profile adds no row, and a snapshot loaded late (an older export found by a later sweep)
//!   still lands in its place in time;
//! - `events_with_profile`: `all_events` joined to the period of the event's
//!   `profile_identity` that holds its `ts`; profile attributes are prefixed `user_` and the
//!   period's start is `profile_valid_from`. An event before the first snapshot of its identity
//!   gets NULL attributes: a profile's first values are not projected back in time.
//!
//! Snapshots are only ever appended (exactly once per export object, like event rows), and the
//! views derive the rest at query time: nothing is updated in place, which BigQuery's DML quotas
//! and cost reward, and a replaced object version changes the views by itself.

use super::catalog::{Catalog, TableColumns};
use super::column_kinds::ColumnKind;
use super::naming::unique_name;
use super::typed_views::TypedDialect;
use super::{LINEAGE_COLUMNS, SqlQuery, WarehouseError};
use crate::export::{
    PROFILE_HASH_COLUMN, PROFILE_IDENTITY_COLUMN, PROFILE_RECORD_COLUMN, PROFILE_SNAPSHOTS_KEY,
    TS_COLUMN,
};

/// The latest snapshot per identity.
pub const PROFILES_VIEW: &str = "profiles";
/// The type-2 history of profile attributes.
pub const PROFILES_HISTORY_VIEW: &str = "profiles_history";
/// Events joined to the profile as it was at the event.
pub const EVENTS_WITH_PROFILE_VIEW: &str = "events_with_profile";
/// Prefix of the profile attributes in `events_with_profile`.
pub const USER_PREFIX: &str = "user_";

/// How a warehouse writes names in a view body.
pub struct ViewDialect<'a> {
    /// Quotes an identifier.
    pub ident: fn(&str) -> String,
    /// Refers to a table or view of the schema (BigQuery qualifies it with the dataset).
    pub relation: &'a (dyn Fn(&str) -> String + Sync),
}

/// The `SELECT` bodies of the profile views, in the order they must be created (a view after
/// the views it reads). `events_with_profile` is there only when `all_events` is (some event
/// table exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileViews {
    /// `(view name, SELECT body)`, in creation order.
    pub views: Vec<(&'static str, String)>,
}

impl ProfileViews {
    /// The views to drop before rebuilding, in drop order (readers first).
    pub const DROP_ORDER: [&'static str; 3] = [
        EVENTS_WITH_PROFILE_VIEW,
        PROFILES_HISTORY_VIEW,
        PROFILES_VIEW,
    ];
}

/// The profile views of `catalog`, or `None` before any profile snapshot was loaded.
pub fn profile_views(catalog: &Catalog, d: &ViewDialect<'_>) -> Option<ProfileViews> {
    build_profile_views(
        catalog,
        &Shape {
            ident: d.ident,
            relation: d.relation,
            value: &|quoted, _| quoted.to_string(),
            events: (d.relation)("all_events"),
            history: (d.relation)(PROFILES_HISTORY_VIEW),
        },
    )
}

/// The typed profile views of the BI layer (`bi_profiles`, `bi_profiles_history`,
/// `bi_events_with_profile` on SQLite; `profiles`, … in the BI schema or dataset elsewhere),
/// or `None` before any profile snapshot was loaded. Same names, columns and rows as
/// [`profile_views`]; each attribute column (and `record`) is cast by the snapshot table's
/// [`TableColumns::view_kind`] with `d.cast`, as the typed event views are. Not cast:
/// `identity` (a key: events join on it as text), `snapshot_at`, `valid_from`, `valid_to`
/// and `profile_valid_from` (from `ts`, already the warehouse's timestamp type, which SQLite
/// keeps as UTC ISO-8601 text) and the hash and lineage.
///
/// They read the raw snapshot table (`d.relation`), never the raw views, so replacing a raw
/// view never touches them. `typed_relation(name)` refers to view `name` of the typed layer
/// (`"all_events"`, `"profiles_history"`): `events_with_profile` is
/// `typed_relation("all_events")` joined to `typed_relation("profiles_history")`, so its event
/// columns are those of the typed `all_events`. Create the views in the order given, after the
/// typed `all_events`; where views are bound to what they read (PostgreSQL), drop the typed
/// `events_with_profile` before replacing the typed `all_events` or `profiles_history`
/// ([`ProfileViews::DROP_ORDER`]).
pub fn typed_profile_views(
    catalog: &Catalog,
    d: &TypedDialect<'_>,
    typed_relation: &dyn Fn(&str) -> String,
) -> Option<ProfileViews> {
    let snapshots = catalog.profile_snapshots()?;
    let value = |quoted: &str, raw: &str| match snapshots.view_kind(raw) {
        Some(kind) if kind != ColumnKind::Text => (d.cast)(quoted, kind),
        _ => quoted.to_string(),
    };
    build_profile_views(
        catalog,
        &Shape {
            ident: d.ident,
            relation: d.relation,
            value: &value,
            events: typed_relation("all_events"),
            history: typed_relation(PROFILES_HISTORY_VIEW),
        },
    )
}

/// What differs between the raw and the typed profile views.
struct Shape<'a> {
    ident: fn(&str) -> String,
    /// Refers to the raw snapshot table.
    relation: &'a (dyn Fn(&str) -> String + Sync),
    /// `value(quoted column, raw name)`: an attribute's (or the record's) expression.
    value: &'a dyn Fn(&str, &str) -> String,
    /// The events `events_with_profile` joins.
    events: String,
    /// The history `events_with_profile` joins.
    history: String,
}

fn build_profile_views(catalog: &Catalog, d: &Shape<'_>) -> Option<ProfileViews> {
    let snapshots = catalog.profile_snapshots()?;
    let col = |raw: &str| snapshots.columns.get(raw).map(|c| (d.ident)(c));
    let (identity, ts, hash) = (
        col(PROFILE_IDENTITY_COLUMN)?,
        col(TS_COLUMN)?,
        col(PROFILE_HASH_COLUMN)?,
    );
    let record = col(PROFILE_RECORD_COLUMN).map(|c| (d.value)(&c, PROFILE_RECORD_COLUMN));
    let attributes = attribute_columns(snapshots);
    let table = (d.relation)(&snapshots.name);
    let ident = d.ident;
    let (source_uri, source_line, load_id, loaded_at) = (
        ident(LINEAGE_COLUMNS[0]),
        ident(LINEAGE_COLUMNS[1]),
        ident(LINEAGE_COLUMNS[2]),
        ident(LINEAGE_COLUMNS[3]),
    );
    let order = format!("{ts}, {load_id}, {source_line}");
    let attribute_list: Vec<String> = attributes
        .iter()
        .map(|a| {
            let value = (d.value)(&ident(&a.column), &a.raw);
            if value == ident(&a.alias) {
                value
            } else {
                format!("{value} AS {}", ident(&a.alias))
            }
        })
        .collect();
    let with_comma =
        |list: &[String]| -> String { list.iter().map(|c| format!(", {c}")).collect::<String>() };

    let mut latest_columns = vec![
        format!("{identity} AS {}", ident("identity")),
        format!("{ts} AS {}", ident("snapshot_at")),
    ];
    latest_columns.extend(attribute_list.iter().cloned());
    if let Some(record) = &record {
        latest_columns.push(format!("{record} AS {}", ident("record")));
    }
    latest_columns.extend([source_uri.clone(), load_id.clone(), loaded_at.clone()]);
    let rank = ident("_rank");
    let profiles = format!(
        "SELECT {} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {identity} ORDER BY {ts} DESC, \
         {load_id} DESC, {source_line} DESC) AS {rank} FROM {table}) AS latest WHERE {rank} = 1",
        latest_columns.join(", ")
    );

    let previous = ident("_previous_hash");
    let history = format!(
        "SELECT {identity} AS {}, {ts} AS {}, LEAD({ts}) OVER (PARTITION BY {identity} ORDER BY \
         {order}) AS {}{}, {hash} AS {}, {source_uri}, {load_id} FROM (SELECT *, LAG({hash}) OVER \
         (PARTITION BY {identity} ORDER BY {order}) AS {previous} FROM {table}) AS snapshots \
         WHERE {previous} IS NULL OR {previous} <> {hash}",
        ident("identity"),
        ident("valid_from"),
        ident("valid_to"),
        with_comma(&attribute_list),
        ident("profile_hash"),
    );

    let mut views = vec![(PROFILES_VIEW, profiles), (PROFILES_HISTORY_VIEW, history)];
    if !catalog.is_empty() {
        // `user_` plus a 63-byte name is past PostgreSQL's identifier length, which would cut
        // two long names to one: each alias is made unique within the limit.
        let mut used = std::collections::HashSet::new();
        let user: Vec<String> = attributes
            .iter()
            .map(|a| {
                let alias = &a.alias;
                let name = unique_name(&format!("{USER_PREFIX}{alias}"), &|n: &str| {
                    used.contains(n)
                });
                used.insert(name.clone());
                format!("h.{} AS {}", ident(alias), ident(&name))
            })
            .collect();
        let e_ts = format!("e.{}", ident(TS_COLUMN));
        views.push((
            EVENTS_WITH_PROFILE_VIEW,
            format!(
                "SELECT e.*, h.{} AS {}{} FROM {} AS e LEFT JOIN {} AS h ON h.{} = e.{} AND \
                 h.{} <= {e_ts} AND (h.{} IS NULL OR {e_ts} < h.{})",
                ident("valid_from"),
                ident("profile_valid_from"),
                with_comma(&user),
                d.events,
                d.history,
                ident("identity"),
                ident("profile_identity"),
                ident("valid_from"),
                ident("valid_to"),
                ident("valid_to"),
            ),
        ));
    }
    Some(ProfileViews { views })
}

/// What `tapline status` shows of profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSummary {
    /// Rows of `profiles`: identities.
    pub identities: u64,
    /// Rows of the snapshot table.
    pub snapshots: u64,
    /// Rows of `profiles_history`: periods.
    pub periods: u64,
    /// The latest snapshot's instant, as the warehouse prints it.
    pub latest: Option<String>,
    /// Which of the loads asked about wrote profile snapshots.
    pub profile_loads: Vec<i64>,
}

/// Counts profiles, snapshots and history periods, and tells which of `loads` wrote snapshots;
/// `None` before any profile was loaded. Plain SQL every warehouse answers.
pub async fn profile_summary(
    q: &dyn SqlQuery,
    loads: &[i64],
) -> Result<Option<ProfileSummary>, WarehouseError> {
    let registered = q
        .query(&format!(
            "SELECT table_name FROM _tapline_tables WHERE event_name = '{PROFILE_SNAPSHOTS_KEY}'"
        ))
        .await?;
    let Some(table) = registered
        .rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
    else {
        return Ok(None);
    };
    // Our own snake_case name; checked so that it needs no quoting in any dialect.
    if !table
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Ok(None);
    }
    let counts = q
        .query(&format!(
            "SELECT (SELECT count(*) FROM {PROFILES_VIEW}), (SELECT count(*) FROM {table}), \
             (SELECT count(*) FROM {PROFILES_HISTORY_VIEW}), (SELECT max(ts) FROM {table})"
        ))
        .await?;
    let cell = |i: usize| {
        counts
            .rows
            .first()
            .and_then(|r| r.get(i).cloned().flatten())
    };
    let number = |i: usize| cell(i).and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut profile_loads = Vec::new();
    if !loads.is_empty() {
        let ids: Vec<String> = loads.iter().map(i64::to_string).collect();
        let written = q
            .query(&format!(
                "SELECT DISTINCT load_id FROM _tapline_load_tables WHERE table_name = '{table}' \
                 AND load_id IN ({})",
                ids.join(", ")
            ))
            .await?;
        profile_loads = written
            .rows
            .iter()
            .filter_map(|r| r.first().cloned().flatten()?.parse().ok())
            .collect();
    }
    Ok(Some(ProfileSummary {
        identities: number(0),
        snapshots: number(1),
        periods: number(2),
        latest: cell(3),
        profile_loads,
    }))
}

/// The views a load must (re)create, in creation order, as `(name, SELECT body)`:
/// `all_events` when its body is given (an event table was created or widened), the profile
/// views when `profiles_stale` (the snapshot table was), and `events_with_profile` whenever
/// anything it reads changed.
pub fn stale_views(
    catalog: &Catalog,
    d: &ViewDialect<'_>,
    all_events: Option<String>,
    profiles_stale: bool,
) -> Vec<(&'static str, String)> {
    let mut stale = Vec::new();
    if let Some(body) = all_events {
        stale.push(("all_events", body));
    }
    if stale.is_empty() && !profiles_stale {
        return stale;
    }
    for (name, body) in profile_views(catalog, d)
        .map(|v| v.views)
        .unwrap_or_default()
    {
        if profiles_stale || name == EVENTS_WITH_PROFILE_VIEW {
            stale.push((name, body));
        }
    }
    stale
}

/// The SQL script that rebuilds the stale views ([`stale_views`]) where views are bound to
/// what they read (PostgreSQL refuses to drop `all_events` under `events_with_profile`), so
/// `events_with_profile` is dropped first and created last. Empty when nothing is stale.
pub fn rebuild_script(
    catalog: &Catalog,
    d: &ViewDialect<'_>,
    all_events: Option<String>,
    profiles_stale: bool,
) -> String {
    let stale = stale_views(catalog, d, all_events, profiles_stale);
    if stale.is_empty() {
        return String::new();
    }
    let ident = d.ident;
    let mut script = format!("DROP VIEW IF EXISTS {};\n", ident(EVENTS_WITH_PROFILE_VIEW));
    for (name, body) in stale {
        script.push_str(&format!(
            "DROP VIEW IF EXISTS {0};\nCREATE VIEW {0} AS\n{body};\n",
            ident(name)
        ));
    }
    script
}

/// Names the profile views give their own columns: a property column of the same name (from a
/// property called "Snapshot At") is shown as `<name>_property` instead.
const VIEW_OWN_COLUMNS: [&str; 3] = ["snapshot_at", "valid_from", "valid_to"];

/// One attribute column of the snapshot table, as the profile views show it.
struct Attribute {
    /// Its raw CleverTap name.
    raw: String,
    /// Its column in the snapshot table.
    column: String,
    /// The name the views show it under.
    alias: String,
}

/// The snapshot table's attribute columns (every data column but the key, the snapshot time,
/// the hash and the record), sorted by column name so every warehouse lists them alike, each
/// shown under its own name unless that is one of [`VIEW_OWN_COLUMNS`].
fn attribute_columns(snapshots: &TableColumns) -> Vec<Attribute> {
    let own = [
        PROFILE_IDENTITY_COLUMN,
        TS_COLUMN,
        PROFILE_HASH_COLUMN,
        PROFILE_RECORD_COLUMN,
    ];
    let mut columns: Vec<(String, String)> = snapshots
        .columns
        .iter()
        .filter(|(raw, _)| !own.contains(&raw.as_str()))
        .map(|(raw, column)| (column.clone(), raw.clone()))
        .collect();
    columns.sort();
    let taken: std::collections::HashSet<String> = columns.iter().map(|(c, _)| c.clone()).collect();
    columns
        .into_iter()
        .map(|(column, raw)| {
            let alias = if VIEW_OWN_COLUMNS.contains(&column.as_str()) {
                unique_name(&format!("{column}_property"), &|n: &str| taken.contains(n))
            } else {
                column.clone()
            };
            Attribute { raw, column, alias }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(s: &str) -> String {
        s.to_string()
    }

    fn catalog(with_events: bool) -> Catalog {
        let mut c = Catalog::new(Vec::new());
        let raw: Vec<String> = [
            "identity",
            "ts",
            "_profile_hash",
            "_record",
            "Email",
            "Blood Group",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        c.plan(PROFILE_SNAPSHOTS_KEY, &raw, 100).unwrap();
        if with_events {
            c.plan("Charged", &["ts".to_string(), "eventName".to_string()], 100)
                .unwrap();
        }
        c
    }

    #[test]
    fn property_names_never_collide_with_the_views_own() {
        let mut c = Catalog::new(Vec::new());
        let long = format!("p{}", "x".repeat(70));
        let long_2 = format!("p{}y", "x".repeat(70));
        let raw: Vec<String> = [
            "identity",
            "ts",
            "_profile_hash",
            "_record",
            "Snapshot At",
            "Valid To",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([long, long_2])
        .collect();
        c.plan(PROFILE_SNAPSHOTS_KEY, &raw, 100).unwrap();
        c.plan("Charged", &["ts".to_string()], 100).unwrap();
        let d = ViewDialect {
            ident: plain,
            relation: &plain,
        };
        let views = profile_views(&c, &d).unwrap().views;
        assert!(
            views[0].1.contains("snapshot_at AS snapshot_at_property"),
            "{}",
            views[0].1
        );
        assert!(
            views[1].1.contains("valid_to AS valid_to_property"),
            "{}",
            views[1].1
        );
        let joined = &views[2].1;
        assert!(
            joined.contains("h.valid_to_property AS user_valid_to_property"),
            "{joined}"
        );
        let aliases: Vec<&str> = joined
            .split(" AS ")
            .skip(1)
            .filter_map(|part| part.split([',', ' ']).next())
            .filter(|a| a.starts_with("user_p"))
            .collect();
        assert_eq!(aliases.len(), 2, "{joined}");
        assert!(
            aliases.iter().all(|a| a.len() <= 63) && aliases[0] != aliases[1],
            "{aliases:?}"
        );
    }

    #[test]
    fn no_snapshots_no_views() {
        let d = ViewDialect {
            ident: plain,
            relation: &plain,
        };
        assert!(profile_views(&Catalog::new(Vec::new()), &d).is_none());
    }

    #[test]
    fn views_list_attributes_sorted_and_join_only_with_events() {
        let d = ViewDialect {
            ident: plain,
            relation: &|t| format!("ds.{t}"),
        };
        let only = profile_views(&catalog(false), &d).unwrap();
        let names: Vec<&str> = only.views.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, [PROFILES_VIEW, PROFILES_HISTORY_VIEW]);
        assert!(
            only.views[0].1.starts_with(
                "SELECT identity AS identity, ts AS snapshot_at, blood_group, email, record AS record"
            ),
            "{}",
            only.views[0].1
        );
        assert!(only.views[1].1.contains("FROM ds.profile_snapshots"));
        let all = profile_views(&catalog(true), &d).unwrap();
        let (name, body) = &all.views[2];
        assert_eq!(*name, EVENTS_WITH_PROFILE_VIEW);
        assert!(
            body.contains("h.blood_group AS user_blood_group, h.email AS user_email FROM ds.all_events AS e LEFT JOIN ds.profiles_history AS h"),
            "{body}"
        );
    }

    fn typed_dialect() -> TypedDialect<'static> {
        TypedDialect {
            ident: plain,
            relation: &|t| format!("raw.{t}"),
            cast: |c, k| format!("{}({c})", k.as_str()),
            null: |k| format!("NULL_{}", k.as_str()),
        }
    }

    /// The snapshot table with kinds: a boolean, a date, a number, a text and a JSON record.
    fn typed_catalog(with_events: bool) -> Catalog {
        let mut c = Catalog::new(Vec::new());
        let raw: Vec<String> = [
            "identity",
            "ts",
            "_profile_hash",
            "_record",
            "MSG-push",
            "DOB",
            "Score",
            "Email",
            "Never Set",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        c.plan(PROFILE_SNAPSHOTS_KEY, &raw, 100).unwrap();
        for (raw, kind) in [
            // Every identity looked like a number: still the key, never cast.
            ("identity", ColumnKind::Integer),
            ("ts", ColumnKind::Timestamp),
            ("_profile_hash", ColumnKind::Text),
            ("_record", ColumnKind::Json),
            ("MSG-push", ColumnKind::Boolean),
            ("DOB", ColumnKind::Timestamp),
            ("Score", ColumnKind::Integer),
            ("Score", ColumnKind::Decimal),
            ("Email", ColumnKind::Text),
        ] {
            c.widen_kind(PROFILE_SNAPSHOTS_KEY, raw, kind);
        }
        if with_events {
            c.plan("Charged", &["ts".to_string(), "eventName".to_string()], 100)
                .unwrap();
        }
        c
    }

    #[test]
    fn typed_profile_views_cast_each_attribute_by_its_kind() {
        let views = typed_profile_views(&typed_catalog(true), &typed_dialect(), &|v| {
            format!("bi.{v}")
        })
        .unwrap()
        .views;
        let names: Vec<&str> = views.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                PROFILES_VIEW,
                PROFILES_HISTORY_VIEW,
                EVENTS_WITH_PROFILE_VIEW
            ]
        );
        assert_eq!(
            views[0].1,
            "SELECT identity AS identity, ts AS snapshot_at, timestamp(dob) AS dob, email, \
             boolean(msg_push) AS msg_push, never_set, decimal(score) AS score, json(record) AS \
             record, _source_uri, _load_id, _loaded_at FROM (SELECT *, ROW_NUMBER() OVER \
             (PARTITION BY identity ORDER BY ts DESC, _load_id DESC, _source_line DESC) AS _rank \
             FROM raw.profile_snapshots) AS latest WHERE _rank = 1"
        );
        assert_eq!(
            views[1].1,
            "SELECT identity AS identity, ts AS valid_from, LEAD(ts) OVER (PARTITION BY identity \
             ORDER BY ts, _load_id, _source_line) AS valid_to, timestamp(dob) AS dob, email, \
             boolean(msg_push) AS msg_push, never_set, decimal(score) AS score, profile_hash AS \
             profile_hash, _source_uri, _load_id FROM (SELECT *, LAG(profile_hash) OVER \
             (PARTITION BY identity ORDER BY ts, _load_id, _source_line) AS _previous_hash FROM \
             raw.profile_snapshots) AS snapshots WHERE _previous_hash IS NULL OR _previous_hash \
             <> profile_hash"
        );
        // Joined in the typed layer: typed events, typed history, attributes already cast.
        assert_eq!(
            views[2].1,
            "SELECT e.*, h.valid_from AS profile_valid_from, h.dob AS user_dob, h.email AS \
             user_email, h.msg_push AS user_msg_push, h.never_set AS user_never_set, h.score AS \
             user_score FROM bi.all_events AS e LEFT JOIN bi.profiles_history AS h ON h.identity \
             = e.profile_identity AND h.valid_from <= e.ts AND (h.valid_to IS NULL OR e.ts < \
             h.valid_to)"
        );
    }

    #[test]
    fn typed_profile_views_follow_pins_and_keep_the_raw_views_names() {
        let mut c = typed_catalog(false);
        let table = c.profile_snapshots().unwrap().name.clone();
        c.set_pinned(&table, "Email", ColumnKind::Integer);
        c.set_pinned(&table, "Score", ColumnKind::Text);
        let d = typed_dialect();
        let typed = typed_profile_views(&c, &d, &|v| format!("bi.{v}"))
            .unwrap()
            .views;
        assert_eq!(typed.len(), 2, "no events: no events_with_profile");
        assert!(
            typed[0]
                .1
                .contains("integer(email) AS email, boolean(msg_push)"),
            "{}",
            typed[0].1
        );
        assert!(typed[0].1.contains(", score, "), "{}", typed[0].1);
        // Untyped, the same body reads the same table and lists the same columns, uncast.
        let raw = profile_views(
            &c,
            &ViewDialect {
                ident: plain,
                relation: &|t| format!("raw.{t}"),
            },
        )
        .unwrap()
        .views;
        assert!(
            raw[0]
                .1
                .contains("dob, email, msg_push, never_set, score, record AS record")
        );
        assert!(typed_profile_views(&Catalog::new(Vec::new()), &d, &plain).is_none());
    }
}
