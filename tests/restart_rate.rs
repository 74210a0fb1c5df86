//! The learned rate survives a kill (issue 24, the compressed night's restarts): a run
//! keeps the limit its adaptive rate learned in the checkpoint (`meta` keys
//! `learned_rate`, `learned_rate_at`), and the next run starts at it instead of at
//! `--rate`. Before this, a restart after a SIGKILL started at `--rate` — four times over
//! the limit in the night — and paid a second's pause per 429 to learn it again.
//!
//! Observed, never timed: the second run's `-v` line naming the rate it starts at, and in
//! the simulator's request log how many of its requests passed before its first 429 (at
//! `--rate` four times over a limit with a burst of 3, the fourth or fifth request is
//! refused; at the learned limit, dozens pass).

use std::time::{Duration, Instant};

use crate::common;

use common::{Harness, generated_csv, states};
use podero_onboard::sandbox::{self, Faults, RateLimit};

/// The simulator's limit, requests per second (burst 3, as in the night).
const LIMIT: f64 = 20.0;
/// Rows: two requests each, about 20 s at the limit — the first run is killed long before.
const USERS: usize = 200;
/// Requests the second run must get through before its first 429: two seconds at the
/// limit (a start at `--rate` is refused within its first handful).
const CLEAN_START: usize = 40;

/// The checkpoint's `meta` value for `key`, read-only (`None` until it is written).
fn meta(h: &Harness, key: &str) -> Option<String> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let conn = rusqlite::Connection::open_with_flags(h.checkpoint(), flags).ok()?;
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_after_a_kill_starts_at_the_learned_limit_not_at_rate() {
    let h = Harness::new(
        sandbox::Builder::new()
            .generated_users(USERS)
            .faults(Faults {
                rate_limit: Some(RateLimit {
                    per_second: LIMIT,
                    burst: 3,
                }),
                ..Faults::default()
            }),
    )
    .await;
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    let ceiling = (4.0 * LIMIT).to_string();
    let args = h.run_args(&csv, &["--rate", &ceiling]);
    let strs = common::strs(&args);
    let mut first = h.command(&strs).spawn().expect("spawn the first run");
    // Polled, not timed: the cap only stops a test that would otherwise hang.
    let cap = Instant::now() + Duration::from_secs(50);
    while meta(&h, "learned_rate").is_none() {
        assert!(
            Instant::now() < cap,
            "the first run never recorded a learned rate\n{}",
            h.describe_state()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("wait for the killed run");
    let learned: f64 = meta(&h, "learned_rate")
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!(
        (LIMIT * 0.25..=LIMIT * 1.25).contains(&learned),
        "learned {learned}/s against a limit of {LIMIT}/s"
    );
    assert!(
        meta(&h, "learned_rate_at").is_some_and(|at| at.parse::<i64>().is_ok()),
        "when it was learned is kept"
    );
    let done_before = states(&h.checkpoint_rows()).get("done").copied();
    assert!(done_before < Some(USERS), "the kill came too late");

    let before = h.state().log.len();
    let out = h.run(&csv, &["--rate", &ceiling, "-v"]).await;
    h.expect_code(&out, 0);
    assert!(
        out.stderr
            .contains("starting at the rate limit an earlier run learned"),
        "{}",
        out.stderr
    );
    let log = h.state().log;
    let second = &log[before..];
    let clean = second.iter().take_while(|e| e.status != 429).count();
    assert!(
        clean >= CLEAN_START.min(second.len()),
        "the second run's first 429 came after {clean} requests: it started above the limit"
    );
    assert_eq!(states(&h.checkpoint_rows()).get("done"), Some(&USERS));
    h.assert_no_duplicates_and_map_matches();
}
