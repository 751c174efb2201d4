//! A Google Secret Manager double on loopback: `GET /v1/projects/P/secrets/S/versions/V:access`
//! as documented (`{"name": …, "payload": {"data": <base64>, "dataCrc32c": …}}`), `latest` being
//! the newest version. It refuses what the service refuses: another method or path shape (400
//! or 404), an unknown secret or version (404 `NOT_FOUND`), and, when told, an identity without
//! access (403 `PERMISSION_DENIED`). It counts reads.

use crate::doubles::google_rpc::error;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

#[derive(Default)]
struct Shared {
    /// Secret name (`projects/P/secrets/S`) → its versions' values, oldest first (version 1).
    secrets: Mutex<HashMap<String, Vec<String>>>,
    denied: Mutex<HashSet<String>>,
    reads: Mutex<Vec<String>>,
}

/// The running double; stops when dropped.
pub struct SecretManagerDouble {
    /// What `SECRET_MANAGER_ENDPOINT` should say: `http://127.0.0.1:PORT`.
    pub endpoint: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SecretManagerDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let Some(name) = path
        .strip_prefix("/v1/")
        .and_then(|rest| rest.strip_suffix(":access"))
    else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no such method: {path}"),
        );
    };
    if request.method() != Method::GET {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("{} is not the method of versions.access", request.method()),
        );
    }
    let parts: Vec<&str> = name.split('/').collect();
    let ["projects", project, "secrets", secret, "versions", version] = parts.as_slice() else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("Invalid resource field value in the request: {name}"),
        );
    };
    shared.reads.lock().unwrap().push(name.to_string());
    let secret_name = format!("projects/{project}/secrets/{secret}");
    if shared.denied.lock().unwrap().contains(&secret_name) {
        return error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!(
                "Permission 'secretmanager.versions.access' denied for resource '{name}' (or it may not exist)."
            ),
        );
    }
    let secrets = shared.secrets.lock().unwrap();
    let Some(versions) = secrets.get(&secret_name) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Secret [{secret_name}] not found or has no versions."),
        );
    };
    let (number, value) = match *version {
        "latest" => match versions.last() {
            Some(v) => (versions.len(), v),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    format!("Secret [{secret_name}] not found or has no versions."),
                );
            }
        },
        n => match n
            .parse::<usize>()
            .ok()
            .and_then(|i| Some((i, versions.get(i.checked_sub(1)?)?)))
        {
            Some(found) => found,
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    format!("Secret Version [{name}] not found."),
                );
            }
        },
    };
    (
        StatusCode::OK,
        axum::Json(json!({
            "name": format!("{secret_name}/versions/{number}"),
            "payload": {
                "data": base64::engine::general_purpose::STANDARD.encode(value),
                "dataCrc32c": "0",
            }
        })),
    )
        .into_response()
}

impl SecretManagerDouble {
    /// Starts an empty double.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind secret manager double");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint,
            shared,
            task,
        }
    }

    /// Adds a version with `value` to secret `projects/PROJECT/secrets/SECRET` (created on the
    /// first call); returns the version's full name.
    pub fn add_version(&self, project: &str, secret: &str, value: &str) -> String {
        let name = format!("projects/{project}/secrets/{secret}");
        let mut secrets = self.shared.secrets.lock().unwrap();
        let versions = secrets.entry(name.clone()).or_default();
        versions.push(value.to_string());
        format!("{name}/versions/{}", versions.len())
    }

    /// Makes every read of `projects/PROJECT/secrets/SECRET` answer 403, as for an identity
    /// without `roles/secretmanager.secretAccessor` on it.
    pub fn deny(&self, project: &str, secret: &str) {
        self.shared
            .denied
            .lock()
            .unwrap()
            .insert(format!("projects/{project}/secrets/{secret}"));
    }

    /// Every version name read (well-formed requests only), in order.
    pub fn reads(&self) -> Vec<String> {
        self.shared.reads.lock().unwrap().clone()
    }
}
