//! `tapline-fuzz`: mutates export objects and loads each through the one-object load path,
//! reporting panics and cases past the memory bound, with their inputs saved. A supervisor
//! process runs the cases in a worker process, so a case that hits the hard memory cap (and
//! aborts the worker) is recorded from the in-flight file and the run goes on.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fastrand::Rng;
use tapline_fuzz::ALLOCATOR;
use tapline_fuzz::case_files::{self, MemoryExpectation};
use tapline_fuzz::counting_allocator::{CountingAllocator, HARD_CAP_MARK};
use tapline_fuzz::mutations::{self, Case};
use tapline_fuzz::one_object_load::{
    CaseReport, DEFAULT_MEMORY_BOUND_BYTES, OneObjectLoad, Verdict, kind_of,
};
use tapline_fuzz::seeds::{self, Seed};

const USAGE: &str = "\
Usage: tapline-fuzz [--seed N] [--seconds N] [--cases N] [--corpus DIR]... [--out DIR]
                    [--bound-mib N] [--hard-cap-mib N] [--case-seconds N]
       tapline-fuzz --replay DIR...

Fuzzes one export object's load path (name recognition, gzip, CSV and JSON-lines rows,
validation) until --seconds (default 60) or --cases pass. Exits 1 when a case panicked, went
past the memory bound (default 256 MiB of heap) or killed the worker; findings are saved under
--out (default .tmp/fuzz) as case folders, the format of tests/fixtures/fuzz/. A case still
running after --case-seconds (default 3) is stopped at its next read and counted as slow.
--replay runs case folders (or folders of them) and prints each verdict.";

const MIB: usize = 1024 * 1024;
/// Findings of one kind saved per run; the rest are counted.
const SAVED_PER_KIND: usize = 3;
/// Most corpus entries; a new one replaces a random old one past it.
const MAX_CORPUS: usize = 4096;
/// Longest text admitted into the corpus.
const MAX_CORPUS_TEXT: usize = 256 * 1024;

#[derive(Debug, Clone)]
struct Options {
    seed: u64,
    seconds: u64,
    cases: Option<u64>,
    corpus: Vec<PathBuf>,
    out: PathBuf,
    bound_bytes: usize,
    hard_cap_bytes: usize,
    case_seconds: u64,
    replay: Vec<PathBuf>,
    worker: Option<Worker>,
}

/// Set on a worker process by its supervisor.
#[derive(Debug, Clone, Copy)]
struct Worker {
    start_case: u64,
    deadline_unix_ms: u128,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        seed: 1,
        seconds: 60,
        cases: None,
        corpus: Vec::new(),
        out: PathBuf::from(".tmp/fuzz"),
        bound_bytes: DEFAULT_MEMORY_BOUND_BYTES,
        hard_cap_bytes: 1024 * MIB,
        case_seconds: 3,
        replay: Vec::new(),
        worker: None,
    };
    let mut start_case = None;
    let mut deadline = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| {
            text.replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("{arg}: {text:?} is not a whole number"))
        };
        match arg.as_str() {
            "--seed" => o.seed = number(value()?)?,
            "--seconds" => o.seconds = number(value()?)?,
            "--cases" => o.cases = Some(number(value()?)?),
            "--corpus" => o.corpus.push(PathBuf::from(value()?)),
            "--out" => o.out = PathBuf::from(value()?),
            "--bound-mib" => o.bound_bytes = number(value()?)? as usize * MIB,
            "--hard-cap-mib" => o.hard_cap_bytes = number(value()?)? as usize * MIB,
            "--case-seconds" => o.case_seconds = number(value()?)?,
            "--replay" => o.replay.push(PathBuf::from(value()?)),
            "--worker-start-case" => start_case = Some(number(value()?)?),
            "--worker-deadline-unix-ms" => deadline = Some(number(value()?)? as u128),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let (Some(start_case), Some(deadline_unix_ms)) = (start_case, deadline) {
        o.worker = Some(Worker {
            start_case,
            deadline_unix_ms,
        });
    }
    Ok(o)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}\n");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !options.replay.is_empty() {
        return replay(&options);
    }
    match options.worker {
        Some(worker) => run_worker(&options, worker),
        None => supervise(&options),
    }
}

fn now_unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

fn replay(options: &Options) -> ExitCode {
    let harness = OneObjectLoad::new(options.bound_bytes);
    let mut failed = false;
    for root in &options.replay {
        let cases = if root.join("object").is_file() {
            case_files::read_case(root).map(|c| vec![c])
        } else {
            case_files::read_cases(root)
        };
        let cases = match cases {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: {e}", root.display());
                failed = true;
                continue;
            }
        };
        for case in cases {
            let report = harness.run(&case.name, &case.bytes);
            let verdict = report.verdict(options.bound_bytes);
            failed |= verdict != Verdict::Pass;
            println!(
                "{}: {:?}, peak {}, {:.2} s, {}",
                case.dir.display(),
                verdict,
                mib(report.peak_bytes),
                report.elapsed.as_secs_f64(),
                report.outcome.escape_debug()
            );
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Totals of a run, summed over worker processes.
#[derive(Debug, Default, Clone)]
struct Totals {
    cases: u64,
    stopped_for_time: u64,
    max_peak: usize,
    max_peak_within_bound: usize,
    slowest_ms: u64,
    last_case: Option<u64>,
}

impl Totals {
    fn line(&self) -> String {
        format!(
            "stat {} {} {} {} {} {}",
            self.cases,
            self.stopped_for_time,
            self.max_peak,
            self.max_peak_within_bound,
            self.slowest_ms,
            self.last_case.map_or(-1, |c| c as i64)
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let f: Vec<i64> = line
            .strip_prefix("stat ")?
            .split(' ')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        (f.len() == 6).then(|| Self {
            cases: f[0] as u64,
            stopped_for_time: f[1] as u64,
            max_peak: f[2] as usize,
            max_peak_within_bound: f[3] as usize,
            slowest_ms: f[4] as u64,
            last_case: (f[5] >= 0).then_some(f[5] as u64),
        })
    }

    fn add(&mut self, other: &Self) {
        self.cases += other.cases;
        self.stopped_for_time += other.stopped_for_time;
        self.max_peak = self.max_peak.max(other.max_peak);
        self.max_peak_within_bound = self.max_peak_within_bound.max(other.max_peak_within_bound);
        self.slowest_ms = self.slowest_ms.max(other.slowest_ms);
    }
}

/// Runs workers until the time or the cases are used up, restarting one that died.
fn supervise(options: &Options) -> ExitCode {
    let findings = options.out.join("findings");
    if let Err(e) = fs::create_dir_all(&findings) {
        eprintln!("cannot create {}: {e}", findings.display());
        return ExitCode::FAILURE;
    }
    let started = Instant::now();
    let deadline = now_unix_ms() + u128::from(options.seconds) * 1000;
    let exe = std::env::current_exe().expect("the running binary's path");
    let in_flight = options.out.join("in-flight.bin");
    let mut totals = Totals::default();
    let mut kinds: HashMap<String, u64> = HashMap::new();
    let mut crashes = 0u64;
    let mut panics = 0u64;
    let mut over_bound = 0u64;
    let mut next_case = 0u64;
    println!(
        "Fuzzing for {} s (seed {}, memory bound {}, hard cap {}); findings go to {}.",
        options.seconds,
        options.seed,
        mib(options.bound_bytes),
        mib(options.hard_cap_bytes),
        findings.display()
    );
    loop {
        let remaining_cases = options.cases.map(|c| c.saturating_sub(totals.cases));
        if now_unix_ms() >= deadline || remaining_cases == Some(0) {
            break;
        }
        let mut cmd = Command::new(&exe);
        cmd.args(["--seed", &options.seed.to_string()])
            .args(["--out", &options.out.to_string_lossy()])
            .args(["--bound-mib", &(options.bound_bytes / MIB).to_string()])
            .args([
                "--hard-cap-mib",
                &(options.hard_cap_bytes / MIB).to_string(),
            ])
            .args(["--case-seconds", &options.case_seconds.to_string()])
            .args(["--worker-start-case", &next_case.to_string()])
            .args(["--worker-deadline-unix-ms", &deadline.to_string()])
            .stdout(Stdio::piped());
        if let Some(n) = remaining_cases {
            cmd.args(["--cases", &n.to_string()]);
        }
        for dir in &options.corpus {
            cmd.arg("--corpus").arg(dir);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot start a worker: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut last = Totals::default();
        let stdout = child.stdout.take().expect("piped");
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(t) = Totals::parse(&line) {
                last = t;
            } else if let Some(kind) = line.strip_prefix("over ") {
                over_bound += 1;
                *kinds.entry(format!("over the bound: {kind}")).or_default() += 1;
            } else if let Some(kind) = line.strip_prefix("slow ") {
                *kinds
                    .entry(format!(
                        "slow (past --case-seconds between reads, not a failure): {kind}"
                    ))
                    .or_default() += 1;
            } else if let Some(kind) = line.strip_prefix("panic ") {
                panics += 1;
                *kinds.entry(format!("panic: {kind}")).or_default() += 1;
            } else {
                println!("{line}");
            }
        }
        let status = child.wait().expect("waiting for the worker");
        if status.success() {
            totals.add(&last);
            break;
        }
        // The worker died inside a case: the in-flight file names it.
        crashes += 1;
        let Some(dead) = read_in_flight(&in_flight) else {
            eprintln!("the worker died ({status}) before its first case; stopping");
            return ExitCode::FAILURE;
        };
        let index = dead.index;
        let kind = if dead.hard_cap {
            format!(
                "hard memory cap ({}), worker aborted: {}",
                mib(options.hard_cap_bytes),
                dead.heavy_kind
            )
        } else {
            format!(
                "worker died ({status}, signal {:?}): {}",
                status.signal(),
                dead.heavy_kind
            )
        };
        *kinds.entry(kind.clone()).or_default() += 1;
        let dir = findings.join(format!("crash-case-{index}"));
        let _ = case_files::write_case(
            &dir,
            &dead.name,
            &dead.bytes,
            "?",
            MemoryExpectation::WithinBound,
            &format!("tapline-fuzz seed {}: {kind}", options.seed),
        );
        println!(
            "Case {index} killed the worker ({kind}); saved in {}.",
            dir.display()
        );
        // Its last progress line may be up to a second old: count the cases by index.
        last.cases = index + 1 - next_case;
        totals.add(&last);
        next_case = index + 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!();
    println!(
        "Fuzzed {} cases in {:.0} s: {:.1} cases/s (seed {}).",
        totals.cases,
        seconds,
        totals.cases as f64 / seconds.max(0.001),
        options.seed
    );
    println!("Panics: {panics}.");
    println!(
        "Cases over the memory bound ({}): {}; worker deaths (hard cap {} or crash): {}.",
        mib(options.bound_bytes),
        over_bound,
        mib(options.hard_cap_bytes),
        crashes
    );
    println!(
        "Peak heap of a case: {} (within the bound: {}); slowest case {:.2} s; stopped after \
         {} s (not failures): {}.",
        mib(totals.max_peak),
        mib(totals.max_peak_within_bound),
        totals.slowest_ms as f64 / 1000.0,
        options.case_seconds,
        totals.stopped_for_time
    );
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (kind, count) in &kinds {
        println!("  {count:>7}  {kind}");
    }
    if panics + over_bound + crashes == 0 {
        println!("No findings.");
        ExitCode::SUCCESS
    } else {
        println!("Findings (inputs and outcomes): {}", findings.display());
        ExitCode::FAILURE
    }
}

/// In-flight layout: status byte, case index (u64 LE), label length (u32 LE), label (the name,
/// a line feed, the heavy kind), bytes.
fn write_in_flight(file: &File, index: u64, case: &Case) -> std::io::Result<()> {
    let label = format!("{}\n{}", case.name, case.heavy_kind());
    let mut head = vec![b'R'];
    head.extend_from_slice(&index.to_le_bytes());
    head.extend_from_slice(&(label.len() as u32).to_le_bytes());
    head.extend_from_slice(label.as_bytes());
    let bytes = &case.bytes;
    file.set_len(0)?;
    file.write_all_at(&head, 0)?;
    file.write_all_at(bytes, head.len() as u64)
}

struct InFlight {
    index: u64,
    name: String,
    heavy_kind: String,
    bytes: Vec<u8>,
    hard_cap: bool,
}

fn read_in_flight(path: &Path) -> Option<InFlight> {
    let data = fs::read(path).ok()?;
    let index = u64::from_le_bytes(data.get(1..9)?.try_into().ok()?);
    let len = u32::from_le_bytes(data.get(9..13)?.try_into().ok()?) as usize;
    let label = String::from_utf8_lossy(data.get(13..13 + len)?).into_owned();
    let (name, heavy_kind) = label.rsplit_once('\n')?;
    Some(InFlight {
        index,
        name: name.to_string(),
        heavy_kind: heavy_kind.to_string(),
        bytes: data.get(13 + len..)?.to_vec(),
        hard_cap: data[0] == HARD_CAP_MARK,
    })
}

fn per_case_rng(seed: u64, index: u64) -> Rng {
    Rng::with_seed(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index.rotate_left(32) ^ index)
}

/// What a case did, coarsely: a new one earns its input a place in the corpus.
fn signature(report: &CaseReport) -> String {
    format!(
        "{} | {}",
        kind_of(&report.outcome),
        report.reject_kinds.join(" | ")
    )
}

/// The kind of a case past the bound. A bomb's kind says what its rows come to: the outcome
/// of its first 256 KiB of text (many rejects, or good rows).
fn over_kind(harness: &OneObjectLoad, case: &Case) -> String {
    let kind = case.heavy_kind();
    if !case.recipe.contains(&"gzip-bomb") {
        return kind;
    }
    let mut sample = Vec::new();
    let _ = flate2::read::MultiGzDecoder::new(case.bytes.as_slice())
        .take(256 * 1024)
        .read_to_end(&mut sample);
    let outcome = harness.run(&case.name, &sample).outcome;
    format!("{kind}; its first 256 KiB: {}", kind_of(&outcome))
}

fn run_worker(options: &Options, worker: Worker) -> ExitCode {
    let in_flight = match OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(options.out.join("in-flight.bin"))
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot open the in-flight file: {e}");
            return ExitCode::FAILURE;
        }
    };
    CountingAllocator::set_in_flight_file(in_flight.try_clone().expect("a second handle"));
    let mut corpus: Vec<Seed> = seeds::documented();
    for dir in &options.corpus {
        corpus.extend(seeds::from_folder(dir));
    }
    let harness = OneObjectLoad::new(options.bound_bytes)
        .with_time_budget(Duration::from_secs(options.case_seconds));
    ALLOCATOR.set_hard_cap(options.hard_cap_bytes);
    let findings = options.out.join("findings");
    let mut seen: HashSet<String> = HashSet::new();
    let mut saved: HashMap<String, usize> = HashMap::new();
    let mut totals = Totals::default();
    let mut last_stat = Instant::now();
    let stdout = std::io::stdout();
    let mut corpus_rng = Rng::with_seed(options.seed ^ worker.start_case);
    let mut index = worker.start_case;
    let case_budget = Duration::from_secs(options.case_seconds);
    // One line per case on stderr, to see where the time goes.
    let trace = std::env::var_os("TAPLINE_FUZZ_TRACE").is_some();
    loop {
        if options.cases.is_some_and(|n| totals.cases >= n)
            || now_unix_ms() >= worker.deadline_unix_ms
        {
            break;
        }
        let mut rng = per_case_rng(options.seed, index);
        let seed = &corpus[rng.usize(..corpus.len())];
        let other = &corpus[rng.usize(..corpus.len())];
        let case: Case = mutations::mutate(&mut rng, seed, other);
        if let Err(e) = write_in_flight(&in_flight, index, &case) {
            eprintln!("cannot write the in-flight file: {e}");
            return ExitCode::FAILURE;
        }
        let report = harness.run(&case.name, &case.bytes);
        if trace {
            eprintln!(
                "case {index}: {:.3} s, peak {}, {} bytes, {}: {}",
                report.elapsed.as_secs_f64(),
                mib(report.peak_bytes),
                case.bytes.len(),
                case.recipe.join(", "),
                report.outcome.escape_debug()
            );
        }
        totals.cases += 1;
        totals.stopped_for_time += u64::from(report.stopped_for_time);
        totals.last_case = Some(index);
        totals.max_peak = totals.max_peak.max(report.peak_bytes);
        totals.slowest_ms = totals.slowest_ms.max(report.elapsed.as_millis() as u64);
        let verdict = report.verdict(options.bound_bytes);
        let slow = !report.stopped_for_time && report.elapsed > case_budget;
        let finding = match &verdict {
            Verdict::Pass if slow => Some(("slow", case.heavy_kind())),
            Verdict::Pass => {
                totals.max_peak_within_bound = totals.max_peak_within_bound.max(report.peak_bytes);
                let signature = signature(&report);
                if case.plain.len() <= MAX_CORPUS_TEXT && seen.insert(signature) {
                    let entry = Seed {
                        name: case.name.clone(),
                        plain: case.plain.clone(),
                    };
                    if corpus.len() < MAX_CORPUS {
                        corpus.push(entry);
                    } else {
                        let at = corpus_rng.usize(..corpus.len());
                        corpus[at] = entry;
                    }
                }
                None
            }
            Verdict::Panic(message) => Some(("panic", kind_of(message))),
            Verdict::OverMemory { .. } => Some(("over", over_kind(&harness, &case))),
        };
        if let Some((label, kind)) = finding {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{label} {kind}");
            let count = saved.entry(format!("{label} {kind}")).or_default();
            *count += 1;
            if *count <= SAVED_PER_KIND {
                let dir = findings.join(format!("{label}-case-{index}"));
                let why = format!(
                    "tapline-fuzz seed {} case {index} ({}): {verdict:?}, peak {}",
                    options.seed,
                    case.recipe.join(", "),
                    mib(report.peak_bytes)
                );
                let memory = match verdict {
                    Verdict::OverMemory { .. } => MemoryExpectation::OverBoundKnown,
                    _ => MemoryExpectation::WithinBound,
                };
                if let Err(e) = case_files::write_case(
                    &dir,
                    &case.name,
                    &case.bytes,
                    &report.outcome,
                    memory,
                    &why,
                ) {
                    let _ = writeln!(out, "cannot save {}: {e}", dir.display());
                }
            }
        }
        if last_stat.elapsed() >= Duration::from_secs(1) {
            let _ = writeln!(stdout.lock(), "{}", totals.line());
            last_stat = Instant::now();
        }
        index += 1;
    }
    let _ = writeln!(stdout.lock(), "{}", totals.line());
    ExitCode::SUCCESS
}
