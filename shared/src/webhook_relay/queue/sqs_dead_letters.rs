//! The relay's dead-letter queue on AWS, listed without taking anything away (feature
//! `relay-sqs`): what `tapline report --relay-queue QUEUE_URL` reads.
//!
//! SQS cannot peek. So each message is received with a visibility of
//! [`LIST_VISIBILITY_SECS`] (nobody else sees it while the pass runs, and this pass does not see
//! it twice), read, and every one is made visible again at the end (`ChangeMessageVisibility`
//! to 0), as the Pub/Sub listing releases what it pulls. If the pass dies half way, what it
//! received comes back by itself after the visibility timeout. A dead-letter queue has no
//! consumer of its own (replay is `aws sqs start-message-move-task`, which skips messages in
//! flight for that short while), so receiving costs nothing but the receive count.
//!
//! Memory: one received batch at a time (ten messages of at most 256 KiB), each message handed
//! to the caller without its body, plus one receipt handle per message seen (a few hundred bytes
//! each) up to [`MAX_LISTED`] messages.

use std::collections::HashSet;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;

use crate::webhook_relay::queue::QueueError;
use crate::webhook_relay::queue::sqs::DeliveryMessage;

/// How long a listed message stays out of sight before the pass releases it (or, if the pass
/// dies, before it comes back by itself).
pub const LIST_VISIBILITY_SECS: i32 = 60;
/// Most messages one pass reads: a queue that keeps filling cannot keep the command running,
/// and the receipt handles held stay a few MiB at most.
pub const MAX_LISTED: usize = 10_000;
/// SQS's most messages per receive and per batch call.
const SQS_BATCH: usize = 10;

/// What one pass over the dead-letter queue saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SqsDeadLetterPass {
    /// Relay deliveries handed to the caller.
    pub relay: usize,
    /// Messages that are not relay deliveries (left as they are).
    pub not_relay: usize,
    /// Whether the pass stopped at [`MAX_LISTED`] with messages left unread.
    pub truncated: bool,
}

fn error(queue_url: &str, reason: impl std::fmt::Display) -> QueueError {
    QueueError::Cloud {
        queue: queue_url.to_string(),
        reason: reason.to_string(),
        retryable: true,
    }
}

/// Reads every message of the dead-letter queue at `queue_url` once, hands each relay delivery
/// to `each` (its `body` emptied: a listing never needs it), and makes every message visible
/// again before it returns, whatever happened.
///
/// A delivery the worker dead-lettered carries its `dead` record and attempts; one the redrive
/// policy moved (the worker never settled it: a crash, a timeout) has neither.
pub async fn list_sqs_dead_letters(
    client: &Client,
    queue_url: &str,
    mut each: impl FnMut(DeliveryMessage),
) -> Result<SqsDeadLetterPass, QueueError> {
    let mut pass = SqsDeadLetterPass::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut to_release: Vec<String> = Vec::new();
    let result = async {
        loop {
            if seen.len() >= MAX_LISTED {
                pass.truncated = true;
                return Ok(());
            }
            let answer = client
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(SQS_BATCH as i32)
                .visibility_timeout(LIST_VISIBILITY_SECS)
                // Long polling for a second asks every SQS server, so an empty answer means
                // the queue holds nothing more this pass can see.
                .wait_time_seconds(1)
                .send()
                .await
                .map_err(|e| error(queue_url, DisplayErrorContext(e)))?;
            let mut fresh = 0;
            for message in answer.messages() {
                if let Some(handle) = message.receipt_handle() {
                    to_release.push(handle.to_string());
                }
                let id = message.message_id().unwrap_or_default();
                if !seen.insert(id.to_string()) {
                    // Seen earlier this pass (its visibility ran out): already counted.
                    continue;
                }
                fresh += 1;
                match message
                    .body()
                    .and_then(|b| serde_json::from_str::<DeliveryMessage>(b).ok())
                {
                    Some(mut delivery) => {
                        delivery.body = String::new();
                        pass.relay += 1;
                        each(delivery);
                    }
                    None => pass.not_relay += 1,
                }
            }
            if fresh == 0 {
                return Ok(());
            }
        }
    }
    .await;
    let released = release(client, queue_url, &to_release).await;
    result?;
    released?;
    Ok(pass)
}

/// Makes these messages visible again at once.
async fn release(client: &Client, queue_url: &str, handles: &[String]) -> Result<(), QueueError> {
    for (batch_no, batch) in handles.chunks(SQS_BATCH).enumerate() {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(format!("m{batch_no}-{i}"))
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let answer = client
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| error(queue_url, DisplayErrorContext(e)))?;
        if let Some(failed) = answer.failed().first() {
            return Err(error(
                queue_url,
                format!(
                    "a listed message could not be made visible again ({}); it comes back by \
                     itself within {LIST_VISIBILITY_SECS} s",
                    failed.code()
                ),
            ));
        }
    }
    Ok(())
}
