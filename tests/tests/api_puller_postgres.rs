//! `tapline pull events` into PostgreSQL (started by `tests/scripts/with-postgres.sh`): the same
//! tables, checkpoints in `_tapline_state` (listed by `tapline status`), a day pulled again
//! replaced and not doubled.

use tapline_tests::doubles::clevertap_api::event_records;
use tapline_tests::pull_case::{PullCase, assert_says, unfinished_cells};
use tapline_tests::servers::pg::PgSchema;

const DAY1: i64 = 20220922;
const DAY2: i64 = 20220923;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_days_land_once_in_postgres_and_a_repull_replaces_them() {
    let pg = PgSchema::new("pull_repull");
    let case = PullCase::on(pg.url()).await;
    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 25));
    case.api.set_events("Charged", DAY2, event_records(DAY2, 5));
    let charged = case.events().event("Charged");
    case.run_ok(&charged.clone().days("2022-09-22", "2022-09-23"))
        .await;
    assert_eq!(pg.psql("SELECT count(*) FROM charged"), "30");
    assert_eq!(
        pg.psql(
            "SELECT count(*) FROM charged WHERE ts = '2022-09-22T00:01:00Z' AND event_props_amount = '1' \
             AND profile_identity = 'u1' AND session_props_utm_source = 'Foo'"
        ),
        "1"
    );

    case.api
        .set_events("Charged", DAY1, event_records(DAY1, 12));
    case.run_ok(&charged.day("2022-09-22")).await;
    assert_eq!(
        pg.psql("SELECT count(*) FROM charged WHERE ts < '2022-09-23T00:00:00Z'"),
        "12"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM charged"), "17");
    assert_eq!(
        pg.psql(
            "SELECT count(*) FROM (SELECT ts, profile_identity FROM charged \
             GROUP BY 1, 2 HAVING count(*) > 1) d"
        ),
        "0"
    );
    assert_eq!(
        pg.psql(
            "SELECT value::json->>'status' || ' ' || (value::json->>'pages') FROM _tapline_state \
             WHERE key = 'clevertap/TEST-ACC-1/events/Charged/2022-09-22'"
        ),
        "complete 2"
    );

    // `tapline status` reads checkpoints from PostgreSQL too (timestamptz shown as text): a
    // slice marked unfinished is listed with its pages and rows.
    pg.psql(
        "UPDATE _tapline_state SET value = replace(value, '\"complete\"', '\"in_progress\"') \
         WHERE key = 'clevertap/TEST-ACC-1/events/Charged/2022-09-22'",
    );
    let status = case.status().await;
    assert_says(&status, "Unfinished API pulls (1):");
    assert_eq!(
        unfinished_cells(&status, "events"),
        ["events", "Charged", "2022-09-22", "2", "12"]
    );
}
