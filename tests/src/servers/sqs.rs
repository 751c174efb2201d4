//! SQS on moto for the relay's AWS tests: a delivery queue with its dead-letter queue, receiving
//! messages, and turning them into the event Lambda's SQS event source hands to a function
//! (AWS's documented shape), then settling them as the event source mapping does.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};

/// An SQS client for moto.
pub async fn client() -> Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(crate::servers::s3::moto())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    Client::new(&shared)
}

/// A delivery queue whose redrive policy moves a message to its own dead-letter queue after
/// `max_receives`; returns (queue URL, dead-letter queue URL).
pub async fn queue_with_dead_letters(
    sqs: &Client,
    name: &str,
    max_receives: u32,
) -> (String, String) {
    let name = format!("{name}-{}", std::process::id());
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create dead-letter queue");
    let dlq_url = dlq.queue_url().unwrap().to_string();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives});
    let queue = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .expect("create queue");
    (queue.queue_url().unwrap().to_string(), dlq_url)
}

/// Receives until `n` messages have come (long polls of 1 s, at most `limit` in all), with
/// their system attributes.
pub async fn receive(
    sqs: &Client,
    queue_url: &str,
    n: usize,
    limit: Duration,
) -> Vec<aws_sdk_sqs::types::Message> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "received {} message(s) from {queue_url}, expected {n}",
            got.len()
        );
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        got.extend(out.messages().iter().cloned());
    }
    got
}

/// The event Lambda's SQS event source would hand the worker for `messages` (AWS's documented
/// shape: `Records[]` with `messageId`, `receiptHandle`, `body`, `attributes`, …).
pub fn lambda_event(messages: &[aws_sdk_sqs::types::Message]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), Value::from(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:relay-delivery",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// What the event source mapping does with a partial batch response: deletes every message not
/// named in `batchItemFailures`; returns the ids it left in the queue.
pub async fn settle_batch(
    sqs: &Client,
    queue_url: &str,
    messages: &[aws_sdk_sqs::types::Message],
    response: &Value,
) -> Vec<String> {
    let failed: Vec<String> = response["batchItemFailures"]
        .as_array()
        .expect("a partial batch response")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect();
    for m in messages {
        if !failed.iter().any(|id| Some(id.as_str()) == m.message_id()) {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .expect("delete");
        }
    }
    failed
}

/// AWS's documented SQS event (`fixtures/events/sqs_batch.json`), its messages replaced by
/// `(message id, body)` pairs.
pub fn sqs_event(messages: &[(&str, String)]) -> Value {
    let path = format!(
        "{}/fixtures/events/sqs_batch.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut event: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let template = event["Records"][0].take();
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            let mut record = template.clone();
            record["messageId"] = json!(id);
            record["body"] = json!(body);
            record
        })
        .collect();
    json!({ "Records": records })
}
