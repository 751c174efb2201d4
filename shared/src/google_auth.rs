//! Google credentials for the REST calls Tapline makes itself (GCS listing, BigQuery).
//!
//! Tokens come from Google's official `google-cloud-auth`: Application Default Credentials
//! (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's user credentials, then the metadata server on
//! Cloud Run). Emulators take no token: [`GoogleAuth::anonymous`] sends none.

use google_cloud_auth::credentials::{self, CacheableResource, Credentials};
use http::{Extensions, HeaderMap};

/// The error `google-cloud-auth` reports while fetching a token.
pub type CredentialsError = google_cloud_auth::errors::CredentialsError;
/// The error `google-cloud-auth` reports while reading a credentials configuration.
pub type BuildCredentialsError = google_cloud_auth::build_errors::Error;

/// Where request headers (`Authorization: Bearer …`) come from.
#[derive(Clone, Debug)]
pub struct GoogleAuth {
    credentials: Credentials,
    anonymous: bool,
}

impl GoogleAuth {
    /// No token at all: what emulators (`STORAGE_EMULATOR_HOST`, `BIGQUERY_ENDPOINT`) expect.
    pub fn anonymous() -> Self {
        Self {
            credentials: credentials::anonymous::Builder::new().build(),
            anonymous: true,
        }
    }

    /// Application Default Credentials. Fails when a configured credentials file is unreadable
    /// or malformed; a missing token source shows up on the first request instead.
    pub fn application_default() -> Result<Self, BuildCredentialsError> {
        Ok(Self {
            credentials: credentials::Builder::default().build()?,
            anonymous: false,
        })
    }

    /// Whether requests go without a token.
    pub fn is_anonymous(&self) -> bool {
        self.anonymous
    }

    /// The credentials, for Google's own clients (`Storage::builder().with_credentials`).
    pub fn credentials(&self) -> Credentials {
        self.credentials.clone()
    }

    /// Headers to add to a request: the bearer token (refreshed by the library when due), or
    /// nothing when anonymous.
    pub async fn headers(&self) -> Result<HeaderMap, CredentialsError> {
        match self.credentials.headers(Extensions::new()).await? {
            CacheableResource::New { data, .. } => Ok(data),
            // Only returned when the caller passes an entity tag, which we never do.
            CacheableResource::NotModified => Ok(HeaderMap::new()),
        }
    }
}

/// The variable Google's client libraries read to find a storage emulator (fake-gcs-server).
pub const ENV_STORAGE_EMULATOR_HOST: &str = "STORAGE_EMULATOR_HOST";
/// Cloud Storage's JSON API.
pub const STORAGE_PRODUCTION_ENDPOINT: &str = "https://storage.googleapis.com";

/// Where Cloud Storage is, the way Google's libraries decide: `STORAGE_EMULATOR_HOST` (host:port
/// or a URL) with no token, else Google's endpoint with Application Default Credentials.
pub fn storage_from_env() -> Result<(String, GoogleAuth), BuildCredentialsError> {
    match std::env::var(ENV_STORAGE_EMULATOR_HOST) {
        Ok(host) if !host.is_empty() => Ok((emulator_endpoint(&host), GoogleAuth::anonymous())),
        _ => Ok((
            STORAGE_PRODUCTION_ENDPOINT.to_string(),
            GoogleAuth::application_default()?,
        )),
    }
}

/// `STORAGE_EMULATOR_HOST` may be `host:port` or a URL.
fn emulator_endpoint(host: &str) -> String {
    let host = host.trim_end_matches('/');
    if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_host_may_omit_the_scheme() {
        assert_eq!(emulator_endpoint("localhost:4443"), "http://localhost:4443");
        assert_eq!(
            emulator_endpoint("http://127.0.0.1:9/"),
            "http://127.0.0.1:9"
        );
    }
}
