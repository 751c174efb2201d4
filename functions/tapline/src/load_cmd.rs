//! `tapline load|sweep|status|query`: exports into the warehouse, and what its ledger and
//! tables hold.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use tapline::config::LoadConfig;
use tapline::export_loader::freshness;
use tapline::export_loader::load::{FileOutcome, FileReport, load_object};
use tapline::export_loader::sweep::OutcomeCounts;
use tapline::storage::local::{LocalSource, RefusedEntry};
use tapline::storage::{self, ObjectEntry, ObjectSource};
use tapline::warehouse::open::OpenOptions;
use tapline::warehouse::profile_views;

use crate::AnyError;
use crate::cli::{EXIT_NOT_ALL_LOADED, EXIT_OK, LoadArgs, QueryArgs, StatusArgs};
use crate::summary;
use crate::warehouse_url::open_warehouse;

/// `tapline load` and `tapline sweep`: the same run; a sweep reports what the ledger already had.
pub async fn load(args: LoadArgs, sweep: bool) -> Result<u8, AnyError> {
    let options = args.column_types.open_options()?;
    let mut config = LoadConfig::new(&args.timezone, args.max_reject_ratio)?.with_limits(
        tapline::export::ExportLimits {
            max_column_name_bytes: args.max_column_name_bytes,
            max_decompressed_ratio: args.max_decompressed_ratio,
            max_decompressed_bytes: args.max_decompressed_bytes,
        },
    )?;
    config.retry_quarantined = args.retry_quarantined;
    // List everything first: a typo in one path stops the run before anything is touched.
    let mut entries: Vec<(Arc<dyn ObjectSource>, ObjectEntry)> = Vec::new();
    // Links, FIFOs and unreadable entries of local folders: reported as failed, never opened.
    let mut refused: Vec<FileReport> = Vec::new();
    for path in &args.paths {
        let source = storage::source_for(path).await?;
        if is_local(path) {
            let listing = LocalSource.list_checked(path).await?;
            entries.extend(listing.entries.into_iter().map(|e| (source.clone(), e)));
            refused.extend(listing.refused.into_iter().map(refused_report));
            continue;
        }
        for entry in source.list(path).await? {
            entries.push((source.clone(), entry));
        }
    }
    let older =
        tapline::export_loader::sweep::retain_since(&mut entries, args.since, |(_, entry)| entry);
    let warehouse = open_warehouse(&args.warehouse.warehouse, &options).await?;
    let mut in_ledger = tapline::export_loader::sweep::InLedger::default();
    if sweep {
        // One ledger read for all that was listed; only what it lacks is tried, newest first.
        let (todo, found) = tapline::export_loader::sweep::not_in_ledger(
            warehouse.as_ref(),
            entries,
            config.retry_quarantined,
            |(_, entry)| entry,
        )
        .await?;
        entries = todo;
        in_ledger = found;
        tapline::export_loader::sweep::newest_first(&mut entries, |(_, entry)| entry);
    }
    let total_bytes: u64 = entries.iter().filter_map(|(_, e)| e.size).sum();
    let bar = progress_bar(&args, total_bytes);

    let started = Instant::now();
    let mut reports: Vec<FileReport> = Vec::with_capacity(entries.len() + refused.len());
    let mut done_bytes = 0u64;
    for (source, entry) in &entries {
        let read = Arc::new(AtomicU64::new(0));
        let report = {
            let watch = read.clone();
            let ticking = bar.clone();
            let ticker = tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    ticking.set_position(done_bytes + watch.load(Ordering::Relaxed));
                }
            });
            bar.set_message(tapline::printable::escaped(&entry.key).into_owned());
            let report =
                load_object(source.as_ref(), warehouse.as_ref(), entry, &config, read).await;
            ticker.abort();
            report
        };
        done_bytes += entry.size.unwrap_or(0);
        bar.set_position(done_bytes);
        reports.push(report);
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    reports.extend(refused);

    print!(
        "{}",
        summary::render(
            &reports,
            elapsed,
            &warehouse.describe(),
            &config,
            args.list_files
        )
    );
    if let Some(since) = args.since {
        println!("{older} exports dated before {since} were not considered (--since).");
    }
    if sweep {
        let mut counts = OutcomeCounts::of(&reports);
        counts.already_loaded += in_ledger.loaded;
        counts.quarantined += in_ledger.quarantined;
        println!("{}", counts.sweep_line());
    }
    // A version quarantined before still needs attention, as when a load reports it.
    let all_loaded = reports.iter().all(|r| r.outcome.is_success()) && in_ledger.quarantined == 0;
    Ok(if all_loaded {
        EXIT_OK
    } else {
        EXIT_NOT_ALL_LOADED
    })
}

/// Whether `path` is read by the local source (as [`storage::source_for`] decides).
fn is_local(path: &str) -> bool {
    !(path.starts_with("s3://") || path.starts_with("gs://"))
}

/// A local entry that is not a regular file, or could not be read, as a failed file.
fn refused_report(refused: RefusedEntry) -> FileReport {
    FileReport {
        entry: ObjectEntry {
            uri: refused.uri,
            key: refused.key,
            version: String::new(),
            size: None,
            created_at: None,
        },
        outcome: FileOutcome::Failed {
            error: refused.reason,
            retryable: false,
        },
        decoded_bytes: 0,
        elapsed: std::time::Duration::ZERO,
    }
}

fn progress_bar(args: &LoadArgs, total_bytes: u64) -> ProgressBar {
    if args.no_progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_bytes);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// `tapline status`: the newest loads of the ledger, then the API pulls left unfinished.
pub async fn status(args: StatusArgs) -> Result<u8, AnyError> {
    let warehouse = open_warehouse(&args.warehouse.warehouse, &OpenOptions::default()).await?;
    let loads = warehouse.recent_loads(args.limit).await?;
    let ids: Vec<i64> = loads.iter().map(|l| l.load_id).collect();
    // The ledger is the status; a profile view that cannot be read (a rebuild that failed
    // after a BigQuery commit) is said, not a failed command.
    let profiles = match profile_views::profile_summary(warehouse.as_ref(), &ids).await {
        Ok(profiles) => profiles,
        Err(e) => {
            eprintln!(
                "Profiles cannot be summarised: {}",
                tapline::error::error_chain(&e)
            );
            None
        }
    };
    print!(
        "{}",
        summary::render_status(&loads, profiles.as_ref(), &warehouse.describe())
    );
    // Like the profiles: a count that cannot be read is said, and the ledger still shown.
    match warehouse.column_misfits().await {
        Ok(misfits) if !misfits.is_empty() => print!("\n{}", summary::render_misfits(&misfits)),
        Ok(_) => {}
        Err(e) => eprintln!(
            "Typed columns cannot be checked: {}",
            tapline::error::error_chain(&e)
        ),
    }
    print!(
        "\n{}",
        freshness_block(warehouse.as_ref(), args.source.as_deref()).await?
    );
    // A warehouse without checkpoints support still shows its ledger.
    #[cfg(feature = "clevertap-api")]
    match tapline::api_puller::checkpoint::unfinished(warehouse.as_ref()).await {
        Ok(unfinished) => print!("\n{}", summary::render_unfinished_pulls(&unfinished)),
        Err(e) => println!(
            "\nUnfinished API pulls cannot be listed: {}",
            tapline::error::error_chain(&e)
        ),
    }
    #[cfg(not(feature = "clevertap-api"))]
    println!(
        "\nUnfinished API pulls are not listed: this build has no `tapline pull` \
         (the `clevertap-api` feature)."
    );
    Ok(EXIT_OK)
}

/// The "Freshness" block of `tapline status`: latency percentiles from the ledger and, with
/// `source`, the oldest object `tapline sweep SOURCE` would load (the sweep's own listing and
/// ledger read). A failed read is an error: a freshness figure in doubt is not printed.
async fn freshness_block(
    warehouse: &dyn tapline::warehouse::Warehouse,
    source: Option<&str>,
) -> Result<String, AnyError> {
    let now = jiff::Timestamp::now();
    let last_day = freshness::last_day(warehouse, now).await?;
    let unloaded = match source {
        Some(location) => {
            let objects = storage::source_for(location).await?;
            Some(
                freshness::oldest_unloaded(
                    objects.as_ref(),
                    warehouse,
                    location,
                    &LoadConfig::default(),
                )
                .await?,
            )
        }
        None => None,
    };
    Ok(summary::render_freshness(
        last_day.as_ref(),
        unloaded.as_ref(),
        now,
    ))
}

/// `tapline query`: one read-only statement, printed as a table.
pub async fn query(args: QueryArgs) -> Result<u8, AnyError> {
    let warehouse = open_warehouse(&args.warehouse.warehouse, &OpenOptions::default()).await?;
    let result = warehouse.query(&args.sql).await?;
    let header: Vec<&str> = result.columns.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> = result
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.clone().unwrap_or_else(|| "NULL".into()))
                .collect()
        })
        .collect();
    print!("{}", summary::table(&header, &rows));
    Ok(EXIT_OK)
}
