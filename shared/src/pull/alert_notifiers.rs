//! Where a breached alert rule goes: the [`AlertNotifier`] port and its two adapters.
//!
//! - [`SlackAlertNotifier`]: a Slack incoming webhook, posted once (a laptop, `tapline alerts`).
//! - [`RelayAlertNotifier`]: a route of the webhook relay (`…/hooks/alerts`), authenticated by
//!   a header token. The relay accepts the breach at once and its Slack destination delivers it
//!   with retries, backoff and dead letters, so a Slack outage during the scheduled run does not
//!   lose the alert. This is the one to use in the cloud.
//!
//! Configuration (read once, [`alert_notifier_from_lookup`]): `TAPLINE_ALERTS_RELAY_URL` with
//! `TAPLINE_ALERTS_RELAY_TOKEN` (or `TAPLINE_ALERTS_RELAY_TOKEN_SECRET_ARN`) and optionally
//! `TAPLINE_ALERTS_RELAY_HEADER`; or `TAPLINE_ALERTS_SLACK_URL`. Not both.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::alerts::AlertResult;

/// Environment variable: the Slack incoming webhook URL alerts are posted to directly.
pub const ENV_ALERTS_SLACK_URL: &str = "TAPLINE_ALERTS_SLACK_URL";
/// Environment variable: the webhook relay route alerts are posted to (`https://…/hooks/alerts`).
pub const ENV_ALERTS_RELAY_URL: &str = "TAPLINE_ALERTS_RELAY_URL";
/// Environment variable: the header the relay route authenticates (default `X-Tapline-Token`).
pub const ENV_ALERTS_RELAY_HEADER: &str = "TAPLINE_ALERTS_RELAY_HEADER";
/// Environment variable: the relay route's token (local runs).
pub const ENV_ALERTS_RELAY_TOKEN: &str = "TAPLINE_ALERTS_RELAY_TOKEN";
/// Environment variable: the Secrets Manager ARN of the relay route's token (cloud runs).
pub const ENV_ALERTS_RELAY_TOKEN_SECRET_ARN: &str = "TAPLINE_ALERTS_RELAY_TOKEN_SECRET_ARN";
/// The relay route's auth header when none is configured.
pub const DEFAULT_RELAY_HEADER: &str = "X-Tapline-Token";

const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a breach could not be handed on.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The endpoint could not be reached (or timed out).
    #[error("{target} unreachable")]
    Unreachable {
        /// `Slack` or `the relay`.
        target: &'static str,
        /// Why (without the URL, which may hold a secret).
        #[source]
        source: reqwest::Error,
    },
    /// The endpoint answered, but not with its success.
    #[error("{target} answered HTTP {status}{}", detail(.body))]
    Refused {
        /// `Slack` or `the relay`.
        target: &'static str,
        /// The HTTP status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
}

/// `: <body>`, or nothing for an empty answer (a bare 401 says all it says).
fn detail(body: &str) -> String {
    if body.trim().is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl NotifyError {
    /// Whether posting again later may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Unreachable { .. } => true,
            NotifyError::Refused { status, .. } => *status == 429 || *status >= 500,
        }
    }
}

/// Hands a breached rule's result to whoever tells people.
#[async_trait]
pub trait AlertNotifier: fmt::Debug + Send + Sync {
    /// Delivers (or durably hands over) one breach; `Ok` means nobody has to post it again.
    async fn notify(&self, result: &AlertResult) -> Result<(), NotifyError>;
}

/// The Slack text of a breach.
pub fn alert_text(result: &AlertResult) -> String {
    format!("Tapline alert: {}", result.message)
}

/// Posts breaches to a Slack incoming webhook; success is HTTP 200 with body `ok`.
pub struct SlackAlertNotifier {
    http: reqwest::Client,
    url: String,
}

impl SlackAlertNotifier {
    /// A notifier posting to `url` (a secret: never logged).
    pub fn new(http: reqwest::Client, url: String) -> Self {
        Self { http, url }
    }
}

impl fmt::Debug for SlackAlertNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SlackAlertNotifier { url: <secret> }")
    }
}

fn snippet(body: &str) -> String {
    body.trim().chars().take(200).collect()
}

#[async_trait]
impl AlertNotifier for SlackAlertNotifier {
    async fn notify(&self, result: &AlertResult) -> Result<(), NotifyError> {
        let response = self
            .http
            .post(&self.url)
            .json(&json!({ "text": alert_text(result) }))
            .send()
            .await
            .map_err(|e| NotifyError::Unreachable {
                target: "Slack",
                source: e.without_url(),
            })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        // Slack answers some failures with HTTP 200 and another body.
        if status.is_success() && body.trim() == "ok" {
            Ok(())
        } else {
            Err(NotifyError::Refused {
                target: "Slack",
                status: status.as_u16(),
                body: snippet(&body),
            })
        }
    }
}

/// Posts breaches to a webhook relay route, whose Slack destination delivers them with retries
/// and dead letters. Any 2xx means the relay stored the payload.
pub struct RelayAlertNotifier {
    http: reqwest::Client,
    url: String,
    header: String,
    token: String,
}

impl RelayAlertNotifier {
    /// A notifier posting to the route `url`, with `token` in the `header` the route checks.
    pub fn new(http: reqwest::Client, url: String, header: String, token: String) -> Self {
        Self {
            http,
            url,
            header,
            token,
        }
    }
}

impl fmt::Debug for RelayAlertNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayAlertNotifier")
            .field("url", &self.url)
            .field("header", &self.header)
            .field("token", &"<secret>")
            .finish()
    }
}

/// The JSON a breach is posted to the relay as: the figures as fields (the relay's Slack
/// message shows them), and `text`, the sentence a person reads.
pub fn relay_payload(result: &AlertResult) -> serde_json::Value {
    json!({
        "tapline_alert": {
            "rule": result.rule.name,
            "event": result.rule.event,
            "day": result.day.to_string(),
            "status": "breached",
            "count": result.count,
            "baseline": result.baseline.map(|b| (b * 10.0).round() / 10.0),
        },
        "text": alert_text(result),
    })
}

#[async_trait]
impl AlertNotifier for RelayAlertNotifier {
    async fn notify(&self, result: &AlertResult) -> Result<(), NotifyError> {
        let response = self
            .http
            .post(&self.url)
            .header(self.header.as_str(), self.token.as_str())
            .json(&relay_payload(result))
            .send()
            .await
            .map_err(|e| NotifyError::Unreachable {
                target: "the relay",
                source: e.without_url(),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(NotifyError::Refused {
            target: "the relay",
            status: status.as_u16(),
            body: snippet(&body),
        })
    }
}

/// An alerts setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AlertConfigError {
    /// A combination or value is wrong.
    #[error("{name}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The token's secret could not be read.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// The notifier the `TAPLINE_ALERTS_*` variables (read through `get`) describe; `None` when
/// none is configured (results are still stored in `alert_runs`). Reads the relay token's
/// secret when it is given by ARN, so call it once, at start.
pub async fn alert_notifier_from_lookup(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<Arc<dyn AlertNotifier>>, AlertConfigError> {
    let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let http = reqwest::Client::builder()
        .timeout(NOTIFY_TIMEOUT)
        .build()
        .map_err(AlertConfigError::Http)?;
    match (set(ENV_ALERTS_RELAY_URL), set(ENV_ALERTS_SLACK_URL)) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(AlertConfigError::Invalid {
            name: ENV_ALERTS_RELAY_URL,
            reason: format!("{ENV_ALERTS_SLACK_URL} is set too: keep one"),
        }),
        (None, Some(url)) => Ok(Some(Arc::new(SlackAlertNotifier::new(http, url)))),
        (Some(url), None) => {
            let token = match (
                set(ENV_ALERTS_RELAY_TOKEN),
                set(ENV_ALERTS_RELAY_TOKEN_SECRET_ARN),
            ) {
                (Some(token), None) => token,
                (None, Some(arn)) => crate::secrets::read_secret(&arn)
                    .await?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                (None, None) => {
                    return Err(AlertConfigError::Invalid {
                        name: ENV_ALERTS_RELAY_URL,
                        reason: format!(
                            "set {ENV_ALERTS_RELAY_TOKEN} or {ENV_ALERTS_RELAY_TOKEN_SECRET_ARN} (the route's token)"
                        ),
                    });
                }
                (Some(_), Some(_)) => {
                    return Err(AlertConfigError::Invalid {
                        name: ENV_ALERTS_RELAY_TOKEN,
                        reason: format!("{ENV_ALERTS_RELAY_TOKEN_SECRET_ARN} is set too: keep one"),
                    });
                }
            };
            let header =
                set(ENV_ALERTS_RELAY_HEADER).unwrap_or_else(|| DEFAULT_RELAY_HEADER.into());
            Ok(Some(Arc::new(RelayAlertNotifier::new(
                http, url, header, token,
            ))))
        }
    }
}

/// [`alert_notifier_from_lookup`] over the process environment.
pub async fn alert_notifier_from_env() -> Result<Option<Arc<dyn AlertNotifier>>, AlertConfigError> {
    alert_notifier_from_lookup(|name| std::env::var(name).ok()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    async fn notifier(pairs: &[(&str, &str)]) -> Result<Option<String>, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        alert_notifier_from_lookup(|k| map.get(k).cloned())
            .await
            .map(|n| n.map(|n| format!("{n:?}")))
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn the_notifier_comes_from_one_setting_and_hides_its_secrets() {
        assert_eq!(notifier(&[]).await, Ok(None));
        assert_eq!(
            notifier(&[(
                ENV_ALERTS_SLACK_URL,
                "https://hooks.slack.com/services/T/B/x"
            )])
            .await,
            Ok(Some("SlackAlertNotifier { url: <secret> }".into()))
        );
        assert_eq!(
            notifier(&[
                (ENV_ALERTS_RELAY_URL, "https://relay/hooks/alerts"),
                (ENV_ALERTS_RELAY_TOKEN, "tok-123"),
            ])
            .await,
            Ok(Some(
                "RelayAlertNotifier { url: \"https://relay/hooks/alerts\", header: \
                 \"X-Tapline-Token\", token: \"<secret>\" }"
                    .into()
            ))
        );
        assert_eq!(
            notifier(&[(ENV_ALERTS_RELAY_URL, "https://relay/hooks/alerts")]).await,
            Err(
                "TAPLINE_ALERTS_RELAY_URL: set TAPLINE_ALERTS_RELAY_TOKEN or \
                 TAPLINE_ALERTS_RELAY_TOKEN_SECRET_ARN (the route's token)"
                    .into()
            )
        );
        assert_eq!(
            notifier(&[
                (ENV_ALERTS_RELAY_URL, "https://relay/hooks/alerts"),
                (ENV_ALERTS_SLACK_URL, "https://hooks.slack.com/x"),
            ])
            .await,
            Err("TAPLINE_ALERTS_RELAY_URL: TAPLINE_ALERTS_SLACK_URL is set too: keep one".into())
        );
    }
}
