//! [`SlackWebhook`]: the one Slack incoming-webhook client, used by the relay's Slack destination
//! and by the puller's alert notifier. Slack reports success as HTTP 200 with the body `ok` and
//! nothing else; some failures come as HTTP 200 with another body (`invalid_payload`,
//! `no_service`), so a 2xx alone never counts as delivered. The URL is the secret: it is never
//! logged, nor put in an error.

use std::fmt;

use reqwest::header::{HeaderValue, RETRY_AFTER};
use serde_json::Value;

use crate::printable::escaped;
use crate::secret::Secret;

/// Characters of Slack's answer kept in an error: enough for `invalid_blocks_format`, never a
/// whole page from a proxy in between.
pub const MAX_ANSWER_CHARS: usize = 200;

/// Posts messages to one Slack incoming webhook.
#[derive(Clone)]
pub struct SlackWebhook {
    http: reqwest::Client,
    /// The webhook URL: its path is the credential, so it prints as `[redacted]`.
    url: Secret,
}

/// Only the redacted URL: the HTTP client's settings are noise in a log line.
impl fmt::Debug for SlackWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackWebhook")
            .field("url", &self.url)
            .finish()
    }
}

impl SlackWebhook {
    /// A client posting to `url` with `http`, which must not follow redirects: the URL's path is
    /// the secret, and a redirect would carry the message to wherever the answer points.
    pub fn new(http: reqwest::Client, url: Secret) -> Self {
        Self { http, url }
    }

    /// The webhook URL (redacted when printed).
    pub fn url(&self) -> &Secret {
        &self.url
    }

    /// Posts one message (`{"text": …}`, optionally with `blocks`). `Ok` only for HTTP 200 with
    /// the body `ok`; every other answer is an error that knows whether posting again may help.
    pub async fn post(&self, message: &Value) -> Result<(), SlackError> {
        let response = self
            .http
            .post(self.url.expose())
            .json(message)
            .send()
            .await
            .map_err(|e| SlackError::Unreachable(e.without_url()))?;
        let status = response.status().as_u16();
        let retry_after = response.headers().get(RETRY_AFTER).cloned();
        // An answer cut off while being read is no answer: whether Slack said `ok` is unknown.
        let text = response
            .text()
            .await
            .map_err(|e| SlackError::Unreachable(e.without_url()))?;
        classify(status, retry_after, &text)
    }
}

/// What Slack's answer means: only 200 with `ok` is delivered.
fn classify(status: u16, retry_after: Option<HeaderValue>, text: &str) -> Result<(), SlackError> {
    match status {
        200 if text.trim() == "ok" => Ok(()),
        200 => Err(SlackError::NotOk {
            body: answer_snippet(text),
        }),
        _ => Err(SlackError::Status {
            status,
            body: answer_snippet(text),
            retry_after,
        }),
    }
}

/// The start of Slack's answer, trimmed, with control characters escaped (it goes into logs
/// and terminals).
fn answer_snippet(text: &str) -> String {
    let text = text.trim();
    let mut kept: String = text.chars().take(MAX_ANSWER_CHARS).collect();
    if text.chars().nth(MAX_ANSWER_CHARS).is_some() {
        kept.push('…');
    }
    escaped(&kept).into_owned()
}

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// No answer: DNS, connect, TLS, timeout, or the connection dropped before the answer was
    /// read. The source carries no URL.
    #[error("Slack unreachable")]
    Unreachable(#[source] reqwest::Error),
    /// HTTP 200 with a body other than `ok`: Slack refused the message itself.
    #[error("Slack answered 200 with {body:?} instead of \"ok\"")]
    NotOk {
        /// What Slack said instead (e.g. `invalid_payload`).
        body: String,
    },
    /// Any status other than 200 (a 3xx included: redirects are not followed).
    #[error("Slack answered HTTP {status}{}", detail(.body))]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the answer.
        body: String,
        /// The `Retry-After` header as sent (seconds or an HTTP date); the caller measures a
        /// date against its own clock.
        retry_after: Option<HeaderValue>,
    },
}

/// `: <body>`, or nothing for an empty answer (a bare 404 says all it says).
fn detail(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl SlackError {
    /// Whether posting the same message again later may succeed: no answer, 429 and 5xx may;
    /// Slack's refusals (200 without `ok`, other 4xx, 3xx) will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            SlackError::Unreachable(_) => true,
            SlackError::NotOk { .. } => false,
            SlackError::Status { status, .. } => *status == 429 || *status >= 500,
        }
    }

    /// The HTTP status, when Slack answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            SlackError::Unreachable(_) => None,
            SlackError::NotOk { .. } => Some(200),
            SlackError::Status { status, .. } => Some(*status),
        }
    }
}

/// `text` with Slack's mrkdwn control characters escaped, so text from payloads or data cannot
/// inject mentions (`<!channel>`) or links.
pub fn escape_mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A loopback HTTP server answering every request the same way, for tests of the clients that
/// post to Slack and to the relay.
#[cfg(test)]
pub(crate) mod loopback {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A request as received: its head (request line and headers) and its body.
    #[derive(Debug)]
    pub(crate) struct Request {
        pub(crate) head: String,
        pub(crate) body: Vec<u8>,
    }

    /// Starts a server that answers every request with `status` (e.g. `200 OK`), `headers`
    /// (`Name: value` lines) and `body`; returns its base URL and the requests it receives.
    pub(crate) async fn answering(
        status: &'static str,
        headers: Vec<String>,
        body: &'static str,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<Request>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (sent, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Head, then as much body as Content-Length says.
                let head_end = loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(i + 4);
                    }
                };
                let Some(head_end) = head_end else { continue };
                let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let _ = sent.send(Request {
                    head,
                    body: request[head_end..].to_vec(),
                });
                let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
                let answer = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (url, received)
    }
}

#[cfg(test)]
mod tests {
    use super::loopback::answering;
    use super::*;
    use serde_json::json;

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    async fn post_to(status: &'static str, headers: &[&str], body: &'static str) -> SlackError {
        let (base, mut received) = answering(
            status,
            headers.iter().map(|h| h.to_string()).collect(),
            body,
        )
        .await;
        let slack = SlackWebhook::new(client(), Secret::new(format!("{base}/services/T/B/s3cret")));
        let err = slack.post(&json!({"text": "hi"})).await.unwrap_err();
        let request = received.recv().await.unwrap();
        assert!(request.head.starts_with("POST /services/T/B/s3cret "));
        assert!(!err.to_string().contains("s3cret"), "{err}");
        err
    }

    #[tokio::test]
    async fn only_200_with_ok_is_delivered() {
        let (base, mut received) = answering("200 OK", vec![], "ok\n").await;
        let slack = SlackWebhook::new(client(), Secret::new(format!("{base}/services/T/B/x")));
        slack.post(&json!({"text": "a <b>"})).await.unwrap();
        let request = received.recv().await.unwrap();
        let sent: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(sent, json!({"text": "a <b>"}));
        assert!(
            request
                .head
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{}",
            request.head
        );

        // Another 2xx, even with `ok`, is not Slack's success.
        let err = post_to("201 Created", &[], "ok").await;
        assert_eq!(err.to_string(), "Slack answered HTTP 201: ok");
        assert!(!err.is_retryable());
        assert_eq!(err.status(), Some(201));
    }

    #[tokio::test]
    async fn a_200_without_ok_is_a_permanent_refusal() {
        let err = post_to("200 OK", &[], "invalid_payload").await;
        assert_eq!(
            err.to_string(),
            "Slack answered 200 with \"invalid_payload\" instead of \"ok\""
        );
        assert!(!err.is_retryable());
        assert_eq!(err.status(), Some(200));
        // An empty 200 is no `ok` either.
        let err = post_to("200 OK", &[], "").await;
        assert!(matches!(err, SlackError::NotOk { ref body } if body.is_empty()));
    }

    #[tokio::test]
    async fn statuses_are_retryable_only_for_429_and_5xx() {
        let err = post_to(
            "429 Too Many Requests",
            &["Retry-After: 30"],
            "rate_limited",
        )
        .await;
        assert!(err.is_retryable());
        assert_eq!(err.to_string(), "Slack answered HTTP 429: rate_limited");
        let SlackError::Status { retry_after, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(retry_after.as_ref().unwrap(), "30");
        for (status, retryable) in [
            ("500 Internal Server Error", true),
            ("503 Service Unavailable", true),
            ("400 Bad Request", false),
            ("403 Forbidden", false),
            ("404 Not Found", false),
            ("410 Gone", false),
        ] {
            let err = post_to(status, &[], "no_service").await;
            assert_eq!(err.is_retryable(), retryable, "{status}");
            assert_eq!(
                err.to_string(),
                format!("Slack answered HTTP {}: no_service", &status[..3])
            );
        }
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let (elsewhere, mut stolen) = answering("200 OK", vec![], "ok").await;
        let err = post_to(
            "301 Moved Permanently",
            &[&format!("Location: {elsewhere}/steal")],
            "",
        )
        .await;
        assert_eq!(err.to_string(), "Slack answered HTTP 301");
        assert!(!err.is_retryable());
        assert!(stolen.try_recv().is_err(), "a redirect was followed");
    }

    #[tokio::test]
    async fn no_answer_is_retryable_and_the_url_stays_out_of_the_error() {
        // A port nothing listens on: bind one, then let it go.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let slack = SlackWebhook::new(
            client(),
            Secret::new(format!("http://{addr}/services/T/B/s3cret")),
        );
        let err = slack.post(&json!({"text": "hi"})).await.unwrap_err();
        assert!(matches!(err, SlackError::Unreachable(_)), "{err:?}");
        assert!(err.is_retryable());
        assert_eq!(err.status(), None);
        let chain = crate::error::error_chain(&err);
        assert!(!chain.contains("s3cret"), "{chain}");
        assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
        assert_eq!(
            format!("{slack:?}"),
            "SlackWebhook { url: [redacted] }",
            "Debug hides the URL"
        );
    }

    #[test]
    fn answers_are_cut_and_their_control_characters_escaped() {
        let long = "x".repeat(500);
        let Err(SlackError::NotOk { body }) = classify(200, None, &long) else {
            panic!()
        };
        assert_eq!(body.chars().count(), MAX_ANSWER_CHARS + 1);
        assert!(body.ends_with('…'));
        let Err(SlackError::Status { body, .. }) = classify(500, None, " \u{1b}[31mred\n") else {
            panic!()
        };
        assert_eq!(body, "\\u{1b}[31mred");
        assert!(classify(200, None, " ok \n").is_ok());
    }

    #[test]
    fn mrkdwn_control_characters_are_escaped() {
        assert_eq!(
            escape_mrkdwn("<!channel> & <https://x|y>"),
            "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"
        );
    }
}
