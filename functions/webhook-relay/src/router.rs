//! The HTTP side: one axum [`Router`] with `POST /hooks/{route}` and `GET /healthz`, the same
//! on Lambda (`lambda_http`), Cloud Run and `tapline relay serve`. A payload is answered 200
//! only once it is stored; the answer never waits on a destination.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header::CONTENT_LENGTH};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::auth::is_authorized;
use crate::clock::Clock;
use crate::config::{RelayConfig, RouteConfig};
use crate::payload::clevertap_webhook;
use crate::queue::{AcceptQueue, Enqueued, IncomingPayload};
use crate::worker::DestinationPauses;

/// What the handlers share: the routes, the queue and the worker's wake-up.
pub struct RelayState {
    routes: HashMap<String, RouteConfig>,
    queue: Arc<dyn AcceptQueue>,
    clock: Arc<dyn Clock>,
    body_limit: usize,
    dedupe_window_ms: i64,
    wake: Arc<Notify>,
    pauses: Option<Arc<DestinationPauses>>,
}

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

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, axum::Json(json!({"status": "ok"})))
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

/// `POST /hooks/{route}`: 404 unknown route, 401 bad credentials (no detail), 413 too large
/// (for the body limit, or for the queue: an SQS message without a payload bucket),
/// 400 not JSON, 200 once stored (or a CleverTap test not forwarded, or a duplicate), 503 when
/// the queue cannot store it (so the sender retries).
async fn accept_hook(
    State(state): State<Arc<RelayState>>,
    Path(route_name): Path<String>,
    request: Request,
) -> Response {
    let Some(route) = state.routes.get(&route_name) else {
        return answer(StatusCode::NOT_FOUND, json!({"error": "unknown route"}));
    };
    // Authenticate before reading the body: an unauthenticated caller cannot make us buffer.
    if !is_authorized(&route.auth, request.headers()) {
        info!(route = %route.name, "Webhook refused: not authorized.");
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
        Err(err @ crate::queue::QueueError::TooLarge { .. }) => {
            // A retry cannot help: 413, with the reason (limits, not secrets).
            warn!(route = %route.name, error = %err, "Webhook refused: too large for the queue.");
            answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": err.to_string()}),
            )
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
