//! The typed views on BigQuery (see [`crate::warehouse::typed_views`]): one view per event table
//! and `all_events`, named like the raw ones, in the BI dataset (`<dataset>_bi`, created by the
//! first rebuild when missing), reading the raw dataset fully qualified. Each cast gives NULL where a value does not fit; a regex guard first
//! admits only the kind's own grammar (the one `classify` infers with), so every warehouse
//! reads the same values and BigQuery's laxer casts (`'007'` as 7) never decide.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::api::ApiError;
use super::dataset::{ColumnRow, Dataset};
use super::{ident, op};
use crate::warehouse::catalog::Catalog;
use crate::warehouse::column_kinds::ColumnKind;
use crate::warehouse::profile_views::{
    EVENTS_WITH_PROFILE_VIEW, ProfileViews, typed_profile_views,
};
use crate::warehouse::typed_views::{TypedDialect, typed_all_events_select, typed_table_select};
use crate::warehouse::{ColumnMisfit, WarehouseError};

/// The typed `all_events`: named like the raw view (a reserved table name, so no event table's
/// view takes it).
const ALL_EVENTS_VIEW: &str = "all_events";

/// `YYYY-MM-DD` and `HH:MM:SS[.fraction]`, as `classify` reads timestamps; the calendar
/// (30 February) is left to the cast, which gives NULL for a day that does not exist.
const DATE: &str = "[0-9]{4}-[0-9]{2}-[0-9]{2}";
const TIME: &str = "[T ][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,9})?";

/// The GoogleSQL type a kind reads as. Decimal is FLOAT64, not NUMERIC: NUMERIC holds 29
/// integer digits and a decimal column may hold any finite double (`1e+30`).
pub(super) fn bigquery_type(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Integer => "INT64",
        ColumnKind::Decimal => "FLOAT64",
        ColumnKind::Boolean => "BOOL",
        ColumnKind::Timestamp => "TIMESTAMP",
        ColumnKind::Json => "JSON",
        ColumnKind::Text => "STRING",
    }
}

/// `c` (quoted) read as `kind`; NULL where a value does not fit.
pub(super) fn cast(c: &str, kind: ColumnKind) -> String {
    let matches = |pattern: &str| format!("REGEXP_CONTAINS({c}, '^{pattern}$')");
    match kind {
        ColumnKind::Integer => format!(
            "CASE WHEN {} THEN SAFE_CAST({c} AS INT64) END",
            matches("-?(0|[1-9][0-9]*)")
        ),
        ColumnKind::Decimal => format!(
            "CASE WHEN {} THEN SAFE_CAST({c} AS FLOAT64) END",
            matches("-?(0|[1-9][0-9]*)([.][0-9]+)?([eE][+-]?[0-9]+)?")
        ),
        // Exactly `true`/`false`: BigQuery's cast would take `TRUE`, and a `1` must not pass.
        ColumnKind::Boolean => format!("CASE WHEN {c} IN ('true', 'false') THEN {c} = 'true' END"),
        // A value without an offset is UTC, said explicitly (`+00:00`) so no session time zone
        // can read it otherwise; CleverTap's `$D_<epoch seconds>` is seconds since the epoch.
        ColumnKind::Timestamp => format!(
            "CASE WHEN {} THEN SAFE.TIMESTAMP_SECONDS(SAFE_CAST(SUBSTR({c}, 4) AS INT64)) \
             WHEN {} THEN SAFE_CAST(CONCAT({c}, 'T00:00:00+00:00') AS TIMESTAMP) \
             WHEN {} THEN SAFE_CAST(CONCAT({c}, '+00:00') AS TIMESTAMP) \
             WHEN {} THEN SAFE_CAST({c} AS TIMESTAMP) END",
            matches("[$]D_-?[0-9]{1,12}"),
            matches(DATE),
            matches(&format!("{DATE}{TIME}")),
            matches(&format!("{DATE}{TIME}(Z|[+-][0-9]{{2}}:[0-9]{{2}})")),
        ),
        ColumnKind::Json => format!("SAFE.PARSE_JSON({c})"),
        ColumnKind::Text => c.to_string(),
    }
}

fn null(kind: ColumnKind) -> String {
    format!("CAST(NULL AS {})", bigquery_type(kind))
}

/// A raw table, fully qualified: views have no default dataset, and the BI dataset's views read
/// the raw one.
fn raw_relation(ds: &Dataset, table: &str) -> String {
    format!(
        "{}.{}.{}",
        ident(&ds.api.project),
        ident(&ds.dataset),
        ident(table)
    )
}

/// A view of the BI dataset, fully qualified (the typed profile views read each other).
fn bi_relation(ds: &Dataset, name: &str) -> String {
    format!(
        "{}.{}.{}",
        ident(&ds.api.project),
        ident(&ds.bi.name),
        ident(name)
    )
}

/// Creates or replaces view `name` of the BI dataset.
async fn put_view(ds: &Dataset, name: &str, body: String) -> Result<(), WarehouseError> {
    let operation = "rebuild typed views";
    let resource = json!({
        "tableReference": {
            "projectId": ds.api.project,
            "datasetId": ds.bi.name,
            "tableId": name,
        },
        "view": { "query": body, "useLegacySql": false },
    });
    match ds.api.insert_table(&ds.bi.name, &resource).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_duplicate() => ds
            .api
            .update_table(&ds.bi.name, name, &resource)
            .await
            .map(|_| ())
            .map_err(op(operation)),
        Err(e) => Err(op(operation)(e)),
    }
}

/// Rebuilds the typed view of each event table in `stale` (a column added, a kind widened, a
/// pin changed) or without one yet (a dataset from before typed views), and `all_events` when
/// any was rebuilt, `all_events_stale`, or it is missing. `tables` are the event tables the
/// load knows. A relation of a view's name that is a table is left as it is (warned), and that
/// event table gets no typed view. Run after the commit, from a fresh catalog.
pub(super) async fn rebuild_typed_views(
    ds: &Dataset,
    tables: &[String],
    snapshots: Option<&str>,
    stale: &HashSet<String>,
    all_events_stale: bool,
) -> Result<(), WarehouseError> {
    ensure_bi_dataset(ds).await?;
    let existing: HashMap<String, String> = ds
        .api
        .list_tables(&ds.bi.name)
        .await
        .map_err(op("rebuild typed views"))?
        .iter()
        .filter_map(|t| {
            Some((
                t["tableReference"]["tableId"].as_str()?.to_string(),
                t["type"].as_str().unwrap_or("TABLE").to_string(),
            ))
        })
        .collect();
    let due = |name: &str| match existing.get(name).map(String::as_str) {
        Some("VIEW") => stale.contains(name),
        Some(_) => false,
        None => true,
    };
    let all_events = existing.get(ALL_EVENTS_VIEW).map(String::as_str);
    let any_due = tables.iter().any(|t| due(t));
    // The typed profile views (`snapshots`: the snapshot table, once profiles were loaded):
    // due when it changed or one of them is missing, and with the typed `all_events`, whose
    // columns `events_with_profile` lists.
    let profiles_due = snapshots.is_some_and(|table| {
        stale.contains(table)
            || ProfileViews::DROP_ORDER
                .iter()
                .any(|v| !existing.contains_key(*v))
    });
    if !any_due && !all_events_stale && all_events.is_some() && !profiles_due {
        return Ok(());
    }
    let catalog = fresh_catalog(ds).await?;
    let relation = |t: &str| raw_relation(ds, t);
    let d = TypedDialect {
        ident,
        relation: &relation,
        cast,
        null,
    };
    let mut rebuilt = false;
    for table in catalog.event_tables() {
        match existing.get(&table.name).map(String::as_str) {
            Some("VIEW") | None => {}
            Some(_) => {
                tracing::warn!(table = %table.name, dataset = %ds.bi.name, "A table in the BI dataset is named like the typed view: the table is left, and gets no typed view.");
                continue;
            }
        }
        if !due(&table.name) {
            continue;
        }
        let resource = ds
            .api
            .get_table(&ds.dataset, &table.name)
            .await
            .map_err(op("rebuild typed views"))?;
        let columns: Vec<String> = resource["schema"]["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["name"].as_str().map(str::to_string))
            .collect();
        put_view(ds, &table.name, typed_table_select(table, &columns, &d)).await?;
        rebuilt = true;
    }
    let all_events_due = rebuilt || all_events_stale || all_events.is_none();
    let mut all_events_rebuilt = false;
    if all_events_due && matches!(all_events, Some("VIEW") | None) && !catalog.is_empty() {
        put_view(ds, ALL_EVENTS_VIEW, typed_all_events_select(&catalog, &d)).await?;
        all_events_rebuilt = true;
    } else if all_events_due && all_events.is_some_and(|t| t != "VIEW") {
        tracing::warn!(dataset = %ds.bi.name, "A table in the BI dataset is named all_events: it is left, and there is no typed all_events.");
    }
    if snapshots.is_none() || !(profiles_due || all_events_rebuilt) {
        return Ok(());
    }
    if ProfileViews::DROP_ORDER
        .iter()
        .any(|v| existing.get(*v).is_some_and(|t| t != "VIEW"))
    {
        tracing::warn!(dataset = %ds.bi.name, "A table in the BI dataset is named like a profile view: there are no typed profile views.");
        return Ok(());
    }
    let typed_all_events = all_events_rebuilt || all_events == Some("VIEW");
    let typed = |name: &str| bi_relation(ds, name);
    if let Some(profile_views) = typed_profile_views(&catalog, &d, &typed) {
        // In creation order: BigQuery checks a view's query against what it reads.
        for (view, body) in profile_views.views {
            if view == EVENTS_WITH_PROFILE_VIEW && !typed_all_events {
                continue;
            }
            put_view(ds, view, body).await?;
        }
    }
    Ok(())
}

/// Creates the BI dataset when missing (checked once per handle), in the raw dataset's
/// location, with its labels. A 403 is a missing permission (`bigquery.datasets.create`): said,
/// naming the dataset to create, and not retried.
async fn ensure_bi_dataset(ds: &Dataset) -> Result<(), WarehouseError> {
    use std::sync::atomic::Ordering;
    let bi = &ds.bi;
    if bi.exists.load(Ordering::Relaxed) {
        return Ok(());
    }
    match ds.api.get_dataset(&bi.name).await {
        Ok(_) => {
            bi.exists.store(true, Ordering::Relaxed);
            return Ok(());
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(op("create the BI dataset")(e)),
    }
    let created = match ds
        .api
        .insert_dataset(&bi.name, bi.location.as_deref(), &bi.labels)
        .await
    {
        Ok(_) => Ok(()),
        // Another loader created it meanwhile.
        Err(e) if e.is_duplicate() => Ok(()),
        Err(e @ ApiError::Http { status: 403, .. }) => Err(WarehouseError::Operation {
            operation: "create the BI dataset",
            retryable: false,
            source: format!(
                "cannot create dataset {project}:{name} for the typed views ({e}); create it in \
                 location {location} (infra/gcp does, or `bq mk --dataset --location={location} \
                 {project}:{name}`) and let this account edit it",
                project = ds.api.project,
                name = bi.name,
                location = bi.location.as_deref().unwrap_or("US"),
            )
            .into(),
        }),
        Err(e) => Err(op("create the BI dataset")(e)),
    };
    if created.is_ok() {
        bi.exists.store(true, Ordering::Relaxed);
    }
    created
}

/// The event tables with every column, kind and pin as committed (`_tapline_columns` is
/// written in the commit's transaction, so it holds every column that has rows).
async fn fresh_catalog(ds: &Dataset) -> Result<Catalog, WarehouseError> {
    let (mut catalog, _) = ds.read_catalog().await?;
    for row in ds.column_rows().await? {
        row.register(&mut catalog);
    }
    Ok(catalog)
}

/// Per pinned column, the non-NULL raw values the typed view reads as NULL: one query per
/// table, with the view's own cast.
pub(super) async fn column_misfits(ds: &Dataset) -> Result<Vec<ColumnMisfit>, WarehouseError> {
    let mut pinned: HashMap<String, Vec<ColumnRow>> = HashMap::new();
    for row in ds.column_rows().await? {
        if row.pinned.is_some_and(|k| k != ColumnKind::Text) && row.raw != crate::export::TS_COLUMN
        {
            pinned.entry(row.table.clone()).or_default().push(row);
        }
    }
    let mut tables: Vec<(String, Vec<ColumnRow>)> = pinned.into_iter().collect();
    tables.sort_by(|a, b| a.0.cmp(&b.0));
    let mut misfits = Vec::new();
    for (table, mut rows) in tables {
        rows.sort_by(|a, b| a.column.cmp(&b.column));
        let counts: Vec<String> = rows
            .iter()
            .map(|r| {
                let c = ident(&r.column);
                let kind = r.pinned.expect("pinned rows only");
                format!("COUNTIF({c} IS NOT NULL AND ({}) IS NULL)", cast(&c, kind))
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM {}",
            counts.join(", "),
            raw_relation(ds, &table)
        );
        let (_, answer) = ds
            .api
            .query(&ds.dataset, &sql, &[])
            .await
            .map_err(op("count misfits"))?;
        let values = answer.into_iter().next().unwrap_or_default();
        for (row, count) in rows.into_iter().zip(values) {
            let count = count.and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
            if count > 0 {
                misfits.push(ColumnMisfit {
                    table: row.table,
                    column: row.column,
                    kind: row.pinned.expect("pinned rows only"),
                    values: count,
                });
            }
        }
    }
    Ok(misfits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_guard_with_the_kinds_grammar() {
        assert_eq!(
            cast("`a`", ColumnKind::Integer),
            "CASE WHEN REGEXP_CONTAINS(`a`, '^-?(0|[1-9][0-9]*)$') THEN SAFE_CAST(`a` AS INT64) END"
        );
        assert_eq!(
            cast("`a`", ColumnKind::Boolean),
            "CASE WHEN `a` IN ('true', 'false') THEN `a` = 'true' END"
        );
        assert_eq!(cast("`a`", ColumnKind::Json), "SAFE.PARSE_JSON(`a`)");
        let ts = cast("`a`", ColumnKind::Timestamp);
        assert!(ts.contains("'^[$]D_-?[0-9]{1,12}$'"), "{ts}");
        assert!(
            ts.contains("(Z|[+-][0-9]{2}:[0-9]{2})$') THEN SAFE_CAST(`a` AS TIMESTAMP) END"),
            "{ts}"
        );
        assert_eq!(null(ColumnKind::Decimal), "CAST(NULL AS FLOAT64)");
    }
}
