//! The typed views every warehouse builds beside its raw text tables, for BI tools: one
//! `bi_<table>` per event table and `bi_all_events`, with the same column names, each data column
//! cast by its stored [`ColumnKind`] with a cast that yields NULL rather than failing. The raw
//! tables stay the source of truth; a view only reads them. Pure: each adapter gives its casts
//! ([`TypedDialect`]) and runs the statements in its load's transaction.

use std::collections::HashMap;

use super::ALL_EVENTS_COLUMNS;
use super::catalog::{Catalog, TableColumns};
use super::column_kinds::{ColumnKind, widen_known};

pub use super::TYPED_VIEW_PREFIX;
/// The typed `all_events`.
pub const TYPED_ALL_EVENTS_VIEW: &str = "bi_all_events";

pub use super::UNCAST_EVENT_COLUMNS;

/// The typed view over event table `table`.
pub fn typed_view_name(table: &str) -> String {
    format!("{TYPED_VIEW_PREFIX}{table}")
}

/// How a warehouse writes a typed view.
pub struct TypedDialect<'a> {
    /// Quotes an identifier.
    pub ident: fn(&str) -> String,
    /// Refers to a table or view of the schema.
    pub relation: &'a (dyn Fn(&str) -> String + Sync),
    /// `cast(column, kind)`: the column (quoted) read as `kind`, NULL where a value does not fit.
    /// Never called for text.
    pub cast: fn(&str, ColumnKind) -> String,
    /// A NULL of `kind`'s type, for an `all_events` column a table lacks.
    pub null: fn(ColumnKind) -> String,
}

/// The `SELECT` body of `table`'s typed view. `columns` are the table's columns in table order
/// (data and lineage, as the warehouse lists them); each data column is cast by its pin, else
/// its inferred kind ([`TableColumns::view_kind`]); [`UNCAST_EVENT_COLUMNS`], lineage, text
/// columns and columns with no kind yet pass through unchanged.
pub fn typed_table_select(
    table: &TableColumns,
    columns: &[String],
    d: &TypedDialect<'_>,
) -> String {
    let raw_of: HashMap<&str, &str> = table
        .columns
        .iter()
        .map(|(raw, column)| (column.as_str(), raw.as_str()))
        .collect();
    let parts: Vec<String> = columns
        .iter()
        .map(|column| {
            let quoted = (d.ident)(column);
            let kind = raw_of
                .get(column.as_str())
                .filter(|raw| !UNCAST_EVENT_COLUMNS.contains(*raw))
                .and_then(|raw| table.view_kind(raw));
            match kind {
                Some(kind) if kind != ColumnKind::Text => {
                    format!("{} AS {quoted}", (d.cast)(&quoted, kind))
                }
                _ => quoted,
            }
        })
        .collect();
    format!(
        "SELECT {} FROM {}",
        parts.join(", "),
        (d.relation)(&table.name)
    )
}

/// The `SELECT` body of `bi_all_events`: `all_events`' columns, each standard column cast by
/// the kind it widens to across every event table (a `Campaign id` that is a number in one event
/// and text in another is text here).
pub fn typed_all_events_select(catalog: &Catalog, d: &TypedDialect<'_>) -> String {
    let kinds: HashMap<&str, Option<ColumnKind>> = ALL_EVENTS_COLUMNS
        .iter()
        .map(|raw| {
            let kind = catalog
                .event_tables()
                .fold(None, |k, t| widen_known(k, t.view_kind(raw)));
            (*raw, kind)
        })
        .collect();
    let value = |_: &TableColumns, raw: &str, column: Option<&str>| {
        let kind = kinds
            .get(raw)
            .copied()
            .flatten()
            .filter(|k| *k != ColumnKind::Text && !UNCAST_EVENT_COLUMNS.contains(&raw));
        match (column, kind) {
            (Some(c), Some(kind)) => (d.cast)(&(d.ident)(c), kind),
            (Some(c), None) => (d.ident)(c),
            (None, Some(kind)) => (d.null)(kind),
            (None, None) => (d.null)(ColumnKind::Text),
        }
    };
    catalog.all_events_select_mapped(d.ident, d.relation, &value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialect() -> TypedDialect<'static> {
        TypedDialect {
            ident: |s| format!("\"{s}\""),
            relation: &|t| format!("\"{t}\""),
            cast: |c, k| format!("{}({c})", k.as_str()),
            null: |k| format!("NULL_{}", k.as_str()),
        }
    }

    fn catalog() -> Catalog {
        let mut c = Catalog::new(Vec::new());
        let cols = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        c.plan(
            "Charged",
            &cols(&["ts", "eventName", "profile.phone", "Amount", "Note"]),
            10,
        )
        .unwrap();
        c.plan("Viewed", &cols(&["ts", "eventName", "profile.phone"]), 10)
            .unwrap();
        for (event, raw, kind) in [
            ("Charged", "ts", ColumnKind::Timestamp),
            ("Charged", "eventName", ColumnKind::Text),
            ("Charged", "profile.phone", ColumnKind::Integer),
            ("Charged", "Amount", ColumnKind::Integer),
            ("Charged", "Amount", ColumnKind::Decimal),
            ("Viewed", "profile.phone", ColumnKind::Text),
        ] {
            c.widen_kind(event, raw, kind);
        }
        c
    }

    #[test]
    fn a_typed_view_casts_data_columns_by_kind_and_passes_the_rest() {
        let c = catalog();
        let t = c.table("Charged").unwrap();
        let columns: Vec<String> = ["ts", "event_name", "profile_phone", "amount", "note"]
            .iter()
            .map(|s| s.to_string())
            .chain(super::super::LINEAGE_COLUMNS.iter().map(|s| s.to_string()))
            .collect();
        assert_eq!(
            typed_table_select(t, &columns, &dialect()),
            "SELECT \"ts\", \"event_name\", integer(\"profile_phone\") AS \"profile_phone\", \
             decimal(\"amount\") AS \"amount\", \"note\", \"_source_uri\", \"_source_line\", \
             \"_load_id\", \"_loaded_at\" FROM \"charged\""
        );
        assert_eq!(typed_view_name(&t.name), "bi_charged");
    }

    #[test]
    fn typed_all_events_widens_a_column_across_tables() {
        let sql = typed_all_events_select(&catalog(), &dialect());
        // profile.phone: integer in Charged, text in Viewed, so text in both selects.
        assert!(
            sql.contains("\"profile_phone\" AS \"profile_phone\""),
            "{sql}"
        );
        assert!(!sql.contains("integer("), "{sql}");
        assert!(sql.contains("NULL_text AS \"profile_email\""), "{sql}");
        assert_eq!(sql.matches("SELECT").count(), 2);
    }

    #[test]
    fn kinds_only_widen_and_unknown_columns_are_ignored() {
        let mut c = catalog();
        assert_eq!(c.widen_kind("Charged", "Amount", ColumnKind::Integer), None);
        assert_eq!(c.widen_kind("Charged", "Nope", ColumnKind::Integer), None);
        assert_eq!(
            c.widen_kind("Charged", "Amount", ColumnKind::Boolean),
            Some(("charged".to_string(), ColumnKind::Text))
        );
        assert_eq!(c.widen_kind("Charged", "Amount", ColumnKind::Integer), None);
        assert_eq!(
            c.table("Charged").unwrap().kind("Amount"),
            Some(ColumnKind::Text)
        );
    }

    #[test]
    fn no_new_event_table_takes_a_typed_view_name() {
        let mut c = Catalog::new(Vec::new());
        let plan = c.plan("BI Charged", &["ts".to_string()], 10).unwrap();
        assert_eq!(plan.table, "event_bi_charged");
    }

    #[test]
    fn identity_and_ts_are_never_cast_whatever_their_kind_or_pin() {
        let mut c = catalog();
        c.plan("Charged", &["profile.identity".to_string()], 10)
            .unwrap();
        c.widen_kind("Charged", "profile.identity", ColumnKind::Integer);
        c.set_pinned("charged", "ts", ColumnKind::Text);
        c.set_pinned("charged", "profile.identity", ColumnKind::Integer);
        let t = c.table("Charged").unwrap();
        let columns = vec!["ts".to_string(), "profile_identity".to_string()];
        assert_eq!(
            typed_table_select(t, &columns, &dialect()),
            "SELECT \"ts\", \"profile_identity\" FROM \"charged\""
        );
        let all = typed_all_events_select(&c, &dialect());
        assert!(
            all.contains("\"profile_identity\" AS \"profile_identity\""),
            "{all}"
        );
    }
}
