//! Requests to the relay's axum `Router` in process (no socket), as the HTTP front ends would
//! hand them over.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// POSTs `body` as JSON to `/hooks/{route}` of `router`, with the `auth` header (name, value)
/// when given; the status and the JSON answer (`Null` when the answer is not JSON).
pub async fn post_hook(
    router: &axum::Router,
    route: &str,
    auth: Option<(&str, &str)>,
    body: &str,
) -> (StatusCode, Value) {
    let mut request =
        Request::post(format!("/hooks/{route}")).header("content-type", "application/json");
    if let Some((name, value)) = auth {
        request = request.header(name, value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
