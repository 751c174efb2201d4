//! A BigQuery REST double on loopback: the subset Tapline calls (datasets.get/insert,
//! tables.list/get/insert/patch/update/delete, jobs.insert as multipart upload and as query job,
//! jobs.get, jobs.query), checked against the documented shapes, with rows kept in SQLite so tests (and
//! the adapter's own queries) can read them back.
//!
//! What it enforces, because BigQuery does: job ids match `[A-Za-z0-9_-]{1,1024}` and are
//! unique per project (a second insert is `409 duplicate`, whatever the first job's outcome);
//! multipart framing (`multipart/related`, a JSON metadata part, then the data); load jobs
//! into an existing table (`CREATE_NEVER`) with NEWLINE_DELIMITED_JSON whose rows match the
//! schema (unknown fields, missing REQUIRED fields, bad TIMESTAMP/INT64 are row errors that
//! fail the whole job and load nothing); `schemaUpdateOptions` only with `WRITE_APPEND`;
//! tables.patch must keep every existing field, and added fields must be NULLABLE; partitioning
//! on a TIMESTAMP field; `useLegacySql: false`; named parameters; scripts run atomically
//! between `BEGIN TRANSACTION` and `COMMIT TRANSACTION`.
//! TIMESTAMPs are stored as fixed-width UTC text and answered the way the REST API does
//! (epoch seconds in E notation), which the adapter must convert.
//!
//! What it cannot be: GoogleSQL. Queries run in SQLite, so the SQL Tapline sends stays within
//! what both accept (backtick identifiers, `@name` parameters, window functions), apart from the
//! typed views' casts, which `googlesql.rs` turns into SQLite functions with BigQuery's rules.
//! Each dataset is a shared-cache in-memory database, so a view may read another dataset's
//! tables (the BI dataset's views read the raw one), and tables.get on a view answers its
//! schema. Faults can be scripted: an HTTP error for the next call of an operation, a job that
//! ends with `errorResult` and row errors, jobs that stay RUNNING for a few polls.

pub mod emulator;
mod googlesql;
pub mod target;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::{Value, json};

/// A scripted HTTP error for the next call of an operation (`tables.insert`, `jobs.upload`,
/// `jobs.query`, `jobs.insert`, `jobs.get`, `datasets.get`, `tables.patch`, …).
#[derive(Debug, Clone)]
pub struct HttpFault {
    /// Status to answer.
    pub status: u16,
    /// `error.errors[0].reason`.
    pub reason: String,
}

/// A scripted answer for the next `jobs.query` that is not a clean result, though HTTP 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryAnswerFault {
    /// `jobComplete: true` with `errors[]` (reason `backendError`) and no rows.
    Errors,
    /// `jobComplete: true` without a schema or rows.
    NoSchema,
}

/// A scripted job failure: the next job of a kind (`load` or `query`) ends DONE with this
/// `errorResult` and these `errors[]`, having changed nothing.
#[derive(Debug, Clone)]
pub struct JobFault {
    /// `errorResult.reason`.
    pub reason: String,
    /// `errorResult.message`.
    pub message: String,
    /// `errors[].message`.
    pub errors: Vec<String>,
}

#[derive(Default)]
struct Inner {
    datasets: HashMap<String, Dataset>,
    jobs: HashMap<String, StoredJob>,
    http_faults: HashMap<String, VecDeque<HttpFault>>,
    job_faults: HashMap<String, VecDeque<JobFault>>,
    query_answer_faults: VecDeque<QueryAnswerFault>,
    /// Polls each new job answers RUNNING before DONE.
    running_polls: u32,
    /// Every call: (operation, Authorization header if any).
    calls: Vec<(String, Option<String>)>,
    /// Resumable uploads in progress, by `upload_id`.
    sessions: HashMap<String, Session>,
    /// The access token `POST /token` hands out for a refresh token: (refresh, access).
    token: Option<(String, String)>,
}

struct StoredJob {
    resource: Value,
    polls_left: u32,
}

struct Dataset {
    name: String,
    /// The shared-cache in-memory database holding the dataset's tables, which other
    /// datasets' connections attach to run views that read across datasets.
    uri: String,
    conn: rusqlite::Connection,
    tables: BTreeMap<String, Value>,
    /// `location`, as datasets.insert set it (`US` by default, as in BigQuery).
    location: String,
    labels: Value,
}

struct Shared {
    project: String,
    /// `http://127.0.0.1:PORT`, for resumable sessions' `Location`.
    endpoint: Mutex<String>,
    inner: Mutex<Inner>,
}

/// The running double; stops when dropped.
pub struct BigQueryDouble {
    /// What `BIGQUERY_ENDPOINT` should say: `http://127.0.0.1:PORT`.
    pub endpoint: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BigQueryDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Reply = Result<Value, (StatusCode, Value)>;

fn error(status: StatusCode, reason: &str, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({ "error": {
            "code": status.as_u16(),
            "message": message,
            "errors": [{ "reason": reason, "message": message, "domain": "global" }],
            "status": reason.to_uppercase(),
        }}),
    )
}

fn invalid(message: impl Into<String>) -> (StatusCode, Value) {
    error(StatusCode::BAD_REQUEST, "invalid", &message.into())
}

fn respond(reply: Reply) -> Response {
    match reply {
        Ok(v) if v.is_null() => StatusCode::NO_CONTENT.into_response(),
        Ok(v) => axum::Json(v).into_response(),
        Err((status, body)) => (status, axum::Json(body)).into_response(),
    }
}

/// A request body that must be JSON: 400 `invalid` otherwise.
fn json_body(body: &[u8]) -> Result<Value, (StatusCode, Value)> {
    serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))
}

fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sql_type(bq: &str) -> Option<&'static str> {
    Some(match bq {
        "STRING" => "TEXT",
        "INT64" | "INTEGER" => "INTEGER",
        "TIMESTAMP" => "TIMESTAMP",
        "FLOAT64" | "FLOAT" => "REAL",
        "BOOL" | "BOOLEAN" => "BOOLEAN",
        _ => return None,
    })
}

/// `2022-09-21T04:39:25Z`, `2022-09-21 04:39:25.5 UTC`, `…+00:00` → microseconds since epoch.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let t = text.trim();
    let t = t
        .strip_suffix(" UTC")
        .or_else(|| t.strip_suffix('Z'))
        .or_else(|| t.strip_suffix("+00:00"))
        .unwrap_or(t);
    if t.len() < 19 {
        return None;
    }
    let (date, rest) = t.split_at(10);
    let sep = rest.as_bytes()[0];
    if sep != b'T' && sep != b' ' {
        return None;
    }
    let (time, fraction) = rest[1..].split_once('.').unwrap_or((&rest[1..], ""));
    let seconds = tapline::time::parse_utc(&format!("{date}T{time}Z"))?;
    let micros = if fraction.is_empty() {
        0
    } else {
        if fraction.len() > 6 || !fraction.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        format!("{fraction:0<6}").parse::<i64>().ok()?
    };
    Some(seconds * 1_000_000 + micros)
}

/// How the double stores a TIMESTAMP: fixed-width UTC text, so text order is time order and a
/// value keeps its type through `min()` and `COALESCE()`: `2022-09-21T04:32:45.000000Z`.
fn stored_timestamp(micros: i64) -> String {
    let utc = tapline::time::format_utc(micros.div_euclid(1_000_000));
    format!(
        "{}.{:06}Z",
        utc.trim_end_matches('Z'),
        micros.rem_euclid(1_000_000)
    )
}

fn is_stored_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 27 && b[10] == b'T' && b[19] == b'.' && b[26] == b'Z'
}

/// Microseconds → the REST API's default TIMESTAMP text, float seconds (`1.663734765E9`).
fn timestamp_text(micros: i64) -> String {
    format!("{:E}", micros as f64 / 1e6)
}

/// BigQuery's documented metadata limits, in characters: a field's description, a table's
/// description, a table's friendlyName.
const MAX_FIELD_DESCRIPTION: usize = 1_024;
const MAX_TABLE_DESCRIPTION: usize = 16_384;
const MAX_FRIENDLY_NAME: usize = 1_024;

/// A table resource's friendlyName and description within BigQuery's limits.
fn check_table_metadata(resource: &Value) -> Result<(), (StatusCode, Value)> {
    let chars = |key: &str| resource[key].as_str().map_or(0, |v| v.chars().count());
    if chars("friendlyName") > MAX_FRIENDLY_NAME {
        return Err(invalid(format!(
            "The friendly name is too long: {} characters; the maximum is {MAX_FRIENDLY_NAME}",
            chars("friendlyName")
        )));
    }
    if chars("description") > MAX_TABLE_DESCRIPTION {
        return Err(invalid(format!(
            "The description is too long: {} characters; the maximum is {MAX_TABLE_DESCRIPTION}",
            chars("description")
        )));
    }
    Ok(())
}

/// Numbers the doubles' in-memory databases, so two doubles of one process never share one.
static DATABASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Dataset {
    fn new(name: &str) -> Self {
        let flags = rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let conn = rusqlite::Connection::open_with_flags(":memory:", flags).expect("sqlite");
        let n = DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let uri = format!(
            "file:bqdouble_{}_{n}?mode=memory&cache=shared",
            std::process::id()
        );
        conn.execute_batch(&format!("ATTACH '{uri}' AS {}", quote(name)))
            .expect("attach");
        googlesql::register_functions(&conn).expect("functions");
        Self {
            name: name.to_string(),
            uri,
            conn,
            tables: BTreeMap::new(),
            location: "US".to_string(),
            labels: json!({}),
        }
    }

    /// Attaches dataset `name` (its database `uri`) to this one's connection, once.
    fn attach(&self, name: &str, uri: &str) -> rusqlite::Result<()> {
        let attached: bool = self.conn.query_row(
            "SELECT count(*) > 0 FROM pragma_database_list WHERE name = ?1",
            [name],
            |r| r.get(0),
        )?;
        if !attached {
            self.conn
                .execute_batch(&format!("ATTACH '{uri}' AS {}", quote(name)))?;
        }
        Ok(())
    }
}

impl BigQueryDouble {
    /// Starts the double for `project` with these (empty) datasets.
    pub async fn start(project: &str, datasets: &[&str]) -> Self {
        let mut inner = Inner::default();
        for d in datasets {
            inner.datasets.insert(d.to_string(), Dataset::new(d));
        }
        let shared = Arc::new(Shared {
            project: project.to_string(),
            endpoint: Mutex::new(String::new()),
            inner: Mutex::new(inner),
        });
        let base = "/bigquery/v2/projects/{project}";
        let app = Router::new()
            .route(&format!("{base}/datasets"), post(insert_dataset))
            .route(&format!("{base}/datasets/{{dataset}}"), get(get_dataset))
            .route(
                &format!("{base}/datasets/{{dataset}}/tables"),
                get(list_tables).post(insert_table),
            )
            .route(
                &format!("{base}/datasets/{{dataset}}/tables/{{table}}"),
                get(table_call)
                    .patch(table_call)
                    .put(table_call)
                    .delete(table_call),
            )
            .route(&format!("{base}/jobs"), post(insert_query_job))
            .route(&format!("{base}/jobs/{{job}}"), get(get_job))
            .route(&format!("{base}/queries"), post(run_query))
            .route(
                "/upload/bigquery/v2/projects/{project}/jobs",
                post(upload_job).put(upload_chunk),
            )
            .route("/token", post(token))
            // Multipart uploads reach 8 MiB and resumable chunks are 8 MiB.
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        *shared.endpoint.lock().expect("endpoint") = endpoint.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            endpoint,
            shared,
            task,
        }
    }

    /// Serves Google's OAuth token endpoint at `{endpoint}/token` (point an `authorized_user`
    /// credentials file's `token_uri` here): `refresh` buys `access`, and from then on every
    /// BigQuery call must carry `Authorization: Bearer {access}`.
    pub fn issue_token(&self, refresh: &str, access: &str) {
        self.lock().token = Some((refresh.to_string(), access.to_string()));
    }

    /// Whether a dataset exists.
    pub fn has_dataset(&self, name: &str) -> bool {
        self.lock().datasets.contains_key(name)
    }

    /// A dataset's location and labels: `{"location": …, "labels": …}`.
    pub fn dataset(&self, name: &str) -> Option<Value> {
        let inner = self.lock();
        let ds = inner.datasets.get(name)?;
        Some(json!({ "location": ds.location, "labels": ds.labels }))
    }

    /// Adds an empty dataset.
    pub fn add_dataset(&self, name: &str) {
        self.lock()
            .datasets
            .insert(name.to_string(), Dataset::new(name));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("double state")
    }

    /// The next `jobs.query` answers HTTP 200 with this unclean result instead (queued).
    pub fn fail_next_query_answer(&self, fault: QueryAnswerFault) {
        self.lock().query_answer_faults.push_back(fault);
    }

    /// The next call of `operation` answers this HTTP error instead (queued).
    pub fn fail_next(&self, operation: &str, status: u16, reason: &str) {
        self.lock()
            .http_faults
            .entry(operation.to_string())
            .or_default()
            .push_back(HttpFault {
                status,
                reason: reason.to_string(),
            });
    }

    /// The next job of `kind` (`load` or `query`) ends DONE with this error, changing nothing.
    pub fn fail_next_job(&self, kind: &str, fault: JobFault) {
        self.lock()
            .job_faults
            .entry(kind.to_string())
            .or_default()
            .push_back(fault);
    }

    /// Every new job answers RUNNING to this many jobs.get polls before DONE.
    pub fn set_running_polls(&self, polls: u32) {
        self.lock().running_polls = polls;
    }

    /// Calls so far: (operation, Authorization header).
    pub fn calls(&self) -> Vec<(String, Option<String>)> {
        self.lock().calls.clone()
    }

    /// How many calls of `operation` were made.
    pub fn count(&self, operation: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|(o, _)| o == operation)
            .count()
    }

    /// Job ids in insertion order.
    pub fn job_ids(&self) -> Vec<String> {
        let inner = self.lock();
        let mut jobs: Vec<(&String, u64)> = inner
            .jobs
            .iter()
            .map(|(id, j)| (id, j.resource["_seq"].as_u64().unwrap_or(0)))
            .collect();
        jobs.sort_by_key(|(_, seq)| *seq);
        jobs.into_iter().map(|(id, _)| id.clone()).collect()
    }

    /// A job's resource as `jobs.get` answers it (its configuration, the script it ran).
    pub fn job(&self, id: &str) -> Option<Value> {
        self.lock().jobs.get(id).map(|j| j.resource.clone())
    }

    /// A table's resource (schema, partitioning, labels).
    pub fn table(&self, dataset: &str, table: &str) -> Option<Value> {
        self.lock()
            .datasets
            .get(dataset)?
            .tables
            .get(table)
            .cloned()
    }

    /// Table names of a dataset.
    pub fn tables(&self, dataset: &str) -> Vec<String> {
        self.lock()
            .datasets
            .get(dataset)
            .map(|d| d.tables.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Runs a statement against a dataset's stored rows, as someone with direct access would
    /// (seeding history a test cannot produce through the API, such as old rows).
    pub fn execute(&self, dataset: &str, sql: &str) {
        let inner = self.lock();
        let ds = inner.datasets.get(dataset).expect("dataset");
        ds.conn.execute_batch(sql).expect(sql);
    }

    /// Runs SQL against a dataset's stored rows (TIMESTAMPs as `2022-09-21T04:32:45.000000Z`).
    pub fn rows(&self, dataset: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        let inner = self.lock();
        let ds = inner.datasets.get(dataset).expect("dataset");
        let (_, rows) = select(&ds.conn, sql, &[], false).expect(sql);
        rows.into_iter()
            .map(|r| r.into_iter().map(|(v, _)| v).collect())
            .collect()
    }
}

/// Records the call, checks the auth convention and answers a scripted fault if any.
fn enter(
    shared: &Shared,
    operation: &str,
    project: &str,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, Value)> {
    let mut inner = shared.inner.lock().expect("state");
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some((_, access)) = &inner.token
        && auth.as_deref() != Some(&format!("Bearer {access}"))
    {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Request is missing required authentication credential.",
        ));
    }
    inner.calls.push((operation.to_string(), auth));
    if project != shared.project {
        return Err(error(
            StatusCode::NOT_FOUND,
            "notFound",
            &format!("Not found: Project {project}"),
        ));
    }
    if let Some(fault) = inner
        .http_faults
        .get_mut(operation)
        .and_then(VecDeque::pop_front)
    {
        let status = StatusCode::from_u16(fault.status).expect("status");
        return Err(error(
            status,
            &fault.reason,
            &format!("scripted {operation} failure"),
        ));
    }
    Ok(())
}

async fn get_dataset(
    State(shared): State<Arc<Shared>>,
    Path((project, dataset)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    respond((|| {
        enter(&shared, "datasets.get", &project, &headers)?;
        let inner = shared.inner.lock().expect("state");
        if let Some(ds) = inner.datasets.get(&dataset) {
            Ok(json!({
                "kind": "bigquery#dataset",
                "id": format!("{project}:{dataset}"),
                "datasetReference": { "projectId": project, "datasetId": dataset },
                "location": ds.location,
                "labels": ds.labels,
            }))
        } else {
            Err(error(
                StatusCode::NOT_FOUND,
                "notFound",
                &format!("Not found: Dataset {project}:{dataset}"),
            ))
        }
    })())
}

/// datasets.insert: a new empty dataset (409 `duplicate` when it exists).
async fn insert_dataset(
    State(shared): State<Arc<Shared>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond((|| {
        enter(&shared, "datasets.insert", &project, &headers)?;
        let resource = json_body(&body)?;
        let reference = &resource["datasetReference"];
        let dataset = reference["datasetId"].as_str().unwrap_or("");
        if reference["projectId"] != json!(project) {
            return Err(invalid(
                "datasetReference.projectId must be the project of the URL",
            ));
        }
        if dataset.is_empty()
            || dataset.len() > 1024
            || !dataset
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(invalid(format!("Invalid dataset ID \"{dataset}\"")));
        }
        let mut inner = shared.inner.lock().expect("state");
        if inner.datasets.contains_key(dataset) {
            return Err(error(
                StatusCode::CONFLICT,
                "duplicate",
                &format!("Already Exists: Dataset {project}:{dataset}"),
            ));
        }
        let mut ds = Dataset::new(dataset);
        if let Some(location) = resource["location"].as_str() {
            ds.location = location.to_string();
        }
        if let Some(labels) = resource.get("labels") {
            ds.labels = labels.clone();
        }
        let answer = json!({
            "kind": "bigquery#dataset",
            "id": format!("{project}:{dataset}"),
            "datasetReference": { "projectId": project, "datasetId": dataset },
            "location": ds.location,
            "labels": ds.labels,
        });
        inner.datasets.insert(dataset.to_string(), ds);
        Ok(answer)
    })())
}

async fn list_tables(
    State(shared): State<Arc<Shared>>,
    Path((project, dataset)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    respond((|| {
        enter(&shared, "tables.list", &project, &headers)?;
        let inner = shared.inner.lock().expect("state");
        let ds = dataset_of(&inner, &project, &dataset)?;
        // Pages of two, so paging is exercised. The token is the last table id of the page
        // before, so tables created or dropped meanwhile never make a listing skip one.
        let after = query.get("pageToken").cloned();
        let all: Vec<Value> = ds
            .tables
            .iter()
            .filter(|(id, _)| after.as_ref().is_none_or(|a| *id > a))
            .map(|(_, t)| {
                let mut item = json!({
                    "kind": "bigquery#table",
                    "tableReference": t["tableReference"],
                    "type": if t.get("view").is_some() { "VIEW" } else { "TABLE" },
                });
                for key in ["friendlyName", "labels", "timePartitioning"] {
                    if let Some(v) = t.get(key) {
                        item[key] = v.clone();
                    }
                }
                item
            })
            .collect();
        let page: Vec<Value> = all.iter().take(2).cloned().collect();
        let mut answer = json!({ "kind": "bigquery#tableList", "tables": page });
        if all.len() > 2 {
            answer["nextPageToken"] = page[1]["tableReference"]["tableId"].clone();
        }
        Ok(answer)
    })())
}

fn dataset_of<'a>(
    inner: &'a Inner,
    project: &str,
    dataset: &str,
) -> Result<&'a Dataset, (StatusCode, Value)> {
    inner.datasets.get(dataset).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "notFound",
            &format!("Not found: Dataset {project}:{dataset}"),
        )
    })
}

/// A schema field: (name, type, mode).
type Field = (String, String, String);

fn check_fields(fields: &Value) -> Result<Vec<Field>, (StatusCode, Value)> {
    let fields = fields
        .as_array()
        .ok_or_else(|| invalid("schema.fields must be an array"))?;
    let mut out = Vec::new();
    for f in fields {
        let name = f["name"].as_str().unwrap_or("");
        if !valid_name(name, 300) {
            return Err(invalid(format!("Invalid field name \"{name}\"")));
        }
        let kind = f["type"].as_str().unwrap_or("");
        if sql_type(kind).is_none() {
            return Err(invalid(format!("Invalid type {kind:?} for field {name}")));
        }
        let description = f["description"].as_str().map_or(0, |d| d.chars().count());
        if description > MAX_FIELD_DESCRIPTION {
            return Err(invalid(format!(
                "The description for field {name} is too long: {description} characters; the maximum is {MAX_FIELD_DESCRIPTION}"
            )));
        }
        let mode = f["mode"].as_str().unwrap_or("NULLABLE");
        if !matches!(mode, "NULLABLE" | "REQUIRED") {
            return Err(invalid(format!("Invalid mode {mode} for field {name}")));
        }
        if out
            .iter()
            .any(|(n, _, _): &Field| n.eq_ignore_ascii_case(name))
        {
            return Err(invalid(format!("Duplicate field name {name}")));
        }
        out.push((name.to_string(), kind.to_string(), mode.to_string()));
    }
    Ok(out)
}

/// Creates view `table` of `dataset` (GoogleSQL `query`); returns its schema's fields.
fn create_view(
    inner: &Inner,
    project: &str,
    dataset: &str,
    table: &str,
    query: &str,
) -> Result<Value, (StatusCode, Value)> {
    let ds = inner.datasets.get(dataset).expect("checked");
    // A view reading another dataset's tables (the typed views read the raw dataset) needs
    // that dataset attached; it is named `project`.`dataset`.`table` or `dataset`.`table`.
    for (name, other) in &inner.datasets {
        if name != dataset && query.contains(&format!("`{name}`.")) {
            ds.attach(name, &other.uri)
                .map_err(|e| invalid(format!("Invalid view query: {e}")))?;
        }
    }
    // Views live in SQLite's temp schema and tables in the dataset's attached one: a view that
    // reads another view (`ds`.`all_events`) finds it only unqualified, where SQLite searches
    // temp first, then the attached dataset.
    let sql = googlesql::translate(query, project).replace(&format!("`{}`.", ds.name), "");
    ds.conn
        .execute_batch(&format!(
            "DROP VIEW IF EXISTS temp.{t}; CREATE TEMP VIEW {t} AS {sql}",
            t = quote(table)
        ))
        .map_err(|e| invalid(format!("Invalid view query: {e}")))?;
    // A plain column has its table's type: `project`.`dataset`.`table`, `dataset`.`table`
    // or a table of this dataset.
    let column_type = |relation: &str, column: &str| {
        let parts: Vec<&str> = relation.split('.').map(|p| p.trim_matches('`')).collect();
        let (d, t) = match parts.as_slice() {
            [_, d, t] | [d, t] => (*d, *t),
            [t] => (dataset, *t),
            _ => return None,
        };
        let fields = &inner.datasets.get(d)?.tables.get(t)?["schema"]["fields"];
        fields
            .as_array()?
            .iter()
            .find(|f| f["name"] == column)
            .and_then(|f| f["type"].as_str().map(str::to_string))
    };
    Ok(json!({ "fields": googlesql::view_fields(query, &column_type) }))
}

async fn insert_table(
    State(shared): State<Arc<Shared>>,
    Path((project, dataset)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond((|| {
        enter(&shared, "tables.insert", &project, &headers)?;
        let resource: Value = json_body(&body)?;
        let reference = &resource["tableReference"];
        let table = reference["tableId"].as_str().unwrap_or("");
        if reference["projectId"] != json!(project) || reference["datasetId"] != json!(dataset) {
            return Err(invalid(
                "tableReference must name the project and dataset of the URL",
            ));
        }
        if !valid_name(table, 1024) {
            return Err(invalid(format!("Invalid table ID \"{table}\"")));
        }
        check_table_metadata(&resource)?;
        let mut inner = shared.inner.lock().expect("state");
        dataset_of(&inner, &project, &dataset)?;
        let mut view_schema = None;
        if inner.datasets[&dataset].tables.contains_key(table) {
            return Err(error(
                StatusCode::CONFLICT,
                "duplicate",
                &format!("Already Exists: Table {project}:{dataset}.{table}"),
            ));
        }
        if let Some(view) = resource.get("view") {
            if view["useLegacySql"] != json!(false) {
                return Err(invalid("views must set useLegacySql: false"));
            }
            let query = view["query"].as_str().unwrap_or("");
            view_schema = Some(create_view(&inner, &project, &dataset, table, query)?);
        }
        let ds = inner.datasets.get_mut(&dataset).expect("checked");
        if ds.tables.contains_key(table) {
            return Err(error(
                StatusCode::CONFLICT,
                "duplicate",
                &format!("Already Exists: Table {project}:{dataset}.{table}"),
            ));
        }
        if resource.get("view").is_none() {
            let fields = check_fields(&resource["schema"]["fields"])?;
            if let Some(p) = resource.get("timePartitioning") {
                let field = p["field"].as_str().unwrap_or("");
                let ok = p["type"] == json!("DAY")
                    && fields
                        .iter()
                        .any(|(n, t, _)| n == field && (t == "TIMESTAMP" || t == "DATE"));
                if !ok {
                    return Err(invalid(format!(
                        "The field specified for time partitioning can only be of type TIMESTAMP or DATE: {field}"
                    )));
                }
            }
            let defs: Vec<String> = fields
                .iter()
                .map(|(n, t, m)| {
                    format!(
                        "{} {}{}",
                        quote(n),
                        sql_type(t).expect("checked"),
                        if m == "REQUIRED" { " NOT NULL" } else { "" }
                    )
                })
                .collect();
            ds.conn
                .execute_batch(&format!(
                    "CREATE TABLE {}.{} ({})",
                    quote(&dataset),
                    quote(table),
                    defs.join(", ")
                ))
                .map_err(|e| invalid(e.to_string()))?;
        }
        let mut stored = resource.clone();
        if let Some(schema) = view_schema {
            stored["schema"] = schema;
        }
        stored["id"] = json!(format!("{project}:{dataset}.{table}"));
        stored["type"] = json!(if resource.get("view").is_some() {
            "VIEW"
        } else {
            "TABLE"
        });
        ds.tables.insert(table.to_string(), stored.clone());
        Ok(stored)
    })())
}

async fn table_call(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path((project, dataset, table)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = match method {
        Method::GET => "tables.get",
        Method::PATCH => "tables.patch",
        Method::PUT => "tables.update",
        _ => "tables.delete",
    };
    respond((|| {
        enter(&shared, operation, &project, &headers)?;
        let mut inner = shared.inner.lock().expect("state");
        dataset_of(&inner, &project, &dataset)?;
        if operation == "tables.update" {
            let current = inner.datasets[&dataset].tables.get(&table).cloned();
            let Some(current) = current else {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "notFound",
                    &format!("Not found: Table {project}:{dataset}.{table}"),
                ));
            };
            let resource: Value = json_body(&body)?;
            let Some(view) = resource.get("view") else {
                return Err(invalid("the double updates views only"));
            };
            let query = view["query"].as_str().unwrap_or("");
            let schema = create_view(&inner, &project, &dataset, &table, query)?;
            let mut stored = current;
            stored["view"] = view.clone();
            stored["schema"] = schema;
            let ds = inner.datasets.get_mut(&dataset).expect("checked");
            ds.tables.insert(table.clone(), stored.clone());
            return Ok(stored);
        }
        let ds = inner.datasets.get_mut(&dataset).expect("checked");
        let not_found = || {
            error(
                StatusCode::NOT_FOUND,
                "notFound",
                &format!("Not found: Table {project}:{dataset}.{table}"),
            )
        };
        let current = ds.tables.get(&table).cloned().ok_or_else(not_found)?;
        match operation {
            "tables.get" => Ok(current),
            "tables.delete" => {
                let sql = if current.get("view").is_some() {
                    format!("DROP VIEW temp.{}", quote(&table))
                } else {
                    format!("DROP TABLE {}.{}", quote(&dataset), quote(&table))
                };
                ds.conn
                    .execute_batch(&sql)
                    .map_err(|e| invalid(e.to_string()))?;
                ds.tables.remove(&table);
                Ok(Value::Null)
            }
            _ => {
                let patch: Value = json_body(&body)?;
                check_table_metadata(&patch)?;
                let mut stored = current.clone();
                if let Some(schema) = patch.get("schema") {
                    let new = check_fields(&schema["fields"])?;
                    let old = check_fields(&current["schema"]["fields"])?;
                    for o in &old {
                        if !new.contains(o) {
                            return Err(invalid(format!(
                                "Provided Schema does not match Table {project}:{dataset}.{table}. Field {} is missing or changed in new schema",
                                o.0
                            )));
                        }
                    }
                    for n in new.iter().filter(|n| !old.contains(n)) {
                        if n.2 == "REQUIRED" {
                            return Err(invalid(format!(
                                "Provided Schema does not match Table {project}:{dataset}.{table}. Cannot add required field {}",
                                n.0
                            )));
                        }
                        ds.conn
                            .execute_batch(&format!(
                                "ALTER TABLE {}.{} ADD COLUMN {} {}",
                                quote(&dataset),
                                quote(&table),
                                quote(&n.0),
                                sql_type(&n.1).expect("checked")
                            ))
                            .map_err(|e| invalid(e.to_string()))?;
                    }
                    stored["schema"] = schema.clone();
                }
                for key in ["friendlyName", "description", "labels", "expirationTime"] {
                    if let Some(v) = patch.get(key) {
                        stored[key] = v.clone();
                    }
                }
                ds.tables.insert(table.clone(), stored.clone());
                Ok(stored)
            }
        }
    })())
}

/// Named parameters: `@name` → SQLite value (TIMESTAMP as microseconds).
fn parameters(params: &Value) -> Result<Vec<(String, SqlValue)>, (StatusCode, Value)> {
    let mut out = Vec::new();
    for p in params.as_array().into_iter().flatten() {
        let name = p["name"]
            .as_str()
            .ok_or_else(|| invalid("a NAMED query parameter needs a name"))?;
        let kind = p["parameterType"]["type"]
            .as_str()
            .ok_or_else(|| invalid(format!("parameter {name} needs parameterType.type")))?;
        let value = &p["parameterValue"]["value"];
        let v = match (kind, value) {
            (_, Value::Null) => SqlValue::Null,
            ("STRING", Value::String(s)) => SqlValue::Text(s.clone()),
            ("INT64", Value::String(s)) => SqlValue::Integer(
                s.parse()
                    .map_err(|_| invalid(format!("parameter {name}: bad INT64 {s:?}")))?,
            ),
            ("TIMESTAMP", Value::String(s)) => {
                SqlValue::Text(stored_timestamp(parse_timestamp(s).ok_or_else(|| {
                    invalid(format!("parameter {name}: bad TIMESTAMP {s:?}"))
                })?))
            }
            _ => {
                return Err(invalid(format!(
                    "parameter {name}: type {kind} with value {value} (values are strings)"
                )));
            }
        };
        out.push((format!("@{name}"), v));
    }
    Ok(out)
}

/// Runs one statement with the parameters it names.
fn bind_and_run(
    stmt: &mut rusqlite::Statement<'_>,
    params: &[(String, SqlValue)],
) -> rusqlite::Result<()> {
    for i in 1..=stmt.parameter_count() {
        let name = stmt.parameter_name(i).unwrap_or("").to_string();
        let value = params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.clone()))?;
        stmt.raw_bind_parameter(i, value)?;
    }
    let mut rows = stmt.raw_query();
    while rows.next()?.is_some() {}
    Ok(())
}

type Cell = (Option<String>, &'static str);

/// Runs a SELECT: (fields, rows of (text, BigQuery type)).
/// TIMESTAMP cells as the REST API answers them: int64 microseconds when the request asked for
/// `formatOptions.useInt64Timestamp`, else float seconds.
fn select(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[(String, SqlValue)],
    int64_timestamps: bool,
) -> rusqlite::Result<(Vec<Value>, Vec<Vec<Cell>>)> {
    let mut stmt = conn.prepare(sql)?;
    for i in 1..=stmt.parameter_count() {
        let name = stmt.parameter_name(i).unwrap_or("").to_string();
        let value = params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.clone()))?;
        stmt.raw_bind_parameter(i, value)?;
    }
    let declared: Vec<Option<String>> = stmt
        .columns()
        .iter()
        .map(|c| c.decl_type().map(str::to_string))
        .collect();
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let mut types: Vec<&'static str> = declared
        .iter()
        .map(|d| match d.as_deref() {
            Some("TIMESTAMP") => "TIMESTAMP",
            Some("INTEGER") => "INTEGER",
            Some("REAL") => "FLOAT",
            Some(_) => "STRING",
            None => "",
        })
        .collect();
    let mut out = Vec::new();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        let mut cells = Vec::new();
        for (i, kind) in types.iter_mut().enumerate() {
            let value = row.get_ref(i)?;
            if kind.is_empty() {
                *kind = match value {
                    ValueRef::Integer(_) => "INTEGER",
                    ValueRef::Real(_) => "FLOAT",
                    ValueRef::Null => "",
                    ValueRef::Text(t) if is_stored_timestamp(&String::from_utf8_lossy(t)) => {
                        "TIMESTAMP"
                    }
                    _ => "STRING",
                };
            }
            let text = match value {
                ValueRef::Null => None,
                ValueRef::Text(t) if *kind == "TIMESTAMP" => {
                    let t = String::from_utf8_lossy(t);
                    Some(parse_timestamp(&t).map_or(t.into_owned(), |micros| {
                        if int64_timestamps {
                            micros.to_string()
                        } else {
                            timestamp_text(micros)
                        }
                    }))
                }
                ValueRef::Integer(n) => Some(n.to_string()),
                ValueRef::Real(f) => Some(f.to_string()),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Some(String::from_utf8_lossy(t).into_owned())
                }
            };
            cells.push(text);
        }
        out.push(cells);
    }
    let fields = names
        .iter()
        .zip(&types)
        .map(|(n, t)| json!({ "name": n, "type": if t.is_empty() { "STRING" } else { t }, "mode": "NULLABLE" }))
        .collect();
    let rows = out
        .into_iter()
        .map(|cells| cells.into_iter().zip(types.iter().copied()).collect())
        .collect();
    Ok((fields, rows))
}

/// Runs a script: statements in order, all or nothing; `(reason, message)` when it fails.
/// A transaction the script never commits is rolled back and the job still succeeds: a query
/// that ends before COMMIT or ROLLBACK has its transaction rolled back automatically
/// (https://cloud.google.com/bigquery/docs/transactions, "Transaction scope").
fn run_script(
    ds: &Dataset,
    sql: &str,
    params: &[(String, SqlValue)],
) -> Result<(), (String, String)> {
    let internal = |e: rusqlite::Error| ("internalError".to_string(), e.to_string());
    let statements: Vec<&str> = split_statements(sql);
    let transactional = statements
        .first()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("BEGIN TRANSACTION"));
    let committed = statements
        .last()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("COMMIT TRANSACTION"));
    ds.conn
        .execute_batch("SAVEPOINT script")
        .map_err(internal)?;
    let body = match (transactional, committed) {
        (true, true) => &statements[1..statements.len() - 1],
        (true, false) => &statements[1..],
        (false, _) => &statements[..],
    };
    for s in body {
        let result = ds
            .conn
            .prepare(s)
            .and_then(|mut stmt| bind_and_run(&mut stmt, params));
        if let Err(e) = result {
            let _ = ds.conn.execute_batch("ROLLBACK TO script; RELEASE script");
            let (_, reply) = query_error(&ds.name, &e);
            let error = &reply["error"]["errors"][0];
            return Err((
                error["reason"]
                    .as_str()
                    .unwrap_or("invalidQuery")
                    .to_string(),
                format!(
                    "{} at [{}]",
                    error["message"].as_str().unwrap_or(""),
                    s.trim()
                ),
            ));
        }
    }
    let end = if transactional && !committed {
        "ROLLBACK TO script; RELEASE script"
    } else {
        "RELEASE script"
    };
    ds.conn.execute_batch(end).map_err(internal)
}

/// A statement SQLite refused, as BigQuery answers a failed query
/// (https://cloud.google.com/bigquery/docs/error-messages): a missing table is `notFound`
/// (HTTP 404), anything else `invalidQuery` (HTTP 400).
fn query_error(qualifier: &str, e: &rusqlite::Error) -> (StatusCode, Value) {
    let text = e.to_string();
    match text.strip_prefix("no such table: ") {
        Some(table) => error(
            StatusCode::NOT_FOUND,
            "notFound",
            &format!("Not found: Table {qualifier}.{table} was not found in location US"),
        ),
        None => error(
            StatusCode::BAD_REQUEST,
            "invalidQuery",
            &format!("Query error: {text}"),
        ),
    }
}

/// BigQuery's `statistics.query.statementType` for `sql`, as far as a double can tell: more than
/// one statement is a `SCRIPT`; otherwise the leading keyword (`WITH` reads as `SELECT`; `CREATE
/// TABLE`, `DROP TABLE` and the like as `CREATE_TABLE`, `DROP_TABLE`).
/// An unknown leading word is BigQuery's syntax error.
fn statement_type(sql: &str) -> Result<String, (StatusCode, Value)> {
    let statements = split_statements(sql);
    if statements.len() != 1 {
        return Ok("SCRIPT".into());
    }
    let mut words = statements[0]
        .split(|c: char| c.is_whitespace() || c == '(')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase);
    match (words.next().as_deref(), words.next()) {
        (Some("SELECT" | "WITH"), _) => Ok("SELECT".into()),
        (Some(verb @ ("CREATE" | "DROP" | "ALTER")), Some(object)) => {
            Ok(format!("{verb}_{object}"))
        }
        (
            Some(
                verb @ ("INSERT" | "UPDATE" | "DELETE" | "MERGE" | "TRUNCATE" | "BEGIN" | "COMMIT"
                | "ROLLBACK" | "DECLARE" | "SET" | "CALL" | "EXPORT" | "LOAD" | "ASSERT"
                | "GRANT" | "REVOKE" | "EXECUTE"),
            ),
            _,
        ) => Ok(verb.to_string()),
        (Some(other), _) => Err(error(
            StatusCode::BAD_REQUEST,
            "invalidQuery",
            &format!("Syntax error: Unexpected identifier \"{other}\" at [1:1]"),
        )),
        (None, _) => Ok("SCRIPT".into()),
    }
}

/// Splits on `;` outside quotes and backticks.
fn split_statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quote: Option<char> = None;
    for (i, c) in sql.char_indices() {
        match (quote, c) {
            (None, '\'' | '"' | '`') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => {
                out.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&sql[start..]);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

fn new_job(
    inner: &mut Inner,
    project: &str,
    reference: &Value,
    configuration: Value,
) -> Result<String, (StatusCode, Value)> {
    let job_id = reference["jobId"].as_str().unwrap_or("");
    if reference["projectId"] != json!(project) {
        return Err(invalid(
            "jobReference.projectId must be the project of the URL",
        ));
    }
    if !valid_job_id(job_id) {
        return Err(invalid(format!(
            "Invalid job ID \"{job_id}\": use letters, digits, '-' and '_', at most 1024"
        )));
    }
    if inner.jobs.contains_key(job_id) {
        return Err(error(
            StatusCode::CONFLICT,
            "duplicate",
            &format!("Already Exists: Job {project}:US.{job_id}"),
        ));
    }
    let seq = inner.jobs.len() as u64;
    inner.jobs.insert(
        job_id.to_string(),
        StoredJob {
            resource: json!({
                "kind": "bigquery#job",
                "id": format!("{project}:US.{job_id}"),
                "jobReference": { "projectId": project, "jobId": job_id, "location": "US" },
                "configuration": configuration,
                "status": { "state": "DONE" },
                "_seq": seq,
            }),
            polls_left: inner.running_polls,
        },
    );
    Ok(job_id.to_string())
}

fn finish_job(
    inner: &mut Inner,
    job_id: &str,
    error: Option<(String, String, Vec<String>)>,
) -> Value {
    let job = inner.jobs.get_mut(job_id).expect("created");
    if let Some((reason, message, errors)) = error {
        let mut all: Vec<Value> = errors
            .iter()
            .map(|m| json!({ "reason": reason, "message": m }))
            .collect();
        if all.is_empty() {
            all.push(json!({ "reason": reason, "message": message }));
        }
        job.resource["status"] = json!({
            "state": "DONE",
            "errorResult": { "reason": reason, "message": message },
            "errors": all,
        });
    }
    answer_job(job)
}

/// The job as jobs.insert/jobs.get answer it: RUNNING while polls are left.
fn answer_job(job: &StoredJob) -> Value {
    let mut v = job.resource.clone();
    v.as_object_mut().expect("object").remove("_seq");
    if job.polls_left > 0 {
        v["status"] = json!({ "state": "RUNNING" });
    }
    v
}

fn take_job_fault(inner: &mut Inner, kind: &str) -> Option<(String, String, Vec<String>)> {
    inner
        .job_faults
        .get_mut(kind)
        .and_then(VecDeque::pop_front)
        .map(|f| (f.reason, f.message, f.errors))
}

/// A query's documented settings (jobs.query body or a query job's `configuration.query`):
/// GoogleSQL, named parameters; returns the default dataset and the parameters.
type QuerySettings = (String, Vec<(String, SqlValue)>);

fn query_settings(query: &Value) -> Result<QuerySettings, (StatusCode, Value)> {
    if query["useLegacySql"] != json!(false) {
        return Err(invalid("useLegacySql must be false"));
    }
    let params = parameters(&query["queryParameters"])?;
    if !params.is_empty() && query["parameterMode"] != json!("NAMED") {
        return Err(invalid("named parameters need parameterMode NAMED"));
    }
    let dataset = query["defaultDataset"]["datasetId"]
        .as_str()
        .unwrap_or("")
        .to_string();
    Ok((dataset, params))
}

async fn insert_query_job(
    State(shared): State<Arc<Shared>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond((|| {
        enter(&shared, "jobs.insert", &project, &headers)?;
        let job: Value = json_body(&body)?;
        let query = &job["configuration"]["query"];
        if query.is_null() {
            return Err(invalid(
                "configuration.query is required (load jobs go through the upload URL)",
            ));
        }
        let (dataset, params) = query_settings(query)?;
        let mut inner = shared.inner.lock().expect("state");
        dataset_of(&inner, &project, &dataset)?;
        if job["configuration"]["dryRun"] == json!(true) {
            // A dry run keeps no job and changes nothing; it validates the query (a missing
            // table is its 404, as in BigQuery) and answers the statement's type.
            let sql = query["query"].as_str().unwrap_or("");
            let kind = statement_type(sql)?;
            if kind == "SELECT" {
                let ds = inner.datasets.get(&dataset).expect("checked");
                select(
                    &ds.conn,
                    &googlesql::translate(sql, &project),
                    &params,
                    false,
                )
                .map_err(|e| query_error(&format!("{project}:{dataset}"), &e))?;
            }
            return Ok(json!({
                "kind": "bigquery#job",
                "configuration": job["configuration"].clone(),
                "status": { "state": "DONE" },
                "statistics": { "query": {
                    "statementType": kind,
                    "totalBytesProcessed": "0",
                } },
            }));
        }
        let job_id = new_job(
            &mut inner,
            &project,
            &job["jobReference"],
            job["configuration"].clone(),
        )?;
        let fault = take_job_fault(&mut inner, "query");
        let outcome = match fault {
            Some(f) => Some(f),
            None => {
                let ds = inner.datasets.get(&dataset).expect("checked");
                let sql = googlesql::translate(query["query"].as_str().unwrap_or(""), &project);
                run_script(ds, &sql, &params)
                    .err()
                    .map(|(reason, message)| (reason, message, Vec::new()))
            }
        };
        Ok(finish_job(&mut inner, &job_id, outcome))
    })())
}

async fn get_job(
    State(shared): State<Arc<Shared>>,
    Path((project, job_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    respond((|| {
        enter(&shared, "jobs.get", &project, &headers)?;
        let mut inner = shared.inner.lock().expect("state");
        let job = inner.jobs.get_mut(&job_id).ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                "notFound",
                &format!("Not found: Job {project}:{job_id}"),
            )
        })?;
        let answer = answer_job(job);
        job.polls_left = job.polls_left.saturating_sub(1);
        Ok(answer)
    })())
}

async fn run_query(
    State(shared): State<Arc<Shared>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond((|| {
        enter(&shared, "jobs.query", &project, &headers)?;
        let request: Value = json_body(&body)?;
        let (dataset, params) = query_settings(&request)?;
        // DataFormatOptions has one documented field, a boolean.
        let format = &request["formatOptions"];
        let int64_timestamps = match &format["useInt64Timestamp"] {
            Value::Null => false,
            Value::Bool(b) => *b,
            other => {
                return Err(invalid(format!(
                    "formatOptions.useInt64Timestamp must be a boolean, not {other}"
                )));
            }
        };
        if let Some(unknown) = format
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "useInt64Timestamp"))
        {
            return Err(invalid(format!(
                "Unknown name \"{unknown}\" at 'format_options': Cannot find field."
            )));
        }
        let mut inner = shared.inner.lock().expect("state");
        let job_id = format!("query_{}", inner.calls.len());
        if let Some(fault) = inner.query_answer_faults.pop_front() {
            let reference = json!({ "projectId": project, "jobId": job_id, "location": "US" });
            return Ok(match fault {
                QueryAnswerFault::Errors => json!({
                    "kind": "bigquery#queryResponse",
                    "jobReference": reference,
                    "jobComplete": true,
                    "errors": [{ "reason": "backendError", "message": "scripted: the query hit a backend error" }],
                }),
                QueryAnswerFault::NoSchema => json!({
                    "kind": "bigquery#queryResponse",
                    "jobReference": reference,
                    "jobComplete": true,
                }),
            });
        }
        let ds = dataset_of(&inner, &project, &dataset)?;
        let sql = googlesql::translate(request["query"].as_str().unwrap_or(""), &project);
        let (fields, rows) = select(&ds.conn, &sql, &params, int64_timestamps)
            .map_err(|e| query_error(&format!("{project}:{dataset}"), &e))?;
        let rows: Vec<Value> = rows
            .into_iter()
            .map(|cells| json!({ "f": cells.into_iter().map(|(v, _)| json!({ "v": v })).collect::<Vec<_>>() }))
            .collect();
        Ok(json!({
            "kind": "bigquery#queryResponse",
            "schema": { "fields": fields },
            "jobReference": { "projectId": project, "jobId": job_id, "location": "US" },
            "totalRows": rows.len().to_string(),
            "rows": rows,
            "jobComplete": true,
        }))
    })())
}

/// Google's OAuth 2.0 token endpoint, refresh-token grant (JSON body, as `google-cloud-auth`
/// sends it).
async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let inner = shared.inner.lock().expect("state");
    match &inner.token {
        Some((refresh, access))
            if request["grant_type"] == json!("refresh_token")
                && request["refresh_token"] == json!(refresh)
                && request["client_id"].is_string()
                && request["client_secret"].is_string() =>
        {
            axum::Json(
                json!({ "access_token": access, "expires_in": 3600, "token_type": "Bearer" }),
            )
            .into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_grant", "error_description": "Bad Request" })),
        )
            .into_response(),
    }
}

/// Splits a `multipart/related` body into (metadata JSON, data).
fn multipart(headers: &HeaderMap, body: &[u8]) -> Result<(Value, Vec<u8>), (StatusCode, Value)> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = content_type
        .strip_prefix("multipart/related; boundary=")
        .ok_or_else(|| {
            invalid(format!(
                "Content-Type must be multipart/related; boundary=…, got {content_type:?}"
            ))
        })?;
    let delimiter = format!("--{boundary}\r\n");
    let rest = body
        .strip_prefix(delimiter.as_bytes())
        .ok_or_else(|| invalid("the body must start with the boundary"))?;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let head_end =
        find(rest, b"\r\n\r\n").ok_or_else(|| invalid("metadata part has no headers"))?;
    let head = String::from_utf8_lossy(&rest[..head_end]).to_lowercase();
    if !head.contains("content-type: application/json") {
        return Err(invalid("the first part must be application/json metadata"));
    }
    let rest = &rest[head_end + 4..];
    let separator = format!("\r\n--{boundary}\r\n");
    let meta_end = find(rest, separator.as_bytes()).ok_or_else(|| invalid("no data part"))?;
    let metadata: Value = serde_json::from_slice(&rest[..meta_end])
        .map_err(|e| invalid(format!("metadata is not JSON: {e}")))?;
    let rest = &rest[meta_end + separator.len()..];
    let data_start =
        find(rest, b"\r\n\r\n").ok_or_else(|| invalid("data part has no headers"))? + 4;
    let closing = format!("\r\n--{boundary}--");
    let data = &rest[data_start..];
    let data_end = find(data, closing.as_bytes())
        .ok_or_else(|| invalid("the body must end with the closing boundary"))?;
    Ok((metadata, data[..data_end].to_vec()))
}

async fn upload_job(
    State(shared): State<Arc<Shared>>,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match query.get("uploadType").map(String::as_str) {
        Some("multipart") => respond((|| {
            enter(&shared, "jobs.upload", &project, &headers)?;
            let (metadata, data) = multipart(&headers, &body)?;
            check_load(&project, &metadata)?;
            let mut inner = shared.inner.lock().expect("state");
            create_load_job(&mut inner, &project, &metadata, &data)
        })()),
        Some("resumable") => start_session(&shared, &project, &headers, &body),
        _ => respond(Err(invalid(
            "uploadType=multipart or uploadType=resumable is required",
        ))),
    }
}

/// The load configuration's documented requirements.
fn check_load(project: &str, metadata: &Value) -> Result<(), (StatusCode, Value)> {
    let load = &metadata["configuration"]["load"];
    if load.is_null() {
        return Err(invalid("configuration.load is required"));
    }
    let dest = &load["destinationTable"];
    let (Some(dp), Some(_), Some(_)) = (
        dest["projectId"].as_str(),
        dest["datasetId"].as_str(),
        dest["tableId"].as_str(),
    ) else {
        return Err(invalid(
            "destinationTable needs projectId, datasetId and tableId",
        ));
    };
    if dp != project {
        return Err(invalid(
            "destinationTable.projectId must be the project of the URL",
        ));
    }
    if load["sourceFormat"] != json!("NEWLINE_DELIMITED_JSON") {
        return Err(invalid(
            "the double takes sourceFormat NEWLINE_DELIMITED_JSON",
        ));
    }
    let write = load["writeDisposition"].as_str().unwrap_or("WRITE_APPEND");
    if load.get("schemaUpdateOptions").is_some() && write != "WRITE_APPEND" {
        return Err(invalid(
            "schemaUpdateOptions needs writeDisposition WRITE_APPEND",
        ));
    }
    Ok(())
}

/// Creates the load job for uploaded data and runs it.
fn create_load_job(inner: &mut Inner, project: &str, metadata: &Value, data: &[u8]) -> Reply {
    let load = &metadata["configuration"]["load"];
    let dataset = load["destinationTable"]["datasetId"].as_str().unwrap_or("");
    let table = load["destinationTable"]["tableId"].as_str().unwrap_or("");
    dataset_of(inner, project, dataset)?;
    let job_id = new_job(
        inner,
        project,
        &metadata["jobReference"],
        metadata["configuration"].clone(),
    )?;
    if let Some(fault) = take_job_fault(inner, "load") {
        return Ok(finish_job(inner, &job_id, Some(fault)));
    }
    let ds = inner.datasets.get(dataset).expect("checked");
    let outcome = load_rows(ds, dataset, table, load, data).err();
    Ok(finish_job(inner, &job_id, outcome))
}

/// A resumable upload in progress.
struct Session {
    project: String,
    metadata: Value,
    total: u64,
    data: Vec<u8>,
}

/// `POST …/jobs?uploadType=resumable`: the metadata now, the data later at the `Location`.
fn start_session(shared: &Shared, project: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let started = (|| {
        enter(shared, "jobs.upload.start", project, headers)?;
        let total: u64 = headers
            .get("x-upload-content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| invalid("X-Upload-Content-Length is required"))?;
        if headers.get("x-upload-content-type").is_none() {
            return Err(invalid("X-Upload-Content-Type is required"));
        }
        let metadata: Value = serde_json::from_slice(body)
            .map_err(|e| invalid(format!("metadata is not JSON: {e}")))?;
        check_load(project, &metadata)?;
        let mut inner = shared.inner.lock().expect("state");
        let id = format!("session{}", inner.sessions.len());
        inner.sessions.insert(
            id.clone(),
            Session {
                project: project.to_string(),
                metadata,
                total,
                data: Vec::new(),
            },
        );
        Ok(id)
    })();
    match started {
        Ok(id) => {
            let location = format!(
                "{}/upload/bigquery/v2/projects/{project}/jobs?uploadType=resumable&upload_id={id}",
                shared.endpoint.lock().expect("endpoint")
            );
            (StatusCode::OK, [("location", location)]).into_response()
        }
        Err(e) => respond(Err(e)),
    }
}

/// `PUT <session>`: a chunk (`Content-Range: bytes A-B/TOTAL`) or a status query
/// (`bytes */TOTAL`). 308 with `Range` while incomplete; the job once all bytes are in.
async fn upload_chunk(
    State(shared): State<Arc<Shared>>,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const QUANTUM: usize = 256 * 1024;
    let reply = (|| {
        let id = query.get("upload_id").cloned().unwrap_or_default();
        let range = headers
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let status_query = range.starts_with("bytes */");
        // A scripted fault hits chunks, not status queries.
        enter(
            &shared,
            if status_query {
                "jobs.upload.status"
            } else {
                "jobs.upload.chunk"
            },
            &project,
            &headers,
        )?;
        let mut inner = shared.inner.lock().expect("state");
        let session = inner
            .sessions
            .get_mut(&id)
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "notFound", "no such upload session"))?;
        if !status_query {
            let spec = range
                .strip_prefix("bytes ")
                .ok_or_else(|| invalid(format!("bad Content-Range {range:?}")))?;
            let (span, total) = spec
                .split_once('/')
                .ok_or_else(|| invalid("bad Content-Range"))?;
            let (first, last) = span
                .split_once('-')
                .ok_or_else(|| invalid("bad Content-Range"))?;
            let (first, last, total): (u64, u64, u64) = (
                first.parse().map_err(|_| invalid("bad Content-Range"))?,
                last.parse().map_err(|_| invalid("bad Content-Range"))?,
                total.parse().map_err(|_| invalid("bad Content-Range"))?,
            );
            if total != session.total || first != session.data.len() as u64 {
                return Err(invalid(format!(
                    "Content-Range {range} does not continue the {} bytes received of {}",
                    session.data.len(),
                    session.total
                )));
            }
            if last + 1 - first != body.len() as u64 {
                return Err(invalid("Content-Range does not match the body's length"));
            }
            if last + 1 < total && !body.len().is_multiple_of(QUANTUM) {
                return Err(invalid(
                    "chunks other than the last must be a multiple of 256 KiB",
                ));
            }
            session.data.extend_from_slice(&body);
        }
        if (session.data.len() as u64) < session.total {
            return Ok(Err(session.data.len()));
        }
        let session = inner.sessions.remove(&id).expect("present");
        create_load_job(
            &mut inner,
            &session.project,
            &session.metadata,
            &session.data,
        )
        .map(Ok)
    })();
    match reply {
        Ok(Err(received)) => {
            let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
            if received > 0 {
                response.headers_mut().insert(
                    "range",
                    format!("bytes=0-{}", received - 1).parse().expect("header"),
                );
            }
            response
        }
        Ok(Ok(job)) => respond(Ok(job)),
        Err(e) => respond(Err(e)),
    }
}

/// Appends NDJSON rows to a table, all or nothing: (reason, message, errors) on failure.
fn load_rows(
    ds: &Dataset,
    dataset: &str,
    table: &str,
    load: &Value,
    data: &[u8],
) -> Result<(), (String, String, Vec<String>)> {
    let not_found = || {
        (
            "notFound".to_string(),
            format!("Not found: Table {dataset}.{table}"),
            Vec::new(),
        )
    };
    let resource = ds.tables.get(table).ok_or_else(not_found)?;
    let mut fields = check_fields(&resource["schema"]["fields"])
        .map_err(|(_, e)| ("invalid".to_string(), e.to_string(), Vec::new()))?;
    if let Some(given) = load.get("schema") {
        let given = check_fields(&given["fields"]).map_err(|(_, e)| {
            (
                "invalid".to_string(),
                e["error"]["message"].to_string(),
                Vec::new(),
            )
        })?;
        let allow_add = load["schemaUpdateOptions"]
            .as_array()
            .is_some_and(|o| o.iter().any(|v| v == "ALLOW_FIELD_ADDITION"));
        for g in &given {
            if !fields.iter().any(|f| f.0 == g.0) {
                if !allow_add {
                    return Err((
                        "invalid".into(),
                        format!(
                            "Provided Schema does not match Table {dataset}.{table}. Cannot add fields (field: {})",
                            g.0
                        ),
                        Vec::new(),
                    ));
                }
                ds.conn
                    .execute_batch(&format!(
                        "ALTER TABLE {}.{} ADD COLUMN {} {}",
                        quote(dataset),
                        quote(table),
                        quote(&g.0),
                        sql_type(&g.1).expect("checked")
                    ))
                    .map_err(|e| ("invalid".to_string(), e.to_string(), Vec::new()))?;
                fields.push(g.clone());
            }
        }
    }
    let mut rows: Vec<Vec<SqlValue>> = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in data.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let position = format!(
            "Error while reading data, error message: JSON parsing error in row starting at position {n}"
        );
        let object: serde_json::Map<String, Value> = match serde_json::from_slice(line) {
            Ok(Value::Object(o)) => o,
            _ => {
                errors.push(format!("{position}: not a JSON object"));
                continue;
            }
        };
        if let Some(unknown) = object.keys().find(|k| !fields.iter().any(|f| &f.0 == *k))
            && load["ignoreUnknownValues"] != json!(true)
        {
            errors.push(format!("{position}: No such field: {unknown}."));
            continue;
        }
        let mut row = Vec::new();
        let mut bad = None;
        for (name, kind, mode) in &fields {
            let value = object.get(name).unwrap_or(&Value::Null);
            let v = match (kind.as_str(), value) {
                (_, Value::Null) if mode == "REQUIRED" => {
                    bad = Some(format!("{position}: Missing required field: {name}."));
                    break;
                }
                (_, Value::Null) => SqlValue::Null,
                ("STRING", Value::String(s)) => SqlValue::Text(s.clone()),
                ("INT64" | "INTEGER", Value::Number(n)) if n.is_i64() => {
                    SqlValue::Integer(n.as_i64().unwrap_or_default())
                }
                ("INT64" | "INTEGER", Value::String(s)) if s.parse::<i64>().is_ok() => {
                    SqlValue::Integer(s.parse().unwrap_or_default())
                }
                ("TIMESTAMP", Value::String(s)) => match parse_timestamp(s) {
                    Some(t) => SqlValue::Text(stored_timestamp(t)),
                    None => {
                        bad = Some(format!(
                            "{position}: Couldn't convert value to timestamp: Could not parse '{s}' as a timestamp. Field: {name}; Value: {s}"
                        ));
                        break;
                    }
                },
                (kind, other) => {
                    bad = Some(format!(
                        "{position}: Could not convert value '{other}' to {kind}. Field: {name}"
                    ));
                    break;
                }
            };
            row.push(v);
        }
        match bad {
            Some(b) => errors.push(b),
            None => rows.push(row),
        }
    }
    let allowed = load["maxBadRecords"].as_u64().unwrap_or(0) as usize;
    if errors.len() > allowed {
        return Err((
            "invalid".into(),
            format!(
                "Error while reading data, error message: JSON table encountered too many errors, giving up. Rows: {}; errors: {}. Please look into the errors[] collection for more details.",
                rows.len() + errors.len(),
                errors.len()
            ),
            errors,
        ));
    }
    let placeholders = vec!["?"; fields.len()].join(", ");
    let names: Vec<String> = fields.iter().map(|f| quote(&f.0)).collect();
    let sql = format!(
        "INSERT INTO {}.{} ({}) VALUES ({placeholders})",
        quote(dataset),
        quote(table),
        names.join(", ")
    );
    let internal = |e: rusqlite::Error| ("invalid".to_string(), e.to_string(), Vec::new());
    ds.conn.execute_batch("SAVEPOINT load").map_err(internal)?;
    for row in rows {
        if let Err(e) = ds
            .conn
            .prepare_cached(&sql)
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(row)))
        {
            let _ = ds.conn.execute_batch("ROLLBACK TO load; RELEASE load");
            return Err(internal(e));
        }
    }
    ds.conn.execute_batch("RELEASE load").map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_the_documented_forms() {
        let base = 1_663_734_765_000_000;
        assert_eq!(parse_timestamp("2022-09-21T04:32:45Z"), Some(base));
        assert_eq!(parse_timestamp("2022-09-21 04:32:45 UTC"), Some(base));
        assert_eq!(
            parse_timestamp("2022-09-21 04:32:45.5+00:00"),
            Some(base + 500_000)
        );
        assert_eq!(parse_timestamp("21/09/2022"), None);
        assert_eq!(timestamp_text(base), "1.663734765E9");
    }

    #[test]
    fn a_transaction_left_open_is_rolled_back_and_a_missing_table_is_not_found() {
        let ds = Dataset::new("d");
        ds.conn.execute_batch("CREATE TABLE d.t (a TEXT)").unwrap();
        let count = || -> i64 {
            ds.conn
                .query_row("SELECT count(*) FROM d.t", [], |r| r.get(0))
                .unwrap()
        };
        let open = "BEGIN TRANSACTION; INSERT INTO t (a) VALUES ('x');";
        assert_eq!(run_script(&ds, open, &[]), Ok(()));
        assert_eq!(count(), 0);
        let failing = "BEGIN TRANSACTION; INSERT INTO t (a) VALUES ('x'); \
                       INSERT INTO nope (a) VALUES ('y'); COMMIT TRANSACTION;";
        let (reason, message) = run_script(&ds, failing, &[]).unwrap_err();
        assert_eq!(reason, "notFound");
        assert!(
            message.starts_with("Not found: Table d.nope was not found in location US"),
            "{message}"
        );
        assert_eq!(count(), 0);
        let committed = "BEGIN TRANSACTION; INSERT INTO t (a) VALUES ('x'); COMMIT TRANSACTION;";
        assert_eq!(run_script(&ds, committed, &[]), Ok(()));
        assert_eq!(count(), 1);
    }

    #[test]
    fn statements_split_outside_quotes() {
        assert_eq!(
            split_statements("BEGIN TRANSACTION; SELECT ';' FROM `a;b`;\nCOMMIT TRANSACTION;"),
            vec![
                "BEGIN TRANSACTION",
                " SELECT ';' FROM `a;b`",
                "\nCOMMIT TRANSACTION"
            ]
        );
    }
}
