//! What the relay understands of a body: CleverTap's webhook shape, read leniently (key casing
//! varies between CleverTap's samples, `profiles` is an array for broadcasts and an object
//! otherwise). Anything else is passed through untouched; only the Slack message reads fields.

use serde_json::{Map, Value};

/// One profile of a CleverTap webhook, the fields a message shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileSummary {
    /// `identity` (or `objectId` when there is none).
    pub identity: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `name`.
    pub name: Option<String>,
}

/// The parts of a CleverTap webhook that routing and messages use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleverTapWebhook {
    /// `targetId`: the campaign or journey that sent it.
    pub target_id: Option<String>,
    /// `is_test`: CleverTap's test POST when a webhook is saved.
    pub is_test: bool,
    /// `key_values`: the custom key-values, in the payload's order, values as text.
    pub key_values: Vec<(String, String)>,
    /// The profiles (one for a triggered webhook, many for a broadcast).
    pub profiles: Vec<ProfileSummary>,
    /// The event that triggered it, when the profile carries `event_name` or the key-values an
    /// `event`/`event_name` key.
    pub event: Option<String>,
}

/// Looks a key up in `object` ignoring ASCII case (`objectId` vs `ObjectId`).
pub fn get_ci<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A JSON value as display text: strings bare, everything else as compact JSON.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn text_field(object: &Map<String, Value>, key: &str) -> Option<String> {
    match get_ci(object, key)? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        v => Some(as_text(v)),
    }
}

fn is_true(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// Reads `body` as a CleverTap webhook when it looks like one (an object with `targetId`,
/// `profiles`, `key_values` or `is_test`, any casing); `None` for any other JSON.
pub fn clevertap_webhook(body: &Value) -> Option<CleverTapWebhook> {
    let object = body.as_object()?;
    let known = ["targetId", "profiles", "key_values", "is_test"];
    if !known.iter().any(|k| get_ci(object, k).is_some()) {
        return None;
    }
    let key_values: Vec<(String, String)> = match get_ci(object, "key_values") {
        Some(Value::Object(kv)) => kv.iter().map(|(k, v)| (k.clone(), as_text(v))).collect(),
        _ => Vec::new(),
    };
    let profile_objects: Vec<&Map<String, Value>> = match get_ci(object, "profiles") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        Some(Value::Object(one)) => vec![one],
        _ => Vec::new(),
    };
    let profiles = profile_objects
        .iter()
        .map(|p| ProfileSummary {
            identity: text_field(p, "identity").or_else(|| text_field(p, "objectId")),
            email: text_field(p, "email"),
            name: text_field(p, "name"),
        })
        .collect();
    let event = profile_objects
        .iter()
        .find_map(|p| text_field(p, "event_name"))
        .or_else(|| {
            key_values
                .iter()
                .find(|(k, _)| {
                    k.eq_ignore_ascii_case("event") || k.eq_ignore_ascii_case("event_name")
                })
                .map(|(_, v)| v.clone())
        });
    Some(CleverTapWebhook {
        target_id: text_field(object, "targetId"),
        is_test: is_true(get_ci(object, "is_test")),
        key_values,
        profiles,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_documented_shape_with_either_casing() {
        let body = json!({"targetId":1659684581,"key_values":{"SomeKey1":"SomeValue1"},
            "profiles":[{"Email":"a@x.io","identity":"u1","ObjectId":"__Webhook227","Name":"Nick",
                         "event_properties":{"Product Id":1}}]});
        let hook = clevertap_webhook(&body).unwrap();
        assert_eq!(hook.target_id.as_deref(), Some("1659684581"));
        assert_eq!(
            hook.key_values,
            vec![("SomeKey1".into(), "SomeValue1".into())]
        );
        assert_eq!(hook.profiles[0].email.as_deref(), Some("a@x.io"));
        assert_eq!(hook.profiles[0].name.as_deref(), Some("Nick"));
        assert!(!hook.is_test);
    }

    #[test]
    fn a_single_profile_object_and_is_test_are_understood() {
        let body = json!({"IS_TEST":true,"TargetID":1,"profiles":{"objectId":"__g1"}});
        let hook = clevertap_webhook(&body).unwrap();
        assert!(hook.is_test);
        assert_eq!(hook.profiles.len(), 1);
        assert_eq!(hook.profiles[0].identity.as_deref(), Some("__g1"));
    }

    #[test]
    fn other_json_is_not_clevertap() {
        assert_eq!(clevertap_webhook(&json!({"event":"renewal"})), None);
        assert_eq!(clevertap_webhook(&json!([1, 2])), None);
    }
}
