//! [`SlackDestination`]: Slack incoming webhooks, with a message built from the payload (text
//! plus Block Kit) inside Slack's limits, posted by the one Slack client ([`crate::slack`]),
//! which owns the "200 but not `ok`" rule and says what a retry can change.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::secret::Secret;
use crate::slack::{SlackError, SlackWebhook, escape_mrkdwn};
use crate::webhook_relay::destinations::{
    DeliveryAttempt, DeliveryError, Destination, retry_after_wait,
};
use crate::webhook_relay::payload::{CleverTapWebhook, clevertap_webhook};

/// Slack's limit on blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Slack's limit on a section's text.
pub const MAX_SECTION_TEXT: usize = 3000;
/// Slack's limits on a section's fields: 10 fields of at most 2000 characters.
pub const MAX_FIELDS: usize = 10;
const MAX_FIELD_TEXT: usize = 2000;
/// Profiles listed one by one; the rest are counted.
const MAX_PROFILES_LISTED: usize = 20;

/// Posts messages to one Slack incoming webhook.
pub struct SlackDestination {
    slack: SlackWebhook,
    timeout: Duration,
}

impl SlackDestination {
    /// A destination posting to `url` with `client` (which carries the timeout and follows no
    /// redirects).
    pub fn new(client: reqwest::Client, url: Secret, timeout: Duration) -> Self {
        Self {
            slack: SlackWebhook::new(client, url),
            timeout,
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max - 1).collect();
    s.push('…');
    s
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, MAX_SECTION_TEXT)}})
}

fn clevertap_message(route: &str, hook: &CleverTapWebhook) -> Value {
    let title = match (&hook.event, &hook.target_id) {
        (Some(event), _) => format!("{} (route {route})", escape_mrkdwn(event)),
        (None, Some(target)) => format!(
            "CleverTap webhook {} (route {route})",
            escape_mrkdwn(target)
        ),
        (None, None) => format!("CleverTap webhook (route {route})"),
    };
    let text = format!("{title}: {} profile(s)", hook.profiles.len());
    let mut blocks = vec![section(format!("*{title}*"))];
    let mut fields: Vec<Value> = Vec::new();
    if let Some(target) = &hook.target_id {
        fields.push(
            json!({"type": "mrkdwn", "text": format!("*targetId*\n{}", escape_mrkdwn(target))}),
        );
    }
    for (key, value) in &hook.key_values {
        if fields.len() == MAX_FIELDS {
            break;
        }
        fields.push(json!({"type": "mrkdwn",
            "text": truncate(&format!("*{}*\n{}", escape_mrkdwn(key), escape_mrkdwn(value)), MAX_FIELD_TEXT)}));
    }
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if !hook.profiles.is_empty() {
        let mut lines: Vec<String> = hook
            .profiles
            .iter()
            .take(MAX_PROFILES_LISTED)
            .map(|p| {
                let who = p.identity.as_deref().unwrap_or("(no identity)");
                let mut line = format!("• `{}`", escape_mrkdwn(who));
                if let Some(name) = &p.name {
                    line.push_str(&format!(" {}", escape_mrkdwn(name)));
                }
                if let Some(email) = &p.email {
                    line.push_str(&format!(" {}", escape_mrkdwn(email)));
                }
                line
            })
            .collect();
        if hook.profiles.len() > MAX_PROFILES_LISTED {
            lines.push(format!(
                "… and {} more",
                hook.profiles.len() - MAX_PROFILES_LISTED
            ));
        }
        blocks.push(section(lines.join("\n")));
    }
    blocks.truncate(MAX_BLOCKS);
    json!({"text": text, "blocks": blocks})
}

/// The Slack message for a payload: CleverTap webhooks get a title (event or targetId), the
/// key-values as fields and the profiles' identities; other JSON is shown as a code block, under
/// its top-level `text` when it has one (what Tapline's alerts send: the sentence a person reads,
/// the figures below it), else under "Webhook on route R".
pub fn slack_message(route: &str, body: &Value) -> Value {
    if let Some(hook) = clevertap_webhook(body) {
        return clevertap_message(route, &hook);
    }
    let pretty = serde_json::to_string_pretty(body).unwrap_or_default();
    // Room for the code fence inside the section limit.
    let shown = truncate(&escape_mrkdwn(&pretty), MAX_SECTION_TEXT - 8);
    let headline = body
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty());
    let (text, title) = match headline {
        Some(t) => {
            let t = truncate(&escape_mrkdwn(t), MAX_SECTION_TEXT);
            (t.clone(), t)
        }
        None => {
            let t = format!("Webhook on route {route}");
            (t.clone(), format!("*{t}*"))
        }
    };
    json!({"text": text, "blocks": [section(title), section(format!("```{shown}```"))]})
}

#[async_trait]
impl Destination for SlackDestination {
    async fn deliver(&self, attempt: DeliveryAttempt<'_>) -> Result<u16, DeliveryError> {
        let body: Value = serde_json::from_slice(attempt.body).unwrap_or(Value::Null);
        let message = slack_message(attempt.route, &body);
        match self.slack.post(&message).await {
            Ok(()) => Ok(200),
            Err(SlackError::Unreachable(e)) => Err(DeliveryError::from_reqwest(e, self.timeout)),
            Err(SlackError::NotOk { body }) => Err(DeliveryError::SlackNotOk { body }),
            Err(SlackError::Status {
                status,
                body,
                retry_after,
            }) => Err(DeliveryError::Status {
                status,
                body,
                retry_after: retry_after.and_then(|v| retry_after_wait(&v, attempt.now_ms)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clevertap_payloads_become_blocks_within_limits() {
        let mut kv = serde_json::Map::new();
        for i in 0..30 {
            kv.insert(format!("k{i}"), json!("x".repeat(5000)));
        }
        let profiles: Vec<Value> = (0..100)
            .map(|i| json!({"identity": format!("u{i}"), "Email": "<@here>"}))
            .collect();
        let body = json!({"targetId": 7, "key_values": kv, "profiles": profiles});
        let msg = slack_message("alerts", &body);
        let blocks = msg["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS);
        assert!(blocks[1]["fields"].as_array().unwrap().len() <= MAX_FIELDS);
        for block in blocks {
            if let Some(text) = block["text"]["text"].as_str() {
                assert!(text.chars().count() <= MAX_SECTION_TEXT);
                assert!(!text.contains("<@here>"), "mentions are escaped");
            }
        }
        assert!(msg["text"].as_str().unwrap().contains("100 profile"));
    }

    #[test]
    fn a_top_level_text_heads_the_message_escaped() {
        let body = json!({"tapline_alert": {"count": 12}, "text": "Charged fell to 12 <@here>"});
        let msg = slack_message("alerts", &body);
        assert_eq!(msg["text"], "Charged fell to 12 &lt;@here&gt;");
        assert_eq!(
            msg["blocks"][0]["text"]["text"],
            "Charged fell to 12 &lt;@here&gt;"
        );
        let code = msg["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            code.starts_with("```") && code.contains("\"count\": 12"),
            "{code}"
        );
        // A blank or non-string `text` is no headline.
        let msg = slack_message("alerts", &json!({"text": "  "}));
        assert_eq!(msg["text"], "Webhook on route alerts");
        let msg = slack_message("alerts", &json!({"text": 5}));
        assert_eq!(msg["text"], "Webhook on route alerts");
    }

    #[test]
    fn other_json_is_a_code_block() {
        let msg = slack_message("subs", &json!({"event": "renewal", "amount": 5}));
        assert!(
            msg["blocks"][1]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("renewal")
        );
    }
}
