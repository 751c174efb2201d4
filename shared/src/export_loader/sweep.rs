//! Sweeps: list a location and load every export object the ledger does not have yet, so a lost
//! bucket event never means a lost file. Backfills (`--since`) are sweeps over older dates.
//!
//! The same code serves the export loader's scheduled invocation on Lambda
//! (`{"tapline": "sweep", "uri": "s3://…"}` from EventBridge Scheduler), `POST /sweep` on
//! Cloud Run (Cloud Scheduler) and, for its ledger read, `tapline sweep`. A sweep reads the
//! ledger once for the whole prefix, then loads only what it lacks, newest first.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use jiff::civil::Date;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

use crate::Error;
use crate::config::LoadConfig;
use crate::export::{Recognition, recognise};
use crate::export_loader::load::{FileOutcome, FileReport, load_object};
use crate::storage::{ObjectEntry, ObjectSource};
use crate::warehouse::{LoadStatus, Warehouse, WarehouseError};

/// The value of `"tapline"` that marks a scheduled sweep payload.
pub const SWEEP_MARKER: &str = "sweep";

/// Days of exports a scheduled sweep considers when its request names neither `since` nor
/// `window_days`: a week of lost events is caught, and a sweep's work stays flat however many
/// years of exports the prefix holds.
pub const DEFAULT_SWEEP_WINDOW_DAYS: u32 = 7;

/// A scheduled sweep: `{"tapline": "sweep", "uri": "s3://bucket/prefix"}`, optionally with
/// `"since": "2022-09-01"` (a fixed first day) or `"window_days": 30` (a rolling window; 0 for
/// every export under the prefix), and `"request_id": "1690283492"` (only that export request's
/// objects: what the relay's `export-status` destination asks for). On Cloud Run the body of
/// `POST /sweep` is the same without `"tapline"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SweepRequest {
    /// The location to list: `s3://bucket/prefix` or `gs://bucket/prefix`.
    pub uri: String,
    /// Only exports dated on or after this day (objects without a date are always considered).
    #[serde(default)]
    pub since: Option<Date>,
    /// Without `since`: only exports dated within this many days before today (UTC); 0 for no
    /// window; absent for [`DEFAULT_SWEEP_WINDOW_DAYS`].
    #[serde(default)]
    pub window_days: Option<u32>,
    /// Only the objects of this CleverTap export request (the first number of their names);
    /// absent for every export under `uri`.
    #[serde(default, deserialize_with = "request_id_field")]
    pub request_id: Option<String>,
}

/// Most digits of an export request id (a `u64` has 20).
const MAX_REQUEST_ID_DIGITS: usize = 20;

/// `request_id` as digits: a JSON number or a string of at most 20 digits; anything else is
/// refused, so a malformed filter never widens into a sweep of the whole prefix.
fn request_id_field<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error as _;
    match Option::<Value>::deserialize(de)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| Some(n.to_string()))
            .ok_or_else(|| D::Error::custom("request_id must be a positive whole number")),
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= MAX_REQUEST_ID_DIGITS
                && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(Some(s))
        }
        Some(_) => Err(D::Error::custom(
            "request_id must be the export request id's digits (at most 20)",
        )),
    }
}

impl SweepRequest {
    /// The first export date this sweep considers on `today`: `since` when given, else the
    /// rolling window's first day, else none (every export).
    pub fn effective_since(&self, today: Date) -> Option<Date> {
        if self.since.is_some() {
            return self.since;
        }
        match self.window_days.unwrap_or(DEFAULT_SWEEP_WINDOW_DAYS) {
            0 => None,
            days => today
                .checked_sub(jiff::Span::new().days(i64::from(days)))
                .ok(),
        }
    }

    /// The sweep request a Lambda payload carries, if it is one. `Err` when it is marked as a
    /// sweep but malformed (a configuration mistake in the schedule).
    pub fn from_payload(value: &Value) -> Option<Result<Self, serde_json::Error>> {
        (value.get("tapline").and_then(Value::as_str) == Some(SWEEP_MARKER))
            .then(|| serde_json::from_value(value.clone()))
    }
}

/// Keeps the entries dated on or after `since` (and those whose name carries no date, which
/// the loader reports on itself); returns how many were left out.
pub fn retain_since<T>(
    entries: &mut Vec<T>,
    since: Option<Date>,
    entry: impl Fn(&T) -> &ObjectEntry,
) -> usize {
    let Some(since) = since else { return 0 };
    let before = entries.len();
    entries.retain(|item| match recognise(&entry(item).key) {
        Recognition::Export(export) => export.data_date.is_none_or(|d| d >= since),
        Recognition::Skip(_) => true,
    });
    before - entries.len()
}

/// Counts of a run's outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// Loaded now.
    pub loaded: usize,
    /// Already in the ledger: skipped.
    pub already_loaded: usize,
    /// Quarantined (now or before).
    pub quarantined: usize,
    /// Failed; retried by the next event or sweep.
    pub failed: usize,
    /// Not exports.
    pub skipped: usize,
}

impl OutcomeCounts {
    /// Counts `reports`.
    pub fn of(reports: &[FileReport]) -> Self {
        let mut counts = Self::default();
        for report in reports {
            match report.outcome {
                FileOutcome::Loaded(_) => counts.loaded += 1,
                FileOutcome::AlreadyLoaded(_) => counts.already_loaded += 1,
                FileOutcome::Quarantined(_) => counts.quarantined += 1,
                FileOutcome::Failed { .. } => counts.failed += 1,
                FileOutcome::Skipped { .. } => counts.skipped += 1,
            }
        }
        counts
    }

    /// The one line `tapline sweep` prints.
    pub fn sweep_line(&self) -> String {
        format!(
            "Sweep: {} new objects loaded; {} already in the ledger, skipped.",
            self.loaded, self.already_loaded
        )
    }
}

/// What a sweep did.
#[derive(Debug, Clone)]
pub struct SweepReport {
    /// The location swept.
    pub uri: String,
    /// The report of every object the sweep tried, newest first.
    pub reports: Vec<FileReport>,
    /// Objects the ledger read showed as handled (loaded, or quarantined), so not tried.
    pub in_ledger: InLedger,
    /// Objects left out by `since` (or the rolling window).
    pub older: usize,
    /// The first export date considered, if any.
    pub since: Option<Date>,
    /// The export dates of the objects considered (loaded now, before, or failed), ascending:
    /// the days a reconcile after this sweep should check.
    pub days: Vec<Date>,
}

/// Objects a sweep left alone because the ledger already has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InLedger {
    /// Loaded (or replaced since).
    pub loaded: usize,
    /// Quarantined, with no retry of quarantined versions asked for.
    pub quarantined: usize,
}

impl SweepReport {
    /// Outcome counts, the objects found in the ledger included.
    pub fn counts(&self) -> OutcomeCounts {
        let mut counts = OutcomeCounts::of(&self.reports);
        counts.already_loaded += self.in_ledger.loaded;
        counts.quarantined += self.in_ledger.quarantined;
        counts
    }

    /// The failed objects with their errors.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.reports.iter().filter_map(|r| match &r.outcome {
            FileOutcome::Failed { error, .. } => Some((r.entry.uri.as_str(), error.as_str())),
            _ => None,
        })
    }

    /// A JSON summary for invocation responses and logs: counts and the failures.
    pub fn to_json(&self) -> Value {
        let c = self.counts();
        let failures: Vec<Value> = self
            .failures()
            .map(|(uri, error)| json!({ "uri": uri, "error": error }))
            .collect();
        json!({
            "uri": self.uri,
            "listed": self.reports.len() + self.in_ledger.loaded + self.in_ledger.quarantined
                + self.older,
            "since": self.since.map(|d| d.to_string()),
            "loaded": c.loaded,
            "already_loaded": c.already_loaded,
            "quarantined": c.quarantined,
            "failed": c.failed,
            "skipped": c.skipped,
            "older_than_since": self.older,
            "days": self.days.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "failures": failures,
        })
    }
}

/// Lists `request.uri` on `source` (only `request.request_id`'s objects when given), reads the
/// ledger once for what it holds there, and loads, one by one and newest first, what it lacks. Errors when the listing or the ledger read fails
/// (nothing is loaded then: a ledger in doubt never leads to a load); each object's failure is
/// in its report. Each load still checks the ledger inside its own transaction, so an object
/// loaded meanwhile by an event is not loaded twice.
pub async fn sweep(
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    request: &SweepRequest,
    config: &LoadConfig,
) -> Result<SweepReport, Error> {
    let wanted = request.request_id.as_deref();
    sweep_matching(source, warehouse, request, config, |entry| {
        wanted.is_none_or(|id| match recognise(&entry.key) {
            Recognition::Export(export) => export.request_id.as_deref() == Some(id),
            Recognition::Skip(_) => false,
        })
    })
    .await
}

/// [`sweep`] of the listed objects `keep` accepts (one export request's, say).
async fn sweep_matching(
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    request: &SweepRequest,
    config: &LoadConfig,
    keep: impl Fn(&ObjectEntry) -> bool,
) -> Result<SweepReport, Error> {
    let Pending {
        todo,
        in_ledger,
        older,
        since,
        days,
    } = pending(source, warehouse, request, config, keep).await?;
    let mut reports = Vec::with_capacity(todo.len());
    for entry in &todo {
        let read = Arc::new(AtomicU64::new(0));
        reports.push(load_object(source, warehouse, entry, config, read).await);
    }
    let report = SweepReport {
        uri: request.uri.clone(),
        reports,
        in_ledger,
        older,
        since,
        days,
    };
    let c = report.counts();
    info!(
        uri = %report.uri,
        loaded = c.loaded,
        already_loaded = c.already_loaded,
        quarantined = c.quarantined,
        failed = c.failed,
        skipped = c.skipped,
        older_than_since = older,
        "Sweep finished."
    );
    Ok(report)
}

/// What a sweep would do now, before it loads anything: see [`pending`].
#[derive(Debug, Clone)]
pub struct Pending {
    /// The objects it would try, newest first.
    pub todo: Vec<ObjectEntry>,
    /// Objects the ledger shows as handled.
    pub in_ledger: InLedger,
    /// Objects left out by `since` (or the rolling window).
    pub older: usize,
    /// The first export date considered, if any.
    pub since: Option<Date>,
    /// The distinct export dates of the objects listed within the request's dates, ascending
    /// (loaded or not): the days a reconcile after the sweep covers.
    pub days: Vec<Date>,
}

/// Lists `request.uri` on `source`, keeps what `keep` accepts within the request's dates, and
/// reads the ledger once for what it holds there: the objects a sweep would try, newest first.
/// Errors when the listing or the ledger read fails. `tapline status` asks this too, so what it
/// calls unloaded is exactly what a sweep would load.
pub async fn pending(
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    request: &SweepRequest,
    config: &LoadConfig,
    keep: impl Fn(&ObjectEntry) -> bool,
) -> Result<Pending, Error> {
    let mut entries = source.list(&request.uri).await?;
    entries.retain(|e| keep(e));
    let since = request.effective_since(today_utc());
    let older = retain_since(&mut entries, since, |e| e);
    let days = export_days(&entries);
    let (mut todo, in_ledger) =
        not_in_ledger(warehouse, entries, config.retry_quarantined, |e| e).await?;
    newest_first(&mut todo, |e| e);
    Ok(Pending {
        todo,
        in_ledger,
        older,
        since,
        days,
    })
}

/// The distinct export dates of `entries`, ascending.
fn export_days(entries: &[ObjectEntry]) -> Vec<Date> {
    let days: std::collections::BTreeSet<Date> = entries
        .iter()
        .filter_map(|e| match recognise(&e.key) {
            Recognition::Export(export) => export.data_date,
            Recognition::Skip(_) => None,
        })
        .collect();
    days.into_iter().collect()
}

/// Today in UTC.
fn today_utc() -> Date {
    jiff::tz::Offset::UTC
        .to_datetime(jiff::Timestamp::now())
        .date()
}

/// Splits `items` into those the ledger does not show as handled, and counts of those it does,
/// with one ledger read for the uris' common prefix. A failed read is an error.
pub async fn not_in_ledger<T>(
    warehouse: &dyn Warehouse,
    items: Vec<T>,
    retry_quarantined: bool,
    entry: impl Fn(&T) -> &ObjectEntry,
) -> Result<(Vec<T>, InLedger), WarehouseError> {
    let mut in_ledger = InLedger::default();
    if items.is_empty() {
        return Ok((items, in_ledger));
    }
    let prefix = common_prefix(items.iter().map(|i| entry(i).uri.as_str()));
    let mut done: HashMap<(String, String), LoadStatus> = HashMap::new();
    for v in warehouse.ledger_versions(prefix).await? {
        if v.is_done(retry_quarantined) {
            done.insert((v.uri, v.version), v.status);
        }
    }
    let mut todo = Vec::with_capacity(items.len().saturating_sub(done.len()));
    for item in items {
        let e = entry(&item);
        // The lookup key borrows nothing from the item, so it can move on.
        match done.get(&(e.uri.clone(), e.version.clone())) {
            Some(LoadStatus::Quarantined) => in_ledger.quarantined += 1,
            Some(_) => in_ledger.loaded += 1,
            None => todo.push(item),
        }
    }
    Ok((todo, in_ledger))
}

/// The longest common prefix of `uris`, cut at a character boundary.
fn common_prefix<'a>(mut uris: impl Iterator<Item = &'a str>) -> &'a str {
    let Some(first) = uris.next() else { return "" };
    let mut len = first.len();
    for uri in uris {
        len = first
            .bytes()
            .zip(uri.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    &first[..len]
}

/// Orders objects newest first: by the export's date, then by name (CleverTap names start with
/// the export window's epoch seconds), so a sweep short of time loads the recent files first.
pub fn newest_first<T>(items: &mut [T], entry: impl Fn(&T) -> &ObjectEntry) {
    let date = |item: &T| match recognise(&entry(item).key) {
        Recognition::Export(export) => export.data_date,
        Recognition::Skip(_) => None,
    };
    items.sort_by_cached_key(|item| std::cmp::Reverse((date(item), entry(item).key.clone())));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listed object `s3://b/KEY` of version `v`.
    fn entry(key: &str) -> ObjectEntry {
        ObjectEntry {
            uri: format!("s3://b/{key}"),
            key: key.to_string(),
            version: "v".to_string(),
            size: None,
            created_at: None,
        }
    }

    #[test]
    fn sweep_payloads_are_recognised_by_their_marker() {
        let v: Value =
            serde_json::from_str(r#"{"tapline":"sweep","uri":"s3://b/p/","since":"2022-09-01"}"#)
                .unwrap();
        let request = SweepRequest::from_payload(&v).unwrap().unwrap();
        assert_eq!(request.uri, "s3://b/p/");
        assert_eq!(request.since, Some(jiff::civil::date(2022, 9, 1)));

        let not_sweep: Value = serde_json::from_str(r#"{"Records":[]}"#).unwrap();
        assert!(SweepRequest::from_payload(&not_sweep).is_none());

        let broken: Value = serde_json::from_str(r#"{"tapline":"sweep"}"#).unwrap();
        let err = SweepRequest::from_payload(&broken).unwrap().unwrap_err();
        assert!(err.to_string().contains("missing field `uri`"), "{err}");
    }

    #[test]
    fn a_request_id_narrows_a_sweep_and_a_malformed_one_is_refused() {
        let parse = |text: &str| serde_json::from_str::<SweepRequest>(text);
        let by_text = parse(r#"{"uri":"s3://b/p/","request_id":"1690283492"}"#).unwrap();
        let by_number = parse(r#"{"uri":"s3://b/p/","request_id":1690283492}"#).unwrap();
        assert_eq!(by_text.request_id.as_deref(), Some("1690283492"));
        assert_eq!(by_text, by_number);
        assert_eq!(parse(r#"{"uri":"s3://b/p/"}"#).unwrap().request_id, None);
        for bad in [
            r#""../x""#,
            r#""""#,
            "-1",
            "1.5",
            r#""123456789012345678901""#,
        ] {
            let err = parse(&format!(r#"{{"uri":"s3://b/","request_id":{bad}}}"#)).unwrap_err();
            assert!(
                err.to_string().starts_with("request_id must be"),
                "{bad}: {err}"
            );
        }
        let entries = [
            entry("e/1690283492-1690300000-Charged-20220922-0-0.csv.gz"),
            entry("e/1690283492-1690300000-Charged-20220921-1-0.csv.gz"),
            entry("e/1690283492-1690300000-Charged-20220921-0-0.csv.gz"),
            entry("notes.txt"),
        ];
        assert_eq!(
            export_days(&entries),
            [
                jiff::civil::date(2022, 9, 21),
                jiff::civil::date(2022, 9, 22)
            ]
        );
    }

    #[test]
    fn since_keeps_newer_exports_and_names_without_a_date() {
        let mut entries = vec![
            entry("events/1663664837-1663785000-Charged-20220831-0-0.csv.gz"),
            entry("events/1663664837-1663785000-Charged-20220902-0-0.csv.gz"),
            entry("notes.txt"),
        ];
        let older = retain_since(&mut entries, Some(jiff::civil::date(2022, 9, 1)), |e| e);
        assert_eq!(older, 1);
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "events/1663664837-1663785000-Charged-20220902-0-0.csv.gz",
                "notes.txt"
            ]
        );
    }

    #[test]
    fn scheduled_sweeps_look_back_a_rolling_window_unless_told_otherwise() {
        let today = jiff::civil::date(2022, 9, 21);
        let request = |body: &str| -> SweepRequest { serde_json::from_str(body).unwrap() };
        assert_eq!(
            request(r#"{"uri":"s3://b/"}"#).effective_since(today),
            Some(jiff::civil::date(2022, 9, 14))
        );
        assert_eq!(
            request(r#"{"uri":"s3://b/","window_days":30}"#).effective_since(today),
            Some(jiff::civil::date(2022, 8, 22))
        );
        assert_eq!(
            request(r#"{"uri":"s3://b/","window_days":0}"#).effective_since(today),
            None
        );
        assert_eq!(
            request(r#"{"uri":"s3://b/","since":"2020-01-01","window_days":3}"#)
                .effective_since(today),
            Some(jiff::civil::date(2020, 1, 1))
        );
    }

    #[test]
    fn ledger_reads_cover_the_common_prefix_and_loads_go_newest_first() {
        assert_eq!(
            common_prefix(["s3://b/e/2022-09-21/a", "s3://b/e/2022-09-22/b"].into_iter()),
            "s3://b/e/2022-09-2"
        );
        assert_eq!(
            common_prefix(["s3://b/é1", "s3://b/é2"].into_iter()),
            "s3://b/é"
        );
        assert_eq!(
            common_prefix(["s3://b/\u{e9}", "s3://b/\u{e8}"].into_iter()),
            "s3://b/"
        );
        assert_eq!(common_prefix(["file:///x"].into_iter()), "file:///x");
        let mut entries = vec![
            entry("e/1663664837-1663785000-Charged-20220921-0-0.csv.gz"),
            entry("notes.txt"),
            entry("e/1663751237-1663837637-Charged-20220922-0-0.csv.gz"),
            entry("e/1663664900-1663785000-Charged-20220921-0-0.csv.gz"),
        ];
        newest_first(&mut entries, |e| e);
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "e/1663751237-1663837637-Charged-20220922-0-0.csv.gz",
                "e/1663664900-1663785000-Charged-20220921-0-0.csv.gz",
                "e/1663664837-1663785000-Charged-20220921-0-0.csv.gz",
                "notes.txt",
            ]
        );
    }
}
