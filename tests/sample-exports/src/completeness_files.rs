//! `completeness`: the export set `tapline reconcile` is tested on (issue 20). Five days of
//! "Charged" ending on `--today` (a missing chunk, a quarantined chunk, a day 3 % short of
//! CleverTap's count, a day within the tolerance, a day not over yet), one event CleverTap counts
//! that never arrived, what CleverTap's counts API answers for each (event, day), and a manifest
//! of the status each (event, day) must get.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{
    Clock, DEMO_MIX, DEMO_USERS, Date, Event, csv_bytes, day_rows, export_file_name, gzip,
    make_users,
};

/// The export request id of every object: the one in CleverTap's documented export-status
/// payload, so the set can also stand behind that webhook.
const REQUEST_ID: u64 = 1_690_283_492;

/// The event whose chunks the set holds.
const EXPORTED: Event = Event::Charged;

/// An event CleverTap counts on one day of which no export ever arrived.
const COUNTED_ONLY: &str = "Viewed";

/// Days before `--today` on which CleverTap counts [`COUNTED_ONLY`] events, and how many.
const COUNTED_ONLY_DAY: (i64, u64) = (2, 12);

/// How long after the start of today the export run of today's partial chunk ran (CleverTap's
/// recurring exports run every 4 to 24 hours): today's rows lie before it.
const TODAY_RUN_AFTER_SECS: i64 = 4 * 3600;

/// The header column a quarantined chunk names twice: the loader maps columns by name, so it
/// cannot load such a file and quarantines it.
const DUPLICATED_COLUMN: &str = "eventProps.Amount";

/// What happens to one chunk of a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Every chunk arrives whole.
    AllArrive,
    /// The chunk with this index never arrives (it is written to `arrives-later/`).
    NeverArrives(u32),
    /// The chunk with this index arrives with a header naming [`DUPLICATED_COLUMN`] twice.
    BadHeader(u32),
}

/// One day of [`EXPORTED`]: its chunks, CleverTap's count and the status it must get.
struct DayPlan {
    /// Days before `--today`.
    days_ago: i64,
    /// Rows of each chunk, by file index.
    chunk_rows: &'static [u64],
    /// What happens to a chunk.
    fate: Fate,
    /// What CleverTap's counts API answers for the day.
    count: u64,
    /// The status `tapline reconcile` must give (the default 0.5 % tolerance and 24 h grace).
    status: &'static str,
    /// The case, in words.
    case: &'static str,
}

/// The five days, oldest first.
const PLAN: [DayPlan; 5] = [
    DayPlan {
        days_ago: 4,
        chunk_rows: &[10, 10, 10, 10],
        fate: Fate::NeverArrives(2),
        count: 40,
        status: "missing chunk",
        case: "chunk 2 never arrived (arrives-later/ holds it)",
    },
    DayPlan {
        days_ago: 3,
        chunk_rows: &[10, 10],
        fate: Fate::BadHeader(1),
        count: 20,
        status: "missing chunk",
        case: "chunk 1's header names eventProps.Amount twice: the loader quarantines it",
    },
    DayPlan {
        days_ago: 2,
        chunk_rows: &[100],
        fate: Fate::AllArrive,
        count: 103,
        status: "count mismatch",
        case: "100 rows, CleverTap counts 103 (3 % short)",
    },
    DayPlan {
        days_ago: 1,
        chunk_rows: &[100, 100],
        fate: Fate::AllArrive,
        count: 201,
        status: "complete",
        case: "200 rows over two chunks, CleverTap counts 201 (within 0.5 %)",
    },
    DayPlan {
        days_ago: 0,
        chunk_rows: &[5],
        fate: Fate::AllArrive,
        count: 5,
        status: "late",
        case: "today: the day is not over",
    },
];

/// One object written, for the summary.
struct Written {
    /// Path relative to the output folder.
    path: String,
    /// Data rows.
    rows: u64,
    /// Size on disk.
    bytes: usize,
}

/// The `completeness` subcommand: see `Command::Completeness`.
pub fn completeness(out: &Path, today: Date, seed: u64, clock: &Clock) -> Result<()> {
    let clock = *clock;
    let exports = out.join("exports");
    let later = out.join("arrives-later");
    for dir in [&exports, &later] {
        if dir.exists() && fs::read_dir(dir)?.next().is_some() {
            // Objects of another `--today` or seed would be loaded beside these and make the
            // manifest wrong.
            anyhow::bail!(
                "{} is not empty: write the set into a new folder",
                dir.display()
            );
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let users = make_users(seed, DEMO_USERS, DEMO_MIX);
    let mut written = Vec::new();
    let mut expected = Vec::new();
    let mut arriving = Vec::new();
    let mut answers = Vec::new();
    for plan in &PLAN {
        let date = today.add_days(-plan.days_ago);
        let (start, end) = clock.day_bounds_utc(date);
        // One run per day after it ends; today's chunk comes from a run a few hours into it.
        let run_ts = if plan.days_ago == 0 {
            start + TODAY_RUN_AFTER_SECS
        } else {
            end
        };
        let total: u64 = plan.chunk_rows.iter().sum();
        let mut rows = day_rows(seed, &users, clock, EXPORTED, date, total, false);
        if plan.days_ago == 0 {
            // Today's rows lie before its run, evenly spread.
            let step = TODAY_RUN_AFTER_SECS / (total as i64 + 1);
            for (i, row) in rows.iter_mut().enumerate() {
                row[0] = clock.local_ts(start + step * (i as i64 + 1));
            }
        }
        let header = EXPORTED.header(false);
        let mut missing = Vec::new();
        let mut export_rows = 0;
        let mut first = 0;
        for (index, &n) in (0u32..).zip(plan.chunk_rows) {
            let chunk = &rows[first..first + n as usize];
            first += n as usize;
            let name = export_file_name(
                REQUEST_ID,
                u64::try_from(run_ts).context("a run before 1970")?,
                EXPORTED.name(),
                date,
                index,
                0,
            );
            let (folder, bytes) = match plan.fate {
                Fate::NeverArrives(i) if i == index => {
                    missing.push(json!({"name": name, "why": "never arrived"}));
                    arriving.push(json!({
                        "name": name,
                        "event": EXPORTED.name(),
                        "day": date.dashed(),
                        "rows": n,
                        "status_after": "complete",
                    }));
                    ("arrives-later", gzip(&csv_bytes(&header, chunk))?)
                }
                Fate::BadHeader(i) if i == index => {
                    missing.push(json!({"name": name, "why": "quarantined"}));
                    let mut bad = header.clone();
                    bad.push(DUPLICATED_COLUMN.to_owned());
                    let amount = bad
                        .iter()
                        .position(|c| c == DUPLICATED_COLUMN)
                        .context("the Charged header has an amount")?;
                    let rows: Vec<Vec<String>> = chunk
                        .iter()
                        .map(|r| {
                            let mut r = r.clone();
                            r.push(r[amount].clone());
                            r
                        })
                        .collect();
                    ("exports", gzip(&csv_bytes(&bad, &rows))?)
                }
                _ => {
                    export_rows += n;
                    ("exports", gzip(&csv_bytes(&header, chunk))?)
                }
            };
            let path = out.join(folder).join(&name);
            fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            written.push(Written {
                path: format!("{folder}/{name}"),
                rows: n,
                bytes: bytes.len(),
            });
        }
        let arrived =
            plan.chunk_rows.len() - usize::from(matches!(plan.fate, Fate::NeverArrives(_)));
        expected.push(json!({
            "event": EXPORTED.name(),
            "day": date.dashed(),
            "status": plan.status,
            "export_chunks": arrived,
            "missing_chunks": missing,
            "export_rows": export_rows,
            "api_rows": 0,
            "clevertap_count": plan.count,
            "case": plan.case,
        }));
        answers.push(count_answer(EXPORTED.name(), date, plan.count));
    }
    // The event that never arrived: CleverTap counts it on one day, zero on the others.
    for plan in &PLAN {
        let date = today.add_days(-plan.days_ago);
        let count = if plan.days_ago == COUNTED_ONLY_DAY.0 {
            COUNTED_ONLY_DAY.1
        } else {
            0
        };
        let (status, case) = match (plan.days_ago, count) {
            (0, _) => ("late", "today: the day is not over"),
            (_, 0) => ("complete", "nothing counted, nothing arrived"),
            _ => ("no export", "CleverTap counts events, no export arrived"),
        };
        expected.push(json!({
            "event": COUNTED_ONLY,
            "day": date.dashed(),
            "status": status,
            "export_chunks": 0,
            "missing_chunks": [],
            "export_rows": 0,
            "api_rows": 0,
            "clevertap_count": count,
            "case": case,
        }));
        answers.push(count_answer(COUNTED_ONLY, date, count));
    }

    let counts = json!({
        "about": "What CleverTap's Get Event Count (POST /1/counts/events.json) answers for each \
                  event and day of the set: a request per (event_name, from, to), one day each.",
        "answers": answers,
    });
    let manifest = json!({
        "about": "tapline-sample-exports completeness: the status tapline reconcile must give \
                  each (event, day) once exports/ is loaded and counts.json is pulled, with the \
                  default tolerance (0.5 %) and grace (24 h), in the project's time zone.",
        "seed": seed,
        "today": today.dashed(),
        "timezone_offset_minutes": clock.offset_secs / 60,
        "first_day": today.add_days(-PLAN[0].days_ago).dashed(),
        "last_day": today.dashed(),
        "request_id": REQUEST_ID,
        "days": expected,
        "arrives_later": arriving,
    });
    for (name, value) in [("counts.json", &counts), ("manifest.json", &manifest)] {
        let path = out.join(name);
        let text = serde_json::to_string_pretty(value)? + "\n";
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }

    let mut stdout = io::stdout().lock();
    for file in &written {
        writeln!(stdout, "{}  {}  {}", file.path, file.rows, file.bytes)?;
    }
    for day in manifest["days"].as_array().into_iter().flatten() {
        writeln!(
            stdout,
            "EXPECTED {} {} {}",
            text(&day["event"]),
            text(&day["day"]),
            text(&day["status"])
        )?;
    }
    Ok(())
}

/// One answer of Get Event Count for `event` on `date` (the request's `from` and `to`).
fn count_answer(event: &str, date: Date, count: u64) -> Value {
    let day: u64 = date.compact().parse().unwrap_or_default();
    json!({"event_name": event, "from": day, "to": day, "count": count})
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Today's date at the clock's offset, from the system clock.
pub fn today(clock: &Clock) -> Date {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Date::from_days_since_epoch((now + clock.offset_secs).div_euclid(86_400))
}
