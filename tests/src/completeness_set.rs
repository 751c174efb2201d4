//! The export set of `tapline-sample-exports completeness` (issue 20), read back for a test: the
//! objects to load, what CleverTap's counts API answers (served through the CleverTap double),
//! and the manifest's expected status of each (event, day).

use std::path::{Path, PathBuf};

use jiff::civil::Date;
use serde_json::Value;

use crate::doubles::clevertap_api::{ClevertapApi, event_records};

/// One (event, day) of the manifest: the verdict `tapline reconcile` must give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedDay {
    /// The event name.
    pub event: String,
    /// The day, in the project's time zone.
    pub day: Date,
    /// `complete`, `missing chunk`, `count mismatch`, `no export` or `late`.
    pub status: String,
    /// Export objects of the day the loader saw (quarantined ones included).
    pub export_chunks: u64,
    /// The missing chunks as (object name, why): `never arrived` or `quarantined`.
    pub missing_chunks: Vec<(String, String)>,
    /// Rows loaded from exports.
    pub export_rows: u64,
    /// Rows from API pulls.
    pub api_rows: u64,
    /// CleverTap's count.
    pub clevertap_count: u64,
}

/// One answer of Get Event Count: `count` events of `event` on `day` (YYYYMMDD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountAnswer {
    /// The event name.
    pub event: String,
    /// The day as the API writes it.
    pub day: i64,
    /// CleverTap's count.
    pub count: u64,
}

/// A chunk written to `arrives-later/`: copy it into `exports/` and it has arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateChunk {
    /// Its object name.
    pub name: String,
    /// Its (event, day).
    pub event: String,
    /// The day it belongs to.
    pub day: Date,
    /// Its rows.
    pub rows: u64,
    /// The day's status once it arrived.
    pub status_after: String,
}

/// A generated set, in a folder of its own.
#[derive(Debug)]
pub struct CompletenessSet {
    /// The folder `exports/` and `arrives-later/` are in.
    pub dir: PathBuf,
    /// The objects that arrived (load this folder).
    pub exports: PathBuf,
    /// First day of the set.
    pub first_day: Date,
    /// Last day: the `--today` it was made for.
    pub last_day: Date,
    /// Every (event, day), in the manifest's order (event, then day).
    pub days: Vec<ExpectedDay>,
    /// What the counts API answers, per (event, day).
    pub counts: Vec<CountAnswer>,
    /// The chunks that arrive later.
    pub arrives_later: Vec<LateChunk>,
}

fn text(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not text in {v}"))
        .to_string()
}

fn number(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count in {v}"))
}

fn date(v: &Value, key: &str) -> Date {
    text(v, key).parse().expect("a YYYY-MM-DD day")
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("JSON")
}

impl CompletenessSet {
    /// Runs `tapline-sample-exports completeness --out dir --today today --seed seed` (project
    /// time zone UTC+05:30, Asia/Kolkata's) and reads what it wrote.
    pub fn generate(dir: &Path, today: Date, seed: u64) -> Self {
        let out = std::process::Command::new(crate::bin("tapline-sample-exports"))
            .args(["completeness", "--out"])
            .arg(dir)
            .args(["--today", &today.to_string(), "--seed", &seed.to_string()])
            .output()
            .expect("run tapline-sample-exports");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self::read(dir)
    }

    /// Reads a set written before.
    pub fn read(dir: &Path) -> Self {
        let manifest = read_json(&dir.join("manifest.json"));
        let counts = read_json(&dir.join("counts.json"));
        let days = manifest["days"]
            .as_array()
            .expect("days")
            .iter()
            .map(|d| ExpectedDay {
                event: text(d, "event"),
                day: date(d, "day"),
                status: text(d, "status"),
                export_chunks: number(d, "export_chunks"),
                missing_chunks: d["missing_chunks"]
                    .as_array()
                    .expect("missing_chunks")
                    .iter()
                    .map(|m| (text(m, "name"), text(m, "why")))
                    .collect(),
                export_rows: number(d, "export_rows"),
                api_rows: number(d, "api_rows"),
                clevertap_count: number(d, "clevertap_count"),
            })
            .collect();
        let counts = counts["answers"]
            .as_array()
            .expect("answers")
            .iter()
            .map(|a| {
                assert_eq!(a["from"], a["to"], "one day per answer: {a}");
                CountAnswer {
                    event: text(a, "event_name"),
                    day: number(a, "from") as i64,
                    count: number(a, "count"),
                }
            })
            .collect();
        let arrives_later = manifest["arrives_later"]
            .as_array()
            .expect("arrives_later")
            .iter()
            .map(|c| LateChunk {
                name: text(c, "name"),
                event: text(c, "event"),
                day: date(c, "day"),
                rows: number(c, "rows"),
                status_after: text(c, "status_after"),
            })
            .collect();
        Self {
            dir: dir.to_path_buf(),
            exports: dir.join("exports"),
            first_day: date(&manifest, "first_day"),
            last_day: date(&manifest, "last_day"),
            days,
            counts,
            arrives_later,
        }
    }

    /// The events CleverTap counts, in first-seen order.
    pub fn events(&self) -> Vec<String> {
        let mut events: Vec<String> = Vec::new();
        for c in &self.counts {
            if !events.contains(&c.event) {
                events.push(c.event.clone());
            }
        }
        events
    }

    /// `pull counts --event … --from <first day> --to <last day>`: the arguments that land the
    /// set's counts in `event_counts`.
    pub fn pull_counts_args(&self) -> Vec<String> {
        let mut args = vec!["pull".to_string(), "counts".to_string()];
        for event in self.events() {
            args.extend(["--event".to_string(), event]);
        }
        args.extend([
            "--from".to_string(),
            self.first_day.to_string(),
            "--to".to_string(),
            self.last_day.to_string(),
        ]);
        args
    }

    /// Makes the CleverTap double answer the set's counts (it counts the records it serves).
    pub fn serve_counts(&self, api: &ClevertapApi) {
        for c in &self.counts {
            api.set_events(&c.event, c.day, event_records(c.day, c.count as usize));
        }
    }

    /// The manifest's entry for (event, day).
    pub fn expected(&self, event: &str, day: Date) -> &ExpectedDay {
        self.days
            .iter()
            .find(|d| d.event == event && d.day == day)
            .unwrap_or_else(|| panic!("no ({event}, {day}) in the manifest"))
    }

    /// Copies the chunks of `arrives-later/` into `exports/`: they have arrived.
    pub fn arrive(&self) {
        for c in &self.arrives_later {
            std::fs::copy(
                self.dir.join("arrives-later").join(&c.name),
                self.exports.join(&c.name),
            )
            .expect("copy the late chunk");
        }
    }
}
