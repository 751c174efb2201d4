//! The typed views on SQLite (see [`crate::warehouse::typed_views`]): guarded casts that give
//! NULL where a value does not fit, and the rebuild a load's commit runs in its transaction.
//! SQLite has no timestamp type: timestamps are UTC ISO-8601 text, the form of `ts`.

use std::collections::{HashMap, HashSet};

use rusqlite::Connection;

use super::typed_profile_views::typed_profile_views_script;
use super::{ident, op};
use crate::warehouse::WarehouseError;
use crate::warehouse::catalog::Catalog;
use crate::warehouse::column_kinds::ColumnKind;
use crate::warehouse::typed_views::{
    TYPED_ALL_EVENTS_VIEW, TypedDialect, typed_all_events_select, typed_table_select,
    typed_view_name,
};

/// The form every typed timestamp takes: `ts`'s (whole seconds, UTC), so the two compare.
const TS_FORMAT: &str = "'%Y-%m-%dT%H:%M:%SZ'";

/// `column` (quoted) read as `kind`; NULL where a value does not fit (the typed views, and
/// the misfit counts of `tapline status`).
pub(super) fn cast(c: &str, kind: ColumnKind) -> String {
    match kind {
        // The integer's own text must be the value: no leading zeros, no `+`, and no value
        // past i64, which CAST would clamp.
        ColumnKind::Integer => {
            format!(
                "CASE WHEN CAST(CAST({c} AS INTEGER) AS TEXT) = {c} THEN CAST({c} AS INTEGER) END"
            )
        }
        // JSON's number grammar is the one the kind was inferred with; json_type would fail on
        // text that is no JSON, so json_valid guards it first.
        ColumnKind::Decimal => format!(
            "CASE WHEN json_valid({c}) THEN CASE WHEN json_type({c}) IN ('integer', 'real') \
             THEN CAST({c} AS REAL) END END"
        ),
        ColumnKind::Boolean => format!("CASE {c} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END"),
        // SQLite's date functions read ISO-8601 with a zone and convert it to UTC, but take a
        // day past the month's end as it is: the date must survive normalising.
        ColumnKind::Timestamp => format!(
            "CASE WHEN {c} GLOB '$D_*' THEN CASE WHEN CAST(CAST(substr({c}, 4) AS INTEGER) AS TEXT) \
             = substr({c}, 4) THEN strftime({TS_FORMAT}, CAST(substr({c}, 4) AS INTEGER), 'unixepoch') END \
             WHEN {c} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' \
             AND substr({c}, 1, 10) = date(substr({c}, 1, 10), '+0 days') \
             THEN strftime({TS_FORMAT}, {c}) END"
        ),
        ColumnKind::Json => format!("CASE WHEN json_valid({c}) THEN {c} END"),
        ColumnKind::Text => c.to_string(),
    }
}

/// Rebuilds, in the open transaction, the typed view of every event table in `stale` (a column
/// added or a kind widened) or without one yet (a file from before typed views), and
/// `bi_all_events` when any of them was rebuilt or `all_events_stale`. A relation of the
/// view's name that is no view (a table from before the prefix was reserved) keeps its name,
/// and that table gets no typed view.
pub(super) fn rebuild_typed_views(
    conn: &Connection,
    catalog: &Catalog,
    stale: &HashSet<String>,
    all_events_stale: bool,
) -> Result<(), WarehouseError> {
    let read = op("rebuild typed views");
    let existing: HashMap<String, String> = conn
        .prepare_cached("SELECT name, type FROM sqlite_master WHERE name LIKE 'bi\\_%' ESCAPE '\\'")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(read)?;
    let d = TypedDialect {
        ident,
        relation: &|t| ident(t),
        cast,
        null: |_| "NULL".to_string(),
    };
    let mut script = String::new();
    for table in catalog.event_tables() {
        let view = typed_view_name(&table.name);
        match existing.get(&view).map(String::as_str) {
            Some("view") if !stale.contains(&table.name) => continue,
            Some("view") | None => {}
            Some(_) => {
                tracing::warn!(table = %table.name, relation = %view, "A relation named like the typed view is not a view: the table gets no typed view.");
                continue;
            }
        }
        let columns: Vec<String> = conn
            .prepare_cached("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
            .and_then(|mut s| s.query_map([&table.name], |r| r.get(0))?.collect())
            .map_err(op("rebuild typed views"))?;
        script.push_str(&format!(
            "DROP VIEW IF EXISTS {0};\nCREATE VIEW {0} AS\n{1};\n",
            ident(&view),
            typed_table_select(table, &columns, &d)
        ));
    }
    let all_events = existing.get(TYPED_ALL_EVENTS_VIEW).map(String::as_str);
    let all_events_due = !script.is_empty() || all_events_stale || all_events.is_none();
    if all_events_due && matches!(all_events, Some("view") | None) && !catalog.is_empty() {
        script.push_str(&format!(
            "DROP VIEW IF EXISTS {0};\nCREATE VIEW {0} AS\n{1};\n",
            ident(TYPED_ALL_EVENTS_VIEW),
            typed_all_events_select(catalog, &d)
        ));
    }
    script.push_str(&typed_profile_views_script(
        catalog,
        &d,
        &existing,
        stale,
        !script.is_empty(),
    ));
    conn.execute_batch(&script)
        .map_err(op("rebuild typed views"))
}
