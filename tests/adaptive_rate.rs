//! The adaptive rate against the simulator (issue 13): with `--rate` at four times a
//! server limit it has to learn, the job converges to that limit, holds it with few 429s,
//! and loses or doubles nothing. And (issue 24) 429s that are not about the rate: a storm
//! that ends fails no row (a 429 spends no attempt), and one that does not end stops the
//! run after `--max-wait`, saying why.
//!
//! Tolerant by design: it asserts what a loaded machine cannot change (few 429
//! episodes, a small 429 share, never above the limit), read from the simulator's request
//! log, never wall-clock deadlines. How close the goodput comes to the limit is a
//! throughput figure, which a busy test machine cannot promise: it is the benchmark's
//! (`scripts/bench.sh --adaptive`: ≥ 90 % of the limit over 60 s, limit changes mid-run)
//! and the controller's deterministic simulation's (`src/api/adapt.rs`).

use crate::common;

use common::{Harness, generated_csv, states};
use podero_onboard::sandbox::{self, Faults, LogEntry};

/// The simulator's limit, requests per second (burst 3, as in the scenario).
const LIMIT: f64 = 40.0;
/// Rows: two requests each, so about 8 s at the limit.
const USERS: usize = 160;
/// Most separate 429 episodes (429s more than [`EPISODE_GAP_MS`] apart). The first is
/// the start at four times the limit; a converged controller adds one or two while it
/// learns, then holds. The plain AIMD needed four decreases just to get from 160/s down
/// to 40/s.
const MAX_EPISODES: usize = 3;
/// 429s closer than this are one episode (requests in flight when the first came back).
const EPISODE_GAP_MS: u64 = 500;
/// Most 429s over the whole run, as a share of requests (the target is 3 %).
const MAX_THROTTLED_SHARE: f64 = 0.05;

/// `(accepted requests, 429s)` that arrived in `[from_ms, to_ms)`.
fn tally(log: &[LogEntry], from_ms: u64, to_ms: u64) -> (usize, usize) {
    let window = log.iter().filter(|e| e.at_ms >= from_ms && e.at_ms < to_ms);
    window.fold((0, 0), |(ok, throttled), e| match e.status {
        429 => (ok, throttled + 1),
        _ => (ok + 1, throttled),
    })
}

/// Arrival times of the first 429 of each episode.
fn episodes(log: &[LogEntry]) -> Vec<u64> {
    let mut times: Vec<u64> = log
        .iter()
        .filter(|e| e.status == 429)
        .map(|e| e.at_ms)
        .collect();
    times.sort_unstable();
    let mut starts: Vec<u64> = Vec::new();
    let mut last = None;
    for t in times {
        if last.is_none_or(|l| t > l + EPISODE_GAP_MS) {
            starts.push(t);
        }
        last = Some(t);
    }
    starts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learns_an_unknown_limit_and_holds_it_with_few_429s() {
    let h = Harness::new(common::limited(USERS, LIMIT, 3)).await;
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    let ceiling = (4.0 * LIMIT).to_string();
    let out = h.run(&csv, &["--rate", &ceiling, "--json"]).await;
    h.expect_code(&out, 0);
    let checkpoint = h.checkpoint_rows();
    assert_eq!(
        states(&checkpoint).get("done"),
        Some(&USERS),
        "every row done"
    );
    h.assert_no_duplicates_and_map_matches();

    let log = h.state().log;
    let first = log.iter().map(|e| e.at_ms).min().unwrap_or(0);
    let last = log.iter().map(|e| e.at_ms).max().unwrap_or(0);
    let middle = first + (last - first) / 2;
    let (ok, throttled) = tally(&log, first, last + 1);
    if std::env::var_os("ADAPTIVE_TRACE").is_some() {
        for e in &log {
            eprintln!("{} {} {}", e.at_ms - first, e.status, e.endpoint);
        }
    }
    let (late_ok, late_throttled) = tally(&log, middle, last);
    let episodes: Vec<u64> = episodes(&log).iter().map(|t| t - first).collect();
    let share = throttled as f64 / (ok + throttled) as f64;
    let late_goodput = late_ok as f64 / ((last - middle) as f64 / 1000.0) / LIMIT;
    eprintln!(
        "limit {LIMIT}/s, --rate {ceiling}: {throttled} 429s of {} requests ({:.1} %); \
         second half: goodput {:.0} % of the limit, {late_throttled} 429s; 429 episodes at {episodes:?} ms",
        ok + throttled,
        share * 100.0,
        late_goodput * 100.0
    );
    assert!(
        share <= MAX_THROTTLED_SHARE,
        "{throttled} of {} requests got 429",
        ok + throttled
    );
    assert!(
        episodes.len() <= MAX_EPISODES,
        "429 episodes at {episodes:?} ms: the rate kept hitting the limit"
    );
    assert!(
        late_goodput <= 1.1,
        "second-half goodput {late_goodput:.2} of the limit: more than the server allows?"
    );
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).expect("--json summary");
    let effective = summary["rate"]["effective"]
        .as_f64()
        .expect("effective rate");
    assert!(
        effective <= LIMIT * 1.5,
        "the run ended at {effective}/s, far above the limit it should have learned"
    );
}

/// How long the storm lasts: ten `Retry-After: 1` pauses, twice the default
/// `--max-attempts`, so a 429 that spent an attempt would fail every row caught in it.
const STORM: std::time::Duration = std::time::Duration::from_secs(10);

/// A storm of 429s that ends (a gateway deploy, another job spending the quota) is the
/// server asking for time: every row caught in it waits, none fails, nothing is doubled.
/// The storm starts at a known moment (after the 40th building POST) and the simulator
/// ends it [`STORM`] later by itself; what is asserted is only what the run did, never how
/// long it took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_storm_of_429s_fails_no_row() {
    const USERS: usize = 300;
    let h = Harness::with_users(USERS).await;
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    let args = h.run_args(&csv, &["--rate", "30", "--concurrency", "8", "--json"]);
    let storm = async {
        h.sandbox.wait_requests("create_building", 40).await;
        h.sandbox.set_faults(Faults {
            storm: STORM,
            ..Faults::default()
        });
    };
    let (out, ()) = tokio::join!(h.exec(&args), storm);
    h.expect_code(&out, 0);
    let checkpoint = h.checkpoint_rows();
    assert_eq!(
        states(&checkpoint).get("done"),
        Some(&USERS),
        "no row failed by the storm: {:?}",
        states(&checkpoint)
    );
    h.assert_no_duplicates_and_map_matches();
    let throttled = h.state().log.iter().filter(|e| e.status == 429).count();
    eprintln!("a {STORM:?} storm: {throttled} requests answered 429, every row done");
    assert!(
        throttled >= 8,
        "the storm should have refused a request after each of its pauses: {throttled}"
    );
}

/// A server that never stops answering 429 still ends the run: after `--max-wait` of 429s
/// in a row for one request, exit 3 with the reason; no row is blamed (none failed), so the
/// next run goes on where this one stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_refused_for_longer_than_max_wait_stops_saying_why() {
    const USERS: usize = 20;
    let h = Harness::new(
        sandbox::Builder::new()
            .generated_users(USERS)
            .faults(Faults {
                random_429: 1.0,
                ..Faults::default()
            }),
    )
    .await;
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    let out = h
        .run(&csv, &["--max-wait", "2", "--concurrency", "4"])
        .await;
    h.expect_code(&out, 3);
    assert!(
        out.stderr.contains("429") && out.stderr.contains("--max-wait"),
        "{}",
        out.stderr
    );
    let rows = h.checkpoint_rows();
    assert!(
        rows.iter().all(|r| r.state == "pending"),
        "a server that refuses everything is not the rows' fault: {:?}",
        states(&rows)
    );
    assert_eq!(h.state().buildings.values().map(Vec::len).sum::<usize>(), 0);
}
