//! The DDL a PostgreSQL warehouse runs: the `_tapline_*` tables (`schema.sql`, when a warehouse
//! opens), and an event table created or widened as a load's plan says, recorded in
//! `_tapline_tables` and `_tapline_columns` in the load's transaction.

use tokio_postgres::Client;

use super::{ident, op};
use crate::export::{EVENT_NAME_COLUMN, TS_COLUMN};
use crate::warehouse::catalog::Plan;
use crate::warehouse::{
    COL_LOAD_ID, COL_LOADED_AT, COL_SOURCE_LINE, COL_SOURCE_URI, WarehouseError,
};

/// The `_tapline_*` tables, each created where missing.
pub(super) const SCHEMA_SQL: &str = include_str!("schema.sql");

/// Creates the planned event table or adds its planned columns, and records them. Run under the
/// schema's DDL lock, inside the load's transaction.
pub(super) async fn apply_plan(
    client: &Client,
    plan: &Plan,
    event: &str,
    load_id: i64,
    loaded_at: &str,
) -> Result<(), WarehouseError> {
    // DDL carries identifiers only (quoted by `ident`, which backslashes cannot escape);
    // every value, raw names above all, is a bound parameter, so no server setting such as
    // `standard_conforming_strings` changes how it is read.
    let mut ddl = String::new();
    if plan.create {
        let mut defs: Vec<String> = plan
            .added
            .iter()
            .map(|(raw, column)| match raw.as_str() {
                TS_COLUMN => format!("{} TIMESTAMPTZ NOT NULL", ident(column)),
                EVENT_NAME_COLUMN => format!("{} TEXT NOT NULL", ident(column)),
                _ => format!("{} TEXT", ident(column)),
            })
            .collect();
        defs.push(format!("{} TEXT NOT NULL", ident(COL_SOURCE_URI)));
        defs.push(format!("{} BIGINT NOT NULL", ident(COL_SOURCE_LINE)));
        defs.push(format!("{} BIGINT NOT NULL", ident(COL_LOAD_ID)));
        defs.push(format!("{} TIMESTAMPTZ NOT NULL", ident(COL_LOADED_AT)));
        // BRIN: load ids only grow, so a tiny range index finds a load's rows for
        // replacement without slowing COPY the way a B-tree would. Unnamed: PostgreSQL
        // picks a free name (`{table}__load_id_idx`, numbered on a clash), where a name of
        // our own would truncate to the table's own name at 63 bytes.
        ddl.push_str(&format!(
            "CREATE TABLE {t} ({defs}); CREATE INDEX ON {t} USING brin ({load});",
            t = ident(&plan.table),
            defs = defs.join(", "),
            load = ident(COL_LOAD_ID),
        ));
    } else {
        for (_, column) in &plan.added {
            ddl.push_str(&format!(
                "ALTER TABLE {} ADD COLUMN {} TEXT;",
                ident(&plan.table),
                ident(column)
            ));
        }
    }
    if !ddl.is_empty() {
        client
            .batch_execute(&ddl)
            .await
            .map_err(op("create table"))?;
    }
    if plan.create {
        client
            .execute(
                "INSERT INTO _tapline_tables (table_name, event_name, created_by_load, created_at)
                 VALUES ($1, $2, $3, $4::text::timestamptz)",
                &[&plan.table, &event, &load_id, &loaded_at],
            )
            .await
            .map_err(op("record table"))?;
    }
    if !plan.added.is_empty() {
        let (raws, columns): (Vec<&str>, Vec<&str>) = plan
            .added
            .iter()
            .map(|(raw, column)| (raw.as_str(), column.as_str()))
            .unzip();
        client
            .execute(
                "INSERT INTO _tapline_columns (table_name, column_name, raw_name, added_by_load, added_at)
                 SELECT $1, c, r, $4, $5::text::timestamptz FROM unnest($2::text[], $3::text[]) AS u (c, r)",
                &[&plan.table, &columns, &raws, &load_id, &loaded_at],
            )
            .await
            .map_err(op("record column"))?;
    }
    Ok(())
}
