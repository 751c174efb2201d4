//! The one way a warehouse URL is printed: with every password it may carry replaced by `***`,
//! whatever its scheme, its case or how malformed it is (a typo must not print a secret).
//!
//! Parsers disagree on where credentials end (tokio-postgres reads them to the first `@`, the
//! WHATWG URL parser to the last `@` before the first `/`), so this takes the widest reading:
//! the user info runs to the last `@` of the whole text, and a password parameter hides the
//! rest of the text.

/// Parameter names whose value is a secret, lowercase (`password`, `sslpassword`, …).
const SECRET_KEYS: &[&str] = &["password", "passwd", "pwd", "secret", "token"];

/// `url` with any password replaced by `***`: in the user info (`scheme://user:***@host/…`)
/// and in parameters (`?password=***`, `password=***` in a key-value string). What follows a
/// password parameter is hidden too, since an unencoded `&` or space may belong to it.
pub fn redact_url(url: &str) -> String {
    // Without `//` (`postgres:u:pw@h`) everything between the first `:` and the last `@` goes.
    let (head, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let rest = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{}", &rest[at + 1..]),
                None => rest.to_string(),
            }
        }
        None => rest.to_string(),
    };
    format!("{head}{}", hide_secret_parameters(&rest))
}

/// Whether `url` carries a password parameter (`?password=…`, `sslpassword=…`, any case,
/// percent-encoded names included).
pub fn has_secret_parameter(url: &str) -> bool {
    secret_parameter_start(url).is_some()
}

fn hide_secret_parameters(text: &str) -> String {
    match secret_parameter_start(text) {
        Some(value_start) => format!("{}***", &text[..value_start]),
        None => text.to_string(),
    }
}

/// Where the value of the first secret parameter starts (just after its `=`).
fn secret_parameter_start(text: &str) -> Option<usize> {
    for (eq, _) in text.match_indices('=') {
        let key_start = text[..eq]
            .rfind(['?', '&', ';', ' ', '\t', '\n'])
            .map_or(0, |i| i + 1);
        let key = percent_decoded_lowercase(&text[key_start..eq]);
        let key = key.trim();
        if SECRET_KEYS.iter().any(|s| key.contains(s)) {
            return Some(eq + 1);
        }
    }
    None
}

/// `%70ass` → `pass`: drivers decode parameter names, so an encoded name is still a password.
fn percent_decoded_lowercase(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Passwords with every character that confuses a URL parser.
    const NASTY: &[&str] = &[
        "p/w",
        "p?w",
        "p@w",
        "50%off",
        "a/b?c@d%e#f",
        "p&schema=x",
        "p w",
    ];

    #[test]
    fn a_user_info_password_never_shows_whatever_it_holds() {
        for password in NASTY {
            for scheme in [
                "postgres",
                "Postgres",
                "POSTGRESQL",
                "postgress",
                "sqlite",
                "x",
            ] {
                let url = format!("{scheme}://loader:{password}@db.example:5432/w?schema=ct");
                let shown = redact_url(&url);
                assert!(!shown.contains(password), "{url} -> {shown}");
                assert_eq!(
                    shown,
                    format!("{scheme}://loader:***@db.example:5432/w?schema=ct"),
                    "{url}"
                );
            }
        }
    }

    #[test]
    fn password_parameters_hide_the_rest() {
        assert_eq!(
            redact_url("postgresql://u@h/d?sslmode=require&password=s3cret&x=1"),
            "postgresql://u@h/d?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgres://h/d?PassWord=s3cret"),
            "postgres://h/d?PassWord=***"
        );
        assert_eq!(
            redact_url("postgres://h/d?pass%77ord=s3cret"),
            "postgres://h/d?pass%77ord=***"
        );
        assert_eq!(
            redact_url("host=db user=u password='a b' dbname=w"),
            "host=db user=u password=***"
        );
        assert!(has_secret_parameter("postgres://h/d?sslpassword=x"));
        assert!(!has_secret_parameter("postgres://h/d?schema=x"));
    }

    #[test]
    fn urls_without_secrets_are_unchanged() {
        for url in [
            "postgres://h/d",
            "postgres://loader@db/w?schema=ct",
            "sqlite://tapline.sqlite",
            "sqlite:///tmp/w@home.sqlite",
            "bigquery://acme/clevertap?location=EU",
            "not a url",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn malformed_urls_still_hide_the_password() {
        assert_eq!(redact_url("postgres:u:pw@h/d"), "postgres:***@h/d");
        assert_eq!(redact_url("u:p/w@h"), "u:***@h");
        assert_eq!(
            redact_url("postgres://u:a@b@h/d?application_name=x@y"),
            "postgres://u:***@y"
        );
    }
}
