//! `make bench`'s stage breakdown. Each stage runs the loader's own code on one export file and
//! prints `stage=… seconds=… cpu=… rows=… bytes=…`: wall seconds of the stage alone, measured
//! here, and the CPU seconds (user and system, every thread) the process spent meanwhile,
//! which a shared machine disturbs less than wall time:
//!
//! - `inflate FILE`: decode only (the loader's decoder, text dropped);
//! - `tokenise FILE`: decode and the CSV parser's reader, nothing checked;
//! - `validate FILE`: the whole parser (row checks, batches), batches dropped;
//! - `write FILE DB`: the SQLite writer alone: the file's first batches, parsed beforehand,
//!   appended again and again until as many rows as the file holds, then committed;
//! - `load FILE DB`: one full load, as `tapline load` runs it;
//! - `pgwrite FILE URL` and `pgload FILE URL`: the same two against PostgreSQL (a
//!   `postgres://` URL; `?schema=` picks a fresh schema): the writer alone (its binary COPY
//!   encoding, the connection, and the server's inserts, which this process's CPU time leaves
//!   out), and a full load;
//! - `ceiling DB`: SQLite's own `INSERT … SELECT` of a loaded event table into an empty table of
//!   the same shape, in one transaction. SQLite runs this one as its transfer optimisation:
//!   records are copied whole, never decoded or built again, which no writer of new rows can do;
//! - `ceiling-rows DB`: the same with `WHERE 1`, which turns the transfer off: each row's
//!   columns are read and a record built from them, as for rows bound one by one. The fastest
//!   any writer through SQLite's SQL could append those rows.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tapline::config::LoadConfig;
use tapline::export::bench_stages::{inflate_only, tokenise_only};
use tapline::export::{ParseOptions, Recognition, RowBatch, parse_export, recognise};
use tapline::export_loader::load::{FileOutcome, load_object, parse_options};
use tapline::storage::local::LocalSource;
use tapline::storage::{ObjectEntry, ObjectSource};
use tapline::warehouse::open::{open as open_warehouse, open_sqlite};
use tapline::warehouse::{Begin, Outcome, SourceObject, Warehouse};

/// Text of the batches the `write` stage replays: enough variety, bounded memory.
const REPLAY_TEXT_BYTES: usize = 32 * 1024 * 1024;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let runtime = tokio::runtime::Runtime::new()?;
    let cpu_before = cpu_seconds();
    let (seconds, rows, bytes) = match args.as_slice() {
        ["inflate", file] => {
            let (opts, _) = options(file)?;
            timed(|| Ok((0, inflate_only(open(file)?, &opts)?)))?
        }
        ["tokenise", file] => {
            let (opts, _) = options(file)?;
            // The header is a record too; the rows are the rest.
            timed(|| Ok((tokenise_only(open(file)?, &opts)?.saturating_sub(1), 0)))?
        }
        ["validate", file] => {
            let (opts, format) = options(file)?;
            timed(|| {
                let s = parse_export(open(file)?, format, &opts, &mut |_| true)?;
                Ok((s.rows, s.decoded_bytes))
            })?
        }
        ["write", file, db] => runtime.block_on(async {
            write(file, &open_sqlite(&format!("sqlite://{db}")).await?).await
        })?,
        ["load", file, db] => runtime
            .block_on(async { load(file, &open_sqlite(&format!("sqlite://{db}")).await?).await })?,
        ["pgwrite", file, url] => {
            runtime.block_on(async { write(file, &*open_warehouse(url).await?).await })?
        }
        ["pgload", file, url] => {
            runtime.block_on(async { load(file, &*open_warehouse(url).await?).await })?
        }
        ["ceiling", db] => ceiling(db, "")?,
        ["ceiling-rows", db] => ceiling(db, " WHERE 1")?,
        _ => bail!(
            "usage: tapline-bench-stages inflate|tokenise|validate FILE | write|load FILE DB | \
             pgwrite|pgload FILE URL | ceiling|ceiling-rows DB"
        ),
    };
    let stage = args[0];
    // The write stage's untimed parse and copies are taken out of its CPU time below.
    let cpu = cpu_seconds() - cpu_before - UNTIMED_CPU.with(|c| c.get());
    println!(
        "stage={stage} seconds={:.4} cpu={cpu:.4} rows={rows} bytes={bytes}",
        seconds.as_secs_f64()
    );
    Ok(())
}

thread_local! {
    /// CPU seconds spent on work a stage does not time (the write stage's parse beforehand).
    static UNTIMED_CPU: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

/// CPU seconds (user and system) of the whole process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn timed(f: impl FnOnce() -> Result<(u64, u64)>) -> Result<(Duration, u64, u64)> {
    let started = Instant::now();
    let (rows, bytes) = f()?;
    Ok((started.elapsed(), rows, bytes))
}

fn open(file: &str) -> Result<std::fs::File> {
    std::fs::File::open(file).with_context(|| format!("opening {file}"))
}

fn config() -> Result<LoadConfig> {
    Ok(LoadConfig::new("UTC", 0.01)?)
}

/// The options the loader parses `file` with, from its name.
fn options(file: &str) -> Result<(ParseOptions, tapline::export::DataFormat)> {
    let name = Path::new(file)
        .file_name()
        .and_then(|n| n.to_str())
        .context("no file name")?;
    let export = match recognise(name) {
        Recognition::Export(export) => export,
        Recognition::Skip(reason) => bail!("{file}: not an export: {reason}"),
    };
    let max_columns = 2000 - 4;
    Ok((
        parse_options(&export, &config()?, max_columns, None),
        export.format,
    ))
}

fn entry(file: &str) -> Result<ObjectEntry> {
    let meta = std::fs::metadata(file)?;
    Ok(ObjectEntry {
        uri: tapline::storage::local::file_uri(Path::new(file))?,
        key: Path::new(file)
            .file_name()
            .and_then(|n| n.to_str())
            .context("no file name")?
            .to_string(),
        version: format!("bench-{}", meta.len()),
        size: Some(meta.len()),
        created_at: None,
    })
}

async fn load(file: &str, warehouse: &dyn Warehouse) -> Result<(Duration, u64, u64)> {
    let started = Instant::now();
    let report = load_object(
        &LocalSource as &dyn ObjectSource,
        warehouse,
        &entry(file)?,
        &config()?,
        Arc::new(AtomicU64::new(0)),
    )
    .await;
    let elapsed = started.elapsed();
    match report.outcome {
        FileOutcome::Loaded(record) => Ok((elapsed, record.rows_loaded, report.decoded_bytes)),
        other => bail!("the load ended {}: {other:?}", other.label()),
    }
}

async fn write(file: &str, warehouse: &dyn Warehouse) -> Result<(Duration, u64, u64)> {
    let (opts, format) = options(file)?;
    let untimed_from = cpu_seconds();
    // Parse the whole file (untimed) for its row count, keeping its first batches to replay.
    let mut replay: Vec<RowBatch> = Vec::new();
    let mut held = 0;
    let summary = parse_export(open(file)?, format, &opts, &mut |mut batch| {
        if held < REPLAY_TEXT_BYTES {
            held += batch.text_bytes();
            batch.rejects.clear();
            replay.push(batch);
        }
        true
    })?;
    let untimed = cpu_seconds() - untimed_from;
    UNTIMED_CPU.with(|c| c.set(untimed));
    let object = SourceObject {
        uri: entry(file)?.uri,
        version: "bench-write".to_string(),
        bytes: None,
    };
    let mut txn = match warehouse.begin_load(&object, false).await? {
        Begin::Started(txn) => txn,
        Begin::Done(_) => bail!(
            "{} has this file loaded already: use a fresh one",
            warehouse.describe()
        ),
    };
    let mut appended = 0u64;
    let mut spent = Duration::ZERO;
    'replay: loop {
        for batch in &replay {
            if appended >= summary.rows {
                break 'replay;
            }
            // The copy of a replayed batch is the bench's, not the writer's: not counted.
            let copy_from = cpu_seconds();
            let mut batch = batch.clone();
            while appended + batch.row_count() as u64 > summary.rows {
                batch.cancel_row();
            }
            UNTIMED_CPU.with(|c| c.set(c.get() + cpu_seconds() - copy_from));
            appended += batch.row_count() as u64;
            let started = Instant::now();
            txn.append(batch).await?;
            spent += started.elapsed();
        }
    }
    let started = Instant::now();
    let outcome = Outcome::Loaded {
        bytes: 0,
        rows: appended,
        rejected: 0,
    };
    txn.commit(outcome, Vec::new()).await?;
    spent += started.elapsed();
    Ok((spent, appended, summary.decoded_bytes))
}

/// SQLite's own `INSERT … SELECT` into a copy of the first event table; `filter` (`WHERE 1`)
/// turns the transfer optimisation off.
fn ceiling(db: &str, filter: &str) -> Result<(Duration, u64, u64)> {
    let untimed_from = cpu_seconds();
    let conn = rusqlite::Connection::open(db)?;
    // The pragmas the warehouse opens its connection with (the page size is the file's).
    conn.execute_batch(
        "PRAGMA journal_mode = DELETE; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -16000;",
    )?;
    let table: String = conn.query_row(
        "SELECT table_name FROM _tapline_tables ORDER BY created_at LIMIT 1",
        [],
        |r| r.get(0),
    )?;
    let create: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [&table],
        |r| r.get(0),
    )?;
    let copy = "_bench_ceiling";
    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
    if !create.contains(&quoted) {
        bail!("unexpected CREATE statement for {table}: {create}");
    }
    conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS {copy}; {}",
        create.replacen(&quoted, copy, 1)
    ))?;
    UNTIMED_CPU.with(|c| c.set(cpu_seconds() - untimed_from));
    let started = Instant::now();
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let rows = conn.execute(
        &format!("INSERT INTO {copy} SELECT * FROM {quoted}{filter}"),
        [],
    )?;
    conn.execute_batch("COMMIT")?;
    let elapsed = started.elapsed();
    let timed_until = cpu_seconds();
    conn.execute_batch(&format!("DROP TABLE {copy}"))?;
    // Dropping the copy is not part of the stage either.
    UNTIMED_CPU.with(|c| c.set(c.get() + cpu_seconds() - timed_until));
    Ok((elapsed, rows as u64, 0))
}
