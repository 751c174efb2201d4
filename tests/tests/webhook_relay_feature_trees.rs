//! Each relay Lambda compiles only what it runs (issue 17): the SQS worker serves no HTTP, so its
//! dependency tree (`webhook-relay --no-default-features --features lambda-worker`, what
//! `make package` zips) has no router, no HTTP server and no SQLite; the endpoint has no SQLite.
//! Read from `cargo tree` over the lockfile: offline, well under a second.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The packages (`name`) and enabled features (`name/feature`) of `webhook-relay` built with
/// only `features`, normal dependencies (what ships), as `cargo tree` resolves them.
fn relay_tree(features: &str) -> BTreeSet<String> {
    // Cargo sets CARGO for the tests it runs (and nextest passes it on); env! is the fallback.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(cargo)
        .current_dir(&workspace)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "webhook-relay",
            "--no-default-features",
            "--features",
            features,
            "-e",
            "normal,features",
            "--prefix",
            "none",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Lines are `name vX.Y.Z (…)` for a package and `name feature "f"` for a feature.
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            match words.next()? {
                "feature" => Some(format!("{name}/{}", words.next()?.trim_matches('"'))),
                version if version.starts_with('v') => Some(name.to_owned()),
                _ => None,
            }
        })
        .collect()
}

/// What the worker Lambda must never compile: the router's framework and its HTTP adapter, an
/// HTTP server, SQLite.
const NOT_IN_THE_WORKER: &[&str] = &[
    "axum",
    "axum-core",
    "lambda_http",
    "hyper-util/server",
    "rusqlite",
    "libsqlite3-sys",
];

const SQLITE: &[&str] = &["rusqlite", "libsqlite3-sys"];

#[test]
fn the_worker_lambda_has_no_router_no_http_server_and_no_sqlite() {
    let worker = relay_tree("lambda-worker");
    assert!(
        worker.contains("lambda_runtime") && worker.contains("aws-sdk-sqs"),
        "the tree was read (the worker runs on lambda_runtime over SQS): {worker:?}"
    );
    let found: Vec<_> = NOT_IN_THE_WORKER
        .iter()
        .filter(|name| worker.contains(**name))
        .collect();
    assert!(
        found.is_empty(),
        "the worker Lambda's tree gained {found:?}: see `cargo tree -p webhook-relay \
         --no-default-features --features lambda-worker -e features -i <name>`"
    );
}

#[test]
fn the_endpoint_lambda_has_its_router_and_no_sqlite() {
    let endpoint = relay_tree("lambda-endpoint");
    // The same reading sees what the worker must not have: the check above is not vacuous.
    for needed in ["axum", "lambda_http", "hyper-util/server"] {
        assert!(
            endpoint.contains(needed),
            "{needed} not in the endpoint's tree"
        );
    }
    let found: Vec<_> = SQLITE
        .iter()
        .filter(|name| endpoint.contains(**name))
        .collect();
    assert!(
        found.is_empty(),
        "the endpoint Lambda's tree gained {found:?}"
    );
}
