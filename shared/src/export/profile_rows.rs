//! What makes a profile record (an Export Center CSV row or JSON line, or an API record already
//! reshaped to that JSON) a profile snapshot row: its key, its hash, its leading columns and
//! the names of its property columns. The CSV and JSON parsers read the records and call these,
//! so both formats give the same key, hash and columns for the same profile.

use std::borrow::Cow;

use serde_json::Value;

use super::TS_COLUMN;
use super::row_checks::CheckFailure;

/// The profile's key column: its `identity`, else its `clevertapId`.
pub const IDENTITY_COLUMN: &str = "identity";
/// The CleverTap ID a profile without an identity is keyed by.
pub const CLEVERTAP_ID_COLUMN: &str = "clevertapId";
/// The column holding [`profile_hash`] of the row's properties.
pub const PROFILE_HASH_COLUMN: &str = "_profile_hash";
/// The column holding the whole record as compact JSON.
pub const RECORD_COLUMN: &str = "_record";
/// The leading columns of every snapshot row, in order; the properties follow.
pub const SNAPSHOT_COLUMNS: [&str; 4] = [
    IDENTITY_COLUMN,
    TS_COLUMN,
    PROFILE_HASH_COLUMN,
    RECORD_COLUMN,
];
/// The reject reason of a profile with neither key.
pub const NO_KEY_REASON: &str = "a profile needs an identity or a clevertapId";
/// Appended to a property whose raw name is one of ours (`ts`, `_profile_hash`, `_record`):
/// `ts` becomes `ts (property)` (column `ts_property`), so its value is kept, not refused.
pub const RENAMED_PROPERTY_SUFFIX: &str = " (property)";
/// Properties CleverTap writes as a list, in one documented revision as a JSON array and in
/// another as the text `"[a, b]"`: both are stored as the same JSON array text.
pub const LIST_PROPERTIES: [&str; 2] = ["all_identities", "clevertapIds"];

/// The raw column name of a property: its own, unless it is one of [`SNAPSHOT_COLUMNS`] other
/// than `identity` (which is the key column itself); then [`RENAMED_PROPERTY_SUFFIX`] is added.
pub fn property_column(raw: &str) -> Cow<'_, str> {
    if raw != IDENTITY_COLUMN && SNAPSHOT_COLUMNS.contains(&raw) {
        Cow::Owned(format!("{raw}{RENAMED_PROPERTY_SUFFIX}"))
    } else {
        Cow::Borrowed(raw)
    }
}

/// The stored text of a [`LIST_PROPERTIES`] value, `None` for any other property. A JSON array
/// (`["a","b"]`, or `[1,2]`) and the bracketed text CleverTap also writes (`[a, b]`, or a bare
/// `a, b`) both become a compact JSON array of strings: `["a","b"]`.
pub fn list_property_text(raw: &str, text: &str) -> Option<String> {
    if !LIST_PROPERTIES.contains(&raw) {
        return None;
    }
    let items: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .filter(|item| !item.is_null())
            .map(|item| match item {
                Value::String(s) => Value::String(s),
                other => Value::String(other.to_string()),
            })
            .collect(),
        _ => {
            let trimmed = text.trim();
            let inner = trimmed
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .unwrap_or(trimmed);
            inner
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_string()))
                .collect()
        }
    };
    Some(Value::Array(items).to_string())
}

/// The snapshot key of a profile: its `identity`, else its `clevertapId` (blank counts as
/// absent); neither is a row reject with [`NO_KEY_REASON`].
pub fn snapshot_key<'t>(
    identity: Option<&'t str>,
    clevertap_id: Option<&'t str>,
) -> Result<&'t str, CheckFailure> {
    let present = |text: &&str| !text.trim().is_empty();
    identity
        .filter(present)
        .or(clevertap_id.filter(present))
        .ok_or((Some(IDENTITY_COLUMN), NO_KEY_REASON.to_string()))
}

/// `_profile_hash`: 16 lowercase hex digits of FNV-1a 64 over a profile's properties, so a
/// profile that did not change has the same hash in every snapshot, from CSV, JSON or the API.
///
/// The input is every field of the record whose value is not NULL (absent, JSON `null`, or
/// empty text), `identity` included, as `(raw name, value text)`: the raw name as the source
/// gives it (nested JSON objects as dotted names, before any [`property_column`] rename), the
/// value text as the row stores it (JSON strings unquoted, numbers and booleans as JSON writes
/// them, arrays as compact JSON, [`LIST_PROPERTIES`] as [`list_property_text`]). The pairs are
/// sorted by name bytes, then value bytes, and each pair is fed as, in this order:
/// the name's byte length as 8 bytes little-endian, the name's UTF-8 bytes, the value's byte
/// length as 8 bytes little-endian, the value's UTF-8 bytes. FNV-1a 64 starts from the offset
/// basis `0xcbf29ce484222325` and, per byte, XORs it in and multiplies by the prime
/// `0x100000001b3` (wrapping). The hash is written with `{:016x}`. This layout is stored in
/// every warehouse: changing it makes every profile look changed once.
pub fn profile_hash<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut pairs: Vec<(&str, &str)> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    pairs.sort_unstable();
    let mut hash = OFFSET_BASIS;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in pairs {
        for part in [name, value] {
            feed(&(part.len() as u64).to_le_bytes());
            feed(part.as_bytes());
        }
    }
    format!("{hash:016x}")
}

/// `_record` of a CSV row: a JSON object of its non-empty fields, by header name, as written.
pub fn csv_record_text<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let object: serde_json::Map<String, Value> = fields
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_properties_take_one_form() {
        for text in [
            r#"["a","b"]"#,
            "[a, b]",
            "a,b",
            " [ a ,b ] ",
            r#"["a", "b", null]"#,
        ] {
            assert_eq!(
                list_property_text("all_identities", text).as_deref(),
                Some(r#"["a","b"]"#),
                "{text}"
            );
        }
        assert_eq!(
            list_property_text("clevertapIds", "[1, 2]").as_deref(),
            Some(r#"["1","2"]"#)
        );
        assert_eq!(
            list_property_text("clevertapIds", "[]").as_deref(),
            Some("[]")
        );
        assert_eq!(list_property_text("Email", "[a, b]"), None);
    }

    #[test]
    fn the_key_is_the_identity_else_the_clevertap_id() {
        assert_eq!(snapshot_key(Some("u1"), Some("__g1")), Ok("u1"));
        assert_eq!(snapshot_key(Some(" "), Some("__g1")), Ok("__g1"));
        assert_eq!(snapshot_key(None, Some("__g1")), Ok("__g1"));
        assert_eq!(
            snapshot_key(Some(""), None),
            Err((
                Some("identity"),
                "a profile needs an identity or a clevertapId".to_string()
            ))
        );
    }

    #[test]
    fn reserved_names_are_renamed_and_identity_is_the_key() {
        assert_eq!(property_column("ts"), "ts (property)");
        assert_eq!(property_column("_record"), "_record (property)");
        assert_eq!(property_column("_profile_hash"), "_profile_hash (property)");
        assert_eq!(property_column("identity"), "identity");
        assert_eq!(property_column("Blood Group"), "Blood Group");
    }

    #[test]
    fn the_hash_layout_is_stable() {
        // Pinned: these values are stored in warehouses; a change here changes every profile.
        assert_eq!(profile_hash([]), "cbf29ce484222325");
        let hash = profile_hash([("identity", "u1"), ("Email", "a@b.c")]);
        assert_eq!(hash, profile_hash([("Email", "a@b.c"), ("identity", "u1")]));
        assert_eq!(
            hash,
            profile_hash([("Email", "a@b.c"), ("identity", "u1"), ("x", "")])
        );
        assert_eq!(hash, "4b40df640c862d5f", "computed independently (Python)");
        // Lengths keep the parts apart: moving a byte between name and value changes it.
        assert_ne!(profile_hash([("ab", "c")]), profile_hash([("a", "bc")]));
    }
}
