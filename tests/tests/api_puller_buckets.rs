//! `tapline pull events --output … --output-dir s3://…|gs://…`: the day files go to a bucket
//! (moto for S3, fake-gcs-server for GCS) only when complete; the pages are staged locally, so
//! a killed pull leaves nothing in the bucket and resumes from its staged pages.

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use serde_json::Value;
use tapline_tests::doubles::clevertap_api::event_records;
use tapline_tests::pull_case::{Args, PullCase, assert_says};
use tapline_tests::servers::gcs::gcs_url;
use tapline_tests::sqlite_value;

const DAY1: i64 = 20220922;

/// A case whose double has 50 Charged records on 2022-09-22, and whose runs have their own
/// temporary folder (`TMPDIR`) and reach fake-gcs-server.
async fn new_case() -> PullCase {
    let case = PullCase::sqlite().await;
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 50));
    std::fs::create_dir_all(tmp(&case)).unwrap();
    let tmp = tmp(&case).display().to_string();
    case.with_env("TMPDIR", &tmp)
        .with_env("STORAGE_EMULATOR_HOST", &gcs_url())
}

/// The process's temporary folder: the staging folder lives under it.
fn tmp(case: &PullCase) -> PathBuf {
    case.dir.path().join("tmp")
}

/// The user's private staging folder (`tapline-output-UID`, UID the test's own user).
fn staging(case: &PullCase) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(tmp(case)).unwrap().uid();
    tmp(case).join(format!("tapline-output-{uid}"))
}

/// Charged on 2022-09-22 written as `format` files to `out`.
fn day_files(case: &PullCase, format: &str, out: &str) -> Args {
    case.events_day("Charged")
        .arg(&["--output", format, "--output-dir", out])
}

/// `rows/distinct rows` in the Charged table.
fn rows(case: &PullCase) -> String {
    sqlite_value(
        &case.db,
        "SELECT count(*) || '/' || count(DISTINCT ts || profile_identity) FROM charged",
    )
    .unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

async fn s3_keys(s3: &Client, bucket: &str) -> Vec<String> {
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

async fn s3_text(s3: &Client, bucket: &str, key: &str) -> String {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    String::from_utf8(object.body.collect().await.unwrap().to_vec()).unwrap()
}

async fn gcs_names(bucket: &str) -> Vec<String> {
    let listed: Value = reqwest::get(format!("{}/storage/v1/b/{bucket}/o", gcs_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listed["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn gcs_text(bucket: &str, name: &str) -> String {
    let name = name.replace('/', "%2F");
    let response = reqwest::get(format!(
        "{}/storage/v1/b/{bucket}/o/{name}?alt=media",
        gcs_url()
    ))
    .await
    .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.text().await.unwrap()
}

/// S3, JSONL: a pull killed at page 2 leaves nothing in the bucket (two pages staged); the
/// resumed pull uploads the whole day once, exactly as the API returned it, and clears the
/// staging folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_file_reaches_s3_only_whole_and_survives_a_kill() {
    let case = new_case().await;
    let s3 = tapline_tests::servers::s3::client().await;
    let bucket = tapline_tests::servers::s3::new_bucket(&s3, "pull-out").await;
    let args = day_files(&case, "jsonl", &format!("s3://{bucket}/api/"));

    case.run_killed_at_page(&args, "Charged", 2).await;
    assert_eq!(
        s3_keys(&s3, &bucket).await,
        Vec::<String>::new(),
        "no partial file"
    );
    let staged = files_under(&staging(&case));
    assert_eq!(staged.len(), 2, "pages 0 and 1 staged: {staged:?}");
    assert_eq!(rows(&case), "20/20");

    let stdout = case.run_ok(&args).await;
    assert_says(
        &stdout,
        "Resumed Charged 2022-09-22 from its checkpoint at page 2.",
    );
    assert_eq!(
        s3_keys(&s3, &bucket).await,
        ["api/Charged/2022-09-22.jsonl"]
    );
    let lines: Vec<Value> = s3_text(&s3, &bucket, "api/Charged/2022-09-22.jsonl")
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        event_records(DAY1, 50),
        "every record once, in order"
    );
    assert_eq!(files_under(&staging(&case)), Vec::<PathBuf>::new());
    assert_eq!(rows(&case), "50/50");
}

/// GCS, CSV, and a staging folder lost between the kill and the resume: the day is pulled
/// again from its first page (said so), so the file is still whole and the table not doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_staging_folder_pulls_the_day_again_and_gcs_gets_a_whole_file() {
    let case = new_case().await;
    let bucket = tapline_tests::servers::gcs::new_bucket("pull-out").await;
    let args = day_files(&case, "csv", &format!("gs://{bucket}/api"));

    case.run_killed_at_page(&args, "Charged", 2).await;
    assert_eq!(
        gcs_names(&bucket).await,
        Vec::<String>::new(),
        "no partial file"
    );
    std::fs::remove_dir_all(staging(&case)).unwrap();

    let stdout = case.run_ok(&args).await;
    assert_says(
        &stdout,
        "The --output parts of the interrupted pull of Charged 2022-09-22 were missing: the day was pulled again from its first page.",
    );
    assert_eq!(gcs_names(&bucket).await, ["api/Charged/2022-09-22.csv"]);
    let text = gcs_text(&bucket, "api/Charged/2022-09-22.csv").await;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let identity = header.iter().position(|h| h == "profile.identity").unwrap();
    let identities: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[identity].to_string())
        .collect();
    assert_eq!(
        identities,
        (0..50).map(|i| format!("u{i}")).collect::<Vec<_>>()
    );
    assert_eq!(rows(&case), "50/50");
    assert_eq!(files_under(&staging(&case)), Vec::<PathBuf>::new());
}

/// `$TMPDIR` is shared: a link planted where the staging folder would be is refused with a
/// clear error before anything is pulled, and its target is left untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_staging_link_is_refused_and_its_target_untouched() {
    let case = new_case().await;
    let victim = case.dir.path().join("victim");
    std::fs::create_dir_all(victim.join("s3___tapline-never-created_api/Charged")).unwrap();
    let precious = victim.join("s3___tapline-never-created_api/Charged/2022-09-22.jsonl");
    std::fs::write(&precious, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, staging(&case)).unwrap();

    let run = case
        .run(&day_files(
            &case,
            "jsonl",
            "s3://tapline-never-created/api/",
        ))
        .await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stderr.trim_end(),
        format!(
            "error: staging folder {} is a symbolic link: refusing to stage there (remove it, \
             or set TMPDIR to a folder of your own)",
            staging(&case).display()
        )
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious\n");
    assert_eq!(files_under(&victim), [precious]);
    assert!(case.api.seen().is_empty(), "nothing was asked of CleverTap");
}
