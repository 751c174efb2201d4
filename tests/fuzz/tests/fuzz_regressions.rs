//! Replays every case kept in `tests/fixtures/fuzz/` through the fuzzer's harness (the
//! one-object load path): no panic, the expected outcome, and peak heap within the bound, or
//! past it for the cases marked `over-bound-known` until the load path bounds them.

use std::path::Path;

use tapline_fuzz::case_files::{MemoryExpectation, read_cases};
use tapline_fuzz::one_object_load::{DEFAULT_MEMORY_BOUND_BYTES, OneObjectLoad};

#[test]
fn every_kept_fuzz_case_replays_without_panic_within_the_memory_bound() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/fuzz");
    let cases = read_cases(&root).expect("tests/fixtures/fuzz is readable");
    assert!(
        cases.len() >= 5,
        "the kept cases are missing: {}",
        root.display()
    );
    let harness = OneObjectLoad::new(DEFAULT_MEMORY_BOUND_BYTES);
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    let mut problems = Vec::new();
    for case in &cases {
        let dir = case.dir.file_name().unwrap_or_default().to_string_lossy();
        let report = harness.run(&case.name, &case.bytes);
        eprintln!(
            "{dir}: peak {:.1} MiB, {:.2} s, {}",
            mib(report.peak_bytes),
            report.elapsed.as_secs_f64(),
            report.outcome
        );
        if let Some(panic) = &report.panic {
            problems.push(format!("{dir}: panicked: {panic}"));
            continue;
        }
        let within = report.peak_bytes <= DEFAULT_MEMORY_BOUND_BYTES;
        match case.memory {
            MemoryExpectation::WithinBound => {
                if !within {
                    problems.push(format!(
                        "{dir}: peak heap {:.1} MiB is past the {:.0} MiB bound",
                        mib(report.peak_bytes),
                        mib(DEFAULT_MEMORY_BOUND_BYTES)
                    ));
                }
                if !report.outcome.starts_with(&case.expect) {
                    problems.push(format!(
                        "{dir}: expected an outcome starting {:?}, got {:?}",
                        case.expect, report.outcome
                    ));
                }
            }
            MemoryExpectation::OverBoundKnown if within => problems.push(format!(
                "{dir}: now within the bound (peak {:.1} MiB, {:?}): set \"memory\" to \
                 \"within-bound\" and \"expect\" to that outcome in its case.json",
                mib(report.peak_bytes),
                report.outcome
            )),
            MemoryExpectation::OverBoundKnown => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
