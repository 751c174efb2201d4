//! Cloud event payloads (fixtures in the documented shapes) to the objects they announce.

use tapline::triggers::{
    CLOUDEVENT_FINALIZED, Invocation, Notice, ObjectRef, Store, TriggerError, from_cloudevent,
    from_lambda_payload,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn s3(key: &str, version: &str, size: Option<u64>, created_at: &str) -> Notice {
    Notice::Object(ObjectRef {
        store: Store::S3,
        bucket: "acme-clevertap-exports".into(),
        key: key.into(),
        version: Some(version.into()),
        size,
        created_at: Some(created_at.parse().unwrap()),
    })
}

fn direct(name: &str) -> Vec<Notice> {
    match from_lambda_payload(&fixture(name)).unwrap() {
        Invocation::Direct(notices) => notices,
        Invocation::Sqs(_) => panic!("{name} is not an SQS batch"),
    }
}

fn s3_notices() -> Vec<Notice> {
    vec![
        s3(
            "clevertap/events/2022-09-21/1663664837-1663785000-Order-Placed-20220921-0-0.csv.gz",
            "d41d8cd98f00b204e9800998ecf8427e",
            Some(1024),
            "2022-09-21T18:30:05.123Z",
        ),
        s3(
            "manual uploads/Order Placed+é-20220921.csv.gz",
            "4af981f98d22a0b9979da24b259e5e42-12",
            Some(104_857_600),
            "2022-09-21T18:30:06Z",
        ),
        Notice::Ignore("S3 event ObjectRemoved:Delete".into()),
    ]
}

#[test]
fn direct_s3_notification_decodes_keys_and_keeps_etags_as_versions() {
    assert_eq!(direct("s3_object_created.json"), s3_notices());
    let Notice::Object(first) = &s3_notices()[0] else {
        unreachable!()
    };
    assert_eq!(
        first.uri(),
        "s3://acme-clevertap-exports/clevertap/events/2022-09-21/1663664837-1663785000-Order-Placed-20220921-0-0.csv.gz"
    );
}

#[test]
fn s3_test_event_is_ignored() {
    assert_eq!(
        direct("s3_test_event.json"),
        vec![Notice::Ignore("s3:TestEvent".into())]
    );
}

#[test]
fn eventbridge_object_created_keeps_the_key_as_written() {
    assert_eq!(
        direct("eventbridge_object_created.json"),
        vec![s3(
            "clevertap/2022-09-21/1663664837-1663785000-App-Launched-20220921-1-0.csv.gz",
            "b1946ac92492d2347c6235b4d2611184",
            Some(5),
            "2022-09-21T18:30:05Z",
        )]
    );
}

#[test]
fn sqs_batch_reads_each_message_on_its_own() {
    let Invocation::Sqs(messages) = from_lambda_payload(&fixture("sqs_batch.json")).unwrap() else {
        panic!("an SQS batch");
    };
    let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "059f36b4-87a3-44ab-83d2-661975830a7d",
            "2e1424d4-f796-459a-8184-9c92662be6da",
            "3f2a4d1e-0000-4b6e-9c1d-5b0f2c9a1e01",
            "4a7c1e2b-1111-4c3d-8e2f-6a1b3c4d5e02",
            "5b8d2f3c-2222-4d4e-9f30-7b2c4d5e6f03"
        ]
    );
    assert_eq!(messages[0].notices.as_ref().unwrap(), &s3_notices());
    assert_eq!(
        messages[1].notices.as_ref().unwrap(),
        &vec![Notice::Ignore("s3:TestEvent".into())]
    );
    assert_eq!(
        messages[2].notices.as_ref().unwrap(),
        &direct("eventbridge_object_created.json")
    );
    assert_eq!(
        messages[3].notices.as_ref().unwrap(),
        &s3_notices(),
        "SNS envelope unwrapped"
    );
    assert!(
        matches!(messages[4].notices, Err(TriggerError::Json(_))),
        "a bad body fails alone"
    );
}

#[test]
fn gcs_cloudevent_structured_and_binary_modes() {
    let expected = vec![Notice::Object(ObjectRef {
        store: Store::Gcs,
        bucket: "acme-clevertap-exports".into(),
        key: "events/2022-09-21/1663664837-1663785000-Charged-20220921-0-0.csv.gz".into(),
        version: Some("1663785005461393".into()),
        size: Some(2048),
        created_at: Some("2022-09-21T18:30:05.461Z".parse().unwrap()),
    })];
    let structured = fixture("gcs_finalized_structured.json");
    let content_type = |name: &str| {
        (name == "content-type").then(|| "application/cloudevents+json; charset=utf-8".to_string())
    };
    assert_eq!(
        from_cloudevent(&content_type, &structured).unwrap(),
        expected
    );

    // Binary mode: the same data as the body, the attributes as ce-* headers.
    let event: serde_json::Value = serde_json::from_slice(&structured).unwrap();
    let body = serde_json::to_vec(&event["data"]).unwrap();
    let headers = |name: &str| match name {
        "content-type" => Some("application/json".to_string()),
        "ce-type" => Some(CLOUDEVENT_FINALIZED.to_string()),
        "ce-specversion" => Some("1.0".to_string()),
        "ce-id" => Some("8337412516346285".to_string()),
        _ => None,
    };
    assert_eq!(from_cloudevent(&headers, &body).unwrap(), expected);

    let deleted = |name: &str| {
        (name == "ce-type").then(|| "google.cloud.storage.object.v1.deleted".to_string())
    };
    assert_eq!(
        from_cloudevent(&deleted, &body).unwrap(),
        vec![Notice::Ignore(
            "CloudEvent google.cloud.storage.object.v1.deleted".into()
        )]
    );
    let none = |_: &str| None;
    assert_eq!(
        from_cloudevent(&none, &body).unwrap_err().to_string(),
        "not a recognised event: no ce-type header and not a structured CloudEvent"
    );
}

/// The Charged export the GCS fixtures announce.
fn charged_on_gcs() -> Vec<Notice> {
    vec![Notice::Object(ObjectRef {
        store: Store::Gcs,
        bucket: "acme-clevertap-exports".into(),
        key: "events/2022-09-21/1663664837-1663785000-Charged-20220921-0-0.csv.gz".into(),
        version: Some("1663785005461393".into()),
        size: Some(2048),
        created_at: Some("2022-09-21T18:30:05.461Z".parse().unwrap()),
    })]
}

fn binary_mode(name: &str) -> Option<String> {
    match name {
        "content-type" => Some("application/json".to_string()),
        "ce-type" => Some(CLOUDEVENT_FINALIZED.to_string()),
        _ => None,
    }
}

/// proto3 JSON allows an int64 as a number: Google's own StorageObjectData sample ("complex")
/// writes `generation`, `metageneration` and `size` that way.
#[test]
fn gcs_int64_fields_as_json_numbers_read_like_strings() {
    let numeric = fixture("gcs_finalized_numeric_int64.json");
    assert_eq!(
        from_cloudevent(&binary_mode, &numeric).unwrap(),
        charged_on_gcs()
    );
    // Structured mode around the same data.
    let event = serde_json::json!({
        "specversion": "1.0",
        "type": CLOUDEVENT_FINALIZED,
        "source": "//storage.googleapis.com/projects/_/buckets/acme-clevertap-exports",
        "id": "8337412516346285",
        "data": serde_json::from_slice::<serde_json::Value>(&numeric).unwrap(),
    });
    let structured =
        |name: &str| (name == "content-type").then(|| "application/cloudevents+json".to_string());
    assert_eq!(
        from_cloudevent(&structured, &serde_json::to_vec(&event).unwrap()).unwrap(),
        charged_on_gcs()
    );
}

#[test]
fn gcs_int64_fields_as_strings_read_as_eventarc_sends_them() {
    let event: serde_json::Value =
        serde_json::from_slice(&fixture("gcs_finalized_structured.json")).unwrap();
    assert_eq!(event["data"]["size"], "2048");
    let body = serde_json::to_vec(&event["data"]).unwrap();
    assert_eq!(
        from_cloudevent(&binary_mode, &body).unwrap(),
        charged_on_gcs()
    );
}

#[test]
fn a_gcs_size_that_is_no_int64_is_refused_as_json() {
    let mut data: serde_json::Value =
        serde_json::from_slice(&fixture("gcs_finalized_numeric_int64.json")).unwrap();
    for bad in [
        serde_json::json!(-1),
        serde_json::json!("2 KB"),
        serde_json::json!(1.5),
    ] {
        data["size"] = bad.clone();
        let err = from_cloudevent(&binary_mode, &serde_json::to_vec(&data).unwrap()).unwrap_err();
        assert!(matches!(err, TriggerError::Json(_)), "{bad}: {err}");
    }
}

/// S3 writes sizes as numbers; an S3-compatible store that writes the proto3 string form is
/// read the same, in the notification and in EventBridge's shape.
#[test]
fn s3_sizes_as_numbers_or_strings() {
    let mut notification: serde_json::Value =
        serde_json::from_slice(&fixture("s3_object_created.json")).unwrap();
    assert!(notification["Records"][0]["s3"]["object"]["size"].is_u64());
    assert_eq!(direct("s3_object_created.json"), s3_notices());
    for record in notification["Records"].as_array_mut().unwrap() {
        let object = &mut record["s3"]["object"];
        if let Some(size) = object.get("size").and_then(serde_json::Value::as_u64) {
            object["size"] = serde_json::Value::String(size.to_string());
        }
    }
    let Invocation::Direct(notices) =
        from_lambda_payload(&serde_json::to_vec(&notification).unwrap()).unwrap()
    else {
        panic!("not a direct invocation")
    };
    assert_eq!(notices, s3_notices());

    let mut bridge: serde_json::Value =
        serde_json::from_slice(&fixture("eventbridge_object_created.json")).unwrap();
    let size = bridge["detail"]["object"]["size"]
        .as_u64()
        .expect("a numeric size");
    let numeric = direct("eventbridge_object_created.json");
    bridge["detail"]["object"]["size"] = serde_json::Value::String(size.to_string());
    let Invocation::Direct(notices) =
        from_lambda_payload(&serde_json::to_vec(&bridge).unwrap()).unwrap()
    else {
        panic!("not a direct invocation")
    };
    assert_eq!(notices, numeric);
    let Notice::Object(object) = &notices[0] else {
        panic!("{notices:?}")
    };
    assert_eq!(object.size, Some(size));
}

/// The SQS event and its partial batch response are one pair of types for every SQS-fed
/// function (the export loader, the relay's worker): AWS's documented event reads into
/// [`SqsEvent`] with what the relay needs (receipt handle, receive count), and an event already
/// parsed by the runtime is read without being serialised again.
#[test]
fn the_sqs_event_and_its_partial_batch_response_are_read_once() {
    use tapline::triggers::{BatchItemFailures, SqsEvent, from_lambda_event};

    let value: serde_json::Value = serde_json::from_slice(&fixture("sqs_batch.json")).unwrap();
    assert!(SqsEvent::is_sqs_event(&value));
    let event: SqsEvent = serde_json::from_value(value.clone()).unwrap();
    let first = &event.records[0];
    assert_eq!(first.message_id, "059f36b4-87a3-44ab-83d2-661975830a7d");
    assert!(first.receipt_handle.starts_with("AQEB"), "{first:?}");
    assert_eq!(first.attributes["ApproximateReceiveCount"], "1");

    let Invocation::Sqs(messages) = from_lambda_event(value).unwrap() else {
        panic!("an SQS batch");
    };
    assert_eq!(messages.len(), event.records.len());
    assert_eq!(messages[0].notices.as_ref().unwrap(), &s3_notices());
    // An S3 notification has `Records` too, but is not an SQS event.
    let s3: serde_json::Value = serde_json::from_slice(&fixture("s3_object_created.json")).unwrap();
    assert!(!SqsEvent::is_sqs_event(&s3));
    assert!(matches!(from_lambda_event(s3), Ok(Invocation::Direct(_))));

    let failed = BatchItemFailures::of(messages.iter().skip(3).map(|m| m.message_id.clone()));
    assert_eq!(
        failed.to_json(),
        serde_json::json!({"batchItemFailures": [
            {"itemIdentifier": "4a7c1e2b-1111-4c3d-8e2f-6a1b3c4d5e02"},
            {"itemIdentifier": "5b8d2f3c-2222-4d4e-9f30-7b2c4d5e6f03"}
        ]})
    );
}
