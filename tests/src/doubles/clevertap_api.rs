//! A CleverTap REST API double on loopback: the documented request and response shapes of Get
//! Events (POST opens a cursor, GET pages with it) and Get Event Count (POST, then polls of a
//! `req_id` while `partial`), Get Campaigns and campaign reports, Get Message Reports, checked on every request (auth headers,
//! JSON bodies, a cursor sent back encoded exactly once), with the quirks a test can ask for:
//! slow pages, "in progress", HTTP 429, body code 1, HTTP 500, a repeated cursor, cursors
//! without end, oversized pages, a refused event, and a page that never answers. It counts
//! concurrent requests.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::Run;

/// The account id the double accepts.
pub const ACCOUNT: &str = "TEST-ACC-1";
/// The passcode the double accepts.
pub const PASSCODE: &str = "pass-Code+/=secret";

/// One scripted answer, used before the normal one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quirk {
    /// HTTP 429 "Too many concurrent requests".
    TooMany,
    /// HTTP 200 `{"status":"fail","code":1}`: throttled.
    Code1,
    /// A cursor GET answered `{"status":"fail","error":"Request still in progress…"}`.
    InProgress,
    /// A cursor GET answered `{"status":"fail","code":2}`.
    Code2,
    /// HTTP 500.
    ServerError,
}

/// A request the double answered, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A cursor opened for (event, from).
    Open(String, i64),
    /// A page served: (event, day, page index).
    Page(String, i64, u64),
    /// A count request answered: (event, from, to) or a poll of a req_id, and whether it was
    /// still partial.
    Count(String, bool),
    /// A scripted quirk answered.
    Quirk(Quirk),
    /// `targets/list.json` for (from, to).
    CampaignList(i64, i64),
    /// `targets/result.json` for this id.
    CampaignReport(String),
    /// `message/report.json` for (day, channels asked).
    MessageReport(i64, Vec<String>),
    /// A request refused (bad auth, bad body, unknown cursor) with this message.
    Refused(String),
}

#[derive(Debug, Clone)]
struct CursorState {
    event: String,
    day: i64,
    page: u64,
    batch: usize,
}

#[derive(Default)]
struct Script {
    quirks: VecDeque<Quirk>,
    page_delay: Duration,
    repeat_cursor_at: Option<(String, u64)>,
    /// Events whose pages always name a new next cursor, records or not.
    endless_cursors: Vec<String>,
    /// Bytes of padding (a `pad` string) added to every page.
    page_padding: usize,
    block_at: Option<(String, u64)>,
    refused_events: Vec<String>,
    partial_polls: u32,
    /// Campaigns (targets) with their creation day, and what each one's report answers.
    campaigns: Vec<(i64, Value, CampaignReport)>,
    /// What `message/report.json` answers for each day (YYYYMMDD).
    message_reports: HashMap<i64, MessageDay>,
}

/// What `message/report.json` answers for one day.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageDay {
    /// `{"status":"success","messages":[…]}` (filtered by `channel` when asked).
    Ready(Vec<Value>),
    /// HTTP 200 `{"status":"fail","error":"This report hasn't been completed"}`.
    NotCompleted,
    /// HTTP 500 "This report has no result as of yet".
    NoResult500,
}

/// The channels Get Message Reports documents for its `channel` filter.
const MESSAGE_CHANNELS: &[&str] = &[
    "push",
    "email",
    "sms",
    "browser",
    "audiences",
    "inapp",
    "webhooks",
    "web_pop_up",
    "web_exit_intent",
    "web_native_display",
    "web_inbox",
];

/// A message of a day's report in the shape CleverTap answers with (`message id`, `message
/// name` with spaces, `start_date` as `22 Sep, 2022 10:00:00`, the channel capitalised).
pub fn message_record(
    id: u64,
    name: &str,
    channel: &str,
    sent: u64,
    viewed: u64,
    clicked: u64,
) -> Value {
    json!({
        "message id": id,
        "message name": name,
        "channel": channel,
        "delivery": "One time",
        "start_date": "22 Sep, 2022 10:00:00",
        "status": "Completed",
        "labels": ["tapline-test"],
        "sent": sent,
        "viewed": viewed,
        "clicked": clicked,
    })
}

/// A YYYYMMDD day given as a number or as a string (the docs show both).
fn day_of_number_or_text(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => s.parse::<i64>().ok().and_then(|n| day_of(&json!(n))),
        other => day_of(other),
    }
}

async fn message_report(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    if let Some(r) = shared.refuse_auth(&headers) {
        return r;
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return shared.refuse(
            StatusCode::BAD_REQUEST,
            "Content-Type must be application/json",
            None,
        );
    }
    if let Some(r) = shared.quirk(false) {
        return r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return shared.refuse(StatusCode::BAD_REQUEST, "Invalid JSON body", None);
    };
    let (Some(from), Some(to)) = (
        body.get("from").and_then(day_of_number_or_text),
        body.get("to").and_then(day_of_number_or_text),
    ) else {
        return shared.refuse(
            StatusCode::BAD_REQUEST,
            "from and to (YYYYMMDD) are required",
            None,
        );
    };
    if from > to {
        return shared.refuse(StatusCode::BAD_REQUEST, "from is after to", None);
    }
    if from != to {
        return shared.refuse(
            StatusCode::BAD_REQUEST,
            "the double serves one day per request",
            None,
        );
    }
    if body.get("daily").is_some_and(|d| !d.is_boolean()) {
        return shared.refuse(StatusCode::BAD_REQUEST, "daily must be true or false", None);
    }
    let channels: Vec<String> = match body.get("channel") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let names: Vec<String> = items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            if names.len() != items.len()
                || names
                    .iter()
                    .any(|c| !MESSAGE_CHANNELS.contains(&c.as_str()))
            {
                return shared.refuse(StatusCode::BAD_REQUEST, "Invalid channel", None);
            }
            names
        }
        Some(_) => {
            return shared.refuse(
                StatusCode::BAD_REQUEST,
                "channel must be an array of strings",
                None,
            );
        }
    };
    shared
        .seen
        .lock()
        .unwrap()
        .push(Seen::MessageReport(from, channels.clone()));
    let day = shared
        .script
        .lock()
        .unwrap()
        .message_reports
        .get(&from)
        .cloned()
        .unwrap_or(MessageDay::Ready(Vec::new()));
    match day {
        MessageDay::Ready(messages) => {
            let messages: Vec<Value> = messages
                .into_iter()
                .filter(|m| {
                    channels.is_empty()
                        || m["channel"]
                            .as_str()
                            .is_some_and(|c| channels.contains(&c.to_ascii_lowercase()))
                })
                .collect();
            axum::Json(json!({"status": "success", "messages": messages})).into_response()
        }
        MessageDay::NotCompleted => fail(StatusCode::OK, "This report hasn't been completed", None),
        MessageDay::NoResult500 => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "This report has no result as of yet",
            None,
        ),
    }
}

/// What `targets/result.json` answers for a campaign.
#[derive(Debug, Clone, PartialEq)]
pub enum CampaignReport {
    /// `{"status":"success","result":…}`.
    Ready(Value),
    /// HTTP 200 `{"error":"This target hasn't been completed","status":"fail"}`.
    NotCompleted,
    /// HTTP 500 "This target has no result as of yet".
    NoResult500,
    /// HTTP 200 success without `result`.
    SuccessWithoutResult,
}

#[derive(Default)]
struct Shared {
    data: Mutex<HashMap<(String, i64), Vec<Value>>>,
    cursors: Mutex<HashMap<String, CursorState>>,
    script: Mutex<Script>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    next_cursor_id: AtomicUsize,
    /// Count requests by req_id: the count and the partial answers still to give.
    counts: Mutex<HashMap<u64, (usize, u32)>>,
    blocked: Notify,
    release: Notify,
}

/// The running double; stops when dropped.
pub struct ClevertapApi {
    /// `http://127.0.0.1:PORT`: the value for `CLEVERTAP_API_URL`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ClevertapApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts a request in flight for as long as it lives (a dropped connection included).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn fail(status: StatusCode, error: &str, code: Option<i64>) -> Response {
    let mut body = json!({"status": "fail", "error": error});
    if let Some(code) = code {
        body["code"] = json!(code);
    }
    (status, axum::Json(body)).into_response()
}

impl Shared {
    fn refuse(&self, status: StatusCode, error: &str, code: Option<i64>) -> Response {
        self.seen
            .lock()
            .unwrap()
            .push(Seen::Refused(error.to_string()));
        fail(status, error, code)
    }

    /// Checks the documented auth headers; the refusal when they are wrong.
    fn refuse_auth(&self, headers: &HeaderMap) -> Option<Response> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if header("X-CleverTap-Account-Id") != Some(ACCOUNT)
            || header("X-CleverTap-Passcode") != Some(PASSCODE)
        {
            return Some(self.refuse(StatusCode::UNAUTHORIZED, "Invalid Credentials", Some(401)));
        }
        None
    }

    /// The next scripted quirk that applies to this request, answered.
    fn quirk(&self, is_cursor_get: bool) -> Option<Response> {
        let quirk = {
            let mut script = self.script.lock().unwrap();
            let applies =
                |q: &Quirk| is_cursor_get || !matches!(q, Quirk::InProgress | Quirk::Code2);
            if script.quirks.front().is_some_and(applies) {
                script.quirks.pop_front()
            } else {
                None
            }
        }?;
        self.seen.lock().unwrap().push(Seen::Quirk(quirk));
        Some(match quirk {
            Quirk::TooMany => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many concurrent requests",
            )
                .into_response(),
            Quirk::Code1 => fail(
                StatusCode::OK,
                "Too many requests, please retry later",
                Some(1),
            ),
            Quirk::InProgress => fail(
                StatusCode::OK,
                "Request still in progress, please retry later",
                None,
            ),
            Quirk::Code2 => fail(StatusCode::OK, "Cursor not ready", Some(2)),
            Quirk::ServerError => fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                Some(500),
            ),
        })
    }

    /// A new cursor for a page: base64-like text with `/`, `+` and `=`, so an encoding mistake
    /// on the client shows.
    fn new_cursor(&self, state: CursorState) -> String {
        let id = self.next_cursor_id.fetch_add(1, Ordering::SeqCst);
        let cursor = format!("Zy{id:04}+cur/{}=p{}==", state.day, state.page);
        self.cursors.lock().unwrap().insert(cursor.clone(), state);
        cursor
    }
}

fn day_of(value: &Value) -> Option<i64> {
    let n = value.as_i64()?;
    let (y, m, d) = (n / 10_000, n / 100 % 100, n % 100);
    ((1970..=2100).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)).then_some(n)
}

async fn open_events_cursor(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    open_cursor(shared, query, headers, body, false).await
}

async fn open_profiles_cursor(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    open_cursor(shared, query, headers, body, true).await
}

/// Get Events and Get Profiles open cursors alike; profiles are served from the records set
/// with [`ClevertapApi::set_profiles`] for the window's first day.
async fn open_cursor(
    shared: Arc<Shared>,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
    profiles: bool,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    if let Some(r) = shared.refuse_auth(&headers) {
        return r;
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return shared.refuse(
            StatusCode::BAD_REQUEST,
            "Content-Type must be application/json",
            None,
        );
    }
    if let Some(r) = shared.quirk(false) {
        return r;
    }
    let batch = match query.get("batch_size").map(|b| b.parse::<usize>()) {
        Some(Ok(n)) if (1..=5000).contains(&n) => n,
        None => 10,
        _ => {
            return shared.refuse(
                StatusCode::BAD_REQUEST,
                "batch_size must be 1 to 5000",
                None,
            );
        }
    };
    if profiles && batch % 23 != 0 {
        return shared.refuse(
            StatusCode::BAD_REQUEST,
            "batch_size must be a multiple of 23",
            None,
        );
    }
    let (event, from, to) = match event_window(&body) {
        Ok(w) => w,
        Err(message) => return shared.refuse(StatusCode::BAD_REQUEST, message, None),
    };
    let key = if profiles {
        format!("profiles/{event}")
    } else {
        event.clone()
    };
    let event = event.as_str();
    if !profiles && from != to {
        return shared.refuse(
            StatusCode::BAD_REQUEST,
            "the double serves one day per cursor",
            None,
        );
    }
    if shared
        .script
        .lock()
        .unwrap()
        .refused_events
        .iter()
        .any(|e| e == event)
    {
        return shared.refuse(
            StatusCode::OK,
            "Export not allowed for this event",
            Some(400),
        );
    }
    shared
        .seen
        .lock()
        .unwrap()
        .push(Seen::Open(event.to_string(), from));
    let cursor = shared.new_cursor(CursorState {
        event: key,
        day: from,
        page: 0,
        batch,
    });
    axum::Json(json!({"status": "success", "cursor": cursor})).into_response()
}

async fn page(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    if let Some(r) = shared.refuse_auth(&headers) {
        return r;
    }
    let Some(cursor) = query.get("cursor") else {
        return shared.refuse(StatusCode::BAD_REQUEST, "cursor is required", None);
    };
    // The query value arrives decoded once: a cursor the client encoded twice is unknown here.
    let Some(state) = shared.cursors.lock().unwrap().get(cursor).cloned() else {
        return shared.refuse(StatusCode::BAD_REQUEST, "Invalid cursor", Some(400));
    };
    if let Some(r) = shared.quirk(true) {
        return r;
    }
    let (delay, repeat, blocked, endless, padding) = {
        let script = shared.script.lock().unwrap();
        let here = |at: &Option<(String, u64)>| {
            at.as_ref()
                .is_some_and(|(e, p)| *e == state.event && *p == state.page)
        };
        (
            script.page_delay,
            here(&script.repeat_cursor_at),
            here(&script.block_at),
            script.endless_cursors.contains(&state.event),
            script.page_padding,
        )
    };
    if blocked {
        // Never answers while blocked: the test kills the client meanwhile.
        shared.blocked.notify_one();
        loop {
            let released = shared.release.notified();
            if shared.script.lock().unwrap().block_at.is_none() {
                break;
            }
            released.await;
        }
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let records: Vec<Value> = {
        let data = shared.data.lock().unwrap();
        let all = data
            .get(&(state.event.clone(), state.day))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let start = (state.page as usize * state.batch).min(all.len());
        let end = (start + state.batch).min(all.len());
        all[start..end].to_vec()
    };
    let total = shared
        .data
        .lock()
        .unwrap()
        .get(&(state.event.clone(), state.day))
        .map_or(0, Vec::len);
    let more = (state.page as usize + 1) * state.batch < total;
    shared
        .seen
        .lock()
        .unwrap()
        .push(Seen::Page(state.event.clone(), state.day, state.page));
    let mut body = json!({"status": "success", "previous_cursor": "", "records": records});
    if padding > 0 {
        body["pad"] = json!("x".repeat(padding));
    }
    if repeat {
        body["next_cursor"] = json!(encode(cursor));
    } else if more || endless {
        let next = shared.new_cursor(CursorState {
            page: state.page + 1,
            ..state
        });
        // CleverTap sends next_cursor percent-encoded.
        body["next_cursor"] = json!(encode(&next));
    }
    axum::Json(body).into_response()
}

/// The documented body of Get Events and Get Event Count: event name and a YYYYMMDD window.
fn event_window(body: &Bytes) -> Result<(String, i64, i64), &'static str> {
    let body: Value = serde_json::from_slice(body).map_err(|_| "Invalid JSON body")?;
    match (
        body.get("event_name").and_then(Value::as_str),
        body.get("from").and_then(day_of),
        body.get("to").and_then(day_of),
    ) {
        (Some(event), Some(from), Some(to)) if from <= to => Ok((event.to_string(), from, to)),
        _ => Err("event_name (text), from and to (YYYYMMDD numbers, from <= to) are required"),
    }
}

async fn event_count_open(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    count_open(shared, headers, body, "").await
}

async fn profile_count_open(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    count_open(shared, headers, body, "profiles/").await
}

/// Counts the records served for the event (events, or with `prefix` `profiles/` the
/// profiles) on the days of the window.
async fn count_open(
    shared: Arc<Shared>,
    headers: HeaderMap,
    body: Bytes,
    prefix: &str,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    if let Some(r) = shared.refuse_auth(&headers) {
        return r;
    }
    if let Some(r) = shared.quirk(false) {
        return r;
    }
    let (event, from, to) = match event_window(&body) {
        Ok(w) => w,
        Err(message) => return shared.refuse(StatusCode::BAD_REQUEST, message, None),
    };
    let count: usize = shared
        .data
        .lock()
        .unwrap()
        .iter()
        .filter(|((e, day), _)| *e == format!("{prefix}{event}") && (from..=to).contains(day))
        .map(|(_, records)| records.len())
        .sum();
    let polls = shared.script.lock().unwrap().partial_polls;
    let req_id = 384_649_162_721_759 + shared.next_cursor_id.fetch_add(1, Ordering::SeqCst) as u64;
    shared.counts.lock().unwrap().insert(req_id, (count, polls));
    count_answer(&shared, req_id, format!("{event} {from}-{to}"))
}

async fn count_poll(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    if let Some(r) = shared.refuse_auth(&headers) {
        return r;
    }
    match query.get("req_id").and_then(|r| r.parse::<u64>().ok()) {
        Some(req_id) if shared.counts.lock().unwrap().contains_key(&req_id) => {
            count_answer(&shared, req_id, format!("req_id {req_id}"))
        }
        _ => shared.refuse(StatusCode::BAD_REQUEST, "Invalid req_id", None),
    }
}

/// `partial` while the request has partial answers left, then the count.
fn count_answer(shared: &Shared, req_id: u64, what: String) -> Response {
    let (count, partial) = {
        let mut counts = shared.counts.lock().unwrap();
        let entry = counts.get_mut(&req_id).expect("known req_id");
        let partial = entry.1 > 0;
        entry.1 = entry.1.saturating_sub(1);
        (entry.0, partial)
    };
    shared.seen.lock().unwrap().push(Seen::Count(what, partial));
    if partial {
        axum::Json(json!({"req_id": req_id, "status": "partial"})).into_response()
    } else {
        axum::Json(json!({"status": "success", "count": count})).into_response()
    }
}

/// Days between two YYYYMMDD numbers, both counted.
fn window_days(from: i64, to: i64) -> Option<i64> {
    let date = |n: i64| {
        jiff::civil::Date::new(n as i16 / 10_000, (n / 100 % 100) as i8, (n % 100) as i8).ok()
    };
    let days = date(from)?.until(date(to)?).ok()?.get_days();
    Some(i64::from(days) + 1)
}

async fn campaign_list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    if let Some(r) = shared.refuse_auth(&headers) {
        return r;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let (Some(from), Some(to)) = (
        body.get("from").and_then(day_of),
        body.get("to").and_then(day_of),
    ) else {
        return shared.refuse(
            StatusCode::BAD_REQUEST,
            "from and to (YYYYMMDD) are required",
            None,
        );
    };
    match window_days(from, to) {
        Some(1..=31) => {}
        _ => {
            return shared.refuse(
                StatusCode::BAD_REQUEST,
                "the window must be 1 to 31 days",
                None,
            );
        }
    }
    shared
        .seen
        .lock()
        .unwrap()
        .push(Seen::CampaignList(from, to));
    let targets: Vec<Value> = shared
        .script
        .lock()
        .unwrap()
        .campaigns
        .iter()
        .filter(|(day, ..)| (from..=to).contains(day))
        .map(|(_, target, _)| target.clone())
        .collect();
    axum::Json(json!({"status": "success", "targets": targets})).into_response()
}

async fn campaign_result(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    if let Some(r) = shared.refuse_auth(&headers) {
        return r;
    }
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b.get("id").cloned())
        .filter(Value::is_number);
    let Some(id) = id else {
        return shared.refuse(StatusCode::BAD_REQUEST, "id (a number) is required", None);
    };
    let report = shared
        .script
        .lock()
        .unwrap()
        .campaigns
        .iter()
        .find(|(_, target, _)| target["id"] == id)
        .map(|(.., report)| report.clone());
    let Some(report) = report else {
        return shared.refuse(StatusCode::OK, "Invalid target id", Some(400));
    };
    shared
        .seen
        .lock()
        .unwrap()
        .push(Seen::CampaignReport(id.to_string()));
    match report {
        CampaignReport::Ready(result) => {
            axum::Json(json!({"status": "success", "result": result})).into_response()
        }
        CampaignReport::NotCompleted => {
            fail(StatusCode::OK, "This target hasn't been completed", None)
        }
        CampaignReport::NoResult500 => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "This target has no result as of yet",
            None,
        ),
        CampaignReport::SuccessWithoutResult => {
            axum::Json(json!({"status": "success"})).into_response()
        }
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `n` Get Events records of one day, one a minute from midnight (project time), shaped like
/// the documented example: nested `profile`, `event_props`, `session_props`.
pub fn event_records(day: i64, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "profile": {
                    "objectId": format!("obj-{i}"),
                    "platform": "Web",
                    "email": format!("u{i}@example.com"),
                    "profileData": {"favoriteColor": "blue"},
                    "identity": format!("u{i}"),
                    "id": i,
                },
                "ts": day * 1_000_000 + (i as i64 / 60 % 24) * 10_000 + (i as i64 % 60) * 100,
                "event_props": {"Amount": i, "Currency": "EUR"},
                "session_props": {"utm_source": "Foo", "session_source": "Direct"},
            })
        })
        .collect()
}

/// Profile records as Get Profiles pages them: `identity`, `profileData`, `platformInfo`.
pub fn profile_records(n: usize, color: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "identity": format!("u{i}"),
                "profileData": {"favoriteColor": color, "tier": i % 3},
                "platformInfo": [
                    {"platform": "iOS", "push_token": format!("tok{i}"), "objectId": format!("-ios{i}")},
                    {"platform": "Web", "objectId": format!("web{i}")}
                ],
            })
        })
        .collect()
}

impl ClevertapApi {
    /// Starts the double on a free loopback port.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route("/1/events.json", post(open_events_cursor).get(page))
            .route("/1/profiles.json", post(open_profiles_cursor).get(page))
            .route(
                "/1/counts/events.json",
                post(event_count_open).get(count_poll),
            )
            .route(
                "/1/counts/profiles.json",
                post(profile_count_open).get(count_poll),
            )
            .route("/1/targets/list.json", post(campaign_list))
            .route("/1/targets/result.json", post(campaign_result))
            .route("/1/message/report.json", post(message_report))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { url, shared, task }
    }

    /// Serves `records` for `event` on `day` (YYYYMMDD), replacing what was there.
    pub fn set_events(&self, event: &str, day: i64, records: Vec<Value>) {
        self.shared
            .data
            .lock()
            .unwrap()
            .insert((event.to_string(), day), records);
    }

    /// Serves profile `records` to Get Profiles for `event` over a window starting on `from`.
    pub fn set_profiles(&self, event: &str, from: i64, records: Vec<Value>) {
        self.set_events(&format!("profiles/{event}"), from, records);
    }

    /// Answers the next requests with these quirks, in order, before answering normally.
    pub fn quirks(&self, quirks: &[Quirk]) {
        self.shared.script.lock().unwrap().quirks.extend(quirks);
    }

    /// Quirks not answered yet.
    pub fn quirks_left(&self) -> usize {
        self.shared.script.lock().unwrap().quirks.len()
    }

    /// Waits this long before answering each page.
    pub fn page_delay(&self, delay: Duration) {
        self.shared.script.lock().unwrap().page_delay = delay;
    }

    /// Page `page` of `event` answers with its own cursor as `next_cursor`.
    pub fn repeat_cursor_at(&self, event: &str, page: u64) {
        self.shared.script.lock().unwrap().repeat_cursor_at = Some((event.to_string(), page));
    }

    /// Every page of `event` names a new next cursor, even past its records: paging never
    /// ends on its own.
    pub fn endless_cursors(&self, event: &str) {
        self.shared
            .script
            .lock()
            .unwrap()
            .endless_cursors
            .push(event.to_string());
    }

    /// Every page carries `bytes` bytes of padding (an oversized answer).
    pub fn pad_pages(&self, bytes: usize) {
        self.shared.script.lock().unwrap().page_padding = bytes;
    }

    /// Opening a cursor for `event` answers "Export not allowed for this event".
    pub fn refuse_event(&self, event: &str) {
        self.shared
            .script
            .lock()
            .unwrap()
            .refused_events
            .push(event.to_string());
    }

    /// Each count request answers `partial` this many times before its count (`u32::MAX`:
    /// never complete).
    pub fn partial_polls(&self, polls: u32) {
        self.shared.script.lock().unwrap().partial_polls = polls;
    }

    /// A campaign created on `day` (YYYYMMDD) whose report answers `report`.
    pub fn add_campaign(&self, day: i64, id: u64, name: &str, report: CampaignReport) {
        let target = json!({"id": id, "name": name, "status": "completed", "start_date": day});
        self.shared
            .script
            .lock()
            .unwrap()
            .campaigns
            .push((day, target, report));
    }

    /// What `message/report.json` answers for `day` (YYYYMMDD); days not set have no messages.
    pub fn set_message_day(&self, day: i64, answer: MessageDay) {
        self.shared
            .script
            .lock()
            .unwrap()
            .message_reports
            .insert(day, answer);
    }

    /// Page `page` of `event` does not answer until [`Self::unblock`].
    pub fn block_at(&self, event: &str, page: u64) {
        self.shared.script.lock().unwrap().block_at = Some((event.to_string(), page));
    }

    /// Waits until a request reached the blocked page.
    pub async fn wait_until_blocked(&self) {
        tokio::time::timeout(Duration::from_secs(120), self.shared.blocked.notified())
            .await
            .expect("no request reached the blocked page within 120 s");
    }

    /// Forgets every cursor handed out (as CleverTap does when they expire).
    pub fn forget_cursors(&self) {
        self.shared.cursors.lock().unwrap().clear();
    }

    /// Lets the blocked page answer.
    pub fn unblock(&self) {
        self.shared.script.lock().unwrap().block_at = None;
        self.shared.release.notify_waiters();
    }

    /// What the double answered, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The most requests that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// The environment `tapline pull` needs to reach this double (short backoff).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CLEVERTAP_ACCOUNT_ID", ACCOUNT.to_string()),
            ("CLEVERTAP_PASSCODE", PASSCODE.to_string()),
            ("CLEVERTAP_API_URL", self.url.clone()),
            ("CLEVERTAP_BACKOFF_MS", "1".to_string()),
        ]
    }

    /// `tapline` with `args` and [`Self::env`], without Tapline's own variables from the
    /// environment; `env` entries are added or override (`("CLEVERTAP_PASSCODE", "")`).
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
        // TAPLINE_BIN points benchmarks at an optimised build.
        let program = std::env::var_os("TAPLINE_BIN")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| crate::bin("tapline"));
        let mut command = crate::command_without_user_env(program);
        command.args(args);
        for (name, value) in self.env() {
            command.env(name, value);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        command
    }

    /// Runs `tapline` (see [`Self::command`]) on a blocking thread, so this double keeps
    /// answering meanwhile.
    pub async fn tapline(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.command(args, env);
        tokio::task::spawn_blocking(move || Run::from(command.output().expect("run tapline")))
            .await
            .unwrap()
    }
}
