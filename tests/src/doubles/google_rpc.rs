//! What Google's JSON APIs answer on an error (Pub/Sub, Secret Manager: the `google.rpc.Status`
//! shape), for the doubles of those services.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `{"error": {"code": 404, "message": "…", "status": "NOT_FOUND"}}` with `status` as the HTTP
/// status; `code` is the canonical code name (`NOT_FOUND`, `INVALID_ARGUMENT`, …).
pub fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": status.as_u16(), "message": message, "status": code}})),
    )
        .into_response()
}
