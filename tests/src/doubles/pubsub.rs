//! A Google Pub/Sub double on loopback: topics with `POST /v1/projects/P/topics/T:publish`
//! checked against the documented request (`{"messages": [{"data": <base64>, "attributes":
//! {…}}]}`: a JSON object, at least one message, `data` valid base64, a message with neither data
//! nor attributes refused; unknown topic 404), answering `{"messageIds": […]}`; publish failures
//! on request; and push subscriptions that POST the documented envelope to an endpoint
//! (`{"message": {"data", "attributes", "messageId", "message_id", "publishTime",
//! "publish_time"}, "subscription", "deliveryAttempt"}`), treat 102, 200, 201, 202 and 204 as an
//! acknowledgement, redeliver anything else after a backoff, and, with a dead-letter policy,
//! forward a message to the dead-letter topic once `max_delivery_attempts` pushes failed (with
//! `CloudPubSubDeadLetterSource*` attributes, as Pub/Sub does). Pull subscriptions answer
//! `subscriptions.pull` (`{"maxMessages": n}`; `{}` when nothing is available, as Pub/Sub omits
//! empty fields), `acknowledge` (`{"ackIds": […]}`) and `modifyAckDeadline` (`{"ackIds": […],
//! "ackDeadlineSeconds": 0..=600}`; 0 makes a message available again at once); a pulled
//! message is outstanding until then (no deadline expiry here).

use crate::doubles::google_rpc::error;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// A message stored on a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// Its id.
    pub id: String,
    /// Its data, decoded.
    pub data: Vec<u8>,
    /// Its attributes.
    pub attributes: HashMap<String, String>,
}

/// One push of a message to a subscription's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The subscription's short name.
    pub subscription: String,
    /// The message id.
    pub message_id: String,
    /// The delivery attempt (from 1).
    pub attempt: u32,
    /// The endpoint's answer (0: no answer).
    pub status: u16,
}

/// How a message left a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The endpoint acknowledged it.
    Acked,
    /// Forwarded to the dead-letter topic by the dead-letter policy.
    DeadLettered,
}

#[derive(Debug, Clone)]
struct Subscription {
    name: String,
    topic: String,
    endpoint: String,
    dead_letter: Option<(String, u32)>,
    backoff: Duration,
}

/// A pull subscription: available messages, and those pulled but not yet settled by ack id.
#[derive(Default)]
struct PullSubscription {
    topic: String,
    available: VecDeque<Published>,
    outstanding: HashMap<String, Published>,
    acked: Vec<String>,
}

#[derive(Default)]
struct Shared {
    project: String,
    pull_subscriptions: Mutex<HashMap<String, PullSubscription>>,
    next_ack: Mutex<u64>,
    topics: Mutex<HashMap<String, Vec<Published>>>,
    subscriptions: Mutex<Vec<Subscription>>,
    publish_faults: Mutex<VecDeque<u16>>,
    pushes: Mutex<Vec<Push>>,
    settled: Mutex<Vec<(String, String, Settled)>>,
    rejected: Mutex<Vec<String>>,
    next_id: Mutex<u64>,
    changed: Notify,
}

/// The running double; stops (with its push tasks) when dropped.
pub struct PubSubDouble {
    /// What `PUBSUB_EMULATOR_HOST` should say: `127.0.0.1:PORT`.
    pub host: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PubSubDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn invalid(shared: &Shared, message: String) -> Response {
    shared.rejected.lock().unwrap().push(message.clone());
    error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

/// `subscriptions.pull|acknowledge|modifyAckDeadline` on a pull subscription.
fn handle_subscription(shared: &Shared, name: &str, method: &str, body: &[u8]) -> Response {
    let mut subscriptions = shared.pull_subscriptions.lock().unwrap();
    let Some(subscription) = subscriptions.get_mut(name) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Resource not found (resource={name})."),
        );
    };
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return invalid(
            shared,
            "Invalid JSON payload received: not a JSON object".into(),
        );
    };
    let ack_ids = || -> Option<Vec<String>> {
        let ids: Vec<String> = serde_json::from_value(request.get("ackIds")?.clone()).ok()?;
        (!ids.is_empty()).then_some(ids)
    };
    match method {
        "pull" => {
            let Some(max) = request
                .get("maxMessages")
                .and_then(Value::as_u64)
                .filter(|n| *n > 0)
            else {
                return invalid(shared, "maxMessages: must be greater than 0".into());
            };
            let mut received = Vec::new();
            while received.len() < max as usize {
                let Some(message) = subscription.available.pop_front() else {
                    break;
                };
                let ack_id = {
                    let mut next = shared.next_ack.lock().unwrap();
                    *next += 1;
                    format!("ack-{}", *next)
                };
                received.push(json!({
                    "ackId": ack_id,
                    "message": {
                        "data": base64::engine::general_purpose::STANDARD.encode(&message.data),
                        "attributes": message.attributes,
                        "messageId": message.id,
                        "publishTime": "2026-11-29T00:00:00Z",
                    },
                }));
                subscription.outstanding.insert(ack_id, message);
            }
            if received.is_empty() {
                return (StatusCode::OK, axum::Json(json!({}))).into_response();
            }
            (
                StatusCode::OK,
                axum::Json(json!({"receivedMessages": received})),
            )
                .into_response()
        }
        "acknowledge" => {
            let Some(ids) = ack_ids() else {
                return invalid(shared, "ackIds: required, not empty".into());
            };
            for id in ids {
                if let Some(message) = subscription.outstanding.remove(&id) {
                    subscription.acked.push(message.id);
                }
            }
            (StatusCode::OK, axum::Json(json!({}))).into_response()
        }
        "modifyAckDeadline" => {
            let deadline = request.get("ackDeadlineSeconds").and_then(Value::as_u64);
            let (Some(ids), Some(deadline)) = (ack_ids(), deadline.filter(|d| *d <= 600)) else {
                return invalid(
                    shared,
                    "ackIds and ackDeadlineSeconds (0 to 600) are required".into(),
                );
            };
            if deadline == 0 {
                for id in ids {
                    if let Some(message) = subscription.outstanding.remove(&id) {
                        subscription.available.push_back(message);
                    }
                }
            }
            (StatusCode::OK, axum::Json(json!({}))).into_response()
        }
        other => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no such method: subscriptions.{other}"),
        ),
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    if let Some((name, method)) = path
        .strip_prefix("/v1/")
        .filter(|rest| rest.contains("/subscriptions/"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(n, m)| (n.to_string(), m.to_string()))
    {
        if request.method() != Method::POST {
            return invalid(
                &shared,
                format!("{} is not a subscriptions method", request.method()),
            );
        }
        let body = axum::body::to_bytes(request.into_body(), 1024 * 1024)
            .await
            .unwrap_or_default();
        return handle_subscription(&shared, &name, &method, &body);
    }
    let Some(topic) = path
        .strip_prefix("/v1/")
        .and_then(|rest| rest.strip_suffix(":publish"))
        .map(str::to_string)
    else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no such method: {path}"),
        );
    };
    if request.method() != Method::POST {
        return invalid(
            &shared,
            format!("{} is not the method of topics.publish", request.method()),
        );
    }
    let body: Bytes = axum::body::to_bytes(request.into_body(), 20 * 1024 * 1024)
        .await
        .unwrap_or_default();
    if !shared.topics.lock().unwrap().contains_key(&topic) {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Resource not found (resource={topic})."),
        );
    }
    if let Some(status) = shared.publish_faults.lock().unwrap().pop_front() {
        let status = StatusCode::from_u16(status).unwrap();
        return error(
            status,
            "UNAVAILABLE",
            "The service was unable to fulfill your request.".into(),
        );
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(&body) else {
        return invalid(
            &shared,
            "Invalid JSON payload received: not a JSON object".into(),
        );
    };
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return invalid(&shared, "messages: required".into());
    };
    if messages.is_empty() {
        return invalid(&shared, "The value for message_count is too small.".into());
    }
    let mut decoded = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let data = match message.get("data") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(text)) => {
                match base64::engine::general_purpose::STANDARD.decode(text) {
                    Ok(data) => data,
                    Err(_) => {
                        return invalid(
                            &shared,
                            format!(
                                "Invalid value at 'messages[{i}].data' (TYPE_BYTES), Base64 decoding failed"
                            ),
                        );
                    }
                }
            }
            Some(other) => {
                return invalid(
                    &shared,
                    format!("Invalid value at 'messages[{i}].data': {other}"),
                );
            }
        };
        let attributes: HashMap<String, String> = match message.get("attributes") {
            None | Some(Value::Null) => HashMap::new(),
            Some(value) => match serde_json::from_value(value.clone()) {
                Ok(map) => map,
                Err(_) => {
                    return invalid(
                        &shared,
                        format!("Invalid value at 'messages[{i}].attributes'"),
                    );
                }
            },
        };
        if data.is_empty() && attributes.is_empty() {
            return invalid(
                &shared,
                "Some messages are empty: a message needs data or at least one attribute.".into(),
            );
        }
        decoded.push((data, attributes));
    }
    let ids = decoded
        .into_iter()
        .map(|(data, attributes)| store(&shared, &topic, data, attributes))
        .collect::<Vec<_>>();
    (StatusCode::OK, axum::Json(json!({"messageIds": ids}))).into_response()
}

/// Stores a message on `topic` and starts pushing it to the topic's subscriptions.
fn store(
    shared: &Arc<Shared>,
    topic: &str,
    data: Vec<u8>,
    attributes: HashMap<String, String>,
) -> String {
    let id = {
        let mut next = shared.next_id.lock().unwrap();
        *next += 1;
        format!("{}", 1_000_000 + *next)
    };
    let message = Published {
        id: id.clone(),
        data,
        attributes,
    };
    shared
        .topics
        .lock()
        .unwrap()
        .get_mut(topic)
        .expect("topic exists")
        .push(message.clone());
    let subscriptions: Vec<Subscription> = shared
        .subscriptions
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.topic == topic)
        .cloned()
        .collect();
    for pull in shared
        .pull_subscriptions
        .lock()
        .unwrap()
        .values_mut()
        .filter(|p| p.topic == topic)
    {
        pull.available.push_back(message.clone());
    }
    for subscription in subscriptions {
        tokio::spawn(push_until_settled(
            shared.clone(),
            subscription,
            message.clone(),
        ));
    }
    shared.changed.notify_waiters();
    id
}

async fn push_until_settled(shared: Arc<Shared>, subscription: Subscription, message: Published) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let publish_time = jiff::Timestamp::now().to_string();
    let mut attempt = 1u32;
    loop {
        let mut envelope = json!({
            "message": {
                "data": base64::engine::general_purpose::STANDARD.encode(&message.data),
                "attributes": message.attributes,
                "messageId": message.id,
                "message_id": message.id,
                "publishTime": publish_time,
                "publish_time": publish_time,
            },
            "subscription": subscription.name,
        });
        // Pub/Sub sets deliveryAttempt only on subscriptions with a dead-letter policy.
        if subscription.dead_letter.is_some() {
            envelope["deliveryAttempt"] = json!(attempt);
        }
        let status = match client
            .post(&subscription.endpoint)
            .json(&envelope)
            .send()
            .await
        {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        };
        shared.pushes.lock().unwrap().push(Push {
            subscription: subscription.name.clone(),
            message_id: message.id.clone(),
            attempt,
            status,
        });
        let outcome = if matches!(status, 102 | 200 | 201 | 202 | 204) {
            Some(Settled::Acked)
        } else {
            match &subscription.dead_letter {
                Some((topic, max)) if attempt >= *max => {
                    let mut attributes = message.attributes.clone();
                    attributes.insert(
                        "CloudPubSubDeadLetterSourceSubscription".into(),
                        subscription.name.clone(),
                    );
                    attributes.insert(
                        "CloudPubSubDeadLetterSourceDeliveryCount".into(),
                        attempt.to_string(),
                    );
                    store(&shared, topic, message.data.clone(), attributes);
                    Some(Settled::DeadLettered)
                }
                _ => None,
            }
        };
        if let Some(outcome) = outcome {
            shared.settled.lock().unwrap().push((
                subscription.name.clone(),
                message.id.clone(),
                outcome,
            ));
            shared.changed.notify_waiters();
            return;
        }
        shared.changed.notify_waiters();
        tokio::time::sleep(subscription.backoff).await;
        attempt += 1;
    }
}

impl PubSubDouble {
    /// Starts a double for `project` with no topics.
    pub async fn start(project: &str) -> Self {
        let shared = Arc::new(Shared {
            project: project.to_string(),
            ..Shared::default()
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind pubsub double");
        let host = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { host, shared, task }
    }

    /// Creates topic `name`; returns its full name, `projects/P/topics/NAME`.
    pub fn create_topic(&self, name: &str) -> String {
        let full = format!("projects/{}/topics/{name}", self.shared.project);
        self.shared
            .topics
            .lock()
            .unwrap()
            .insert(full.clone(), Vec::new());
        full
    }

    /// A push subscription `name` on `topic` (full name) to `endpoint`, redelivering after
    /// `backoff`; with `dead_letter` = (topic, max_delivery_attempts), dead-lettering after that
    /// many failed pushes. Messages published from now on are pushed.
    pub fn push_subscription(
        &self,
        name: &str,
        topic: &str,
        endpoint: &str,
        backoff: Duration,
        dead_letter: Option<(&str, u32)>,
    ) {
        self.shared
            .subscriptions
            .lock()
            .unwrap()
            .push(Subscription {
                name: format!("projects/{}/subscriptions/{name}", self.shared.project),
                topic: topic.to_string(),
                endpoint: endpoint.to_string(),
                dead_letter: dead_letter.map(|(t, max)| (t.to_string(), max)),
                backoff,
            });
    }

    /// A pull subscription `name` on `topic` (full name); returns its full name. Messages
    /// published from now on can be pulled.
    pub fn pull_subscription(&self, name: &str, topic: &str) -> String {
        let full = format!("projects/{}/subscriptions/{name}", self.shared.project);
        self.shared.pull_subscriptions.lock().unwrap().insert(
            full.clone(),
            PullSubscription {
                topic: topic.to_string(),
                ..PullSubscription::default()
            },
        );
        full
    }

    /// A pull subscription's state: (available, outstanding, acknowledged message ids).
    pub fn pull_state(&self, subscription: &str) -> (usize, usize, Vec<String>) {
        let subscriptions = self.shared.pull_subscriptions.lock().unwrap();
        let s = &subscriptions[subscription];
        (s.available.len(), s.outstanding.len(), s.acked.clone())
    }

    /// Answers the next publish requests with these statuses (stored nothing).
    pub fn fail_next_publishes(&self, statuses: &[u16]) {
        self.shared.publish_faults.lock().unwrap().extend(statuses);
    }

    /// The messages on `topic` (full name), in publish order.
    pub fn messages(&self, topic: &str) -> Vec<Published> {
        self.shared
            .topics
            .lock()
            .unwrap()
            .get(topic)
            .cloned()
            .unwrap_or_default()
    }

    /// Every push so far, in order.
    pub fn pushes(&self) -> Vec<Push> {
        self.shared.pushes.lock().unwrap().clone()
    }

    /// The publish requests refused as malformed (400), with the reason.
    pub fn rejected(&self) -> Vec<String> {
        self.shared.rejected.lock().unwrap().clone()
    }

    /// How messages left their subscriptions: (subscription, message id, how).
    pub fn settled(&self) -> Vec<(String, String, Settled)> {
        self.shared.settled.lock().unwrap().clone()
    }

    /// Waits until the pushes so far satisfy `done` (panics after `limit`); returns them.
    pub async fn wait_pushes(&self, done: impl Fn(&[Push]) -> bool, limit: Duration) -> Vec<Push> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.shared.changed.notified();
            let pushes = self.pushes();
            if done(&pushes) {
                return pushes;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("pushes never got there: {:?}", self.pushes());
            }
        }
    }

    /// Whether every message published on `topic` (full name) so far has left its push
    /// subscriptions. A worker that publishes a message again does so before it acknowledges the
    /// old one, so this holds only once nothing is in flight.
    pub fn all_settled(&self, topic: &str) -> bool {
        let settled = self.settled();
        self.messages(topic)
            .iter()
            .all(|m| settled.iter().any(|(_, id, _)| *id == m.id))
    }

    /// Waits until `done` holds of the double (checked at every push, publish and settlement;
    /// panics after `limit`, with the pushes so far).
    pub async fn wait_until(&self, done: impl Fn(&Self) -> bool, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.shared.changed.notified();
            if done(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("never got there; pushes: {:?}", self.pushes());
            }
        }
    }

    /// Waits until `n` messages have left their subscriptions (panics after `limit`).
    pub async fn wait_settled(&self, n: usize, limit: Duration) -> Vec<(String, String, Settled)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.shared.changed.notified();
            let settled = self.settled();
            if settled.len() >= n {
                return settled;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "{} message(s) settled, expected {n}; pushes: {:?}",
                    self.settled().len(),
                    self.pushes()
                );
            }
        }
    }
}
