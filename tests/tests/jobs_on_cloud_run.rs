//! The GCP deployment's services beyond the export loader, as `infra/gcp` runs them: secrets by
//! Secret Manager version name (the double), the API puller on Cloud Run posted to as Cloud
//! Scheduler does, and the webhook relay on Cloud Run with Pub/Sub between its public endpoint
//! and its push worker (the double, which pushes and redelivers like a push subscription).

use serde_json::{Value, json};
use tapline::google_auth::GoogleAuth;
use tapline::secret::gcp::SecretManager;
use tapline_tests::doubles::clevertap_api::{
    ACCOUNT, ClevertapApi, PASSCODE, Quirk, event_records,
};
use tapline_tests::doubles::secret_manager::SecretManagerDouble;
use tapline_tests::servers::cloud_run_service::{CloudRunService, free_port};
use tapline_tests::servers::pg::PgSchema;

const PROJECT: &str = "acme-analytics";

async fn post_json(url: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .timeout(std::time::Duration::from_secs(60))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

mod secret_manager {
    use super::*;

    #[tokio::test]
    async fn versions_are_read_by_name_and_refusals_are_named() {
        let double = SecretManagerDouble::start().await;
        let first = double.add_version(PROJECT, "relay-token", "old-token");
        double.add_version(PROJECT, "relay-token", "new-token\n");
        let client = SecretManager::new(&double.endpoint, GoogleAuth::anonymous()).unwrap();

        assert_eq!(client.access(&first).await.unwrap().expose(), "old-token");
        let latest = format!("projects/{PROJECT}/secrets/relay-token/versions/latest");
        // The value as stored: callers trim the line break a pasted secret brings.
        assert_eq!(
            client.access(&latest).await.unwrap().expose(),
            "new-token\n"
        );

        let missing = format!("projects/{PROJECT}/secrets/nope/versions/latest");
        let err = client.access(&missing).await.unwrap_err();
        assert_eq!(
            tapline::error::error_chain(&err),
            format!(
                "cannot read secret {missing}: Secret Manager answered HTTP 404 (NOT_FOUND): \
                 Secret [projects/{PROJECT}/secrets/nope] not found or has no versions."
            )
        );
        double.deny(PROJECT, "relay-token");
        let err = tapline::error::error_chain(&client.access(&latest).await.unwrap_err());
        assert!(
            err.contains("HTTP 403 (PERMISSION_DENIED)") && !err.contains("new-token"),
            "{err}"
        );
        // 404 and 403 are not retried: one read each.
        assert_eq!(double.reads(), [first, latest.clone(), missing, latest]);
    }
}

mod api_puller {
    use super::*;

    fn api_url(api: &ClevertapApi) -> String {
        api.env()
            .into_iter()
            .find(|(k, _)| *k == "CLEVERTAP_API_URL")
            .unwrap()
            .1
    }

    /// The Cloud Run binary configured as `infra/gcp` deploys it: the passcode by Secret Manager
    /// version name, posted to with Cloud Scheduler's payload. Failed pulls answer 503 (Scheduler
    /// retries), bad payloads 400; SIGTERM stops it cleanly; the passcode never reaches a log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cloud_run_binary_pulls_what_cloud_scheduler_posts() {
        let secrets = SecretManagerDouble::start().await;
        let passcode = secrets.add_version(PROJECT, "tapline-clevertap-passcode", PASSCODE);
        let api = ClevertapApi::start().await;
        api.set_events("Charged", 20220922, event_records(20220922, 12));
        api.set_events("Charged", 20220923, event_records(20220923, 7));
        let schema = PgSchema::new("puller_cloud_run");
        let (api_url, warehouse) = (api_url(&api), schema.url());
        let env = [
            ("CLEVERTAP_ACCOUNT_ID", ACCOUNT),
            ("CLEVERTAP_PASSCODE_SECRET_ARN", passcode.as_str()),
            ("CLEVERTAP_API_URL", api_url.as_str()),
            ("CLEVERTAP_BACKOFF_MS", "1"),
            ("TAPLINE_WAREHOUSE", warehouse.as_str()),
            ("TAPLINE_TIMEZONE", "Asia/Kolkata"),
            ("TAPLINE_PULL_EVENTS", "Charged"),
            ("SECRET_MANAGER_ENDPOINT", secrets.endpoint.as_str()),
            ("TAPLINE_LOG", "debug"),
        ];
        let service = CloudRunService::start("api-puller-cloud-run", &env).await;
        assert_eq!(secrets.reads(), [passcode.as_str()], "read once, at start");

        let (status, body) = post_json(
            &format!("{}/", service.url),
            &json!({"tapline": "pull", "from": "2022-09-22", "to": "2022-09-23"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["results"]["events Charged 2022-09-22"]["rows"], 12);
        assert_eq!(body["results"]["events Charged 2022-09-23"]["rows"], 7);
        assert_eq!(schema.psql("SELECT count(*) FROM charged"), "19");

        // CleverTap failing beyond the client's retries (six HTTP 500s): 503 so that Scheduler
        // retries; nothing loaded or removed.
        api.quirks(&[Quirk::ServerError; 6]);
        let (status, body) = post_json(
            &format!("{}/", service.url),
            &json!({"tapline": "pull", "from": "2022-09-22", "to": "2022-09-22",
                    "events": ["Charged"], "jobs": ["events"]}),
        )
        .await;
        assert_eq!(
            (status, &body["retry"], &body["errorType"]),
            (503, &json!(true), &json!("PullFailedRetryable")),
            "{body}"
        );
        assert_eq!(api.quirks_left(), 0);
        assert_eq!(schema.psql("SELECT count(*) FROM charged"), "19");

        // Not a pull, or a bad setting: 400, nothing pulled.
        let (status, body) =
            post_json(&format!("{}/", service.url), &json!({"tapline": "sweep"})).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (
                400,
                Some("not a pull payload: expected {\"tapline\": \"pull\"}")
            )
        );
        let (status, body) = post_json(
            &format!("{}/", service.url),
            &json!({"tapline": "pull", "from": "22/09"}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["retry"], false, "{body}");
        assert_eq!(body["errorType"], "InvalidPullSettings", "{body}");

        // A pull no retry can fix (CleverTap refuses to export the event): 500, `retry` false;
        // the rows already there stay as they are.
        api.refuse_event("Notification Sent");
        let (status, body) = post_json(
            &format!("{}/", service.url),
            &json!({"tapline": "pull", "from": "2022-09-22", "to": "2022-09-22",
                    "events": ["Notification Sent"], "jobs": ["events"]}),
        )
        .await;
        assert_eq!(
            (status, &body["retry"], &body["errorType"]),
            (500, &json!(false), &json!("PullFailed")),
            "{body}"
        );
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("1 of 1 pulls failed: events Notification Sent 2022-09-22"),
            "{body}"
        );
        assert_eq!(schema.psql("SELECT count(*) FROM charged"), "19");

        let (clean, logs) = service.stop().await;
        assert!(clean, "graceful shutdown exits 0: {logs}");
        assert!(logs.contains("API puller listening."), "{logs}");
        assert!(logs.contains("Pull failed."), "{logs}");
        assert!(
            !logs.contains(PASSCODE),
            "the passcode never reaches a log, even at debug: {logs}"
        );
    }

    /// The GCP default: the pull lands in BigQuery (the REST double), the service's identity
    /// being the credentials (none against the double).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cloud_run_binary_pulls_into_bigquery() {
        use tapline_tests::doubles::bigquery::BigQueryDouble;

        let secrets = SecretManagerDouble::start().await;
        let passcode = secrets.add_version(PROJECT, "tapline-clevertap-passcode", PASSCODE);
        let api = ClevertapApi::start().await;
        api.set_events("Charged", 20220922, event_records(20220922, 12));
        let bigquery = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
        let (api_url, warehouse) = (api_url(&api), format!("bigquery://{PROJECT}/clevertap"));
        let service = CloudRunService::start(
            "api-puller-cloud-run",
            &[
                ("CLEVERTAP_ACCOUNT_ID", ACCOUNT),
                ("CLEVERTAP_PASSCODE_SECRET_ARN", passcode.as_str()),
                ("CLEVERTAP_API_URL", api_url.as_str()),
                ("CLEVERTAP_BACKOFF_MS", "1"),
                ("TAPLINE_WAREHOUSE", warehouse.as_str()),
                ("TAPLINE_PULL_EVENTS", "Charged"),
                ("TAPLINE_PULL_JOBS", "events,counts"),
                ("SECRET_MANAGER_ENDPOINT", secrets.endpoint.as_str()),
                ("BIGQUERY_ENDPOINT", bigquery.endpoint.as_str()),
            ],
        )
        .await;
        let (status, body) = post_json(
            &format!("{}/", service.url),
            &json!({"tapline": "pull", "from": "2022-09-22", "to": "2022-09-22"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["results"]["events Charged 2022-09-22"]["rows"], 12);
        assert_eq!(body["results"]["count Charged 2022-09-22"], 12);
        let count = |sql: &str| bigquery.rows("clevertap", sql)[0][0].clone().unwrap();
        assert_eq!(count("SELECT count(*) FROM charged"), "12");
        assert_eq!(count("SELECT count FROM event_counts"), "12");
        let (clean, logs) = service.stop().await;
        assert!(clean, "{logs}");
        assert!(!logs.contains(PASSCODE), "{logs}");
    }

    /// The alerts job on Cloud Run, configured as `infra/gcp` does: breaches go to the relay's
    /// route (`TAPLINE_ALERTS_RELAY_URL`, its token by Secret Manager version, read once at
    /// start), the summary says each was notified and `alert_runs` stores `notified = yes`.
    /// Before the fix the service never read `TAPLINE_ALERTS_*` and stored `notified = no`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alert_breaches_are_posted_to_the_relay_route() {
        use tapline_tests::doubles::receiver::Receiver;

        const RELAY_TOKEN: &str = "gcp-alerts-t0ken-0123456789abcdef";
        let secrets = SecretManagerDouble::start().await;
        let passcode = secrets.add_version(PROJECT, "tapline-clevertap-passcode", PASSCODE);
        let token = secrets.add_version(
            PROJECT,
            "tapline-relay-ALERTS_TOKEN",
            &format!("{RELAY_TOKEN}\n"),
        );
        let api = ClevertapApi::start().await;
        api.set_events("Charged", 20220923, event_records(20220923, 12));
        let relay = Receiver::start().await;
        let schema = PgSchema::new("puller_cloud_run_alerts");
        let (api_url, warehouse) = (api_url(&api), schema.url());
        let rules =
            r#"[{"name": "charged-floor", "event": "Charged", "when": "below", "count": 50}]"#;
        let service = CloudRunService::start(
            "api-puller-cloud-run",
            &[
                ("CLEVERTAP_ACCOUNT_ID", ACCOUNT),
                ("CLEVERTAP_PASSCODE_SECRET_ARN", passcode.as_str()),
                ("CLEVERTAP_API_URL", api_url.as_str()),
                ("CLEVERTAP_BACKOFF_MS", "1"),
                ("TAPLINE_WAREHOUSE", warehouse.as_str()),
                ("TAPLINE_PULL_EVENTS", "Charged"),
                ("TAPLINE_PULL_JOBS", "events,counts,alerts"),
                ("TAPLINE_ALERT_RULES", rules),
                ("TAPLINE_ALERTS_RELAY_URL", relay.url.as_str()),
                ("TAPLINE_ALERTS_RELAY_HEADER", "X-Tapline-Token"),
                ("TAPLINE_ALERTS_RELAY_TOKEN_SECRET_ARN", token.as_str()),
                ("SECRET_MANAGER_ENDPOINT", secrets.endpoint.as_str()),
                ("TAPLINE_LOG", "debug"),
            ],
        )
        .await;
        let mut reads = secrets.reads();
        reads.sort();
        let mut expected = vec![passcode.clone(), token.clone()];
        expected.sort();
        assert_eq!(reads, expected, "each secret read once, at start");

        let (status, body) = post_json(
            &format!("{}/", service.url),
            &json!({"tapline": "pull", "from": "2022-09-23", "to": "2022-09-23"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["results"]["events Charged 2022-09-23"]["rows"], 12);
        assert_eq!(
            body["results"]["alert charged-floor 2022-09-23"],
            json!({"status": "breached", "count": 12, "notified": true}),
            "{body}"
        );
        let posts = relay.received();
        assert_eq!(posts.len(), 1, "one breach, one post");
        assert_eq!(
            posts[0].headers.get("x-tapline-token").unwrap(),
            RELAY_TOKEN,
            "the token as stored, without its line break"
        );
        let posted: Value = serde_json::from_slice(&posts[0].body).unwrap();
        assert!(
            posted.to_string().contains("charged-floor"),
            "the breach names its rule: {posted}"
        );
        assert_eq!(
            schema.psql("SELECT rule, status, count, notified FROM alert_runs"),
            "charged-floor|breached|12|yes"
        );
        let (clean, logs) = service.stop().await;
        assert!(clean, "{logs}");
        assert!(
            !logs.contains(RELAY_TOKEN) && !logs.contains(PASSCODE),
            "no secret in the logs, even at debug: {logs}"
        );
    }

    /// An identity without access to the passcode's secret stops the service at start, with
    /// the secret's name and Google's refusal, not at the first scheduled run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_secret_it_may_not_read_stops_it_at_start() {
        let secrets = SecretManagerDouble::start().await;
        let passcode = secrets.add_version(PROJECT, "tapline-clevertap-passcode", PASSCODE);
        secrets.deny(PROJECT, "tapline-clevertap-passcode");
        let schema = PgSchema::new("puller_cloud_run_denied");
        let warehouse = schema.url();
        let logs = CloudRunService::try_start(
            "api-puller-cloud-run",
            &[
                ("CLEVERTAP_ACCOUNT_ID", ACCOUNT),
                ("CLEVERTAP_PASSCODE_SECRET_ARN", passcode.as_str()),
                ("TAPLINE_WAREHOUSE", warehouse.as_str()),
                ("TAPLINE_PULL_EVENTS", "Charged"),
                ("SECRET_MANAGER_ENDPOINT", secrets.endpoint.as_str()),
            ],
        )
        .await
        .err()
        .expect("the service exits at start");
        assert!(
            logs.contains(&format!("cannot read secret {passcode}")),
            "{logs}"
        );
        assert!(!logs.contains(PASSCODE), "{logs}");
    }
}

mod relay {
    use std::time::Duration;

    use super::*;
    use std::collections::HashMap;

    use tapline::webhook_relay::dedupe::gcs::GcsObjects;
    use tapline::webhook_relay::dedupe::{Claim, ClaimStore, DedupeWindow};
    use tapline::webhook_relay::queue::pubsub::{OutgoingMessage, PubSubPublisher};
    use tapline_tests::doubles::pubsub::{PubSubDouble, Settled};
    use tapline_tests::doubles::receiver::{Receiver, Reply};
    use tapline_tests::servers::gcs;

    const TOKEN: &str = "gcp-relay-t0ken-0123456789abcdef0123";
    const CONFIG: &str = r#"
[settings]
max_attempts = 3
backoff_base_ms = 200

[[routes]]
name = "alerts"
auth = { header = "X-Tapline-Token", secret_env = "ALERTS_TOKEN" }
[[routes.destinations]]
type = "slack"
url_env = "SLACK_ALERTS_URL"
[[routes.destinations]]
type = "http"
name = "crm"
url_env = "CRM_WEBHOOK_URL"
signing_secret_env = "CRM_SIGNING_SECRET"
"#;

    fn webhook(n: u32) -> Value {
        json!({"targetId": 1_700_000_000 + n, "key_values": {"event": "Charged"},
               "profiles": [{"identity": format!("u{n}"), "email": "a@example.com"}]})
    }

    async fn post_hook(endpoint: &CloudRunService, token: &str, body: &Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/hooks/alerts", endpoint.url))
            .header("X-Tapline-Token", token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The messages the endpoint published on `topic`: not those the worker published again.
    fn accepted(
        pubsub: &PubSubDouble,
        topic: &str,
    ) -> Vec<tapline_tests::doubles::pubsub::Published> {
        pubsub
            .messages(topic)
            .into_iter()
            .filter(|m| !m.attributes.contains_key("tapline_prior_attempts"))
            .collect()
    }

    fn attribute<'a>(
        message: &'a tapline_tests::doubles::pubsub::Published,
        name: &str,
    ) -> &'a str {
        message
            .attributes
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// CleverTap → public endpoint (Cloud Run) → Pub/Sub topic → push → worker (Cloud Run) →
    /// Slack and an HTTP destination, both services as `infra/gcp` configures them (the route
    /// token from Secret Manager by version name). A destination that fails is pushed again and
    /// delivered once; a publish that fails answers 503 and loses nothing; a permanent failure
    /// goes to the dead-letter topic with its attempt and is acknowledged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn webhooks_go_through_pubsub_to_their_destinations() {
        let pubsub = PubSubDouble::start(PROJECT).await;
        let delivery = pubsub.create_topic("tapline-relay-delivery");
        let dead = pubsub.create_topic("tapline-relay-dead-letters");
        let secrets = SecretManagerDouble::start().await;
        let token_version =
            secrets.add_version(PROJECT, "tapline-relay-ALERTS_TOKEN", &format!("{TOKEN}\n"));
        let slack = Receiver::start().await;
        let crm = Receiver::start().await;
        crm.script([Reply::Status(503, "down".into())]);
        let secret_map = json!({"ALERTS_TOKEN": token_version}).to_string();
        let common = [
            ("TAPLINE_RELAY_CONFIG_TOML", CONFIG),
            ("TAPLINE_RELAY_SECRET_ARNS", secret_map.as_str()),
            ("SLACK_ALERTS_URL", slack.url.as_str()),
            ("CRM_WEBHOOK_URL", crm.url.as_str()),
            (
                "CRM_SIGNING_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            ("SECRET_MANAGER_ENDPOINT", secrets.endpoint.as_str()),
            ("PUBSUB_EMULATOR_HOST", pubsub.host.as_str()),
            ("TAPLINE_LOG", "info"),
        ];
        let with = |extra: &[(&'static str, &str)]| {
            let mut env: Vec<(&str, String)> =
                common.iter().map(|(k, v)| (*k, v.to_string())).collect();
            env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
            env
        };
        let worker_env = with(&[
            ("TAPLINE_RELAY_MODE", "worker"),
            ("TAPLINE_RELAY_TOPIC", &delivery),
            ("TAPLINE_RELAY_DEAD_LETTER_TOPIC", &dead),
            ("TAPLINE_RELAY_MAX_DELIVERY_ATTEMPTS", "10"),
        ]);
        let worker_env: Vec<(&str, &str)> =
            worker_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let worker = CloudRunService::start("webhook-relay-cloud-run", &worker_env).await;
        pubsub.push_subscription(
            "tapline-relay-delivery",
            &delivery,
            &format!("{}/", worker.url),
            Duration::from_millis(100),
            Some((&dead, 10)),
        );
        let endpoint_env = with(&[
            ("TAPLINE_RELAY_MODE", "endpoint"),
            ("TAPLINE_RELAY_TOPIC", &delivery),
        ]);
        let endpoint_env: Vec<(&str, &str)> =
            endpoint_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let endpoint = CloudRunService::start("webhook-relay-cloud-run", &endpoint_env).await;

        // Accepted = published: one message per destination, the body as received.
        let first = webhook(1);
        let (status, answer) = post_hook(&endpoint, TOKEN, &first).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("accepted")),
            "{answer}"
        );
        let id = answer["id"].as_str().unwrap().to_string();
        let published = accepted(&pubsub, &delivery);
        assert_eq!(published.len(), 2);
        for (message, destination) in published.iter().zip(["slack-1", "crm"]) {
            assert_eq!(
                serde_json::from_slice::<Value>(&message.data).unwrap(),
                first
            );
            assert_eq!(attribute(message, "tapline_route"), "alerts");
            assert_eq!(attribute(message, "tapline_destination"), destination);
            assert_eq!(
                attribute(message, "tapline_delivery_id"),
                format!("{id}.{destination}")
            );
        }
        pubsub
            .wait_until(
                |p| p.all_settled(&delivery) && crm.received().len() == 2,
                Duration::from_secs(30),
            )
            .await;
        let settled = pubsub.settled();
        assert!(
            settled.iter().all(|(_, _, how)| *how == Settled::Acked),
            "{settled:?}"
        );
        assert_eq!(slack.received().len(), 1);
        let crm_got = crm.received();
        assert_eq!(
            crm_got.len(),
            2,
            "the 503 was published again, then delivered once"
        );
        assert_eq!(
            crm_got[0].headers["idempotency-key"],
            format!("{id}.crm").as_str()
        );
        assert_eq!(
            crm_got[1].headers["idempotency-key"],
            crm_got[0].headers["idempotency-key"]
        );
        assert!(
            crm_got[1].at - crm_got[0].at >= Duration::from_millis(180),
            "the relay's backoff (200 ms, -10 % jitter), not Pub/Sub's 100 ms"
        );
        // The failed attempt published the delivery again (the same body and ids, with its
        // attempt and due time) and acknowledged the push; the copy's pushes before it was due
        // were held (503, no request to the destination), the next one delivered.
        let pushes_of = |message_id: &str| -> Vec<(u32, u16)> {
            pubsub
                .pushes()
                .iter()
                .filter(|p| p.message_id == message_id)
                .map(|p| (p.attempt, p.status))
                .collect()
        };
        assert_eq!(pushes_of(&published[1].id), [(1, 200)]);
        let again: Vec<_> = pubsub
            .messages(&delivery)
            .into_iter()
            .filter(|m| m.attributes.contains_key("tapline_prior_attempts"))
            .collect();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].data, published[1].data);
        assert_eq!(attribute(&again[0], "tapline_prior_attempts"), "1");
        for name in ["tapline_delivery_id", "tapline_payload_id", "tapline_route"] {
            assert_eq!(attribute(&again[0], name), attribute(&published[1], name));
        }
        let copy_pushes = pushes_of(&again[0].id);
        assert_eq!(copy_pushes.last().map(|p| p.1), Some(200));
        assert!(
            copy_pushes[..copy_pushes.len() - 1]
                .iter()
                .all(|p| p.1 == 503),
            "{copy_pushes:?}"
        );

        // Wrong token: 401, nothing published.
        let (status, _) = post_hook(&endpoint, "wrong", &webhook(2)).await;
        assert_eq!(status, 401);
        assert_eq!(accepted(&pubsub, &delivery).len(), 2);

        // Pub/Sub refuses the publish: 503 (CleverTap retries), nothing half-published; the
        // retry is accepted and delivered.
        pubsub.fail_next_publishes(&[503]);
        let second = webhook(3);
        let (status, answer) = post_hook(&endpoint, TOKEN, &second).await;
        assert_eq!(status, 503, "{answer}");
        assert_eq!(accepted(&pubsub, &delivery).len(), 2);
        let (status, _) = post_hook(&endpoint, TOKEN, &second).await;
        assert_eq!(status, 200);
        assert_eq!(accepted(&pubsub, &delivery).len(), 4);
        pubsub
            .wait_until(|p| p.all_settled(&delivery), Duration::from_secs(30))
            .await;
        assert_eq!((slack.received().len(), crm.received().len()), (2, 3));

        // A permanent refusal: dead-lettered by the worker with its attempt, and acknowledged.
        crm.set_default(Reply::Status(404, "no such hook".into()));
        let third = webhook(4);
        let (status, _) = post_hook(&endpoint, TOKEN, &third).await;
        assert_eq!(status, 200);
        pubsub
            .wait_until(
                |p| p.all_settled(&delivery) && !p.messages(&dead).is_empty(),
                Duration::from_secs(30),
            )
            .await;
        let settled = pubsub.settled();
        assert_eq!(settled.len(), 7, "6 accepted, 1 published again");
        assert!(
            settled.iter().all(|(_, _, how)| *how == Settled::Acked),
            "{settled:?}"
        );
        let dead_letters = pubsub.messages(&dead);
        assert_eq!(dead_letters.len(), 1);
        let letter = &dead_letters[0];
        assert_eq!(
            serde_json::from_slice::<Value>(&letter.data).unwrap(),
            third
        );
        assert_eq!(attribute(letter, "tapline_destination"), "crm");
        assert_eq!(attribute(letter, "tapline_dead_outcome"), "permanent");
        assert_eq!(attribute(letter, "tapline_dead_status"), "404");
        assert_eq!(attribute(letter, "tapline_dead_attempt"), "1");
        let only: Value = serde_json::from_str(attribute(letter, "tapline_attempt_1")).unwrap();
        assert_eq!(
            (&only["status"], &only["outcome"]),
            (&json!(404), &json!("permanent"))
        );
        assert!(!letter.attributes.contains_key("tapline_attempt_2"));
        assert_eq!(
            crm.received().len(),
            4,
            "a permanent failure is not retried"
        );
        assert!(pubsub.rejected().is_empty(), "{:?}", pubsub.rejected());

        for service in [endpoint, worker] {
            let (clean, logs) = service.stop().await;
            assert!(clean, "graceful shutdown exits 0: {logs}");
            assert!(logs.contains("Relay listening."), "{logs}");
            assert!(
                !logs.contains(TOKEN),
                "the route token never reaches a log: {logs}"
            );
            assert!(!logs.contains("crm-signing-secret"), "{logs}");
        }
    }

    /// A destination that keeps failing: published again after each failure until the relay's
    /// `max_attempts`, then dead-lettered by the worker with the last error (not left to the
    /// subscription).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retries_end_on_the_dead_letter_topic_after_max_attempts() {
        let PushWorker {
            pubsub,
            topic,
            dead,
            bucket,
            slack: _slack,
            crm,
            worker,
            publisher,
        } = PushWorker::start(CONFIG, Duration::from_millis(50)).await;
        crm.set_default(Reply::Status(502, "bad gateway".into()));
        let message = delivery("p1", "crm", 1_700_000_000_000, br#"{"targetId":7}"#);
        publisher.publish(&[message]).await.unwrap();
        pubsub
            .wait_until(
                |p| p.all_settled(&topic) && !p.messages(&dead).is_empty(),
                Duration::from_secs(30),
            )
            .await;
        let settled = pubsub.settled();
        assert_eq!(settled.len(), 3, "two copies published again: {settled:?}");
        assert!(
            settled.iter().all(|(_, _, how)| *how == Settled::Acked),
            "the worker dead-letters it itself: {settled:?}"
        );
        // Three attempts (max_attempts), with pushes held in between while the backoff (100 to
        // 200 ms, then 200 to 400 ms) ran: those are not attempts, and not sent to the CRM.
        let statuses: Vec<u16> = pubsub.pushes().iter().map(|p| p.status).collect();
        assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
        assert!(statuses.len() > 3, "pushes were held: {statuses:?}");
        assert_eq!(crm.received().len(), 3, "max_attempts = 3");
        let gaps: Vec<Duration> = crm
            .received()
            .windows(2)
            .map(|w| w[1].at - w[0].at)
            .collect();
        assert!(
            gaps[0] >= Duration::from_millis(100) && gaps[1] >= Duration::from_millis(200),
            "the relay's backoff, not Pub/Sub's 50 ms: {gaps:?}"
        );
        let letters = pubsub.messages(&dead);
        assert_eq!(letters.len(), 1);
        assert_eq!(attribute(&letters[0], "tapline_dead_outcome"), "retryable");
        assert_eq!(attribute(&letters[0], "tapline_dead_status"), "502");
        assert_eq!(attribute(&letters[0], "tapline_dead_attempt"), "3");
        assert!(
            !letters[0].attributes.contains_key("tapline_prior_attempts")
                && !letters[0].attributes.contains_key("tapline_not_before_ms"),
            "a dead letter carries no retry state: {:?}",
            letters[0].attributes
        );
        // Every attempt, oldest first, from the attempt log in the worker's bucket.
        let attempts: Vec<Value> = (1..=3)
            .map(|n| {
                serde_json::from_str(attribute(&letters[0], &format!("tapline_attempt_{n}")))
                    .unwrap()
            })
            .collect();
        for (n, attempt) in attempts.iter().enumerate() {
            assert_eq!(
                (&attempt["attempt"], &attempt["status"], &attempt["outcome"]),
                (&json!(n + 1), &json!(502), &json!("retryable")),
                "{attempt}"
            );
        }
        assert!(
            attempts
                .windows(2)
                .all(|w| w[0]["at_ms"].as_i64() < w[1]["at_ms"].as_i64())
        );
        assert!(!letters[0].attributes.contains_key("tapline_attempt_4"));
        let logged: Value = reqwest::get(format!(
            "{}/storage/v1/b/{bucket}/o?prefix=attempts/p1.crm/",
            gcs::gcs_url()
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(
            logged["items"].as_array().map(Vec::len),
            Some(2),
            "{logged}"
        );
        assert_eq!(letters[0].data, br#"{"targetId":7}"#);

        // Not a relay delivery: 400, so the subscription's own policy dead-letters it.
        let stray = tapline::webhook_relay::queue::pubsub::OutgoingMessage {
            data: b"hello".to_vec(),
            attributes: Default::default(),
        };
        let stray_id = publisher.publish(&[stray]).await.unwrap().remove(0);
        pubsub
            .wait_until(|p| p.all_settled(&topic), Duration::from_secs(30))
            .await;
        assert!(pubsub.settled().contains(&(
            format!("projects/{PROJECT}/subscriptions/s"),
            stray_id,
            Settled::DeadLettered
        )));
        let letters = pubsub.messages(&dead);
        assert_eq!(letters[1].data, b"hello");
        assert_eq!(
            letters[1].attributes["CloudPubSubDeadLetterSourceDeliveryCount"],
            "30"
        );
        let (clean, _) = worker.stop().await;
        assert!(clean);
    }

    /// A worker service as `infra/gcp` runs it, with `config` and its bucket (claims, attempt
    /// records) in fake-gcs-server, pushed by a subscription on topic `d` that redelivers after
    /// `backoff` and dead-letters to `dl` after `max_pushes` pushes (the safety net; 30 unless
    /// said), the worker told so as Terraform tells it; a publisher on `d`, as the endpoint
    /// publishes.
    struct PushWorker {
        pubsub: PubSubDouble,
        topic: String,
        dead: String,
        bucket: String,
        slack: Receiver,
        crm: Receiver,
        worker: CloudRunService,
        publisher: PubSubPublisher,
    }

    impl PushWorker {
        async fn start(config: &str, backoff: Duration) -> Self {
            Self::start_with(config, backoff, 30, &[]).await
        }

        async fn start_with(
            config: &str,
            backoff: Duration,
            max_pushes: u32,
            extra_env: &[(&str, &str)],
        ) -> Self {
            let pubsub = PubSubDouble::start(PROJECT).await;
            let topic = pubsub.create_topic("d");
            let dead = pubsub.create_topic("dl");
            let (slack, crm) = (Receiver::start().await, Receiver::start().await);
            let bucket = gcs::new_bucket(&format!("relay-worker-{}", free_port())).await;
            let gcs_url = gcs::gcs_url();
            let max = max_pushes.to_string();
            let mut env = vec![
                ("TAPLINE_RELAY_MODE", "worker"),
                ("TAPLINE_RELAY_TOPIC", topic.as_str()),
                ("TAPLINE_RELAY_MAX_DELIVERY_ATTEMPTS", max.as_str()),
                ("TAPLINE_RELAY_DEDUPE_BUCKET", bucket.as_str()),
                ("STORAGE_EMULATOR_HOST", gcs_url.as_str()),
                ("TAPLINE_RELAY_CONFIG_TOML", config),
                ("ALERTS_TOKEN", TOKEN),
                ("SLACK_ALERTS_URL", slack.url.as_str()),
                ("CRM_WEBHOOK_URL", crm.url.as_str()),
                (
                    "CRM_SIGNING_SECRET",
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                ),
                ("PUBSUB_EMULATOR_HOST", pubsub.host.as_str()),
                ("TAPLINE_RELAY_DEAD_LETTER_TOPIC", dead.as_str()),
                ("TAPLINE_LOG", "info"),
            ];
            env.extend_from_slice(extra_env);
            let worker = CloudRunService::start("webhook-relay-cloud-run", &env).await;
            pubsub.push_subscription(
                "s",
                &topic,
                &format!("{}/", worker.url),
                backoff,
                Some((&dead, max_pushes)),
            );
            let publisher = PubSubPublisher::new(
                &format!("http://{}", pubsub.host),
                GoogleAuth::anonymous(),
                topic.clone(),
            )
            .unwrap();
            Self {
                pubsub,
                topic,
                dead,
                bucket,
                slack,
                crm,
                worker,
                publisher,
            }
        }
    }

    /// A 429 with `Retry-After: 1` from the destination: the pushes Pub/Sub makes within that
    /// second are held (503, nothing sent), and the next attempt is attempt 2, a second or more
    /// after the first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retry_after_holds_pushes_without_using_attempts() {
        let PushWorker {
            pubsub,
            topic,
            crm,
            worker,
            publisher,
            ..
        } = PushWorker::start(CONFIG, Duration::from_millis(100)).await;
        crm.script([Reply::TooManyRequests(1)]);
        publisher
            .publish(&[delivery("p1", "crm", 1_700_000_000_000, b"{}")])
            .await
            .unwrap();
        pubsub
            .wait_until(
                |p| p.all_settled(&topic) && crm.received().len() == 2,
                Duration::from_secs(30),
            )
            .await;
        assert!(pubsub.settled().iter().all(|s| s.2 == Settled::Acked));
        let got = crm.received();
        assert_eq!(got.len(), 2, "one 429, then delivered");
        assert!(
            got[1].at - got[0].at >= Duration::from_secs(1),
            "Retry-After honoured: {:?}",
            got[1].at - got[0].at
        );
        let pushes = pubsub.pushes();
        assert!(
            pushes.len() >= 4,
            "pushes within the second were held: {pushes:?}"
        );
        let (_, logs) = worker.stop().await;
        let delivered = logs
            .lines()
            .find(|l| l.contains("\"Delivered.\""))
            .unwrap_or_else(|| panic!("{logs}"));
        assert!(
            delivered.contains("\"attempt\":2"),
            "held pushes are not attempts: {delivered} ({} pushes)",
            pushes.len()
        );
    }

    /// The deployment's retry schedule shortened to 1 s then 2 s (three attempts), with a
    /// subscription that dead-letters after 5 pushes 100 ms apart: Pub/Sub alone would give up
    /// after half a second.
    async fn short_schedule_worker() -> PushWorker {
        let config = CONFIG.replace("max_attempts = 3\nbackoff_base_ms = 200\n", "");
        assert!(!config.contains("max_attempts"));
        PushWorker::start_with(
            &config,
            Duration::from_millis(100),
            5,
            &[("TAPLINE_RELAY_RETRY_SCHEDULE", r#"["1s","2s"]"#)],
        )
        .await
    }

    /// The requests `receiver` got, each with its `Idempotency-Key`.
    fn keys(receiver: &Receiver) -> Vec<String> {
        receiver
            .received()
            .iter()
            .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_string())
            .collect()
    }

    /// A destination down for three seconds, six times as long as the subscription's own
    /// redeliveries last: the worker follows the schedule itself (each failure published again
    /// with its attempt and due time, held pushes published again fresh before the
    /// subscription's fifth), and the delivery arrives once when the destination is back, at
    /// its third attempt; nothing is dead-lettered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_destination_down_longer_than_pubsub_waits_gets_its_delivery_once_on_gcp() {
        let PushWorker {
            pubsub,
            topic,
            dead,
            crm,
            worker,
            publisher,
            ..
        } = short_schedule_worker().await;
        crm.set_default(Reply::Status(503, "down".into()));
        let body = br#"{"targetId":11}"#;
        publisher
            .publish(&[delivery("p1", "crm", 1_700_000_000_000, body)])
            .await
            .unwrap();
        crm.wait_for(2, Duration::from_secs(30)).await;
        crm.set_default(Reply::Ok);
        pubsub
            .wait_until(
                |p| p.all_settled(&topic) && crm.received().len() == 3,
                Duration::from_secs(30),
            )
            .await;

        assert_eq!(keys(&crm), ["p1.crm", "p1.crm", "p1.crm"]);
        let got = crm.received();
        assert!(
            got.iter().all(|r| r.body.as_ref() == body),
            "the body unchanged"
        );
        let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
        assert!(
            gaps[0] >= Duration::from_millis(900) && gaps[1] >= Duration::from_millis(1800),
            "the schedule's 1 s and 2 s (-10 % jitter): {gaps:?}"
        );
        let settled = pubsub.settled();
        assert!(
            settled.iter().all(|s| s.2 == Settled::Acked),
            "the subscription dead-lettered nothing: {settled:?}"
        );
        assert!(pubsub.messages(&dead).is_empty());
        let copies = pubsub.messages(&topic);
        assert!(
            copies.iter().all(|m| m.data == body
                && attribute(m, "tapline_delivery_id") == "p1.crm"
                && attribute(m, "tapline_payload_id") == "p1"),
            "{copies:?}"
        );
        let mut rounds: Vec<&str> = copies
            .iter()
            .map(|m| attribute(m, "tapline_prior_attempts"))
            .collect();
        rounds.dedup();
        assert_eq!(rounds, ["", "1", "2"], "{copies:?}");
        let pushes = pubsub.pushes();
        assert!(
            pushes.iter().all(|p| p.attempt <= 4),
            "published again fresh before the subscription's fifth push: {pushes:?}"
        );
        assert!(
            pushes.iter().any(|p| p.attempt == 4 && p.status == 200),
            "{pushes:?}"
        );
        let (clean, logs) = worker.stop().await;
        assert!(clean);
        let delivered: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("\"Delivered.\""))
            .collect();
        assert_eq!(delivered.len(), 1, "{logs}");
        assert!(delivered[0].contains("\"attempt\":3"), "{}", delivered[0]);
    }

    /// A destination down past the schedule: three attempts, then one dead letter from the
    /// worker with every attempt, and nothing left on the subscription or dead-lettered by it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_destination_down_past_the_schedule_is_dead_lettered_once_on_gcp() {
        let PushWorker {
            pubsub,
            topic,
            dead,
            crm,
            worker,
            publisher,
            ..
        } = short_schedule_worker().await;
        crm.set_default(Reply::Status(503, "down".into()));
        let body = br#"{"targetId":12}"#;
        publisher
            .publish(&[delivery("p1", "crm", 1_700_000_000_000, body)])
            .await
            .unwrap();
        pubsub
            .wait_until(
                |p| p.all_settled(&topic) && !p.messages(&dead).is_empty(),
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(keys(&crm), ["p1.crm", "p1.crm", "p1.crm"]);
        let letters = pubsub.messages(&dead);
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].data, body);
        assert_eq!(attribute(&letters[0], "tapline_delivery_id"), "p1.crm");
        assert_eq!(attribute(&letters[0], "tapline_dead_attempt"), "3");
        assert_eq!(attribute(&letters[0], "tapline_dead_outcome"), "retryable");
        assert_eq!(attribute(&letters[0], "tapline_dead_status"), "503");
        for n in 1..=3 {
            let attempt: Value =
                serde_json::from_str(attribute(&letters[0], &format!("tapline_attempt_{n}")))
                    .unwrap();
            assert_eq!(attempt["attempt"], json!(n), "{attempt}");
        }
        let settled = pubsub.settled();
        assert!(settled.iter().all(|s| s.2 == Settled::Acked), "{settled:?}");
        let (clean, _) = worker.stop().await;
        assert!(clean);
        assert_eq!(crm.received().len(), 3, "nothing after the dead letter");
    }

    /// The worker needs the delivery topic to publish its retries to, and a subscription limit
    /// Pub/Sub allows: without either it does not start, and says which.
    #[tokio::test]
    async fn a_worker_without_its_retry_settings_does_not_start() {
        let pubsub = PubSubDouble::start(PROJECT).await;
        let topic = pubsub.create_topic("d");
        let dead = pubsub.create_topic("dl");
        let slack = Receiver::start().await;
        let base = [
            ("TAPLINE_RELAY_MODE", "worker"),
            ("TAPLINE_RELAY_CONFIG_TOML", CONFIG),
            ("ALERTS_TOKEN", TOKEN),
            ("SLACK_ALERTS_URL", slack.url.as_str()),
            ("CRM_WEBHOOK_URL", slack.url.as_str()),
            (
                "CRM_SIGNING_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            ("PUBSUB_EMULATOR_HOST", pubsub.host.as_str()),
            ("TAPLINE_RELAY_DEAD_LETTER_TOPIC", dead.as_str()),
        ];
        let without_topic = CloudRunService::try_start("webhook-relay-cloud-run", &base)
            .await
            .err()
            .expect("no TAPLINE_RELAY_TOPIC: no start");
        assert!(
            without_topic.contains("TAPLINE_RELAY_TOPIC is not set"),
            "{without_topic}"
        );
        for bad in ["4", "101", "many"] {
            let mut env = base.to_vec();
            env.extend([
                ("TAPLINE_RELAY_TOPIC", topic.as_str()),
                ("TAPLINE_RELAY_MAX_DELIVERY_ATTEMPTS", bad),
            ]);
            let logs = CloudRunService::try_start("webhook-relay-cloud-run", &env)
                .await
                .err()
                .expect("a limit Pub/Sub does not allow: no start");
            assert!(
                logs.contains("TAPLINE_RELAY_MAX_DELIVERY_ATTEMPTS") && logs.contains("5 to 100"),
                "{bad}: {logs}"
            );
        }
    }

    /// Five retryable failures in a row pause the destination in this instance: pushes for it
    /// are then held without a request, even for deliveries never attempted, until the pause
    /// ends; once it is back, every delivery arrives once, the held ones at their first attempt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_destination_that_keeps_failing_is_paused_on_gcp() {
        let config = CONFIG.replace("backoff_base_ms = 200", "backoff_base_ms = 4000");
        let PushWorker {
            pubsub,
            topic,
            crm,
            worker,
            publisher,
            ..
        } = PushWorker::start(&config, Duration::from_millis(250)).await;
        crm.set_default(Reply::Status(503, "down".into()));
        // Distinct bodies: the worker's dedupe window is on.
        let to_crm = |payloads: std::ops::RangeInclusive<i64>| -> Vec<OutgoingMessage> {
            payloads
                .map(|n| {
                    let body = format!(r#"{{"n":{n}}}"#);
                    delivery(
                        &format!("p{n}"),
                        "crm",
                        1_700_000_000_000 + n,
                        body.as_bytes(),
                    )
                })
                .collect()
        };
        let failing = to_crm(1..=5);
        let failing_ids = publisher.publish(&failing).await.unwrap();
        // The five failures are recorded once Pub/Sub has the worker's answers to them (each
        // published again, due in 4 s).
        pubsub
            .wait_pushes(
                |p| {
                    failing_ids
                        .iter()
                        .all(|id| p.iter().any(|push| &push.message_id == id))
                },
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(crm.received().len(), 5);

        let later = to_crm(6..=8);
        let ids = publisher.publish(&later).await.unwrap();
        let pushes = pubsub
            .wait_pushes(
                |p| {
                    ids.iter()
                        .all(|id| p.iter().any(|push| &push.message_id == id))
                },
                Duration::from_secs(30),
            )
            .await;
        assert!(
            pushes
                .iter()
                .filter(|p| ids.contains(&p.message_id))
                .all(|p| p.status == 503),
            "{pushes:?}"
        );
        assert_eq!(
            crm.received().len(),
            5,
            "paused: nothing sent for the new ones"
        );

        crm.set_default(Reply::Ok);
        pubsub
            .wait_until(
                |p| p.all_settled(&topic) && crm.received().len() == 13,
                Duration::from_secs(60),
            )
            .await;
        let settled = pubsub.settled();
        assert!(
            settled.iter().all(|(_, _, how)| *how == Settled::Acked),
            "{settled:?}"
        );
        let mut per_key: HashMap<String, usize> = HashMap::new();
        for request in crm.received() {
            let key = request.headers["idempotency-key"]
                .to_str()
                .unwrap()
                .to_string();
            *per_key.entry(key).or_default() += 1;
        }
        let expected: HashMap<String, usize> = (1..=8)
            .map(|n| (format!("p{n}.crm"), if n <= 5 { 2 } else { 1 }))
            .collect();
        assert_eq!(per_key, expected, "each delivered once, after the pause");

        let (_, logs) = worker.stop().await;
        assert!(
            logs.contains("Destination paused: it keeps failing."),
            "{logs}"
        );
        for n in 6..=8 {
            let line = logs
                .lines()
                .find(|l| l.contains("\"Delivered.\"") && l.contains(&format!("\"p{n}.crm\"")))
                .unwrap_or_else(|| panic!("p{n}: {logs}"));
            assert!(line.contains("\"attempt\":1"), "{line}");
        }
    }

    /// A delivery as the endpoint publishes it: payload `payload` to `destination`, received at
    /// `at` (Unix ms).
    fn delivery(payload: &str, destination: &str, at: i64, body: &[u8]) -> OutgoingMessage {
        OutgoingMessage {
            data: body.to_vec(),
            attributes: [
                ("tapline_delivery_id", format!("{payload}.{destination}")),
                ("tapline_payload_id", payload.to_string()),
                ("tapline_route", "alerts".to_string()),
                ("tapline_destination", destination.to_string()),
                ("tapline_received_at_ms", at.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    /// The dedupe window on GCP: CleverTap sends the same webhook twice, both are accepted
    /// (published), and each destination gets it once: the worker claims each delivery in a
    /// GCS bucket (fake-gcs-server) with generation preconditions. A redelivery of the same
    /// delivery goes through again; after the window the claim is taken over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_body_within_the_window_is_delivered_once_on_gcp() {
        let pubsub = PubSubDouble::start(PROJECT).await;
        let delivery_topic = pubsub.create_topic("d");
        let dead = pubsub.create_topic("dl");
        let bucket = gcs::new_bucket("relay-dedupe").await;
        let gcs_url = gcs::gcs_url();
        let (slack, crm) = (Receiver::start().await, Receiver::start().await);
        let env = |mode: &'static str| {
            vec![
                ("TAPLINE_RELAY_MODE", mode),
                ("TAPLINE_RELAY_CONFIG_TOML", CONFIG),
                ("ALERTS_TOKEN", TOKEN),
                ("SLACK_ALERTS_URL", slack.url.as_str()),
                ("CRM_WEBHOOK_URL", crm.url.as_str()),
                (
                    "CRM_SIGNING_SECRET",
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                ),
                ("PUBSUB_EMULATOR_HOST", pubsub.host.as_str()),
                ("TAPLINE_RELAY_TOPIC", delivery_topic.as_str()),
                ("TAPLINE_RELAY_DEAD_LETTER_TOPIC", dead.as_str()),
                ("TAPLINE_RELAY_DEDUPE_BUCKET", bucket.as_str()),
                ("STORAGE_EMULATOR_HOST", gcs_url.as_str()),
                ("TAPLINE_LOG", "info"),
            ]
        };
        let worker = CloudRunService::start("webhook-relay-cloud-run", &env("worker")).await;
        pubsub.push_subscription(
            "s",
            &delivery_topic,
            &format!("{}/", worker.url),
            Duration::from_millis(50),
            Some((&dead, 5)),
        );
        let endpoint = CloudRunService::start("webhook-relay-cloud-run", &env("endpoint")).await;

        // Sent twice: both accepted under their own ids, each destination delivered once.
        let body = webhook(7);
        let (first, second) = (
            post_hook(&endpoint, TOKEN, &body).await,
            post_hook(&endpoint, TOKEN, &body).await,
        );
        assert_eq!((first.0, second.0), (200, 200));
        assert_ne!(first.1["id"], second.1["id"]);
        assert_eq!(pubsub.messages(&delivery_topic).len(), 4);
        let settled = pubsub.wait_settled(4, Duration::from_secs(30)).await;
        assert!(
            settled.iter().all(|(_, _, how)| *how == Settled::Acked),
            "{settled:?}"
        );
        assert_eq!((slack.received().len(), crm.received().len()), (1, 1));
        let winner = crm.received()[0].headers["idempotency-key"]
            .to_str()
            .unwrap()
            .trim_end_matches(".crm")
            .to_string();
        assert!(
            [&first.1["id"], &second.1["id"]].contains(&&json!(winner)),
            "{winner}"
        );
        let claim_url = format!(
            "{gcs_url}/storage/v1/b/{bucket}/o/{}",
            tapline::webhook_relay::dedupe::claim_key(
                "alerts",
                "crm",
                &serde_json::to_vec(&body).unwrap()
            )
            .replace('/', "%2F")
        );
        let claim: Value = reqwest::get(&claim_url)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(claim["metadata"]["payload-id"], json!(winner), "{claim}");

        // The same delivery handed over again is delivered again (same key); another copy 9
        // minutes after the first is not; 11 minutes after, the claim is taken over.
        let publisher = PubSubPublisher::new(
            &format!("http://{}", pubsub.host),
            GoogleAuth::anonymous(),
            delivery_topic.clone(),
        )
        .unwrap();
        const T0: i64 = 1_764_000_000_000;
        let raw = br#"{"targetId":9}"#;
        let publish = |messages: Vec<OutgoingMessage>| {
            let publisher = publisher.clone();
            async move { publisher.publish(&messages).await.unwrap() }
        };
        publish(vec![delivery("p-a", "crm", T0, raw)]).await;
        pubsub.wait_settled(5, Duration::from_secs(30)).await;
        publish(vec![
            delivery("p-a", "crm", T0, raw),
            delivery("p-b", "crm", T0 + 9 * 60_000, raw),
        ])
        .await;
        pubsub.wait_settled(7, Duration::from_secs(30)).await;
        publish(vec![delivery("p-c", "crm", T0 + 11 * 60_000, raw)]).await;
        pubsub.wait_settled(8, Duration::from_secs(30)).await;
        let keys: Vec<String> = crm
            .received()
            .iter()
            .skip(1)
            .map(|m| m.headers["idempotency-key"].to_str().unwrap().to_string())
            .collect();
        assert_eq!(keys, ["p-a.crm", "p-a.crm", "p-c.crm"]);
        let statuses: Vec<u16> = pubsub.pushes().iter().map(|p| p.status).collect();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

        let (clean, logs) = worker.stop().await;
        assert!(clean);
        assert_eq!(
            logs.matches("Duplicate within the dedupe window").count(),
            3,
            "{logs}"
        );
        assert!(!logs.contains("Dedupe claim failed"), "{logs}");
        endpoint.stop().await;
    }

    /// Without a reachable bucket the worker delivers rather than blocks (maybe twice), and says
    /// why; the claim adapter itself honours generation preconditions on fake-gcs-server.
    #[tokio::test]
    async fn gcs_claims_are_conditional_and_a_missing_bucket_delivers() {
        let bucket = gcs::new_bucket("relay-claims").await;
        let claims = GcsObjects::new(&gcs::gcs_url(), GoogleAuth::anonymous(), &bucket).unwrap();
        assert_eq!(claims.create("dedupe/r/d/k", "p1", 5).await, Ok(true));
        assert_eq!(claims.create("dedupe/r/d/k", "p2", 6).await, Ok(false));
        let holder = claims.read("dedupe/r/d/k").await.unwrap().unwrap();
        assert_eq!(
            (holder.payload_id.as_str(), holder.received_at_ms),
            ("p1", Some(5))
        );
        assert_eq!(claims.read("dedupe/r/d/none").await, Ok(None));
        let stale = format!("{}1", holder.version);
        assert_eq!(
            claims.replace("dedupe/r/d/k", &stale, "p3", 7).await,
            Ok(false)
        );
        assert_eq!(
            claims
                .replace("dedupe/r/d/k", &holder.version, "p3", 7)
                .await,
            Ok(true)
        );
        assert_eq!(
            claims
                .replace("dedupe/r/d/k", &holder.version, "p4", 8)
                .await,
            Ok(false),
            "the second take-over of one version loses"
        );
        assert_eq!(
            claims
                .read("dedupe/r/d/k")
                .await
                .unwrap()
                .unwrap()
                .payload_id,
            "p3"
        );

        let missing = DedupeWindow::new(
            GcsObjects::new(&gcs::gcs_url(), GoogleAuth::anonymous(), "no-such-bucket").unwrap(),
            Duration::from_secs(600),
        );
        for payload in ["p1", "p2"] {
            assert_eq!(
                missing.claim("r", "d", b"{}", payload, 0).await,
                Claim::Deliver
            );
        }
    }

    /// `tapline` with `args` against the Pub/Sub double, off the runtime's threads.
    async fn tapline_on(pubsub: &PubSubDouble, args: &[&str]) -> tapline_tests::Run {
        let mut command = std::process::Command::new(tapline_tests::bin("tapline"));
        command
            .args(args)
            .env("PUBSUB_EMULATOR_HOST", &pubsub.host)
            .env_remove("TAPLINE_RELAY_CONFIG");
        tokio::task::spawn_blocking(move || command.output().expect("run tapline").into())
            .await
            .unwrap()
    }

    /// Dead letters on GCP, as the worker publishes them (two attempts each, on the dead-letter
    /// topic, read by its pull subscription as `infra/gcp` creates it): `tapline relay
    /// dead-letters --from-pubsub` lists them with every attempt and takes nothing away; `tapline
    /// relay replay --from-pubsub --to-topic --route --since` publishes back only what matches,
    /// without the failed round's record, acknowledges it, and leaves the rest (and a message
    /// that is not a relay delivery) on the subscription.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dead_letters_are_listed_and_replayed_from_pubsub() {
        let pubsub = PubSubDouble::start(PROJECT).await;
        let delivery_topic = pubsub.create_topic("d");
        let dead = pubsub.create_topic("dl");
        let subscription = pubsub.pull_subscription("dl-sub", &dead);
        let publisher = PubSubPublisher::new(
            &format!("http://{}", pubsub.host),
            GoogleAuth::anonymous(),
            dead.clone(),
        )
        .unwrap();
        const T0: i64 = 1_764_000_000_000; // 2025-11-24T16:00:00Z
        let letter = |payload: &str, route: &str, at: i64| {
            let mut message = delivery(payload, "crm", at, br#"{"targetId":1}"#);
            message
                .attributes
                .insert("tapline_route".into(), route.into());
            message
                .attributes
                .insert("tapline_dead_outcome".into(), "retryable".into());
            message
                .attributes
                .insert("tapline_dead_attempt".into(), "2".into());
            for (n, status) in [(1, 503), (2, 502)] {
                message.attributes.insert(
                    format!("tapline_attempt_{n}"),
                    json!({"attempt": n, "at_ms": at + n, "duration_ms": 3, "status": status,
                           "outcome": "retryable", "error": format!("HTTP {status}")})
                    .to_string(),
                );
            }
            message
        };
        let stray = OutgoingMessage {
            data: b"hello".to_vec(),
            attributes: [("CloudPubSubDeadLetterSourceDeliveryCount", "30")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        publisher
            .publish(&[
                letter("p-old", "alerts", T0 - 86_400_000),
                letter("p-new", "alerts", T0),
                letter("p-other", "billing", T0),
                stray,
            ])
            .await
            .unwrap();

        let list = tapline_on(
            &pubsub,
            &["relay", "dead-letters", "--from-pubsub", &subscription],
        )
        .await;
        assert_eq!(list.code, 0, "{}", list.stderr);
        assert!(
            list.stdout.contains(
                "p-new.crm  route=alerts destination=crm received=2025-11-24T16:00:00Z bytes=14"
            ),
            "{}",
            list.stdout
        );
        assert!(
            list.stdout
                .contains("attempt 2 at 2025-11-24T16:00:00.002Z: retryable HTTP 502 HTTP 502"),
            "{}",
            list.stdout
        );
        assert!(
            list.stdout
                .contains("3 dead letter(s) (0 left by the filter, 1 not relay deliveries)"),
            "{}",
            list.stdout
        );
        assert_eq!(
            pubsub.pull_state(&subscription),
            (4, 0, vec![]),
            "listing takes nothing"
        );

        let replay = tapline_on(
            &pubsub,
            &[
                "relay",
                "replay",
                "--from-pubsub",
                &subscription,
                "--to-topic",
                &delivery_topic,
                "--route",
                "alerts",
                "--since",
                "2025-11-24",
            ],
        )
        .await;
        assert_eq!(replay.code, 0, "{}", replay.stderr);
        assert!(
            replay.stdout.contains("1 dead letter(s) published back to projects/acme-analytics/topics/d (2 left by the filter, 1 not relay deliveries)"),
            "{}",
            replay.stdout
        );
        let back = pubsub.messages(&delivery_topic);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].data, br#"{"targetId":1}"#);
        let mut keys: Vec<&str> = back[0].attributes.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "tapline_delivery_id",
                "tapline_destination",
                "tapline_payload_id",
                "tapline_received_at_ms",
                "tapline_route"
            ]
        );
        assert_eq!(back[0].attributes["tapline_delivery_id"], "p-new.crm");
        let (available, outstanding, acked) = pubsub.pull_state(&subscription);
        assert_eq!((available, outstanding, acked.len()), (3, 0, 1));

        // Without --to-topic there is nothing to replay to: refused before anything is pulled.
        let refused = tapline_on(
            &pubsub,
            &["relay", "replay", "--from-pubsub", &subscription],
        )
        .await;
        assert_eq!(refused.code, 64, "a usage error: {}", refused.stderr);
        assert!(refused.stderr.contains("--to-topic"), "{}", refused.stderr);
        assert_eq!(pubsub.pull_state(&subscription).0, 3);
    }

    /// The double holds publishers to the documented request: bad base64, empty messages and
    /// unknown topics are refused, and nothing is stored.
    #[tokio::test]
    async fn the_pubsub_double_refuses_malformed_publishes() {
        let pubsub = PubSubDouble::start(PROJECT).await;
        let topic = pubsub.create_topic("t");
        let url = format!("http://{}/v1/{topic}:publish", pubsub.host);
        let client = reqwest::Client::new();
        for (body, expected) in [
            (json!({"messages": [{"data": "not base64!"}]}), 400),
            (json!({"messages": [{}]}), 400),
            (json!({"messages": []}), 400),
            (json!({"data": "aGk="}), 400),
            (json!({"messages": [{"attributes": {"k": "v"}}]}), 200),
        ] {
            let status = client.post(&url).json(&body).send().await.unwrap().status();
            assert_eq!(status.as_u16(), expected, "{body}");
        }
        assert_eq!(pubsub.messages(&topic).len(), 1);
        assert_eq!(pubsub.rejected().len(), 4);
        let unknown = format!(
            "http://{}/v1/projects/{PROJECT}/topics/nope:publish",
            pubsub.host
        );
        let status = client
            .post(&unknown)
            .json(&json!({"messages": [{"data": "aGk="}]}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 404);
    }
}
