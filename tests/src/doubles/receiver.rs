//! A Slack / HTTP receiver double on loopback: records every request and answers from a script
//! (fail, stall, 429 + Retry-After, 200 with a body other than `ok`), then with a default.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::Notify;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// HTTP 200 with body `ok` (Slack's success).
    Ok,
    /// This status and body.
    Status(u16, String),
    /// HTTP 429 with `Retry-After: <seconds>`.
    TooManyRequests(u64),
    /// Waits this long, then answers 200 `ok` (longer than the relay's timeout: a timeout).
    Stall(Duration),
}

/// A request the double received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
    /// When it arrived.
    pub at: std::time::Instant,
}

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    received: Mutex<Vec<Received>>,
    arrived: Notify,
}

/// The running double; stops when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`: any path is accepted.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let reply = {
        let next = shared.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| shared.default.lock().unwrap().clone())
    };
    shared.received.lock().unwrap().push(Received {
        headers,
        body,
        at: std::time::Instant::now(),
    });
    shared.arrived.notify_waiters();
    match reply {
        Reply::Ok => (StatusCode::OK, "ok").into_response(),
        Reply::Status(code, body) => (StatusCode::from_u16(code).unwrap(), body).into_response(),
        Reply::TooManyRequests(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            "rate_limited",
        )
            .into_response(),
        Reply::Stall(wait) => {
            tokio::time::sleep(wait).await;
            (StatusCode::OK, "ok").into_response()
        }
    }
}

impl Receiver {
    /// Starts a double answering 200 `ok` unless scripted otherwise.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::Ok),
            received: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        });
        let app = Router::new()
            .fallback(post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// The next answers, in order; the default follows.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    /// The answer once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        *self.shared.default.lock().unwrap() = reply;
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The `text` field of every JSON body received so far (Slack messages), in order.
    pub fn texts(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.body).expect("a JSON body")["text"]
                    .as_str()
                    .expect("a text field")
                    .to_string()
            })
            .collect()
    }

    /// Waits until at least `n` requests have arrived (panics after `limit`).
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let arrived = self.shared.arrived.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "receiver got {} request(s), expected {n}",
                    self.received().len()
                );
            }
        }
    }
}
