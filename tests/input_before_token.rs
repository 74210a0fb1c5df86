//! Every input-file problem that needs no server is found before the first request, the
//! token request included (issue 14): the simulator's counters stay at zero.

mod common;

use common::{Harness, generated_csv};
use podero_onboard::sandbox;

const HEADER: &str = "user_id,external_user_id,building_name";

/// Runs `csv` and expects exit 2 with `needle` on stderr and no request at all.
async fn assert_refused_before_any_request(h: &Harness, csv: &std::path::Path, needle: &str) {
    let out = h.run(csv, &[]).await;
    h.expect_code(&out, 2);
    assert!(
        out.stderr.contains(needle),
        "{needle:?} not in:\n{}",
        out.stderr
    );
    let state = h.state();
    assert_eq!(
        state.tokens_issued,
        0,
        "a token was issued: {}",
        h.describe_state()
    );
    assert_eq!(
        state.requests.values().sum::<u64>(),
        0,
        "requests were sent: {}",
        h.describe_state()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_only_file_sends_not_even_a_token_request() {
    let h = Harness::with_users(1).await;
    let csv = h.write("users.csv", format!("{HEADER}\n"));
    assert_refused_before_any_request(&h, &csv, "has a header but no data rows").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_record_after_good_rows_sends_not_even_a_token_request() {
    let h = Harness::with_users(50).await;
    // 50 good rows, then a record past the 1 MiB bound (2 MiB without a newline).
    let mut content = generated_csv(50, 1);
    content.push_str(&format!(
        "{},CRM-x,{}",
        sandbox::generated_user_id(0),
        "A".repeat(2 << 20)
    ));
    let csv = h.write("users.csv", content);
    assert_refused_before_any_request(&h, &csv, "line 52: a record is longer than").await;
    assert!(
        h.checkpoint_rows().iter().all(|r| r.state != "done"),
        "no row is done"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_header_sends_not_even_a_token_request() {
    let h = Harness::with_users(1).await;
    let csv = h.write(
        "users.csv",
        format!(
            "user_id,building_name\n{},Home\n",
            sandbox::generated_user_id(0)
        ),
    );
    assert_refused_before_any_request(&h, &csv, "missing required column").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_after_staging_are_recorded_as_an_ended_run() {
    let h = Harness::with_users(5).await;
    let csv = h.write("users.csv", generated_csv(5, 1));
    let mut cmd = h.command(&[]);
    cmd.env("PODERO_CLIENT_SECRET", "wrong")
        .args(h.run_args(&csv, &[]));
    let out = h.exec_with(cmd).await;
    h.expect_code(&out, 3);
    assert_eq!(h.state().api_requests(), 0, "{}", h.describe_state());
    let conn = rusqlite::Connection::open(h.checkpoint()).unwrap();
    let (ended, code): (Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT ended_at, exit_code FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(ended.is_some(), "the run is recorded as ended");
    assert_eq!(code, Some(3));
    // So the next run does not warn that this one was interrupted.
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 0);
    assert!(!out.stderr.contains("did not finish"), "{}", out.stderr);
}
