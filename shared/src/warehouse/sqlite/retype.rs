//! `tapline retype` on SQLite: a file from before column kinds has every old column stored as
//! text. Reading each table once, every column's kind is inferred again from the values it holds
//! (the same [`classify`] a load uses), stored, and the typed views rebuilt, in one transaction.

use std::collections::HashSet;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::load::read_catalog;
use super::typed_views::rebuild_typed_views;
use super::{SqliteWarehouse, ident, op};
use crate::export::TS_COLUMN;
use crate::warehouse::WarehouseError;
use crate::warehouse::column_kinds::{ColumnKind, classify, widen_known};

/// A column whose stored kind [`SqliteWarehouse::retype`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindChange {
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// The kind stored before (`None`: none).
    pub was: Option<ColumnKind>,
    /// The kind its values fit (`None`: it holds only NULLs).
    pub now: Option<ColumnKind>,
}

impl SqliteWarehouse {
    /// Sets every column's stored kind to the one all its values fit, reading each table once
    /// (rows streamed: memory does not grow with the table), and rebuilds the typed views of the
    /// tables that changed; all in one `BEGIN IMMEDIATE` transaction, so a load waits for it
    /// (up to the busy timeout) and never sees half of it. A full read is what lets a kind
    /// narrow here, which a load never does: the `text` a file from before kinds gave its old
    /// columns hid nothing, and neither does the kind read off every value. `ts` stays a
    /// timestamp. Returns the changes, sorted by table and column.
    pub async fn retype(&self) -> Result<Vec<KindChange>, WarehouseError> {
        self.with_conn(|conn| {
            conn.execute_batch("BEGIN IMMEDIATE")
                .map_err(op("retype"))?;
            match retype_in(conn) {
                Ok(changes) => {
                    conn.execute_batch("COMMIT").map_err(op("retype"))?;
                    Ok(changes)
                }
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
        .await
    }
}

fn retype_in(conn: &Connection) -> Result<Vec<KindChange>, WarehouseError> {
    let mut catalog = read_catalog(conn)?;
    let stored: Vec<(String, String, String, Option<String>)> = conn
        .prepare(
            "SELECT table_name, raw_name, column_name, kind FROM _tapline_columns \
             ORDER BY table_name, column_name",
        )
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect()
        })
        .map_err(op("retype"))?;
    let mut changes = Vec::new();
    let mut start = 0;
    while start < stored.len() {
        let table = &stored[start].0;
        let end = start + stored[start..].iter().take_while(|c| &c.0 == table).count();
        let columns = &stored[start..end];
        let kinds = infer_kinds(conn, table, columns)?;
        for ((_, raw, column, was), now) in columns.iter().zip(kinds) {
            let was = was.as_deref().map(ColumnKind::parse);
            if was == now {
                continue;
            }
            conn.execute(
                "UPDATE _tapline_columns SET kind = ?3 WHERE table_name = ?1 AND raw_name = ?2",
                rusqlite::params![table, raw, now.map(ColumnKind::as_str)],
            )
            .map_err(op("retype"))?;
            // Only NULLs: no kind, which the views read as text, as they did.
            catalog.set_kind(table, raw, now.unwrap_or(ColumnKind::Text));
            changes.push(KindChange {
                table: table.clone(),
                column: column.clone(),
                was,
                now,
            });
        }
        start = end;
    }
    let stale: HashSet<String> = changes.iter().map(|c| c.table.clone()).collect();
    rebuild_typed_views(conn, &catalog, &stale, !stale.is_empty())?;
    Ok(changes)
}

/// The kind each of `columns` (of one table, as `_tapline_columns` lists them) fits, from one
/// read of the table; a column stops being classified once it is text.
fn infer_kinds(
    conn: &Connection,
    table: &str,
    columns: &[(String, String, String, Option<String>)],
) -> Result<Vec<Option<ColumnKind>>, WarehouseError> {
    let mut kinds: Vec<Option<ColumnKind>> = columns
        .iter()
        .map(|(_, raw, _, _)| (raw == TS_COLUMN).then_some(ColumnKind::Timestamp))
        .collect();
    let mut open: Vec<usize> = (0..columns.len())
        .filter(|i| columns[*i].1 != TS_COLUMN)
        .collect();
    if open.is_empty() {
        return Ok(kinds);
    }
    let list: Vec<String> = open.iter().map(|i| ident(&columns[*i].2)).collect();
    let mut stmt = conn
        .prepare(&format!("SELECT {} FROM {}", list.join(", "), ident(table)))
        .map_err(op("retype"))?;
    let positions = open.clone();
    let mut rows = stmt.query([]).map_err(op("retype"))?;
    while let Some(row) = rows.next().map_err(op("retype"))? {
        let mut failed = None;
        open.retain(|&i| {
            let at = positions.iter().position(|p| *p == i).expect("listed");
            let seen = match row.get_ref(at) {
                Ok(ValueRef::Null) => None,
                Ok(ValueRef::Text(text)) => Some(
                    std::str::from_utf8(text)
                        .map(classify)
                        .unwrap_or(ColumnKind::Text),
                ),
                // Raw columns are TEXT: any other storage class is no value of a kind.
                Ok(_) => Some(ColumnKind::Text),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            };
            kinds[i] = widen_known(kinds[i], seen);
            kinds[i] != Some(ColumnKind::Text)
        });
        if let Some(e) = failed {
            return Err(op("retype")(e));
        }
        if open.is_empty() {
            break;
        }
    }
    Ok(kinds)
}
