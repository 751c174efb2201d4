//! `tapline-sample-exports`: writes realistic CleverTap legacy event-export files (`*.csv.gz`).
//!
//! The loader has to cope with what CleverTap really drops into a bucket: lossy file names,
//! multi-part days, multi-member gzip, per-file column sets, RFC 4180 quoting with embedded
//! newlines, a few malformed rows, truncated uploads and unrelated files. Real exports cannot be
//! shared, so this binary fabricates them deterministically from a seed: the same seed always
//! gives byte-identical files, which lets tests assert exact row counts.
//!
//! It deliberately uses only std plus a few small crates (no `tapline` API), so it keeps building
//! while the library changes and can never "agree with itself" about the format.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use flate2::Compression;
use flate2::write::GzEncoder;

/// Seed used when `--seed` is not given.
const DEFAULT_SEED: u64 = 42;

/// Export request id used in every demo file name (the one from CleverTap's documented example).
const DEMO_REQUEST_ID: u64 = 1_663_664_837;

/// Export run timestamp used in every demo file name: 2022-09-22 00:00 in Asia/Kolkata.
const DEMO_RUN_TS: u64 = 1_663_785_000;

/// Export request id of the benchmark file.
const BENCH_REQUEST_ID: u64 = 1_700_000_000;

/// Export run timestamp of the benchmark file.
const BENCH_RUN_TS: u64 = 1_700_086_400;

/// Data date of the benchmark file.
const BENCH_DATE: Date = Date::new(2023, 11, 15);

/// Number of fake profiles in the demo; small enough that users repeat across events and days.
const DEMO_USERS: u64 = 400;

/// Number of fake profiles in the benchmark; enough variety that gzip cannot cheat much.
const BENCH_USERS: u64 = 5_000;

/// The 21 fixed leading columns of a legacy CSV event export, exactly as CleverTap documents them.
use tapline::export::FIXED_EVENT_COLUMNS as FIXED_COLUMNS;

mod completeness_files;
#[cfg(feature = "parquet")]
mod parquet_files;
mod profile_files;

/// Help shown after the options of the top-level command.
const EXAMPLES: &str = "\
Examples:
  # Small, fixed data set covering every loader edge case (about 7,500 rows)
  tapline-sample-exports demo --out /tmp/tapline-demo

  # Same, but with other values (file names and edge cases stay the same)
  tapline-sample-exports demo --out /tmp/tapline-demo --seed 7

  # One 1,000,000-row file (about 250 MB of CSV) for load benchmarks; build in release mode
  cargo run --release -p tapline-sample-exports -- \\
    bench --out /tmp/tapline-bench

  # Two profile exports (CSV, then JSON a day later) of the demo's users
  tapline-sample-exports profiles --out /tmp/tapline-demo

  # The export set of `tapline reconcile`'s tests: five days ending today (Asia/Kolkata)
  tapline-sample-exports completeness --out /tmp/tapline-completeness

  # Bigger benchmark file, project time zone UTC-05:00
  tapline-sample-exports bench --out /tmp/b --rows 5_000_000 --timezone-offset-minutes=-300";

/// Writes realistic CleverTap legacy event-export files for tests, demos and benchmarks.
///
/// Files are named like CleverTap's
/// (`<request_id>-<run_ts>-<Event-Name>-<yyyymmdd>-<file_index>-<db_id>.csv.gz`) and hold
/// gzipped CSV: the 21 fixed columns, then `eventProps.*`, then `sessionProps.*`. Values are
/// deterministic: the same seed gives byte-identical files.
#[derive(Debug, Parser)]
#[command(name = "tapline-sample-exports", version, after_help = EXAMPLES)]
struct Cli {
    /// Project time zone as minutes east of UTC (330 = Asia/Kolkata). CleverTap writes `ts` as
    /// local wall time in the project's zone, so each row's UTC instant is shifted by this much
    /// before it is formatted as `yyyyMMddHHmmss`.
    #[arg(
        long,
        global = true,
        default_value_t = 330,
        allow_negative_numbers = true,
        value_name = "MINUTES",
        value_parser = clap::value_parser!(i32).range(-720..=840)
    )]
    timezone_offset_minutes: i32,

    /// What to generate.
    #[command(subcommand)]
    command: Command,
}

/// The generator's subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Write a small, fixed set of export files that exercises every loader edge case.
    ///
    /// Writes 3 events ("Order Placed", "App Launched", "Charged") for 2022-09-19..21, with: a
    /// day split into two files (file index 0 and 1), a multi-member gzip file, a file whose
    /// column set differs (extra `eventProps.Coupon Code`), a file with exactly 3 bad rows, a
    /// truncated (corrupt) gzip file, a README.txt that is not an export, and the 2022-09-21
    /// files in a dated sub-folder. Prints `path  rows  bytes` per file, a totals line and, last,
    /// `EXPECTED good_rows=N bad_rows=3 corrupt_files=1 skipped_files=1`.
    Demo {
        /// Directory to write into; created with its parents if missing.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,

        /// Seed for every generated value; the same seed gives byte-identical files.
        #[arg(long, default_value_t = DEFAULT_SEED, value_name = "N")]
        seed: u64,
    },

    /// Write one large export file for load benchmarks, streaming it to disk.
    ///
    /// Writes `DIR/1700000000-1700086400-Bench-Event-20231115-0-0.csv.gz`: the 21 fixed columns,
    /// 8 event properties and 2 session properties, about 250 bytes of CSV per row, all on
    /// 2023-11-15 local time. Prints, last, `rows=N uncompressed_bytes=N compressed_bytes=N
    /// path=P`.
    Bench {
        /// Directory to write into; created with its parents if missing.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,

        /// `csv`, or `json`: the same rows as a JSON-lines export (`…-0-0.json.gz`, one object
        /// per line, nested as CleverTap nests them: `profile`, `deviceInfo`, `eventProps`,
        /// `sessionProps`; numbers bare, empty fields left out), for the JSON load's bench.
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,

        /// Number of data rows (underscores allowed, e.g. 5_000_000).
        #[arg(long, default_value = "1_000_000", value_name = "N", value_parser = parse_count)]
        rows: u64,

        /// Seed for every generated value; the same seed gives byte-identical files.
        #[arg(long, default_value_t = DEFAULT_SEED, value_name = "N")]
        seed: u64,
    },

    /// Write the hostile exports of `make bench` (issue 14), one per sub-folder.
    ///
    /// `bad-rows/`: the benchmark file's shape with every `ts` unparseable, so every row is
    /// rejected. `long-names/`: a JSON export whose first line wraps 1,500 leaves in a
    /// 180,000-byte key (about 276 KB), then good lines. `bomb/`: one valid row repeated, gzipped
    /// to a few hundred KB (a decompression bomb). Prints `case=C compressed_bytes=N path=P` per
    /// file.
    Hostile {
        /// Directory to write into; created with its parents if missing.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,

        /// Rows of the all-bad file.
        #[arg(long, default_value = "100_000", value_name = "N", value_parser = parse_count)]
        bad_rows: u64,

        /// Rows repeated in the gzip bomb.
        #[arg(long, default_value = "750_000", value_name = "N", value_parser = parse_count)]
        bomb_rows: u64,

        /// Seed for every generated value; the same seed gives byte-identical files.
        #[arg(long, default_value_t = DEFAULT_SEED, value_name = "N")]
        seed: u64,
    },

    /// Write two Export Center profile exports of the demo's users, two days apart.
    ///
    /// `profile/100000000-1663664837-1663525800-0.csv.gz` (2022-09-18 18:30 UTC): one row per demo user (the `demo`
    /// files' identities for the same seed; anonymous users have only a `clevertapId`), the
    /// columns `identity, all_identities, clevertapId, clevertapIds, token,
    /// subscriptionGroups.Offers, MSG-push, MSG-email, Email, Phone, Name, Gender, DOB,
    /// Blood Group, Customer Type`. `profile/100000000-1663664838-1663698600-0.json.gz` (2022-09-20 18:30 UTC): the same
    /// profiles two days later as JSON lines, some with a new `Customer Type`. Prints `path  rows
    /// bytes` per file and, last, `EXPECTED profile_rows=N profiles=N changed=N`.
    Profiles {
        /// Directory to write into; created with its parents if missing.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,

        /// Seed for every generated value; the same seed as `demo` gives its identities.
        #[arg(long, default_value_t = DEFAULT_SEED, value_name = "N")]
        seed: u64,

        /// Also write the first run's profiles as an Export Center Parquet profile export (its
        /// own request id, the same run time): the same snapshots, so no new history period.
        #[arg(long)]
        parquet: bool,
    },

    /// Write the export set `tapline reconcile` is tested on: one day of each completeness case.
    ///
    /// For the five days ending on `--today` (the project's time zone, `--timezone-offset-minutes`),
    /// "Charged" chunks named as CleverTap names them (request id 1690283492, one run per day,
    /// file indexes): a day whose chunk 2 never arrived (`missing chunk`; the chunk is in
    /// `arrives-later/`), a day whose chunk 1 has a header naming `eventProps.Amount` twice (the
    /// loader quarantines it: `missing chunk`), a day of 100 rows CleverTap counts 103 (`count
    /// mismatch`), a day of 200 rows it counts 201 (`complete`, within 0.5 %), and today
    /// (`late`). "Viewed" is counted 12 two days ago and never exported (`no export`). Writes
    /// `exports/`, `arrives-later/`, `counts.json` (what Get Event Count answers per event and
    /// day) and `manifest.json` (the status of each (event, day) and its figures). Prints `path
    /// rows bytes` per object, then `EXPECTED <event> <day> <status>` per (event, day).
    Completeness {
        /// Directory to write into; its `exports/` and `arrives-later/` must be new or empty.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,

        /// The last day of the set, in the project's time zone (default: today there).
        #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
        today: Option<Date>,

        /// Seed for every generated value; the same seed gives byte-identical files.
        #[arg(long, default_value_t = DEFAULT_SEED, value_name = "N")]
        seed: u64,
    },

    #[cfg(feature = "parquet")]
    /// Write the same "Charged" events as a CSV export and as an Export Center Parquet export,
    /// and Parquet files a loader must refuse.
    ///
    /// `csv/` holds the `.csv.gz` export (the fixed columns a Parquet export can carry, no
    /// session properties or `controlGroupName`) and `parquet/` the same rows in Export Center's
    /// Parquet layout: `eventName`, `eventTime` (epoch seconds as text) and the maps `identity`,
    /// `profile`, `deviceInfo`, `eventProps`, `commPrefs` of unions `member0` (boolean) …
    /// `member5` (string), snappy-compressed (or `--codec`, `--v2-pages`), `--row-group-rows`
    /// rows per row group. `bad/` (default codec and pages only) holds: `…-0-1.parquet` with union rows 2 (no member set) and 3 (two set), `…-0-2` without
    /// `eventTime`, `…-0-3` cut short (no footer), `…-0-4` not Parquet at all, `…-0-5` whose
    /// second row group's first page header is overwritten, `…-0-6` whose footer gives its first
    /// column chunk a negative size. Prints `path  rows  bytes` per file.
    Parquet {
        /// Directory to write into; created with its parents if missing.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,

        /// Rows of the good files.
        #[arg(long, default_value = "500", value_name = "N", value_parser = parse_count)]
        rows: u64,

        /// Rows per Parquet row group.
        #[arg(long, default_value = "200", value_name = "N", value_parser = parse_count)]
        row_group_rows: u64,

        /// The good files' codec: `snappy`, `gzip` or `uncompressed`.
        #[arg(long, default_value = "snappy", value_name = "CODEC")]
        codec: String,

        /// Write data pages v2 (the default is v1, as Export Center writes), several per chunk.
        #[arg(long)]
        v2_pages: bool,

        /// The day of the events (`make demo` adds a Parquet day after the CSV days).
        #[arg(long, default_value = "2022-09-21", value_name = "YYYY-MM-DD", value_parser = parse_date)]
        date: Date,

        /// For `make bench`: write only `parquet/`, its `--rows` rows repeated N times (a large
        /// file without holding all its rows in memory).
        #[arg(long, value_name = "N", value_parser = parse_count)]
        bench_repeat: Option<u64>,

        /// Seed for every generated value; the same seed gives byte-identical files.
        #[arg(long, default_value_t = DEFAULT_SEED, value_name = "N")]
        seed: u64,
    },
}

/// Parses a row count, accepting `_` digit separators so `1_000_000` can be typed as documented.
fn parse_count(text: &str) -> Result<u64, String> {
    let digits: String = text.chars().filter(|c| *c != '_').collect();
    digits
        .parse()
        .map_err(|e| format!("`{text}` is not a row count: {e}"))
}

/// Parses a `YYYY-MM-DD` day; one that does not exist (`2022-02-30`) is refused.
fn parse_date(text: &str) -> Result<Date, String> {
    let parts: Vec<i64> = text.split('-').filter_map(|p| p.parse().ok()).collect();
    let [year, month, day] = parts[..] else {
        return Err(format!("`{text}` is not a YYYY-MM-DD date"));
    };
    let date = Date::new(year, month, day);
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && Date::new(year, month, 1).add_days(day - 1) == date;
    if !valid {
        return Err(format!("`{text}` is not a day of the calendar"));
    }
    Ok(date)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let clock = Clock::new(cli.timezone_offset_minutes);
    match cli.command {
        Command::Demo { out, seed } => demo(&out, seed, &clock),
        Command::Bench {
            out,
            rows,
            seed,
            format,
        } => match format.as_str() {
            "json" => bench_json(&out, rows, seed, &clock).map(|_| ()),
            _ => bench(&out, rows, seed, &clock, BenchTs::Valid).map(|_| ()),
        },
        Command::Hostile {
            out,
            bad_rows,
            bomb_rows,
            seed,
        } => hostile(&out, bad_rows, bomb_rows, seed, &clock),
        Command::Profiles { out, seed, parquet } => profile_files::profiles(&out, seed, parquet),
        Command::Completeness { out, today, seed } => {
            let today = today.unwrap_or_else(|| completeness_files::today(&clock));
            completeness_files::completeness(&out, today, seed, &clock)
        }
        #[cfg(feature = "parquet")]
        Command::Parquet {
            out,
            rows,
            row_group_rows,
            codec,
            v2_pages,
            date,
            bench_repeat,
            seed,
        } => {
            let shape = parquet_files::Shape {
                rows,
                row_group_rows,
                codec,
                v2_pages,
                date,
            };
            parquet_files::parquet(&out, shape, bench_repeat, seed, &clock)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Randomness, dates and CSV encoding
// ---------------------------------------------------------------------------------------------

/// SplitMix64: tiny, fast and good enough for fake data, and it avoids a `rand` dependency whose
/// output could change between versions and break byte-identical fixtures.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    /// A stream for one purpose (one file, the user pool, ...). Keying streams by name means
    /// changing one file's row count does not shift the values of every file generated after it.
    fn for_key(seed: u64, key: &str) -> Self {
        // FNV-1a over the key, then mixed with the seed by the first SplitMix64 step.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in key.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut rng = Self(seed ^ hash);
        rng.next_u64();
        rng
    }

    /// Next 64 random bits.
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift: no modulo bias worth caring about, no division).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with the given probability in percent.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A uniformly chosen element of a non-empty slice.
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An index chosen with probability proportional to `weights`.
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let mut roll = self.below(weights.iter().sum());
        for (index, weight) in weights.iter().enumerate() {
            if roll < *weight {
                return index;
            }
            roll -= weight;
        }
        weights.len() - 1
    }

    /// `len` lowercase hex digits, for ids and tokens.
    fn hex(&mut self, len: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        (0..len)
            .map(|_| char::from(DIGITS[self.below(16) as usize]))
            .collect()
    }
}

/// A calendar date (proleptic Gregorian). Hand-rolled because only a few conversions are needed
/// and a date crate is not among this binary's dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Date {
    /// Year, e.g. 2022.
    year: i64,
    /// Month, 1..=12.
    month: i64,
    /// Day of month, 1..=31.
    day: i64,
}

impl Date {
    /// A date from its parts; callers only pass valid literals.
    const fn new(year: i64, month: i64, day: i64) -> Self {
        Self { year, month, day }
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    fn days_since_epoch(self) -> i64 {
        let year = if self.month <= 2 {
            self.year - 1
        } else {
            self.year
        };
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let shifted_month = if self.month > 2 {
            self.month - 3
        } else {
            self.month + 9
        };
        let day_of_year = (153 * shifted_month + 2) / 5 + self.day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    /// The date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
    fn from_days_since_epoch(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
        let month = if shifted_month < 10 {
            shifted_month + 3
        } else {
            shifted_month - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Self { year, month, day }
    }

    /// This date moved by `days` (may be negative).
    fn add_days(self, days: i64) -> Self {
        Self::from_days_since_epoch(self.days_since_epoch() + days)
    }

    /// `yyyymmdd`, as in export file names.
    fn compact(self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// `yyyy-mm-dd`, as in Export Center dated folders.
    fn dashed(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Converts UTC instants to the project's local wall time, which is what CleverTap writes in `ts`.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Offset east of UTC in seconds.
    offset_secs: i64,
}

impl Clock {
    /// A clock for a fixed offset in minutes east of UTC.
    fn new(offset_minutes: i32) -> Self {
        Self {
            offset_secs: i64::from(offset_minutes) * 60,
        }
    }

    /// The UTC instants `[start, end)` whose local date is `date`: a file's data date is a local
    /// date, so its rows span this window rather than the UTC day.
    fn day_bounds_utc(self, date: Date) -> (i64, i64) {
        let start = date.days_since_epoch() * 86_400 - self.offset_secs;
        (start, start + 86_400)
    }

    /// `yyyyMMddHHmmss` of a UTC instant in local time.
    fn local_ts(self, utc: i64) -> String {
        let local = utc + self.offset_secs;
        let date = Date::from_days_since_epoch(local.div_euclid(86_400));
        let second_of_day = local.rem_euclid(86_400);
        format!(
            "{}{:02}{:02}{:02}",
            date.compact(),
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60
        )
    }

    /// RFC 3339 of a UTC instant, for the README.
    fn utc_rfc3339(utc: i64) -> String {
        let date = Date::from_days_since_epoch(utc.div_euclid(86_400));
        let second_of_day = utc.rem_euclid(86_400);
        format!(
            "{}T{:02}:{:02}:{:02}Z",
            date.dashed(),
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60
        )
    }

    /// `+05:30`-style rendering of the offset, for the README.
    fn offset_label(self) -> String {
        let sign = if self.offset_secs < 0 { '-' } else { '+' };
        let minutes = self.offset_secs.abs() / 60;
        format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

/// Relative event volume per local hour of day (quiet at night, peak in the evening), so the
/// timestamps look like a real app's rather than a flat line.
const HOUR_WEIGHTS: [u64; 24] = [
    2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 7, 7, 8, 7, 6, 6, 7, 8, 10, 12, 13, 11, 7, 4,
];

/// A random UTC instant whose local date is `date`, following [`HOUR_WEIGHTS`].
fn random_instant(rng: &mut Rng, clock: Clock, date: Date) -> i64 {
    let (start, _) = clock.day_bounds_utc(date);
    let hour = rng.weighted(&HOUR_WEIGHTS) as i64;
    start + hour * 3600 + rng.below(3600) as i64
}

/// Appends one CSV field, quoting per RFC 4180 only when the value contains `,`, `"`, CR or LF
/// (inner quotes doubled). Quoting only when needed mirrors typical exporters, so loaders see
/// both quoted and bare fields.
fn push_field(buf: &mut Vec<u8>, field: &str, first: bool) {
    if !first {
        buf.push(b',');
    }
    if field
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
    {
        buf.push(b'"');
        for byte in field.bytes() {
            if byte == b'"' {
                buf.push(b'"');
            }
            buf.push(byte);
        }
        buf.push(b'"');
    } else {
        buf.extend_from_slice(field.as_bytes());
    }
}

/// Appends one CSV record terminated by `\n`.
fn push_record<S: AsRef<str>>(buf: &mut Vec<u8>, fields: &[S]) {
    for (index, field) in fields.iter().enumerate() {
        push_field(buf, field.as_ref(), index == 0);
    }
    buf.push(b'\n');
}

/// The export file name CleverTap uses for legacy event exports:
/// `<request id>-<run ts>-<Event-Name>-<yyyymmdd>-<file index>-<db id>.csv.gz`, where
/// whitespace, `/` and NUL in the event name become `-` (which makes the name lossy).
fn export_file_name(
    request_id: u64,
    run_ts: u64,
    event_name: &str,
    date: Date,
    file_index: u32,
    db_id: u32,
) -> String {
    let event: String = event_name
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '/' || c == '\0' {
                '-'
            } else {
                c
            }
        })
        .collect();
    format!(
        "{request_id}-{run_ts}-{event}-{}-{file_index}-{db_id}.csv.gz",
        date.compact()
    )
}

/// Gzips `data` into one gzip member in memory.
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

// ---------------------------------------------------------------------------------------------
// Fake profiles
// ---------------------------------------------------------------------------------------------

/// A profile's platform, as written in `profile.platform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Platform {
    /// Android app.
    Android,
    /// iOS app.
    Ios,
    /// Web SDK.
    Web,
}

/// First names as (display, ASCII for e-mail). A Devanagari and an accented name make sure
/// multi-byte UTF-8 travels through the loader unharmed.
const FIRST_NAMES: &[(&str, &str)] = &[
    ("Priya", "priya"),
    ("Rahul", "rahul"),
    ("Ananya", "ananya"),
    ("Arjun", "arjun"),
    ("Sneha", "sneha"),
    ("Vikram", "vikram"),
    ("Kavya", "kavya"),
    ("Rohan", "rohan"),
    ("Meera", "meera"),
    ("Aditya", "aditya"),
    ("Fatima", "fatima"),
    ("Joseph", "joseph"),
    ("Gurpreet", "gurpreet"),
    ("Lakshmi", "lakshmi"),
    ("José", "jose"),
    ("अनन्या", "ananya"),
];

/// Last names as (display, ASCII for e-mail); apostrophes are there on purpose.
const LAST_NAMES: &[(&str, &str)] = &[
    ("Sharma", "sharma"),
    ("Patel", "patel"),
    ("Iyer", "iyer"),
    ("Reddy", "reddy"),
    ("D'Souza", "dsouza"),
    ("Khan", "khan"),
    ("Singh", "singh"),
    ("Nair", "nair"),
    ("Gupta", "gupta"),
    ("Menon", "menon"),
    ("Banerjee", "banerjee"),
    ("O'Brien", "obrien"),
];

/// Reserved example domains, so no generated address can belong to a real person.
const EMAIL_DOMAINS: &[&str] = &["example.com", "example.in", "mail.example.org"];

/// Mobile devices as (make, model, OS version, dpi, width in, height in).
const ANDROID_DEVICES: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("Xiaomi", "Redmi Note 10", "12", "440", "2.72", "6.04"),
    ("samsung", "SM-G991B", "13", "420", "2.64", "5.86"),
    ("OnePlus", "LE2111", "12", "450", "2.76", "6.14"),
    ("vivo", "V2111", "11", "400", "2.98", "6.5"),
    ("realme", "RMX3381", "12", "405", "2.83", "6.26"),
    ("Google", "Pixel 6a", "13", "429", "2.7", "5.75"),
];

/// iOS devices, same shape as [`ANDROID_DEVICES`].
const IOS_DEVICES: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("Apple", "iPhone14,5", "16.4.1", "460", "2.53", "5.48"),
    ("Apple", "iPhone12,1", "15.7.3", "326", "2.96", "6.41"),
    ("Apple", "iPhone15,2", "16.0.3", "460", "2.56", "5.55"),
];

/// Web clients as (browser, OS).
const WEB_CLIENTS: &[(&str, &str)] = &[
    ("Chrome", "Windows 10"),
    ("Chrome", "Android"),
    ("Safari", "Mac OS"),
    ("Firefox", "Linux"),
];

/// App versions in the field; several at once, as after a staged rollout.
const APP_VERSIONS: &[&str] = &["3.12.0", "3.11.2", "3.10.5"];

/// One fake CleverTap profile with its device, rendered once and reused by many rows.
#[derive(Debug)]
struct User {
    /// Platform, to choose event properties that fit it.
    platform: Platform,
    /// App version (empty on the web), reused by `CT App Version`.
    app_version: &'static str,
    /// Columns `profile.identity` to `controlGroupName` (3rd to 21st), in header order.
    fixed: Vec<String>,
    /// The same fields CSV-encoded, each preceded by a comma, so the benchmark loop can copy
    /// them instead of re-quoting them for every row.
    encoded: Vec<u8>,
}

/// How complete the generated profiles are.
#[derive(Debug, Clone, Copy)]
struct UserMix {
    /// Share of profiles in percent with no identity, name, e-mail or phone: events of users who
    /// never logged in, which CleverTap exports with those columns empty.
    anonymous_percent: u64,
    /// Whether app users carry push tokens (long values that dominate a row's size).
    push_tokens: bool,
}

/// Profiles for the demo: mostly identified users, with push tokens.
const DEMO_MIX: UserMix = UserMix {
    anonymous_percent: 12,
    push_tokens: true,
};

/// Profiles for the benchmark: sparser, like high-volume events, so rows average ~250 bytes.
const BENCH_MIX: UserMix = UserMix {
    anonymous_percent: 58,
    push_tokens: false,
};

/// `count` deterministic fake profiles.
fn make_users(seed: u64, count: u64, mix: UserMix) -> Vec<User> {
    let mut rng = Rng::for_key(seed, "users");
    (0..count)
        .map(|index| make_user(&mut rng, index, mix))
        .collect()
}

/// One fake profile: some anonymous (see [`UserMix`]), some with the e-mail as identity, some
/// in the control group, web users without device details.
fn make_user(rng: &mut Rng, index: u64, mix: UserMix) -> User {
    let platform = match rng.below(100) {
        0..=61 => Platform::Android,
        62..=84 => Platform::Ios,
        _ => Platform::Web,
    };
    let anonymous = rng.chance(mix.anonymous_percent);
    let (first, first_ascii) = *rng.pick(FIRST_NAMES);
    let (last, last_ascii) = *rng.pick(LAST_NAMES);
    let email = if anonymous || rng.chance(10) {
        String::new()
    } else {
        format!(
            "{first_ascii}.{last_ascii}{}@{}",
            rng.below(100),
            rng.pick(EMAIL_DOMAINS)
        )
    };
    let phone = if anonymous || rng.chance(25) {
        String::new()
    } else {
        format!("+91{}{:09}", rng.range(6, 9), rng.below(1_000_000_000))
    };
    let name = if anonymous {
        String::new()
    } else if rng.chance(5) {
        // "Last, First" puts a comma in an unquoted-looking column.
        format!("{last}, {first}")
    } else {
        format!("{first} {last}")
    };
    let customer_id = format!("U{}", 100_000 + index);
    let (identity, all_identities) = if anonymous {
        (String::new(), String::new())
    } else if email.is_empty() {
        (customer_id.clone(), format!("[{customer_id}]"))
    } else if rng.chance(30) {
        (email.clone(), format!("[{email}]"))
    } else {
        (customer_id.clone(), format!("[{customer_id}, {email}]"))
    };
    let object_id = match platform {
        Platform::Web => rng.hex(32),
        Platform::Android | Platform::Ios => format!("__{}", rng.hex(32)),
    };
    let push_token = match platform {
        Platform::Android if mix.push_tokens && !rng.chance(20) => format!("fcm:{}", rng.hex(40)),
        Platform::Ios if mix.push_tokens && !rng.chance(30) => format!("apns:{}", rng.hex(64)),
        _ => String::new(),
    };
    let control_group = if rng.chance(2) {
        "System Control Group"
    } else {
        ""
    };

    let (platform_name, make, model, app_version, sdk, os, browser, dpi, width, height, unit) =
        match platform {
            Platform::Android | Platform::Ios => {
                let devices = if platform == Platform::Android {
                    ANDROID_DEVICES
                } else {
                    IOS_DEVICES
                };
                let (make, model, os, dpi, width, height) = *rng.pick(devices);
                let sdk = if platform == Platform::Android {
                    *rng.pick(&["40602", "50002", "50100"])
                } else {
                    *rng.pick(&["40201", "50000"])
                };
                let name = if platform == Platform::Android {
                    "Android"
                } else {
                    "iOS"
                };
                let app_version = *rng.pick(APP_VERSIONS);
                (
                    name,
                    make,
                    model,
                    app_version,
                    sdk,
                    os,
                    "",
                    dpi,
                    width,
                    height,
                    "in",
                )
            }
            Platform::Web => {
                let (browser, os) = *rng.pick(WEB_CLIENTS);
                ("Web", "", "", "", "10903", os, browser, "", "", "", "")
            }
        };

    let fixed: Vec<String> = [
        identity.as_str(),
        &object_id,
        &all_identities,
        platform_name,
        &phone,
        &name,
        &email,
        &push_token,
        make,
        model,
        app_version,
        sdk,
        os,
        browser,
        dpi,
        width,
        height,
        unit,
        control_group,
    ]
    .iter()
    .map(|field| (*field).to_owned())
    .collect();
    let mut encoded = Vec::new();
    for field in &fixed {
        push_field(&mut encoded, field, false);
    }
    User {
        platform,
        app_version,
        fixed,
        encoded,
    }
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// Products as (name, category, price in paise). Commas, double quotes and non-ASCII text are
/// there on purpose to exercise CSV quoting and UTF-8 handling.
const PRODUCTS: &[(&str, &str, u64)] = &[
    ("Men's Cotton T-Shirt, Navy Blue", "Fashion", 49_900),
    (
        "Samsung 55\" Crystal 4K UHD Smart TV",
        "Electronics",
        4_699_000,
    ),
    (
        "boAt Rockerz 450 Bluetooth Headphones",
        "Electronics",
        149_900,
    ),
    ("\"Classic\" Leather Wallet, Tan", "Fashion", 79_900),
    ("Prestige Pressure Cooker, 5 L", "Home & Kitchen", 219_500),
    (
        "Apple iPhone 14 (128 GB) - Midnight",
        "Electronics",
        6_990_000,
    ),
    ("India Gate Basmati Rice, 5 kg", "Grocery", 62_500),
    (
        "Panchatantra Story Set (\"Illustrated\", 5 vols)",
        "Books",
        89_900,
    ),
    ("Yoga Mat 6mm, Anti-Slip", "Sports", 59_900),
    ("Noise ColorFit Pro 4 Smartwatch", "Electronics", 349_900),
    ("Café Filter Coffee Powder 500 g", "Grocery", 38_000),
    ("Banarasi Silk Saree (साड़ी), Maroon", "Fashion", 459_900),
    ("Wildcraft 45L Rucksack", "Sports", 249_900),
    ("Amul Butter 500 g", "Grocery", 27_500),
];

/// Products whose names span lines (LF, and CRLF with quotes), which only RFC 4180 quoting can
/// carry; used rarely, as in real data, plus once per "Order Placed" file for certainty.
const MULTILINE_PRODUCTS: &[(&str, &str, u64)] = &[
    (
        "E-Gift Card ₹1000\nMessage: Happy Birthday!",
        "Gift Cards",
        100_000,
    ),
    (
        "Custom Mug\r\nPrint: \"World's Best Dad\"",
        "Home & Kitchen",
        39_900,
    ),
];

/// Payment modes seen in Indian e-commerce.
const PAYMENT_MODES: &[&str] = &[
    "UPI",
    "Credit Card",
    "Debit Card",
    "Net Banking",
    "Cash on Delivery",
    "Wallet",
];

/// Campaigns as (utm_source, utm_medium, utm_campaign); most sessions have none (organic).
const CAMPAIGNS: &[(&str, &str, &str)] = &[
    ("google", "cpc", "diwali_sale_2022"),
    ("facebook", "paid_social", "big_festive_sep22"),
    ("instagram", "social", "influencer_sep"),
    ("newsletter", "email", "weekly_digest_38"),
    ("clevertap", "push", "abandoned_cart"),
];

/// Coupon codes for the `Coupon Code` property added on 2022-09-21.
const COUPONS: &[&str] = &["FESTIVE20", "NEWUSER100", "FREESHIP", "DIWALI500"];

/// The demo's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// "Order Placed": a custom event with product details.
    OrderPlaced,
    /// "App Launched": CleverTap's system event, the highest-volume one.
    AppLaunched,
    /// "Charged": CleverTap's purchase event with an `Items` list.
    Charged,
}

impl Event {
    /// The raw event name (with spaces), as in `eventName`.
    fn name(self) -> &'static str {
        match self {
            Self::OrderPlaced => "Order Placed",
            Self::AppLaunched => "App Launched",
            Self::Charged => "Charged",
        }
    }

    /// The event-property names of a file. `Coupon Code` sits between existing columns (names
    /// sorted) rather than at the end, so a loader that maps by position breaks visibly.
    fn event_props(self, with_coupon: bool) -> Vec<&'static str> {
        match self {
            Self::OrderPlaced => vec![
                "Product Name",
                "Amount",
                "Currency",
                "Payment Mode",
                "Order Id",
            ],
            Self::AppLaunched => vec!["CT App Version", "CT Source"],
            Self::Charged if with_coupon => vec!["Amount", "Charged ID", "Coupon Code", "Items"],
            Self::Charged => vec!["Amount", "Charged ID", "Items"],
        }
    }

    /// The session-property names of a file.
    fn session_props(self) -> &'static [&'static str] {
        match self {
            Self::OrderPlaced | Self::Charged => &["utm_source", "utm_medium", "utm_campaign"],
            Self::AppLaunched => &["utm_source", "utm_medium"],
        }
    }

    /// The full CSV header of a file of this event.
    fn header(self, with_coupon: bool) -> Vec<String> {
        FIXED_COLUMNS
            .iter()
            .map(|column| (*column).to_owned())
            .chain(
                self.event_props(with_coupon)
                    .into_iter()
                    .map(|prop| format!("eventProps.{prop}")),
            )
            .chain(
                self.session_props()
                    .iter()
                    .map(|prop| format!("sessionProps.{prop}")),
            )
            .collect()
    }
}

/// Money as CleverTap apps usually send it: a decimal with two places, e.g. `499.00`.
fn money(minor_units: u64) -> String {
    format!("{}.{:02}", minor_units / 100, minor_units % 100)
}

/// A product: usually from [`PRODUCTS`], rarely (or when forced) a multi-line one.
fn pick_product(rng: &mut Rng, multiline: bool) -> (&'static str, &'static str, u64) {
    if multiline || rng.below(1000) < 4 {
        *rng.pick(MULTILINE_PRODUCTS)
    } else {
        *rng.pick(PRODUCTS)
    }
}

/// One row's values for an event: fixed columns, event properties, session properties.
fn event_row(
    rng: &mut Rng,
    clock: Clock,
    event: Event,
    utc: i64,
    user: &User,
    with_coupon: bool,
    multiline: bool,
) -> Vec<String> {
    let mut row = Vec::with_capacity(32);
    row.push(clock.local_ts(utc));
    row.push(event.name().to_owned());
    row.extend(user.fixed.iter().cloned());
    match event {
        Event::OrderPlaced => {
            let (product, _, price) = pick_product(rng, multiline);
            let quantity = rng.range(1, 3);
            // A few international orders, so `Currency` is not constant.
            let (currency, amount) = if rng.chance(5) {
                ("USD", price * quantity / 82)
            } else {
                ("INR", price * quantity)
            };
            row.push(product.to_owned());
            row.push(money(amount));
            row.push(currency.to_owned());
            row.push((*rng.pick(PAYMENT_MODES)).to_owned());
            row.push(format!(
                "OD{}",
                rng.range(100_000_000_000_000, 999_999_999_999_999)
            ));
        }
        Event::AppLaunched => {
            row.push(user.app_version.to_owned());
            let source = if user.platform == Platform::Web {
                "Web"
            } else {
                *rng.pick(&["Mobile", "Mobile", "Mobile", "Push", "Deep Link"])
            };
            row.push(source.to_owned());
        }
        Event::Charged => {
            let count = rng.range(1, 3);
            let mut total = 0;
            let items: Vec<serde_json::Value> = (0..count)
                .map(|_| {
                    let (product, category, price) = pick_product(rng, false);
                    let quantity = rng.range(1, 2);
                    total += price * quantity;
                    serde_json::json!({
                        "Product Name": product,
                        "Category": category,
                        "Quantity": quantity,
                        "Price": price as f64 / 100.0,
                    })
                })
                .collect();
            row.push(money(total));
            row.push(format!("{}", rng.range(10_000_000, 99_999_999)));
            if with_coupon {
                let coupon = if rng.chance(35) {
                    *rng.pick(COUPONS)
                } else {
                    ""
                };
                row.push(coupon.to_owned());
            }
            // Items as a JSON array: lots of quotes and commas inside one field.
            row.push(serde_json::Value::Array(items).to_string());
        }
    }
    let campaign = if rng.chance(45) {
        Some(*rng.pick(CAMPAIGNS))
    } else {
        None
    };
    for (index, _) in event.session_props().iter().enumerate() {
        let value = campaign.map_or("", |(source, medium, name)| [source, medium, name][index]);
        row.push(value.to_owned());
    }
    row
}

/// The good rows of one file (one event, one local data date), sorted by time as in real exports.
fn day_rows(
    seed: u64,
    users: &[User],
    clock: Clock,
    event: Event,
    date: Date,
    count: u64,
    with_coupon: bool,
) -> Vec<Vec<String>> {
    let mut rng = Rng::for_key(seed, &format!("rows/{}/{}", event.name(), date.compact()));
    let mut rows: Vec<(i64, Vec<String>)> = (0..count)
        .map(|index| {
            let utc = random_instant(&mut rng, clock, date);
            let mut user = rng.pick(users);
            // Web users rarely fire "App Launched"; re-pick once to keep it mostly mobile.
            if event == Event::AppLaunched && user.platform == Platform::Web {
                user = rng.pick(users);
            }
            // Guarantee at least one multi-line value per "Order Placed" file.
            let multiline = event == Event::OrderPlaced && index == 5;
            let row = event_row(&mut rng, clock, event, utc, user, with_coupon, multiline);
            (utc, row)
        })
        .collect();
    rows.sort_by_key(|(utc, _)| *utc);
    rows.into_iter().map(|(_, row)| row).collect()
}

/// Adds exactly three bad rows to `rows` at a quarter, half and three quarters of the way: one
/// with too few fields, one with `ts` = `notatime`, one dated two days after the file's date.
fn add_bad_rows(rng: &mut Rng, clock: Clock, date: Date, rows: &mut Vec<Vec<String>>) {
    let len = rows.len();
    let mut ragged = rows[len / 4].clone();
    ragged.truncate(5);
    let mut not_a_time = rows[len / 2].clone();
    not_a_time[0] = "notatime".to_owned();
    let mut future = rows[len * 3 / 4].clone();
    future[0] = clock.local_ts(random_instant(rng, clock, date.add_days(2)));
    // Insert from the back so earlier positions stay valid.
    rows.insert(len * 3 / 4, future);
    rows.insert(len / 2, not_a_time);
    rows.insert(len / 4, ragged);
}

/// The uncompressed CSV (header plus rows).
fn csv_bytes(header: &[String], rows: &[Vec<String>]) -> Vec<u8> {
    let mut buf = Vec::new();
    push_record(&mut buf, header);
    for row in rows {
        push_record(&mut buf, row);
    }
    buf
}

// ---------------------------------------------------------------------------------------------
// demo
// ---------------------------------------------------------------------------------------------

/// How a demo file is laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One gzip member, as CleverTap usually writes.
    Plain,
    /// Two gzip members concatenated (header and first half, then the rest), which decoders that
    /// stop after the first member silently truncate.
    MultiMember,
    /// A valid gzip stream cut at 60 % of its bytes, as after an interrupted upload.
    Truncated,
}

/// One file the demo wrote, for the summary.
#[derive(Debug)]
struct Written {
    /// Where it is.
    path: PathBuf,
    /// Data rows it holds (for the corrupt file: the rows before truncation).
    rows: u64,
    /// Size on disk.
    bytes: u64,
    /// Whether a loader must reject it as corrupt.
    corrupt: bool,
}

/// Writes one demo export file and returns its summary.
fn write_export(
    dir: &Path,
    event: Event,
    date: Date,
    file_index: u32,
    header: &[String],
    rows: &[Vec<String>],
    layout: Layout,
) -> Result<Written> {
    let path = dir.join(export_file_name(
        DEMO_REQUEST_ID,
        DEMO_RUN_TS,
        event.name(),
        date,
        file_index,
        0,
    ));
    let bytes = match layout {
        Layout::Plain => gzip(&csv_bytes(header, rows))?,
        Layout::MultiMember => {
            let (first, rest) = rows.split_at(rows.len() / 2);
            let mut bytes = gzip(&csv_bytes(header, first))?;
            let mut tail = Vec::new();
            for row in rest {
                push_record(&mut tail, row);
            }
            bytes.extend(gzip(&tail)?);
            bytes
        }
        Layout::Truncated => {
            let mut bytes = gzip(&csv_bytes(header, rows))?;
            bytes.truncate(bytes.len() * 6 / 10);
            bytes
        }
    };
    fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(Written {
        path,
        rows: rows.len() as u64,
        bytes: bytes.len() as u64,
        corrupt: layout == Layout::Truncated,
    })
}

/// Row count for one demo file, drawn from `lo..=hi` with its own stream so counts are stable.
fn demo_count(seed: u64, event: Event, date: Date, lo: u64, hi: u64) -> u64 {
    Rng::for_key(seed, &format!("count/{}/{}", event.name(), date.compact())).range(lo, hi)
}

/// The `demo` subcommand: see [`Command::Demo`].
fn demo(out: &Path, seed: u64, clock: &Clock) -> Result<()> {
    let clock = *clock;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // Files left from another run or seed would make the printed expectations wrong; say so
    // rather than deleting anything the user did not ask to delete.
    let existing = fs::read_dir(out)
        .with_context(|| format!("reading {}", out.display()))?
        .count();
    if existing > 0 {
        eprintln!(
            "warning: {} already has {existing} entries; files with the same names are \
             overwritten, the totals below cover only the files written now",
            out.display()
        );
    }
    let dated_dir = out.join(Date::new(2022, 9, 21).dashed());
    fs::create_dir_all(&dated_dir).with_context(|| format!("creating {}", dated_dir.display()))?;

    let users = make_users(seed, DEMO_USERS, DEMO_MIX);
    let days = [
        Date::new(2022, 9, 19),
        Date::new(2022, 9, 20),
        Date::new(2022, 9, 21),
    ];
    let mut written = Vec::new();

    for (day_index, date) in days.into_iter().enumerate() {
        let last_day = day_index == days.len() - 1;
        // The last day lands in an Export Center-style dated folder to exercise recursion.
        let dir = if last_day { dated_dir.as_path() } else { out };

        // "Order Placed": day 2 as multi-member gzip, day 3 with exactly three bad rows.
        let event = Event::OrderPlaced;
        let header = event.header(false);
        let count = if last_day {
            demo_count(seed, event, date, 590, 610)
        } else {
            demo_count(seed, event, date, 400, 800)
        };
        let mut rows = day_rows(seed, &users, clock, event, date, count, false);
        let layout = if day_index == 1 {
            Layout::MultiMember
        } else {
            Layout::Plain
        };
        if last_day {
            let mut rng = Rng::for_key(seed, "bad-rows");
            add_bad_rows(&mut rng, clock, date, &mut rows);
        }
        written.push(write_export(dir, event, date, 0, &header, &rows, layout)?);

        // "App Launched": the last day is split into file index 0 and 1 (a multi-part day).
        let event = Event::AppLaunched;
        let header = event.header(false);
        let count = demo_count(seed, event, date, 1000, 2000);
        let rows = day_rows(seed, &users, clock, event, date, count, false);
        if last_day {
            let (first, second) = rows.split_at(rows.len() * 6 / 10);
            written.push(write_export(
                dir,
                event,
                date,
                0,
                &header,
                first,
                Layout::Plain,
            )?);
            written.push(write_export(
                dir,
                event,
                date,
                1,
                &header,
                second,
                Layout::Plain,
            )?);
        } else {
            written.push(write_export(
                dir,
                event,
                date,
                0,
                &header,
                &rows,
                Layout::Plain,
            )?);
        }

        // "Charged": the last day gains `eventProps.Coupon Code` (additive schema change).
        let event = Event::Charged;
        let header = event.header(last_day);
        let count = demo_count(seed, event, date, 200, 400);
        let rows = day_rows(seed, &users, clock, event, date, count, last_day);
        written.push(write_export(
            dir,
            event,
            date,
            0,
            &header,
            &rows,
            Layout::Plain,
        )?);
    }

    // A "Charged" file for the day before, cut short: the corrupt file.
    let event = Event::Charged;
    let date = days[0].add_days(-1);
    let count = demo_count(seed, event, date, 200, 400);
    let rows = day_rows(seed, &users, clock, event, date, count, false);
    written.push(write_export(
        out,
        event,
        date,
        0,
        &event.header(false),
        &rows,
        Layout::Truncated,
    )?);

    let bad_rows = 3;
    let good_rows = written
        .iter()
        .filter(|file| !file.corrupt)
        .map(|file| file.rows)
        .sum::<u64>()
        - bad_rows;
    let expected = format!(
        "EXPECTED good_rows={good_rows} bad_rows={bad_rows} corrupt_files=1 skipped_files=1"
    );

    // A file that is not an export; its name matches no export pattern, so loaders must skip it.
    let readme_path = out.join("README.txt");
    let readme = readme_text(clock, &days, seed, &expected);
    fs::write(&readme_path, &readme)
        .with_context(|| format!("writing {}", readme_path.display()))?;
    written.push(Written {
        path: readme_path,
        rows: 0,
        bytes: readme.len() as u64,
        corrupt: false,
    });

    written.sort_by(|a, b| a.path.cmp(&b.path));
    let mut stdout = io::stdout().lock();
    for file in &written {
        writeln!(
            stdout,
            "{}  {}  {}",
            file.path.display(),
            file.rows,
            file.bytes
        )?;
    }
    writeln!(
        stdout,
        "TOTAL  files={}  rows={}  bytes={}",
        written.len(),
        written.iter().map(|file| file.rows).sum::<u64>(),
        written.iter().map(|file| file.bytes).sum::<u64>()
    )?;
    writeln!(stdout, "{expected}")?;
    Ok(())
}

/// The README.txt of the demo folder: what the data is and what a loader should make of it.
fn readme_text(clock: Clock, days: &[Date], seed: u64, expected: &str) -> String {
    let first = clock.day_bounds_utc(days[0]).0;
    let last = clock.day_bounds_utc(days[days.len() - 1]).1;
    format!(
        "Sample data written by tapline-sample-exports (seed {seed}). Not real CleverTap data.\n\
         \n\
         The *.csv.gz files mimic CleverTap legacy event exports for the events\n\
         \"Order Placed\", \"App Launched\" and \"Charged\" on {} to {}.\n\
         `ts` is local time at UTC{}: these rows cover {} to {}.\n\
         \n\
         Deliberate edge cases: a day split into two files (file index 0 and 1); a multi-member\n\
         gzip file; a Charged file with an extra column (eventProps.Coupon Code); a file with three\n\
         bad rows (too few fields, ts \"notatime\", ts two days after the file date); a truncated\n\
         gzip file (Charged, {}); quoted values with commas, quotes and line breaks; the\n\
         {} files in a dated sub-folder. This README is not an export and must be skipped.\n\
         \n\
         {expected}\n",
        days[0].dashed(),
        days[days.len() - 1].dashed(),
        clock.offset_label(),
        Clock::utc_rfc3339(first),
        Clock::utc_rfc3339(last),
        days[0].add_days(-1).dashed(),
        days[days.len() - 1].dashed(),
    )
}

// ---------------------------------------------------------------------------------------------
// bench
// ---------------------------------------------------------------------------------------------

/// Event properties of the benchmark file.
const BENCH_EVENT_PROPS: [&str; 8] = [
    "Product Name",
    "Category",
    "Quantity",
    "Amount",
    "Currency",
    "Payment Mode",
    "Discount",
    "CT App Version",
];

/// Session properties of the benchmark file.
const BENCH_SESSION_PROPS: [&str; 2] = ["utm_source", "utm_medium"];

/// Whether benchmark rows carry a valid `ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BenchTs {
    /// Local wall time on the benchmark date.
    Valid,
    /// Text no parser accepts: every row is rejected.
    Unparseable,
}

/// `bench --format json`: the CSV bench file's rows written again as a JSON-lines export
/// (the CSV is written first, in a folder of its own, read back and removed). Returns the file
/// written.
fn bench_json(out: &Path, rows: u64, seed: u64, clock: &Clock) -> Result<PathBuf> {
    let staging = out.join(".bench-csv");
    let csv_path = bench(&staging, rows, seed, clock, BenchTs::Valid)?;
    let name = csv_path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".csv.gz"))
        .context("the bench file's name")?;
    let path = out.join(format!("{name}.json.gz"));
    let mut reader = csv::Reader::from_reader(flate2::read::GzDecoder::new(
        std::io::BufReader::new(File::open(&csv_path)?),
    ));
    let headers: Vec<Vec<String>> = reader
        .headers()?
        .iter()
        .map(|h| h.split('.').map(str::to_string).collect())
        .collect();
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = BufWriter::with_capacity(1 << 20, GzEncoder::new(file, Compression::fast()));
    let (mut uncompressed, mut written) = (0u64, 0u64);
    let mut line = Vec::with_capacity(4096);
    for record in reader.records() {
        let record = record?;
        let mut object = serde_json::Map::new();
        for (path, value) in headers.iter().zip(record.iter()) {
            if value.is_empty() {
                continue;
            }
            let mut at = &mut object;
            for key in &path[..path.len() - 1] {
                at = at
                    .entry(key.clone())
                    .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
                    .as_object_mut()
                    .context("a column nested under a value")?;
            }
            at.insert(path[path.len() - 1].clone(), json_scalar(value));
        }
        line.clear();
        serde_json::to_writer(&mut line, &object)?;
        line.push(b'\n');
        writer.write_all(&line)?;
        uncompressed += line.len() as u64;
        written += 1;
    }
    let file = writer
        .into_inner()
        .map_err(|error| error.into_error())
        .context("flushing rows")?
        .finish()
        .context("finishing gzip stream")?;
    file.sync_all()?;
    fs::remove_dir_all(&staging)?;
    let compressed = fs::metadata(&path)?.len();
    println!(
        "rows={written} uncompressed_bytes={uncompressed} compressed_bytes={compressed} path={}",
        path.display()
    );
    Ok(path)
}

/// A field as CleverTap's JSON export writes it: numbers bare (without leading zeros, which a
/// phone number or a code would lose), everything else a string.
fn json_scalar(text: &str) -> serde_json::Value {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain_number = !whole.is_empty()
        && whole.len() <= 15
        && whole.bytes().all(|b| b.is_ascii_digit())
        && (whole == "0" || !whole.starts_with('0'))
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && !(digits.contains('.') && fraction.is_empty());
    match text.parse::<serde_json::Number>() {
        Ok(number) if plain_number => serde_json::Value::Number(number),
        _ => serde_json::Value::String(text.to_string()),
    }
}

/// The `bench` subcommand: see [`Command::Bench`]. Returns the file written.
fn bench(out: &Path, rows: u64, seed: u64, clock: &Clock, ts: BenchTs) -> Result<PathBuf> {
    let clock = *clock;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let event_name = "Bench Event";
    let path = out.join(export_file_name(
        BENCH_REQUEST_ID,
        BENCH_RUN_TS,
        event_name,
        BENCH_DATE,
        0,
        0,
    ));
    let started = Instant::now();
    let users = make_users(seed, BENCH_USERS, BENCH_MIX);
    let mut rng = Rng::for_key(seed, "bench");

    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    // Rows stream through a BufWriter into the encoder, so memory stays flat for any row count;
    // fast compression keeps gzip from dominating the run time.
    let mut writer = BufWriter::with_capacity(1 << 20, GzEncoder::new(file, Compression::fast()));

    let header: Vec<String> = FIXED_COLUMNS
        .iter()
        .map(|column| (*column).to_owned())
        .chain(BENCH_EVENT_PROPS.iter().map(|p| format!("eventProps.{p}")))
        .chain(
            BENCH_SESSION_PROPS
                .iter()
                .map(|p| format!("sessionProps.{p}")),
        )
        .collect();
    let mut buf = Vec::with_capacity(4096);
    push_record(&mut buf, &header);
    writer.write_all(&buf)?;
    let mut uncompressed = buf.len() as u64;

    let (day_start, _) = clock.day_bounds_utc(BENCH_DATE);
    for index in 0..rows {
        buf.clear();
        // Evenly spread, non-decreasing timestamps across the local day, as in a real export.
        let utc = day_start + (u128::from(index) * 86_400 / u128::from(rows)) as i64;
        match ts {
            BenchTs::Valid => push_field(&mut buf, &clock.local_ts(utc), true),
            BenchTs::Unparseable => push_field(&mut buf, "not-a-time", true),
        }
        push_field(&mut buf, event_name, false);
        let user = rng.pick(&users);
        buf.extend_from_slice(&user.encoded);

        let (product, category, price) = pick_product(&mut rng, false);
        let quantity = rng.range(1, 3);
        push_field(&mut buf, product, false);
        push_field(&mut buf, category, false);
        push_field(&mut buf, &quantity.to_string(), false);
        let amount = price * quantity;
        push_field(&mut buf, &money(amount), false);
        push_field(&mut buf, "INR", false);
        let payment_mode = *rng.pick(PAYMENT_MODES);
        push_field(&mut buf, payment_mode, false);
        // Most orders have no discount; the rest get 5-20 % off, so the column is mostly `0.00`.
        let discount = if rng.chance(30) {
            amount * rng.range(5, 20) / 100
        } else {
            0
        };
        push_field(&mut buf, &money(discount), false);
        push_field(&mut buf, user.app_version, false);
        let (source, medium) = if rng.chance(45) {
            let (source, medium, _) = *rng.pick(CAMPAIGNS);
            (source, medium)
        } else {
            ("", "")
        };
        push_field(&mut buf, source, false);
        push_field(&mut buf, medium, false);
        buf.push(b'\n');

        writer.write_all(&buf)?;
        uncompressed += buf.len() as u64;
    }

    let encoder = writer
        .into_inner()
        .map_err(|error| error.into_error())
        .context("flushing rows")?;
    let file = encoder.finish().context("finishing gzip stream")?;
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    drop(file);
    let compressed = fs::metadata(&path)?.len();
    let elapsed = started.elapsed().as_secs_f64();

    let mut stdout = io::stdout().lock();
    writeln!(
        stdout,
        "wrote {rows} rows in {elapsed:.2} s: {:.1} bytes/row uncompressed, {:.1} MB/s, ratio {:.1}x",
        if rows == 0 {
            0.0
        } else {
            uncompressed as f64 / rows as f64
        },
        uncompressed as f64 / 1e6 / elapsed.max(1e-9),
        uncompressed as f64 / compressed.max(1) as f64
    )?;
    writeln!(
        stdout,
        "rows={rows} uncompressed_bytes={uncompressed} compressed_bytes={compressed} path={}",
        path.display()
    )?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// hostile
// ---------------------------------------------------------------------------------------------

/// The `hostile` subcommand: see [`Command::Hostile`].
fn hostile(out: &Path, bad_rows: u64, bomb_rows: u64, seed: u64, clock: &Clock) -> Result<()> {
    let bad = bench(
        &out.join("bad-rows"),
        bad_rows,
        seed,
        clock,
        BenchTs::Unparseable,
    )?;
    let names = write_long_names(&out.join("long-names"))?;
    let bomb = write_bomb(&out.join("bomb"), bomb_rows, clock)?;
    let mut stdout = io::stdout().lock();
    for (case, path) in [("bad-rows", bad), ("long-names", names), ("bomb", bomb)] {
        writeln!(
            stdout,
            "case={case} compressed_bytes={} path={}",
            fs::metadata(&path)?.len(),
            path.display()
        )?;
    }
    Ok(())
}

/// A JSON export whose first line wraps 1,500 leaves in one 180,000-byte key: flattened
/// naively, 1,500 names of 180 KB each.
fn write_long_names(dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = export_file_name(
        BENCH_REQUEST_ID,
        BENCH_RUN_TS,
        "Bench Event",
        BENCH_DATE,
        0,
        0,
    )
    .replace(".csv.gz", ".json.gz");
    let leaves: Vec<String> = (0..1500).map(|i| format!(r#""leaf{i:04}":{i}"#)).collect();
    let ts = BENCH_DATE.compact();
    let mut text = format!(
        r#"{{"ts":{ts}000000,"eventName":"Bench Event","{}":{{{}}}}}"#,
        "k".repeat(180_000),
        leaves.join(",")
    );
    text.push('\n');
    for i in 0..100 {
        text.push_str(&format!(
            r#"{{"ts":{ts}0000{:02},"eventName":"Bench Event","eventProps":{{"n":{i}}}}}"#,
            i % 60
        ));
        text.push('\n');
    }
    let path = dir.join(name);
    fs::write(&path, gzip(text.as_bytes())?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// One valid row repeated `rows` times: gzip shrinks it about a thousandfold.
fn write_bomb(dir: &Path, rows: u64, clock: &Clock) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(export_file_name(
        BENCH_REQUEST_ID,
        BENCH_RUN_TS,
        "Bench Event",
        BENCH_DATE,
        0,
        0,
    ));
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = BufWriter::with_capacity(1 << 20, GzEncoder::new(file, Compression::best()));
    let mut buf = Vec::new();
    push_record(&mut buf, &FIXED_COLUMNS);
    writer.write_all(&buf)?;
    buf.clear();
    let (day_start, _) = clock.day_bounds_utc(BENCH_DATE);
    push_field(&mut buf, &clock.local_ts(day_start), true);
    push_field(&mut buf, "Bench Event", false);
    for _ in 1..FIXED_COLUMNS.len() - 1 {
        push_field(&mut buf, "same value in every row", false);
    }
    buf.push(b'\n');
    for _ in 0..rows {
        writer.write_all(&buf)?;
    }
    let encoder = writer
        .into_inner()
        .map_err(|error| error.into_error())
        .context("flushing rows")?;
    encoder.finish().context("finishing gzip stream")?;
    Ok(path)
}
