//! The commit script: one multi-statement transaction (a query job) that copies a load's staged
//! rows into the event tables, replaces an older version's rows, records rejects, catalog (with
//! column kinds and pins) and ledger row, and commits them together; run under job ids derived
//! from the version so at most one commit of a version succeeds.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::api::{ApiError, Param};
use super::dataset::{Dataset, state_insert_sql, state_written_us};
use super::{ident, op};
use crate::warehouse::column_kinds::ColumnKind;
use crate::warehouse::{COL_LOAD_ID, COL_SOURCE_URI, WarehouseError};

/// Commit jobs tried per version before giving up for now (each failed one is burned).
const MAX_COMMIT_JOBS: u32 = 50;
/// Catalog rows (tables, columns, kinds, pins) one statement writes. On demand, BigQuery bills
/// every statement of a script at least 10 MB per table it references, however little it
/// reads (tests/README.md, "BigQuery commit statements"), so the catalog mirror is written by
/// one statement per kind of row, not one per column; 500 keeps a statement's `UNION ALL`
/// within what SQLite (the test double) accepts in one compound SELECT.
const CATALOG_BATCH: usize = 500;
/// Label on commit jobs saying what they committed.
const OUTCOME_LABEL: &str = "tapline_outcome";

/// A commit script being written: its statements and the parameters they bind. The ledger
/// row's values are the fixed parameters `@load_id`, `@uri`, `@version`, `@status`, `@bytes`,
/// `@rows`, `@rejected`, `@error`, `@attempts`, `@started` and `@now` (see [`Self::finish`]).
pub(super) struct CommitScript {
    statements: Vec<String>,
    params: Vec<(String, Param)>,
    catalog: CatalogRows,
    /// The parameter already bound to each text of the catalog statements, which name the
    /// same tables, raw names and kinds many times.
    texts: HashMap<String, String>,
}

/// The catalog rows a load records, written together by [`CommitScript::finish`].
#[derive(Default)]
struct CatalogRows {
    /// (table, rows loaded into it).
    load_tables: Vec<(String, u64)>,
    /// (table, event).
    tables: Vec<(String, String)>,
    /// (table, column, raw name), each (table, column) once.
    columns: Vec<(String, String, String)>,
    /// (table, kind, raw name): a stored kind to widen.
    kinds: Vec<(String, ColumnKind, String)>,
    /// (table, raw name, pin; `None` removes it).
    pins: Vec<(String, String, Option<ColumnKind>)>,
}

impl CommitScript {
    /// A script that opens its transaction.
    pub(super) fn begin() -> Self {
        Self {
            statements: vec!["BEGIN TRANSACTION".to_string()],
            params: Vec::new(),
            catalog: CatalogRows::default(),
            texts: HashMap::new(),
        }
    }

    /// Adds a parameter; returns its `@name` for the SQL text.
    fn bind(&mut self, value: Param) -> String {
        let name = format!("p{}", self.params.len());
        self.params.push((name.clone(), value));
        format!("@{name}")
    }

    /// [`Self::bind`] for a text, reusing the parameter of an equal text bound before.
    fn bind_text(&mut self, text: &str) -> String {
        if let Some(name) = self.texts.get(text) {
            return name.clone();
        }
        let name = self.bind(Param::Str(text.to_string()));
        self.texts.insert(text.to_string(), name.clone());
        name
    }

    /// Copies `rows` staged rows (`fields`, the staging table's schema) from `staging` into
    /// `table`, the table of `event`, and records them: the load's rows per table, and the
    /// catalog mirror of the table and `columns` (column name, raw name).
    pub(super) fn copy_staged_rows(
        &mut self,
        staging: &str,
        table: &str,
        event: &str,
        fields: &[Value],
        rows: u64,
        columns: &[(String, String)],
    ) {
        let list: Vec<String> = fields
            .iter()
            .map(|f| ident(f["name"].as_str().unwrap_or("")))
            .collect();
        self.statements.push(format!(
            "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s}",
            t = ident(table),
            cols = list.join(", "),
            s = ident(staging),
        ));
        let catalog = &mut self.catalog;
        catalog.load_tables.push((table.to_string(), rows));
        catalog.tables.push((table.to_string(), event.to_string()));
        for (column, raw) in columns {
            let known = catalog
                .columns
                .iter()
                .any(|(t, c, _)| t == table && c == column);
            if !known {
                catalog
                    .columns
                    .push((table.to_string(), column.clone(), raw.clone()));
            }
        }
    }

    /// Widens the stored kinds of raw columns `raws` of `table` with `kind` (what this load saw,
    /// widened with the kind read at its start). The widening runs on the stored value, so a
    /// loader that widened the same column meanwhile is never narrowed back (see
    /// [`widen`](crate::warehouse::column_kinds::widen)); a row from before kinds (NULL) is text.
    pub(super) fn record_kinds(&mut self, table: &str, kind: ColumnKind, raws: &[String]) {
        self.catalog.kinds.extend(
            raws.iter()
                .map(|raw| (table.to_string(), kind, raw.clone())),
        );
    }

    /// Stores the pin of raw column `raw` of `table` (`None` removes it).
    pub(super) fn record_pin(&mut self, table: &str, raw: &str, pinned: Option<ColumnKind>) {
        self.catalog
            .pins
            .push((table.to_string(), raw.to_string(), pinned));
    }

    /// The catalog rows recorded so far, as few statements as [`CATALOG_BATCH`] allows: the
    /// load's rows per table, then the tables and columns this load may add (each inserted
    /// only where no row names it yet, checked inside the transaction, so loaders never
    /// duplicate one), then the widened kinds and the pins (on the rows just inserted too).
    fn write_catalog(&mut self) {
        let catalog = std::mem::take(&mut self.catalog);
        for chunk in catalog.load_tables.chunks(CATALOG_BATCH) {
            let values: Vec<String> = chunk
                .iter()
                .map(|(table, rows)| {
                    let t = self.bind_text(table);
                    format!("(@load_id, {t}, {rows})")
                })
                .collect();
            self.statements.push(format!(
                "INSERT INTO _tapline_load_tables (load_id, table_name, rows) VALUES {}",
                values.join(", ")
            ));
        }
        for chunk in catalog.tables.chunks(CATALOG_BATCH) {
            let rows: Vec<[&str; 2]> = chunk
                .iter()
                .map(|(t, e)| [t.as_str(), e.as_str()])
                .collect();
            let new = self.derived_table(&["t", "e"], rows);
            self.statements.push(format!(
                "INSERT INTO _tapline_tables (table_name, event_name, created_by_load, created_at) \
                 SELECT n.t, n.e, @load_id, @now FROM {new} AS n WHERE NOT EXISTS \
                 (SELECT 1 FROM _tapline_tables WHERE table_name = n.t)"
            ));
        }
        for chunk in catalog.columns.chunks(CATALOG_BATCH) {
            let rows: Vec<[&str; 3]> = chunk
                .iter()
                .map(|(t, c, r)| [t.as_str(), c.as_str(), r.as_str()])
                .collect();
            let new = self.derived_table(&["t", "c", "r"], rows);
            self.statements.push(format!(
                "INSERT INTO _tapline_columns (table_name, column_name, raw_name, added_by_load, added_at, kind) \
                 SELECT n.t, n.c, n.r, @load_id, @now, '' FROM {new} AS n WHERE NOT EXISTS \
                 (SELECT 1 FROM _tapline_columns WHERE table_name = n.t AND column_name = n.c)"
            ));
        }
        for chunk in catalog.kinds.chunks(CATALOG_BATCH) {
            // One WHEN per run of raws sharing a table and kind (the caller groups them).
            let mut whens = Vec::new();
            for group in chunk.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
                let (table, kind, _) = &group[0];
                let t = self.bind_text(table);
                let k = self.bind_text(kind.as_str());
                let raws: Vec<String> = group
                    .iter()
                    .map(|(_, _, raw)| self.bind_text(raw))
                    .collect();
                whens.push(format!(
                    "WHEN table_name = {t} AND raw_name IN ({raws}) THEN CASE \
                     WHEN kind IS NULL THEN 'text' \
                     WHEN kind = '' OR kind = {k} THEN {k} \
                     WHEN kind IN ('integer', 'decimal') AND {k} IN ('integer', 'decimal') THEN 'decimal' \
                     ELSE 'text' END",
                    raws = raws.join(", ")
                ));
            }
            let rows: Vec<(&str, &str)> = chunk
                .iter()
                .map(|(t, _, r)| (t.as_str(), r.as_str()))
                .collect();
            let filter = self.rows_filter(&rows);
            self.statements.push(format!(
                "UPDATE _tapline_columns SET kind = CASE {} ELSE kind END WHERE {filter}",
                whens.join(" ")
            ));
        }
        for chunk in catalog.pins.chunks(CATALOG_BATCH) {
            let mut whens = Vec::new();
            for (table, raw, pinned) in chunk {
                let t = self.bind_text(table);
                let r = self.bind_text(raw);
                let p = match pinned {
                    Some(kind) => self.bind_text(kind.as_str()),
                    None => self.bind(Param::NullStr),
                };
                whens.push(format!("WHEN table_name = {t} AND raw_name = {r} THEN {p}"));
            }
            let rows: Vec<(&str, &str)> = chunk
                .iter()
                .map(|(t, r, _)| (t.as_str(), r.as_str()))
                .collect();
            let filter = self.rows_filter(&rows);
            self.statements.push(format!(
                "UPDATE _tapline_columns SET pinned = CASE {} ELSE pinned END WHERE {filter}",
                whens.join(" ")
            ));
        }
    }

    /// `(SELECT @a AS x, @b AS y UNION ALL SELECT @c, @d …)`: `rows` as a table with columns
    /// `names`. Bound scalars, not an array of structs: the test double runs SQL in SQLite,
    /// which has neither (bqemulator and BigQuery run both forms).
    fn derived_table<const N: usize>(&mut self, names: &[&str; N], rows: Vec<[&str; N]>) -> String {
        let selects: Vec<String> = rows
            .into_iter()
            .enumerate()
            .map(|(i, row)| {
                let cells: Vec<String> = row
                    .into_iter()
                    .zip(names)
                    .map(|(value, name)| {
                        let p = self.bind_text(value);
                        if i == 0 { format!("{p} AS {name}") } else { p }
                    })
                    .collect();
                format!("SELECT {}", cells.join(", "))
            })
            .collect();
        format!("({})", selects.join(" UNION ALL "))
    }

    /// A WHERE clause over `_tapline_columns` matching at least the rows (table, raw name)
    /// given, flat (tables and raw names each in one `IN`) so that no expression nests deeper
    /// with the row count; the statement's CASE leaves any other row it matches as it was.
    fn rows_filter(&mut self, rows: &[(&str, &str)]) -> String {
        let mut tables: Vec<&str> = rows.iter().map(|(t, _)| *t).collect();
        tables.sort_unstable();
        tables.dedup();
        let mut raws: Vec<&str> = rows.iter().map(|(_, r)| *r).collect();
        raws.sort_unstable();
        raws.dedup();
        let tables: Vec<String> = tables.into_iter().map(|t| self.bind_text(t)).collect();
        let raws: Vec<String> = raws.into_iter().map(|r| self.bind_text(r)).collect();
        format!(
            "table_name IN ({}) AND raw_name IN ({})",
            tables.join(", "),
            raws.join(", ")
        )
    }

    /// Deletes an older version's rows of this uri from `table`.
    pub(super) fn delete_older_rows(&mut self, table: &str) {
        self.statements.push(format!(
            "DELETE FROM {} WHERE {} = @uri AND {} <> @load_id",
            ident(table),
            ident(COL_SOURCE_URI),
            ident(COL_LOAD_ID)
        ));
    }

    /// Marks the older loaded versions of this uri `replaced`.
    pub(super) fn mark_older_replaced(&mut self) {
        self.statements.push(
            "UPDATE _tapline_loads SET status = 'replaced' \
             WHERE uri = @uri AND status = 'loaded' AND load_id <> @load_id"
                .to_string(),
        );
    }

    /// Copies the rejects staged in `staging` into `_tapline_rejects`.
    pub(super) fn copy_rejects(&mut self, staging: &str) {
        self.statements.push(format!(
            "INSERT INTO _tapline_rejects (load_id, uri, line, column_name, reason, raw_line) \
             SELECT load_id, uri, line, column_name, reason, raw_line FROM {}",
            ident(staging)
        ));
    }

    /// Appends a state value (a checkpoint) to `_tapline_state_log` in the transaction.
    pub(super) fn write_state(&mut self, key: &str, value: &str) {
        let k = self.bind(Param::Str(key.to_string()));
        let v = self.bind(Param::Str(value.to_string()));
        let w = self.bind(Param::Int(state_written_us()));
        self.statements.push(state_insert_sql(&k, &v, "@now", &w));
    }

    /// Writes the ledger row from `ledger` (the fixed parameters, which go first) and commits.
    pub(super) fn finish(mut self, ledger: [(&'static str, Param); 12]) -> Self {
        self.write_catalog();
        self.statements.push(format!(
            "INSERT INTO _tapline_loads ({}) VALUES (@load_id, @uri, @version, \
             @status, @bytes, @rows, @rejected, @error, @attempts, @started, @now, @created)",
            super::ledger_columns()
        ));
        self.statements.push("COMMIT TRANSACTION".to_string());
        let extra = std::mem::take(&mut self.params);
        self.params = ledger
            .into_iter()
            .map(|(n, p)| (n.to_string(), p))
            .chain(extra)
            .collect();
        self
    }

    /// The script's text.
    fn text(&self) -> String {
        self.statements.join(";\n") + ";"
    }

    /// Runs the commit script under the version's next free commit job id. `Ok(false)`: a
    /// commit of this version already succeeded under another loader.
    pub(super) async fn run(
        &self,
        ds: &Dataset,
        key: &str,
        outcome: &str,
        quarantine_retry: bool,
    ) -> Result<bool, WarehouseError> {
        let script = self.text();
        let params: Vec<(&str, Param)> = self
            .params
            .iter()
            .map(|(n, p)| (n.as_str(), p.clone()))
            .collect();
        let mut last_error = None;
        for n in 1..=MAX_COMMIT_JOBS {
            let job_id = format!("tapline_{key}_commit_{n}");
            let labels = json!({ OUTCOME_LABEL: outcome });
            let (job, ours) = match ds
                .api
                .insert_query_job(&job_id, &ds.dataset, &script, &params, labels)
                .await
            {
                Ok(job) => (job, true),
                Err(e) if e.is_duplicate() => {
                    (ds.api.get_job(&job_id).await.map_err(op("commit"))?, false)
                }
                Err(e) => return Err(op("commit")(e)),
            };
            let status = ds.api.wait_for_job(job).await.map_err(op("commit"))?;
            match status.error {
                None if ours => return Ok(true),
                None => {
                    let theirs = status.labels.get(OUTCOME_LABEL).and_then(Value::as_str);
                    // A quarantine may be retried; anything else committed is final.
                    if theirs == Some("quarantined") && quarantine_retry {
                        continue;
                    }
                    return Ok(false);
                }
                Some(e) if ours && !e.is_retryable() => return Err(op("commit")(e)),
                Some(e) => last_error = Some(e),
            }
        }
        Err(op("commit")(last_error.unwrap_or(ApiError::Protocol {
            operation: "commit",
            detail: format!("{MAX_COMMIT_JOBS} commit jobs failed"),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> [(&'static str, Param); 12] {
        [
            ("load_id", Param::Int(1)),
            ("uri", Param::Str("file:///a.csv.gz".into())),
            ("version", Param::Str("v1".into())),
            ("status", Param::Str("loaded".into())),
            ("bytes", Param::Int(1)),
            ("rows", Param::Int(1)),
            ("rejected", Param::Int(0)),
            ("error", Param::NullStr),
            ("attempts", Param::Int(1)),
            ("started", Param::Timestamp("2026-12-08T00:00:00Z".into())),
            ("now", Param::Timestamp("2026-12-08T00:00:01Z".into())),
            ("created", Param::NullTimestamp),
        ]
    }

    /// The commit of `tables` new tables of `columns` new columns each, every column's kind
    /// widened (half integer, half text) and pinned.
    fn first_load(tables: usize, columns: usize) -> CommitScript {
        let mut script = CommitScript::begin();
        for t in 0..tables {
            let table = format!("events_e{t}");
            let cols: Vec<(String, String)> = (0..columns)
                .map(|i| (format!("c{i}"), format!("C{i}")))
                .collect();
            let fields: Vec<Value> = cols.iter().map(|(c, _)| json!({ "name": c })).collect();
            script.copy_staged_rows("staging", &table, &format!("e{t}"), &fields, 10, &cols);
            let raws: Vec<String> = cols.into_iter().map(|(_, raw)| raw).collect();
            let (integers, texts) = raws.split_at(columns / 2);
            script.record_kinds(&table, ColumnKind::Integer, integers);
            script.record_kinds(&table, ColumnKind::Text, texts);
            for raw in &raws {
                script.record_pin(&table, raw, Some(ColumnKind::Decimal));
            }
        }
        script.mark_older_replaced();
        script.finish(ledger())
    }

    fn verbs(script: &CommitScript) -> Vec<String> {
        script
            .statements
            .iter()
            .map(|s| {
                let words: Vec<&str> = s.split_whitespace().take(3).collect();
                words.join(" ")
            })
            .collect()
    }

    #[test]
    fn catalog_statements_do_not_grow_with_the_column_count() {
        let expected = [
            "BEGIN TRANSACTION",
            "INSERT INTO `events_e0`",
            "UPDATE _tapline_loads SET",
            "INSERT INTO _tapline_load_tables",
            "INSERT INTO _tapline_tables",
            "INSERT INTO _tapline_columns",
            "UPDATE _tapline_columns SET",
            "UPDATE _tapline_columns SET",
            "INSERT INTO _tapline_loads",
            "COMMIT TRANSACTION",
        ];
        for columns in [2, 31, 40, CATALOG_BATCH] {
            assert_eq!(
                verbs(&first_load(1, columns)),
                expected,
                "{columns} columns"
            );
        }
        // Past a batch, one more statement per kind of catalog row.
        assert_eq!(
            first_load(1, CATALOG_BATCH + 1).statements.len(),
            expected.len() + 3
        );
        // A text the catalog statements repeat (table, raw name, kind) is bound once: two
        // parameters per column (its name and raw name), as few as one statement per column had.
        assert!(first_load(1, 400).params.len() <= 2 * 400 + 20);
        // More tables add their data INSERTs only.
        assert_eq!(first_load(3, 31).statements.len(), expected.len() + 2);
    }

    #[test]
    fn catalog_rows_are_inserted_where_none_exists_and_once_per_column() {
        let mut script = CommitScript::begin();
        let cols = vec![("a".to_string(), "A".to_string()); 2];
        script.copy_staged_rows("staging", "events_e", "e", &[], 1, &cols);
        let script = script.finish(ledger());
        let columns = script
            .statements
            .iter()
            .find(|s| s.starts_with("INSERT INTO _tapline_columns"))
            .expect("columns statement");
        assert!(columns.contains(
            "WHERE NOT EXISTS (SELECT 1 FROM _tapline_columns WHERE table_name = n.t AND column_name = n.c)"
        ));
        // The repeated column is one row of the derived table.
        assert!(!columns.contains("UNION ALL"), "{columns}");
        let text = script.text();
        assert!(text.starts_with("BEGIN TRANSACTION;\n"));
        assert!(text.ends_with("COMMIT TRANSACTION;"));
    }
}
