//! The HTTP side: one axum [`Router`] with `POST /hooks/{route}` and `GET /healthz`, the same
//! on Lambda (`lambda_http`), Cloud Run and `tapline relay serve`. A payload is answered 200
//! only once it is stored; the answer never waits on a destination.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::http_server::LogThrottle;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{
    HeaderMap, HeaderValue, StatusCode,
    header::{CONTENT_LENGTH, RETRY_AFTER},
};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::webhook_relay::auth::{is_authorized, secrets_equal};
use crate::webhook_relay::clock::Clock;
use crate::webhook_relay::config::{RelayConfig, RouteConfig};
use crate::webhook_relay::delivery::round::DestinationPauses;
use crate::webhook_relay::payload::clevertap_webhook;
use crate::webhook_relay::queue::limits::QUEUE_FULL_RETRY_AFTER;
use crate::webhook_relay::queue::{AcceptQueue, Enqueued, IncomingPayload, QueueError};

/// What the handlers share: the routes, the queue and the worker's wake-up.
pub struct RelayState {
    routes: HashMap<String, RouteConfig>,
    queue: Arc<dyn AcceptQueue>,
    clock: Arc<dyn Clock>,
    body_limit: usize,
    dedupe_window_ms: i64,
    wake: Arc<Notify>,
    pauses: Option<Arc<DestinationPauses>>,
    refused: AtomicU64,
    refusal_log: LogThrottle,
    full_log: LogThrottle,
    /// The last queue health read for `/healthz` and when (clock ms): one read per
    /// [`HEALTH_CACHE`] whatever the polling rate (the endpoint has no auth).
    health_cache: tokio::sync::Mutex<Option<(i64, Value)>>,
}

/// How long `/healthz` reuses a queue health read.
const HEALTH_CACHE: Duration = Duration::from_secs(1);

/// How often a route's refused requests are logged: one line per period with the count held back.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);
/// The log key of requests to routes that do not exist (never the attacker's path).
const UNKNOWN_ROUTE: &str = "(unknown)";

impl RelayState {
    /// The state for `config`, storing into `queue` and waking `wake` after each accept.
    pub fn new(
        config: &RelayConfig,
        queue: Arc<dyn AcceptQueue>,
        clock: Arc<dyn Clock>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            routes: config
                .routes
                .iter()
                .map(|r| (r.name.clone(), r.clone()))
                .collect(),
            queue,
            clock,
            body_limit: config.settings.body_limit_bytes,
            dedupe_window_ms: config.settings.dedupe_window.as_millis() as i64,
            wake,
            pauses: None,
            refused: AtomicU64::new(0),
            refusal_log: LogThrottle::new(REFUSAL_LOG_PERIOD),
            full_log: LogThrottle::new(REFUSAL_LOG_PERIOD),
            health_cache: tokio::sync::Mutex::new(None),
        }
    }

    /// New deliveries to a destination the worker has paused are queued due when the pause ends.
    pub fn with_pauses(mut self, pauses: Arc<DestinationPauses>) -> Self {
        self.pauses = Some(pauses);
        self
    }
}

/// The relay's routes over `state`.
pub fn router(state: Arc<RelayState>) -> Router {
    Router::new()
        .route("/hooks/{route}", post(accept_hook))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// The HTTP endpoint alone, storing into `queue`, without a worker: what the Lambda behind the
/// function URL and the Cloud Run endpoint run, where another function delivers.
pub fn accept_router(
    config: &RelayConfig,
    queue: Arc<dyn AcceptQueue>,
    clock: Arc<dyn Clock>,
) -> Router {
    router(Arc::new(RelayState::new(
        config,
        queue,
        clock,
        Arc::new(Notify::new()),
    )))
}

/// `GET /healthz`: 200 while serving, with the number of requests refused 401 since start and,
/// for a queue that counts (the local one), its counts under `queue`. A queue that cannot be
/// read still answers 200 (the process serves), with `queue: {"error": "cannot read the queue"}`.
async fn healthz(State(state): State<Arc<RelayState>>) -> impl IntoResponse {
    let mut body = json!({
        "status": "ok",
        "refused_requests": state.refused.load(Ordering::Relaxed),
    });
    if let Some(queue) = state.queue_health().await {
        body["queue"] = queue;
    }
    (StatusCode::OK, axum::Json(body))
}

/// The first address of `X-Forwarded-For` (set by the function URL, Cloud Run or a proxy), only
/// when it parses as one, so that nothing the client wrote reaches the log as text.
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let value = headers.get("x-forwarded-for")?.to_str().ok()?;
    value.split(',').next()?.trim().parse().ok()
}

impl RelayState {
    /// The queue's health as JSON, read at most once per [`HEALTH_CACHE`]; `None` when the
    /// queue does not count.
    async fn queue_health(&self) -> Option<Value> {
        let now = self.clock.now_ms();
        let mut cache = self.health_cache.lock().await;
        if let Some((at, value)) = cache.as_ref()
            && now - at < HEALTH_CACHE.as_millis() as i64
        {
            return Some(value.clone());
        }
        let value = match self.queue.health(now).await {
            Ok(Some(health)) => serde_json::to_value(health).ok()?,
            Ok(None) => return None,
            Err(err) => {
                // The error names the state directory: logged, not shown to anyone who asks.
                warn!(error = %err, "Queue health could not be read.");
                json!({"error": "cannot read the queue"})
            }
        };
        *cache = Some((now, value.clone()));
        Some(value)
    }

    /// Counts a refused request and logs it at most once per route and period, with the number
    /// of refusals held back since the previous line.
    fn refuse(&self, route: Option<&str>, request: &Request) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let route = route.unwrap_or(UNKNOWN_ROUTE);
        if let Some(held_back) = self.refusal_log.allow(route) {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string());
            let forwarded = forwarded_for(request.headers()).map(|ip| ip.to_string());
            warn!(
                route,
                peer = peer.as_deref().unwrap_or("-"),
                forwarded_for = forwarded.as_deref().unwrap_or("-"),
                held_back,
                "Webhook refused: not authorized."
            );
        }
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// `POST /hooks/{route}`: 401 for bad credentials and for a route that does not exist alike
/// (no body, so a caller cannot list routes), 413 too large
/// (for the body limit, or for the queue: an SQS message without a payload bucket),
/// 400 not JSON, 200 once stored (or a CleverTap test not forwarded, or a duplicate), 503 when
/// the queue cannot store it (so the sender retries), with `Retry-After` when the queue is past
/// one of its limits.
async fn accept_hook(
    State(state): State<Arc<RelayState>>,
    Path(route_name): Path<String>,
    request: Request,
) -> Response {
    // Authenticate before reading the body: an unauthenticated caller cannot make us buffer.
    let Some(route) = state.routes.get(&route_name) else {
        // The same work as a wrong secret, so that timing does not tell routes apart either.
        let _ = secrets_equal(route_name.as_bytes(), b"");
        state.refuse(None, &request);
        return StatusCode::UNAUTHORIZED.into_response();
    };
    if !is_authorized(&route.auth, request.headers()) {
        state.refuse(Some(&route.name), &request);
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "body too large", "limit_bytes": state.body_limit}),
        )
    };
    if declared.is_some_and(|n| n > state.body_limit as u64) {
        return too_large();
    }
    let body = match axum::body::to_bytes(Body::new(request.into_body()), state.body_limit).await {
        Ok(body) => body,
        Err(err) if is_length_limit(&err) => return too_large(),
        Err(_) => {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"error": "cannot read body"}),
            );
        }
    };
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "body is not JSON"}),
        );
    };
    debug!(route = %route.name, body = %String::from_utf8_lossy(&body), "Webhook body.");
    let is_test = clevertap_webhook(&json).is_some_and(|h| h.is_test);
    if is_test && !route.forward_tests {
        info!(route = %route.name, "CleverTap test webhook answered, not forwarded.");
        return answer(
            StatusCode::OK,
            json!({"status": "test", "forwarded": false}),
        );
    }
    let received_at_ms = state.clock.now_ms();
    let paused_until_ms = match &state.pauses {
        Some(pauses) => route
            .destinations
            .iter()
            .filter_map(|d| {
                let key = (route.name.clone(), d.name.clone());
                Some((d.name.clone(), pauses.paused_until(&key, received_at_ms)?))
            })
            .collect(),
        None => HashMap::new(),
    };
    let payload = IncomingPayload {
        route: route.name.clone(),
        destinations: route.destinations.iter().map(|d| d.name.clone()).collect(),
        body: body.to_vec(),
        received_at_ms,
        paused_until_ms,
    };
    match state.queue.enqueue(payload, state.dedupe_window_ms).await {
        Ok(Enqueued::Accepted { id }) => {
            info!(route = %route.name, id = %id, bytes = body.len(), "Webhook accepted.");
            state.wake.notify_one();
            answer(StatusCode::OK, json!({"status": "accepted", "id": id}))
        }
        Ok(Enqueued::Duplicate { id }) => {
            info!(route = %route.name, id = %id, "Duplicate webhook within the dedupe window.");
            answer(StatusCode::OK, json!({"status": "duplicate", "id": id}))
        }
        Err(err @ QueueError::TooLarge { .. }) => {
            // A retry cannot help: 413, with the reason (limits, not secrets).
            warn!(route = %route.name, error = %err, "Webhook refused: too large for the queue.");
            answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": err.to_string()}),
            )
        }
        Err(err @ QueueError::Full { .. }) => {
            // Past a limit of the queue: nothing was stored, and nothing stored is touched.
            // Logged at most once per period, with how many were refused meanwhile.
            if let Some(held_back) = state.full_log.allow("queue-full") {
                warn!(route = %route.name, error = %err, held_back,
                      "Webhook refused: the queue is full.");
            }
            let mut answer = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the relay's queue is full, retry later"}),
            );
            answer.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from(QUEUE_FULL_RETRY_AFTER.as_secs()),
            );
            answer
        }
        Err(err) => {
            // Not accepted: the sender must retry, so this is not a 200.
            warn!(route = %route.name, error = %err, "Webhook not stored.");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "cannot store the payload, retry later"}),
            )
        }
    }
}
