//! One BigQuery load: rows staged as NDJSON in temporary files per event table, event tables
//! created or widened through table metadata, and the commit (see `commit_script.rs`) that makes
//! rows, rejects and ledger row visible together.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufWriter, Write};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::api::Param;
use super::commit_script::CommitScript;
use super::dataset::{ColumnRow, Dataset};
use super::typed_views::rebuild_typed_views;
use super::{
    EVENT_LABEL, MAX_DATA_COLUMNS, MAX_FIELD_DESCRIPTION_CHARS, MAX_FRIENDLY_NAME_CHARS,
    MAX_TABLE_DESCRIPTION_CHARS, field, fit_metadata, ident, io_err, op, version_key,
};
use crate::export::{EVENT_NAME_COLUMN, Reject, RowBatch, TS_COLUMN};
use crate::time::now_utc;
use crate::warehouse::catalog::Catalog;
use crate::warehouse::column_kinds::{ColumnKind, ColumnKindTracker};
use crate::warehouse::column_types::ColumnTypes;
use crate::warehouse::profile_views::{self, PROFILES_VIEW, ViewDialect};
use crate::warehouse::{
    COL_LOAD_ID, COL_LOADED_AT, COL_SOURCE_LINE, COL_SOURCE_URI, Committed, LINEAGE_COLUMNS,
    LoadRecord, LoadStatus, LoadTransaction, Outcome, SourceObject, StateWrite, WarehouseError,
    stored_rejects,
};

/// Rows of one event table, written as NDJSON to a temporary file until commit.
struct Staged {
    file: BufWriter<tempfile::NamedTempFile>,
    /// Raw names of the columns rows carry (besides lineage), in first-seen order.
    columns: Vec<String>,
    rows: u64,
}

/// One object version's load: rows wait in temporary files; nothing reaches BigQuery before
/// [`LoadTransaction::commit`], so dropping it leaves nothing behind.
pub(super) struct BigQueryLoad {
    ds: Dataset,
    /// A quarantined version is being retried on purpose.
    retry_quarantined: bool,
    object: SourceObject,
    key: String,
    load_id: i64,
    attempt: u32,
    loaded_at: String,
    catalog: Catalog,
    /// Event tables whose columns were read (tables.get) for this load.
    fetched: HashSet<String>,
    /// Event → its staged rows, in table-name order for stable job ids.
    staged: BTreeMap<String, Staged>,
    view_stale: bool,
    /// The profile snapshot table was created or widened: the profile views are rebuilt.
    profile_views_stale: bool,
    /// The state value the commit script writes with the rows.
    state: Option<StateWrite>,
    /// When the object was created in its bucket, for the ledger row.
    object_created_at: Option<String>,
    /// The kinds of the values appended, widened into `_tapline_columns.kind` at commit.
    kinds: ColumnKindTracker,
    /// `_tapline_columns` as the load began: the pins the types file is compared with.
    column_rows: Vec<ColumnRow>,
    /// The pins to store at commit (`None`: keep the stored ones).
    column_types: Option<Arc<ColumnTypes>>,
    /// Event tables whose typed view is rebuilt after the commit (a column added, a kind
    /// widened or a pin changed).
    typed_stale: HashSet<String>,
}

impl BigQueryLoad {
    /// A load of `object` whose previous attempts number `attempt - 1`, planning tables
    /// against `catalog`, which `column_rows` (`_tapline_columns`) give kinds and pins.
    pub(super) fn new(
        ds: Dataset,
        object: &SourceObject,
        retry_quarantined: bool,
        attempt: u32,
        mut catalog: Catalog,
        column_rows: Vec<ColumnRow>,
        column_types: Option<Arc<ColumnTypes>>,
    ) -> Self {
        let (key, load_id) = version_key(object);
        // Kinds and pins only: the columns themselves are read from table metadata.
        for row in &column_rows {
            if let Some(kind) = row.kind {
                catalog.set_kind(&row.table, &row.raw, kind);
            }
            if let Some(pinned) = row.pinned {
                catalog.set_pinned(&row.table, &row.raw, pinned);
            }
        }
        Self {
            ds,
            retry_quarantined,
            object: object.clone(),
            key,
            load_id,
            attempt,
            loaded_at: now_utc(),
            catalog,
            fetched: HashSet::new(),
            staged: BTreeMap::new(),
            view_stale: false,
            profile_views_stale: false,
            state: None,
            object_created_at: None,
            kinds: ColumnKindTracker::for_load(),
            column_rows,
            column_types,
            typed_stale: HashSet::new(),
        }
    }
}

impl BigQueryLoad {
    /// Table metadata holds a long event name in its cut form (see [`fit_metadata`]): the
    /// table read under that form is this event's.
    fn resolve_cut_event(&mut self, event: &str) {
        if self.catalog.table(event).is_none() {
            let cut = fit_metadata(event, MAX_FRIENDLY_NAME_CHARS);
            if cut != event {
                self.catalog.rename_event(&cut, event);
            }
        }
    }

    /// Likewise for raw column names read back from field descriptions.
    fn resolve_cut_columns(&mut self, event: &str, columns: &[String]) {
        let Some(table) = self.catalog.table(event).map(|t| t.name.clone()) else {
            return;
        };
        for raw in columns {
            let cut = fit_metadata(raw, MAX_FIELD_DESCRIPTION_CHARS);
            if cut != *raw {
                self.catalog.rename_column(&table, &cut, raw);
            }
        }
    }

    /// Reads an existing event table's columns (raw names from descriptions) once per load.
    async fn fetch_columns(&mut self, event: &str) -> Result<(), WarehouseError> {
        // Once per event: after the first batch the catalog also holds tables this load plans
        // (created only at commit).
        if !self.fetched.insert(event.to_string()) {
            return Ok(());
        }
        let Some(table) = self.catalog.table(event).map(|t| t.name.clone()) else {
            return Ok(());
        };
        let resource = self
            .ds
            .api
            .get_table(&self.ds.dataset, &table)
            .await
            .map_err(op("read catalog"))?;
        add_columns(&mut self.catalog, &table, &resource);
        Ok(())
    }

    /// The BigQuery schema of an event table's columns: raw names → typed fields.
    fn fields_for(&self, event: &str, raws: &[String]) -> Vec<Value> {
        let table = self.catalog.table(event).expect("planned");
        let mut fields: Vec<Value> = raws
            .iter()
            .map(|raw| {
                let name = &table.columns[raw];
                let mut f = match raw.as_str() {
                    TS_COLUMN => field(name, "TIMESTAMP", false),
                    EVENT_NAME_COLUMN => field(name, "STRING", false),
                    _ => field(name, "STRING", false),
                };
                f["description"] = json!(fit_metadata(raw, MAX_FIELD_DESCRIPTION_CHARS));
                f
            })
            .collect();
        fields.push(field(COL_SOURCE_URI, "STRING", false));
        fields.push(field(COL_SOURCE_LINE, "INT64", false));
        fields.push(field(COL_LOAD_ID, "INT64", false));
        fields.push(field(COL_LOADED_AT, "TIMESTAMP", false));
        fields
    }

    /// Creates the event table or adds the columns this load needs. Columns are only ever
    /// added, so doing this before the commit script is harmless if the script fails.
    async fn ensure_table(&mut self, event: &str) -> Result<(), WarehouseError> {
        let table = self.catalog.table(event).expect("planned").name.clone();
        let all: Vec<String> = {
            let t = self.catalog.table(event).expect("planned");
            let mut raws: Vec<(&String, &String)> = t.columns.iter().collect();
            raws.sort_by(|a, b| a.1.cmp(b.1));
            raws.into_iter().map(|(raw, _)| raw.clone()).collect()
        };
        let wanted = self.fields_for(event, &all);
        let existing = match self.ds.api.get_table(&self.ds.dataset, &table).await {
            Ok(resource) => resource,
            Err(e) if e.is_not_found() => {
                let resource = json!({
                    "tableReference": self.ds.table_reference(&table),
                    "friendlyName": fit_metadata(event, MAX_FRIENDLY_NAME_CHARS),
                    "description": fit_metadata(
                        &format!("CleverTap event {event:?}, loaded by Tapline."),
                        MAX_TABLE_DESCRIPTION_CHARS,
                    ),
                    "labels": { EVENT_LABEL: "event" },
                    "schema": { "fields": required_lineage(&wanted) },
                    "timePartitioning": { "type": "DAY", "field": ts_column(&wanted) },
                });
                match self.ds.api.insert_table(&self.ds.dataset, &resource).await {
                    Ok(_) => return Ok(()),
                    // Another loader created it: check it is the same event, then add columns.
                    Err(e) if e.is_duplicate() => self
                        .ds
                        .api
                        .get_table(&self.ds.dataset, &table)
                        .await
                        .map_err(op("create table"))?,
                    Err(e) => return Err(op("create table")(e)),
                }
            }
            Err(e) => return Err(op("read catalog")(e)),
        };
        if existing["friendlyName"].as_str()
            != Some(fit_metadata(event, MAX_FRIENDLY_NAME_CHARS).as_str())
        {
            return Err(WarehouseError::Operation {
                operation: "create table",
                retryable: true,
                source: format!("table {table} was created for another event meanwhile").into(),
            });
        }
        let mut fields = existing["schema"]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut added = false;
        for f in wanted {
            match fields.iter().find(|e| e["name"] == f["name"]) {
                Some(e)
                    if e["description"] != f["description"] && f.get("description").is_some() =>
                {
                    return Err(WarehouseError::Operation {
                        operation: "add column",
                        retryable: true,
                        source: format!(
                            "column {} of {table} was added for another name meanwhile",
                            f["name"]
                        )
                        .into(),
                    });
                }
                Some(_) => {}
                None => {
                    fields.push(f);
                    added = true;
                }
            }
        }
        if added {
            self.ds
                .api
                .patch_table(
                    &self.ds.dataset,
                    &table,
                    &json!({ "schema": { "fields": fields } }),
                )
                .await
                .map_err(op("add column"))?;
        }
        Ok(())
    }

    /// Rebuilds the stale views (`all_events`, the profile views: see
    /// [`profile_views::stale_views`]) from a fresh listing, plus the tables this load wrote
    /// (`touched` events) should the listing not show them yet.
    async fn rebuild_views(&self, touched: &[String]) -> Result<(), WarehouseError> {
        let (mut catalog, events) = self.ds.read_catalog().await?;
        for table in events.values() {
            let resource = self
                .ds
                .api
                .get_table(&self.ds.dataset, table)
                .await
                .map_err(op("read catalog"))?;
            add_columns(&mut catalog, table, &resource);
        }
        for event in touched.iter() {
            if let Some(own) = self.catalog.table(event)
                && !events.values().any(|t| *t == own.name)
            {
                catalog.add_table(event.clone(), own.name.clone());
                for (raw, column) in &own.columns {
                    catalog.add_column(&own.name, raw.clone(), column.clone());
                }
            }
        }
        let dataset = self.ds.dataset.clone();
        let relation = |t: &str| format!("{}.{}", ident(&dataset), ident(t));
        let all_events = self
            .view_stale
            .then(|| catalog.all_events_select_with(ident, "STRING", &relation));
        let dialect = ViewDialect {
            ident,
            relation: &relation,
        };
        let stale =
            profile_views::stale_views(&catalog, &dialect, all_events, self.profile_views_stale);
        for (name, body) in stale {
            let operation = "rebuild views";
            let resource = json!({
                "tableReference": self.ds.table_reference(name),
                "view": { "query": body, "useLegacySql": false },
            });
            match self.ds.api.insert_table(&self.ds.dataset, &resource).await {
                Ok(_) => {}
                Err(e) if e.is_duplicate() => {
                    self.ds
                        .api
                        .update_table(&self.ds.dataset, name, &resource)
                        .await
                        .map_err(op(operation))?;
                }
                Err(e) => return Err(op(operation)(e)),
            }
        }
        Ok(())
    }

    /// Tapline before profile snapshots kept `tapline pull profiles` in a table named
    /// `profiles`; BigQuery cannot turn a table into a view, so the user renames it once.
    async fn refuse_legacy_profiles_table(&self) -> Result<(), WarehouseError> {
        match self.ds.api.get_table(&self.ds.dataset, PROFILES_VIEW).await {
            Ok(t) if t["type"].as_str() == Some("TABLE") => Err(WarehouseError::Operation {
                operation: "rebuild views",
                retryable: false,
                source: format!(
                    "dataset {} has a table named profiles (from an earlier Tapline's pull \
                     profiles); profiles is now a view over profile_snapshots: rename the table \
                     (ALTER TABLE {0}.profiles RENAME TO _tapline_profiles_v1) and load again",
                    self.ds.dataset
                )
                .into(),
            }),
            _ => Ok(()),
        }
    }

    /// Widens the stored kinds with this load's values and stores the types file's pins, in
    /// the commit script; each table whose kinds or pins change gets its typed view rebuilt.
    fn record_kinds_and_pins(&mut self, script: &mut CommitScript) {
        // (table, kind) → raw columns, in a stable order for the script's text.
        let mut widened: BTreeMap<(String, &'static str), Vec<String>> = BTreeMap::new();
        for (event, raw, seen) in self.kinds.observed() {
            if let Some((table, kind)) = self.catalog.widen_kind(event, raw, seen) {
                widened
                    .entry((table, kind.as_str()))
                    .or_default()
                    .push(raw.to_string());
            }
        }
        for ((table, kind), mut raws) in widened {
            raws.sort();
            script.record_kinds(&table, ColumnKind::parse(kind), &raws);
            self.typed_stale.insert(table);
        }
        let Some(types) = self.column_types.clone() else {
            return;
        };
        // Every column known: the stored ones (this load only read the tables it writes) and
        // the ones this load adds.
        let mut pins = Catalog::new(Vec::new());
        let mut known = HashSet::new();
        let mut register = |pins: &mut Catalog, table: &str| {
            if known.insert(table.to_string()) {
                pins.add_table(table.to_string(), table.to_string());
            }
        };
        for row in &self.column_rows {
            register(&mut pins, &row.table);
            pins.add_column(&row.table, row.raw.clone(), row.column.clone());
            if let Some(pinned) = row.pinned {
                pins.set_pinned(&row.table, &row.raw, pinned);
            }
        }
        for table in self.catalog.event_tables() {
            register(&mut pins, &table.name);
            for (raw, column) in &table.columns {
                pins.add_column(&table.name, raw.clone(), column.clone());
            }
        }
        for change in pins.apply_column_types(&types) {
            script.record_pin(&change.table, &change.raw, change.pinned);
            self.typed_stale.insert(change.table);
        }
    }

    fn record(
        &self,
        status: LoadStatus,
        error: Option<String>,
        bytes: u64,
        rows: u64,
        rejected: u64,
        finished_at: String,
    ) -> LoadRecord {
        LoadRecord {
            load_id: self.load_id,
            uri: self.object.uri.clone(),
            version: self.object.version.clone(),
            status,
            bytes: Some(bytes),
            rows_loaded: rows,
            rows_rejected: rejected,
            error,
            attempts: self.attempt,
            started_at: self.loaded_at.clone(),
            finished_at: Some(finished_at),
            object_created_at: self.object_created_at.clone(),
        }
    }
}

/// Registers an event table's columns: each field's description is its raw CleverTap name.
fn add_columns(catalog: &mut Catalog, table: &str, resource: &Value) {
    for f in resource["schema"]["fields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let (Some(name), Some(raw)) = (f["name"].as_str(), f["description"].as_str()) {
            catalog.add_column(table, raw.to_string(), name.to_string());
        }
    }
}

/// Event tables' `ts` and lineage are REQUIRED; data columns stay NULLABLE.
fn required_lineage(fields: &[Value]) -> Vec<Value> {
    fields
        .iter()
        .map(|f| {
            let mut f = f.clone();
            let required = f["description"]
                .as_str()
                .is_some_and(|d| d == TS_COLUMN || d == EVENT_NAME_COLUMN)
                || LINEAGE_COLUMNS.contains(&f["name"].as_str().unwrap_or(""));
            if required {
                f["mode"] = json!("REQUIRED");
            }
            f
        })
        .collect()
}

fn ts_column(fields: &[Value]) -> Value {
    fields
        .iter()
        .find(|f| f["description"] == TS_COLUMN)
        .map(|f| f["name"].clone())
        .unwrap_or(json!("ts"))
}

#[async_trait]
impl LoadTransaction for BigQueryLoad {
    fn load_id(&self) -> i64 {
        self.load_id
    }

    fn write_state_at_commit(&mut self, state: StateWrite) {
        self.state = Some(state);
    }

    fn record_object_created_at(&mut self, created_at: Option<String>) {
        self.object_created_at = created_at;
    }

    async fn append(&mut self, batch: RowBatch) -> Result<(), WarehouseError> {
        self.kinds.observe(&batch);
        let columns = batch.schema().columns().to_vec();
        let mut rows = batch.rows().peekable();
        while let Some(first) = rows.peek().copied() {
            let event = first.event_name().to_string();
            self.resolve_cut_event(&event);
            self.fetch_columns(&event).await?;
            self.resolve_cut_columns(&event, &columns);
            if self.catalog.needs_ddl(&event, &columns) {
                let plan = self.catalog.plan(&event, &columns, MAX_DATA_COLUMNS)?;
                self.view_stale |= plan.view_stale;
                self.profile_views_stale |= plan.profile_views_stale;
                if !plan.added.is_empty() {
                    self.typed_stale.insert(plan.table);
                }
            }
            let table = self.catalog.table(&event).expect("planned");
            let names: Vec<&String> = columns.iter().map(|raw| &table.columns[raw]).collect();
            if !self.staged.contains_key(&event) {
                let file = tempfile::NamedTempFile::new().map_err(io_err("stage rows"))?;
                self.staged.insert(
                    event.clone(),
                    Staged {
                        file: BufWriter::with_capacity(1 << 20, file),
                        columns: Vec::new(),
                        rows: 0,
                    },
                );
            }
            let staged = self.staged.get_mut(&event).expect("inserted above");
            for raw in &columns {
                if !staged.columns.contains(raw) {
                    staged.columns.push(raw.clone());
                }
            }
            let mut line = String::new();
            let mut ts_text = [0u8; 20];
            while let Some(row) = rows.next_if(|r| r.event_name() == event) {
                line.clear();
                line.push('{');
                for (i, name) in names.iter().enumerate() {
                    if let Some(value) = row.text(i, &mut ts_text) {
                        push_json_string(&mut line, name);
                        line.push(':');
                        push_json_string(&mut line, value);
                        line.push(',');
                    }
                }
                push_json_string(&mut line, COL_SOURCE_URI);
                line.push(':');
                push_json_string(&mut line, &self.object.uri);
                // INT64 as a JSON string: exact beyond 2^53 whatever parses it.
                line.push_str(&format!(
                    ",\"{COL_SOURCE_LINE}\":{},\"{COL_LOAD_ID}\":\"{}\",\"{COL_LOADED_AT}\":\"{}\"}}\n",
                    row.line, self.load_id, self.loaded_at
                ));
                staged
                    .file
                    .write_all(line.as_bytes())
                    .map_err(io_err("stage rows"))?;
                staged.rows += 1;
            }
        }
        Ok(())
    }

    async fn commit(
        mut self: Box<Self>,
        outcome: Outcome,
        rejects: Vec<Reject>,
    ) -> Result<Committed, WarehouseError> {
        let (status, error, bytes, rows, rejected) = match &outcome {
            Outcome::Loaded {
                bytes,
                rows,
                rejected,
            } => (LoadStatus::Loaded, None, *bytes, *rows, *rejected),
            Outcome::Quarantined {
                reason,
                bytes,
                rejected,
                ..
            } => (
                LoadStatus::Quarantined,
                Some(reason.clone()),
                *bytes,
                0,
                *rejected,
            ),
        };
        if self.profile_views_stale && status == LoadStatus::Loaded {
            // Before anything commits: afterwards the view could not be built.
            self.refuse_legacy_profiles_table().await?;
        }
        let mut script = CommitScript::begin();
        let mut staging = Vec::new();
        let staged = std::mem::take(&mut self.staged);
        let touched: Vec<String> = staged.keys().cloned().collect();
        let result = async {
            if status == LoadStatus::Loaded {
                for (index, (event, mut s)) in staged.into_iter().enumerate() {
                    s.file.flush().map_err(io_err("stage rows"))?;
                    if s.rows == 0 {
                        continue;
                    }
                    self.ensure_table(&event).await?;
                    let fields = self.fields_for(&event, &s.columns);
                    let file = s
                        .file
                        .into_inner()
                        .map_err(|e| io_err("stage rows")(e.into_error()))?;
                    let name = self
                        .ds
                        .stage_file(
                            &self.key,
                            &index.to_string(),
                            fields.clone(),
                            file.path().to_path_buf(),
                        )
                        .await?;
                    staging.push((name.clone(), file));
                    let table = self.catalog.table(&event).expect("planned");
                    let columns: Vec<(String, String)> = s
                        .columns
                        .iter()
                        .map(|raw| (table.columns[raw].clone(), raw.clone()))
                        .collect();
                    script.copy_staged_rows(&name, &table.name, &event, &fields, s.rows, &columns);
                }
                self.record_kinds_and_pins(&mut script);
                // An older version's rows go in the same transaction.
                for table in self
                    .ds
                    .older_version_tables(&self.object.uri, self.load_id)
                    .await?
                {
                    script.delete_older_rows(&table);
                }
                script.mark_older_replaced();
            }
            let kept = stored_rejects(&rejects);
            if !kept.is_empty() {
                let (name, file) = self
                    .ds
                    .stage_rejects(&self.key, self.load_id, &self.object.uri, kept)
                    .await?;
                script.copy_rejects(&name);
                staging.push((name, file));
            }
            if let Some(state) = self.state.take() {
                script.write_state(&state.key, &state.value);
            }
            // The ledger row's finished_at, and the one this commit reports: the same value,
            // however long the commit job takes.
            let finished_at = now_utc();
            let script = script.finish([
                ("load_id", Param::Int(self.load_id)),
                ("uri", Param::Str(self.object.uri.clone())),
                ("version", Param::Str(self.object.version.clone())),
                ("status", Param::Str(status.as_str().to_string())),
                ("bytes", Param::Int(bytes as i64)),
                ("rows", Param::Int(rows as i64)),
                ("rejected", Param::Int(rejected as i64)),
                ("error", error.clone().map_or(Param::NullStr, Param::Str)),
                ("attempts", Param::Int(self.attempt as i64)),
                ("started", Param::Timestamp(self.loaded_at.clone())),
                ("now", Param::Timestamp(finished_at.clone())),
                (
                    "created",
                    self.object_created_at
                        .clone()
                        .map_or(Param::NullTimestamp, Param::Timestamp),
                ),
            ]);
            let committed = script
                .run(&self.ds, &self.key, status.as_str(), self.retry_quarantined)
                .await?;
            Ok::<(bool, String), WarehouseError>((committed, finished_at))
        }
        .await;
        for (name, _) in &staging {
            if let Err(e) = self.ds.api.delete_table(&self.ds.dataset, name).await {
                tracing::warn!(table = %name, error = %e, "Could not drop a staging table; it expires within a day.");
            }
        }
        let (committed, finished_at) = result?;
        if !committed {
            // Another loader committed this version: report what the ledger says.
            return self
                .ds
                .current(&self.object)
                .await?
                .map(Committed::Theirs)
                .ok_or_else(|| WarehouseError::Operation {
                    operation: "commit",
                    retryable: true,
                    source: "a commit job succeeded but its ledger row is not visible".into(),
                });
        }
        if (self.view_stale || self.profile_views_stale) && status == LoadStatus::Loaded {
            self.rebuild_views(&touched).await?;
        }
        if status == LoadStatus::Loaded {
            // After the commit, like the views above: a failure is the load's error and its rows
            // stay committed; a later load rebuilds a missing view, or one whose table it changes.
            let tables: Vec<String> = self
                .catalog
                .event_tables()
                .map(|t| t.name.clone())
                .collect();
            let snapshots = self.catalog.profile_snapshots().map(|t| t.name.clone());
            rebuild_typed_views(
                &self.ds,
                &tables,
                snapshots.as_deref(),
                &self.typed_stale,
                self.view_stale,
            )
            .await?;
        }
        Ok(Committed::Ours(self.record(
            status,
            error,
            bytes,
            rows,
            rejected,
            finished_at,
        )))
    }
}

/// Appends `text` as a JSON string.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é\"");
        let v: String = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\nd\u{1}é");
    }
}
