//! Asking another Tapline function to run a job and waiting for its answer: the Lambda Invoke
//! API (`RequestResponse`, SigV4-signed) on AWS, a POST with a Google ID token on Cloud Run.
//! The `export-status` destination runs the loader's sweep and the puller's `reconcile` so.
//! Failures map to [`DeliveryError`]s that say whether the relay should try again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::export_loader::invocation::NOT_RETRYABLE_KINDS as LOADER_NOT_RETRYABLE;
use crate::webhook_relay::destinations::{DeliveryError, parse_retry_after, snippet};

/// Most bytes of a function's answer read (a sweep summary is a few hundred).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Characters of an answer kept in an error.
const ERROR_SNIPPET_CHARS: usize = 300;
/// How long an ID token is reused: Google's are valid for an hour.
const ID_TOKEN_REUSE: Duration = Duration::from_secs(50 * 60);
/// The puller's `errorType`s that a retry cannot fix (see `PullInvocationError::kind`).
const PULLER_NOT_RETRYABLE: [&str; 3] = ["InvalidPullPayload", "InvalidPullSettings", "PullFailed"];

/// Whether a function's `errorType` says a retry cannot fix its failure: the puller's kinds
/// above and the export loader's `InvalidLoadPayload`, `SweepLocationRefused` and `LoadFailed`
/// (see [`crate::export_loader::invocation::InvocationError::kind`]), so that a malformed sweep
/// is dead-lettered at once. Any other type (`LoadFailedRetryable`, `PullFailedRetryable`, a
/// runtime's own: a timeout, a crash) is retried.
fn is_permanent(error_type: &str) -> bool {
    PULLER_NOT_RETRYABLE.contains(&error_type) || LOADER_NOT_RETRYABLE.contains(&error_type)
}

/// The variable that points the Lambda Invoke API elsewhere (a local emulator such as
/// `cargo lambda watch`, a VPC endpoint), as the AWS SDKs read it.
pub const ENV_LAMBDA_ENDPOINT: &str = "AWS_ENDPOINT_URL_LAMBDA";

/// Where a job runs: `lambda:NAME` or a Cloud Run service's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionTarget {
    /// A Lambda function, by name, invoked through the Lambda Invoke API.
    Lambda(String),
    /// A Cloud Run service's base URL (`https://…run.app`; `http://` only on loopback).
    CloudRun(String),
}

impl FunctionTarget {
    /// Reads `lambda:NAME` (1 to 64 letters, digits, `-`, `_`) or `https://HOST[:PORT]` (no
    /// path, query or credentials; `http://` is accepted for loopback hosts only: services run
    /// on this machine, which are sent no ID token). The error says what is expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(name) = text.strip_prefix("lambda:") {
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            return if valid {
                Ok(FunctionTarget::Lambda(name.to_string()))
            } else {
                Err("a Lambda function name is 1 to 64 letters, digits, '-' and '_'".to_string())
            };
        }
        let expected = "expected lambda:FUNCTION_NAME or a Cloud Run service URL (https://HOST)";
        let url = reqwest::Url::parse(text).map_err(|_| expected.to_string())?;
        let host = url.host_str().unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
        if !scheme_ok
            || url.host().is_none()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
            || url.path() != "/"
        {
            return Err(format!(
                "{expected}, without path, query or credentials (http:// only on loopback)"
            ));
        }
        Ok(FunctionTarget::CloudRun(
            url.as_str().trim_end_matches('/').to_string(),
        ))
    }

    /// Whether the target is a Lambda function.
    pub fn is_lambda(&self) -> bool {
        matches!(self, FunctionTarget::Lambda(_))
    }

    /// `Lambda NAME` or `Cloud Run URL`, for logs and errors (neither holds a secret).
    pub fn describe(&self) -> String {
        match self {
            FunctionTarget::Lambda(name) => format!("Lambda {name}"),
            FunctionTarget::CloudRun(url) => format!("Cloud Run {url}"),
        }
    }
}

/// Invokes functions with the relay's HTTP client (no redirects, the delivery timeout); AWS
/// credentials and ID tokens are fetched on first use and reused.
pub struct FunctionInvoker {
    client: reqwest::Client,
    timeout: Duration,
    /// Where the Lambda API is, when not AWS's regional endpoint ([`ENV_LAMBDA_ENDPOINT`]).
    /// Read by the Lambda half only, which builds without `relay-sqs` leave out.
    #[cfg_attr(not(feature = "relay-sqs"), allow(dead_code))]
    lambda_endpoint: Option<String>,
    id_tokens: Mutex<HashMap<String, (String, Instant)>>,
    #[cfg(feature = "relay-sqs")]
    aws: tokio::sync::OnceCell<aws_config::SdkConfig>,
}

impl FunctionInvoker {
    /// An invoker sending with `client`, whose requests time out after `timeout`; Lambda
    /// functions are invoked at `lambda_endpoint` when given (else `AWS_ENDPOINT_URL`, else
    /// AWS's regional endpoint).
    pub fn new(
        client: reqwest::Client,
        timeout: Duration,
        lambda_endpoint: Option<String>,
    ) -> Self {
        Self {
            client,
            timeout,
            lambda_endpoint,
            id_tokens: Mutex::new(HashMap::new()),
            #[cfg(feature = "relay-sqs")]
            aws: tokio::sync::OnceCell::new(),
        }
    }

    /// Runs `payload` on `target` and returns its JSON answer: on Lambda the payload is the
    /// event, on Cloud Run it is POSTed to `cloud_run_path` (`/sweep`, `/`). A function that
    /// failed, or an answer that is no success, is an error; retryable unless the function
    /// said a retry cannot help (a 4xx, `"retry": false`, an invalid-payload `errorType`).
    pub async fn invoke(
        &self,
        target: &FunctionTarget,
        cloud_run_path: &str,
        payload: &Value,
    ) -> Result<Value, DeliveryError> {
        let body = serde_json::to_vec(payload)
            .map_err(|e| DeliveryError::Transport(format!("payload not serialisable: {e}")))?;
        let response = match target {
            FunctionTarget::Lambda(name) => self.send_lambda(name, body).await?,
            FunctionTarget::CloudRun(base) => {
                let url = format!("{base}{cloud_run_path}");
                let mut request = self
                    .client
                    .post(&url)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body);
                if !base.starts_with("http://") {
                    let token = self.id_token(base).await?;
                    request = request.bearer_auth(token);
                }
                request
                    .send()
                    .await
                    .map_err(|e| DeliveryError::from_reqwest(e, self.timeout))?
            }
        };
        let status = response.status().as_u16();
        let retry_after =
            parse_retry_after(response.headers(), jiff::Timestamp::now().as_millisecond());
        let function_error = response
            .headers()
            .get("x-amz-function-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_capped(response, self.timeout).await?;
        let answer: Option<Value> = serde_json::from_slice(&bytes).ok();
        let text = || snippet(&String::from_utf8_lossy(&bytes), ERROR_SNIPPET_CHARS);
        // Lambda answers 200 with the header; emulators (cargo lambda watch) answer a 5xx with
        // the same `{errorType, errorMessage}` body.
        let function_error = function_error.or_else(|| {
            (status >= 500 && target.is_lambda())
                .then(|| {
                    answer
                        .as_ref()?
                        .get("errorType")?
                        .as_str()
                        .map(str::to_string)
                })
                .flatten()
        });
        if let Some(kind) = function_error {
            // Lambda ran the function and it failed: the answer is {errorType, errorMessage}.
            let error_type = answer
                .as_ref()
                .and_then(|a| a["errorType"].as_str())
                .unwrap_or(&kind)
                .to_string();
            return Err(function_failed(target, &error_type, &text()));
        }
        if (200..300).contains(&status) {
            return answer.ok_or_else(|| {
                DeliveryError::Transport(format!(
                    "{} answered {status} without JSON: {}",
                    target.describe(),
                    text()
                ))
            });
        }
        let refused = answer
            .as_ref()
            .is_some_and(|a| a.get("retry") == Some(&Value::Bool(false)));
        if refused {
            // The loader's and the puller's services name the kind as their Lambdas do.
            let kind = answer
                .as_ref()
                .and_then(|a| a.get("errorType")?.as_str())
                .map(|t| format!(" ({})", crate::printable::escaped(t)))
                .unwrap_or_default();
            return Err(DeliveryError::Rejected {
                destination: "export-status",
                detail: format!(
                    "{} answered {status}{kind}, not to be retried: {}",
                    target.describe(),
                    text()
                ),
            });
        }
        Err(DeliveryError::Status {
            status,
            body: format!("{}: {}", target.describe(), text()),
            retry_after,
        })
    }

    /// An ID token for `audience` from the metadata server (what Cloud Run gives every
    /// service's identity), reused for [`ID_TOKEN_REUSE`]. `GCE_METADATA_HOST` overrides the
    /// server's address, as in Google's libraries.
    async fn id_token(&self, audience: &str) -> Result<String, DeliveryError> {
        let mut cache = self.id_tokens.lock().await;
        if let Some((token, at)) = cache.get(audience)
            && at.elapsed() < ID_TOKEN_REUSE
        {
            return Ok(token.clone());
        }
        let host = std::env::var("GCE_METADATA_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "metadata.google.internal".to_string());
        let response = self
            .client
            .get(format!(
                "http://{host}/computeMetadata/v1/instance/service-accounts/default/identity"
            ))
            .query(&[("audience", audience), ("format", "full")])
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| DeliveryError::from_reqwest(e, self.timeout))?;
        let status = response.status().as_u16();
        let bytes = read_capped(response, self.timeout).await?;
        let token = String::from_utf8_lossy(&bytes).trim().to_string();
        if status != 200 || token.is_empty() || token.chars().any(char::is_control) {
            // The answer is not echoed: it may be a token.
            return Err(DeliveryError::Transport(format!(
                "no ID token for {audience} from the metadata server (HTTP {status})"
            )));
        }
        cache.insert(audience.to_string(), (token.clone(), Instant::now()));
        Ok(token)
    }

    #[cfg(feature = "relay-sqs")]
    async fn send_lambda(
        &self,
        function: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, DeliveryError> {
        use aws_credential_types::provider::ProvideCredentials;
        let config = self
            .aws
            .get_or_init(|| aws_config::load_defaults(aws_config::BehaviorVersion::latest()))
            .await;
        let region =
            config
                .region()
                .map(|r| r.to_string())
                .ok_or_else(|| DeliveryError::Rejected {
                    destination: "export-status",
                    detail: "no AWS region to invoke Lambda in: set AWS_REGION".to_string(),
                })?;
        let endpoint = self
            .lambda_endpoint
            .clone()
            .or_else(|| config.endpoint_url().map(str::to_string))
            .unwrap_or_else(|| format!("https://lambda.{region}.amazonaws.com"));
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            endpoint.trim_end_matches('/')
        );
        let credentials = config
            .credentials_provider()
            .ok_or_else(|| DeliveryError::Transport("no AWS credentials".to_string()))?
            .provide_credentials()
            .await
            .map_err(|e| {
                DeliveryError::Transport(format!(
                    "no AWS credentials: {}",
                    crate::error::error_chain(&e)
                ))
            })?;
        let headers = lambda_signed_headers(&url, &region, credentials.into(), &body)?;
        let mut request = self.client.post(&url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request
            .send()
            .await
            .map_err(|e| DeliveryError::from_reqwest(e, self.timeout))
    }

    #[cfg(not(feature = "relay-sqs"))]
    async fn send_lambda(
        &self,
        _function: &str,
        _body: Vec<u8>,
    ) -> Result<reqwest::Response, DeliveryError> {
        Err(DeliveryError::Rejected {
            destination: "export-status",
            detail: "this build cannot invoke Lambda (built without the relay-sqs feature)"
                .to_string(),
        })
    }
}

/// The delivery error of a function that ran and failed with `error_type` (its answer's start
/// in `answer`): dead-lettered at once when the type says a retry cannot help, else retried.
fn function_failed(target: &FunctionTarget, error_type: &str, answer: &str) -> DeliveryError {
    let detail = format!(
        "{} failed ({}): {answer}",
        target.describe(),
        crate::printable::escaped(error_type)
    );
    if is_permanent(error_type) {
        DeliveryError::Rejected {
            destination: "export-status",
            detail,
        }
    } else {
        DeliveryError::Transport(detail)
    }
}

/// The headers of a synchronous (`RequestResponse`) Invoke of `url`, the signature included.
#[cfg(feature = "relay-sqs")]
fn lambda_signed_headers(
    url: &str,
    region: &str,
    identity: aws_smithy_runtime_api::client::identity::Identity,
    body: &[u8],
) -> Result<Vec<(String, String)>, DeliveryError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let unsigned = [
        ("content-type", "application/json"),
        ("x-amz-invocation-type", "RequestResponse"),
    ];
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("lambda")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| DeliveryError::Transport(format!("cannot sign the Invoke: {e}")))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        unsigned.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| DeliveryError::Transport(format!("cannot sign the Invoke: {e}")))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| DeliveryError::Transport(format!("cannot sign the Invoke: {e}")))?
        .into_parts();
    let mut headers: Vec<(String, String)> = unsigned
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    headers.extend(
        instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Ok(headers)
}

/// The answer's body, at most [`MAX_ANSWER_BYTES`] (the rest is not read).
async fn read_capped(
    mut response: reqwest::Response,
    timeout: Duration,
) -> Result<Vec<u8>, DeliveryError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| DeliveryError::from_reqwest(e, timeout))?
    {
        let room = MAX_ANSWER_BYTES - bytes.len();
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() == MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_a_lambda_name_or_a_service_url() {
        assert_eq!(
            FunctionTarget::parse("lambda:tapline-export-loader"),
            Ok(FunctionTarget::Lambda("tapline-export-loader".into()))
        );
        assert_eq!(
            FunctionTarget::parse("https://loader-abc-ew.a.run.app/"),
            Ok(FunctionTarget::CloudRun(
                "https://loader-abc-ew.a.run.app".into()
            ))
        );
        assert_eq!(
            FunctionTarget::parse("http://127.0.0.1:8080"),
            Ok(FunctionTarget::CloudRun("http://127.0.0.1:8080".into()))
        );
        for bad in [
            "lambda:",
            "lambda:a/b",
            "lambda:arn:aws:lambda:x",
            "http://loader.example.com",
            "https://user:pw@loader.example.com",
            "https://loader.example.com/sweep",
            "https://loader.example.com/?x=1",
            "loader",
        ] {
            assert!(FunctionTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_loader_refusing_its_payload_is_permanent_and_an_outage_is_retried() {
        let loader = FunctionTarget::Lambda("tapline-export-loader".into());
        let answer = r#"{"errorType":"…","errorMessage":"…"}"#;
        let classified = |error_type: &str| function_failed(&loader, error_type, answer);
        for permanent in [
            "InvalidLoadPayload",
            "SweepLocationRefused",
            "LoadFailed",
            "InvalidPullPayload",
            "InvalidPullSettings",
            "PullFailed",
        ] {
            let err = classified(permanent);
            assert!(!err.is_retryable(), "{permanent}: {err}");
            assert_eq!(
                err.to_string(),
                format!(
                    "export-status refused it: Lambda tapline-export-loader failed ({permanent}): {answer}"
                )
            );
        }
        for retried in [
            "LoadFailedRetryable",
            "PullFailedRetryable",
            "Sandbox.Timedout",
            "Runtime.ExitError",
            // Before the loader named its kinds: its Rust type.
            "tapline::export_loader::invocation::InvocationError",
        ] {
            let err = classified(retried);
            assert!(err.is_retryable(), "{retried}: {err}");
        }
        // The loader's own list is the one the relay reads.
        assert_eq!(
            LOADER_NOT_RETRYABLE,
            ["InvalidLoadPayload", "SweepLocationRefused", "LoadFailed"]
        );
    }

    #[cfg(feature = "relay-sqs")]
    #[test]
    fn invokes_are_signed_for_lambda_and_synchronous() {
        let credentials =
            aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let headers = lambda_signed_headers(
            "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/f/invocations",
            "eu-west-1",
            credentials.into(),
            b"{}",
        )
        .unwrap();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-amz-invocation-type"), Some("RequestResponse"));
        let authorization = get("authorization").unwrap();
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                && authorization.contains("/eu-west-1/lambda/aws4_request")
                && authorization.contains("x-amz-invocation-type"),
            "{authorization}"
        );
        assert!(get("x-amz-date").is_some());
    }
}
