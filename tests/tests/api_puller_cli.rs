//! `tapline pull events` end to end: the built binary against the CleverTap API double, checked
//! in the SQLite file.

use std::time::Duration;

use serde_json::Value;
use tapline_tests::doubles::clevertap_api::{
    CampaignReport, MessageDay, PASSCODE, Quirk, Seen, event_records, message_record,
    profile_records,
};
use tapline_tests::pull_case::{PullCase as Case, assert_says, unfinished_cells};
use tapline_tests::{export_csv, gzip, sqlite_rows, sqlite_value, tapline};

const DAY1: i64 = 20220922;
const DAY2: i64 = 20220923;

fn is_page(seen: &Seen) -> bool {
    matches!(seen, Seen::Page(..))
}

fn is_open(seen: &Seen) -> bool {
    matches!(seen, Seen::Open(..))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_events_land_in_the_export_table_with_the_export_columns() {
    let case = Case::sqlite().await;
    let exports = case.dir.path().join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    std::fs::write(
        exports.join("1663664837-1663785000-Charged-20220921-0-0.csv.gz"),
        gzip(export_csv("Charged", 3).as_bytes()),
    )
    .unwrap();
    let load = tapline(&[
        "load",
        exports.to_str().unwrap(),
        "--warehouse",
        case.warehouse(),
    ]);
    assert_eq!(load.code, 0, "{}", load.stderr);
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 25));

    let stdout = case
        .run_ok(
            &case
                .events_day("Charged")
                .arg(&["--timezone", "Asia/Kolkata"]),
        )
        .await;
    assert_says(&stdout, "1 of 1 slices pulled, 25 rows");
    assert_eq!(case.count("SELECT count(*) FROM charged"), 28);
    assert_eq!(
        case.count("SELECT count(*) FROM charged WHERE _source_uri LIKE 'clevertap-api://%'"),
        25
    );
    assert_eq!(
        case.count("SELECT count(*) FROM _tapline_tables WHERE event_name = 'Charged'"),
        1
    );
    // The export's column and the API's nested `event_props.Amount` are one column.
    assert_eq!(
        case.count(
            "SELECT count(*) FROM _tapline_columns WHERE table_name = 'charged' \
             AND column_name = 'event_props_amount' AND raw_name = 'eventProps.Amount'"
        ),
        1
    );
    assert_eq!(
        case.count("SELECT count(*) FROM charged WHERE event_props_amount IS NOT NULL"),
        28
    );
    // ts is project-local (Asia/Kolkata, +05:30) in the API and stored as UTC.
    let row = sqlite_rows(
        &case.db,
        "SELECT ts, event_name, profile_identity, event_props_amount, session_props_utm_source, \
         profile_profile_data_favorite_color, _source_uri, _source_line \
         FROM charged WHERE profile_identity = 'u1' AND _source_uri LIKE 'clevertap-api://%'",
    );
    let expected: Vec<Option<String>> = [
        "2022-09-21T18:31:00Z",
        "Charged",
        "u1",
        "1",
        "Foo",
        "blue",
        "clevertap-api://TEST-ACC-1/events/Charged/2022-09-22/page-0",
        "2",
    ]
    .iter()
    .map(|s| Some(s.to_string()))
    .collect();
    assert_eq!(row, vec![expected]);
    assert_eq!(
        case.count(
            "SELECT count(*) FROM _tapline_loads WHERE uri LIKE 'clevertap-api://%' AND status = 'loaded'"
        ),
        3,
        "25 records at 10 a page are 3 pages, each a load"
    );
    let checkpoint = case.checkpoint("events/Charged/2022-09-22");
    assert_eq!(checkpoint["status"], "complete");
    assert_eq!(checkpoint["pages"], 3);
    assert_eq!(checkpoint["rows"], 25);
    assert!(checkpoint["last_success"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_pulled_again_is_replaced_not_doubled() {
    let case = Case::sqlite().await;
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 25));
    case.api.set_events("Charged", DAY2, event_records(DAY2, 5));
    let both_days = case
        .events()
        .event("Charged")
        .days("2022-09-22", "2022-09-23");
    case.run_ok(&both_days).await;
    assert_eq!(case.count("SELECT count(*) FROM charged"), 30);

    // CleverTap now has fewer records for the first day (late corrections): 2 pages, not 3.
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 12));
    case.run_ok(&case.events_day("Charged")).await;
    assert_eq!(
        case.count("SELECT count(*) FROM charged WHERE ts < '2022-09-23'"),
        12
    );
    assert_eq!(
        case.count("SELECT count(*) FROM charged WHERE ts >= '2022-09-23'"),
        5
    );
    assert_eq!(case.duplicates("charged"), 0);
    // The old pull's third page was emptied by a load of the new pull.
    assert_eq!(
        case.count(
            "SELECT count(*) FROM _tapline_loads WHERE uri LIKE '%/2022-09-22/page-2' AND status = 'replaced'"
        ),
        1
    );

    case.run_ok(&both_days).await;
    assert_eq!(case.count("SELECT count(*) FROM charged"), 17);
    assert_eq!(case.duplicates("charged"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_in_progress_cursors_and_server_errors_are_retried() {
    let case = Case::sqlite().await;
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 15));
    // POST: 429, code 1, 500, then a cursor; GET page 0: in progress, code 2, 429, then rows.
    case.api.quirks(&[
        Quirk::TooMany,
        Quirk::Code1,
        Quirk::ServerError,
        Quirk::InProgress,
        Quirk::Code2,
        Quirk::TooMany,
    ]);
    case.run_ok(&case.events_day("Charged")).await;
    assert_eq!(case.api.quirks_left(), 0);
    assert_eq!(case.count("SELECT count(*) FROM charged"), 15);
    let seen = case.api.seen();
    assert!(
        !seen.iter().any(|s| matches!(s, Seen::Refused(_))),
        "every retry sent a valid request with the same cursor: {seen:?}"
    );
    let quirks: Vec<Quirk> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Quirk(q) => Some(*q),
            _ => None,
        })
        .collect();
    assert_eq!(
        quirks,
        [
            Quirk::TooMany,
            Quirk::Code1,
            Quirk::ServerError,
            Quirk::InProgress,
            Quirk::Code2,
            Quirk::TooMany
        ]
    );
    let pages: Vec<&Seen> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Page(..)))
        .collect();
    assert_eq!(
        pages,
        [
            &Seen::Page("Charged".into(), DAY1, 0),
            &Seen::Page("Charged".into(), DAY1, 1)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_cursor_stops_the_slice_with_a_clear_error() {
    let case = Case::sqlite().await;
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 30));
    case.api.repeat_cursor_at("Charged", 1);
    let run = case.run(&case.events_day("Charged")).await;
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_says(
        &run.stdout,
        "stopped: GET /1/events.json: CleverTap returned cursor Zy0001+cur/2… again at page 1: stopping",
    );
    assert_says(&run.stdout, "0 of 1 slices pulled");
    // What came before the stall is kept, once; the checkpoint stays at the stalled page.
    assert_eq!(case.count("SELECT count(*) FROM charged"), 10);
    let checkpoint = case.checkpoint("events/Charged/2022-09-22");
    assert_eq!(checkpoint["status"], "in_progress");
    assert_eq!(checkpoint["pages"], 1);
}

/// Cursors that never end stop at the page limit per slice, said so; what came before stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_cursors_without_end_stop_at_the_page_limit() {
    let case = Case::sqlite().await;
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 30));
    case.api.endless_cursors("Charged");
    let run = case
        .run(
            &case
                .events_day("Charged")
                .env("CLEVERTAP_MAX_PAGES_PER_SLICE", "5"),
        )
        .await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert_says(
        &run.stdout,
        "stopped: GET /1/events.json: still more pages after 5 pages (the limit per slice, \
         CLEVERTAP_MAX_PAGES_PER_SLICE): stopping",
    );
    assert_says(&run.stdout, "0 of 1 slices pulled");
    assert_eq!(
        case.seen_count(is_page),
        5,
        "no page past the limit was asked for"
    );
    // The 30 records of pages 0-2 are kept once; the checkpoint stays at the limit.
    assert_eq!(case.count("SELECT count(*) FROM charged"), 30);
    assert_eq!(case.duplicates("charged"), 0);
    let checkpoint = case.checkpoint("events/Charged/2022-09-22");
    assert_eq!(checkpoint["status"], "in_progress");
    assert_eq!(checkpoint["pages"], 5);
}

/// A page larger than the response limit fails its slice with the limit named, read no further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_past_the_response_limit_fails_with_the_limit_named() {
    let case = Case::sqlite().await;
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 30));
    case.api.pad_pages(300_000);
    let day = case.events_day("Charged");
    let run = case
        .run(&day.clone().env("CLEVERTAP_MAX_RESPONSE_BYTES", "200000"))
        .await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert_says(
        &run.stdout,
        "stopped: GET /1/events.json: the answer is larger than 200000 bytes \
         (CLEVERTAP_MAX_RESPONSE_BYTES); ask for smaller pages (--batch-size) or raise the limit",
    );
    // Not retried: one page request.
    assert_eq!(case.seen_count(is_page), 1);
    assert_eq!(
        case.count("SELECT count(*) FROM sqlite_master WHERE name = 'charged'"),
        0,
        "no rows, no table"
    );

    // Under a limit it fits, the same pages load whole.
    case.run_ok(&day.env("CLEVERTAP_MAX_RESPONSE_BYTES", "400000"))
        .await;
    assert_eq!(case.count("SELECT count(*) FROM charged"), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_events_share_the_limit_of_three_and_reach_it() {
    let case = Case::sqlite().await;
    let events = ["E1", "E2", "E3", "E4", "E5", "E6"];
    for event in events {
        case.api.set_events(event, DAY1, event_records(DAY1, 30));
    }
    case.api.page_delay(Duration::from_millis(50));
    let mut args = case.events().day("2022-09-22");
    for event in events {
        args = args.event(event);
    }
    case.run_ok(&args).await;
    assert_eq!(case.api.max_in_flight(), 3, "the limit is 3 and is reached");
    for event in events {
        assert_eq!(
            case.count(&format!("SELECT count(*) FROM {}", event.to_lowercase())),
            30
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pull_resumes_from_its_checkpoint() {
    let case = Case::sqlite().await;
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 50));
    let args = case.events_day("Charged");
    case.run_killed_at_page(&args, "Charged", 2).await;

    let checkpoint = case.checkpoint("events/Charged/2022-09-22");
    assert_eq!(checkpoint["status"], "in_progress");
    assert_eq!(checkpoint["pages"], 2);
    assert_eq!(checkpoint["rows"], 20);
    assert_eq!(case.count("SELECT count(*) FROM charged"), 20);

    // `tapline status` shows what the cut-off run left.
    let status = case.status().await;
    assert_says(&status, "Unfinished API pulls (1):");
    assert_eq!(
        unfinished_cells(&status, "events"),
        ["events", "Charged", "2022-09-22", "2", "20"]
    );

    let stdout = case.run_ok(&args).await;
    assert!(
        case.status().await.contains("No unfinished API pulls."),
        "the finished pull is no longer listed"
    );
    assert_says(
        &stdout,
        "Resumed Charged 2022-09-22 from its checkpoint at page 2.",
    );
    assert_eq!(case.count("SELECT count(*) FROM charged"), 50);
    assert_eq!(case.duplicates("charged"), 0);
    assert_eq!(
        case.seen_count(is_open),
        1,
        "the resumed run did not open a new cursor"
    );
    let seen = case.api.seen();
    for page in [0, 1] {
        let fetched = seen
            .iter()
            .filter(|s| **s == Seen::Page("Charged".into(), DAY1, page))
            .count();
        assert_eq!(fetched, 1, "page {page} was fetched once");
    }
    let checkpoint = case.checkpoint("events/Charged/2022-09-22");
    assert_eq!(checkpoint["status"], "complete");
    assert_eq!(checkpoint["rows"], 50);
}

/// `--output jsonl`: a killed pull leaves no file, only its pages' parts; the resumed pull
/// writes the day's file with every record once, exactly as the API returned it. Pulled again
/// as CSV, the day's CSV file holds the same records flattened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_files_are_whole_lossless_and_survive_a_kill() {
    let case = Case::sqlite().await;
    let records = event_records(DAY1, 50);
    case.api.set_events("Charged", DAY1, records.clone());
    let out = case.dir.path().join("out");
    let out_arg = out.display().to_string();
    let args = case
        .events_day("Charged")
        .arg(&["--output", "jsonl", "--output-dir", &out_arg]);
    case.run_killed_at_page(&args, "Charged", 2).await;
    let file = out.join("Charged").join("2022-09-22.jsonl");
    assert!(!file.exists(), "no file before the day is complete");

    case.run_ok(&args).await;
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines, records,
        "every record once, in order, as the API returned it"
    );
    assert!(!out.join(".tapline-parts/Charged/2022-09-22").exists());

    case.run_ok(
        &case
            .events_day("Charged")
            .arg(&["--output", "csv", "--output-dir", &out_arg]),
    )
    .await;
    let csv_text = std::fs::read_to_string(out.join("Charged").join("2022-09-22.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert!(header.iter().any(|h| h == "profile.identity"), "{header:?}");
    assert!(
        header.iter().any(|h| h == "eventProps.Amount"),
        "{header:?}"
    );
    assert_eq!(reader.records().count(), 50);
    assert_eq!(case.count("SELECT count(*) FROM charged"), 50);

    // A location that is neither a folder nor a bucket is refused before anything runs.
    let run = case
        .run(&case.events_day("Charged").arg(&[
            "--output",
            "jsonl",
            "--output-dir",
            "ftp://host/out",
        ]))
        .await;
    assert_eq!(run.code, 64, "{}", run.stderr);
    assert_eq!(
        run.stderr.trim(),
        "error: --output-dir ftp://host/out: use a local folder, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_checkpoint_cursor_pulls_the_day_again_without_doubling_it() {
    let case = Case::sqlite().await;
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 50));
    let args = case.events_day("Charged");
    case.run_killed_at_page(&args, "Charged", 3).await;
    assert_eq!(case.count("SELECT count(*) FROM charged"), 30);

    case.api.forget_cursors();
    let stdout = case.run_ok(&args).await;
    assert_says(
        &stdout,
        "CleverTap refused the checkpoint's cursor of Charged 2022-09-22 (expired?): the day was pulled again from its first page.",
    );
    assert_eq!(case.count("SELECT count(*) FROM charged"), 50);
    assert_eq!(case.duplicates("charged"), 0);
    let checkpoint = case.checkpoint("events/Charged/2022-09-22");
    assert_eq!(checkpoint["status"], "complete");
    assert_eq!(checkpoint["rows"], 50);
    assert_eq!(checkpoint["pages"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_exact_errors_and_writes_nothing() {
    let case = Case::sqlite().await;
    case.api.set_events("Charged", DAY1, event_records(DAY1, 5));
    let charged = case.events().event("Charged");

    let run = case
        .run(&charged.clone().days("2022-09-23", "2022-09-22"))
        .await;
    assert_eq!(run.code, 64);
    assert_eq!(
        run.stderr.trim(),
        "error: --from 2022-09-23 is after --to 2022-09-22: nothing to pull"
    );

    let run = case
        .run(&charged.clone().days("2022-13-01", "2022-09-22"))
        .await;
    assert_eq!(run.code, 64);
    assert_says(&run.stderr, "\"2022-13-01\" is not a date: use YYYY-MM-DD");

    let args = charged.day("2022-09-22");
    let run = case.run(&args.clone().env("CLEVERTAP_PASSCODE", "")).await;
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.trim(), "error: CLEVERTAP_PASSCODE is not set");

    let run = case
        .run(
            &args
                .arg(&["-vv"])
                .env("CLEVERTAP_PASSCODE", "wrong-Secret-4711"),
        )
        .await;
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_says(
        &run.stdout,
        "stopped: POST /1/events.json: CleverTap refused the credentials (HTTP 401): Invalid Credentials",
    );
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains("wrong-Secret-4711"),
            "passcode leaked:\n{text}"
        );
    }

    let notification = case
        .events()
        .event("Notification Sent")
        .arg(&["-vv"])
        .day("2022-09-22");
    case.api.refuse_event("Notification Sent");
    let run = case.run(&notification).await;
    assert_eq!(run.code, 2);
    assert_says(&run.stdout, "Export not allowed for this event");
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(PASSCODE), "passcode leaked:\n{text}");
    }
    assert!(
        run.stderr.contains("CleverTap request."),
        "debug logs were on"
    );
    assert_eq!(case.count("SELECT count(*) FROM _tapline_tables"), 0);
    assert_eq!(case.count("SELECT count(*) FROM _tapline_loads"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_polled_while_partial_and_replaced_by_day() {
    let case = Case::sqlite().await;
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 25));
    case.api.set_events("Charged", DAY2, event_records(DAY2, 5));
    case.api
        .set_events("App Launched", DAY1, event_records(DAY1, 7));
    case.api.partial_polls(2);
    let args = case
        .pull("counts")
        .event("Charged")
        .event("App Launched")
        .days("2022-09-22", "2022-09-23")
        .arg(&["--timezone", "Asia/Kolkata"]);
    case.run_ok(&args).await;
    let counts = |case: &Case| {
        sqlite_rows(
            &case.db,
            "SELECT event_name, day, count, timezone FROM event_counts ORDER BY day, event_name",
        )
    };
    let row = |e: &str, d: &str, n: &str| {
        vec![
            Some(e.to_string()),
            Some(d.to_string()),
            Some(n.to_string()),
            Some("Asia/Kolkata".to_string()),
        ]
    };
    assert_eq!(
        counts(&case),
        vec![
            row("App Launched", "2022-09-22", "7"),
            row("Charged", "2022-09-22", "25"),
            row("App Launched", "2022-09-23", "0"),
            row("Charged", "2022-09-23", "5"),
        ]
    );
    // Four requests, each partial twice, then complete: 12 answers.
    let answers: Vec<bool> = case
        .api
        .seen()
        .iter()
        .filter_map(|s| match s {
            Seen::Count(_, partial) => Some(*partial),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 12);
    assert_eq!(answers.iter().filter(|p| **p).count(), 8);

    // Profile counts go to their own table.
    case.api
        .set_profiles("Charged", DAY1, profile_records(9, "blue"));
    let stdout = case.run_ok(&args.clone().arg(&["--profiles"])).await;
    assert_says(&stdout, "(profile_counts)");
    assert_eq!(
        sqlite_rows(
            &case.db,
            "SELECT event_name, day, count FROM profile_counts WHERE count > 0"
        ),
        vec![vec![
            Some("Charged".to_string()),
            Some("2022-09-22".to_string()),
            Some("9".to_string())
        ]]
    );
    assert_eq!(case.count("SELECT count(*) FROM profile_counts"), 4);

    // Late data: the day counted again replaces its row.
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 40));
    case.api.partial_polls(0);
    case.run_ok(&args).await;
    assert_eq!(counts(&case)[1], row("Charged", "2022-09-22", "40"));
    assert_eq!(counts(&case).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_still_partial_at_its_deadline_fails_and_writes_nothing() {
    let case = Case::sqlite().await;
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 25));
    case.api.partial_polls(u32::MAX);
    let run = case
        .run(
            &case
                .pull("counts")
                .event("Charged")
                .day("2022-09-22")
                .arg(&["--deadline-seconds", "1"]),
        )
        .await;
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_says(
        &run.stdout,
        "failed: POST /1/counts/events.json: the count was still partial after 1 s",
    );
    assert_eq!(
        case.count("SELECT count(*) FROM sqlite_master WHERE name = 'event_counts'"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_reports_that_are_not_ready_are_not_failures() {
    let case = Case::sqlite().await;
    let ready = serde_json::json!({"sent": 82, "viewed": 50, "clicked": 28, "converted": 3});
    case.api.add_campaign(
        20220805,
        1659684581,
        "Welcome",
        CampaignReport::Ready(ready),
    );
    case.api.add_campaign(
        20220910,
        1659684582,
        "Running",
        CampaignReport::NotCompleted,
    );
    case.api
        .add_campaign(20220915, 1659684583, "Fresh", CampaignReport::NoResult500);
    case.api.add_campaign(
        20220920,
        1659684584,
        "Empty",
        CampaignReport::SuccessWithoutResult,
    );
    case.api.add_campaign(
        20221001,
        1659684585,
        "Outside",
        CampaignReport::NotCompleted,
    );
    let args = case.pull("campaigns").days("2022-08-01", "2022-09-22");
    let stdout = case.run_ok(&args).await;
    assert_says(
        &stdout,
        "4 campaigns written to campaigns, 1 reports to campaign_reports, 3 not ready yet, 0 failed.",
    );
    assert_says(
        &stdout,
        "campaign 1659684583: not ready (This target has no result as of yet)",
    );
    let seen = case.api.seen();
    let windows: Vec<&Seen> = seen
        .iter()
        .filter(|s| matches!(s, Seen::CampaignList(..)))
        .collect();
    assert_eq!(
        windows,
        [
            &Seen::CampaignList(20220801, 20220831),
            &Seen::CampaignList(20220901, 20220922)
        ]
    );
    // Not ready is an answer: each report was asked once, the HTTP 500 included.
    for id in 1659684581u64..=1659684584 {
        let asked = seen
            .iter()
            .filter(|s| **s == Seen::CampaignReport(id.to_string()))
            .count();
        assert_eq!(asked, 1, "report of {id}");
    }
    assert_eq!(
        sqlite_rows(
            &case.db,
            "SELECT campaign_id, sent, viewed, clicked, json_extract(result, '$.converted')              FROM campaign_reports"
        ),
        vec![vec![
            Some("1659684581".to_string()),
            Some("82".to_string()),
            Some("50".to_string()),
            Some("28".to_string()),
            Some("3".to_string()),
        ]]
    );
    assert_eq!(
        sqlite_value(
            &case.db,
            "SELECT group_concat(name, ',') FROM (SELECT name FROM campaigns ORDER BY id)"
        ),
        Some("Welcome,Running,Fresh,Empty".to_string())
    );
    // Again: rows are replaced by id, not added.
    case.run_ok(&args).await;
    assert_eq!(case.count("SELECT count(*) FROM campaigns"), 4);
    assert_eq!(case.count("SELECT count(*) FROM campaign_reports"), 1);
}

/// `pull profiles`: each Get Profiles record a snapshot row in `profile_snapshots` (the export's
/// profile shape: `profileData` entries as properties, the devices' objectIds as CleverTap IDs,
/// `ts` the pull's start), a record with neither key a reject; the window pulled again replaces
/// its snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_become_snapshot_rows_and_a_window_pulled_again_replaces_them() {
    let case = Case::sqlite().await;
    let mut records = profile_records(120, "blue");
    records.push(serde_json::json!({"profileData": {"favoriteColor": "none"},
        "platformInfo": [{"platform": "Web", "objectId": "anon-1"}]}));
    records.push(serde_json::json!({"profileData": {"favoriteColor": "none"}}));
    case.api.set_profiles("Charged", DAY1, records);
    let args = case
        .pull("profiles")
        .event("Charged")
        .days("2022-09-22", "2022-09-23");
    let stdout = case.run_ok(&args).await;
    assert_says(
        &stdout,
        "Charged: 1 pages, 121 profile snapshots loaded, 1 rejected (see _tapline_rejects).",
    );
    assert_eq!(case.count("SELECT count(*) FROM profile_snapshots"), 121);
    let started = case.checkpoint("profiles/Charged/2022-09-22..2022-09-23")["started_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        sqlite_rows(
            &case.db,
            "SELECT ts, favorite_color, tier, clevertap_id, clevertap_ids, \
             json_extract(platform_info, '$[1].objectId'), length(profile_hash), _source_uri, \
             _source_line FROM profile_snapshots WHERE identity = 'u7'"
        ),
        vec![vec![
            Some(started.clone()),
            Some("blue".to_string()),
            Some("1".to_string()),
            Some("-ios7".to_string()),
            Some(r#"["-ios7","web7"]"#.to_string()),
            Some("web7".to_string()),
            Some("16".to_string()),
            Some(
                "clevertap-api://TEST-ACC-1/profiles/Charged/2022-09-22..2022-09-23/page-0"
                    .to_string()
            ),
            Some("8".to_string()),
        ]]
    );
    assert_eq!(
        case.count("SELECT count(*) FROM profile_snapshots WHERE identity = 'anon-1' AND favorite_color = 'none'"),
        1,
        "no identity: keyed by its CleverTap ID"
    );
    assert_eq!(
        sqlite_rows(&case.db, "SELECT line, reason FROM _tapline_rejects"),
        vec![vec![
            Some("122".to_string()),
            Some("a profile needs an identity or a clevertapId".to_string())
        ]]
    );
    // The same window again, changed: its page replaced, not added.
    case.api
        .set_profiles("Charged", DAY1, profile_records(40, "green"));
    case.run_ok(&args).await;
    assert_eq!(case.count("SELECT count(*) FROM profile_snapshots"), 40);
    assert_eq!(
        case.count("SELECT count(*) FROM profile_snapshots WHERE favorite_color = 'green'"),
        40
    );
    assert_eq!(
        case.count("SELECT count(*) FROM sqlite_master WHERE name = 'profiles' AND type = 'table'"),
        0,
        "no table of merged profiles any more"
    );
}

/// A `pull profiles` killed while it waits for page 2 leaves an `in_progress` checkpoint with
/// two pages loaded (`tapline status` lists it); the same command resumes at page 2 without
/// opening a new cursor or fetching pages 0 and 1 again, and every profile is one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_profiles_pull_resumes_from_its_checkpoint() {
    let case = Case::sqlite().await;
    case.api
        .set_profiles("Charged", DAY1, profile_records(60, "blue"));
    let window = case
        .pull("profiles")
        .event("Charged")
        .days("2022-09-22", "2022-09-23");
    let args = window.clone().arg(&["--batch-size", "23"]);
    case.run_killed_at_page(&args, "profiles/Charged", 2).await;

    let key = "profiles/Charged/2022-09-22..2022-09-23";
    let cp = case.checkpoint(key);
    assert_eq!(cp["status"], "in_progress");
    assert_eq!(cp["pages"], 2);
    assert_eq!(cp["rows"], 46);
    assert_eq!(cp["window"], serde_json::json!([20220922, 20220923]));
    assert_eq!(case.count("SELECT count(*) FROM profile_snapshots"), 46);
    assert_eq!(
        unfinished_cells(&case.status().await, "profiles"),
        ["profiles", "Charged", "2022-09-22..2022-09-23", "2", "46"]
    );

    let stdout = case.run_ok(&args).await;
    assert_says(&stdout, "Charged: resumed from its checkpoint at page 2.");
    assert_says(
        &stdout,
        "Charged: 3 pages, 60 profile snapshots loaded, 0 rejected (see _tapline_rejects).",
    );
    assert_eq!(case.count("SELECT count(*) FROM profile_snapshots"), 60);
    assert_eq!(
        case.count("SELECT count(DISTINCT identity) FROM profile_snapshots"),
        60,
        "each profile loaded once"
    );
    assert_eq!(
        case.seen_count(is_open),
        1,
        "the resumed run did not open a new cursor"
    );
    let seen = case.api.seen();
    for page in 0..3 {
        let fetched = seen
            .iter()
            .filter(|s| **s == Seen::Page("profiles/Charged".into(), DAY1, page))
            .count();
        // Page 2 was asked by the killed run too (held back until it died).
        if page < 2 {
            assert_eq!(fetched, 1, "page {page} was fetched once");
        } else {
            assert!(fetched >= 1, "page {page} was fetched");
        }
    }
    let cp = case.checkpoint(key);
    assert_eq!(cp["status"], "complete");
    assert_eq!(cp["pages"], 3);
    assert_eq!(cp["rows"], 60);
    assert!(case.status().await.contains("No unfinished API pulls."));

    // A batch size Get Profiles refuses is a usage error before anything runs.
    let run = case.run(&window.arg(&["--batch-size", "50"])).await;
    assert_eq!(run.code, 64, "{}", run.stderr);
    assert_eq!(
        run.stderr.trim(),
        "error: --batch-size 50 is not a multiple of 23 from 23 to 4991 (Get Profiles requires it)"
    );
}

/// A profiles checkpoint whose cursor CleverTap no longer accepts pulls the window again from
/// its first page under a new pull id, whose pages replace the killed pull's: every profile
/// still one row, the checkpoint complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_profiles_cursor_pulls_the_window_again() {
    let case = Case::sqlite().await;
    case.api
        .set_profiles("Charged", DAY1, profile_records(60, "blue"));
    let args = case
        .pull("profiles")
        .event("Charged")
        .day("2022-09-22")
        .arg(&["--batch-size", "23"]);
    case.run_killed_at_page(&args, "profiles/Charged", 1).await;
    assert_eq!(case.count("SELECT count(*) FROM profile_snapshots"), 23);

    case.api.forget_cursors();
    let stdout = case.run_ok(&args).await;
    assert_says(
        &stdout,
        "Charged: CleverTap refused the checkpoint's cursor (expired?): the window was pulled again from its first page.",
    );
    assert_says(
        &stdout,
        "Charged: 3 pages, 60 profile snapshots loaded, 0 rejected (see _tapline_rejects).",
    );
    assert_eq!(case.count("SELECT count(*) FROM profile_snapshots"), 60);
    assert_eq!(
        case.count("SELECT count(DISTINCT identity) FROM profile_snapshots"),
        60
    );
    assert_eq!(case.seen_count(is_open), 2, "a new cursor for the window");
}

/// `pull messages`: each day's Get Message Reports answer into `message_reports`, one row per
/// (message, day); days CleverTap has not computed (HTTP 200 "not completed", HTTP 500 "no
/// result as of yet") are not failures; a re-pull replaces rows by key; `--channel` reaches
/// CleverTap as the documented `channel` array.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_reports_land_per_day_and_not_ready_days_are_not_failures() {
    let case = Case::sqlite().await;
    case.api.set_message_day(
        DAY1,
        MessageDay::Ready(vec![
            message_record(1663800001, "Sale push", "Push", 82, 40, 28),
            message_record(1663800002, "Sale email", "Email", 500, 210, 35),
            message_record(1663800003, "Reminder", "Push", 12, 7, 1),
        ]),
    );
    case.api.set_message_day(DAY2, MessageDay::NoResult500);
    case.api.set_message_day(20220924, MessageDay::NotCompleted);
    let messages = case.pull("messages");
    let args = messages.clone().days("2022-09-22", "2022-09-24");
    let stdout = case.run_ok(&args).await;
    for line in [
        "1 days written (3 rows), 2 not ready yet, 0 failed.",
        "  2022-09-23: not ready (This report has no result as of yet)",
        "  2022-09-24: not ready (This report hasn't been completed)",
    ] {
        assert_says(&stdout, line);
    }
    assert_eq!(
        sqlite_rows(
            &case.db,
            "SELECT message_id, day, message_name, channel, sent, viewed, clicked, \
             json_extract(report, '$.labels[0]') FROM message_reports ORDER BY message_id"
        )[0],
        vec![
            Some("1663800001".to_string()),
            Some("2022-09-22".to_string()),
            Some("Sale push".to_string()),
            Some("Push".to_string()),
            Some("82".to_string()),
            Some("40".to_string()),
            Some("28".to_string()),
            Some("tapline-test".to_string()),
        ]
    );
    let asked: Vec<Seen> = case
        .api
        .seen()
        .into_iter()
        .filter(|s| matches!(s, Seen::MessageReport(..)))
        .collect();
    assert_eq!(asked.len(), 3, "each day asked once: {asked:?}");

    // The next run: the 23rd is ready, the 22nd's figures grew. Replaced, not added.
    case.api.set_message_day(
        DAY1,
        MessageDay::Ready(vec![
            message_record(1663800001, "Sale push", "Push", 90, 45, 30),
            message_record(1663800002, "Sale email", "Email", 500, 220, 36),
            message_record(1663800003, "Reminder", "Push", 12, 7, 1),
        ]),
    );
    case.api.set_message_day(
        DAY2,
        MessageDay::Ready(vec![message_record(1663900001, "Welcome", "SMS", 5, 0, 0)]),
    );
    let stdout = case.run_ok(&args).await;
    assert_says(
        &stdout,
        "2 days written (4 rows), 1 not ready yet, 0 failed.",
    );
    assert_eq!(case.count("SELECT count(*) FROM message_reports"), 4);
    assert_eq!(
        case.count("SELECT sent FROM message_reports WHERE message_id = '1663800001'"),
        90
    );

    // --channel reaches CleverTap as the documented array; an unknown channel is a usage error.
    let push_only = messages.day("2022-09-22").arg(&["--channel", "push"]);
    let stdout = case.run_ok(&push_only).await;
    assert_says(
        &stdout,
        "1 days written (2 rows), 0 not ready yet, 0 failed.",
    );
    assert!(
        case.api
            .seen()
            .contains(&Seen::MessageReport(DAY1, vec!["push".to_string()]))
    );
    let run = case.run(&args.arg(&["--channel", "fax"])).await;
    assert_eq!(run.code, 64, "{}", run.stderr);
    assert_says(&run.stderr, "invalid value 'fax' for '--channel <CHANNEL>'");
    assert_eq!(case.count("SELECT count(*) FROM message_reports"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_alerts_post_breaches_to_slack_and_record_every_rule() {
    let case = Case::sqlite().await;
    for day in 20220915..=20220922 {
        case.api
            .set_events("Charged", day, event_records(day, 1000));
    }
    case.api
        .set_events("Charged", 20220923, event_records(20220923, 120));
    case.run_ok(
        &case
            .pull("counts")
            .event("Charged")
            .days("2022-09-15", "2022-09-23"),
    )
    .await;
    let rules = case.dir.path().join("alerts.json");
    std::fs::write(
        &rules,
        r#"[{"name": "charged-floor", "event": "Charged", "when": "below", "count": 500},
            {"name": "charged-drop", "event": "Charged", "when": "below_trailing_mean", "percent": 40, "days": 7},
            {"name": "launch-floor", "event": "App Launched", "when": "below", "count": 10}]"#,
    )
    .unwrap();
    let slack = tapline_tests::doubles::receiver::Receiver::start().await;
    let check = |day: &'static str| {
        let alerts = case
            .tapline(&["alerts", "--rules", rules.to_str().unwrap(), "--day", day])
            .env("TAPLINE_ALERTS_SLACK_URL", &slack.url);
        let case = &case;
        async move { case.run(&alerts).await }
    };
    let run = check("2022-09-23").await;
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let texts: Vec<String> = slack
        .received()
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        texts,
        [
            "Tapline alert: Charged on 2022-09-23 was 120, below 500 (rule charged-floor).",
            "Tapline alert: Charged on 2022-09-23 was 120, 88.0% below its trailing 7-day mean of \
             1000.0 (rule charged-drop: more than 40% below is a breach).",
        ]
    );
    assert_eq!(
        sqlite_rows(
            &case.db,
            "SELECT rule, status, count, baseline, notified FROM alert_runs ORDER BY rule"
        ),
        vec![
            vec![
                Some("charged-drop".into()),
                Some("breached".into()),
                Some("120".into()),
                Some("1000.0".into()),
                Some("yes".into())
            ],
            vec![
                Some("charged-floor".into()),
                Some("breached".into()),
                Some("120".into()),
                Some("500.0".into()),
                Some("yes".into())
            ],
            vec![
                Some("launch-floor".into()),
                Some("no_data".into()),
                None,
                None,
                Some("no".into())
            ],
        ]
    );

    // A normal day: nothing posted, results recorded.
    let run = check("2022-09-22").await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(slack.received().len(), 2);
    assert_eq!(
        case.count("SELECT count(*) FROM alert_runs WHERE day = '2022-09-22' AND status = 'ok'"),
        2
    );

    // The one Slack client's rule, as the relay's Slack destination applies it: only HTTP 200
    // with `ok` is delivered. Another 2xx, or a 200 with Slack's refusal, is not posted: exit 2,
    // each breach recorded as `failed`, and the webhook URL nowhere in the output.
    for (reply, error) in [
        (
            tapline_tests::doubles::receiver::Reply::Status(201, "ok".into()),
            "Slack answered HTTP 201: ok".to_string(),
        ),
        (
            tapline_tests::doubles::receiver::Reply::Status(200, "invalid_payload\n".into()),
            "Slack answered 200 with \"invalid_payload\" instead of \"ok\"".to_string(),
        ),
    ] {
        slack.set_default(reply);
        let posted = slack.received().len();
        let run = check("2022-09-23").await;
        assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
        assert_eq!(slack.received().len(), posted + 2, "one post per breach");
        for rule in ["charged-floor", "charged-drop"] {
            assert!(
                run.stderr
                    .contains(&format!("error: alert {rule}: {error}")),
                "{}",
                run.stderr
            );
        }
        assert!(!run.stderr.contains(&slack.url), "{}", run.stderr);
        assert_eq!(
            case.count(
                "SELECT count(*) FROM alert_runs WHERE day = '2022-09-23' AND notified = 'failed'"
            ),
            2
        );
    }
}

/// A breach's text is escaped for Slack as the relay's Slack destination escapes it: a rule or
/// event name cannot mention `@here` or hide a link in the alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_text_posted_to_slack_is_escaped() {
    let case = Case::sqlite().await;
    case.api
        .set_events("Charged", 20220923, event_records(20220923, 120));
    case.run_ok(&case.pull("counts").event("Charged").day("2022-09-23"))
        .await;
    let rules = case.dir.path().join("alerts.json");
    std::fs::write(
        &rules,
        r#"[{"name": "floor <!here> & <https://x.example|y>", "event": "Charged", "when": "below", "count": 500}]"#,
    )
    .unwrap();
    let slack = tapline_tests::doubles::receiver::Receiver::start().await;
    let alerts = case
        .tapline(&[
            "alerts",
            "--rules",
            rules.to_str().unwrap(),
            "--day",
            "2022-09-23",
        ])
        .env("TAPLINE_ALERTS_SLACK_URL", &slack.url);
    let run = case.run(&alerts).await;
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let posts = slack.received();
    assert_eq!(posts.len(), 1);
    let text = serde_json::from_slice::<Value>(&posts[0].body).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        text,
        "Tapline alert: Charged on 2022-09-23 was 120, below 500 \
         (rule floor &lt;!here&gt; &amp; &lt;https://x.example|y&gt;)."
    );
}

/// The figures in the README: 100,000 events in 20 pages of 5,000, the double adding 50 ms per
/// page, pulled as four events at once under the limit of 3, one request at a time (the
/// downloader's way), and as one event whose single cursor must be paged in order.
/// `cargo nextest run -p tapline-tests -E 'test(/^api_puller_cli::/)' --run-ignored only --no-capture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand for the README figures"]
async fn bench_100k_events_in_20_pages() {
    let scenarios: [(&str, usize, &str); 3] = [
        ("4 events x 25,000, limit 3", 4, "3"),
        ("4 events x 25,000, limit 1 (sequential)", 4, "1"),
        ("1 event x 100,000 (one cursor)", 1, "3"),
    ];
    for (name, events, concurrency) in scenarios {
        let case = Case::sqlite().await;
        let names: Vec<String> = (1..=events).map(|i| format!("Bench{i}")).collect();
        for event in &names {
            case.api
                .set_events(event, DAY1, event_records(DAY1, 100_000 / events));
        }
        case.api.page_delay(Duration::from_millis(50));
        let mut args = case
            .pull("events")
            .arg(&["--batch-size", "5000"])
            .day("2022-09-22")
            .env("CLEVERTAP_CONCURRENCY", concurrency);
        for event in &names {
            args = args.event(event);
        }
        let started = std::time::Instant::now();
        case.run_ok(&args).await;
        let elapsed = started.elapsed().as_secs_f64();
        let rows: u64 = names
            .iter()
            .map(|e| case.count(&format!("SELECT count(*) FROM {}", e.to_lowercase())))
            .sum();
        assert_eq!(rows, 100_000);
        let pages = case.seen_count(is_page);
        println!(
            "{name}: {pages} pages, {rows} rows in {elapsed:.2} s ({:.0} rows/s), max {} requests in flight",
            rows as f64 / elapsed,
            case.api.max_in_flight()
        );
    }
}
