//! Google Secret Manager over its REST API (feature `gcp-secrets`): what
//! [`super::read_secret`] calls for a `projects/P/secrets/S/versions/V` reference.
//!
//! `GET {endpoint}/v1/projects/P/secrets/S/versions/V:access` answers
//! `{"name": …, "payload": {"data": "<base64>", "dataCrc32c": "…"}}`. The endpoint is
//! `SECRET_MANAGER_ENDPOINT` when set (a double), else Google's; credentials are Application
//! Default Credentials (the Cloud Run service's identity), except that with the endpoint set and
//! no `GOOGLE_APPLICATION_CREDENTIALS` requests carry no token, as for `BIGQUERY_ENDPOINT`.
//! The value is returned, never logged; errors name the version, never the value.

use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use super::{Secret, SecretError};
use crate::google_auth::{BuildCredentialsError, CredentialsError, GoogleAuth};
use crate::retry::{Jitter, RetryPolicy};

/// The variable naming a Secret Manager endpoint other than Google's (a double).
pub const ENV_SECRET_MANAGER_ENDPOINT: &str = "SECRET_MANAGER_ENDPOINT";
/// Google's endpoint.
pub const PRODUCTION_ENDPOINT: &str = "https://secretmanager.googleapis.com";
const ENV_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// Tries per read, 200 ms then 400 ms apart: a start-up should survive a blip of the service,
/// not wait minutes on it.
const RETRY: RetryPolicy = RetryPolicy::exponential(
    3,
    Duration::from_millis(200),
    Duration::from_millis(400),
    Jitter::NONE,
);

/// Why a Secret Manager version could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretManagerError {
    /// The credentials configuration is unreadable.
    #[error("cannot read Google credentials")]
    Credentials(#[source] BuildCredentialsError),
    /// No token could be had (metadata server, credentials file).
    #[error("cannot get a Google access token")]
    Token(#[source] CredentialsError),
    /// The HTTP client could not be built, or the service could not be reached.
    #[error("Secret Manager could not be reached")]
    Transport(#[source] reqwest::Error),
    /// The service answered with an error (404 no such secret or version, 403 no
    /// `secretmanager.versions.access` for this identity, 400 a disabled version).
    #[error("Secret Manager answered HTTP {status} ({code}): {message}")]
    Http {
        /// HTTP status.
        status: u16,
        /// Google's status name (`NOT_FOUND`, `PERMISSION_DENIED`, …).
        code: String,
        /// Google's message (names the secret, never a value).
        message: String,
    },
    /// The answer has no usable payload.
    #[error("the secret version's payload {0}")]
    Payload(&'static str),
}

impl SecretManagerError {
    /// Whether reading again later may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            SecretManagerError::Http { status, .. } => *status >= 500 || *status == 429,
            SecretManagerError::Transport(_) | SecretManagerError::Token(_) => true,
            SecretManagerError::Credentials(_) | SecretManagerError::Payload(_) => false,
        }
    }
}

/// A Secret Manager client: endpoint, credentials and an HTTP client, built once.
#[derive(Debug, Clone)]
pub struct SecretManager {
    endpoint: String,
    auth: GoogleAuth,
    http: reqwest::Client,
}

impl SecretManager {
    /// A client for `endpoint` (Google's or a double) with `auth`.
    pub fn new(endpoint: &str, auth: GoogleAuth) -> Result<Self, SecretManagerError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(SecretManagerError::Transport)?;
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            auth,
            http,
        })
    }

    /// The client the environment configures: `SECRET_MANAGER_ENDPOINT` (anonymous unless
    /// `GOOGLE_APPLICATION_CREDENTIALS` is set) or Google's with Application Default Credentials.
    pub fn from_env() -> Result<Self, SecretManagerError> {
        let endpoint = std::env::var(ENV_SECRET_MANAGER_ENDPOINT)
            .ok()
            .filter(|e| !e.is_empty());
        let auth = match &endpoint {
            Some(_) if std::env::var_os(ENV_CREDENTIALS).is_none() => GoogleAuth::anonymous(),
            _ => GoogleAuth::application_default().map_err(SecretManagerError::Credentials)?,
        };
        Self::new(endpoint.as_deref().unwrap_or(PRODUCTION_ENDPOINT), auth)
    }

    /// The value of version `name` (`projects/P/secrets/S/versions/V`) as UTF-8 text, as stored.
    /// Retries what is retryable a few times, briefly.
    pub async fn access(&self, name: &str) -> Result<Secret, SecretError> {
        let mut attempt = 1;
        loop {
            match self.access_once(name).await {
                Err(e) if RETRY.may_retry(attempt) && e.is_retryable() => {
                    tracing::warn!(secret = %name, attempt, error = %e, "Secret Manager read failed; retrying.");
                    tokio::time::sleep(RETRY.delay(attempt, None)).await;
                    attempt += 1;
                }
                other => {
                    return other.map_err(|e| SecretError::Read {
                        arn: name.to_string(),
                        source: Box::new(e),
                    });
                }
            }
        }
    }

    async fn access_once(&self, name: &str) -> Result<Secret, SecretManagerError> {
        let headers = self
            .auth
            .headers()
            .await
            .map_err(SecretManagerError::Token)?;
        let response = self
            .http
            .get(format!("{}/v1/{name}:access", self.endpoint))
            .headers(headers)
            .send()
            .await
            .map_err(SecretManagerError::Transport)?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(SecretManagerError::Transport)?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let error = &body["error"];
            return Err(SecretManagerError::Http {
                status,
                code: error["status"].as_str().unwrap_or("unknown").to_string(),
                message: error["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| text.chars().take(200).collect()),
            });
        }
        let data = body["payload"]["data"]
            .as_str()
            .ok_or(SecretManagerError::Payload("has no data"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| SecretManagerError::Payload("is not base64"))?;
        String::from_utf8(bytes)
            .map(Secret::new)
            .map_err(|_| SecretManagerError::Payload("is not UTF-8 text"))
    }
}
