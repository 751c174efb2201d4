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

/// The route's two destinations, `crm` refusing with a 400 (its text an HTML tag) and
/// `<b>backup</b>` down with 503s, and the relay configuration with `max_attempts` attempts.
async fn refusing_destinations(max_attempts: u32) -> (Receiver, Receiver, RelayConfig) {
    let (crm, backup) = (Receiver::start().await, Receiver::start().await);
    crm.set_default(Reply::Status(400, "<script>bad field</script>".into()));
    backup.set_default(Reply::Status(503, "down".into()));
    let env: HashMap<&str, String> = HashMap::from([
        ("CRM_TOKEN", TOKEN.to_string()),
        ("CRM_URL", crm.url.clone()),
        ("BACKUP_URL", backup.url.clone()),
        ("SIGNING_KEY", SIGNING.to_string()),
    ]);
    let text = CONFIG.replace(
        "max_attempts = 2",
        &format!("max_attempts = {max_attempts}"),
    );
    let config = RelayConfig::parse("test", &text, |var| env.get(var).cloned()).unwrap();
    (crm, backup, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_lists_the_relays_dead_letters_without_bodies_or_secrets() {
    let (crm, backup, config) = refusing_destinations(2).await;
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
            "<h2>Relay dead letters</h2><p>2 dead letter(s) in the local relay&#39;s queue, the \
             newest 2 listed. Deliver them again with <code>tapline relay replay --state-dir \
             DIR</code>.</p>"
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

/// `tapline report --out FILE --warehouse W --relay-queue QUEUE`, with the environment the
/// cloud queues need (moto's `AWS_*` from the wrapper, or the Pub/Sub double's host).
/// Runs off the runtime's threads: the Pub/Sub double answers on them meanwhile.
async fn report_from_queue(queue: &str, pubsub_host: Option<&str>) -> (tapline_tests::Run, String) {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = format!("sqlite://{}", dir.path().join("w.sqlite").display());
    let out = dir.path().join("report.html");
    let mut command = tapline_tests::tapline_command();
    command.args([
        "report",
        "--out",
        out.to_str().unwrap(),
        "--warehouse",
        &warehouse,
        "--relay-queue",
        queue,
    ]);
    if let Some(host) = pubsub_host {
        command.env("PUBSUB_EMULATOR_HOST", host);
    }
    let run: tapline_tests::Run =
        tokio::task::spawn_blocking(move || command.output().expect("run tapline").into())
            .await
            .unwrap();
    let page = std::fs::read_to_string(&out).unwrap_or_default();
    (run, page)
}

/// The section of `page` from its heading on.
fn section(page: &str) -> &str {
    &page[page
        .find("<h2>Relay dead letters</h2>")
        .unwrap_or_else(|| panic!("no dead letters section in {page}"))..]
}

/// The relay on AWS: the worker (`SqsDeliveryHandler`, as the worker Lambda runs it, against
/// moto's SQS) dead-letters a delivery refused with a 400 at its first attempt and one still
/// failing with 503 at its last (3rd) attempt; the queue's redrive policy moved a third (a
/// delivery message without the worker's record); and a message that is not a relay delivery
/// sits there too. The page lists the three deliveries newest first, escaped, without bodies
/// or URLs; every message is still on the dead-letter queue afterwards, visible at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_lists_the_sqs_dead_letter_queue_and_takes_nothing() {
    use tapline::webhook_relay::clock::SystemClock;
    use tapline::webhook_relay::queue::sqs::{DeliveryMessage, SqsDeliveryHandler, SqsEvent};
    use tapline::webhook_relay::relay::{destinations, http_client};
    use tapline_tests::servers::sqs;

    let (crm, backup, config) = refusing_destinations(3).await;
    let client = sqs::client().await;
    let (queue, dlq) = sqs::queue_with_dead_letters(&client, "report-dlq", 3).await;
    let http = http_client(config.settings.delivery_timeout).unwrap();
    let worker = SqsDeliveryHandler::new(
        destinations(&config, &http).unwrap(),
        config.settings.retry.clone(),
        Arc::new(SystemClock),
        client.clone(),
        &queue,
        &dlq,
    );
    let message = |payload: &str, destination: &str| DeliveryMessage {
        id: format!("{payload}.{destination}"),
        payload_id: payload.into(),
        route: "crm-hooks".into(),
        destination: destination.into(),
        received_at_ms: 1_764_000_000_000,
        body: format!(r#"{{"card": "{BODY_MARKER}"}}"#),
        body_s3: None,
        prior_attempts: 0,
        dead: None,
        attempts: Vec::new(),
    };
    // The 400 first (attempt 1 of 3), then the 503 at its last attempt (receive count 3).
    for (delivery, receive) in [
        (message("p1", "crm"), 1),
        (message("p2", "<b>backup</b>"), 3),
    ] {
        let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [{
            "messageId": delivery.id, "receiptHandle": "r",
            "body": serde_json::to_string(&delivery).unwrap(),
            "attributes": {"ApproximateReceiveCount": receive.to_string()}}]}))
        .unwrap();
        worker
            .handle_record(event.records.into_iter().next().unwrap())
            .await;
    }
    // What the redrive policy moves is the delivery message as queued; and a stray message.
    for body in [
        serde_json::to_string(&DeliveryMessage {
            received_at_ms: 1_763_000_000_000,
            ..message("p0", "crm")
        })
        .unwrap(),
        "not a relay delivery".to_string(),
    ] {
        client
            .send_message()
            .queue_url(&dlq)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    let (run, page) = report_from_queue(&dlq, None).await;
    assert_eq!(run.code, 0, "{run:?}");
    let section = section(&page);
    let name = dlq.rsplit('/').next().unwrap();
    assert!(
        section.starts_with(&format!(
            "<h2>Relay dead letters</h2><p>3 dead letter(s) in the SQS dead-letter queue {name}, \
             the newest 3 listed. Deliver them again with <code>aws sqs start-message-move-task \
             --source-arn DEAD_LETTER_QUEUE_ARN</code>.</p>"
        )),
        "{section}"
    );
    let rows: Vec<&str> = section
        .split("<tr><td class=\"name\">crm-hooks</td>")
        .skip(1)
        .map(|r| &r[..r.find("<td class=\"name\">20").unwrap()])
        .collect();
    assert_eq!(
        rows,
        [
            "<td class=\"name\">&lt;b&gt;backup&lt;/b&gt;</td><td>3</td><td class=\"name\">retryable: HTTP 503: down</td>",
            "<td class=\"name\">crm</td><td>1</td><td class=\"name\">permanent: HTTP 400: &lt;script&gt;bad field&lt;/script&gt;</td>",
            "<td class=\"name\">crm</td><td>0</td><td class=\"name\">moved by the queue&#39;s redrive policy: the worker never settled it (a crash or a timeout)</td>",
        ],
        "newest first: {section}"
    );
    assert!(
        section.contains("<td class=\"name\">2025-11-13T"),
        "the moved one dates from its receipt: {section}"
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
    // Nothing taken: all four messages come back at once (the listing released them).
    let again = sqs::receive(&client, &dlq, 4, std::time::Duration::from_secs(5)).await;
    let mut ids: Vec<String> = again
        .iter()
        .map(|m| m.message_id().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{again:?}");

    // A queue that does not exist is named, and no page is written.
    let missing = format!("{}-gone", dlq);
    let (run, page) = report_from_queue(&missing, None).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("cannot list the dead letters of the SQS dead-letter queue"),
        "{}",
        run.stderr
    );
    assert!(page.is_empty());
    // Neither a queue URL nor a subscription: refused before anything is read.
    let (run, _) = report_from_queue("projects/acme/topics/dead", None).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("--relay-queue: \"projects/acme/topics/dead\" is neither an SQS queue URL"),
        "{}",
        run.stderr
    );
}

/// The relay on Google Cloud: dead letters as the push worker publishes them to the dead-letter
/// topic (attributes `tapline_attempt_N`, `tapline_dead_*`; the body as data), read through
/// its pull subscription (the Pub/Sub double), with a message that is not a relay delivery. The
/// page lists the two letters newest first; every message stays on the subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_lists_the_pubsub_dead_letters_and_takes_nothing() {
    use tapline::google_auth::GoogleAuth;
    use tapline::webhook_relay::queue::pubsub::{OutgoingMessage, PubSubPublisher};
    use tapline_tests::doubles::pubsub::PubSubDouble;

    let pubsub = PubSubDouble::start("acme-analytics").await;
    let dead = pubsub.create_topic("dl");
    let subscription = pubsub.pull_subscription("dl-sub", &dead);
    let publisher = PubSubPublisher::new(
        &format!("http://{}", pubsub.host),
        GoogleAuth::anonymous(),
        dead.clone(),
    )
    .unwrap();
    const T0: i64 = 1_764_000_000_000; // 2025-11-24T16:00:00Z
    let letter = |payload: &str, destination: &str, dead_at: i64, last: u16| {
        let mut attributes: HashMap<String, String> = [
            ("tapline_delivery_id", format!("{payload}.{destination}")),
            ("tapline_payload_id", payload.to_string()),
            ("tapline_route", "crm-hooks".to_string()),
            ("tapline_destination", destination.to_string()),
            ("tapline_received_at_ms", T0.to_string()),
            ("tapline_dead_attempt", "2".to_string()),
            ("tapline_dead_at_ms", dead_at.to_string()),
            ("tapline_dead_outcome", "retryable".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (n, status) in [(1, 503), (2, last)] {
            attributes.insert(
                format!("tapline_attempt_{n}"),
                serde_json::json!({"attempt": n, "at_ms": T0 + n, "duration_ms": 3,
                    "status": status, "outcome": "retryable", "error": format!("HTTP {status}")})
                .to_string(),
            );
        }
        OutgoingMessage {
            data: format!(r#"{{"card": "{BODY_MARKER}"}}"#).into_bytes(),
            attributes,
        }
    };
    let stray = OutgoingMessage {
        data: b"hello".to_vec(),
        attributes: HashMap::from([(
            "CloudPubSubDeadLetterSourceDeliveryCount".to_string(),
            "30".to_string(),
        )]),
    };
    publisher
        .publish(&[
            letter("p1", "crm", T0 + 60_000, 502),
            letter("p2", "<b>backup</b>", T0 + 120_000, 504),
            stray,
        ])
        .await
        .unwrap();

    let (run, page) = report_from_queue(&subscription, Some(&pubsub.host)).await;
    assert_eq!(run.code, 0, "{run:?}");
    let section = section(&page);
    assert!(
        section.starts_with(&format!(
            "<h2>Relay dead letters</h2><p>2 dead letter(s) in the Pub/Sub subscription \
             {subscription}, the newest 2 listed. Deliver them again with <code>tapline relay \
             replay --from-pubsub {subscription} --to-topic DELIVERY_TOPIC</code>.</p>"
        )),
        "{section}"
    );
    let backup_row = "<tr><td class=\"name\">crm-hooks</td><td class=\"name\">&lt;b&gt;backup&lt;/b&gt;</td><td>2</td><td class=\"name\">retryable: HTTP 504</td><td class=\"name\">2025-11-24T16:02:00Z</td></tr>";
    let crm_row = "<tr><td class=\"name\">crm-hooks</td><td class=\"name\">crm</td><td>2</td><td class=\"name\">retryable: HTTP 502</td><td class=\"name\">2025-11-24T16:01:00Z</td></tr>";
    assert!(
        matches!((section.find(backup_row), section.find(crm_row)), (Some(b), Some(c)) if b < c),
        "{section}"
    );
    assert!(!page.contains(BODY_MARKER), "{page}");
    assert_eq!(
        pubsub.pull_state(&subscription),
        (3, 0, vec![]),
        "listing takes nothing"
    );
}
