//! Get Message Reports (`POST /1/message/report.json`): the messages CleverTap sent in a date
//! range with their figures. `from` and `to` are required; `channel` filters. Tapline asks one
//! day at a time without `daily`, so each answer is that day's aggregate per message. A day
//! whose report is not computed yet is answered like an unfinished campaign's report (a
//! `fail` "not completed", HTTP 500 "no result as of yet", or a success without `messages`):
//! it is [`MessageReport::NotReady`], not a failure.

use jiff::civil::Date;
use serde_json::{Value, json};

use super::client::{ClevertapClient, Method};
use super::cursor::day_number;
use super::error::ApiError;

/// The channels Get Message Reports filters by (its documented values).
pub const MESSAGE_CHANNELS: &[&str] = &[
    "push",
    "email",
    "sms",
    "browser",
    "audiences",
    "inapp",
    "webhooks",
    "web_pop_up",
    "web_exit_intent",
    "web_native_display",
    "web_inbox",
];

/// One day's message report, or the word that it has none yet.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageReport {
    /// The `messages` array, one object per message.
    Ready(Vec<Value>),
    /// Not computed yet: ask again on the next run.
    NotReady(String),
}

impl ClevertapClient {
    /// The report of the messages sent on `day` (the project's time zone), optionally only on
    /// `channels` (values of [`MESSAGE_CHANNELS`]).
    pub async fn message_report(
        &self,
        day: Date,
        channels: &[String],
    ) -> Result<MessageReport, ApiError> {
        let mut body = json!({"from": day_number(day), "to": day_number(day), "daily": false});
        if !channels.is_empty() {
            body["channel"] = json!(channels);
        }
        match self
            .request(Method::Post, "/1/message/report.json", Some(&body))
            .await
        {
            Ok(answer) => match answer.get("messages") {
                Some(Value::Array(messages)) => Ok(MessageReport::Ready(messages.clone())),
                None | Some(Value::Null) => Ok(MessageReport::NotReady(
                    "the answer has no messages yet".to_string(),
                )),
                Some(_) => Err(ApiError::Unexpected {
                    operation: "POST /1/message/report.json".to_string(),
                    detail: "messages is not an array".to_string(),
                }),
            },
            Err(ApiError::ResultNotReady { message, .. }) => Ok(MessageReport::NotReady(message)),
            Err(e) => Err(e),
        }
    }
}
