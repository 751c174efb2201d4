//! Which export chunks of an (event, day) arrived, and which did not: CleverTap splits one event's
//! day into files numbered 0, 1, 2… per export run (`<request>-<run ts>-<event>-<yyyymmdd>-<index>-
//! <db>.<fmt>.gz`). A gap in a run's indexes, or a chunk that was quarantined or whose load failed,
//! is a missing chunk, named as CleverTap would have named it. A missing *last* chunk leaves no
//! gap: the row count against CleverTap's count finds it (see the `status` module).

use std::collections::BTreeMap;

use jiff::civil::Date;

use crate::export::object_name::{ExportKind, Recognition, recognise};
use crate::warehouse::{LedgerVersion, LoadStatus};

/// Most chunks one run of one event's day may claim (the highest index seen + 1): a name with
/// index 4294967295 must not make reconcile list four billion missing chunks.
pub const MAX_CHUNKS_PER_RUN: u32 = 10_000;

/// The key reconcile matches exports, rows and counts on: the event name as CleverTap writes it
/// into file names (whitespace, tab, slash and NUL become `-`), since a file name cannot give
/// the real name back ("Order-Placed" may be "Order Placed").
pub fn event_key(event: &str) -> String {
    event
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '/' || c == '\0' {
                '-'
            } else {
                c
            }
        })
        .collect()
}

/// One export object of an event's day as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Its uri.
    pub uri: String,
    /// Export request id (as written).
    pub request_id: String,
    /// Export run, epoch seconds.
    pub run_timestamp: i64,
    /// Index within the run.
    pub file_index: u32,
    /// Where its load stands.
    pub status: LoadStatus,
}

/// A chunk reconcile counts as missing, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingChunk {
    /// The object's name: its own uri when it arrived and failed, else the name CleverTap would
    /// have given it (a sibling's name with the index replaced).
    pub name: String,
    /// `never arrived`, `quarantined` or `failed`.
    pub why: &'static str,
}

/// The export chunks of one (event key, day), by export run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayChunks {
    /// (request id, run timestamp) → index → the newest version's chunk.
    runs: BTreeMap<(String, i64), BTreeMap<u32, Chunk>>,
}

impl DayChunks {
    /// Whether any export object of this day was seen.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Chunks seen, over every run.
    pub fn len(&self) -> usize {
        self.runs.values().map(BTreeMap::len).sum()
    }

    /// The chunks that are missing: gaps in each run's indexes (up to its highest index seen),
    /// and chunks that were quarantined or whose last attempt failed. In run, then index order.
    pub fn missing(&self) -> Vec<MissingChunk> {
        let mut missing = Vec::new();
        for chunks in self.runs.values() {
            let Some((&last, sibling)) = chunks.iter().next_back() else {
                continue;
            };
            for index in 0..=last.min(MAX_CHUNKS_PER_RUN - 1) {
                match chunks.get(&index) {
                    None => missing.push(MissingChunk {
                        name: sibling_name(&sibling.uri, sibling.file_index, index),
                        why: "never arrived",
                    }),
                    Some(c) if c.status == LoadStatus::Quarantined => missing.push(MissingChunk {
                        name: c.uri.clone(),
                        why: "quarantined",
                    }),
                    Some(c) if c.status == LoadStatus::Failed => missing.push(MissingChunk {
                        name: c.uri.clone(),
                        why: "failed",
                    }),
                    Some(_) => {}
                }
            }
        }
        missing
    }
}

/// Groups ledger versions of event export objects by (event key, data date). Objects whose
/// names carry no event, date, run or index (Export Center Parquet, profiles) are left out: they
/// cannot be placed in a sequence. Of several versions of one uri, a loaded or replaced one
/// wins (the object arrived), else the last listed.
pub fn day_chunks(versions: &[LedgerVersion]) -> BTreeMap<(String, Date), DayChunks> {
    let mut days: BTreeMap<(String, Date), DayChunks> = BTreeMap::new();
    for v in versions {
        let key = v.uri.rsplit_once("://").map_or(v.uri.as_str(), |(_, k)| k);
        let Recognition::Export(o) = recognise(key) else {
            continue;
        };
        let (ExportKind::Events, Some(event), Some(date), Some(request), Some(run), Some(index)) = (
            o.kind,
            o.event_name_in_name,
            o.data_date,
            o.request_id,
            o.run_timestamp,
            o.file_index,
        ) else {
            continue;
        };
        let chunk = Chunk {
            uri: v.uri.clone(),
            request_id: request.clone(),
            run_timestamp: run,
            file_index: index,
            status: v.status,
        };
        let run_chunks = days
            .entry((event_key(&event), date))
            .or_default()
            .runs
            .entry((request, run))
            .or_default();
        let arrived = |s: LoadStatus| matches!(s, LoadStatus::Loaded | LoadStatus::Replaced);
        match run_chunks.get(&index) {
            Some(kept) if arrived(kept.status) && !arrived(chunk.status) => {}
            _ => {
                run_chunks.insert(index, chunk);
            }
        }
    }
    days
}

/// `uri` (whose name has file index `index`) with the index replaced by `wanted`: the
/// `-<index>-<db>.` part is the last `-N-N.` of a legacy event name.
fn sibling_name(uri: &str, index: u32, wanted: u32) -> String {
    let (folder, name) = uri.rsplit_once('/').map_or(("", uri), |(f, n)| (f, n));
    let needle = format!("-{index}-");
    let replaced = name
        .rmatch_indices(&needle)
        .next()
        .map(|(at, _)| format!("{}-{wanted}-{}", &name[..at], &name[at + needle.len()..]))
        .unwrap_or_else(|| format!("{name} (chunk {wanted})"));
    if folder.is_empty() {
        replaced
    } else {
        format!("{folder}/{replaced}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(uri: &str, status: LoadStatus) -> LedgerVersion {
        LedgerVersion {
            uri: uri.to_string(),
            version: "1".to_string(),
            status,
        }
    }

    const DIR: &str = "s3://exports/clevertap";

    fn name(run: i64, event: &str, date: &str, index: u32) -> String {
        format!("{DIR}/1663664837-{run}-{event}-{date}-{index}-0.csv.gz")
    }

    #[test]
    fn a_gap_in_a_runs_indexes_is_a_missing_chunk_named_like_its_siblings() {
        let days = day_chunks(&[
            v(
                &name(1663785000, "Order-Placed", "20220921", 0),
                LoadStatus::Loaded,
            ),
            v(
                &name(1663785000, "Order-Placed", "20220921", 1),
                LoadStatus::Loaded,
            ),
            v(
                &name(1663785000, "Order-Placed", "20220921", 3),
                LoadStatus::Loaded,
            ),
        ]);
        let day = &days[&("Order-Placed".to_string(), Date::constant(2022, 9, 21))];
        assert_eq!(day.len(), 3);
        assert_eq!(
            day.missing(),
            vec![MissingChunk {
                name: name(1663785000, "Order-Placed", "20220921", 2),
                why: "never arrived"
            }]
        );
    }

    #[test]
    fn quarantined_and_failed_chunks_are_missing_and_a_later_good_version_is_not() {
        let q = name(1663785000, "Charged", "20220921", 0);
        let f = name(1663785000, "Charged", "20220921", 1);
        let fixed = name(1663785000, "Charged", "20220921", 2);
        let days = day_chunks(&[
            v(&q, LoadStatus::Quarantined),
            v(&f, LoadStatus::Failed),
            v(&fixed, LoadStatus::Loaded),
            v(&fixed, LoadStatus::Failed),
        ]);
        let day = &days[&("Charged".to_string(), Date::constant(2022, 9, 21))];
        assert_eq!(
            day.missing(),
            vec![
                MissingChunk {
                    name: q,
                    why: "quarantined"
                },
                MissingChunk {
                    name: f,
                    why: "failed"
                },
            ]
        );
    }

    #[test]
    fn runs_and_days_are_kept_apart_and_foreign_names_ignored() {
        let days = day_chunks(&[
            v(
                &name(1663785000, "Charged", "20220921", 0),
                LoadStatus::Loaded,
            ),
            v(
                &name(1663871400, "Charged", "20220921", 1),
                LoadStatus::Loaded,
            ),
            v(
                &name(1663871400, "Charged", "20220922", 0),
                LoadStatus::Loaded,
            ),
            v("s3://exports/notes.txt", LoadStatus::Loaded),
            v(
                "s3://exports/100000000-1761651721-1761651721-0.csv.gz",
                LoadStatus::Loaded,
            ),
        ]);
        assert_eq!(days.len(), 2);
        let d21 = &days[&("Charged".to_string(), Date::constant(2022, 9, 21))];
        // The second run starts at index 1: its chunk 0 is missing.
        assert_eq!(
            d21.missing(),
            vec![MissingChunk {
                name: name(1663871400, "Charged", "20220921", 0),
                why: "never arrived"
            }]
        );
        assert!(
            days[&("Charged".to_string(), Date::constant(2022, 9, 22))]
                .missing()
                .is_empty()
        );
    }

    #[test]
    fn a_huge_index_claims_at_most_the_cap() {
        let days = day_chunks(&[v(
            &name(1663785000, "Charged", "20220921", 4_000_000_000),
            LoadStatus::Loaded,
        )]);
        let day = &days[&("Charged".to_string(), Date::constant(2022, 9, 21))];
        assert_eq!(day.missing().len(), MAX_CHUNKS_PER_RUN as usize);
    }

    #[test]
    fn event_keys_follow_clevertaps_file_name_rule() {
        assert_eq!(event_key("Order Placed"), "Order-Placed");
        assert_eq!(event_key("A/B\tC\0D"), "A-B-C-D");
        assert_eq!(event_key("Order-Placed"), "Order-Placed");
    }
}
