//! The commit script: one multi-statement transaction (a query job) that copies a load's staged
//! rows into the event tables, replaces an older version's rows, records rejects, catalog (with
//! column kinds and pins) and ledger row, and commits them together; run under job ids derived
//! from the version so at most one commit of a version succeeds.

use serde_json::{Value, json};

use super::api::{ApiError, Param};
use super::dataset::{Dataset, state_insert_sql, state_written_us};
use super::{ident, op};
use crate::warehouse::column_kinds::ColumnKind;
use crate::warehouse::{COL_LOAD_ID, COL_SOURCE_URI, WarehouseError};

/// Commit jobs tried per version before giving up for now (each failed one is burned).
const MAX_COMMIT_JOBS: u32 = 50;
/// Columns whose kinds one statement widens: a table's first load changes every column's kind,
/// and a statement per kind (not per column) keeps the script short.
const KIND_BATCH: usize = 1_000;
/// Label on commit jobs saying what they committed.
const OUTCOME_LABEL: &str = "tapline_outcome";

/// A commit script being written: its statements and the parameters they bind. The ledger
/// row's values are the fixed parameters `@load_id`, `@uri`, `@version`, `@status`, `@bytes`,
/// `@rows`, `@rejected`, `@error`, `@attempts`, `@started` and `@now` (see [`Self::finish`]).
pub(super) struct CommitScript {
    statements: Vec<String>,
    params: Vec<(String, Param)>,
}

impl CommitScript {
    /// A script that opens its transaction.
    pub(super) fn begin() -> Self {
        Self {
            statements: vec!["BEGIN TRANSACTION".to_string()],
            params: Vec::new(),
        }
    }

    /// Adds a parameter; returns its `@name` for the SQL text.
    fn bind(&mut self, value: Param) -> String {
        let name = format!("p{}", self.params.len());
        self.params.push((name.clone(), value));
        format!("@{name}")
    }

    /// Copies `rows` staged rows (`fields`, the staging table's schema) from `staging` into
    /// `table`, the table of `event`, and records them: the load's rows per table, and the
    /// catalog mirror once per table and `columns` (column name, raw name).
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
        let t = self.bind(Param::Str(table.to_string()));
        self.statements.push(format!(
            "INSERT INTO _tapline_load_tables (load_id, table_name, rows) VALUES \
             (@load_id, {t}, {rows})"
        ));
        // The catalog mirror, once per table and column.
        let e = self.bind(Param::Str(event.to_string()));
        self.statements.push(format!(
            "INSERT INTO _tapline_tables (table_name, event_name, created_by_load, created_at) \
             SELECT {t}, {e}, @load_id, @now FROM (SELECT 1) AS one WHERE NOT EXISTS \
             (SELECT 1 FROM _tapline_tables WHERE table_name = {t})"
        ));
        for (column, raw) in columns {
            let c = self.bind(Param::Str(column.clone()));
            let r = self.bind(Param::Str(raw.clone()));
            self.statements.push(format!(
                "INSERT INTO _tapline_columns (table_name, column_name, raw_name, added_by_load, added_at, kind) \
                 SELECT {t}, {c}, {r}, @load_id, @now, '' FROM (SELECT 1) AS one WHERE NOT EXISTS \
                 (SELECT 1 FROM _tapline_columns WHERE table_name = {t} AND column_name = {c})"
            ));
        }
    }

    /// Widens the stored kinds of raw columns `raws` of `table` with `kind` (what this load saw,
    /// widened with the kind read at its start), in one statement per [`KIND_BATCH`] columns. The
    /// widening runs on the stored value, so a loader that widened the same column meanwhile is
    /// never narrowed back (see [`widen`](crate::warehouse::column_kinds::widen)); a row from
    /// before kinds (NULL) is text.
    pub(super) fn record_kinds(&mut self, table: &str, kind: ColumnKind, raws: &[String]) {
        for chunk in raws.chunks(KIND_BATCH) {
            let t = self.bind(Param::Str(table.to_string()));
            let k = self.bind(Param::Str(kind.as_str().to_string()));
            let names: Vec<String> = chunk
                .iter()
                .map(|raw| self.bind(Param::Str(raw.clone())))
                .collect();
            self.statements.push(format!(
                "UPDATE _tapline_columns SET kind = CASE \
                 WHEN kind IS NULL THEN 'text' \
                 WHEN kind = '' OR kind = {k} THEN {k} \
                 WHEN kind IN ('integer', 'decimal') AND {k} IN ('integer', 'decimal') THEN 'decimal' \
                 ELSE 'text' END \
                 WHERE table_name = {t} AND raw_name IN ({})",
                names.join(", ")
            ));
        }
    }

    /// Stores the pin of raw column `raw` of `table` (`None` removes it).
    pub(super) fn record_pin(&mut self, table: &str, raw: &str, pinned: Option<ColumnKind>) {
        let t = self.bind(Param::Str(table.to_string()));
        let r = self.bind(Param::Str(raw.to_string()));
        let p = self.bind(pinned.map_or(Param::NullStr, |k| Param::Str(k.as_str().to_string())));
        self.statements.push(format!(
            "UPDATE _tapline_columns SET pinned = {p} WHERE table_name = {t} AND raw_name = {r}"
        ));
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
