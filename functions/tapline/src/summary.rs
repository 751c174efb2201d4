//! Plain-text tables for the terminal: the load summary, the ledger, query results.

use std::fmt::Write;
use std::time::Duration;

#[cfg(feature = "clevertap-api")]
use tapline::api_puller::checkpoint::StoredCheckpoint;
use tapline::config::LoadConfig;
use tapline::export::{Recognition, recognise};
use tapline::export_loader::freshness::{Freshness, Unloaded, human_duration};
use tapline::export_loader::load::{FileOutcome, FileReport};
use tapline::printable::escaped;
use tapline::time::format_utc;
use tapline::warehouse::profile_views::ProfileSummary;
use tapline::warehouse::{ColumnMisfit, LoadRecord};

/// Left-aligned text columns, right-aligned numbers, two spaces between. Every cell is printed
/// through [`escaped`]: names, URIs and errors come from export objects and the warehouse.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| escaped(h).into_owned()).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escaped(c).into_owned()).collect())
        .collect();
    let (header, rows) = (&header, &rows);
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let numeric: Vec<bool> = (0..header.len())
        .map(|i| {
            !rows.is_empty()
                && rows.iter().all(|r| {
                    r.get(i)
                        .is_some_and(|c| c.replace(',', "").parse::<f64>().is_ok())
                })
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let w = widths[i];
            if i > 0 {
                text.push_str("  ");
            }
            if numeric[i] {
                let _ = write!(text, "{cell:>w$}");
            } else {
                let _ = write!(text, "{cell:<w$}");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, header);
    line(
        &mut out,
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    );
    for row in rows {
        line(&mut out, row);
    }
    out
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1_000_000.0)
}

#[derive(Default)]
struct Tally {
    files: u64,
    rows: u64,
    rejected: u64,
    bytes: u64,
}

/// The summary printed after `tapline load`.
pub fn render(
    reports: &[FileReport],
    elapsed: Duration,
    warehouse: &str,
    config: &LoadConfig,
    list_files: bool,
) -> String {
    let labels = [
        "loaded",
        "already loaded",
        "quarantined",
        "failed",
        "skipped",
    ];
    let mut tallies: Vec<Tally> = labels.iter().map(|_| Tally::default()).collect();
    let mut decoded = 0u64;
    let mut read = 0u64;
    for r in reports {
        let i = labels
            .iter()
            .position(|l| *l == r.outcome.label())
            .unwrap_or(0);
        let t = &mut tallies[i];
        t.files += 1;
        let size = r.entry.size.unwrap_or(0);
        match &r.outcome {
            FileOutcome::Loaded(rec) => {
                t.rows += rec.rows_loaded;
                t.rejected += rec.rows_rejected;
                t.bytes += size;
                decoded += r.decoded_bytes;
                read += size;
            }
            FileOutcome::Quarantined(rec) => {
                t.rejected += rec.rows_rejected;
                t.bytes += size;
                read += rec.bytes.unwrap_or(0).min(size);
            }
            _ => t.bytes += size,
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nTapline load into {} (time zone {}, max reject ratio {:.2} %)\n",
        escaped(warehouse),
        config.timezone_name,
        config.max_reject_ratio * 100.0
    );
    let rows: Vec<Vec<String>> = labels
        .iter()
        .zip(&tallies)
        .map(|(label, t)| {
            vec![
                label.to_string(),
                thousands(t.files),
                thousands(t.rows),
                thousands(t.rejected),
                mb(t.bytes),
            ]
        })
        .collect();
    out.push_str(&table(
        &["outcome", "files", "rows", "rejected rows", "MB"],
        &rows,
    ));

    let secs = elapsed.as_secs_f64().max(1e-9);
    let loaded_rows = tallies[0].rows;
    let _ = writeln!(
        out,
        "\n{} rows in {:.2} s: {} rows/s, {:.1} MB/s decompressed, {:.1} MB/s read",
        thousands(loaded_rows),
        secs,
        thousands((loaded_rows as f64 / secs) as u64),
        decoded as f64 / 1e6 / secs,
        read as f64 / 1e6 / secs,
    );

    let detail: Vec<Vec<String>> = reports
        .iter()
        .filter(|r| list_files || !matches!(r.outcome, FileOutcome::Loaded(_)))
        .map(|r| {
            let note = match &r.outcome {
                FileOutcome::Loaded(rec) => format!(
                    "{} rows, {} rejected (load {})",
                    thousands(rec.rows_loaded),
                    rec.rows_rejected,
                    rec.load_id
                ),
                FileOutcome::AlreadyLoaded(rec) => {
                    format!(
                        "{} as load {} at {}",
                        rec.status,
                        rec.load_id,
                        rec.finished_at.as_deref().unwrap_or("?")
                    )
                }
                FileOutcome::Quarantined(rec) => rec.error.clone().unwrap_or_default(),
                FileOutcome::Failed { error, retryable } => {
                    format!("{error}{}", if *retryable { " (will retry)" } else { "" })
                }
                FileOutcome::Skipped { reason } => reason.clone(),
            };
            vec![r.outcome.label().to_string(), r.entry.key.clone(), note]
        })
        .collect();
    if !detail.is_empty() {
        out.push('\n');
        out.push_str(&table(&["outcome", "file", "detail"], &detail));
    }
    if tallies[2].files + tallies[3].files > 0 {
        let _ = writeln!(
            out,
            "\nNot every file loaded: see `tapline status` and the _tapline_rejects table."
        );
    }
    out
}

/// The ledger's recent loads, each with what it held (`events`, `profiles`), then what the
/// warehouse holds of profiles (`None`: no profile loaded yet).
pub fn render_status(
    loads: &[LoadRecord],
    profiles: Option<&ProfileSummary>,
    warehouse: &str,
) -> String {
    let mut out = format!("Recent loads in {}\n\n", escaped(warehouse));
    if loads.is_empty() {
        out.push_str("No loads yet. Run `tapline load PATH` first.\n");
        return out;
    }
    let profile_loads = profiles.map_or(&[][..], |p| &p.profile_loads[..]);
    let rows: Vec<Vec<String>> = loads
        .iter()
        .map(|l| {
            vec![
                l.load_id.to_string(),
                l.status.to_string(),
                load_kind(l, profile_loads).to_string(),
                thousands(l.rows_loaded),
                thousands(l.rows_rejected),
                l.finished_at
                    .clone()
                    .unwrap_or_else(|| l.started_at.clone()),
                l.uri.clone(),
                l.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "load", "status", "kind", "rows", "rejected", "finished", "uri", "error",
        ],
        &rows,
    ));
    if let Some(p) = profiles {
        let _ = writeln!(
            out,
            "\nProfiles: {} identities from {} snapshots (latest {}), {} history periods; query \
             profiles, profiles_history, events_with_profile.",
            thousands(p.identities),
            thousands(p.snapshots),
            escaped(p.latest.as_deref().unwrap_or("none")),
            thousands(p.periods),
        );
    }
    out
}

/// The "Freshness" block of `tapline status`: creation→commit latency percentiles over the last
/// 24 hours, and, when the export location was given (`unloaded`), the oldest object a sweep
/// would still load and its age at `now`.
pub fn render_freshness(
    last_day: Option<&Freshness>,
    unloaded: Option<&Unloaded>,
    now: jiff::Timestamp,
) -> String {
    let mut out = String::from(
        "Freshness: from an object's creation in the bucket to its rows committing\n\n",
    );
    let _ = match last_day {
        Some(f) => writeln!(
            out,
            "  Last 24 h: p50 {}, p95 {} (from {})",
            human_duration(f.p50_seconds),
            human_duration(f.p95_seconds),
            loads(f.loads),
        ),
        None => writeln!(out, "  Last 24 h: no load with a known creation time"),
    };
    let _ = match unloaded {
        None => writeln!(
            out,
            "  Not yet loaded: not listed (give --source URI, the export location)"
        ),
        Some(u) if u.objects == 0 => writeln!(
            out,
            "  Not yet loaded: nothing (a sweep would load no object)"
        ),
        Some(Unloaded {
            objects,
            oldest: Some((entry, created)),
        }) => writeln!(
            out,
            "  Not yet loaded: {}; the oldest is {} (created {}, {} ago)",
            export_objects(*objects),
            escaped(&entry.uri),
            format_utc(created.as_second()),
            human_duration(now.as_second() - created.as_second()),
        ),
        Some(u) => writeln!(
            out,
            "  Not yet loaded: {}, none with a known creation time",
            export_objects(u.objects)
        ),
    };
    out
}

/// `1 load`, `1,200 loads`.
fn loads(n: usize) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{} load{s}", thousands(n as u64))
}

/// `1 export object`, `12 export objects`.
fn export_objects(n: usize) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{} export object{s}", thousands(n as u64))
}

/// The "Typed columns" block of `tapline status`: per pinned column, the raw values that do not
/// fit its pinned kind (NULL in the typed views, kept in the raw table). Empty when every value
/// fits.
pub fn render_misfits(misfits: &[ColumnMisfit]) -> String {
    if misfits.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "Typed columns: values that do not fit the pinned kind (NULL in the typed views, kept \
         in the raw tables)\n\n",
    );
    let rows: Vec<Vec<String>> = misfits
        .iter()
        .map(|m| {
            vec![
                m.table.clone(),
                m.column.clone(),
                m.kind.as_str().to_string(),
                thousands(m.values),
            ]
        })
        .collect();
    out.push_str(&table(&["table", "column", "kind", "values"], &rows));
    out
}

/// What a load held: profiles when it wrote profile snapshots or its uri names a profile export
/// or a profiles API page; events when it names events; `-` when the name tells nothing (a
/// skipped or refused object).
fn load_kind(load: &LoadRecord, profile_loads: &[i64]) -> &'static str {
    if profile_loads.contains(&load.load_id) {
        return "profiles";
    }
    let uri = load.uri.as_str();
    if let Some(rest) = uri.strip_prefix("clevertap-api://") {
        return match rest.split('/').nth(1) {
            Some("profiles") => "profiles",
            _ => "events",
        };
    }
    let key = match uri.split_once("://") {
        Some(("file", path)) => path,
        Some((_, rest)) => rest.split_once('/').map_or(rest, |(_, key)| key),
        None => uri,
    };
    match recognise(key) {
        Recognition::Export(export) => export.kind.as_str(),
        Recognition::Skip(_) => "-",
    }
}

/// API pulls a run left unfinished (checkpoints `in_progress` in `_tapline_state`).
#[cfg(feature = "clevertap-api")]
pub fn render_unfinished_pulls(pulls: &[StoredCheckpoint]) -> String {
    if pulls.is_empty() {
        return "No unfinished API pulls.\n".to_string();
    }
    let mut out = format!(
        "Unfinished API pulls ({}): run the same `tapline pull` again (or wait for the next \
         scheduled run) to resume each at its page.\n\n",
        pulls.len()
    );
    let rows: Vec<Vec<String>> = pulls
        .iter()
        .map(|p| {
            vec![
                p.kind.clone(),
                p.event.clone(),
                p.window.clone(),
                thousands(p.checkpoint.pages),
                thousands(p.checkpoint.rows),
                p.checkpoint.started_at.clone(),
                p.updated_at.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "kind",
            "event",
            "day",
            "pages done",
            "rows",
            "started",
            "last update",
        ],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_say_what_they_held() {
        let load = |load_id, uri: &str| LoadRecord {
            load_id,
            uri: uri.to_string(),
            version: "1".into(),
            status: tapline::warehouse::LoadStatus::Loaded,
            bytes: None,
            rows_loaded: 1,
            rows_rejected: 0,
            error: None,
            attempts: 1,
            started_at: "2026-12-07T00:00:00Z".into(),
            finished_at: None,
            object_created_at: None,
        };
        let kinds: Vec<&str> = [
            load(
                1,
                "s3://b/exports/1663664837-1663785000-Charged-20220921-0-0.csv.gz",
            ),
            load(2, "gs://b/profile/100000000-1761651721-1761651721-0.csv.gz"),
            load(3, "file:///tmp/x/100000000-1-1761651721-0-csv.gz"),
            load(
                4,
                "clevertap-api://100/profiles/Charged/2022-09-01..2022-09-02/page-1",
            ),
            load(5, "clevertap-api://100/events/Charged/2022-09-01/page-1"),
            load(6, "file:///tmp/x/notes.txt"),
            load(7, "file:///tmp/x/renamed.bin"),
        ]
        .iter()
        .map(|l| load_kind(l, &[7]))
        .collect();
        assert_eq!(
            kinds,
            [
                "events", "profiles", "profiles", "profiles", "events", "-", "profiles"
            ]
        );
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn one_is_singular() {
        assert_eq!(
            [loads(1), loads(2), loads(1_200)],
            ["1 load", "2 loads", "1,200 loads"]
        );
        assert_eq!(
            [export_objects(1), export_objects(0)],
            ["1 export object", "0 export objects"]
        );
    }

    #[test]
    fn table_aligns_numbers_right() {
        let t = table(
            &["a", "n"],
            &[vec!["x".into(), "5".into()], vec!["yy".into(), "10".into()]],
        );
        assert_eq!(t, "a    n\n--  --\nx    5\nyy  10\n");
    }
}
