//! [`HttpDestination`]: forwards the body as received to a configured URL, with an
//! `Idempotency-Key` and a Standard Webhooks signature (see [`crate::webhook_relay::signature`]).

use std::time::Duration;

use async_trait::async_trait;

use crate::secret::Secret;
use crate::webhook_relay::destinations::{
    DeliveryAttempt, DeliveryError, Destination, parse_retry_after, snippet,
};
use crate::webhook_relay::signature::{
    HEADER_ID, HEADER_IDEMPOTENCY_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, SigningKeys,
};

/// Forwards payloads to one HTTP endpoint; any 2xx is success.
pub struct HttpDestination {
    client: reqwest::Client,
    url: Secret,
    signing_keys: SigningKeys,
    timeout: Duration,
}

impl HttpDestination {
    /// A destination posting to `url`, signing with every key of `signing_keys`.
    pub fn new(
        client: reqwest::Client,
        url: Secret,
        signing_keys: SigningKeys,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            url,
            signing_keys,
            timeout,
        }
    }
}

#[async_trait]
impl Destination for HttpDestination {
    async fn deliver(&self, attempt: DeliveryAttempt<'_>) -> Result<u16, DeliveryError> {
        let timestamp = attempt.now_ms.div_euclid(1000);
        let signature = self
            .signing_keys
            .sign(attempt.delivery_id, timestamp, attempt.body);
        let response = self
            .client
            .post(self.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_IDEMPOTENCY_KEY, attempt.delivery_id)
            .header(HEADER_ID, attempt.delivery_id)
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_SIGNATURE, signature)
            .body(attempt.body.to_vec())
            .send()
            .await
            .map_err(|e| DeliveryError::from_reqwest(e, self.timeout))?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let retry_after = parse_retry_after(response.headers(), attempt.now_ms);
        let text = response.text().await.unwrap_or_default();
        Err(DeliveryError::Status {
            status: status.as_u16(),
            body: snippet(&text, 200),
            retry_after,
        })
    }
}
