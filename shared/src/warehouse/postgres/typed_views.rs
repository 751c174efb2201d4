//! The typed views on PostgreSQL (see [`crate::warehouse::typed_views`]): in a schema of their
//! own (`bi_schema`), named like the raw tables, with casts that give NULL where a value does not
//! fit. PostgreSQL 15 has no safe cast, so each cast is guarded in plain SQL (patterns and range
//! checks); only JSON, whose grammar no pattern checks, goes through a small PL/pgSQL function.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::{ident, op};
use crate::warehouse::WarehouseError;
use crate::warehouse::catalog::Catalog;
use crate::warehouse::column_kinds::ColumnKind;
use crate::warehouse::profile_views::{
    EVENTS_WITH_PROFILE_VIEW, ProfileViews, typed_profile_views,
};
use crate::warehouse::typed_views::{TypedDialect, typed_all_events_select, typed_table_select};

/// The typed `all_events`, in the BI schema.
pub(super) const TYPED_ALL_EVENTS_VIEW: &str = "all_events";

/// The BI schema's JSON cast: NULL for text `jsonb` does not read. Called unqualified, so it
/// is found through the search path the callers set ([`with_bi_search_path`]).
const SAFE_JSONB: &str = "_tapline_safe_jsonb";

/// Creates the BI schema and its JSON cast where missing, when a warehouse opens (under the
/// schema lock). An exception block costs a subtransaction per call: the cast is only called
/// for values that start like JSON. `program_limit_exceeded` is text nested past the server's
/// stack depth, which a hostile value could otherwise turn into an error for every reader.
pub(super) fn bi_schema_sql(bi_schema: &str) -> String {
    let schema = ident(bi_schema);
    let function = format!("{schema}.{SAFE_JSONB}(text)");
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         DO $do$ BEGIN
           IF to_regprocedure('{function_literal}') IS NULL THEN
             CREATE FUNCTION {schema}.{SAFE_JSONB}(value text) RETURNS jsonb
               LANGUAGE plpgsql IMMUTABLE STRICT AS $f$
               BEGIN RETURN value::jsonb; EXCEPTION WHEN data_exception OR program_limit_exceeded THEN RETURN NULL; END $f$;
           END IF;
         END $do$;",
        function_literal = function.replace('\'', "''"),
    )
}

/// `SET LOCAL search_path` to the BI schema alone: every relation the typed views read is
/// qualified, and the JSON cast is found there (a same-named function elsewhere cannot shadow
/// it). [`restore_search_path`] puts the raw schema back for the rest of the transaction.
pub(super) fn with_bi_search_path(bi_schema: &str) -> String {
    format!("SET LOCAL search_path TO {};\n", ident(bi_schema))
}

fn restore_search_path(schema: &str) -> String {
    format!("SET LOCAL search_path TO {};\n", ident(schema))
}

/// The largest and smallest BIGINT, for the 19-digit values a pattern cannot range-check.
const BIGINT_RANGE: &str = "-9223372036854775808 AND 9223372036854775807";

/// `$D_<epoch seconds>` within years 0001–9999 (as [`crate::warehouse::column_kinds`] reads it).
const EPOCH_RANGE: &str = "-62135596800 AND 253402300799";

/// An ISO-8601 date or date-time the timestamp kind accepts; the day of the month is checked
/// apart (a pattern cannot know February).
const ISO_TIMESTAMP: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?$";

/// `column` (quoted) read as `kind`; NULL where a value does not fit, never an error. Each
/// guard is a `CASE` around the cast: PostgreSQL evaluates `AND` operands in any order, but a
/// `CASE` branch only once its condition holds. The forms match [`ColumnKind`]'s inference, so
/// an inferred column never has a NULL its raw table lacks.
pub(super) fn cast(c: &str, kind: ColumnKind) -> String {
    match kind {
        // Canonical only (no `+`, no leading zero, no `-0`); 19 digits may pass BIGINT.
        ColumnKind::Integer => format!(
            "CASE WHEN {c} ~ '^(0|-?[1-9][0-9]{{0,17}})$' THEN {c}::bigint \
             WHEN {c} ~ '^-?[1-9][0-9]{{18}}$' THEN CASE WHEN {c}::numeric BETWEEN {BIGINT_RANGE} \
             THEN {c}::bigint END END"
        ),
        // JSON's number grammar. NUMERIC holds 131072 digits before the point and 16383 after:
        // 16000 characters, or 6000 and an exponent of four digits, stay inside both.
        ColumnKind::Decimal => format!(
            "CASE WHEN {c} ~ '^-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?0*[0-9]{{1,4}})?$' \
             AND length({c}) <= CASE WHEN {c} ~ '[eE]' THEN 6000 ELSE 16000 END \
             THEN {c}::numeric END"
        ),
        ColumnKind::Boolean => {
            format!("CASE {c} WHEN 'true' THEN true WHEN 'false' THEN false END")
        }
        // A value without an offset is UTC, whatever the reader's session zone; an offset is
        // taken off by arithmetic, as PostgreSQL reads offsets only up to 15:59. Once the
        // pattern holds, an offset is the only tail with a sign six characters from the end.
        ColumnKind::Timestamp => {
            let year = format!("substr({c}, 1, 4)::int");
            format!(
                "CASE WHEN {c} ~ '{ISO_TIMESTAMP}' THEN CASE WHEN substr({c}, 1, 4) <> '0000' \
                 AND substr({c}, 9, 2)::int <= CASE substr({c}, 6, 2) WHEN '02' THEN \
                 CASE WHEN {year} % 4 = 0 AND ({year} % 100 <> 0 OR {year} % 400 = 0) THEN 29 ELSE 28 END \
                 WHEN '04' THEN 30 WHEN '06' THEN 30 WHEN '09' THEN 30 WHEN '11' THEN 30 ELSE 31 END \
                 THEN (CASE WHEN length({c}) > 19 AND substr({c}, length({c}) - 5, 1) IN ('+', '-') \
                 THEN left({c}, -6)::timestamp - (right({c}, 6) || ':00')::interval \
                 ELSE rtrim({c}, 'Z')::timestamp END) AT TIME ZONE 'UTC' END \
                 WHEN {c} ~ '^\\$D_-?[0-9]{{1,12}}$' THEN CASE WHEN substr({c}, 4)::bigint \
                 BETWEEN {EPOCH_RANGE} THEN to_timestamp(substr({c}, 4)::bigint) END END"
            )
        }
        ColumnKind::Json => {
            format!("CASE WHEN left({c}, 1) IN ('[', '{{') THEN {SAFE_JSONB}({c}) END")
        }
        ColumnKind::Text => c.to_string(),
    }
}

/// A NULL of `kind`'s type, for an `all_events` column a table lacks.
fn null(kind: ColumnKind) -> String {
    format!("NULL::{}", sql_type(kind))
}

/// The SQL type a typed view gives a column of `kind`.
fn sql_type(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Integer => "bigint",
        ColumnKind::Decimal => "numeric",
        ColumnKind::Boolean => "boolean",
        ColumnKind::Timestamp => "timestamptz",
        ColumnKind::Json => "jsonb",
        ColumnKind::Text => "text",
    }
}

/// Rebuilds, in the open transaction, the typed view of every event table in `stale` (a column
/// added, a kind widened, a pin changed) or without one yet (a schema from before typed views),
/// and `all_events` when any of them was rebuilt or `all_events_stale`. A relation of a view's
/// name that is no view keeps its name, and that table gets no typed view. A view another view
/// depends on (a user's, over the typed one) cannot be dropped: it is left as it was, with a
/// warning, and still gives NULL rather than an error for what no longer fits. Run under the
/// schema's DDL lock.
pub(super) async fn rebuild_typed_views(
    client: &Client,
    schema: &str,
    bi_schema: &str,
    catalog: &Catalog,
    stale: &HashSet<String>,
    all_events_stale: bool,
) -> Result<(), WarehouseError> {
    let existing = bi_relations(client, bi_schema).await?;
    let mut rebuild: Vec<&str> = Vec::new();
    for table in catalog.event_tables() {
        match existing.get(&table.name).map(String::as_str) {
            Some("v") if !stale.contains(&table.name) => {}
            Some("v") | None => rebuild.push(&table.name),
            Some(_) => {
                tracing::warn!(table = %table.name, schema = %bi_schema, "A relation named like the typed view is not a view: the table gets no typed view.");
            }
        }
    }
    rebuild.sort_unstable();
    // The typed profile views, once profile snapshots exist: due when the snapshot table
    // changed or one of them is missing; `events_with_profile` also whenever the typed
    // `all_events` it reads is replaced (PostgreSQL binds it to those columns).
    let profile_views_blocked = ProfileViews::DROP_ORDER
        .iter()
        .any(|v| existing.get(*v).is_some_and(|kind| kind != "v"));
    let profiles_due = catalog.profile_snapshots().is_some_and(|snapshots| {
        stale.contains(&snapshots.name)
            || ProfileViews::DROP_ORDER
                .iter()
                .any(|v| !existing.contains_key(*v))
    });
    let all_events = existing.get(TYPED_ALL_EVENTS_VIEW).map(String::as_str);
    let all_events_due = !rebuild.is_empty() || all_events_stale || all_events.is_none();
    let all_events_rebuilt = match all_events {
        Some("v") | None => all_events_due && !catalog.is_empty(),
        Some(_) => {
            if all_events_due {
                tracing::warn!(schema = %bi_schema, "A relation named all_events in the BI schema is not a view: there is no typed all_events.");
            }
            false
        }
    };
    let profiles_rebuilt = catalog.profile_snapshots().is_some()
        && (profiles_due || all_events_rebuilt)
        && !profile_views_blocked;
    if profile_views_blocked && (profiles_due || all_events_rebuilt) {
        tracing::warn!(schema = %bi_schema, "A relation named like a profile view in the BI schema is not a view: there are no typed profile views.");
    }
    if rebuild.is_empty() && !all_events_rebuilt && !profiles_rebuilt {
        return Ok(());
    }
    let columns = table_columns(client, schema, &rebuild).await?;
    let raw = |t: &str| format!("{}.{}", ident(schema), ident(t));
    let d = TypedDialect {
        ident,
        relation: &raw,
        cast,
        null,
    };
    let mut views: Vec<(String, String)> = Vec::new();
    for name in rebuild {
        let table = catalog
            .event_tables()
            .find(|t| t.name == name)
            .expect("listed from the catalog");
        let Some(columns) = columns.get(name) else {
            continue;
        };
        views.push((name.to_string(), typed_table_select(table, columns, &d)));
    }
    if all_events_rebuilt {
        views.push((
            TYPED_ALL_EVENTS_VIEW.to_string(),
            typed_all_events_select(catalog, &d),
        ));
    }
    client
        .batch_execute(&with_bi_search_path(bi_schema))
        .await
        .map_err(op("rebuild typed views"))?;
    // `events_with_profile` reads the typed `all_events` and `profiles_history`: dropped
    // first (its grants kept), so neither is held by it, and created again last.
    let bi = |name: &str| format!("{}.{}", ident(bi_schema), ident(name));
    let mut reader_grants = String::new();
    if profiles_rebuilt {
        reader_grants = view_grants(client, &bi(EVENTS_WITH_PROFILE_VIEW)).await?;
        client
            .batch_execute(&format!(
                "DROP VIEW IF EXISTS {}",
                bi(EVENTS_WITH_PROFILE_VIEW)
            ))
            .await
            .map_err(op("rebuild typed views"))?;
        if let Some(profile_views) = typed_profile_views(catalog, &d, &bi) {
            let typed_all_events = all_events_rebuilt || all_events == Some("v");
            views.extend(
                profile_views
                    .views
                    .into_iter()
                    .filter(|(view, _)| *view != EVENTS_WITH_PROFILE_VIEW || typed_all_events)
                    .map(|(view, body)| (view.to_string(), body)),
            );
        }
    }
    for (name, body) in &views {
        replace_view(client, bi_schema, name, body).await?;
    }
    if !reader_grants.is_empty() && views.iter().any(|(v, _)| v == EVENTS_WITH_PROFILE_VIEW) {
        client
            .batch_execute(&reader_grants)
            .await
            .map_err(op("rebuild typed views"))?;
    }
    client
        .batch_execute(&restore_search_path(schema))
        .await
        .map_err(op("rebuild typed views"))
}

/// Drops and creates one view (its columns' types may change, which `CREATE OR REPLACE` refuses)
/// behind a savepoint, so a view another view depends on is kept rather than failing the load.
/// The grants on the old view are given again to the new one: a read-only BI role keeps its
/// access across rebuilds.
async fn replace_view(
    client: &Client,
    bi_schema: &str,
    name: &str,
    body: &str,
) -> Result<(), WarehouseError> {
    let view = format!("{}.{}", ident(bi_schema), ident(name));
    let grants = view_grants(client, &view).await?;
    let script = format!(
        "SAVEPOINT typed_view; DROP VIEW IF EXISTS {view}; CREATE VIEW {view} AS\n{body};\n\
         {grants}RELEASE SAVEPOINT typed_view;"
    );
    match client.batch_execute(&script).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::DEPENDENT_OBJECTS_STILL_EXIST) => {
            client
                .batch_execute("ROLLBACK TO SAVEPOINT typed_view; RELEASE SAVEPOINT typed_view")
                .await
                .map_err(op("rebuild typed views"))?;
            tracing::warn!(schema = %bi_schema, view = %name, "Other views depend on the typed view: it is kept as it was; drop them to have it rebuilt at the next change.");
            Ok(())
        }
        Err(e) => Err(op("rebuild typed views")(e)),
    }
}

/// `GRANT` statements giving `view` (quoted, qualified) the privileges its current version
/// grants to roles other than its owner; empty when it does not exist yet.
async fn view_grants(client: &Client, view: &str) -> Result<String, WarehouseError> {
    let rows = client
        .query(
            "SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END,
                    a.is_grantable
             FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.oid = to_regclass($1) AND a.grantee <> c.relowner",
            &[&view],
        )
        .await
        .map_err(op("read typed view grants"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let privilege: String = r.get(0);
            let grantee = r
                .get::<_, Option<String>>(1)
                .map_or_else(|| "PUBLIC".to_string(), |g| ident(&g));
            let option = if r.get::<_, bool>(2) {
                " WITH GRANT OPTION"
            } else {
                ""
            };
            // Privilege names come from PostgreSQL's own list (SELECT, INSERT, …).
            format!("GRANT {privilege} ON {view} TO {grantee}{option};\n")
        })
        .collect())
}

/// Every relation of the BI schema: name → `relkind` (`v` for a view).
async fn bi_relations(
    client: &Client,
    bi_schema: &str,
) -> Result<HashMap<String, String>, WarehouseError> {
    Ok(client
        .query(
            "SELECT c.relname::text, c.relkind::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
            &[&bi_schema],
        )
        .await
        .map_err(op("read typed views"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Whether some event table, or `all_events`, has no relation of its name in the BI schema yet.
pub(super) async fn typed_views_missing(
    client: &Client,
    bi_schema: &str,
    catalog: &Catalog,
) -> Result<bool, WarehouseError> {
    if catalog.is_empty() {
        return Ok(false);
    }
    let existing = bi_relations(client, bi_schema).await?;
    let profile_view_missing = catalog.profile_snapshots().is_some()
        && ProfileViews::DROP_ORDER
            .iter()
            .any(|v| !existing.contains_key(*v));
    Ok(profile_view_missing
        || !existing.contains_key(TYPED_ALL_EVENTS_VIEW)
        || catalog
            .event_tables()
            .any(|t| !existing.contains_key(&t.name)))
}

/// The columns of raw tables `tables`, in table order.
async fn table_columns(
    client: &Client,
    schema: &str,
    tables: &[&str],
) -> Result<HashMap<String, Vec<String>>, WarehouseError> {
    let mut columns: HashMap<String, Vec<String>> = HashMap::new();
    if tables.is_empty() {
        return Ok(columns);
    }
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = ANY($2) AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.relname, a.attnum",
            &[&schema, &tables],
        )
        .await
        .map_err(op("read typed views"))?;
    for row in rows {
        columns.entry(row.get(0)).or_default().push(row.get(1));
    }
    Ok(columns)
}

/// The statement that counts, per column of `table` in `pins` (column name, pinned kind), the
/// non-NULL raw values its cast makes NULL: one scan of the table. Run with the BI schema first
/// on the search path (the JSON cast lives there).
pub(super) fn misfits_select(schema: &str, table: &str, pins: &[(String, ColumnKind)]) -> String {
    let counts: Vec<String> = pins
        .iter()
        .map(|(column, kind)| {
            let c = ident(column);
            format!(
                "count(*) FILTER (WHERE {c} IS NOT NULL AND ({}) IS NULL)",
                cast(&c, *kind)
            )
        })
        .collect();
    format!(
        "SELECT {} FROM {}.{}",
        counts.join(", "),
        ident(schema),
        ident(table)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cast_has_the_type_its_kind_promises() {
        for (kind, ty) in [
            (ColumnKind::Integer, "bigint"),
            (ColumnKind::Decimal, "numeric"),
            (ColumnKind::Boolean, "boolean"),
            (ColumnKind::Timestamp, "timestamptz"),
            (ColumnKind::Json, "jsonb"),
            (ColumnKind::Text, "text"),
        ] {
            assert_eq!(null(kind), format!("NULL::{ty}"));
        }
        assert_eq!(cast("\"a\"", ColumnKind::Text), "\"a\"");
        assert!(cast("\"a\"", ColumnKind::Json).contains("_tapline_safe_jsonb(\"a\")"));
        assert!(
            bi_schema_sql("o'k").contains("to_regprocedure('\"o''k\"._tapline_safe_jsonb(text)')")
        );
    }
}
