//! The HMAC-SHA256 signature of forwarded deliveries, so receivers can check a delivery came
//! from this relay and is not a replay: `hex(HMAC-SHA256(secret, "<id>.<timestamp>.<body>"))`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the delivery id (the same value as `Idempotency-Key`).
pub const HEADER_ID: &str = "x-tapline-id";
/// Header carrying the Unix time (seconds) at which this attempt was signed.
pub const HEADER_TIMESTAMP: &str = "x-tapline-timestamp";
/// Header carrying `v1=<hex HMAC-SHA256>`.
pub const HEADER_SIGNATURE: &str = "x-tapline-signature";
/// The idempotency header: stable for a delivery across retries and replays.
pub const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";

fn mac(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Tapline-Signature` value for a delivery: `v1=` and the lowercase hex HMAC.
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, id, timestamp, body).finalize().into_bytes())
    )
}

/// Whether `header` (the `X-Tapline-Signature` value) signs this id, timestamp and body, compared
/// in constant time. Receivers should also refuse timestamps older than a few minutes.
pub fn verify(secret: &[u8], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(given) = header
        .trim()
        .strip_prefix("v1=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    mac(secret, id, timestamp, body)
        .verify_slice(&given)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let sig = sign(b"k", "d1", 1_700_000_000, b"{}");
        assert!(verify(b"k", "d1", 1_700_000_000, b"{}", &sig));
        assert!(!verify(b"k", "d1", 1_700_000_001, b"{}", &sig));
        assert!(!verify(b"k", "d2", 1_700_000_000, b"{}", &sig));
        assert!(!verify(b"j", "d1", 1_700_000_000, b"{}", &sig));
        assert!(!verify(b"k", "d1", 1_700_000_000, b"{ }", &sig));
    }
}
