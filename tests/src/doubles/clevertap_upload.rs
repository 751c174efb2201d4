//! A CleverTap upload API double on loopback (`POST /1/upload`): checks each request against the
//! documented shape (the account and passcode headers, `{"d":[…]}` with 1 to 1000 records, each
//! with an identity, an epoch-seconds `ts`, `type` event with `evtName` and `evtData` or profile
//! with `profileData`), answers 400 `{"status":"fail"}` otherwise, and reports the records of
//! chosen identities as `unprocessed`, as CleverTap does for a partial success.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

struct Shared {
    account_id: String,
    passcode: String,
    unprocessed_identities: Mutex<Vec<String>>,
    records: Mutex<Vec<Value>>,
    refusals: Mutex<Vec<String>>,
}

/// The running double; stops when dropped.
pub struct CleverTapUpload {
    /// `http://127.0.0.1:PORT/1/upload`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CleverTapUpload {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a record breaks the documented shape, if it does.
fn record_problem(record: &Value) -> Option<String> {
    let identified = ["identity", "objectId", "FBID", "GPID"]
        .iter()
        .any(|k| record[k].as_str().is_some_and(|v| !v.is_empty()));
    if !identified {
        return Some("no identity, objectId, FBID or GPID".into());
    }
    if !record["ts"].is_i64() || record["ts"].as_i64() < Some(1_000_000_000) {
        return Some("ts is not epoch seconds".into());
    }
    match record["type"].as_str() {
        Some("event") if record["evtName"].is_string() && record["evtData"].is_object() => None,
        Some("profile") if record["profileData"].is_object() => None,
        _ => Some("type event needs evtName and evtData; type profile needs profileData".into()),
    }
}

async fn upload(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let fail = |reason: String| {
        shared.refusals.lock().unwrap().push(reason.clone());
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"status": "fail", "error": reason, "code": 400})),
        )
            .into_response()
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if header("x-clevertap-account-id") != shared.account_id
        || header("x-clevertap-passcode") != shared.passcode
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"status": "fail", "error": "Invalid credentials"})),
        )
            .into_response();
    }
    if !header("content-type").starts_with("application/json") {
        return fail("Content-Type is not application/json".into());
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return fail("body is not JSON".into());
    };
    let Some(records) = request["d"].as_array() else {
        return fail("no \"d\" array".into());
    };
    if records.is_empty() || records.len() > 1000 {
        return fail(format!("{} records: 1 to 1000 allowed", records.len()));
    }
    if let Some(problem) = records.iter().find_map(record_problem) {
        return fail(problem);
    }
    let refused = shared.unprocessed_identities.lock().unwrap().clone();
    let mut unprocessed = Vec::new();
    for record in records {
        if refused.iter().any(|id| record["identity"] == *id) {
            unprocessed.push(json!({"status": "fail", "code": 512, "error": "Invalid identity", "record": record}));
        } else {
            shared.records.lock().unwrap().push(record.clone());
        }
    }
    axum::Json(json!({
        "status": "success",
        "processed": records.len() - unprocessed.len(),
        "unprocessed": unprocessed,
    }))
    .into_response()
}

impl CleverTapUpload {
    /// Starts a double expecting these credentials.
    pub async fn start(account_id: &str, passcode: &str) -> Self {
        let shared = Arc::new(Shared {
            account_id: account_id.into(),
            passcode: passcode.into(),
            unprocessed_identities: Mutex::new(Vec::new()),
            records: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/1/upload", post(upload))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind CleverTap double");
        let url = format!("http://{}/1/upload", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// Records of this identity come back as `unprocessed` (code 512).
    pub fn refuse_identity(&self, identity: &str) {
        self.shared
            .unprocessed_identities
            .lock()
            .unwrap()
            .push(identity.into());
    }

    /// Records accepted so far.
    pub fn records(&self) -> Vec<Value> {
        self.shared.records.lock().unwrap().clone()
    }

    /// Requests refused as malformed (400), with the reason.
    pub fn refusals(&self) -> Vec<String> {
        self.shared.refusals.lock().unwrap().clone()
    }
}
