//! `tapline report --relay-state DIR`: the local relay's dead letters in the completeness page.
//! A real relay (the SQLite queue in a state directory, its worker against a receiver that
//! refuses) makes the dead letters; the page lists them, newest first, escaped, without the
//! body, the route's token or a destination's URL.

use std::collections::HashMap;
use std::sync::Arc;

use tapline::webhook_relay::clock::ManualClock;
use tapline::webhook_relay::queue::sqlite::SqliteDeliveryQueue;
use tapline::webhook_relay::{Relay, RelayConfig};
use tapline_tests::doubles::receiver::{Receiver, Reply};
use tapline_tests::doubles::relay_router::post_hook;

const TOKEN: &str = "crm-token-0123456789abcdef0123456789";
const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BODY_MARKER: &str = "card-4111111111111111";

const CONFIG: &str = r#"
[settings]
max_attempts = 2
backoff_base_ms = 10
backoff_max_secs = 1
delivery_timeout_secs = 1

[[routes]]
name = "crm-hooks"
auth = { header = "X-Tapline-Token", secret_env = "CRM_TOKEN" }
[[routes.destinations]]
type = "http"
name = "crm"
url_env = "CRM_URL"
signing_secret_env = "SIGNING_KEY"
[[routes.destinations]]
type = "http"
name = "<b>backup</b>"
url_env = "BACKUP_URL"
signing_secret_env = "SIGNING_KEY"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_lists_the_relays_dead_letters_without_bodies_or_secrets() {
    let (crm, backup) = (Receiver::start().await, Receiver::start().await);
    crm.set_default(Reply::Status(400, "<script>bad field</script>".into()));
    backup.set_default(Reply::Status(503, "down".into()));
    let env: HashMap<&str, String> = HashMap::from([
        ("CRM_TOKEN", TOKEN.to_string()),
        ("CRM_URL", crm.url.clone()),
        ("BACKUP_URL", backup.url.clone()),
        ("SIGNING_KEY", SIGNING.to_string()),
    ]);
    let config = RelayConfig::parse("test", CONFIG, |var| env.get(var).cloned()).unwrap();
    let state = tempfile::tempdir().unwrap();
    {
        let clock = Arc::new(ManualClock::new(1_764_000_000_000));
        let queue = Arc::new(SqliteDeliveryQueue::open(state.path()).unwrap());
        let relay = Relay::new(&config, queue, clock).unwrap();
        let body = format!(r#"{{"card": "{BODY_MARKER}"}}"#);
        let (status, _) = post_hook(
            &relay.router,
            "crm-hooks",
            Some(("X-Tapline-Token", TOKEN)),
            &body,
        )
        .await;
        assert_eq!(status, 200);
        let stats = relay.worker.run_until_idle().await.unwrap();
        assert_eq!((stats.delivered, stats.dead), (0, 2), "{stats:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    let warehouse = format!("sqlite://{}", dir.path().join("w.sqlite").display());
    let out = dir.path().join("report.html");
    let state_dir = state.path().display().to_string();
    let out_text = out.display().to_string();
    let run = tapline_tests::tapline(&[
        "report",
        "--out",
        &out_text,
        "--warehouse",
        &warehouse,
        "--relay-state",
        &state_dir,
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let page = std::fs::read_to_string(&out).unwrap();
    let section = &page[page
        .find("<h2>Relay dead letters</h2>")
        .expect("the section")..];
    assert!(
        section.starts_with(
            "<h2>Relay dead letters</h2><p>2 dead letter(s), the newest 2 listed. Replay them \
             with <code>tapline relay replay</code>.</p>"
        ),
        "{section}"
    );
    // Newest first: the 503s were retried (two attempts), the 400 was not; the answers' text
    // and the names are escaped.
    let row = |destination: &str, attempts: u32, error: &str| {
        format!(
            "<tr><td class=\"name\">crm-hooks</td><td class=\"name\">{destination}</td>\
             <td>{attempts}</td><td class=\"name\">{error}</td><td class=\"name\">2025-11-24T16:00:0"
        )
    };
    let backup_row = row("&lt;b&gt;backup&lt;/b&gt;", 2, "retryable: HTTP 503: down");
    let crm_row = row(
        "crm",
        1,
        "permanent: HTTP 400: &lt;script&gt;bad field&lt;/script&gt;",
    );
    let (backup_at, crm_at) = (section.find(&backup_row), section.find(&crm_row));
    assert!(
        matches!((backup_at, crm_at), (Some(b), Some(c)) if b < c),
        "{section}"
    );
    for secret in [
        BODY_MARKER,
        TOKEN,
        SIGNING,
        crm.url.as_str(),
        backup.url.as_str(),
    ] {
        assert!(!page.contains(secret), "{secret} in {page}");
    }
    assert!(!page.contains("<script"), "{page}");
    assert_eq!(
        page.matches("<tr><td class=\"name\">crm-hooks</td>")
            .count(),
        2
    );

    // A directory without a relay queue is named, and nothing is written.
    let empty = tempfile::tempdir().unwrap();
    let missing_out = dir.path().join("missing.html");
    let missing = tapline_tests::tapline(&[
        "report",
        "--out",
        missing_out.to_str().unwrap(),
        "--warehouse",
        &warehouse,
        "--relay-state",
        empty.path().to_str().unwrap(),
    ]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains("no relay queue at")
            && missing.stderr.contains("give --relay-state the directory"),
        "{}",
        missing.stderr
    );
    assert!(!missing_out.exists());
}
