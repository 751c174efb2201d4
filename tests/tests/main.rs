//! Every integration test, built as one binary (`integration`): each file in `tests/tests/` is a
//! module here, so the AWS and Google SDKs are linked once instead of once per file. A new file
//! needs its `mod` line below; `every_test_file_is_a_module` fails until it has one. Run one
//! file's tests with `cargo nextest run -p tapline-tests -E 'test(/^FILE::/)'`.

mod api_puller_buckets;
mod api_puller_cli;
mod api_puller_lambda;
mod api_puller_page_load;
mod api_puller_postgres;
mod api_puller_report_job;
mod docs_env_tables;
mod export_loader_gcs;
mod export_loader_hostile;
mod export_loader_lambda;
mod export_loader_local;
mod export_loader_parquet;
mod export_loader_postgres;
mod export_loader_profiles;
mod export_loader_s3;
mod export_loader_triggers;
mod export_loader_typed_profiles;
mod export_loader_typed_views;
mod export_loader_typed_views_pg;
mod freshness;
mod jobs_on_bigquery;
mod jobs_on_cloud_run;
mod reconcile_cli;
mod reconcile_pull_counts;
mod reconcile_report_browser;
mod report_relay_dead_letters;
mod retype_sqlite;
mod storage_conformance;
mod typed_views_client_sqlite;
mod warehouse_bigquery;
mod warehouse_bigquery_commit;
mod warehouse_bigquery_typed;
mod warehouse_postgres;
mod warehouse_sqlite;
mod webhook_relay_aws;
mod webhook_relay_claim_store;
mod webhook_relay_export_status;
mod webhook_relay_export_status_cloud;
mod webhook_relay_feature_trees;
mod webhook_relay_local;
mod webhook_relay_queue_bounds;
mod webhook_relay_queue_conformance;
mod webhook_relay_retry_schedule;
mod webhook_relay_warehouse;

/// The guard: cargo builds only the modules declared above (`autotests = false`), so a file in
/// `tests/tests/` without its `mod` line would never run, silently.
mod every_test_file_is_a_module {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The modules `main.rs` declares, one `mod NAME;` a line.
    fn declared_modules(main_rs: &str) -> BTreeSet<String> {
        main_rs
            .lines()
            .filter_map(|line| line.trim().strip_prefix("mod ")?.strip_suffix(';'))
            .map(|name| name.trim().to_owned())
            .collect()
    }

    /// The modules `dir` holds: each `NAME.rs` and each folder `NAME/` (cargo would have built
    /// `NAME/main.rs` as a test binary of its own), `main.rs` itself aside.
    fn modules_on_disk(dir: &Path) -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .expect("read tests/tests")
            .map(|entry| entry.expect("a directory entry").path())
            .filter_map(|path| {
                let name = path.file_name()?.to_str()?.to_owned();
                if path.is_dir() {
                    Some(name)
                } else {
                    name.strip_suffix(".rs").map(str::to_owned)
                }
            })
            .filter(|name| name != "main")
            .collect()
    }

    /// The files of `dir` that `main_rs` does not declare.
    fn undeclared(dir: &Path, main_rs: &str) -> Vec<String> {
        let declared = declared_modules(main_rs);
        modules_on_disk(dir)
            .into_iter()
            .filter(|name| !declared.contains(name))
            .collect()
    }

    #[test]
    fn each_file_in_tests_tests_is_declared_in_main_rs() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        let missing = undeclared(&dir, include_str!("main.rs"));
        assert!(
            missing.is_empty(),
            "tests/tests/main.rs does not declare {missing:?}: add `mod NAME;` for each, or their \
             tests never run"
        );
    }

    #[test]
    fn a_file_without_its_mod_line_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        for file in ["main.rs", "declared.rs", "forgotten.rs"] {
            std::fs::write(dir.path().join(file), "").expect("write");
        }
        std::fs::create_dir(dir.path().join("forgotten_folder")).expect("mkdir");
        let main_rs = "//! docs\nmod declared;\n// mod forgotten;\n";
        assert_eq!(
            undeclared(dir.path(), main_rs),
            ["forgotten", "forgotten_folder"]
        );
        let all = "mod declared;\nmod forgotten;\nmod forgotten_folder;\n";
        assert!(undeclared(dir.path(), all).is_empty());
    }
}
