//! One HTTP client for CleverTap's REST API: auth headers, a process-wide concurrency limit per
//! account, backoff with jitter when throttled, bounded retries on 5xx and timeouts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::config::ApiConfig;
use super::error::ApiError;
use crate::retry::{Jitter, RetryPolicy};

const HEADER_ACCOUNT: &str = "X-CleverTap-Account-Id";
const HEADER_PASSCODE: &str = "X-CleverTap-Passcode";

/// The limits of every client in this process, by (base URL, account): CleverTap counts
/// concurrent requests per account, so two clients of one account must share one limit.
fn shared_limit(config: &ApiConfig) -> Arc<Semaphore> {
    static LIMITS: OnceLock<Mutex<HashMap<String, Arc<Semaphore>>>> = OnceLock::new();
    let key = format!("{} {}", config.base_url, config.account_id);
    let mut limits = LIMITS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    limits
        .entry(key)
        .or_insert_with(|| Arc::new(Semaphore::new(config.concurrency.max(1))))
        .clone()
}

/// How one attempt ended.
enum Attempt {
    /// A success (or `partial`) body.
    Done(Value),
    /// HTTP 429 or body code 1.
    Throttled,
    /// Body code 2 or "in progress": ask again for the same thing.
    NotReady,
    /// 5xx: worth a bounded retry.
    ServerError { status: u16, message: String },
    /// No answer (connection refused, reset, timeout): worth a bounded retry.
    NoAnswer(reqwest::Error),
    /// Not worth a retry.
    Failed(ApiError),
}

/// What a request is, for retries and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST` with a JSON body.
    Post,
}

/// A CleverTap API client. Cheap to clone; clones share the connection pool and the limit.
#[derive(Clone)]
pub struct ClevertapClient {
    http: reqwest::Client,
    config: Arc<ApiConfig>,
    limit: Arc<Semaphore>,
}

impl std::fmt::Debug for ClevertapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClevertapClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClevertapClient {
    /// A client for the configured account, sharing the account's limit with every other
    /// client of this process.
    pub fn new(config: ApiConfig) -> Result<Self, ApiError> {
        let mut headers = HeaderMap::new();
        let account =
            HeaderValue::from_str(&config.account_id).map_err(|_| ApiError::Unexpected {
                operation: "configuration".to_string(),
                detail: "the account id is not a valid header value".to_string(),
            })?;
        let mut passcode =
            HeaderValue::from_str(config.passcode.expose()).map_err(|_| ApiError::Unexpected {
                operation: "configuration".to_string(),
                detail: "the passcode is not a valid header value".to_string(),
            })?;
        // Sensitive headers are left out of the client's own debug output.
        passcode.set_sensitive(true);
        headers.insert(HEADER_ACCOUNT, account);
        headers.insert(HEADER_PASSCODE, passcode);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.retry.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tapline/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ApiError::Client)?;
        let limit = shared_limit(&config);
        Ok(Self {
            http,
            config: Arc::new(config),
            limit,
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// Sends one request, retrying as the policy allows, and returns the body of the first
    /// answer whose `status` is not `fail`. `path` starts with `/1/` and carries its encoded
    /// query. A "not ready" answer (code 2) is asked again unchanged.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let operation = || describe(method, path);
        let policy = &self.config.retry;
        let (mut throttled, mut transient, mut not_ready) = (0u32, 0u32, 0u32);
        loop {
            let attempts = throttled + transient + not_ready + 1;
            let delay = match self.attempt(method, path, body).await {
                Attempt::Done(value) => return Ok(value),
                Attempt::Failed(e) => return Err(e),
                Attempt::Throttled => {
                    throttled += 1;
                    if throttled > policy.max_throttled {
                        return Err(ApiError::Throttled {
                            operation: operation(),
                            attempts,
                        });
                    }
                    backoff(policy.backoff_base, policy.backoff_max, throttled)
                }
                Attempt::NotReady => {
                    not_ready += 1;
                    if not_ready > policy.max_not_ready {
                        return Err(ApiError::NotReady {
                            operation: operation(),
                            attempts,
                        });
                    }
                    Jitter::EQUAL.apply(policy.not_ready_delay)
                }
                Attempt::ServerError { status, message } => {
                    transient += 1;
                    if transient > policy.max_transient {
                        return Err(ApiError::Server {
                            operation: operation(),
                            status,
                            attempts,
                            message,
                        });
                    }
                    backoff(policy.backoff_base, policy.backoff_max, transient)
                }
                Attempt::NoAnswer(source) => {
                    transient += 1;
                    if transient > policy.max_transient {
                        return Err(ApiError::Transport {
                            operation: operation(),
                            attempts,
                            source: source.without_url(),
                        });
                    }
                    backoff(policy.backoff_base, policy.backoff_max, transient)
                }
            };
            warn!(
                operation = %operation(),
                throttled,
                transient,
                not_ready,
                delay_ms = delay.as_millis() as u64,
                "CleverTap asked us to wait; trying again."
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt, holding one of the account's permits for its duration only (never while
    /// waiting to retry).
    async fn attempt(&self, method: Method, path: &str, body: Option<&Value>) -> Attempt {
        let _permit = match self.limit.acquire().await {
            Ok(p) => p,
            Err(_) => {
                return Attempt::Failed(ApiError::Unexpected {
                    operation: path.to_string(),
                    detail: "the concurrency limit was closed".to_string(),
                });
            }
        };
        let url = format!("{}{}", self.config.base_url, path);
        let request = match method {
            Method::Get => self.http.get(&url),
            Method::Post => self
                .http
                .post(&url)
                .body(body.map(Value::to_string).unwrap_or_else(|| "{}".into())),
        };
        debug!(%url, "CleverTap request.");
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::NoAnswer(e),
        };
        let status = response.status().as_u16();
        let text = match read_capped(response, self.config.max_response_bytes).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Attempt::Failed(ApiError::ResponseTooLarge {
                    operation: describe(method, path),
                    limit: self.config.max_response_bytes,
                });
            }
            Err(e) => return Attempt::NoAnswer(e),
        };
        classify(status, &text, || describe(method, path))
    }
}

/// The body as text, read chunk by chunk so no more than `limit` bytes are ever held; `None`
/// when it is larger (announced by Content-Length, or found while reading).
async fn read_capped(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Option<String>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(match String::from_utf8(body) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

fn describe(method: Method, path: &str) -> String {
    let bare = path.split('?').next().unwrap_or(path);
    match method {
        Method::Get => format!("GET {bare}"),
        Method::Post => format!("POST {bare}"),
    }
}

/// Sorts an answer by what to do next. Bodies follow `{"status":"fail","error":…,"code":N}`.
fn classify(status: u16, text: &str, operation: impl Fn() -> String) -> Attempt {
    let body: Option<Value> = serde_json::from_str(text).ok();
    let message = body
        .as_ref()
        .and_then(|b| b.get("error"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| text.chars().take(200).collect());
    let code = body
        .as_ref()
        .and_then(|b| b.get("code"))
        .and_then(Value::as_i64);
    let failed = body
        .as_ref()
        .and_then(|b| b.get("status"))
        .and_then(Value::as_str)
        == Some("fail");
    if status == 429 || (failed && code == Some(1)) {
        return Attempt::Throttled;
    }
    if failed && (code == Some(2) || message.to_ascii_lowercase().contains("in progress")) {
        return Attempt::NotReady;
    }
    // An unfinished campaign's report: `fail` "hasn't been completed", or HTTP 500 "no result
    // as of yet". Asking again now does not help; it is not a failure either.
    let lower = message.to_ascii_lowercase();
    if (failed || status >= 500)
        && (lower.contains("hasn't been completed") || lower.contains("no result"))
    {
        return Attempt::Failed(ApiError::ResultNotReady {
            operation: operation(),
            message,
        });
    }
    if status >= 500 {
        return Attempt::ServerError { status, message };
    }
    if status == 401 || status == 403 {
        return Attempt::Failed(ApiError::Unauthorized {
            operation: operation(),
            status,
            message,
        });
    }
    match body {
        Some(value) if !failed && (200..300).contains(&status) => Attempt::Done(value),
        Some(_) => Attempt::Failed(ApiError::Refused {
            operation: operation(),
            status,
            code,
            message,
        }),
        None if (200..300).contains(&status) => Attempt::Failed(ApiError::Unexpected {
            operation: operation(),
            detail: format!("the body is not JSON: {message}"),
        }),
        None => Attempt::Failed(ApiError::Refused {
            operation: operation(),
            status,
            code: None,
            message,
        }),
    }
}

/// Exponential backoff with "equal jitter" ([`Jitter::EQUAL`]): half the step fixed, half
/// random, so clients that were throttled together do not come back together.
fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    RetryPolicy::exponential(u32::MAX, base, max, Jitter::EQUAL).delay(attempt, None)
}

/// Percent-encodes a query value (a cursor, an event name) so it reaches CleverTap unchanged.
pub fn encode_query_value(value: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> String {
        "GET /1/events.json".to_string()
    }

    #[test]
    fn answers_are_sorted_by_what_to_do_next() {
        assert!(matches!(
            classify(429, "Too many concurrent requests", op),
            Attempt::Throttled
        ));
        assert!(matches!(
            classify(200, r#"{"status":"fail","error":"throttled","code":1}"#, op),
            Attempt::Throttled
        ));
        assert!(matches!(
            classify(200, r#"{"status":"fail","error":"x","code":2}"#, op),
            Attempt::NotReady
        ));
        assert!(matches!(
            classify(
                200,
                r#"{"status":"fail","error":"Request still in progress, please retry later"}"#,
                op
            ),
            Attempt::NotReady
        ));
        for (status, body) in [
            (
                200,
                r#"{"error":"This target hasn't been completed","status":"fail"}"#,
            ),
            (
                500,
                r#"{"status":"fail","error":"This target has no result as of yet"}"#,
            ),
        ] {
            match classify(status, body, op) {
                Attempt::Failed(e @ ApiError::ResultNotReady { .. }) => assert!(e.is_retryable()),
                _ => panic!("expected not ready for HTTP {status}"),
            }
        }
        assert!(matches!(
            classify(502, "bad gateway", op),
            Attempt::ServerError { status: 502, .. }
        ));
        match classify(
            200,
            r#"{"status":"fail","error":"Export not allowed for this event","code":400}"#,
            op,
        ) {
            Attempt::Failed(e) => {
                assert!(!e.is_retryable());
                assert_eq!(
                    e.to_string(),
                    "GET /1/events.json: CleverTap refused the request (HTTP 200, code Some(400)): \
                     Export not allowed for this event"
                );
            }
            _ => panic!("expected a refusal"),
        }
        match classify(
            401,
            r#"{"status":"fail","error":"Invalid Credentials"}"#,
            op,
        ) {
            Attempt::Failed(e @ ApiError::Unauthorized { .. }) => assert!(!e.is_retryable()),
            _ => panic!("expected unauthorized"),
        }
        assert!(matches!(
            classify(200, r#"{"status":"success","cursor":"abc"}"#, op),
            Attempt::Done(_)
        ));
        assert!(matches!(
            classify(200, r#"{"status":"partial","req_id":1}"#, op),
            Attempt::Done(_)
        ));
    }

    #[test]
    fn backoff_grows_with_jitter_and_stops_at_the_maximum() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for _ in 0..50 {
            let first = backoff(base, max, 1);
            assert!(
                first >= Duration::from_millis(50) && first <= base,
                "{first:?}"
            );
            let third = backoff(base, max, 3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff(base, max, 30);
            assert!(late >= max / 2 && late <= max, "{late:?}");
        }
    }

    /// A server that answers once with `body_bytes` bytes of JSON padding and no
    /// Content-Length (the body ends when the connection closes).
    async fn unannounced_body(body_bytes: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
            socket.write_all(head.as_bytes()).await.unwrap();
            socket
                .write_all(b"{\"status\":\"success\",\"pad\":\"")
                .await
                .unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < body_bytes {
                // The client hangs up once past its limit: stop writing then.
                if socket.write_all(&chunk).await.is_err() {
                    return;
                }
                sent += chunk.len();
            }
            let _ = socket.write_all(b"\"}").await;
        });
        url
    }

    fn client_with_limit(url: &str, limit: u64) -> ClevertapClient {
        let mut config = ApiConfig::new(
            "ACC",
            crate::secret::Secret::new("P"),
            super::super::config::Region::Eu1,
        )
        .with_base_url(url)
        .unwrap();
        config.max_response_bytes = limit;
        ClevertapClient::new(config).unwrap()
    }

    #[tokio::test]
    async fn an_answer_past_the_limit_fails_without_being_read_whole() {
        let url = unannounced_body(8 * 1024 * 1024).await;
        let err = client_with_limit(&url, 1024 * 1024)
            .request(Method::Get, "/1/events.json?cursor=c", None)
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            "GET /1/events.json: the answer is larger than 1048576 bytes \
             (CLEVERTAP_MAX_RESPONSE_BYTES); ask for smaller pages (--batch-size) or raise the limit"
        );
        // Under the limit, the same kind of answer reads whole.
        let url = unannounced_body(64 * 1024).await;
        let answer = client_with_limit(&url, 1024 * 1024)
            .request(Method::Get, "/1/events.json?cursor=c", None)
            .await
            .unwrap();
        assert_eq!(answer["pad"].as_str().map(str::len), Some(64 * 1024));
    }

    #[test]
    fn cursors_are_encoded_once() {
        assert_eq!(encode_query_value("ZyZj+a/b=="), "ZyZj%2Ba%2Fb%3D%3D");
        assert_eq!(encode_query_value("App Launched"), "App%20Launched");
    }
}
