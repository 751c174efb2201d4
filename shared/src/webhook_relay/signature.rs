//! Signatures of forwarded deliveries per the Standard Webhooks spec (what Svix and others use),
//! so receivers verify them with their language's Standard Webhooks library:
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, keys given as
//! `whsec_<base64>`, one signature per key so that a secret can be rotated without a gap.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the delivery id (the same value as `Idempotency-Key`).
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the Unix time (seconds) at which this attempt was signed.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying `v1,<base64>` per key, separated by spaces.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// The idempotency header: stable for a delivery across retries and replays.
pub const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The prefix of a Standard Webhooks secret; base64 of the key follows.
pub const SECRET_PREFIX: &str = "whsec_";
/// Shortest key accepted, in bytes after decoding (the spec's lower bound; Svix issues 24).
pub const MIN_KEY_BYTES: usize = 24;
/// Longest key accepted, in bytes after decoding (the spec's upper bound).
pub const MAX_KEY_BYTES: usize = 64;
/// Most keys signed with at once: the current one and those being rotated out.
pub const MAX_KEYS: usize = 4;

/// A signing secret that cannot be used. Never holds the secret itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningSecretError {
    /// Nothing but spaces.
    #[error("holds no secret: set it to whsec_<base64 key>")]
    Empty,
    /// More keys than [`MAX_KEYS`].
    #[error(
        "holds {count} secrets: at most {MAX_KEYS} (the current one and those being rotated out)"
    )]
    TooMany {
        /// How many it holds.
        count: usize,
    },
    /// A secret without the `whsec_` prefix.
    #[error(
        "secret #{position} does not start with whsec_: Standard Webhooks secrets are whsec_ and the \
         base64 of the key (for a raw key: whsec_$(printf %s \"$KEY\" | base64))"
    )]
    NotWhsec {
        /// 1-based position in the list.
        position: usize,
    },
    /// Not base64 after the prefix.
    #[error("secret #{position} is not base64 after whsec_")]
    NotBase64 {
        /// 1-based position in the list.
        position: usize,
    },
    /// A key shorter or longer than the spec allows.
    #[error("secret #{position} is a {len}-byte key: use {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")]
    Length {
        /// 1-based position in the list.
        position: usize,
        /// Its length in bytes after decoding.
        len: usize,
    },
}

/// The keys a destination signs with: `whsec_…` secrets separated by spaces, the first being the
/// current one. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeys(Vec<Vec<u8>>);

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeys({} key(s), ***)", self.0.len())
    }
}

impl SigningKeys {
    /// Parses `whsec_<base64>` secrets separated by whitespace.
    pub fn parse(text: &str) -> Result<Self, SigningSecretError> {
        let secrets: Vec<&str> = text.split_whitespace().collect();
        if secrets.is_empty() {
            return Err(SigningSecretError::Empty);
        }
        if secrets.len() > MAX_KEYS {
            return Err(SigningSecretError::TooMany {
                count: secrets.len(),
            });
        }
        let mut keys = Vec::with_capacity(secrets.len());
        for (i, secret) in secrets.iter().enumerate() {
            let position = i + 1;
            let encoded = secret
                .strip_prefix(SECRET_PREFIX)
                .ok_or(SigningSecretError::NotWhsec { position })?;
            let key = STANDARD
                .decode(encoded)
                .map_err(|_| SigningSecretError::NotBase64 { position })?;
            if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
                return Err(SigningSecretError::Length {
                    position,
                    len: key.len(),
                });
            }
            keys.push(key);
        }
        Ok(Self(keys))
    }

    /// The `webhook-signature` value for a delivery: `v1,<base64>` for each key, space-separated.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        self.0
            .iter()
            .map(|key| {
                format!(
                    "v1,{}",
                    STANDARD.encode(mac(key, id, timestamp, body).finalize().into_bytes())
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether some `v1` signature of `header` (a `webhook-signature` value) signs this id,
    /// timestamp and body with one of these keys, compared in constant time. Receivers should
    /// also refuse timestamps more than a few minutes away (the libraries do).
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header.split_whitespace().any(|signature| {
            let Some(given) = signature
                .strip_prefix("v1,")
                .and_then(|s| STANDARD.decode(s).ok())
            else {
                return false;
            };
            self.0
                .iter()
                .any(|key| mac(key, id, timestamp, body).verify_slice(&given).is_ok())
        })
    }
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const KEY_B: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    #[test]
    fn the_spec_example_signature() {
        // From the Standard Webhooks spec and Svix's docs.
        let keys = SigningKeys::parse(KEY_A).unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            keys.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let keys = SigningKeys::parse(KEY_A).unwrap();
        let sig = keys.sign("d1", 1_700_000_000, b"{}");
        assert!(keys.verify("d1", 1_700_000_000, b"{}", &sig));
        assert!(!keys.verify("d1", 1_700_000_001, b"{}", &sig));
        assert!(!keys.verify("d2", 1_700_000_000, b"{}", &sig));
        assert!(!keys.verify("d1", 1_700_000_000, b"{ }", &sig));
        let other = SigningKeys::parse(KEY_B).unwrap();
        assert!(!other.verify("d1", 1_700_000_000, b"{}", &sig));
    }

    #[test]
    fn rotation_signs_with_every_key() {
        let both = SigningKeys::parse(&format!("{KEY_B}  {KEY_A}")).unwrap();
        let header = both.sign("d1", 7, b"x");
        assert_eq!(header.split(' ').count(), 2);
        for key in [KEY_A, KEY_B] {
            assert!(
                SigningKeys::parse(key)
                    .unwrap()
                    .verify("d1", 7, b"x", &header)
            );
        }
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_a_key_of_spec_length() {
        use SigningSecretError::*;
        assert_eq!(SigningKeys::parse("  "), Err(Empty));
        assert_eq!(
            SigningKeys::parse("raw-secret-of-a-decent-length-1234"),
            Err(NotWhsec { position: 1 })
        );
        assert_eq!(
            SigningKeys::parse(&format!("{KEY_A} whsec_***")),
            Err(NotBase64 { position: 2 })
        );
        assert_eq!(
            SigningKeys::parse("whsec_c2hvcnQ="),
            Err(Length {
                position: 1,
                len: 5
            })
        );
        let err = SigningKeys::parse("whsec_c2hvcnQ=")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("c2hvcnQ"), "{err}");
        let keys = SigningKeys::parse(KEY_A).unwrap();
        assert!(!format!("{keys:?}").contains("MfKQ"));
    }
}
