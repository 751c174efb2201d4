//! Where a breached alert rule goes: the [`AlertNotifier`] port and its two adapters.
//!
//! - [`SlackAlertNotifier`]: a Slack incoming webhook, posted once (a laptop, `tapline alerts`)
//!   by the one Slack client ([`crate::slack`]), the relay's Slack destination's too.
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

use jiff::civil::Date;

use super::alert_rules::{AlertResult, AlertStatus};
use crate::secret::{Secret, SecretError, read_secret};
use crate::slack::{SlackError, SlackWebhook, escape_mrkdwn};

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
    /// Slack did not take the message (see [`SlackError`] for what a retry can change).
    #[error(transparent)]
    Slack(#[from] SlackError),
    /// The relay could not be reached (or timed out).
    #[error("{target} unreachable")]
    Unreachable {
        /// `the relay`.
        target: &'static str,
        /// Why (without the URL, which may hold a secret).
        #[source]
        source: reqwest::Error,
    },
    /// The relay answered, but not with its success.
    #[error("{target} answered HTTP {status}{}", detail(.body))]
    Refused {
        /// `the relay`.
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
            NotifyError::Slack(e) => e.is_retryable(),
            NotifyError::Unreachable { .. } => true,
            NotifyError::Refused { status, .. } => *status == 429 || *status >= 500,
        }
    }
}

/// Hands a breached rule's result to whoever tells people.
#[async_trait]
pub trait AlertNotifier: fmt::Debug + Send + Sync {
    /// Delivers (or durably hands over) one alert; `Ok` means nobody has to post it again.
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError>;
}

/// What goes out: a breached count rule, or a day reconcile found incomplete.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The rule's name, or `completeness`.
    pub rule: String,
    /// The event.
    pub event: String,
    /// The day.
    pub day: Date,
    /// `breached`, or the day's completeness status (`missing chunk`, `count mismatch`, …).
    pub status: String,
    /// The day's count (a rule's), or the rows the warehouse holds (completeness).
    pub count: Option<u64>,
    /// The threshold or mean compared with, or CleverTap's count (completeness).
    pub baseline: Option<f64>,
    /// The sentence with the figures (the Slack text).
    pub message: String,
}

impl From<&AlertResult> for Alert {
    fn from(result: &AlertResult) -> Self {
        Self {
            rule: result.rule.name.clone(),
            event: result.rule.event.clone(),
            day: result.day,
            status: match result.status {
                AlertStatus::Breached => "breached".to_string(),
                other => other.as_str().to_string(),
            },
            count: result.count,
            baseline: result.baseline,
            message: result.message.clone(),
        }
    }
}

/// The Slack text of an alert.
pub fn alert_text(alert: &Alert) -> String {
    format!("Tapline alert: {}", alert.message)
}

/// Posts breaches to a Slack incoming webhook; success is HTTP 200 with body `ok`.
pub struct SlackAlertNotifier {
    slack: SlackWebhook,
}

impl SlackAlertNotifier {
    /// A notifier posting to `url` (a secret: never logged) with `http`, which follows no
    /// redirects.
    pub fn new(http: reqwest::Client, url: Secret) -> Self {
        Self {
            slack: SlackWebhook::new(http, url),
        }
    }
}

impl fmt::Debug for SlackAlertNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackAlertNotifier")
            .field("url", &self.slack.url())
            .finish()
    }
}

fn snippet(body: &str) -> String {
    body.trim().chars().take(200).collect()
}

#[async_trait]
impl AlertNotifier for SlackAlertNotifier {
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        // Escaped as the relay's Slack destination escapes the same text: rule and event names
        // cannot become mentions or links.
        let text = escape_mrkdwn(&alert_text(alert));
        Ok(self.slack.post(&json!({ "text": text })).await?)
    }
}

/// Posts breaches to a webhook relay route, whose Slack destination delivers them with retries
/// and dead letters. Any 2xx means the relay stored the payload.
pub struct RelayAlertNotifier {
    http: reqwest::Client,
    url: String,
    header: String,
    token: Secret,
}

impl RelayAlertNotifier {
    /// A notifier posting to the route `url`, with `token` in the `header` the route checks.
    pub fn new(http: reqwest::Client, url: String, header: String, token: Secret) -> Self {
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
            .field("token", &self.token)
            .finish()
    }
}

/// The JSON an alert is posted to the relay as: the figures as fields (the relay's Slack
/// message shows them), and `text`, the sentence a person reads.
pub fn relay_payload(alert: &Alert) -> serde_json::Value {
    json!({
        "tapline_alert": {
            "rule": alert.rule,
            "event": alert.event,
            "day": alert.day.to_string(),
            "status": alert.status,
            "count": alert.count,
            "baseline": alert.baseline.map(|b| (b * 10.0).round() / 10.0),
        },
        "text": alert_text(alert),
    })
}

#[async_trait]
impl AlertNotifier for RelayAlertNotifier {
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        let response = self
            .http
            .post(&self.url)
            .header(self.header.as_str(), self.token.expose())
            .json(&relay_payload(alert))
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
    Secret(#[from] SecretError),
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
    // A redirect would carry the relay token (or the Slack URL's secret path) to wherever the
    // answer points: an endpoint that redirects is refused, not followed.
    let http = reqwest::Client::builder()
        .timeout(NOTIFY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(AlertConfigError::Http)?;
    match (set(ENV_ALERTS_RELAY_URL), set(ENV_ALERTS_SLACK_URL)) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(AlertConfigError::Invalid {
            name: ENV_ALERTS_RELAY_URL,
            reason: format!("{ENV_ALERTS_SLACK_URL} is set too: keep one"),
        }),
        (None, Some(url)) => {
            // The Slack URL is the secret: its text never goes into the error.
            check_endpoint(&url).map_err(|reason| AlertConfigError::Invalid {
                name: ENV_ALERTS_SLACK_URL,
                reason: reason.to_string(),
            })?;
            Ok(Some(Arc::new(SlackAlertNotifier::new(
                http,
                Secret::new(url),
            ))))
        }
        (Some(url), None) => {
            check_endpoint(&url).map_err(|reason| AlertConfigError::Invalid {
                name: ENV_ALERTS_RELAY_URL,
                reason: format!("{url}: {reason}"),
            })?;
            let token = match (
                set(ENV_ALERTS_RELAY_TOKEN),
                set(ENV_ALERTS_RELAY_TOKEN_SECRET_ARN),
            ) {
                (Some(token), None) => Secret::new(token),
                (None, Some(arn)) => read_secret(&arn).await?,
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

/// Whether secrets may be sent to `url`: `https`, or plain `http` to a loopback host (a relay
/// on the same machine, a test double). Says why not otherwise.
fn check_endpoint(url: &str) -> Result<(), &'static str> {
    let url = reqwest::Url::parse(url).map_err(|_| "not a URL")?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err("use https: the token would cross the network in clear text"),
        _ => Err("use an https:// URL"),
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
            Ok(Some("SlackAlertNotifier { url: [redacted] }".into()))
        );
        assert_eq!(
            notifier(&[
                (ENV_ALERTS_RELAY_URL, "https://relay/hooks/alerts"),
                (ENV_ALERTS_RELAY_TOKEN, "tok-123"),
            ])
            .await,
            Ok(Some(
                "RelayAlertNotifier { url: \"https://relay/hooks/alerts\", header: \
                 \"X-Tapline-Token\", token: [redacted] }"
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

    #[tokio::test]
    async fn secrets_go_over_https_or_to_loopback_only() {
        for ok in [
            "https://relay.example.com/hooks/alerts",
            "http://127.0.0.1:8080/hooks/alerts",
            "http://localhost/hooks/alerts",
            "http://[::1]:9/hooks/alerts",
        ] {
            let relay = [(ENV_ALERTS_RELAY_URL, ok), (ENV_ALERTS_RELAY_TOKEN, "tok")];
            assert!(matches!(notifier(&relay).await, Ok(Some(_))), "{ok}");
            assert!(matches!(
                notifier(&[(ENV_ALERTS_SLACK_URL, ok)]).await,
                Ok(Some(_))
            ));
        }
        let relay =
            |url: &'static str| [(ENV_ALERTS_RELAY_URL, url), (ENV_ALERTS_RELAY_TOKEN, "tok")];
        assert_eq!(
            notifier(&relay("http://relay.example.com/hooks/alerts")).await,
            Err(
                "TAPLINE_ALERTS_RELAY_URL: http://relay.example.com/hooks/alerts: use https: \
                 the token would cross the network in clear text"
                    .into()
            )
        );
        assert_eq!(
            notifier(&relay("ftp://relay.example.com/x")).await,
            Err("TAPLINE_ALERTS_RELAY_URL: ftp://relay.example.com/x: use an https:// URL".into())
        );
        // The Slack URL is itself the secret: never in the message.
        assert_eq!(
            notifier(&[(
                ENV_ALERTS_SLACK_URL,
                "http://hooks.slack.com/services/T/B/s3cret"
            )])
            .await,
            Err(
                "TAPLINE_ALERTS_SLACK_URL: use https: the token would cross the network in \
                 clear text"
                    .into()
            )
        );
    }

    /// A loopback server answering every request with `status` (and `Location`, when given);
    /// returns its URL and the heads of the requests it receives.
    async fn answering(
        status: &'static str,
        location: Option<String>,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let location = location
            .map(|l| format!("Location: {l}"))
            .into_iter()
            .collect();
        let (url, mut requests) = crate::slack::loopback::answering(status, location, "").await;
        let (heads, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(request) = requests.recv().await {
                let _ = heads.send(request.head);
            }
        });
        (url, received)
    }

    fn breach() -> Alert {
        Alert::from(&AlertResult {
            rule: crate::api_puller::alert_rules::AlertRule {
                name: "charged-floor".into(),
                event: "Charged".into(),
                condition: crate::api_puller::alert_rules::Condition::Below { count: 500 },
            },
            day: jiff::civil::date(2022, 9, 23),
            status: crate::api_puller::alert_rules::AlertStatus::Breached,
            count: Some(12),
            baseline: Some(500.0),
            message: "Charged on 2022-09-23: 12, below 500".into(),
        })
    }

    #[tokio::test]
    async fn a_redirect_is_refused_and_the_token_stays_home() {
        let (elsewhere, mut stolen) = answering("200 OK", None).await;
        for status in [
            "301 Moved Permanently",
            "307 Temporary Redirect",
            "308 Permanent Redirect",
        ] {
            let (relay, mut received) = answering(status, Some(format!("{elsewhere}/steal"))).await;
            let notifier = alert_notifier_from_lookup(|name| match name {
                ENV_ALERTS_RELAY_URL => Some(format!("{relay}/hooks/alerts")),
                ENV_ALERTS_RELAY_TOKEN => Some("tok-s3cret".into()),
                _ => None,
            })
            .await
            .unwrap()
            .unwrap();
            let err = notifier.notify(&breach()).await.unwrap_err();
            let code = &status[..3];
            assert_eq!(err.to_string(), format!("the relay answered HTTP {code}"));
            assert!(!err.is_retryable());
            let head = received.recv().await.unwrap();
            assert!(head.starts_with("POST /hooks/alerts "), "{head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("x-tapline-token: tok-s3cret"),
                "{head}"
            );
            // Slack's notifier: its URL is the secret, and a redirect is not followed either.
            let slack = alert_notifier_from_lookup(|name| {
                (name == ENV_ALERTS_SLACK_URL).then(|| format!("{relay}/services/T/B/x"))
            })
            .await
            .unwrap()
            .unwrap();
            let err = slack.notify(&breach()).await.unwrap_err();
            assert_eq!(err.to_string(), format!("Slack answered HTTP {code}"));
            assert!(
                received
                    .recv()
                    .await
                    .unwrap()
                    .starts_with("POST /services/T/B/x ")
            );
        }
        // notify returned each time without a request reaching the redirect target.
        assert!(stolen.try_recv().is_err(), "a redirect was followed");
    }
}
