//! Caller authentication, in constant time: both sides are hashed with SHA-256 first so that
//! neither the content nor the length of the expected secret shows in the comparison time.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::webhook_relay::config::RouteAuth;

/// Whether two secrets are equal, in time independent of where they differ or their lengths.
pub fn secrets_equal(given: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(given);
    let b = Sha256::digest(expected);
    a.ct_eq(&b).into()
}

/// The one value of header `name`: none when it is missing or sent more than once. A header
/// sent twice is refused rather than guessing which copy counts (a proxy and the application
/// could pick different ones).
fn single_header(
    headers: &HeaderMap,
    name: impl axum::http::header::AsHeaderName,
) -> Option<&axum::http::HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
    }
}

/// Whether the request's headers satisfy the route's auth. Says nothing about why not: the
/// caller answers a bare 401 either way.
pub fn is_authorized(auth: &RouteAuth, headers: &HeaderMap) -> bool {
    match auth {
        RouteAuth::Header { name, secret } => single_header(headers, name)
            .is_some_and(|value| secrets_equal(value.as_bytes(), secret.expose().as_bytes())),
        RouteAuth::Basic { username, password } => {
            let Some(value) = single_header(headers, AUTHORIZATION) else {
                return false;
            };
            let Some(encoded) = value.to_str().ok().and_then(|v| {
                v.strip_prefix("Basic ")
                    .or_else(|| v.strip_prefix("basic "))
            }) else {
                return false;
            };
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim())
            else {
                return false;
            };
            let expected = format!("{username}:{}", password.expose());
            secrets_equal(&decoded, expected.as_bytes())
        }
        // A configuration parsed for the worker holds no route secret: refuse, never guess.
        RouteAuth::Unresolved => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use axum::http::{HeaderName, HeaderValue};

    #[test]
    fn header_and_basic_auth() {
        let auth = RouteAuth::Header {
            name: HeaderName::from_static("x-tapline-token"),
            secret: Secret::new("s3cret"),
        };
        let mut headers = HeaderMap::new();
        assert!(!is_authorized(&auth, &headers));
        headers.insert("x-tapline-token", HeaderValue::from_static("s3cre"));
        assert!(!is_authorized(&auth, &headers));
        headers.insert("x-tapline-token", HeaderValue::from_static("s3cret"));
        assert!(is_authorized(&auth, &headers));
        headers.append("x-tapline-token", HeaderValue::from_static("s3cret"));
        assert!(!is_authorized(&auth, &headers));

        let basic = RouteAuth::Basic {
            username: "clevertap".into(),
            password: Secret::new("pw"),
        };
        let mut headers = HeaderMap::new();
        let good = base64::engine::general_purpose::STANDARD.encode("clevertap:pw");
        headers.insert(AUTHORIZATION, format!("Basic {good}").parse().unwrap());
        assert!(is_authorized(&basic, &headers));
        let bad = base64::engine::general_purpose::STANDARD.encode("clevertap:px");
        headers.insert(AUTHORIZATION, format!("Basic {bad}").parse().unwrap());
        assert!(!is_authorized(&basic, &headers));
        // Two Authorization headers, the first one right: refused like two token headers.
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, format!("Basic {good}").parse().unwrap());
        headers.append(AUTHORIZATION, format!("Basic {bad}").parse().unwrap());
        assert!(!is_authorized(&basic, &headers));
    }
}
