//! Column types a user pins for the typed views (`--column-types types.toml`, or the functions'
//! `TAPLINE_COLUMN_TYPES`): a pinned column is cast to the pinned kind whatever its values'
//! inferred kind is, and a value that does not fit it is NULL in the view (counted in
//! `tapline status`) and kept, as it came, in the raw table.
//!
//! ```toml
//! # A table name (as the warehouse shows it) or "*" for every event table; then the column's
//! # raw CleverTap name or its column name; then a kind.
//! [charged]
//! "eventProps.Amount" = "decimal"
//!
//! ["*"]
//! "profile.phone" = "text"
//! ```
//!
//! Kinds: `integer`, `decimal`, `boolean`, `timestamp`, `json`, `text`. A table's own entry wins
//! over `"*"`. Pins are stored in the warehouse (`_tapline_columns.pinned`) when a load is given a
//! types file: the file is then the whole set (a pin it no longer names is removed). A load given
//! none keeps the stored pins.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::column_kinds::ColumnKind;
use crate::config::ConfigError;

/// The table key that applies to every event table.
pub const ANY_TABLE: &str = "*";

/// Most pins one file may hold: a types file is written by hand; a huge one is a mistake.
pub const MAX_PINS: usize = 10_000;

/// Longest table or column key accepted (bytes); longer than any name a warehouse keeps.
pub const MAX_KEY_BYTES: usize = 1_024;

/// Largest types file read (bytes): [`MAX_PINS`] lines of long names fit; a bigger file is not
/// one written by hand, and is refused before it is held in memory.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Environment variable holding the functions' column types: the TOML text itself (a Lambda
/// or Cloud Run service has no file to point at), or `@PATH` for a file the container mounts.
/// Unset or blank: the stored pins stay.
pub const ENV_COLUMN_TYPES: &str = "TAPLINE_COLUMN_TYPES";

/// A parsed types file: table key → column key → kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnTypes {
    tables: BTreeMap<String, BTreeMap<String, ColumnKind>>,
}

impl ColumnTypes {
    /// Parses a types file's text; `origin` names it in errors (a path or an env var).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError::ColumnTypes {
            origin: origin.to_string(),
            reason,
        };
        let doc: toml::Table = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        let mut tables = BTreeMap::new();
        let mut pins = 0usize;
        for (table, columns) in doc {
            check_key(&table).map_err(|r| bad(format!("table {r}")))?;
            let toml::Value::Table(columns) = columns else {
                return Err(bad(format!(
                    "[{}] must be a table of column = \"kind\" lines",
                    printable(&table)
                )));
            };
            let mut kinds = BTreeMap::new();
            for (column, kind) in columns {
                check_key(&column).map_err(|r| bad(format!("column {r}")))?;
                pins += 1;
                if pins > MAX_PINS {
                    return Err(bad(format!("more than {MAX_PINS} pins")));
                }
                let kind = kind.as_str().and_then(parse_kind).ok_or_else(|| {
                    bad(format!(
                        "{}.{}: the kind must be one of \"integer\", \"decimal\", \
                             \"boolean\", \"timestamp\", \"json\", \"text\"",
                        printable(&table),
                        printable(&column)
                    ))
                })?;
                kinds.insert(column, kind);
            }
            tables.insert(table, kinds);
        }
        Ok(Self { tables })
    }

    /// Reads and parses the types file at `path` (`--column-types FILE`, or `@FILE` in
    /// [`ENV_COLUMN_TYPES`]); errors name the file.
    pub fn read_file(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let bad = |reason: String| ConfigError::ColumnTypes {
            origin: origin.clone(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open it: {e}")))?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("cannot read it: {e}")))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(bad(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".to_string()))?;
        Self::parse(&text, &origin)
    }

    /// The functions' column types from [`ENV_COLUMN_TYPES`] through `var` (tests pass their
    /// own lookup): the TOML itself, or `@PATH` to read a file. `None` when unset or blank.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some(value) = var(ENV_COLUMN_TYPES).filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        match value.trim().strip_prefix('@') {
            Some(path) => Self::read_file(Path::new(path)).map(Some),
            None => Self::parse(&value, ENV_COLUMN_TYPES).map(Some),
        }
    }

    /// Whether the file pins nothing.
    pub fn is_empty(&self) -> bool {
        self.tables.values().all(BTreeMap::is_empty)
    }

    /// The kind pinned for raw column `raw` (column name `column`) of table `table`: the
    /// table's own entry, else `"*"`'s; by raw name first, then by column name.
    pub fn pin(&self, table: &str, raw: &str, column: &str) -> Option<ColumnKind> {
        [table, ANY_TABLE].iter().find_map(|t| {
            let columns = self.tables.get(*t)?;
            columns.get(raw).or_else(|| columns.get(column)).copied()
        })
    }
}

/// A kind's exact name (no "text" for an unknown word, unlike [`ColumnKind::parse`]).
fn parse_kind(text: &str) -> Option<ColumnKind> {
    let kind = ColumnKind::parse(text);
    (kind.as_str() == text).then_some(kind)
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("names may not be empty".to_string());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!("names may not pass {MAX_KEY_BYTES} bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err(format!("{} holds a control character", printable(key)));
    }
    Ok(())
}

/// A key as an error may show it: control characters escaped, cut at 80 characters.
fn printable(key: &str) -> String {
    let shown: String = key.chars().take(80).collect();
    format!("{:?}", shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_entry_wins_over_any_and_raw_names_over_column_names() {
        let t = ColumnTypes::parse(
            "[charged]\n\"eventProps.Amount\" = \"decimal\"\nevent_props_note = \"json\"\n\
             [\"*\"]\n\"eventProps.Amount\" = \"text\"\n\"profile.phone\" = \"text\"\n",
            "types.toml",
        )
        .unwrap();
        assert_eq!(
            t.pin("charged", "eventProps.Amount", "event_props_amount"),
            Some(ColumnKind::Decimal)
        );
        assert_eq!(
            t.pin("viewed", "eventProps.Amount", "event_props_amount"),
            Some(ColumnKind::Text)
        );
        assert_eq!(
            t.pin("charged", "eventProps.Note", "event_props_note"),
            Some(ColumnKind::Json)
        );
        assert_eq!(
            t.pin("viewed", "profile.phone", "profile_phone"),
            Some(ColumnKind::Text)
        );
        assert_eq!(t.pin("viewed", "profile.email", "profile_email"), None);
        assert!(!t.is_empty());
    }

    #[test]
    fn the_functions_take_the_toml_itself_or_a_file_after_an_at_sign() {
        let vars = |value: &'static str| {
            move |name: &str| (name == ENV_COLUMN_TYPES).then(|| value.to_string())
        };
        assert_eq!(ColumnTypes::from_vars(|_| None).unwrap(), None);
        assert_eq!(ColumnTypes::from_vars(vars("  \n")).unwrap(), None);
        let inline = ColumnTypes::from_vars(vars("[charged]\namount = \"decimal\"\n"))
            .unwrap()
            .unwrap();
        assert_eq!(
            inline.pin("charged", "Amount", "amount"),
            Some(ColumnKind::Decimal)
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("types.toml");
        std::fs::write(&path, "[\"*\"]\nphone = \"text\"\n").unwrap();
        let at = format!("@{}", path.display());
        let from_file = ColumnTypes::from_vars(|_| Some(at.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(
            from_file.pin("viewed", "Phone", "phone"),
            Some(ColumnKind::Text)
        );

        assert_eq!(
            ColumnTypes::from_vars(vars("[charged]\namount = 5\n"))
                .unwrap_err()
                .to_string(),
            "column types in TAPLINE_COLUMN_TYPES: \"charged\".\"amount\": the kind must be one \
             of \"integer\", \"decimal\", \"boolean\", \"timestamp\", \"json\", \"text\""
        );
        let missing = dir.path().join("missing.toml");
        let at_missing = format!("@{}", missing.display());
        assert_eq!(
            ColumnTypes::from_vars(|_| Some(at_missing.clone()))
                .unwrap_err()
                .to_string(),
            format!(
                "column types in {}: cannot open it: No such file or directory (os error 2)",
                missing.display()
            )
        );
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert_eq!(
            ColumnTypes::read_file(&big).unwrap_err().to_string(),
            format!(
                "column types in {}: larger than {MAX_FILE_BYTES} bytes",
                big.display()
            )
        );
    }

    #[test]
    fn a_bad_file_is_refused_with_its_origin_and_the_line_at_fault() {
        let err = |text: &str| {
            ColumnTypes::parse(text, "types.toml")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("[charged]\namount = \"money\"\n"),
            "column types in types.toml: \"charged\".\"amount\": the kind must be one of \
             \"integer\", \"decimal\", \"boolean\", \"timestamp\", \"json\", \"text\""
        );
        assert_eq!(
            err("amount = \"decimal\"\n"),
            "column types in types.toml: [\"amount\"] must be a table of column = \"kind\" lines"
        );
        assert_eq!(
            err("[charged]\n\"a\\u0007b\" = \"text\"\n"),
            "column types in types.toml: column \"a\\u{7}b\" holds a control character"
        );
        assert!(err("[charged\n").starts_with("column types in types.toml: "));
    }
}
