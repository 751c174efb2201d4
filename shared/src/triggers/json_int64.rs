//! int64 fields of event JSON, in either form: proto3's JSON mapping allows a number or a
//! decimal string, and senders differ (Eventarc sends `"size": "2048"`, Google's own
//! StorageObjectData samples and some S3-compatible stores send numbers).

use std::fmt;

use serde::Deserializer;
use serde::de::{self, Visitor};

/// For `#[serde(default, deserialize_with = "json_int64::optional_u64")]`: a non-negative
/// int64 as a number or a decimal string; `null` or absent is `None`.
pub fn optional_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    deserializer.deserialize_any(Int64Visitor)
}

/// For `#[serde(default, deserialize_with = "json_int64::optional_decimal")]`: the same, kept
/// as its decimal text (a GCS generation is a version string to Tapline).
pub fn optional_decimal<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(optional_u64(deserializer)?.map(|n| n.to_string()))
}

struct Int64Visitor;

impl<'de> Visitor<'de> for Int64Visitor {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative int64 as a JSON number or a decimal string")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        // proto3 JSON writes int64 as plain decimal digits; anything else is not one.
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::invalid_value(de::Unexpected::Str(v), &self));
        }
        v.parse()
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Object {
        #[serde(default, deserialize_with = "super::optional_u64")]
        size: Option<u64>,
        #[serde(default, deserialize_with = "super::optional_decimal")]
        generation: Option<String>,
    }

    fn read(json: &str) -> Result<Object, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_and_strings_read_the_same() {
        let want = Object {
            size: Some(2048),
            generation: Some("1663785005461393".into()),
        };
        assert_eq!(
            read(r#"{"size": 2048, "generation": 1663785005461393}"#),
            Ok(want)
        );
        let want = Object {
            size: Some(2048),
            generation: Some("1663785005461393".into()),
        };
        assert_eq!(
            read(r#"{"size": "2048", "generation": "1663785005461393"}"#),
            Ok(want)
        );
        assert_eq!(
            read(r#"{"size": 18446744073709551615}"#).map(|o| o.size),
            Ok(Some(u64::MAX))
        );
        assert_eq!(
            read(r#"{"size": null}"#),
            Ok(Object {
                size: None,
                generation: None
            })
        );
        assert_eq!(
            read("{}"),
            Ok(Object {
                size: None,
                generation: None
            })
        );
    }

    #[test]
    fn what_is_not_an_int64_is_refused() {
        for bad in [
            r#"{"size": -1}"#,
            r#"{"size": "-1"}"#,
            r#"{"size": " 12"}"#,
            r#"{"size": "1e3"}"#,
            r#"{"size": 1.5}"#,
            r#"{"size": ""}"#,
            r#"{"size": "99999999999999999999"}"#,
            r#"{"size": true}"#,
        ] {
            let err = read(bad).unwrap_err();
            assert!(err.contains("int64"), "{bad}: {err}");
        }
    }
}
