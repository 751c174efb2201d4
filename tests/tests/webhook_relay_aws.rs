//! The relay on AWS beyond the basics in `webhook_relay.rs`: bodies too large for an SQS message
//! (claim-check through S3), against moto's S3 and SQS, with a delivery queue limited to 256 KiB
//! messages as a queue is by default.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use axum::http::StatusCode;
use serde_json::{Value, json};
use tapline::webhook_relay::RelayConfig;
use tapline::webhook_relay::clock::SystemClock;
use tapline::webhook_relay::config::{ConfigMode, DestinationKind, RouteAuth};
use tapline::webhook_relay::env_config::relay_config;
use tapline::webhook_relay::queue::sqs::{
    DeliveryMessage, MessageOutcome, SqsAcceptQueue, SqsDeliveryHandler, SqsEvent,
};
use tapline::webhook_relay::queue::sqs_payloads::{PayloadStore, SQS_MESSAGE_MAX_BYTES};
use tapline::webhook_relay::relay::{destinations, http_client};
use tapline::webhook_relay::router::accept_router;
use tapline_tests::doubles::receiver::{Receiver, Reply};
use tapline_tests::doubles::relay_router::post_hook;
use tapline_tests::servers::sqs::sqs_event;
use tapline_tests::servers::{s3, sqs};

const TOKEN: &str = "big-token-0123456789abcdef01234567";

/// Route `big` with two HTTP destinations (two messages per payload).
fn config(crm: &Receiver, archive: &Receiver) -> RelayConfig {
    let text = r#"
[settings]
max_attempts = 3
backoff_base_ms = 10

[[routes]]
name = "big"
auth = { header = "X-Tapline-Token", secret_env = "TOKEN" }
[[routes.destinations]]
type = "http"
name = "crm"
url_env = "CRM_URL"
signing_secret_env = "SIGNING"
[[routes.destinations]]
type = "http"
name = "archive"
url_env = "ARCHIVE_URL"
signing_secret_env = "SIGNING"
"#;
    RelayConfig::parse("test", text, |var| match var {
        "TOKEN" => Some(TOKEN.into()),
        "CRM_URL" => Some(crm.url.clone()),
        "ARCHIVE_URL" => Some(archive.url.clone()),
        "SIGNING" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        _ => None,
    })
    .unwrap()
}

async fn post(router: &axum::Router, body: &str) -> (StatusCode, Value) {
    post_hook(router, "big", Some(("X-Tapline-Token", TOKEN)), body).await
}

/// A delivery queue (with its dead-letter queue) whose messages may be at most 256 KiB, the
/// default of a new SQS queue.
async fn queue(client: &aws_sdk_sqs::Client, name: &str) -> (String, String) {
    let (queue, dlq) = sqs::queue_with_dead_letters(client, name, 3).await;
    client
        .set_queue_attributes()
        .queue_url(&queue)
        .attributes(
            QueueAttributeName::MaximumMessageSize,
            SQS_MESSAGE_MAX_BYTES.to_string(),
        )
        .send()
        .await
        .unwrap();
    (queue, dlq)
}

/// A CleverTap-shaped body of about `bytes` bytes whose quotes double when JSON-escaped into a
/// message: the case where a body under the relay's 1 MiB limit cannot fit an SQS message.
fn body_of(bytes: usize) -> String {
    let quoted = "\"q\",".repeat(bytes / 4);
    let quoted = quoted.trim_end_matches(',');
    format!(
        r#"{{"targetId":7,"profiles":[{{"identity":"u1"}}],"key_values":{{"list":[{quoted}]}}}}"#
    )
}

async fn queue_is_empty(client: &aws_sdk_sqs::Client, queue: &str) -> bool {
    let out = client
        .receive_message()
        .queue_url(queue)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    out.messages().is_empty()
}

/// A delivery message as the endpoint queues it: `body` inline, nothing attempted yet.
fn delivery_message(
    route: &str,
    payload: &str,
    destination: &str,
    received_at_ms: i64,
    body: &str,
) -> DeliveryMessage {
    DeliveryMessage {
        id: format!("{payload}.{destination}"),
        payload_id: payload.into(),
        route: route.into(),
        destination: destination.into(),
        received_at_ms,
        body: body.into(),
        body_s3: None,
        prior_attempts: 0,
        dead: None,
        attempts: Vec::new(),
    }
}

/// The worker Lambda's handler on `name`'s queues, with its payload bucket on moto as
/// `bin/worker.rs` wires it (bodies, dedupe claims, attempt records). Returns the handler, the
/// SQS client, the dead-letter queue, the S3 client and the bucket.
async fn worker_with_bucket(
    config: &RelayConfig,
    name: &str,
) -> (
    SqsDeliveryHandler,
    aws_sdk_sqs::Client,
    String,
    aws_sdk_s3::Client,
    String,
) {
    let client = sqs::client().await;
    let (queue, dlq) = queue(&client, name).await;
    let s3_client = s3::client().await;
    let bucket = s3::new_bucket(&s3_client, name).await;
    let store = PayloadStore::new(s3_client.clone(), &bucket);
    let http = http_client(config.settings.delivery_timeout).unwrap();
    let worker = SqsDeliveryHandler::new(
        destinations(config, &http).unwrap(),
        config.settings.retry.clone(),
        Arc::new(SystemClock),
        client.clone(),
        &queue,
        &dlq,
    )
    .with_dedupe(Some(store.dedupe(config.settings.dedupe_window)))
    .with_attempt_log(Some(Arc::new(store.objects())))
    .with_payloads(Some(store));
    (worker, client, dlq, s3_client, bucket)
}

#[tokio::test]
async fn without_a_payload_bucket_a_body_too_large_for_sqs_is_413_and_nothing_is_queued() {
    let (crm, archive) = (Receiver::start().await, Receiver::start().await);
    let config = config(&crm, &archive);
    let client = sqs::client().await;
    let (queue, _) = queue(&client, "relay-big-413").await;
    let router = accept_router(
        &config,
        Arc::new(SqsAcceptQueue::new(client.clone(), &queue)),
        Arc::new(SystemClock),
    );
    let body = body_of(200 * 1024);
    assert!(body.len() < config.settings.body_limit_bytes);
    let (status, answer) = post(&router, &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("TAPLINE_RELAY_PAYLOAD_BUCKET") && error.contains("262144"),
        "{error}"
    );
    assert!(queue_is_empty(&client, &queue).await, "nothing half-queued");

    // A body that fits is still accepted inline.
    let (status, _) = post(&router, &body_of(20 * 1024)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_body_too_large_for_sqs_goes_through_s3_and_is_delivered_byte_for_byte() {
    let (crm, archive) = (Receiver::start().await, Receiver::start().await);
    let config = config(&crm, &archive);
    let client = sqs::client().await;
    let (queue, dlq) = queue(&client, "relay-big").await;
    let s3_client = s3::client().await;
    let bucket = s3::new_bucket(&s3_client, "relay-payloads").await;
    let store = PayloadStore::new(s3_client.clone(), &bucket);
    let router = accept_router(
        &config,
        Arc::new(SqsAcceptQueue::new(client.clone(), &queue).with_payloads(Some(store.clone()))),
        Arc::new(SystemClock),
    );

    // Near the relay's limit: 1 MiB minus a little, about 2 MiB once escaped.
    let body = body_of(config.settings.body_limit_bytes - 1024);
    let (status, answer) = post(&router, &body).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::OK, &json!("accepted"))
    );
    let id = answer["id"].as_str().unwrap();
    let small = body_of(1024);
    let (status, small_answer) = post(&router, &small).await;
    assert_eq!(status, StatusCode::OK);

    let messages = sqs::receive(&client, &queue, 4, Duration::from_secs(10)).await;
    let parsed: Vec<DeliveryMessage> = messages
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    for message in &parsed {
        if message.payload_id == id {
            let pointer = message.body_s3.as_ref().expect("a pointer, not the body");
            assert_eq!(message.body, "");
            assert_eq!(
                (pointer.bucket.as_str(), pointer.key.clone(), pointer.bytes),
                (
                    bucket.as_str(),
                    format!("payloads/{id}.json"),
                    body.len() as u64
                )
            );
        } else {
            assert_eq!(message.payload_id, small_answer["id"].as_str().unwrap());
            assert_eq!(
                (message.body.as_str(), message.body_s3.is_none()),
                (small.as_str(), true),
                "small bodies stay inline"
            );
        }
    }
    let stored = s3_client
        .get_object()
        .bucket(&bucket)
        .key(format!("payloads/{id}.json"))
        .send()
        .await
        .unwrap();
    let stored = stored.body.collect().await.unwrap().into_bytes();
    assert_eq!(stored.as_ref(), body.as_bytes(), "stored once, as received");

    // A worker without the bucket cannot read the body: the messages are retried, not lost.
    let http = http_client(config.settings.delivery_timeout).unwrap();
    let event = || -> SqsEvent { serde_json::from_value(sqs::lambda_event(&messages)).unwrap() };
    let blind = Arc::new(SqsDeliveryHandler::new(
        destinations(&config, &http).unwrap(),
        config.settings.retry.clone(),
        Arc::new(SystemClock),
        client.clone(),
        &queue,
        &dlq,
    ));
    let pointer_messages: Vec<_> = messages
        .iter()
        .zip(&parsed)
        .filter(|(_, p)| p.body_s3.is_some())
        .map(|(m, _)| m.clone())
        .collect();
    let response = blind
        .handle(serde_json::from_value(sqs::lambda_event(&pointer_messages)).unwrap())
        .await;
    let mut failed: Vec<&str> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    failed.sort();
    let mut pointers: Vec<&str> = pointer_messages
        .iter()
        .map(|m| m.message_id().unwrap())
        .collect();
    pointers.sort();
    assert_eq!((failed.len(), failed), (2, pointers), "{response}");
    assert!(crm.received().is_empty() && archive.received().is_empty());

    // The worker with the bucket delivers every body byte for byte.
    let worker = Arc::new(
        SqsDeliveryHandler::new(
            destinations(&config, &http).unwrap(),
            config.settings.retry.clone(),
            Arc::new(SystemClock),
            client.clone(),
            &queue,
            &dlq,
        )
        .with_payloads(Some(store)),
    );
    let response = worker.handle(event()).await;
    assert_eq!(response, json!({"batchItemFailures": []}));
    for receiver in [&crm, &archive] {
        let mut bodies: Vec<Vec<u8>> = receiver
            .received()
            .iter()
            .map(|r| r.body.to_vec())
            .collect();
        bodies.sort_by_key(Vec::len);
        assert_eq!(bodies, [small.as_bytes(), body.as_bytes()]);
    }
}

// --- The two functions under `cargo lambda watch` ------------------------------------------

/// AWS's documented function URL request (payload format 2.0, `fixtures/events/`) for
/// `POST /hooks/alerts` with `body` and, when given, the route's token header.
fn function_url_event(token: Option<&str>, body: &str) -> Value {
    let path = format!(
        "{}/fixtures/events/function_url_request.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut event: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    if let Some(token) = token {
        event["headers"]["x-tapline-token"] = json!(token);
    }
    event["headers"]["content-length"] = json!(body.len().to_string());
    event["body"] = json!(body);
    event
}

const WATCH_CONFIG: &str = r#"
[settings]
body_limit_bytes = 4096
max_attempts = 3
backoff_base_ms = 2000

[[routes]]
name = "alerts"
auth = { header = "X-Tapline-Token", secret_env = "ALERTS_TOKEN" }
[[routes.destinations]]
type = "http"
name = "crm"
url_env = "CRM_URL"
signing_secret_env = "SIGNING"
[[routes.destinations]]
type = "http"
name = "broken"
url_env = "BROKEN_URL"
signing_secret_env = "SIGNING"
[[routes.destinations]]
type = "warehouse"
name = "wh"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_function_under_cargo_lambda_watch_queues_accepts_and_refuses_the_rest() {
    use tapline_tests::servers::lambda_emulator::LambdaEmulator;

    let client = sqs::client().await;
    let (queue, _) = queue(&client, "relay-watch-url").await;
    let endpoint = s3::moto();
    let lambda = LambdaEmulator::start(
        "webhook-relay",
        &[
            ("TAPLINE_RELAY_QUEUE_URL", queue.as_str()),
            ("TAPLINE_RELAY_CONFIG_TOML", WATCH_CONFIG),
            // As infra/aws deploys it: the route token only, no destination secret and no
            // TAPLINE_WAREHOUSE (the endpoint never reads them).
            ("ALERTS_TOKEN", TOKEN),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ],
    )
    .await;

    let body = r#"{"targetId":1,"profiles":{"identity":"u1"}}"#;
    let (status, answer) = lambda.invoke(&function_url_event(Some(TOKEN), body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let accepted: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(accepted["status"], "accepted");
    let messages = sqs::receive(&client, &queue, 3, Duration::from_secs(10)).await;
    let mut destinations: Vec<String> = messages
        .iter()
        .map(|m| {
            let message: DeliveryMessage = serde_json::from_str(m.body().unwrap()).unwrap();
            assert_eq!(
                (message.payload_id.as_str(), message.body.as_str()),
                (accepted["id"].as_str().unwrap(), body)
            );
            message.destination
        })
        .collect();
    destinations.sort();
    assert_eq!(destinations, ["broken", "crm", "wh"]);

    let (_, answer) = lambda
        .invoke(&function_url_event(Some("wrong"), body))
        .await;
    assert_eq!(answer["statusCode"], 401, "{answer}");
    let (_, answer) = lambda.invoke(&function_url_event(None, body)).await;
    assert_eq!(answer["statusCode"], 401, "{answer}");
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000));
    let (_, answer) = lambda.invoke(&function_url_event(Some(TOKEN), &big)).await;
    assert_eq!(answer["statusCode"], 413, "{answer}");
    assert!(
        queue_is_empty(&client, &queue).await,
        "refused requests queue nothing"
    );
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_function_under_cargo_lambda_watch_reports_only_the_failed_delivery() {
    use tapline_tests::servers::lambda_emulator::LambdaEmulator;
    use tapline_tests::servers::pg::PgSchema;

    let (crm, broken) = (Receiver::start().await, Receiver::start().await);
    broken.set_default(Reply::Status(503, "down".into()));
    let client = sqs::client().await;
    let (queue, dlq) = queue(&client, "relay-watch-worker").await;
    let schema = PgSchema::new("relay_watch");
    // As infra/aws deploys it: the URL without a password, the password in Secrets Manager.
    let secret = s3::create_secret(
        &format!("relay-watch-wh-{}", std::process::id()),
        "s3cr3t-pw",
    )
    .await;
    let (url, endpoint) = (schema.url(), s3::moto());
    let lambda = LambdaEmulator::start(
        "webhook-relay-worker",
        &[
            ("TAPLINE_RELAY_QUEUE_URL", queue.as_str()),
            ("TAPLINE_RELAY_DEAD_LETTER_QUEUE_URL", dlq.as_str()),
            ("TAPLINE_RELAY_CONFIG_TOML", WATCH_CONFIG),
            // No route token: the worker authenticates no one.
            ("CRM_URL", crm.url.as_str()),
            ("BROKEN_URL", broken.url.as_str()),
            ("SIGNING", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            ("TAPLINE_WAREHOUSE", url.as_str()),
            ("TAPLINE_WAREHOUSE_SECRET_ARN", secret.as_str()),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ],
    )
    .await;
    let body = r#"{"targetId":5,"profiles":[{"identity":"u-9","event_name":"Charged"}]}"#;
    let message = |destination: &str| {
        serde_json::to_string(&delivery_message(
            "alerts",
            "0000019ad0f1c2a3b4c5d6e7f8a9b0c1",
            destination,
            1_764_000_000_000,
            body,
        ))
        .unwrap()
    };
    let event = sqs_event(&[
        ("m-crm", message("crm")),
        ("m-broken", message("broken")),
        ("m-wh", message("wh")),
    ]);
    let (status, answer) = lambda.invoke(&event).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m-broken"}]}),
        "only the 503 is retried"
    );
    let delivered = crm.received();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body.as_ref(), body.as_bytes());
    assert_eq!(
        delivered[0].headers["idempotency-key"],
        "0000019ad0f1c2a3b4c5d6e7f8a9b0c1.crm"
    );
    assert_eq!(broken.received().len(), 1);
    assert_eq!(
        schema.psql("SELECT delivery_id, event, identity FROM webhook_events"),
        "0000019ad0f1c2a3b4c5d6e7f8a9b0c1.wh|Charged|u-9",
        "the warehouse destination wrote through the password from Secrets Manager"
    );
    let logs = lambda.stop().await;
    assert!(!logs.contains("s3cr3t-pw"), "no secret in the logs");
}

// --- Deduplication on Lambda (S3 conditional puts) ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_body_within_the_window_is_delivered_once_per_destination() {
    let (crm, archive) = (Receiver::start().await, Receiver::start().await);
    let config = config(&crm, &archive);
    assert_eq!(config.settings.dedupe_window, Duration::from_secs(600));
    let (worker, ..) = worker_with_bucket(&config, "relay-dedupe").await;
    let worker = Arc::new(worker);
    const T0: i64 = 1_764_000_000_000;
    let body = r#"{"targetId":3,"profiles":{"identity":"u7"}}"#;
    let message = |payload: &str, destination: &str, at: i64| {
        serde_json::to_string(&delivery_message("big", payload, destination, at, body)).unwrap()
    };
    let handle = |messages: Vec<String>| {
        let worker = worker.clone();
        async move {
            let records: Vec<Value> = messages
                .into_iter()
                .enumerate()
                .map(|(i, body)| {
                    json!({"messageId": format!("m-{i}"), "receiptHandle": "r", "body": body,
                           "attributes": {"ApproximateReceiveCount": "1"}})
                })
                .collect();
            let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
            worker.handle(event).await
        }
    };
    let ok = json!({"batchItemFailures": []});
    let keys = |r: &Receiver| -> Vec<String> {
        r.received()
            .iter()
            .map(|m| m.headers["idempotency-key"].to_str().unwrap().to_string())
            .collect()
    };

    // Two copies in one batch, handled concurrently: the conditional put lets one through.
    let answer = handle(vec![
        message("p-a", "crm", T0),
        message("p-b", "crm", T0 + 1_000),
    ])
    .await;
    assert_eq!(answer, ok);
    let first = keys(&crm);
    assert_eq!(first.len(), 1, "delivered once: {first:?}");

    // The same delivery handed over again (SQS redelivery) is delivered again, same key; a
    // third copy 9 minutes later is not; the other destination is claimed on its own.
    let winner = first[0].trim_end_matches(".crm");
    let winner_at = if winner == "p-a" { T0 } else { T0 + 1_000 };
    let answer = handle(vec![
        message(winner, "crm", winner_at),
        message("p-c", "crm", T0 + 9 * 60_000),
        message("p-c", "archive", T0 + 9 * 60_000),
    ])
    .await;
    assert_eq!(answer, ok);
    assert_eq!(keys(&crm), [first[0].clone(), first[0].clone()]);
    assert_eq!(keys(&archive), ["p-c.archive"]);

    // After the window, the same body is delivered again (the claim is taken over).
    let answer = handle(vec![message("p-d", "crm", T0 + 11 * 60_000)]).await;
    assert_eq!(answer, ok);
    assert_eq!(keys(&crm).last().map(String::as_str), Some("p-d.crm"));
    assert_eq!(keys(&crm).len(), 3);
}

// --- Circuit breaker on Lambda ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_keeps_failing_is_paused_on_lambda_without_using_up_attempts() {
    use tapline_tests::doubles::receiver::Reply;

    let (crm, archive) = (Receiver::start().await, Receiver::start().await);
    archive.set_default(Reply::Status(503, "down".into()));
    let mut config = config(&crm, &archive);
    // The first pause lasts the first wait: 2 s, no jitter.
    config.settings.retry.default =
        tapline::webhook_relay::retry::RouteRetry::schedule(vec![Duration::from_secs(2); 7]);
    config.settings.retry.jitter = false;
    let client = sqs::client().await;
    let (queue, dlq) = queue(&client, "relay-breaker").await;
    let http = http_client(config.settings.delivery_timeout).unwrap();
    let worker = Arc::new(SqsDeliveryHandler::new(
        destinations(&config, &http).unwrap(),
        config.settings.retry.clone(),
        Arc::new(SystemClock),
        client.clone(),
        &queue,
        &dlq,
    ));
    let record = |n: usize, destination: &str, received: u32| {
        let body = serde_json::to_string(&delivery_message(
            "big",
            &format!("p-{n}"),
            destination,
            1_764_000_000_000,
            &format!(r#"{{"n":{n}}}"#),
        ))
        .unwrap();
        json!({"messageId": format!("m-{n}-{destination}"), "receiptHandle": "r", "body": body,
               "attributes": {"ApproximateReceiveCount": received.to_string()}})
    };
    let handle = |records: Vec<Value>| {
        let worker = worker.clone();
        async move {
            let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
            worker.handle(event).await
        }
    };

    // Five 503s in a row pause the archive.
    let answer = handle((1..=5).map(|n| record(n, "archive", 1)).collect()).await;
    assert_eq!(answer["batchItemFailures"].as_array().unwrap().len(), 5);
    assert_eq!(archive.received().len(), 5);

    // While paused: no attempt at the archive (its message, on its third receive, is sent again
    // delayed until the pause ends, carrying its two attempts); the crm is not paused.
    let answer = handle(vec![record(6, "archive", 3), record(6, "crm", 1)]).await;
    assert_eq!(answer, json!({"batchItemFailures": []}), "both settled");
    assert_eq!(archive.received().len(), 5, "no attempt while paused");
    assert_eq!(crm.received().len(), 1);
    let again = sqs::receive(&client, &queue, 1, Duration::from_secs(10)).await;
    let held: DeliveryMessage = serde_json::from_str(again[0].body().unwrap()).unwrap();
    assert_eq!(
        (held.id.as_str(), held.prior_attempts, held.body.as_str()),
        ("p-6.archive", 2, r#"{"n":6}"#)
    );

    // After the pause it is attempted again as its third attempt (the receive count starts
    // over at 1 on the new message): a 404 now dead-letters it with attempt 3 on record.
    archive.set_default(Reply::Status(404, "gone".into()));
    let event = sqs::lambda_event(&again);
    let answer = worker.handle(serde_json::from_value(event).unwrap()).await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert_eq!(archive.received().len(), 6);
    let dead = sqs::receive(&client, &dlq, 1, Duration::from_secs(10)).await;
    let letter: DeliveryMessage = serde_json::from_str(dead[0].body().unwrap()).unwrap();
    let record = letter.dead.unwrap();
    assert_eq!(
        (letter.id.as_str(), record.attempt, record.status),
        ("p-6.archive", 3, Some(404))
    );
    // No payload bucket, so no attempt log: the dead letter lists the last attempt only.
    assert_eq!(letter.attempts.len(), 1);
    assert_eq!(letter.attempts[0].status, Some(404));
}

// --- Every attempt on the dead letter (attempt log in S3) ------------------------------------

/// SQS hands a delivery over three times (503, then 502, then a 404): the dead letter lists the
/// three attempts, oldest first, from the attempt log in the payload bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_lists_every_attempt() {
    let (crm, archive) = (Receiver::start().await, Receiver::start().await);
    crm.script([
        Reply::Status(503, "busy".into()),
        Reply::Status(502, "bad gateway".into()),
        Reply::Status(404, "no such hook".into()),
    ]);
    let config = config(&crm, &archive);
    let (worker, client, dlq, s3_client, bucket) =
        worker_with_bucket(&config, "relay-attempts").await;
    let message = serde_json::to_string(&delivery_message(
        "big",
        "p-1",
        "crm",
        1_764_000_000_000,
        r#"{"n":1}"#,
    ))
    .unwrap();
    for receive in 1..=3 {
        let event: SqsEvent = serde_json::from_value(json!({"Records": [{
            "messageId": "m-1", "receiptHandle": "r", "body": message,
            "attributes": {"ApproximateReceiveCount": receive.to_string()}}]}))
        .unwrap();
        worker
            .handle_record(event.records.into_iter().next().unwrap())
            .await;
    }
    assert_eq!(crm.received().len(), 3);
    let dead = sqs::receive(&client, &dlq, 1, Duration::from_secs(10)).await;
    let letter: DeliveryMessage = serde_json::from_str(dead[0].body().unwrap()).unwrap();
    let seen: Vec<(u32, Option<u16>, &str)> = letter
        .attempts
        .iter()
        .map(|a| (a.attempt, a.status, a.outcome.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, Some(503), "retryable"),
            (2, Some(502), "retryable"),
            (3, Some(404), "permanent")
        ]
    );
    assert!(letter.attempts.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert_eq!(letter.dead.as_ref().unwrap().attempt, 3);
    let logged = s3_client
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("attempts/p-1.crm/")
        .send()
        .await
        .unwrap();
    assert_eq!(logged.contents().len(), 2, "the two retried attempts");

    // Replayed (the dead letter moved back to the delivery queue as it is, prior attempts and
    // all): a new round with every attempt, not a dead letter at its first failure.
    let replayed = DeliveryMessage {
        prior_attempts: 2,
        ..letter.clone()
    };
    crm.script([Reply::Status(503, "busy".into())]);
    let event: SqsEvent = serde_json::from_value(json!({"Records": [{
        "messageId": "m-2", "receiptHandle": "r",
        "body": serde_json::to_string(&replayed).unwrap(),
        "attributes": {"ApproximateReceiveCount": "1"}}]}))
    .unwrap();
    let outcome = worker
        .handle_record(event.records.into_iter().next().unwrap())
        .await;
    assert_eq!(
        outcome,
        MessageOutcome::Retry,
        "attempt 1 of 3 of the new round"
    );
    assert!(queue_is_empty(&client, &dlq).await);
}

// --- least secrets: each function reads only its own half's secrets ------------------------

/// A route with a destination of each kind, every secret in its own variable.
const EVERY_DESTINATION: &str = r#"
[[routes]]
name = "big"
auth = { header = "X-Tapline-Token", secret_env = "TOKEN" }
[[routes.destinations]]
type = "slack"
url_env = "SLACK_URL"
[[routes.destinations]]
type = "http"
name = "crm"
url_env = "CRM_URL"
signing_secret_env = "SIGNING"
[[routes.destinations]]
type = "clevertap"
account_id_env = "CT_ACCOUNT"
passcode_env = "CT_PASSCODE"
identity = "profile.identity"
[[routes.destinations.records]]
event = "Relayed"
[[routes.destinations]]
type = "warehouse"
"#;

/// An ARN of a secret that does not exist: reading it fails the cold start.
const UNREADABLE_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:relay/none";

#[tokio::test]
async fn the_endpoint_starts_and_accepts_with_no_destination_secret_in_its_environment() {
    let token_arn = tapline_tests::servers::s3::create_secret(
        &format!("relay/TOKEN-endpoint-{}", std::process::id()),
        TOKEN,
    )
    .await;
    // The route token only; the map also names a destination secret the endpoint may not read
    // (on AWS its role has no grant on it): it must not even ask.
    let env = HashMap::from([
        ("TAPLINE_RELAY_CONFIG_TOML", EVERY_DESTINATION.to_string()),
        (
            "TAPLINE_RELAY_SECRET_ARNS",
            json!({ "TOKEN": token_arn, "SLACK_URL": UNREADABLE_ARN }).to_string(),
        ),
    ]);
    let config = relay_config(ConfigMode::Endpoint, |name| env.get(name).cloned())
        .await
        .unwrap();

    let client = sqs::client().await;
    let (queue, _) = queue(&client, "relay-endpoint-secrets").await;
    let router = accept_router(
        &config,
        Arc::new(SqsAcceptQueue::new(client.clone(), &queue)),
        Arc::new(SystemClock),
    );
    let (status, answer) = post(&router, r#"{"profiles":[{"identity":"u1"}]}"#).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = post_hook(
        &router,
        "big",
        Some(("X-Tapline-Token", "wrong-token-0123456789abcdef0123456")),
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let messages = sqs::receive(&client, &queue, 4, Duration::from_secs(10)).await;
    let mut destinations: Vec<String> = messages
        .iter()
        .map(|m| {
            let message: DeliveryMessage = serde_json::from_str(m.body().unwrap()).unwrap();
            message.destination
        })
        .collect();
    destinations.sort();
    assert_eq!(
        destinations,
        ["clevertap-3", "crm", "slack-1", "warehouse-4"],
        "one message per destination"
    );

    // Its destinations cannot be built into a worker by mistake.
    let Err(err) = destinations_of(&config) else {
        panic!("a worker built from the endpoint's configuration")
    };
    assert_eq!(
        err.to_string(),
        "route \"big\": destination \"slack-1\" has no secrets: the configuration was parsed \
         for the endpoint, not the worker"
    );
}

#[tokio::test]
async fn the_worker_reads_no_route_token_and_refuses_to_start_without_a_destination_secret() {
    let slack_arn = tapline_tests::servers::s3::create_secret(
        &format!("relay/SLACK_URL-worker-{}", std::process::id()),
        "https://hooks.slack.com/services/T/B/x\n",
    )
    .await;
    let mut env = HashMap::from([
        ("TAPLINE_RELAY_CONFIG_TOML", EVERY_DESTINATION.to_string()),
        (
            "TAPLINE_RELAY_SECRET_ARNS",
            json!({ "SLACK_URL": slack_arn, "TOKEN": UNREADABLE_ARN }).to_string(),
        ),
        ("CRM_URL", "https://crm.example/hook".to_string()),
        (
            "SIGNING",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string(),
        ),
        ("CT_ACCOUNT", "acct".to_string()),
        (
            "TAPLINE_WAREHOUSE",
            "postgres://relay@db.invalid/w".to_string(),
        ),
    ]);
    // CT_PASSCODE is missing: no start, naming it.
    let err = relay_config(ConfigMode::Worker, |name| env.get(name).cloned())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "route \"big\": environment variable CT_PASSCODE is not set (it holds the CleverTap \
         passcode)"
    );

    env.insert("CT_PASSCODE", "pass".to_string());
    let config = relay_config(ConfigMode::Worker, |name| env.get(name).cloned())
        .await
        .unwrap();
    assert_eq!(destinations_of(&config).unwrap().len(), 4);
    let route = config.route("big").unwrap();
    assert!(matches!(route.auth, RouteAuth::Unresolved), "no token read");
    let DestinationKind::Slack { url } = &route.destinations[0].kind else {
        panic!("slack")
    };
    assert_eq!(url.expose(), "https://hooks.slack.com/services/T/B/x");
    // Its router, were one built by mistake, refuses even the right token.
    let client = sqs::client().await;
    let router = accept_router(
        &config,
        Arc::new(SqsAcceptQueue::new(client, "unused")),
        Arc::new(SystemClock),
    );
    let (status, _) = post(&router, "{}").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn both_halves_in_one_process_still_need_every_secret() {
    let env = HashMap::from([
        ("TAPLINE_RELAY_CONFIG_TOML", EVERY_DESTINATION.to_string()),
        ("TOKEN", TOKEN.to_string()),
    ]);
    let err = relay_config(ConfigMode::Both, |name| env.get(name).cloned())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "route \"big\": environment variable SLACK_URL is not set (it holds the destination URL)"
    );
}

fn destinations_of(
    config: &RelayConfig,
) -> Result<
    tapline::webhook_relay::delivery::worker::DestinationMap,
    tapline::webhook_relay::RelayError,
> {
    destinations(config, &http_client(Duration::from_secs(1)).unwrap())
}
