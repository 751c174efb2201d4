//! S3 set-up for tests against moto (started by `tests/scripts/with-moto.sh`, which `make test`
//! uses): a client, buckets, objects, and S3 event notifications in the documented shape.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

/// The moto server's URL.
pub fn moto() -> String {
    std::env::var("TAPLINE_TEST_MOTO_URL").unwrap_or_else(|_| {
        panic!("TAPLINE_TEST_MOTO_URL is not set: run `make test` or tests/scripts/with-moto.sh")
    })
}

/// An S3 client for moto (path-style, test credentials from the environment).
pub async fn client() -> Client {
    let endpoint = moto();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build(),
    )
}

/// A fresh bucket holding one gzip CSV export of `rows` rows of `event` at `key`; returns the
/// bucket and the object's ETag.
pub async fn bucket_with_export(
    s3: &Client,
    name: &str,
    key: &str,
    event: &str,
    rows: usize,
) -> (String, String) {
    let bucket = new_bucket(s3, name).await;
    let body = crate::gzip(crate::export_csv(event, rows).as_bytes());
    put(s3, &bucket, key, body).await;
    let tag = etag(s3, &bucket, key).await;
    (bucket, tag)
}

/// Creates a Secrets Manager secret on moto; returns its ARN.
pub async fn create_secret(name: &str, value: &str) -> String {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let created = aws_sdk_secretsmanager::Client::new(&shared)
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("create secret");
    created.arn().unwrap().to_string()
}

/// Uploads `body` as `bucket/key`.
pub async fn put(client: &Client, bucket: &str, key: &str, body: Vec<u8>) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .expect("put object");
}

/// A fresh bucket named for this test process.
pub async fn new_bucket(s3: &Client, name: &str) -> String {
    let bucket = format!("tapline-{name}-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    bucket
}

/// The object's ETag as the ledger records it (no quotes).
pub async fn etag(s3: &Client, bucket: &str, key: &str) -> String {
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    head.e_tag().unwrap().trim_matches('"').to_string()
}

/// An S3 notification body for one object, from the documented example.
pub fn notification(bucket: &str, key: &str, etag: &str) -> String {
    let path = format!(
        "{}/fixtures/events/s3_object_created.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut event: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut record = event["Records"][0].take();
    record["s3"]["bucket"]["name"] = bucket.into();
    record["s3"]["object"]["key"] = key.replace(' ', "+").into();
    record["s3"]["object"]["eTag"] = etag.into();
    serde_json::json!({ "Records": [record] }).to_string()
}
