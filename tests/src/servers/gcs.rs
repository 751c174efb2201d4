//! A GCS JSON API client for test set-up against fake-gcs-server (started by
//! `tests/scripts/with-fake-gcs.sh`, which `make test` uses): buckets, uploads, deletes.

/// The emulator's URL.
pub fn gcs_url() -> String {
    std::env::var("TAPLINE_TEST_GCS_URL").unwrap_or_else(|_| {
        panic!("TAPLINE_TEST_GCS_URL is not set: run `make test` or tests/scripts/with-fake-gcs.sh")
    })
}

/// A fresh bucket named for this test process (GCS names: lowercase, 3–63 characters).
pub async fn new_bucket(name: &str) -> String {
    let bucket = format!("tapline-{name}-{}", std::process::id());
    let response = reqwest::Client::new()
        .post(format!("{}/storage/v1/b", gcs_url()))
        .query(&[("project", "test")])
        .json(&serde_json::json!({ "name": bucket }))
        .send()
        .await
        .expect("create bucket");
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    bucket
}

/// Uploads `body` as `key`; returns the new generation.
pub async fn put(bucket: &str, key: &str, body: Vec<u8>) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/upload/storage/v1/b/{bucket}/o", gcs_url()))
        .query(&[("uploadType", "media"), ("name", key)])
        .header("content-type", "application/gzip")
        .body(body)
        .send()
        .await
        .expect("upload");
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    let object: serde_json::Value = response.json().await.unwrap();
    object["generation"].as_str().unwrap().to_string()
}

/// Deletes `key`.
pub async fn delete(bucket: &str, key: &str) {
    let key = key.replace('/', "%2F");
    let response = reqwest::Client::new()
        .delete(format!("{}/storage/v1/b/{bucket}/o/{key}", gcs_url()))
        .send()
        .await
        .expect("delete");
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
}
