//! Nothing lost, nothing doubled (issue 4): kills, signals, a second run, damaged or
//! foreign checkpoints, the durable POST intent, unknown POST outcomes and a full disk,
//! against the simulator (and, where the answer must be scripted, a scripted server).
//!
//! Timing: a kill or a signal is sent at an event the simulator reports (a POST in
//! flight, the n-th request answered), never after a sleep; the only durations asserted
//! are bounds far from the behaviour they exclude (a stop "at once" against a 30 s grace).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::hostile::{Reply, scripted_podero};
use common::{CheckpointRow, Harness, Output, generated_csv, states};
use podero_onboard::sandbox::{self, Faults, ListBuildings, Snapshot};
use rusqlite::{Connection, OpenFlags};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Child;
use uuid::Uuid;

/// `(user_id, building_name)` as the checkpoint spells it.
type Key = (String, String);

/// `users` users with `Home 0`, the first `doubled` of them also with `Home 1`.
fn mixed_csv(users: usize, doubled: usize) -> String {
    let mut csv = generated_csv(users, 1);
    for i in 0..doubled {
        let id = sandbox::generated_user_id(i as u64);
        csv.push_str(&format!("{id},CRM-{i},Home 1\n"));
    }
    csv
}

/// Spawns `run` with the harness defaults overridden by `extra`.
fn spawn(h: &Harness, csv: &Path, extra: &[&str]) -> Child {
    let args = h.run_args(csv, extra);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    h.command(&strs).spawn().expect("spawn the binary")
}

/// Polls `condition` every 10 ms until it holds; panics after `secs`.
async fn wait_until(h: &Harness, secs: u64, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}\n{}",
            h.describe_state()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Waits for a child (20 s at most) and collects what it printed.
async fn finish(child: Child, what: &str) -> Output {
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what}: still running after 20 s"))
        .expect("wait for the binary");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        command: what.to_owned(),
    }
}

fn building_count(state: &Snapshot) -> usize {
    state.buildings.values().map(Vec::len).sum()
}

fn keys(rows: &[CheckpointRow], state: &str) -> BTreeSet<Key> {
    rows.iter()
        .filter(|r| r.state == state)
        .map(|r| (r.user_id.clone(), r.building_name.clone()))
        .collect()
}

fn server_map(state: &Snapshot) -> BTreeMap<Key, Vec<Uuid>> {
    state
        .building_map()
        .into_iter()
        .map(|((user, name), ids)| ((user.to_string(), name), ids))
        .collect()
}

/// Rows in `state`, read-only; 0 when a kill came before the checkpoint had its schema.
fn rows_in_state(path: &Path, state: &str) -> usize {
    if !path.exists() {
        return 0;
    }
    let conn = open_read_only(path);
    match conn.query_row("SELECT count(*) FROM rows WHERE state = ?1", [state], |r| {
        r.get(0)
    }) {
        Ok(n) => n,
        Err(e) if e.to_string().contains("no such table") => 0,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// A small deterministic generator for the kill delays (the seed is fixed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Re-runs (no kills, no flags) until exit 0, at most 10 times; returns the last output.
async fn rerun_until_done(h: &Harness, csv: &Path, extra: &[&str]) -> Output {
    let mut last = None;
    for _ in 0..10 {
        let out = h.run(csv, extra).await;
        if out.code == 0 {
            return out;
        }
        assert_eq!(out.code, 1, "a re-run may only end 0 or 1: {}", out.stderr);
        last = Some(out);
    }
    let out = last.expect("at least one re-run");
    h.expect_code(&out, 0);
    out
}

/// How long a test waits for an event of the simulator before it gives up.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits for `event`, failing with `what` and the simulator's state after [`EVENT_TIMEOUT`].
async fn wait_for(h: &Harness, what: &str, event: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(EVENT_TIMEOUT, event).await.is_err() {
        panic!("no {what} after {EVENT_TIMEOUT:?}\n{}", h.describe_state());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_storm_under_faults_loses_nothing_and_doubles_nothing() {
    const ROWS: u64 = 300;
    const KILLS: u64 = 12;
    let faults = Faults {
        random_5xx: 0.05,
        // Each 429 pauses every worker for its Retry-After (1 s): 5% would cost ~25 s.
        random_429: 0.01,
        commit_then_drop: 0.05,
        // A POST spends 20-30 ms on the server: the kill lands while it is there.
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(10),
        ..Faults::default()
    };
    let h = Harness::new(
        sandbox::Builder::new()
            .generated_users(200)
            .faults(faults)
            .seed(4),
    )
    .await;
    let csv = h.write("users.csv", mixed_csv(200, 100));
    let slow = ["--rate", "200", "--timeout", "1"];
    let mut steps = Lcg(0x0005_eed4);
    let (mut target, mut posting_left) = (0, 0);
    for kill in 0..KILLS {
        let mut child = spawn(&h, &csv, &slow);
        // Kill k comes after 8..24 more POSTs in all, at a moment a POST is on the server.
        // At most 12 x 23 = 276 POSTs before the last kill: fewer than the rows, so no run
        // can have finished before its kill.
        target += 8 + steps.below(16);
        let what = format!("POST number {target} before kill {kill}");
        wait_for(
            &h,
            &what,
            h.sandbox.wait_requests("create_building", target),
        )
        .await;
        wait_for(
            &h,
            "a POST in flight",
            h.sandbox.wait_in_flight("create_building", 1),
        )
        .await;
        child.start_kill().expect("SIGKILL");
        child.wait().await.expect("wait");
        posting_left += rows_in_state(&h.checkpoint(), "posting");
    }
    // Each kill came while a POST was on the server, after its intent was committed.
    assert!(
        posting_left > 0,
        "no kill left a POST in flight: the storm tested nothing about intents"
    );
    let done_before = states(&h.checkpoint_rows()).get("done").copied();
    assert!(done_before < Some(ROWS as usize), "the kills came too late");

    rerun_until_done(&h, &csv, &["--timeout", "1"]).await;
    let rows = h.checkpoint_rows();
    assert_eq!(
        states(&rows).get("done"),
        Some(&(ROWS as usize)),
        "{:?}",
        states(&rows)
    );
    let state = h.state();
    assert!(state.duplicates().is_empty(), "{:?}", state.duplicates());
    assert_eq!(building_count(&state), ROWS as usize);
    h.assert_no_duplicates_and_map_matches();
    let server: BTreeSet<Key> = server_map(&state).into_keys().collect();
    assert_eq!(keys(&rows, "done"), server, "checkpoint and server differ");
}

/// Runs without the list endpoint until every row is done or unresolved, then with
/// `--resolve-unknown=repost`, and checks what each phase may and may not do.
async fn list_endpoint_off(mode: ListBuildings) {
    let faults = Faults {
        random_5xx: 0.05,
        random_429: 0.02,
        commit_then_drop: 0.1,
        ..Faults::default()
    };
    let h = Harness::new(
        sandbox::Builder::new()
            .generated_users(100)
            .list_buildings(mode)
            .faults(faults)
            .seed(11),
    )
    .await;
    let csv = h.write("users.csv", mixed_csv(100, 50));
    let report = h.path("report.csv");
    let extra = [
        "--timeout",
        "1",
        "--report",
        report.to_str().expect("utf-8"),
    ];
    run_until_only_unresolved_rows_remain(&h, &csv, &extra).await;
    let before = h.state();
    assert!(
        before.duplicates().is_empty(),
        "duplicates without --resolve-unknown=repost: {:?}",
        before.duplicates()
    );
    h.assert_no_duplicates_and_map_matches();
    assert_no_post_follows_an_unknown_outcome(&before, (50..100).map(sandbox::generated_user_id));
    let rows = h.checkpoint_rows();
    let unresolved = keys(&rows, "unresolved");
    assert!(
        !unresolved.is_empty(),
        "no POST outcome was ever unknown: nothing tested"
    );
    let server_before = server_map(&before);
    for key in server_before.keys() {
        assert!(
            keys(&rows, "done").contains(key) || unresolved.contains(key),
            "{key:?} has a building but its row is neither done nor unresolved"
        );
    }
    // The rows whose first POST did land: exactly these may be doubled by a repost.
    let landed: BTreeSet<Key> = unresolved
        .iter()
        .filter(|k| server_before.contains_key(*k))
        .cloned()
        .collect();
    assert!(
        !landed.is_empty(),
        "no unresolved POST had landed: the trade-off is untested"
    );
    assert_eq!(
        exported_unresolved(&h).await,
        unresolved,
        "export --state unresolved"
    );
    assert_eq!(
        reported_unresolved(&report),
        unresolved,
        "the report's unresolved rows"
    );

    // The operator accepts the risk.
    h.sandbox.set_faults(Faults::default());
    let out = h.run(&csv, &["--resolve-unknown=repost"]).await;
    h.expect_code(&out, 0);
    assert_reposted_with_duplicates_only_for(&h, &landed, 150);
}

/// Phase 1 (`verify`): re-runs until every row is done or unresolved (10 runs at most);
/// each run exits 1 while unresolved rows remain.
async fn run_until_only_unresolved_rows_remain(h: &Harness, csv: &Path, extra: &[&str]) {
    for _ in 0..10 {
        let out = h.run(csv, extra).await;
        let by_state = states(&h.checkpoint_rows());
        let count = |state| by_state.get(state).copied().unwrap_or(0);
        h.expect_code(&out, if count("unresolved") > 0 { 1 } else { 0 });
        if count("done") + count("unresolved") == 150 {
            return;
        }
    }
    panic!(
        "rows still to do after 10 runs: {:?}",
        states(&h.checkpoint_rows())
    );
}

/// For users with one building, no POST may follow one whose outcome the client could
/// not know (dropped, 500, 502, 504): only a listing proves absence, and there is none.
fn assert_no_post_follows_an_unknown_outcome(state: &Snapshot, users: impl Iterator<Item = Uuid>) {
    let single: BTreeSet<Uuid> = users.collect();
    let mut unknown_for = BTreeSet::new();
    for entry in state.log.iter().filter(|e| e.endpoint == "create_building") {
        let Some(user) = entry.user_id.filter(|u| single.contains(u)) else {
            continue;
        };
        assert!(
            !unknown_for.contains(&user),
            "user {user}: a building POST was re-sent after an unknown outcome"
        );
        if matches!(entry.status, 0 | 500 | 502 | 504) {
            unknown_for.insert(user);
        }
    }
}

/// Whether an unresolved row's message tells the operator what to do.
fn advises(message: &str) -> bool {
    message.contains("--resolve-unknown=repost") || message.contains("next run")
}

/// The rows `export --format json --state unresolved` lists, each checked for advice.
async fn exported_unresolved(h: &Harness) -> BTreeSet<Key> {
    let checkpoint = h.checkpoint().display().to_string();
    let args = [
        "export",
        "--checkpoint",
        &checkpoint,
        "--format",
        "json",
        "--state",
        "unresolved",
    ];
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let export = h.exec(&args).await;
    h.expect_code(&export, 0);
    let row = |line: &str| {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        assert_eq!(v["state"], "unresolved", "{line}");
        assert!(
            advises(v["error"].as_str().unwrap_or_default()),
            "no advice in {line}"
        );
        let text = |key: &str| v[key].as_str().expect(key).to_owned();
        (text("user_id"), text("building_name"))
    };
    export.stdout.lines().map(row).collect()
}

/// The unresolved rows of a `--report` CSV, each checked for advice.
fn reported_unresolved(report: &Path) -> BTreeSet<Key> {
    let mut reader = csv::Reader::from_path(report).expect("report");
    let header = reader.headers().expect("header").clone();
    let column = |name| header.iter().position(|h| h == name).expect(name);
    let (user, name, state, error) = (
        column("user_id"),
        column("building_name"),
        column("state"),
        column("error"),
    );
    let mut unresolved = BTreeSet::new();
    for record in reader.records() {
        let record = record.expect("report record");
        if &record[state] == "unresolved" {
            assert!(
                advises(&record[error]),
                "no advice in the report: {record:?}"
            );
            unresolved.insert((record[user].to_owned(), record[name].to_owned()));
        }
    }
    unresolved
}

/// After `--resolve-unknown=repost`: every row done with a building the server has, and
/// a second building exactly for the rows in `landed`.
fn assert_reposted_with_duplicates_only_for(h: &Harness, landed: &BTreeSet<Key>, total: usize) {
    let rows = h.checkpoint_rows();
    assert_eq!(
        states(&rows).get("done"),
        Some(&total),
        "{:?}",
        states(&rows)
    );
    let after = h.state();
    let duplicated: BTreeSet<Key> = after
        .duplicates()
        .into_iter()
        .map(|(user, name, count)| {
            assert_eq!(count, 2, "{user} {name}");
            (user.to_string(), name)
        })
        .collect();
    assert_eq!(
        &duplicated, landed,
        "duplicates only where the first POST had landed"
    );
    assert_eq!(building_count(&after), total + landed.len());
    let server = server_map(&after);
    for row in &rows {
        let key = (row.user_id.clone(), row.building_name.clone());
        let id = row.building_id.as_deref().expect("done has an id");
        let id: Uuid = id.parse().expect("uuid");
        assert!(server[&key].contains(&id), "{row:?} is not on the server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_list_endpoint_unknown_posts_stay_unresolved_until_repost_404() {
    list_endpoint_off(ListBuildings::NotFound).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_list_endpoint_unknown_posts_stay_unresolved_until_repost_405() {
    list_endpoint_off(ListBuildings::MethodNotAllowed).await;
}

fn open_read_only(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open checkpoint")
}

/// `(exit_code, ended_at)` of the last run recorded in the checkpoint.
fn last_run(path: &Path) -> (Option<i64>, Option<i64>) {
    open_read_only(path)
        .query_row(
            "SELECT exit_code, ended_at FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("runs")
}

/// The first `signal` (TERM or INT) mid-run: calls in flight finish, exit 130, the end
/// is recorded, no row is left `posting`, and the re-run completes without re-sending.
async fn stops_gracefully_with_130_on(name: &str) {
    let h = Harness::with_users(200).await;
    let csv = h.write("users.csv", generated_csv(200, 1));
    let child = spawn(&h, &csv, &["--rate", "50"]);
    let pid = child.id().expect("pid");
    wait_for(&h, "5 POSTs", h.sandbox.wait_requests("create_building", 5)).await;
    signal(pid, name);
    let out = finish(child, &format!("run stopped by SIG{name}")).await;
    h.expect_code(&out, 130);
    assert!(out.stderr.contains("stopping"), "{}", out.stderr);
    assert!(out.stderr.contains("not processed"), "{}", out.stderr);
    assert!(out.stderr.contains("checkpoint"), "{}", out.stderr);
    assert_eq!(
        last_run(&h.checkpoint()).0,
        Some(130),
        "the run's end is recorded"
    );

    // In-flight calls finished: every building created is recorded, none is in doubt.
    let rows = h.checkpoint_rows();
    assert_eq!(states(&rows).get("posting"), None, "{:?}", states(&rows));
    let state = h.state();
    assert!(
        building_count(&state) < 200,
        "the stop came too late to test anything"
    );
    assert_eq!(keys(&rows, "done").len(), building_count(&state));
    h.assert_no_duplicates_and_map_matches();

    let again = h.run(&csv, &[]).await;
    h.expect_code(&again, 0);
    h.assert_no_duplicates_and_map_matches();
    let state = h.state();
    assert_eq!(building_count(&state), 200);
    assert_eq!(
        state.count("create_building"),
        200,
        "a building was POSTed twice"
    );
}

/// A run reading its CSV from a stdin whose writer stalls (a pipe from a slow export): a
/// second SIGTERM stops it at once, as it does a run that is sending. The header used to
/// be read on the runtime's one thread, which held the signal handler back until the
/// input ended. Signals are sent every 300 ms (two sent at once may arrive as one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_a_run_whose_stdin_stalls() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::with_users(5).await;
    let args = h.run_args(Path::new("-"), &[]);
    let mut cmd = h.command(&common::strs(&args));
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the run");
    let pid = child.id().expect("pid");
    let mut stdin = child.stdin.take().expect("stdin");
    let start = format!(
        "user_id,external_user_id,building_name\n{},CRM-0,Home 0\n",
        sandbox::generated_user_id(0)
    );
    stdin
        .write_all(start.as_bytes())
        .await
        .expect("write to stdin");
    let lock = podero_onboard::checkpoint::lock::lock_path(&h.checkpoint());
    let holder = format!("pid {pid}");
    wait_until(&h, 10, "the run to take its lock", || {
        std::fs::read_to_string(&lock).is_ok_and(|text| text.contains(&holder))
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the run") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "SIGTERMs for 10 s did not stop a run waiting for its input"
        );
        signal(pid, "TERM");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(h.state().log.len(), 0, "nothing was sent");
    drop(stdin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_stops_gracefully_with_130_and_the_rerun_completes() {
    stops_gracefully_with_130_on("TERM").await;
}

/// Ctrl-C at a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_run_stops_gracefully_with_130_and_the_rerun_completes() {
    stops_gracefully_with_130_on("INT").await;
}

/// A stop that must be "at once" or within `--grace 1` may take this long on a loaded
/// machine; what it excludes is waiting out the 30 s grace period or the 60 s stall.
const PROMPT_EXIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_at_once_and_the_checkpoint_stays_usable() {
    // Every POST commits, then its answer stalls for 60 s: a graceful stop would wait
    // the whole 30 s grace period.
    let faults = Faults {
        commit_then_stall: 1.0,
        stall: Duration::from_secs(60),
        ..Faults::default()
    };
    let h = Harness::new(sandbox::Builder::new().generated_users(20).faults(faults)).await;
    let csv = h.write("users.csv", generated_csv(20, 1));
    let mut child = spawn(
        &h,
        &csv,
        &["--timeout", "60", "--grace", "30", "--concurrency", "4"],
    );
    let pid = child.id().expect("pid");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    wait_until(&h, 10, "stalled POSTs", || building_count(&h.state()) >= 4).await;

    signal(pid, "TERM");
    let mut seen = String::new();
    while !seen.contains("stopping") {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), stderr.read_line(&mut line))
            .await
            .expect("the first signal is acknowledged")
            .expect("read stderr");
        assert!(
            n > 0,
            "stderr closed before the stop was acknowledged: {seen}"
        );
        seen.push_str(&line);
    }
    let second = Instant::now();
    signal(pid, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after the second signal")
        .expect("wait");
    let took = second.elapsed();
    stderr.read_to_string(&mut seen).await.expect("read stderr");
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(
        took < PROMPT_EXIT,
        "took {took:?} after the second signal (a graceful stop waits 30 s)"
    );
    assert!(seen.contains("stopped at once"), "{seen}");

    // The checkpoint opens, is intact, and holds the stalled POSTs as intents.
    let conn = open_read_only(&h.checkpoint());
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    drop(conn);
    let stalled = building_count(&h.state());
    assert_eq!(
        states(&h.checkpoint_rows()).get("posting"),
        Some(&stalled),
        "every POST that reached the server has its intent recorded"
    );

    h.sandbox.set_faults(Faults::default());
    let again = h.run(&csv, &[]).await;
    h.expect_code(&again, 0);
    h.assert_no_duplicates_and_map_matches();
    let state = h.state();
    assert_eq!(building_count(&state), 20);
    assert_eq!(
        state.count("create_building"),
        20,
        "stalled POSTs were re-sent instead of verified"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_grace_period_stalled_posts_are_abandoned_and_verified_by_the_next_run() {
    let faults = Faults {
        commit_then_stall: 1.0,
        stall: Duration::from_secs(60),
        ..Faults::default()
    };
    let h = Harness::new(sandbox::Builder::new().generated_users(10).faults(faults)).await;
    let csv = h.write("users.csv", generated_csv(10, 1));
    let child = spawn(
        &h,
        &csv,
        &["--timeout", "60", "--grace", "1", "--concurrency", "2"],
    );
    let pid = child.id().expect("pid");
    wait_until(&h, 10, "stalled POSTs", || building_count(&h.state()) >= 2).await;
    let signalled = Instant::now();
    signal(pid, "TERM");
    let out = finish(child, "run stopped by one SIGTERM").await;
    let took = signalled.elapsed();
    h.expect_code(&out, 130);
    assert!(
        took < PROMPT_EXIT,
        "took {took:?} with --grace 1 (the stalls last 60 s)"
    );
    assert!(out.stderr.contains("grace period over"), "{}", out.stderr);
    assert_eq!(last_run(&h.checkpoint()).0, Some(130));
    assert_eq!(states(&h.checkpoint_rows()).get("posting"), Some(&2));

    h.sandbox.set_faults(Faults::default());
    let again = h.run(&csv, &[]).await;
    h.expect_code(&again, 0);
    h.assert_no_duplicates_and_map_matches();
    let state = h.state();
    assert_eq!(building_count(&state), 10);
    assert_eq!(
        state.count("create_building"),
        10,
        "abandoned POSTs were re-sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_checkpoint_is_refused_with_exit_3_naming_the_first() {
    let h = Harness::with_users(100).await;
    let csv = h.write("users.csv", generated_csv(100, 1));
    let first = spawn(&h, &csv, &["--rate", "10"]);
    let pid = first.id().expect("pid");
    wait_until(&h, 10, "the first run to start", || {
        h.state().count("create_building") >= 1
    })
    .await;
    let tokens = h.state().tokens_issued;
    let second = h.run(&csv, &[]).await;
    h.expect_code(&second, 3);
    assert!(second.stderr.contains("in use"), "{}", second.stderr);
    assert!(
        second.stderr.contains(&format!("pid {pid}")),
        "{}",
        second.stderr
    );
    assert!(
        second
            .stderr
            .contains(&h.checkpoint().display().to_string()),
        "{}",
        second.stderr
    );
    assert_eq!(
        h.state().tokens_issued,
        tokens,
        "the refused run asked for a token"
    );

    signal(pid, "TERM");
    let out = finish(first, "first run").await;
    h.expect_code(&out, 130);
    let again = h.run(&csv, &[]).await;
    h.expect_code(&again, 0);
    h.assert_no_duplicates_and_map_matches();
    assert_eq!(h.state().count("create_building"), 100);
}

/// The lock holds when its file does not: removed during the run (a "stale lock" cleaned
/// up by hand) or the checkpoint reached through a hard link. Both once let a second run
/// in beside the first, and each created every building again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_lock_file_or_a_hard_link_does_not_let_a_second_run_in() {
    let h = Harness::with_users(100).await;
    let csv = h.write("users.csv", generated_csv(100, 1));
    let first = spawn(&h, &csv, &["--rate", "10"]);
    wait_until(&h, 10, "the first run to start", || {
        h.state().count("create_building") >= 1
    })
    .await;
    let lock = podero_onboard::checkpoint::lock::lock_path(&h.checkpoint());
    std::fs::remove_file(&lock).expect("remove the lock file");
    let hard = h.path("hard-link.sqlite");
    std::fs::hard_link(h.checkpoint(), &hard).expect("hard link");
    let tokens = h.state().tokens_issued;
    for checkpoint in [h.checkpoint(), hard] {
        let checkpoint = checkpoint.to_str().expect("utf-8");
        let second = h.run(&csv, &["--checkpoint", checkpoint]).await;
        h.expect_code(&second, 3);
        assert!(
            second.stderr.contains("in use") && second.stderr.contains("hard link"),
            "{}",
            second.stderr
        );
    }
    assert_eq!(
        h.state().tokens_issued,
        tokens,
        "a refused run asked for a token"
    );

    signal(first.id().expect("pid"), "TERM");
    h.expect_code(&finish(first, "first run").await, 130);
    h.expect_code(&h.run(&csv, &[]).await, 0);
    h.assert_no_duplicates_and_map_matches();
    assert_eq!(h.state().count("create_building"), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_file_left_by_a_killed_run_does_not_block_the_next_run() {
    let h = Harness::with_users(100).await;
    let csv = h.write("users.csv", generated_csv(100, 1));
    let mut child = spawn(&h, &csv, &["--rate", "50"]);
    let pid = child.id().expect("pid");
    wait_until(&h, 10, "the run to start", || {
        h.state().count("create_building") >= 3
    })
    .await;
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("wait");
    let lock = podero_onboard::checkpoint::lock::lock_path(&h.checkpoint());
    let text = std::fs::read_to_string(&lock).expect("the lock file is still there");
    assert!(text.contains(&format!("pid {pid}")), "{text}");
    assert_eq!(
        last_run(&h.checkpoint()).1,
        None,
        "the killed run never ended"
    );

    let again = h.run(&csv, &[]).await;
    h.expect_code(&again, 0);
    assert!(again.stderr.contains("did not finish"), "{}", again.stderr);
    h.assert_no_duplicates_and_map_matches();
    assert_eq!(building_count(&h.state()), 100);
    assert_eq!(states(&h.checkpoint_rows()).get("done"), Some(&100));
}

/// `status` and `export` read the checkpoint while a run writes it, as an operator does
/// to see how far a migration is. Their SQLite connections open and close beside the
/// run's, so the run must hold its SQLite locks the whole time: closing any descriptor of
/// a file drops every POSIX lock the process holds on it, and when the run once closed
/// one of its own (narrowing the files' modes), a reader's open then truncated the run's
/// shared memory under it: the run died of SIGBUS after ~30 buildings. (A reader's close
/// could as well have taken the run for gone and deleted its WAL.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_export_during_a_run_lose_nothing() {
    const USERS: usize = 200;
    let h = Harness::with_users(USERS).await;
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    // A checkpoint from an earlier run, made readable by others since: the run narrows it.
    let one = h.write("one.csv", generated_csv(1, 1));
    h.expect_code(&h.run(&one, &[]).await, 0);
    let wide = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(h.checkpoint(), wide).expect("chmod the checkpoint");
    let run = spawn(&h, &csv, &["--rate", "100"]);
    wait_for(
        &h,
        "20 buildings",
        h.sandbox.wait_requests("create_building", 20),
    )
    .await;
    let checkpoint = h.checkpoint().display().to_string();
    for _ in 0..3 {
        let status = h
            .exec(&["status".into(), "--checkpoint".into(), checkpoint.clone()])
            .await;
        h.expect_code(&status, 0);
        h.export(&[]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = finish(run, "the run").await;
    h.expect_code(&out, 0);
    assert_eq!(states(&h.checkpoint_rows()).get("done"), Some(&USERS));
    h.assert_no_duplicates_and_map_matches();
    let requests = h.state().api_requests();
    let again = h.run(&csv, &[]).await;
    h.expect_code(&again, 0);
    assert_eq!(
        h.state().api_requests(),
        requests,
        "the re-run found rows the checkpoint had lost"
    );
    let mode = std::fs::metadata(h.checkpoint())
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the run narrowed the checkpoint");
}

/// Runs on `checkpoint` (with extra env) and asserts it is refused with `code`, a message
/// naming the file and containing `needles`, and not a single request.
async fn assert_refused(
    h: &Harness,
    csv: &Path,
    checkpoint: &Path,
    env: &[(&str, &str)],
    code: i32,
    needles: &[&str],
) {
    let before = h.state();
    let args = h.run_args(csv, &["--checkpoint", checkpoint.to_str().expect("utf-8")]);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = h.command(&strs);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = h.exec_with(cmd).await;
    h.expect_code(&out, code);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    assert!(
        out.stderr.contains(&checkpoint.display().to_string()),
        "the message does not name the file: {}",
        out.stderr
    );
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "no {needle:?} in: {}",
            out.stderr
        );
    }
    let after = h.state();
    assert_eq!(
        after.api_requests(),
        before.api_requests(),
        "{}",
        out.stderr
    );
    assert_eq!(after.tokens_issued, before.tokens_issued, "{}", out.stderr);
}

/// Moves the WAL into the main file so a copy of the file alone is complete.
fn checkpoint_wal(path: &Path) {
    let conn = Connection::open(path).expect("open");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("wal_checkpoint");
}

fn remove_sidecars(path: &Path) {
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_foreign_checkpoints_are_refused_before_any_request() {
    let h = Harness::with_users(100).await;
    let csv = h.write("users.csv", generated_csv(100, 1));
    h.expect_code(&h.run(&csv, &[]).await, 0);
    checkpoint_wal(&h.checkpoint());

    // (1) A text file.
    let garbage = "name,amount\nthis is not a database\n".repeat(200);
    let text = h.write("garbage.sqlite", &garbage);
    assert_refused(
        &h,
        &csv,
        &text,
        &[],
        3,
        &["not a podero-onboard checkpoint", "--checkpoint"],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&text).expect("read"),
        garbage,
        "the file was modified"
    );

    // (2) A real checkpoint cut in half.
    let truncated = h.path("truncated.sqlite");
    std::fs::copy(h.checkpoint(), &truncated).expect("copy");
    let len = std::fs::metadata(&truncated).expect("metadata").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    remove_sidecars(&truncated);
    assert_refused(
        &h,
        &csv,
        &truncated,
        &[],
        3,
        &["damaged", "restore a backup"],
    )
    .await;

    // (3) Somebody else's SQLite database.
    let other = h.path("invoices.sqlite");
    let conn = Connection::open(&other).expect("create");
    conn.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);")
        .expect("create table");
    drop(conn);
    assert_refused(
        &h,
        &csv,
        &other,
        &[],
        3,
        &[
            "not a podero-onboard checkpoint",
            "unrelated",
            "--checkpoint",
        ],
    )
    .await;
    let tables: i64 = open_read_only(&other)
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .expect("schema");
    assert_eq!(tables, 1, "tables were added to a foreign database");

    // (4) A checkpoint of another organization.
    let org_b = Uuid::from_u128(0xb);
    let org_a = h.sandbox.org_id().to_string();
    assert_refused(
        &h,
        &csv,
        &h.checkpoint(),
        &[("PODERO_ORG_ID", &org_b.to_string())],
        2,
        &[&org_a, &org_b.to_string(), "separate checkpoint"],
    )
    .await;

    // (5) A checkpoint of another base URL (environment): refused, sent nothing to either
    // server, and the file is left as it was (never rewritten to the new URL).
    let other = sandbox::Builder::new()
        .generated_users(100)
        .start()
        .await
        .expect("second simulator");
    let before = std::fs::read(h.checkpoint()).expect("read checkpoint");
    assert_refused(
        &h,
        &csv,
        &h.checkpoint(),
        &[("PODERO_BASE_URL", &other.base_url())],
        2,
        &[
            &h.sandbox.base_url(),
            &other.base_url(),
            "separate checkpoint",
        ],
    )
    .await;
    let seen = other.state();
    assert_eq!(
        (seen.tokens_issued, seen.api_requests()),
        (0, 0),
        "{seen:?}"
    );
    assert_eq!(
        std::fs::read(h.checkpoint()).expect("read checkpoint"),
        before,
        "the refused checkpoint was modified"
    );

    // (6) A checkpoint from a newer podero-onboard.
    let newer = h.path("newer.sqlite");
    std::fs::copy(h.checkpoint(), &newer).expect("copy");
    Connection::open(&newer)
        .expect("open")
        .execute_batch("PRAGMA user_version = 99;")
        .expect("user_version");
    assert_refused(&h, &csv, &newer, &[], 3, &["newer", "upgrade"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_post_intent_is_committed_before_the_post_and_a_killed_post_is_adopted() {
    let faults = Faults {
        commit_then_stall: 1.0,
        stall: Duration::from_secs(10),
        ..Faults::default()
    };
    let h = Harness::new(sandbox::Builder::new().generated_users(1).faults(faults)).await;
    let csv = h.write("users.csv", generated_csv(1, 1));
    let mut child = spawn(&h, &csv, &["--timeout", "30"]);
    wait_until(&h, 10, "the building to be created", || {
        building_count(&h.state()) == 1
    })
    .await;
    let conn = open_read_only(&h.checkpoint());
    let (state, building_id): (String, Option<String>) = conn
        .query_row("SELECT state, building_id FROM rows", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("the row is in the checkpoint before the POST has an answer");
    assert_eq!((state.as_str(), building_id), ("posting", None));
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(journal, "wal", "the durability settings rely on WAL");
    drop(conn);
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("wait");

    h.sandbox.set_faults(Faults::default());
    let again = h.run(&csv, &[]).await;
    h.expect_code(&again, 0);
    let server = h.state();
    let id = server.buildings[&sandbox::generated_user_id(0)][0].id;
    let rows = h.checkpoint_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, "done");
    assert_eq!(
        rows[0].building_id,
        Some(id.to_string()),
        "adopted the server's building"
    );
    assert_eq!(building_count(&server), 1);
    assert_eq!(server.count("create_building"), 1, "the POST was re-sent");
    assert!(
        server.count("list_buildings") >= 1,
        "the outcome was not verified"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_answered_500_after_the_building_was_created_is_verified_not_resent() {
    // Every POST creates its building, then answers an HTML 500.
    let faults = Faults {
        fail_5xx_after_commit: 1.0,
        ..Faults::default()
    };
    let h = Harness::new(sandbox::Builder::new().generated_users(5).faults(faults)).await;
    let csv = h.write("users.csv", generated_csv(5, 1));
    let out = h.run(&csv, &["--json"]).await;
    h.expect_code(&out, 0);
    let state = h.state();
    assert_eq!(state.count("create_building"), 5, "a POST was re-sent");
    assert_eq!(state.statuses.get(&500), Some(&5), "{:?}", state.statuses);
    assert_eq!(
        state.count("list_buildings"),
        5,
        "each outcome verified once"
    );
    assert_eq!(building_count(&state), 5);
    assert_eq!(states(&h.checkpoint_rows()).get("done"), Some(&5));
    h.assert_no_duplicates_and_map_matches();
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(summary["rows"]["adopted"], 5, "{summary:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolved_row_is_adopted_once_a_human_leaves_one_building() {
    let user = sandbox::generated_user_id(0);
    let mut home = serde_json::Map::new();
    home.insert("name".into(), "Home 0".into());
    // The user already has a "Home 0"; the POST creates a second one, then answers 500.
    let h = Harness::new(
        sandbox::Builder::new()
            .generated_users(1)
            .existing_building(user, home)
            .faults(Faults {
                fail_5xx_after_commit: 1.0,
                ..Faults::default()
            }),
    )
    .await;
    let older = h.state().buildings[&user][0].id;
    let csv = h.write("users.csv", generated_csv(1, 1));
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 1);
    let rows = h.checkpoint_rows();
    assert_eq!(
        (rows[0].state.as_str(), rows[0].building_id.as_deref()),
        ("unresolved", None),
        "two buildings of that name: a human decides"
    );
    // The human keeps the building the POST made and deletes the older one.
    let posted = h.state().buildings[&user][1].id;
    assert!(h.sandbox.delete_building(user, older));
    h.sandbox.set_faults(Faults::default());
    let again = h.run(&csv, &[]).await;
    h.expect_code(&again, 0);
    let rows = h.checkpoint_rows();
    assert_eq!(rows[0].state, "done", "{rows:?}");
    assert_eq!(rows[0].building_id, Some(posted.to_string()), "adopted");
    assert_eq!(h.state().count("create_building"), 1, "never re-posted");
}

/// With `property_id`, two rows of one user may share a building name. When the second
/// row's POST fails ambiguously (an HTML 500, nothing created) and the server lists only
/// the first row's building, adopting it would give two rows one building and lose the
/// second: the check never adopts a building another checkpoint row owns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_post_is_never_resolved_to_a_building_another_row_owns() {
    const OWNED: &str = "b0000000-0000-4000-8000-00000000000a";
    let h = Harness::with_users(1).await;
    let posts = std::sync::atomic::AtomicUsize::new(0);
    let server = scripted_podero(move |request| match request.method.as_str() {
        "POST" if request.path.ends_with("/buildings") => Some(
            if posts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Reply::json(201, &serde_json::json!({"id": OWNED, "name": "Home"}))
            } else {
                Reply::new(500, &[("Content-Type", "text/html")], "<html>oops</html>")
            },
        ),
        "GET" if request.path.ends_with("/buildings") => Some(Reply::json(
            200,
            &serde_json::json!([{"id": OWNED, "name": "Home"}]),
        )),
        _ => None,
    })
    .await;
    let user = sandbox::generated_user_id(0);
    let header = "user_id,external_user_id,property_id,building_name\n";
    let first = h.write("first.csv", format!("{header}{user},CRM-0,P1,Home\n"));
    let both = h.write(
        "both.csv",
        format!("{header}{user},CRM-0,P1,Home\n{user},CRM-0,P2,Home\n"),
    );
    // The first row is done; the second is not (the run exits 1).
    for (csv, code) in [(&first, 0), (&both, 1)] {
        let args = h.run_args(csv, &[]);
        let mut cmd = h.command(&common::strs(&args));
        cmd.env("PODERO_BASE_URL", server.base_url());
        let out = h.exec_with(cmd).await;
        h.expect_code(&out, code);
    }
    let rows = h.checkpoint_rows();
    let owners = rows
        .iter()
        .filter(|r| r.building_id.as_deref() == Some(OWNED))
        .count();
    assert_eq!(owners, 1, "one building, one row: {rows:?}");
    assert_eq!(rows.len(), 2, "{rows:?}");
    // The server lists no other "Home": the second building does not exist, and the row
    // is left to be created by the next run (never attached to the first row's building).
    let second = rows
        .iter()
        .find(|r| r.building_id.is_none())
        .expect("{rows:?}");
    assert_eq!(second.state, "failed", "{rows:?}");
    assert!(
        second
            .error
            .as_deref()
            .is_some_and(|e| e.contains("does not exist") && e.contains("next run")),
        "{rows:?}"
    );
}

/// Rows of the disk-full test.
const FULL_DISK_ROWS: usize = 1500;
/// Pages the checkpoint may grow to: room for the staged input and a part of the results,
/// not for all of them (the checkpoint test hook `PODERO_ONBOARD_TEST_MAX_PAGES`).
const FULL_DISK_PAGES: &str = "30";
const FULL_MESSAGE: &str = "the disk holding the checkpoint is full: free space and run the same command again; nothing was lost";

/// A full disk under the checkpoint (issue 14), as SQLite reports it (`SQLITE_FULL`): the
/// run stops with exit 3 and says to free space and run the same command again; the re-run
/// completes every row exactly once. The checkpoint's page cap (a documented test hook)
/// stands in for the disk, so no root, no mount and no CAP_SYS_ADMIN are needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_says_free_space_and_rerun_and_the_rerun_completes_exactly_once() {
    let h = Harness::with_users(FULL_DISK_ROWS).await;
    let csv = h.write("users.csv", generated_csv(FULL_DISK_ROWS, 1));
    let args = h.run_args(&csv, &["--rate", "3000"]);
    let mut full = h.command(&common::strs(&args));
    full.env("PODERO_ONBOARD_TEST_MAX_PAGES", FULL_DISK_PAGES);
    let out = h.exec_with(full).await;
    h.expect_code(&out, 3);
    assert!(out.stderr.contains(FULL_MESSAGE), "{}", out.stderr);
    assert!(out.stderr.contains("test hook"), "{}", out.stderr);
    assert!(!out.stderr.contains("restore a backup"), "{}", out.stderr);
    let created_before = building_count(&h.state());
    assert!(
        created_before > 0 && created_before < FULL_DISK_ROWS,
        "{created_before} buildings before the disk filled: it must fill mid-run (adjust FULL_DISK_PAGES)"
    );
    // Space freed: the same command without the cap.
    let out = h.exec(&args).await;
    h.expect_code(&out, 0);
    let state = h.state();
    assert!(state.duplicates().is_empty(), "{:?}", state.duplicates());
    assert_eq!(building_count(&state), FULL_DISK_ROWS);
    assert_eq!(
        state.count("create_building") as usize,
        FULL_DISK_ROWS,
        "a POST was re-sent"
    );
    assert_eq!(
        states(&h.checkpoint_rows()).get("done"),
        Some(&FULL_DISK_ROWS)
    );
    h.assert_no_duplicates_and_map_matches();
}
