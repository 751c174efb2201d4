//! The export loader as an HTTP service, for Cloud Run behind Eventarc and Cloud Scheduler.
//!
//! - `POST /`: an Eventarc CloudEvent for `google.cloud.storage.object.v1.finalized`, binary
//!   mode (`ce-*` headers, StorageObjectData body) or structured mode
//!   (`application/cloudevents+json`). 200 when the object is loaded, already loaded,
//!   quarantined or not an export; **503 only when retrying may help** (warehouse down,
//!   throttling), so Eventarc redelivers; 200 with `"outcome": "failed"` when it cannot (the
//!   object is gone), since redelivering would only loop; 400 for a body that is no CloudEvent.
//! - `POST /sweep`: `{"uri": "gs://bucket/prefix"}` from Cloud Scheduler or the relay,
//!   optionally with `"since"`, `"window_days"` or `"request_id"`: 200 with the summary; a
//!   failure answers `errorType` (the Lambda's kinds, [`InvocationError::kind`]) and `retry`
//!   under [`status_for`]'s status: 400 for a body that is no sweep or a location the loader
//!   cannot list for good, 503 when a retry may help, 500 when objects failed for good.
//! - `GET /healthz`: 200 `ok`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tracing::{error, info, warn};

use crate::config::LoadConfig;
use crate::error::chain::error_chain;
use crate::export_loader::invocation::{
    INVALID_LOAD_PAYLOAD, InvocationError, SWEEP_LOCATION_REFUSED,
};
use crate::export_loader::load::{FileOutcome, entry_for, load_object};
use crate::export_loader::sweep::{SweepRequest, sweep};
use crate::storage::ObjectSource;
use crate::triggers::{Notice, from_cloudevent};
use crate::warehouse::Warehouse;

/// What every request shares: built once at startup.
#[derive(Clone)]
pub struct ServiceState {
    /// Where objects are read from (GCS on Cloud Run).
    pub source: Arc<dyn ObjectSource>,
    /// Where rows go.
    pub warehouse: Arc<dyn Warehouse>,
    /// Time zone, reject ratio.
    pub config: Arc<LoadConfig>,
}

/// The service's routes.
pub fn router(state: ServiceState) -> Router {
    Router::new()
        .route("/", post(on_cloudevent))
        .route("/sweep", post(on_sweep))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn on_cloudevent(
    State(state): State<ServiceState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let event_id = header("ce-id").unwrap_or_default();
    let notices = match from_cloudevent(&header, &body) {
        Ok(n) => n,
        Err(e) => {
            warn!(%event_id, error = %error_chain(&e), "Request is not a CloudEvent Tapline understands.");
            return failure(&InvocationError::Payload(e), json!({}));
        }
    };
    let mut objects = Vec::new();
    let mut retry = false;
    for notice in notices {
        let object = match notice {
            Notice::Object(object) => object,
            Notice::Ignore(reason) => {
                info!(%event_id, %reason, "Event ignored.");
                objects.push(json!({ "ignored": reason }));
                continue;
            }
        };
        let entry = entry_for(&object);
        let read = Arc::new(AtomicU64::new(0));
        let report = load_object(
            state.source.as_ref(),
            state.warehouse.as_ref(),
            &entry,
            &state.config,
            read,
        )
        .await;
        let mut summary = json!({ "uri": entry.uri, "outcome": report.outcome.label() });
        if let FileOutcome::Failed { error, retryable } = &report.outcome {
            summary["error"] = json!(error);
            summary["retryable"] = json!(retryable);
            if *retryable {
                retry = true;
            } else {
                // Redelivery cannot fix it: say so loudly, the ledger keeps the failure.
                error!(%event_id, uri = %entry.uri, %error, "Export cannot be loaded; not retrying.");
            }
        }
        objects.push(summary);
    }
    let status = if retry {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(status, json!({ "objects": objects }))
}

async fn on_sweep(State(state): State<ServiceState>, body: Bytes) -> Response {
    let request: SweepRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let err = InvocationError::malformed_sweep(&e);
            warn!(kind = err.kind(), error = %error_chain(&err), "Sweep request not understood.");
            return failure(&err, json!({}));
        }
    };
    match sweep(
        state.source.as_ref(),
        state.warehouse.as_ref(),
        &request,
        &state.config,
    )
    .await
    {
        Ok(report) => match InvocationError::of_reports(&report.reports) {
            Ok(()) => json_response(StatusCode::OK, report.to_json()),
            Err(err) => failure(&err, report.to_json()),
        },
        Err(source) => {
            // The listing or the ledger read failed: nothing was loaded.
            let err = InvocationError::SweepListing {
                uri: request.uri.clone(),
                source,
            };
            warn!(uri = %request.uri, kind = err.kind(), error = %error_chain(&err),
                  "Sweep could not list its location or read the ledger.");
            failure(&err, json!({ "uri": request.uri }))
        }
    }
}

/// The answer's status for a failed request: 400 when the request itself is wrong (a body that
/// is no sweep, a location this loader cannot list), 503 when a retry may fix it (the warehouse
/// or the storage busy or down), 500 when every failure needs someone to act.
pub fn status_for(err: &InvocationError) -> StatusCode {
    match err.kind() {
        INVALID_LOAD_PAYLOAD | SWEEP_LOCATION_REFUSED => StatusCode::BAD_REQUEST,
        _ if err.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `body` (a JSON object) with the error, its kind (`errorType`, as on Lambda) and whether a
/// retry may help (`retry`), under [`status_for`]'s status.
fn failure(err: &InvocationError, mut body: Value) -> Response {
    body["error"] = json!(error_chain(err));
    body["errorType"] = json!(err.kind());
    body["retry"] = json!(err.is_retryable());
    json_response(status_for(err), body)
}

/// Serves `router` on `listener` until SIGTERM (what Cloud Run sends before stopping an
/// instance) or Ctrl-C, under the shared server limits (`TAPLINE_HTTP_*`, see
/// [`crate::http_server`]); requests in flight get the shutdown grace to finish.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    let limits = crate::http_server::ServerLimits::from_env()?;
    crate::http_server::serve(listener, router, limits, crate::process::shutdown_signal()).await
}
