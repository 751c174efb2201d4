//! The delivery-queue conformance suite (`tapline_tests::conformance::relay_queue`) on each
//! relay queue: the local SQLite queue and its worker, SQS on moto with the worker Lambda's
//! handler (dedupe claims and attempt log in an S3 bucket on moto), and the Pub/Sub double with
//! the push worker's handler (claims and attempt log in a bucket on fake-gcs-server).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tapline::webhook_relay::clock::{Clock, ManualClock, SystemClock};
use tapline::webhook_relay::queue::{AcceptQueue, IncomingPayload};
use tapline_tests::conformance::relay_queue::{QueueHarness, ScriptedDestination, WINDOW, setup};

fn payload(body: &str, received_at_ms: i64) -> IncomingPayload {
    IncomingPayload {
        route: "r".into(),
        destinations: vec!["d".into()],
        body: body.as_bytes().to_vec(),
        received_at_ms,
        paused_until_ms: HashMap::new(),
    }
}

fn outcomes(attempts: &[tapline::webhook_relay::queue::AttemptRecord]) -> Vec<String> {
    attempts.iter().map(|a| a.outcome.clone()).collect()
}

mod sqlite {
    use super::*;
    use tapline::webhook_relay::delivery::worker::DeliveryWorker;
    use tapline::webhook_relay::queue::sqlite::SqliteDeliveryQueue;
    use tapline::webhook_relay::queue::{DeadLetterFilter, DeliveryQueue};

    struct Sqlite {
        _dir: tempfile::TempDir,
        queue: Arc<dyn DeliveryQueue>,
        worker: DeliveryWorker,
        clock: Arc<ManualClock>,
    }

    #[async_trait]
    impl QueueHarness for Sqlite {
        async fn accept(&self, body: &str) {
            let window = WINDOW.as_millis() as i64;
            let at = self.clock.now_ms();
            self.queue.enqueue(payload(body, at), window).await.unwrap();
        }

        async fn deliver_due(&self) {
            self.worker.run_once().await.unwrap();
        }

        async fn advance(&self, by: Duration) {
            self.clock.advance(by);
        }

        async fn dead_letters(&self) -> Vec<Vec<String>> {
            let filter = DeadLetterFilter::default();
            let dead = self.queue.dead_letters(&filter).await.unwrap();
            dead.iter().map(|d| outcomes(&d.attempts)).collect()
        }
    }

    async fn make(
        _name: &str,
        script: Vec<u16>,
    ) -> (Box<dyn QueueHarness>, Arc<ScriptedDestination>) {
        let dir = tempfile::tempdir().unwrap();
        let queue: Arc<dyn DeliveryQueue> =
            Arc::new(SqliteDeliveryQueue::open(dir.path()).unwrap());
        let destination = ScriptedDestination::new(script);
        let (destinations, retry) = setup(&destination);
        let clock = Arc::new(ManualClock::new(1_764_000_000_000));
        let worker = DeliveryWorker::new(queue.clone(), destinations, retry, clock.clone());
        let harness = Sqlite {
            _dir: dir,
            queue,
            worker,
            clock,
        };
        (Box::new(harness), destination)
    }

    tapline_tests::relay_queue_conformance_tests!(make);
}

mod sqs {
    use super::*;
    use tapline::webhook_relay::dedupe::DedupeWindow;
    use tapline::webhook_relay::dedupe::s3::S3Objects;
    use tapline::webhook_relay::queue::sqs::{
        DeliveryMessage, SqsAcceptQueue, SqsDeliveryHandler, SqsEvent,
    };
    use tapline_tests::servers::{s3, sqs};

    struct Sqs {
        client: aws_sdk_sqs::Client,
        queue_url: String,
        dlq_url: String,
        accept: SqsAcceptQueue,
        handler: Arc<SqsDeliveryHandler>,
    }

    /// Every message visible now, short polls until none comes.
    async fn receive_all(
        client: &aws_sdk_sqs::Client,
        url: &str,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        loop {
            let out = client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .unwrap();
            if out.messages().is_empty() {
                return all;
            }
            all.extend(out.messages().iter().cloned());
        }
    }

    #[async_trait]
    impl QueueHarness for Sqs {
        async fn accept(&self, body: &str) {
            let at = SystemClock.now_ms();
            self.accept.enqueue(payload(body, at), 0).await.unwrap();
        }

        async fn deliver_due(&self) {
            let messages = receive_all(&self.client, &self.queue_url).await;
            if messages.is_empty() {
                return;
            }
            let event: SqsEvent = serde_json::from_value(sqs::lambda_event(&messages)).unwrap();
            let response = self.handler.handle(event).await;
            sqs::settle_batch(&self.client, &self.queue_url, &messages, &response).await;
        }

        async fn advance(&self, by: Duration) {
            // SQS keeps time itself (a retry's visibility timeout): let it pass, with a margin
            // for the timeout's rounding to whole seconds.
            tokio::time::sleep(by + Duration::from_millis(300)).await;
        }

        async fn dead_letters(&self) -> Vec<Vec<String>> {
            receive_all(&self.client, &self.dlq_url)
                .await
                .iter()
                .map(|m| {
                    let letter: DeliveryMessage = serde_json::from_str(m.body().unwrap()).unwrap();
                    outcomes(&letter.attempts)
                })
                .collect()
        }
    }

    async fn make(
        name: &str,
        script: Vec<u16>,
    ) -> (Box<dyn QueueHarness>, Arc<ScriptedDestination>) {
        let name = format!("conformance-{name}");
        let client = sqs::client().await;
        // The redrive policy is the safety net only: the handler dead-letters after 3.
        let (queue_url, dlq_url) = sqs::queue_with_dead_letters(&client, &name, 10).await;
        let s3_client = s3::client().await;
        let bucket = s3::new_bucket(&s3_client, &name).await;
        let destination = ScriptedDestination::new(script);
        let (destinations, retry) = setup(&destination);
        let claims = S3Objects::new(s3_client.clone(), &bucket);
        let handler = SqsDeliveryHandler::new(
            destinations,
            retry,
            Arc::new(SystemClock),
            client.clone(),
            &queue_url,
            &dlq_url,
        )
        .with_dedupe(Some(DedupeWindow::new(claims, WINDOW)))
        .with_attempt_log(Some(Arc::new(S3Objects::new(s3_client, &bucket))));
        let harness = Sqs {
            accept: SqsAcceptQueue::new(client.clone(), &queue_url),
            client,
            queue_url,
            dlq_url,
            handler: Arc::new(handler),
        };
        (Box::new(harness), destination)
    }

    tapline_tests::relay_queue_conformance_tests!(make);
}

mod pubsub {
    use super::*;
    use base64::Engine;
    use tapline::google_auth::GoogleAuth;
    use tapline::triggers::{PushEnvelope, PushMessage};
    use tapline::webhook_relay::dedupe::DedupeWindow;
    use tapline::webhook_relay::dedupe::gcs::GcsObjects;
    use tapline::webhook_relay::queue::AttemptRecord;
    use tapline::webhook_relay::queue::pubsub::{
        PubSubAcceptQueue, PubSubDeliveryHandler, PubSubPublisher,
    };
    use tapline_tests::doubles::pubsub::{PubSubDouble, Published};
    use tapline_tests::servers::gcs;

    struct PubSub {
        double: PubSubDouble,
        topic: String,
        dead_topic: String,
        accept: PubSubAcceptQueue,
        handler: PubSubDeliveryHandler,
        clock: Arc<ManualClock>,
        /// Messages of the delivery topic taken so far, and those not acknowledged yet (pushed
        /// again on the next pass, as a push subscription does).
        taken: Mutex<(usize, Vec<Published>)>,
    }

    #[async_trait]
    impl QueueHarness for PubSub {
        async fn accept(&self, body: &str) {
            let at = self.clock.now_ms();
            self.accept.enqueue(payload(body, at), 0).await.unwrap();
        }

        async fn deliver_due(&self) {
            let pending = {
                let mut taken = self.taken.lock().unwrap();
                let messages = self.double.messages(&self.topic);
                let new = messages[taken.0..].to_vec();
                taken.0 = messages.len();
                let mut pending = std::mem::take(&mut taken.1);
                pending.extend(new);
                pending
            };
            let mut unacknowledged = Vec::new();
            for message in pending {
                let envelope = PushEnvelope {
                    message: PushMessage {
                        data: Some(base64::engine::general_purpose::STANDARD.encode(&message.data)),
                        attributes: message.attributes.clone(),
                        message_id: message.id.clone(),
                    },
                    subscription: "projects/p/subscriptions/deliveries".into(),
                    delivery_attempt: Some(1),
                };
                if !self.handler.handle(envelope).await.status().is_success() {
                    unacknowledged.push(message);
                }
            }
            self.taken.lock().unwrap().1.extend(unacknowledged);
        }

        async fn advance(&self, by: Duration) {
            self.clock.advance(by);
        }

        async fn dead_letters(&self) -> Vec<Vec<String>> {
            self.double
                .messages(&self.dead_topic)
                .iter()
                .map(|m| {
                    let mut attempts: Vec<(u32, AttemptRecord)> = m
                        .attributes
                        .iter()
                        .filter_map(|(k, v)| {
                            let n = k.strip_prefix("tapline_attempt_")?.parse().ok()?;
                            Some((n, serde_json::from_str(v).unwrap()))
                        })
                        .collect();
                    attempts.sort_by_key(|a| a.0);
                    attempts.into_iter().map(|a| a.1.outcome).collect()
                })
                .collect()
        }
    }

    async fn make(
        name: &str,
        script: Vec<u16>,
    ) -> (Box<dyn QueueHarness>, Arc<ScriptedDestination>) {
        let double = PubSubDouble::start("p").await;
        let topic = double.create_topic("deliveries");
        let dead_topic = double.create_topic("dead-letters");
        let endpoint = format!("http://{}", double.host);
        let publisher =
            |topic: &str| PubSubPublisher::new(&endpoint, GoogleAuth::anonymous(), topic).unwrap();
        let bucket = gcs::new_bucket(&format!("conformance-{name}")).await;
        let objects =
            || GcsObjects::new(&gcs::gcs_url(), GoogleAuth::anonymous(), &bucket).unwrap();
        let destination = ScriptedDestination::new(script);
        let (destinations, retry) = setup(&destination);
        let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
        let handler = PubSubDeliveryHandler::new(
            destinations,
            retry,
            clock.clone(),
            publisher(&topic),
            publisher(&dead_topic),
        )
        .with_dedupe(Some(DedupeWindow::new(objects(), WINDOW)))
        .with_attempt_log(Some(Arc::new(objects())));
        let harness = PubSub {
            accept: PubSubAcceptQueue::new(publisher(&topic)),
            double,
            topic,
            dead_topic,
            handler,
            clock,
            taken: Mutex::new((0, Vec::new())),
        };
        (Box::new(harness), destination)
    }

    tapline_tests::relay_queue_conformance_tests!(make);
}
