//! The BigQuery REST v2 subset Tapline calls, over `reqwest`: datasets.get/insert, tables.list/get/
//! insert/patch/update/delete, jobs.insert (multipart media upload and query jobs), jobs.get
//! and jobs.query. Every call carries the token from [`GoogleAuth`] (none against an
//! emulator) and retries what BigQuery documents as transient: HTTP 5xx, 429, and 403 with
//! reason `rateLimitExceeded` or `backendError`, with exponential backoff and jitter.

use std::time::Duration;

use serde_json::{Value, json};

use crate::google_auth::GoogleAuth;
use crate::retry::{Jitter, RetryPolicy};

/// The production endpoint.
pub const PRODUCTION_ENDPOINT: &str = "https://bigquery.googleapis.com";
/// Tries of one request before its error is reported (the caller may retry the whole file); the
/// first backoff 250 ms, doubled after each try, with up to 50% jitter.
const RETRY: RetryPolicy = RetryPolicy::exponential(
    5,
    Duration::from_millis(250),
    Duration::MAX,
    Jitter::up_to(0.5),
);
/// How long a job may stay PENDING/RUNNING before the load gives up (retryable).
const JOB_DEADLINE: Duration = Duration::from_secs(600);

/// A BigQuery call that failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// BigQuery answered with an error.
    #[error("BigQuery {operation} answered HTTP {status} ({reason}): {message}")]
    Http {
        /// What was called.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// The first error's `reason` (`notFound`, `duplicate`, `quotaExceeded`, …).
        reason: String,
        /// BigQuery's message.
        message: String,
    },
    /// A job finished with `status.errorResult`.
    #[error("BigQuery job {job_id} failed ({reason}): {message}{}", details(.errors))]
    Job {
        /// The job.
        job_id: String,
        /// `errorResult.reason`.
        reason: String,
        /// `errorResult.message`.
        message: String,
        /// Every `status.errors[].message`, row errors included (first 20).
        errors: Vec<String>,
    },
    /// A job did not finish in time.
    #[error("BigQuery job {job_id} was still {state} after {seconds} s")]
    Deadline {
        /// The job.
        job_id: String,
        /// Its last state.
        state: String,
        /// How long we waited.
        seconds: u64,
    },
    /// The request never got an answer (connection, DNS, timeout).
    #[error("BigQuery {operation} request failed")]
    Transport {
        /// What was called.
        operation: &'static str,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// No token could be had.
    #[error(
        "no Google credentials for BigQuery: looked for GOOGLE_APPLICATION_CREDENTIALS, gcloud's \
         application-default credentials and the metadata server (set BIGQUERY_ENDPOINT without \
         credentials to use an emulator)"
    )]
    Credentials(#[source] crate::google_auth::CredentialsError),
    /// An answer we cannot read.
    #[error("BigQuery {operation} answered something unexpected: {detail}")]
    Protocol {
        /// What was called.
        operation: &'static str,
        /// What was wrong.
        detail: String,
    },
}

fn details(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!("; errors: {}", errors.join(" | "))
    }
}

/// Reasons BigQuery documents as "retry with backoff".
fn transient_reason(reason: &str) -> bool {
    matches!(
        reason,
        "backendError"
            | "rateLimitExceeded"
            | "internalError"
            | "jobBackendError"
            | "jobInternalError"
            | "quotaExceeded"
            | "resourcesExceeded"
    )
}

impl ApiError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Http { status, reason, .. } => {
                *status >= 500 || *status == 429 || transient_reason(reason)
            }
            ApiError::Job { reason, .. } => transient_reason(reason),
            ApiError::Deadline { .. } | ApiError::Transport { .. } => true,
            ApiError::Credentials(e) => e.is_transient(),
            ApiError::Protocol { .. } => false,
        }
    }

    /// Whether BigQuery said "this already exists" (a job id or a table).
    pub fn is_duplicate(&self) -> bool {
        matches!(self, ApiError::Http { status: 409, .. })
    }

    /// Whether BigQuery said "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Http { status: 404, .. })
    }

    /// Whether retrying right away (inside one call) is worth it: not for daily quotas.
    fn retry_now(&self) -> bool {
        match self {
            ApiError::Http { reason, .. } if reason == "quotaExceeded" => false,
            ApiError::Credentials(_) | ApiError::Deadline { .. } => false,
            other => other.is_retryable(),
        }
    }
}

/// An answer: status, headers and JSON body (`null` when empty).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

/// Waits before the next try, after `attempt` failed ones: [`RETRY`]'s backoff.
async fn pause(operation: &str, attempt: u32, error: &ApiError) {
    tracing::warn!(operation, attempt, error = %error, "BigQuery call failed; retrying.");
    tokio::time::sleep(RETRY.delay(attempt, None)).await;
}

/// Resumable upload chunks: a multiple of 256 KiB, as the upload protocol requires.
pub const RESUMABLE_CHUNK: u64 = 8 * 1024 * 1024;

/// A finished job's outcome.
#[derive(Debug)]
pub struct JobStatus {
    /// `jobReference.jobId`.
    pub job_id: String,
    /// `configuration.labels`.
    pub labels: serde_json::Map<String, Value>,
    /// The error, when the job failed.
    pub error: Option<ApiError>,
}

/// The data of an upload, streamed afresh for every try.
pub type UploadBody = Box<
    dyn Fn() -> futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>
        + Send
        + Sync,
>;

/// The REST client for one project.
pub struct Api {
    http: reqwest::Client,
    endpoint: String,
    auth: GoogleAuth,
    /// The project jobs run in and tables live in.
    pub project: String,
    /// The location jobs run in (`US`, `EU`, `asia-south1`), when configured.
    pub location: Option<String>,
}

impl Api {
    /// A client for `project` at `endpoint` (`https://bigquery.googleapis.com` or a double).
    pub fn new(
        endpoint: &str,
        auth: GoogleAuth,
        project: &str,
        location: Option<String>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            auth,
            project: project.to_string(),
            location,
        })
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/bigquery/v2/projects/{}/{path}",
            self.endpoint, self.project
        )
    }

    /// Sends a request built by `build` (called again for each try), with auth and retries;
    /// returns the JSON answer (`null` for an empty body).
    async fn send(
        &self,
        operation: &'static str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Value, ApiError> {
        self.send_raw(operation, build).await.map(|a| a.body)
    }

    /// [`Self::send`], keeping the status and headers (a resumable session's `Location`).
    async fn send_raw(
        &self,
        operation: &'static str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Answer, ApiError> {
        let mut attempt = 1;
        loop {
            let result = self.send_once(operation, build(&self.http)).await;
            match result {
                Err(e) if RETRY.may_retry(attempt) && e.retry_now() => {
                    pause(operation, attempt, &e).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One request: 2xx and 308 (resumable upload "incomplete") are answers, the rest errors.
    async fn send_once(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, ApiError> {
        let headers = self.auth.headers().await.map_err(ApiError::Credentials)?;
        let response = request
            .headers(headers)
            .send()
            .await
            .map_err(|source| ApiError::Transport { operation, source })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|source| ApiError::Transport { operation, source })?;
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }))
        };
        if (200..300).contains(&status) || status == 308 {
            return Ok(Answer {
                status,
                headers,
                body,
            });
        }
        let error = &body["error"];
        let reason = error["errors"][0]["reason"]
            .as_str()
            .or_else(|| error["status"].as_str())
            .unwrap_or("unknown")
            .to_string();
        let message = error["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(300).collect());
        Err(ApiError::Http {
            operation,
            status,
            reason,
            message,
        })
    }

    /// datasets.get: fails with 404 when the dataset does not exist.
    pub async fn get_dataset(&self, dataset: &str) -> Result<Value, ApiError> {
        let url = self.url(&format!("datasets/{dataset}"));
        self.send("datasets.get", |c| c.get(&url)).await
    }

    /// datasets.insert: a dataset in `location` (BigQuery's default, `US`, when `None`) with
    /// `labels`.
    pub async fn insert_dataset(
        &self,
        dataset: &str,
        location: Option<&str>,
        labels: &Value,
    ) -> Result<Value, ApiError> {
        let url = self.url("datasets");
        let mut body = json!({
            "datasetReference": { "projectId": self.project, "datasetId": dataset },
            "labels": labels,
        });
        if let Some(location) = location {
            body["location"] = json!(location);
        }
        self.send("datasets.insert", |c| c.post(&url).json(&body))
            .await
    }

    /// tables.list, every page: `(tableId, friendlyName, labels)` of each table and view.
    pub async fn list_tables(&self, dataset: &str) -> Result<Vec<Value>, ApiError> {
        let url = self.url(&format!("datasets/{dataset}/tables"));
        let mut tables = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .send("tables.list", |c| {
                    let mut r = c.get(&url).query(&[("maxResults", "1000")]);
                    if let Some(t) = &token {
                        r = r.query(&[("pageToken", t)]);
                    }
                    r
                })
                .await?;
            if let Some(items) = page["tables"].as_array() {
                tables.extend(items.iter().cloned());
            }
            match page["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(tables),
            }
        }
    }

    /// tables.get.
    pub async fn get_table(&self, dataset: &str, table: &str) -> Result<Value, ApiError> {
        let url = self.url(&format!("datasets/{dataset}/tables/{table}"));
        self.send("tables.get", |c| c.get(&url)).await
    }

    /// tables.insert.
    pub async fn insert_table(&self, dataset: &str, table: &Value) -> Result<Value, ApiError> {
        let url = self.url(&format!("datasets/{dataset}/tables"));
        self.send("tables.insert", |c| c.post(&url).json(table))
            .await
    }

    /// tables.patch (only the fields given change; a schema must list every existing field).
    pub async fn patch_table(
        &self,
        dataset: &str,
        table: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let url = self.url(&format!("datasets/{dataset}/tables/{table}"));
        self.send("tables.patch", |c| c.patch(&url).json(patch))
            .await
    }

    /// tables.update (replaces the resource: used for views).
    pub async fn update_table(
        &self,
        dataset: &str,
        table: &str,
        resource: &Value,
    ) -> Result<Value, ApiError> {
        let url = self.url(&format!("datasets/{dataset}/tables/{table}"));
        self.send("tables.update", |c| c.put(&url).json(resource))
            .await
    }

    /// tables.delete; a table already gone is fine.
    pub async fn delete_table(&self, dataset: &str, table: &str) -> Result<(), ApiError> {
        let url = self.url(&format!("datasets/{dataset}/tables/{table}"));
        match self.send("tables.delete", |c| c.delete(&url)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn job_reference(&self, job_id: &str) -> Value {
        let mut reference = json!({ "projectId": self.project, "jobId": job_id });
        if let Some(location) = &self.location {
            reference["location"] = json!(location);
        }
        reference
    }

    /// jobs.insert with a multipart media upload: `configuration` is the job's `configuration`
    /// (with `load`); `body` yields the data (NDJSON) for each try.
    pub async fn insert_upload_job(
        &self,
        job_id: &str,
        configuration: Value,
        body: &UploadBody,
    ) -> Result<Value, ApiError> {
        let metadata = json!({
            "jobReference": self.job_reference(job_id),
            "configuration": configuration,
        });
        let boundary = format!("tapline-{}", uuid::Uuid::new_v4().simple());
        let head = format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n\
             --{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let url = format!(
            "{}/upload/bigquery/v2/projects/{}/jobs",
            self.endpoint, self.project
        );
        let content_type = format!("multipart/related; boundary={boundary}");
        self.send("jobs.insert (upload)", |c| {
            let data = body();
            let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(
                head.clone(),
            ))])
            .chain(data)
            .chain(futures_util::stream::iter([Ok(bytes::Bytes::from(
                tail.clone(),
            ))]));
            c.post(&url)
                .query(&[("uploadType", "multipart")])
                .header(reqwest::header::CONTENT_TYPE, &content_type)
                .body(reqwest::Body::wrap_stream(stream))
        })
        .await
    }

    /// jobs.insert with a resumable media upload of the file at `path` (`size` bytes): a
    /// session is opened with the job's metadata, then the data goes in chunks of
    /// [`RESUMABLE_CHUNK`]; a chunk that fails is resumed from what the server says it has.
    pub async fn insert_resumable_job(
        &self,
        job_id: &str,
        configuration: Value,
        path: &std::path::Path,
        size: u64,
    ) -> Result<Value, ApiError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let operation = "jobs.insert (resumable upload)";
        let metadata = json!({
            "jobReference": self.job_reference(job_id),
            "configuration": configuration,
        });
        let url = format!(
            "{}/upload/bigquery/v2/projects/{}/jobs",
            self.endpoint, self.project
        );
        let session = self
            .send_raw(operation, |c| {
                c.post(&url)
                    .query(&[("uploadType", "resumable")])
                    .header("X-Upload-Content-Type", "application/octet-stream")
                    .header("X-Upload-Content-Length", size.to_string())
                    .json(&metadata)
            })
            .await?;
        let session = session
            .headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::Protocol {
                operation,
                detail: "no Location header for the upload session".into(),
            })?
            .to_string();
        let io = |e: std::io::Error| ApiError::Protocol {
            operation,
            detail: format!("reading the staged rows: {e}"),
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut offset = 0u64;
        let mut failures = 1;
        loop {
            let end = (offset + RESUMABLE_CHUNK).min(size);
            let mut chunk = vec![0u8; (end - offset) as usize];
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(io)?;
            file.read_exact(&mut chunk).await.map_err(io)?;
            let range = format!("bytes {offset}-{}/{size}", end - 1);
            let sent = self
                .send_once(
                    operation,
                    self.http
                        .put(&session)
                        .header(reqwest::header::CONTENT_RANGE, range)
                        .body(chunk),
                )
                .await;
            let answer = match sent {
                Ok(answer) => answer,
                Err(e) if RETRY.may_retry(failures) && e.retry_now() => {
                    pause(operation, failures, &e).await;
                    failures += 1;
                    // Ask what arrived: `bytes */size` with no body.
                    self.send_raw(operation, |c| {
                        c.put(&session)
                            .header(reqwest::header::CONTENT_RANGE, format!("bytes */{size}"))
                            .header(reqwest::header::CONTENT_LENGTH, "0")
                    })
                    .await?
                }
                Err(e) => return Err(e),
            };
            if answer.status != 308 {
                return Ok(answer.body);
            }
            // "Range: bytes=0-N": the server has N + 1 bytes; no Range: nothing yet.
            offset = answer
                .headers
                .get(reqwest::header::RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.rsplit('-').next())
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(0, |n| n + 1);
        }
    }

    /// jobs.insert of a query job (DML or a script) with named parameters.
    pub async fn insert_query_job(
        &self,
        job_id: &str,
        dataset: &str,
        sql: &str,
        params: &[(&str, Param)],
        labels: Value,
    ) -> Result<Value, ApiError> {
        let body = json!({
            "jobReference": self.job_reference(job_id),
            "configuration": {
                "labels": labels,
                "query": {
                    "query": sql,
                    "useLegacySql": false,
                    "parameterMode": "NAMED",
                    "queryParameters": query_parameters(params),
                    "defaultDataset": { "projectId": self.project, "datasetId": dataset },
                },
            },
        });
        let url = self.url("jobs");
        self.send("jobs.insert (query)", |c| c.post(&url).json(&body))
            .await
    }

    /// The statement type BigQuery gives `sql` (`SELECT`, `INSERT`, `SCRIPT`, `CREATE_TABLE`, …),
    /// from a dry-run query job: nothing runs and nothing is billed ("dryRun: If set, don't
    /// actually run this job", REST reference, `JobConfiguration`); the answer's
    /// `statistics.query.statementType` is documented on `JobStatistics2`. An invalid query is
    /// BigQuery's error; an answer without a type is a protocol error, never "read-only".
    pub async fn statement_type(&self, dataset: &str, sql: &str) -> Result<String, ApiError> {
        let mut body = json!({
            "configuration": {
                "dryRun": true,
                "query": {
                    "query": sql,
                    "useLegacySql": false,
                    "defaultDataset": { "projectId": self.project, "datasetId": dataset },
                },
            },
        });
        if let Some(location) = &self.location {
            body["jobReference"] = json!({ "projectId": self.project, "location": location });
        }
        let url = self.url("jobs");
        let operation = "jobs.insert (dry run)";
        let job = self.send(operation, |c| c.post(&url).json(&body)).await?;
        job["statistics"]["query"]["statementType"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ApiError::Protocol {
                operation,
                detail: "a dry run answered without statistics.query.statementType".into(),
            })
    }

    /// jobs.get.
    pub async fn get_job(&self, job_id: &str) -> Result<Value, ApiError> {
        let url = self.url(&format!("jobs/{job_id}"));
        self.send("jobs.get", |c| {
            let r = c.get(&url);
            match &self.location {
                Some(l) => r.query(&[("location", l)]),
                None => r,
            }
        })
        .await
    }

    /// Polls jobs.get until the job is DONE, starting from `job` (a jobs.insert or jobs.get
    /// answer).
    pub async fn wait_for_job(&self, mut job: Value) -> Result<JobStatus, ApiError> {
        let job_id = job["jobReference"]["jobId"]
            .as_str()
            .ok_or_else(|| ApiError::Protocol {
                operation: "jobs.get",
                detail: "no jobReference.jobId".into(),
            })?
            .to_string();
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let state = job["status"]["state"].as_str().unwrap_or("").to_string();
            if state == "DONE" {
                return Ok(job_status(&job_id, &job));
            }
            if started.elapsed() > JOB_DEADLINE {
                return Err(ApiError::Deadline {
                    job_id,
                    state,
                    seconds: JOB_DEADLINE.as_secs(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            job = self.get_job(&job_id).await?;
        }
    }

    /// jobs.query (read-only SQL), every page: the schema's fields and the rows as text.
    /// Fails closed: any answer that is not a clean, complete result (one carrying `errors`,
    /// a finished job without a schema, rows that do not match it, fewer rows than
    /// `totalRows`) is an error, never "no rows", since the ledger check reads through here
    /// and "no rows" there means "load it (again)".
    pub async fn query(
        &self,
        dataset: &str,
        sql: &str,
        params: &[(&str, Param)],
    ) -> Result<(Vec<Value>, Vec<Vec<Option<String>>>), ApiError> {
        let mut body = json!({
            "query": sql,
            "useLegacySql": false,
            "parameterMode": "NAMED",
            "queryParameters": query_parameters(params),
            "defaultDataset": { "projectId": self.project, "datasetId": dataset },
            "timeoutMs": 30_000,
            // TIMESTAMPs as int64 microseconds: the default float seconds lose precision.
            "formatOptions": { "useInt64Timestamp": true },
        });
        if let Some(location) = &self.location {
            body["location"] = json!(location);
        }
        let url = self.url("queries");
        let mut operation = "jobs.query";
        let mut page = self.send(operation, |c| c.post(&url).json(&body)).await?;
        let started = tokio::time::Instant::now();
        let mut rows = Vec::new();
        let mut fields: Option<Vec<Value>> = None;
        loop {
            check_errors(operation, &page)?;
            match page["jobComplete"].as_bool() {
                Some(false) => {
                    if started.elapsed() > JOB_DEADLINE {
                        return Err(ApiError::Deadline {
                            job_id: page["jobReference"]["jobId"].as_str().unwrap_or("").into(),
                            state: "RUNNING".into(),
                            seconds: JOB_DEADLINE.as_secs(),
                        });
                    }
                    operation = "jobs.getQueryResults";
                    page = self.query_results(&page, None).await?;
                    continue;
                }
                Some(true) => {}
                None => {
                    return Err(ApiError::Protocol {
                        operation,
                        detail: "the answer says neither jobComplete true nor false".into(),
                    });
                }
            }
            let page_fields =
                page["schema"]["fields"]
                    .as_array()
                    .ok_or_else(|| ApiError::Protocol {
                        operation,
                        detail: "a complete query answered without a schema".into(),
                    })?;
            let fields = fields.get_or_insert_with(|| page_fields.clone());
            match &page["rows"] {
                Value::Null => {}
                Value::Array(page_rows) => {
                    for row in page_rows {
                        rows.push(row_values(operation, fields, row)?);
                    }
                }
                _ => {
                    return Err(ApiError::Protocol {
                        operation,
                        detail: "rows is not an array".into(),
                    });
                }
            }
            match page["pageToken"].as_str() {
                Some(token) => {
                    operation = "jobs.getQueryResults";
                    page = self.query_results(&page, Some(token)).await?;
                }
                None => {
                    let total = page["totalRows"].as_str().map(str::parse::<u64>);
                    if let Some(total) = total {
                        match total {
                            Ok(total) if total == rows.len() as u64 => {}
                            _ => {
                                return Err(ApiError::Protocol {
                                    operation,
                                    detail: format!(
                                        "totalRows says {} but {} rows came",
                                        page["totalRows"],
                                        rows.len()
                                    ),
                                });
                            }
                        }
                    }
                    return Ok((fields.clone(), rows));
                }
            }
        }
    }

    async fn query_results(&self, page: &Value, token: Option<&str>) -> Result<Value, ApiError> {
        let job_id = page["jobReference"]["jobId"]
            .as_str()
            .ok_or_else(|| ApiError::Protocol {
                operation: "jobs.getQueryResults",
                detail: "no jobReference.jobId".into(),
            })?;
        let url = self.url(&format!("queries/{job_id}"));
        self.send("jobs.getQueryResults", |c| {
            let mut r = c.get(&url).query(&[
                ("timeoutMs", "10000"),
                ("formatOptions.useInt64Timestamp", "true"),
            ]);
            if let Some(t) = token {
                r = r.query(&[("pageToken", t)]);
            }
            if let Some(l) = &self.location {
                r = r.query(&[("location", l)]);
            }
            r
        })
        .await
    }
}

/// A query answer that carries `errors` (or a finished job's `errorResult`) is a failed query,
/// whatever else it holds.
fn check_errors(operation: &'static str, page: &Value) -> Result<(), ApiError> {
    let errors: Vec<String> = page["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .take(20)
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect();
    let first = page["errors"]
        .as_array()
        .and_then(|a| a.first())
        .or_else(|| page["status"].get("errorResult").filter(|e| !e.is_null()));
    match first {
        Some(first) => Err(ApiError::Job {
            job_id: page["jobReference"]["jobId"]
                .as_str()
                .unwrap_or(operation)
                .to_string(),
            reason: first["reason"].as_str().unwrap_or("unknown").to_string(),
            message: first["message"].as_str().unwrap_or("").to_string(),
            errors,
        }),
        None if !page["errors"].is_null() && !page["errors"].is_array() => {
            Err(ApiError::Protocol {
                operation,
                detail: "errors is not an array".into(),
            })
        }
        None => Ok(()),
    }
}

/// A named query parameter's value.
#[derive(Debug, Clone)]
pub enum Param {
    /// `STRING`.
    Str(String),
    /// `INT64`.
    Int(i64),
    /// `TIMESTAMP` (UTC ISO-8601 text).
    Timestamp(String),
    /// A typed NULL (`STRING`).
    NullStr,
    /// A typed NULL (`TIMESTAMP`): a STRING NULL does not go into a TIMESTAMP column.
    NullTimestamp,
}

fn query_parameters(params: &[(&str, Param)]) -> Value {
    Value::Array(
        params
            .iter()
            .map(|(name, p)| {
                let (kind, value) = match p {
                    Param::Str(s) => ("STRING", json!({ "value": s })),
                    Param::Int(i) => ("INT64", json!({ "value": i.to_string() })),
                    Param::Timestamp(t) => ("TIMESTAMP", json!({ "value": t })),
                    Param::NullStr => ("STRING", json!({})),
                    Param::NullTimestamp => ("TIMESTAMP", json!({})),
                };
                json!({ "name": name, "parameterType": { "type": kind }, "parameterValue": value })
            })
            .collect(),
    )
}

/// One `{"f": [{"v": …}]}` row as text, one cell per schema field; TIMESTAMP values become
/// UTC ISO-8601 like the other warehouses print them.
fn row_values(
    operation: &'static str,
    fields: &[Value],
    row: &Value,
) -> Result<Vec<Option<String>>, ApiError> {
    let bad = |detail: String| ApiError::Protocol { operation, detail };
    let cells = row["f"]
        .as_array()
        .ok_or_else(|| bad("a row without cells".into()))?;
    if cells.len() != fields.len() {
        return Err(bad(format!(
            "a row of {} cells for {} fields",
            cells.len(),
            fields.len()
        )));
    }
    cells
        .iter()
        .zip(fields)
        .map(|(cell, field)| {
            let text = match &cell["v"] {
                Value::Null => return Ok(None),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if field["type"].as_str() == Some("TIMESTAMP") {
                timestamp_to_utc(&text)
                    .map(Some)
                    .ok_or_else(|| bad(format!("TIMESTAMP {text:?} is not a timestamp")))
            } else {
                Ok(Some(text))
            }
        })
        .collect()
}

/// A TIMESTAMP cell → `2022-09-21T04:32:45Z` (fractions kept to the microsecond). Takes both
/// forms servers send: int64 microseconds (`"1663734765000000"`, asked for with
/// `formatOptions.useInt64Timestamp`) and float seconds (`"1.663734765E9"`, the default, which
/// a server may still send): a value with a `.` or an exponent is seconds.
pub fn timestamp_to_utc(text: &str) -> Option<String> {
    let micros = if text.contains(['.', 'e', 'E']) {
        let seconds: f64 = text.parse().ok()?;
        if !seconds.is_finite() {
            return None;
        }
        (seconds * 1e6).round() as i64
    } else {
        text.parse::<i64>().ok()?
    };
    let whole = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let base = crate::time::format_utc(whole);
    if fraction == 0 {
        Some(base)
    } else {
        Some(format!("{}.{:06}Z", base.trim_end_matches('Z'), fraction))
    }
}

fn job_status(job_id: &str, job: &Value) -> JobStatus {
    let labels = job["configuration"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let error = job["status"]
        .get("errorResult")
        .filter(|e| !e.is_null())
        .map(|e| ApiError::Job {
            job_id: job_id.to_string(),
            reason: e["reason"].as_str().unwrap_or("unknown").to_string(),
            message: e["message"].as_str().unwrap_or("").to_string(),
            errors: job["status"]["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .take(20)
                .map(|e| e["message"].as_str().unwrap_or("").to_string())
                .collect(),
        });
    JobStatus {
        job_id: job_id.to_string(),
        labels,
        error,
    }
}

use futures_util::StreamExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_come_back_as_utc_text_from_either_form() {
        assert_eq!(
            timestamp_to_utc("1.663734765E9").as_deref(),
            Some("2022-09-21T04:32:45Z")
        );
        assert_eq!(
            timestamp_to_utc("1663734765.5").as_deref(),
            Some("2022-09-21T04:32:45.500000Z")
        );
        assert_eq!(
            timestamp_to_utc("1663734765000000").as_deref(),
            Some("2022-09-21T04:32:45Z")
        );
        assert_eq!(
            timestamp_to_utc("1663734765123457").as_deref(),
            Some("2022-09-21T04:32:45.123457Z")
        );
        assert_eq!(timestamp_to_utc("soon"), None);
        assert_eq!(timestamp_to_utc("NaN"), None);
    }

    #[test]
    fn answers_with_errors_are_errors() {
        let page = json!({
            "jobComplete": true,
            "jobReference": { "jobId": "q1" },
            "errors": [{ "reason": "backendError", "message": "try later" }],
        });
        let err = check_errors("jobs.query", &page).unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(
            err.to_string(),
            "BigQuery job q1 failed (backendError): try later; errors: try later"
        );
        assert!(check_errors("jobs.query", &json!({ "jobComplete": true })).is_ok());
    }

    #[test]
    fn transient_errors_are_retryable_and_bad_requests_are_not() {
        let http = |status, reason: &str| ApiError::Http {
            operation: "x",
            status,
            reason: reason.into(),
            message: String::new(),
        };
        assert!(http(500, "backendError").is_retryable());
        assert!(http(403, "rateLimitExceeded").is_retryable());
        assert!(http(403, "quotaExceeded").is_retryable());
        assert!(!http(403, "quotaExceeded").retry_now());
        assert!(!http(403, "accessDenied").is_retryable());
        assert!(!http(400, "invalid").is_retryable());
        assert!(http(409, "duplicate").is_duplicate());
    }
}
