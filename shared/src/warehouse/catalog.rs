//! Which table and column each CleverTap name lands in: the bookkeeping every SQL warehouse
//! shares, so SQLite, PostgreSQL and BigQuery agree on names. Pure: adapters read the catalog
//! from their `_tapline_tables` / `_tapline_columns`, ask for a [`Plan`], run its DDL and record it.

use std::collections::{HashMap, HashSet};

use super::column_kinds::ColumnKind;
use super::naming::{snake_case, unique_name};
use crate::export::PROFILE_SNAPSHOTS_KEY;

/// The table profile snapshot rows land in (registered under [`PROFILE_SNAPSHOTS_KEY`]).
pub const PROFILE_SNAPSHOTS_TABLE: &str = "profile_snapshots";
use super::{ALL_EVENTS_COLUMNS, RESERVED_TABLES, WarehouseError};

/// Prefixes databases keep for themselves (`sqlite_` tables cannot be created; `pg_` names are
/// system names in PostgreSQL), and the typed views' prefix ([`super::TYPED_VIEW_PREFIX`]), so no new
/// event table takes a typed view's name. Applied in every warehouse so names agree.
const RESERVED_PREFIXES: &[&str] = &["sqlite_", "pg_", super::TYPED_VIEW_PREFIX];

/// Tables and columns known to one load.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// Event name → its table.
    tables: HashMap<String, TableColumns>,
    /// Every relation name in the schema, lowercased.
    taken: HashSet<String>,
}

/// One event table's columns.
#[derive(Debug, Clone)]
pub struct TableColumns {
    /// Table name.
    pub name: String,
    /// Raw CleverTap name → column name.
    pub columns: HashMap<String, String>,
    /// Column names in use, lowercased (lineage included).
    used: HashSet<String>,
    /// Raw name → the stored kind of its values (absent: none yet).
    kinds: HashMap<String, ColumnKind>,
    /// Raw name → the kind a user pinned (`_tapline_columns.pinned`; absent: none).
    pinned: HashMap<String, ColumnKind>,
}

/// A pin to write back to `_tapline_columns.pinned` (see [`Catalog::apply_column_types`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinChange {
    /// The table.
    pub table: String,
    /// The column's raw name.
    pub raw: String,
    /// The new pin; `None` removes it.
    pub pinned: Option<ColumnKind>,
}

impl TableColumns {
    /// The stored kind of raw column `raw`: `None` while it has held only NULLs (or is unknown).
    pub fn kind(&self, raw: &str) -> Option<ColumnKind> {
        self.kinds.get(raw).copied()
    }

    /// The kind a user pinned for raw column `raw`, if any.
    pub fn pinned(&self, raw: &str) -> Option<ColumnKind> {
        self.pinned.get(raw).copied()
    }

    /// The kind the typed views cast raw column `raw` to: its pin, else its inferred kind.
    pub fn view_kind(&self, raw: &str) -> Option<ColumnKind> {
        self.pinned(raw).or_else(|| self.kind(raw))
    }

    /// The raw name of column `column`, if it is a data column of this table.
    pub fn raw_name(&self, column: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(_, c)| c.as_str() == column)
            .map(|(raw, _)| raw.as_str())
    }
}

/// What an adapter must do before inserting a batch's columns into an event's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The table.
    pub table: String,
    /// Whether it must be created (with `added` as its data columns).
    pub create: bool,
    /// Columns to add (or create), `(raw name, column name)`, in batch order.
    pub added: Vec<(String, String)>,
    /// Whether the `all_events` view must be rebuilt.
    pub view_stale: bool,
    /// Whether the profile views (`profiles`, `profiles_history`, `events_with_profile`) must
    /// be rebuilt: the snapshot table was created or gained a column.
    pub profile_views_stale: bool,
}

impl Catalog {
    /// A catalog over a schema whose relations are `taken` (tables and views, any case).
    pub fn new(taken: impl IntoIterator<Item = String>) -> Self {
        Self {
            tables: HashMap::new(),
            taken: taken.into_iter().map(|t| t.to_lowercase()).collect(),
        }
    }

    /// Registers an existing event table (from `_tapline_tables`).
    pub fn add_table(&mut self, event: String, table: String) {
        self.taken.insert(table.to_lowercase());
        self.tables.insert(
            event,
            TableColumns {
                name: table,
                columns: HashMap::new(),
                used: lineage_columns(),
                kinds: HashMap::new(),
                pinned: HashMap::new(),
            },
        );
    }

    /// Registers an existing column (from `_tapline_columns`); unknown tables are ignored.
    pub fn add_column(&mut self, table: &str, raw: String, column: String) {
        if let Some(t) = self.tables.values_mut().find(|t| t.name == table) {
            t.used.insert(column.to_lowercase());
            t.columns.insert(raw, column);
        }
    }

    /// Sets the stored kind of raw column `raw` of `table` (from `_tapline_columns.kind`);
    /// unknown tables are ignored.
    pub fn set_kind(&mut self, table: &str, raw: &str, kind: ColumnKind) {
        if let Some(t) = self.tables.values_mut().find(|t| t.name == table) {
            t.kinds.insert(raw.to_string(), kind);
        }
    }

    /// Sets the stored pin of raw column `raw` of `table` (from `_tapline_columns.pinned`);
    /// unknown tables are ignored.
    pub fn set_pinned(&mut self, table: &str, raw: &str, kind: ColumnKind) {
        if let Some(t) = self.tables.values_mut().find(|t| t.name == table) {
            t.pinned.insert(raw.to_string(), kind);
        }
    }

    /// Makes every event table's pins those of `types` (the whole set: a stored pin it does not
    /// name is removed) and returns what changed, sorted, for the adapter to write back at
    /// commit and to rebuild those tables' typed views. Run at commit, after the load's columns
    /// are planned, so a column this load added gets its pin in the same transaction. The
    /// profile snapshot table (no typed view) and `ts` (always the load's UTC timestamp) are
    /// never pinned.
    pub fn apply_column_types(
        &mut self,
        types: &super::column_types::ColumnTypes,
    ) -> Vec<PinChange> {
        let mut changes = Vec::new();
        let event_tables = self
            .tables
            .iter_mut()
            .filter(|(event, _)| event.as_str() != PROFILE_SNAPSHOTS_KEY);
        for (_, table) in event_tables {
            for (raw, column) in &table.columns {
                let want = types
                    .pin(&table.name, raw, column)
                    .filter(|_| !super::UNCAST_EVENT_COLUMNS.contains(&raw.as_str()));
                if table.pinned.get(raw).copied() == want {
                    continue;
                }
                match want {
                    Some(kind) => table.pinned.insert(raw.clone(), kind),
                    None => table.pinned.remove(raw),
                };
                changes.push(PinChange {
                    table: table.name.clone(),
                    raw: raw.clone(),
                    pinned: want,
                });
            }
        }
        changes.sort_by(|a, b| (&a.table, &a.raw).cmp(&(&b.table, &b.raw)));
        changes
    }

    /// Widens the kind of raw column `raw` of `event`'s table with `seen` (see
    /// [`super::column_kinds::widen`]; never narrowed). `Some((table, new kind))` when the
    /// stored kind changes and must be written back; `None` when it stays (or the column is
    /// unknown).
    pub fn widen_kind(
        &mut self,
        event: &str,
        raw: &str,
        seen: ColumnKind,
    ) -> Option<(String, ColumnKind)> {
        let table = self.tables.get_mut(event)?;
        if !table.columns.contains_key(raw) {
            return None;
        }
        let known = table.kinds.get(raw).copied();
        let widened = super::column_kinds::widen_known(known, Some(seen))?;
        (known != Some(widened)).then(|| {
            table.kinds.insert(raw.to_string(), widened);
            (table.name.clone(), widened)
        })
    }

    /// Files the table registered under `from` under event `to` instead (an adapter whose
    /// metadata could only hold a cut form of the event name); nothing when `to` is known.
    pub fn rename_event(&mut self, from: &str, to: &str) {
        if !self.tables.contains_key(to)
            && let Some(table) = self.tables.remove(from)
        {
            self.tables.insert(to.to_string(), table);
        }
    }

    /// Files the column registered for raw name `from` of `table` under raw name `to`
    /// instead; nothing when `to` is known.
    pub fn rename_column(&mut self, table: &str, from: &str, to: &str) {
        if let Some(t) = self.tables.values_mut().find(|t| t.name == table)
            && !t.columns.contains_key(to)
            && let Some(column) = t.columns.remove(from)
        {
            t.columns.insert(to.to_string(), column);
        }
    }

    /// The table of an event, if it exists.
    pub fn table(&self, event: &str) -> Option<&TableColumns> {
        self.tables.get(event)
    }

    /// Whether `columns` of `event` need a new table or new columns.
    pub fn needs_ddl(&self, event: &str, columns: &[String]) -> bool {
        match self.tables.get(event) {
            None => true,
            Some(t) => columns.iter().any(|raw| !t.columns.contains_key(raw)),
        }
    }

    /// Plans the table and columns `columns` (raw names) of `event` need, registering them.
    /// `max_columns` counts data columns.
    pub fn plan(
        &mut self,
        event: &str,
        columns: &[String],
        max_columns: usize,
    ) -> Result<Plan, WarehouseError> {
        let create = !self.tables.contains_key(event);
        if create {
            let taken = &self.taken;
            let is_taken = |c: &str| taken.contains(c) || RESERVED_TABLES.contains(&c);
            // A suffix cannot fix a reserved prefix; a prefix of our own can.
            let base = if RESERVED_PREFIXES
                .iter()
                .any(|p| snake_case(event).starts_with(p))
            {
                format!("event {event}")
            } else {
                event.to_string()
            };
            let name = if event == PROFILE_SNAPSHOTS_KEY {
                // Reserved for this key, so no event table holds it; a relation of the user's
                // own by that name still gets a suffix.
                unique_name(PROFILE_SNAPSHOTS_TABLE, &|c: &str| taken.contains(c))
            } else {
                unique_name(&base, &is_taken)
            };
            self.add_table(event.to_string(), name);
        }
        let table = self.tables.get_mut(event).expect("registered above");
        let missing: Vec<&String> = columns
            .iter()
            .filter(|raw| !table.columns.contains_key(*raw))
            .collect();
        let data_columns = table.columns.len() + missing.len();
        if data_columns > max_columns {
            return Err(WarehouseError::TooManyColumns {
                table: table.name.clone(),
                count: data_columns,
                limit: max_columns,
            });
        }
        let mut added = Vec::with_capacity(missing.len());
        // `all_events` leaves the snapshots out; the profile views are rebuilt with them.
        let snapshots = event == PROFILE_SNAPSHOTS_KEY;
        let mut view_stale = create && !snapshots;
        let mut profile_views_stale = create && snapshots;
        for raw in missing {
            let used = &table.used;
            let column = unique_name(raw, &|c: &str| used.contains(&c.to_lowercase()));
            table.used.insert(column.to_lowercase());
            table.columns.insert(raw.clone(), column.clone());
            if snapshots {
                profile_views_stale = true;
            } else {
                view_stale |= ALL_EVENTS_COLUMNS.contains(&raw.as_str());
            }
            added.push((raw.clone(), column));
        }
        Ok(Plan {
            table: table.name.clone(),
            create,
            added,
            view_stale,
            profile_views_stale,
        })
    }

    /// The `SELECT … UNION ALL …` body of the `all_events` view: each event table's standard
    /// CleverTap columns (NULL where it lacks one), lineage, and the table's name as `_table`.
    pub fn all_events_select(&self, ident: fn(&str) -> String) -> String {
        self.all_events_select_with(ident, "TEXT", &ident)
    }

    /// [`Self::all_events_select`] for warehouses that name the text type differently
    /// (`STRING` in BigQuery) or need tables qualified (BigQuery views have no default dataset).
    pub fn all_events_select_with(
        &self,
        ident: fn(&str) -> String,
        text_type: &str,
        table_ref: &dyn Fn(&str) -> String,
    ) -> String {
        self.all_events_select_mapped(ident, table_ref, &|_, _, column| match column {
            Some(c) => ident(c),
            None => format!("CAST(NULL AS {text_type})"),
        })
    }

    /// The `all_events` body with each standard column's expression given by
    /// `value(table, raw name, column)` (`column` is `None` where the table lacks it): the
    /// typed views cast them, the raw view passes them through.
    pub fn all_events_select_mapped(
        &self,
        ident: fn(&str) -> String,
        table_ref: &dyn Fn(&str) -> String,
        value: &dyn Fn(&TableColumns, &str, Option<&str>) -> String,
    ) -> String {
        let mut tables: Vec<&TableColumns> = self.event_tables().collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        let selects: Vec<String> = tables
            .iter()
            .map(|t| {
                let mut parts: Vec<String> = ALL_EVENTS_COLUMNS
                    .iter()
                    .map(|raw| {
                        let alias = ident(&snake_case(raw));
                        let column = t.columns.get(*raw).map(String::as_str);
                        format!("{} AS {alias}", value(t, raw, column))
                    })
                    .collect();
                parts.extend(super::LINEAGE_COLUMNS.iter().map(|c| ident(c)));
                parts.push(format!(
                    "'{}' AS {}",
                    t.name.replace('\'', "''"),
                    ident("_table")
                ));
                format!("SELECT {} FROM {}", parts.join(", "), table_ref(&t.name))
            })
            .collect();
        selects.join("\nUNION ALL\n")
    }

    /// Whether any event table exists.
    pub fn is_empty(&self) -> bool {
        self.event_tables().next().is_none()
    }

    /// The event tables (the profile snapshot table left out).
    pub fn event_tables(&self) -> impl Iterator<Item = &TableColumns> {
        self.tables
            .iter()
            .filter(|(event, _)| event.as_str() != PROFILE_SNAPSHOTS_KEY)
            .map(|(_, table)| table)
    }

    /// The profile snapshot table, once a profile export or pull created it.
    pub fn profile_snapshots(&self) -> Option<&TableColumns> {
        self.tables.get(PROFILE_SNAPSHOTS_KEY)
    }
}

fn lineage_columns() -> HashSet<String> {
    super::LINEAGE_COLUMNS
        .iter()
        .map(|c| c.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn first_batch_creates_the_table_with_its_columns() {
        let mut c = Catalog::new(Vec::new());
        let plan = c
            .plan(
                "Order Placed",
                &cols(&["ts", "eventName", "eventProps.Amount"]),
                10,
            )
            .unwrap();
        assert_eq!(plan.table, "order_placed");
        assert!(plan.create && plan.view_stale);
        assert_eq!(
            plan.added,
            vec![
                ("ts".into(), "ts".into()),
                ("eventName".into(), "event_name".into()),
                ("eventProps.Amount".into(), "event_props_amount".into())
            ]
        );
        let again = c
            .plan("Order Placed", &cols(&["ts", "eventProps.Amount"]), 10)
            .unwrap();
        assert!(!again.create && again.added.is_empty() && !again.view_stale);
    }

    #[test]
    fn collisions_suffix_and_reserved_names_are_avoided() {
        let mut c = Catalog::new(vec!["Existing".to_string()]);
        assert_eq!(
            c.plan("Existing", &cols(&["ts"]), 10).unwrap().table,
            "existing_2"
        );
        assert_eq!(
            c.plan("Profiles", &cols(&["ts"]), 10).unwrap().table,
            "profiles_2"
        );
        assert_eq!(
            c.plan("sqlite test", &cols(&["ts"]), 10).unwrap().table,
            "event_sqlite_test"
        );
        assert_eq!(
            c.plan("pg stats", &cols(&["ts"]), 10).unwrap().table,
            "event_pg_stats"
        );
        let plan = c
            .plan(
                "Charged",
                &cols(&["eventProps.Amount", "eventProps.amount", "_source_uri"]),
                10,
            )
            .unwrap();
        let names: Vec<&str> = plan.added.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(
            names,
            ["event_props_amount", "event_props_amount_2", "source_uri"]
        );
    }

    #[test]
    fn profile_snapshots_have_their_own_table_outside_all_events() {
        let mut c = Catalog::new(Vec::new());
        let event = c
            .plan("Profile Snapshots", &cols(&["ts", "eventName"]), 10)
            .unwrap();
        assert_eq!(event.table, "profile_snapshots_2", "the name is reserved");
        let plan = c
            .plan(
                PROFILE_SNAPSHOTS_KEY,
                &cols(&["ts", "identity", "Email"]),
                10,
            )
            .unwrap();
        assert_eq!(plan.table, PROFILE_SNAPSHOTS_TABLE);
        assert!(plan.create && plan.profile_views_stale && !plan.view_stale);
        let again = c
            .plan(PROFILE_SNAPSHOTS_KEY, &cols(&["Email", "Blood Group"]), 10)
            .unwrap();
        assert_eq!(
            again.added,
            vec![("Blood Group".into(), "blood_group".into())]
        );
        assert!(again.profile_views_stale && !again.view_stale);
        let view = c.all_events_select(|s| s.to_string());
        assert!(
            view.contains("FROM profile_snapshots_2") && !view.contains("FROM profile_snapshots\n")
        );
        assert_eq!(view.matches("SELECT").count(), 1, "{view}");
        assert_eq!(c.event_tables().count(), 1);
        assert_eq!(c.profile_snapshots().unwrap().columns["Email"], "email");
    }

    #[test]
    fn column_limit_counts_existing_and_new_columns() {
        let mut c = Catalog::new(Vec::new());
        c.plan("A", &cols(&["ts", "x"]), 3).unwrap();
        let err = c.plan("A", &cols(&["y", "z"]), 3).unwrap_err();
        assert!(matches!(
            err,
            WarehouseError::TooManyColumns {
                count: 4,
                limit: 3,
                ..
            }
        ));
    }

    fn types(text: &str) -> super::super::column_types::ColumnTypes {
        super::super::column_types::ColumnTypes::parse(text, "types.toml").unwrap()
    }

    fn pin(table: &str, raw: &str, pinned: Option<ColumnKind>) -> PinChange {
        PinChange {
            table: table.into(),
            raw: raw.into(),
            pinned,
        }
    }

    #[test]
    fn column_types_pin_every_matching_column_and_report_only_changes() {
        let mut c = Catalog::new(Vec::new());
        c.plan(
            "Charged",
            &cols(&["ts", "eventProps.Amount", "profile.phone"]),
            10,
        )
        .unwrap();
        c.plan("Viewed", &cols(&["ts", "profile.phone"]), 10)
            .unwrap();
        c.plan(PROFILE_SNAPSHOTS_KEY, &cols(&["ts", "profile.phone"]), 10)
            .unwrap();
        let file = types(
            "[charged]\n\"eventProps.Amount\" = \"decimal\"\nts = \"text\"\n\
             [\"*\"]\nprofile_phone = \"text\"\n",
        );
        assert_eq!(
            c.apply_column_types(&file),
            vec![
                pin("charged", "eventProps.Amount", Some(ColumnKind::Decimal)),
                pin("charged", "profile.phone", Some(ColumnKind::Text)),
                pin("viewed", "profile.phone", Some(ColumnKind::Text)),
            ],
            "by raw or column name, \"*\" on each event table; never ts nor the snapshots"
        );
        let charged = c.table("Charged").unwrap();
        assert_eq!(
            charged.pinned("eventProps.Amount"),
            Some(ColumnKind::Decimal)
        );
        assert_eq!(
            charged.view_kind("eventProps.Amount"),
            Some(ColumnKind::Decimal)
        );
        assert_eq!(charged.pinned("ts"), None);
        assert_eq!(c.profile_snapshots().unwrap().pinned("profile.phone"), None);
        assert_eq!(
            c.apply_column_types(&file),
            vec![],
            "the same file changes nothing"
        );
    }

    #[test]
    fn column_types_are_the_whole_set_and_reach_columns_added_later() {
        let mut c = Catalog::new(vec!["charged".to_string(), "viewed".to_string()]);
        c.add_table("Charged".into(), "charged".into());
        c.add_column(
            "charged",
            "eventProps.Amount".into(),
            "event_props_amount".into(),
        );
        c.add_column(
            "charged",
            "eventProps.Code".into(),
            "event_props_code".into(),
        );
        c.set_kind("charged", "eventProps.Amount", ColumnKind::Integer);
        c.set_pinned("charged", "eventProps.Amount", ColumnKind::Decimal);
        c.set_pinned("charged", "eventProps.Code", ColumnKind::Text);
        c.add_table("Viewed".into(), "viewed".into());
        // The file no longer names Amount (its inferred kind comes back), pins Code anew, and
        // pins a column of a table no load has created yet.
        let file =
            types("[charged]\n\"eventProps.Code\" = \"integer\"\n[viewed]\nscreen = \"json\"\n");
        assert_eq!(
            c.apply_column_types(&file),
            vec![
                pin("charged", "eventProps.Amount", None),
                pin("charged", "eventProps.Code", Some(ColumnKind::Integer)),
            ]
        );
        let charged = c.table("Charged").unwrap();
        assert_eq!(
            charged.view_kind("eventProps.Amount"),
            Some(ColumnKind::Integer)
        );
        assert_eq!(charged.pinned("eventProps.Amount"), None);
        // The column comes with a later batch of the load: pinned at its commit.
        c.plan("Viewed", &cols(&["Screen"]), 10).unwrap();
        assert_eq!(
            c.apply_column_types(&file),
            vec![pin("viewed", "Screen", Some(ColumnKind::Json))]
        );
        // An empty file removes every pin.
        assert_eq!(
            c.apply_column_types(&types("")),
            vec![
                pin("charged", "eventProps.Code", None),
                pin("viewed", "Screen", None),
            ]
        );
    }

    #[test]
    fn existing_catalog_is_reused() {
        let mut c = Catalog::new(vec!["order_placed".to_string()]);
        c.add_table("Order Placed".into(), "order_placed".into());
        c.add_column(
            "order_placed",
            "eventProps.Amount".into(),
            "event_props_amount".into(),
        );
        let plan = c
            .plan(
                "Order Placed",
                &cols(&["eventProps.Amount", "eventProps.amount"]),
                10,
            )
            .unwrap();
        assert!(!plan.create);
        assert_eq!(
            plan.added,
            vec![("eventProps.amount".into(), "event_props_amount_2".into())]
        );
    }
}
