//! The operator's experience (issue 6): the dry run's plan is what the run then does,
//! nightly syncs send only what changed, failed rows are retried only when they can
//! succeed or when asked, progress and logs suit cron, the report and the `--json`
//! summary have a stable shape, optional columns reach the API as given, and the small
//! commands (`status`, `export`, `--help`, `completions`) say what an operator needs.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Harness, Output, generated_csv, states};
use podero_onboard::sandbox::{self, Faults, LogEntry};
use serde_json::{Value, json};
use uuid::Uuid;

/// A user the simulator does not know: every request about it gets 404.
const UNKNOWN_USER: Uuid = Uuid::from_u128(0x0bad_0000_0000_4000_8000_0000_0000_0001);

fn user(i: u64) -> Uuid {
    sandbox::generated_user_id(i)
}

/// `user_id,external_user_id,building_name` lines (no header).
fn line(user: Uuid, external: &str, building: &str) -> String {
    format!("{user},{external},{building}\n")
}

const HEADER: &str = "user_id,external_user_id,building_name\n";

/// The JSON summary a `--json` run printed on stdout.
fn summary(out: &Output) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{}", out.stdout))
}

/// The request log entries after the first `since`.
fn log_since(h: &Harness, since: usize) -> Vec<LogEntry> {
    h.state().log.split_off(since)
}

/// Users that got requests of endpoint `name` in `log`.
fn users_of(log: &[LogEntry], name: &str) -> BTreeSet<Uuid> {
    log.iter()
        .filter(|e| e.endpoint == name)
        .filter_map(|e| e.user_id)
        .collect()
}

/// Requests per endpoint in `log`.
fn endpoints(log: &[LogEntry]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for entry in log {
        *counts.entry(entry.endpoint.clone()).or_default() += 1;
    }
    counts
}

/// Runs a non-`run` subcommand of the binary.
async fn exec(h: &Harness, args: &[&str]) -> Output {
    h.exec_with(h.command(args)).await
}

fn checkpoint_arg(h: &Harness) -> String {
    h.checkpoint().display().to_string()
}

/// `text` with the temp dir shown as `<dir>`.
fn redact_dir(h: &Harness, text: &str) -> String {
    text.replace(&h.dir.path().display().to_string(), "<dir>")
}

/// Panics unless `actual` matches `expected` line by line; `{..}` in `expected` stands
/// for any text within one line (durations, rates).
fn assert_lines_match(actual: &str, expected: &str) {
    let a: Vec<&str> = actual.lines().collect();
    let e: Vec<&str> = expected.lines().collect();
    let same = a.len() == e.len() && a.iter().zip(&e).all(|(a, e)| glob(a, e));
    assert!(
        same,
        "output differs from the expected text\n--- expected ---\n{expected}\n--- actual ---\n{actual}"
    );
}

fn glob(text: &str, pattern: &str) -> bool {
    match pattern.split_once("{..}") {
        None => text == pattern,
        Some((head, rest)) => text.strip_prefix(head).is_some_and(|tail| {
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| glob(&tail[i..], rest))
        }),
    }
}

fn count(value: &Value, path: &str) -> u64 {
    value
        .pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no count at {path} in {value:#}"))
}

// ---------------------------------------------------------------------------------------
// Dry run
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_its_plan_is_what_the_real_run_then_does() {
    let h = Harness::with_users(30).await;
    // Run 1: users 0..20 done, the unknown user failed permanently (404).
    let first: String = (0..20)
        .map(|i| line(user(i), &format!("CRM-{i}"), "Home 0"))
        .collect();
    let first = h.write(
        "first.csv",
        format!("{HEADER}{first}{}", line(UNKNOWN_USER, "CRM-404", "Home 0")),
    );
    h.expect_code(&h.run(&first, &[]).await, 1);
    // Run 2: users 20 and 21 fail with 5xx (transient) on their only attempt.
    h.sandbox.set_faults(Faults {
        random_5xx: 1.0,
        ..Faults::default()
    });
    let flaky = h.write(
        "flaky.csv",
        format!(
            "{HEADER}{}{}",
            line(user(20), "CRM-20", "Home 0"),
            line(user(21), "CRM-21", "Home 0")
        ),
    );
    // Another file on the same checkpoint: its rows are not a cut export.
    let other_file = ["--max-attempts", "1", "--max-vanished", "100%"];
    h.expect_code(&h.run(&flaky, &other_file).await, 1);
    h.sandbox.set_faults(Faults::default());
    // User 5's POST is in flight as if a run had been killed (the schema is documented).
    let conn = rusqlite::Connection::open(h.checkpoint()).expect("open checkpoint");
    let marked = conn
        .execute(
            "UPDATE rows SET state = 'posting', building_id = NULL WHERE user_id = ?1",
            [user(5).to_string()],
        )
        .expect("mark posting");
    assert_eq!(marked, 1);
    drop(conn);

    // Tonight's file: 3 changed external ids, users 18 and 19 gone, 4 new users, the
    // transient failures and the 404 again, one invalid row.
    let mut tonight = String::from(HEADER);
    for i in 0..18 {
        let external = if i < 3 {
            format!("CRM-{i}-moved")
        } else {
            format!("CRM-{i}")
        };
        tonight.push_str(&line(user(i), &external, "Home 0"));
    }
    for i in 20..26 {
        tonight.push_str(&line(user(i), &format!("CRM-{i}"), "Home 0"));
    }
    tonight.push_str(&line(UNKNOWN_USER, "CRM-404", "Home 0"));
    tonight.push_str("12345,CRM-bad,Home 0\n");
    let tonight = h.write("tonight.csv", tonight);

    let before = h.checkpoint_rows();
    let requests_before = h.state().requests.clone();
    let dry = h.run(&tonight, &["--dry-run", "--json"]).await;
    h.expect_code(&dry, 1);
    assert_eq!(
        h.state().requests,
        requests_before,
        "a dry run sends nothing, not even a token request"
    );
    assert_eq!(h.checkpoint_rows(), before, "a dry run changes no row");
    let plan = summary(&dry)["plan"].clone();
    assert_eq!(
        plan,
        json!({"onboard": 4, "update": 3, "retry": 2, "verify": 1, "update_building": 0, "user_only": 0, "skip_done": 14, "skip_failed": 1, "look_up": 0, "create_users": false}),
        "{}",
        dry.stderr
    );
    for text in [
        "plan (dry run, nothing sent):",
        "4  to onboard",
        "3  to update",
        "2  to retry",
        "1  to verify",
        "14  to skip: already done",
        "1  to skip: failed before",
        "1  invalid",
        "line 27",
        "column user_id: value \"12345\" is not a UUID",
    ] {
        assert!(dry.stderr.contains(text), "no {text:?} in:\n{}", dry.stderr);
    }

    let real = h.run(&tonight, &["--json"]).await;
    h.expect_code(&real, 1);
    let rows = &summary(&real)["rows"];
    let got = |name: &str| count(rows, &format!("/{name}"));
    let planned = |name: &str| count(&plan, &format!("/{name}"));
    assert_eq!(got("created"), planned("onboard") + planned("retry"));
    assert_eq!(got("adopted"), planned("verify"));
    assert_eq!(got("updated"), planned("update"));
    assert_eq!(got("skipped_done"), planned("skip_done"));
    assert_eq!(got("skipped_failed"), planned("skip_failed"));
    assert_eq!(got("invalid"), 1);
    assert_eq!(got("vanished"), 2);
    assert_eq!(got("failed"), 0);
    assert_eq!(
        states(&h.checkpoint_rows()),
        BTreeMap::from([("done".to_owned(), 26), ("failed".to_owned(), 1)])
    );
    h.assert_no_duplicates_and_map_matches();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_of_a_clean_file_exits_0_without_credentials() {
    let h = Harness::with_users(3).await;
    let csv = h.write("users.csv", generated_csv(3, 2));
    let args = h.run_args(&csv, &["--dry-run"]);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = h.command(&strs);
    cmd.env_remove("PODERO_CLIENT_ID")
        .env_remove("PODERO_CLIENT_SECRET");
    let out = h.exec_with(cmd).await;
    h.expect_code(&out, 0);
    assert!(out.stderr.contains("6  to onboard"), "{}", out.stderr);
    assert_eq!(h.state().requests.values().sum::<u64>(), 0);
}

// ---------------------------------------------------------------------------------------
// Nightly sync
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_sync_updates_only_changed_users_and_onboards_new_rows() {
    let h = Harness::with_users(102).await;
    let csv = h.write("crm.csv", generated_csv(100, 1));
    h.expect_code(&h.run(&csv, &[]).await, 0);
    let since = h.state().log.len();

    let changed = [10u64, 20, 30];
    let mut tonight = String::from(HEADER);
    for i in 0..96u64 {
        let external = if changed.contains(&i) {
            format!("CRM-{i}-v2")
        } else {
            format!("CRM-{i}")
        };
        tonight.push_str(&line(user(i), &external, "Home 0"));
    }
    tonight.push_str(&line(user(100), "CRM-100", "Home 0"));
    tonight.push_str(&line(user(101), "CRM-101", "Home 0"));
    let tonight = h.write("crm.csv", tonight);
    let out = h.run(&tonight, &["--json"]).await;
    h.expect_code(&out, 0);

    let log = log_since(&h, since);
    let new_users = BTreeSet::from([user(100), user(101)]);
    let mut put_users: BTreeSet<Uuid> = changed.iter().map(|i| user(*i)).collect();
    put_users.extend(&new_users);
    assert_eq!(users_of(&log, "put_user"), put_users);
    assert_eq!(users_of(&log, "create_building"), new_users);
    assert_eq!(
        endpoints(&log),
        BTreeMap::from([
            ("create_building".to_owned(), 2),
            ("put_user".to_owned(), 5),
            ("token".to_owned(), 1)
        ])
    );
    let rows = summary(&out)["rows"].clone();
    assert_eq!(count(&rows, "/updated"), 3);
    assert_eq!(count(&rows, "/created"), 2);
    assert_eq!(count(&rows, "/skipped_done"), 93);
    assert_eq!(count(&rows, "/vanished"), 4);
    assert!(
        out.stderr
            .contains("       4  in the checkpoint but no longer in the input")
    );
    let state = h.state();
    for i in changed {
        assert_eq!(
            state.users[&user(i)].external_user_id.as_deref(),
            Some(format!("CRM-{i}-v2").as_str())
        );
    }
    h.assert_no_duplicates_and_map_matches();
}

// ---------------------------------------------------------------------------------------
// Failed rows
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_retried_only_when_asked_and_only_failed_touches_nothing_else() {
    let h = Harness::with_users(6).await;
    let csv = h.write(
        "users.csv",
        generated_csv(5, 1) + &line(UNKNOWN_USER, "CRM-404", "Home 0"),
    );
    let first = h.run(&csv, &[]).await;
    h.expect_code(&first, 1);
    assert!(
        first.stderr.contains("1 × failed (HTTP 404)"),
        "{}",
        first.stderr
    );

    let export = exec(
        &h,
        &[
            "export",
            "--checkpoint",
            &checkpoint_arg(&h),
            "--state",
            "failed",
        ],
    )
    .await;
    h.expect_code(&export, 0);
    let exported: Vec<&str> = export.stdout.lines().collect();
    assert_eq!(exported.len(), 2, "{}", export.stdout);
    // The input's columns (a file to fix and feed back), then state and error.
    assert_eq!(
        exported[0],
        "user_id,external_user_id,building_name,state,error"
    );
    assert!(
        exported[1].starts_with(&format!("{UNKNOWN_USER},CRM-404,Home 0,failed,")),
        "{}",
        exported[1]
    );

    let since = h.state().log.len();
    let again = h.run(&csv, &[]).await;
    h.expect_code(&again, 1);
    assert!(
        again
            .stderr
            .contains("1  failed before and unchanged: not retried (use --retry-failed)"),
        "{}",
        again.stderr
    );
    assert!(
        log_since(&h, since).iter().all(|e| e.user_id.is_none()),
        "a plain re-run sent a request about a row: {:?}",
        log_since(&h, since)
    );

    let since = h.state().log.len();
    h.expect_code(&h.run(&csv, &["--retry-failed"]).await, 1);
    let retried = log_since(&h, since);
    assert_eq!(
        retried
            .iter()
            .filter(|e| e.user_id.is_some())
            .map(|e| (e.endpoint.as_str(), e.user_id))
            .collect::<Vec<_>>(),
        [("put_user", Some(UNKNOWN_USER))],
        "--retry-failed sends the failed row's PUT once and nothing else"
    );

    // Tonight's file has other work too: user 0's external id changed, user 5 is new.
    // --only-failed must leave that work alone, so the check below is not vacuous.
    let tonight = h.write(
        "tonight.csv",
        std::fs::read_to_string(&csv)
            .expect("csv")
            .replace(",CRM-0,", ",CRM-0-v2,")
            + &line(user(5), "CRM-5", "Home 0"),
    );
    h.sandbox.add_user(UNKNOWN_USER);
    let since = h.state().log.len();
    let fixed = h.run(&tonight, &["--only-failed", "--json"]).await;
    h.expect_code(&fixed, 0);
    let log = log_since(&h, since);
    assert!(
        log.iter()
            .all(|e| e.endpoint == "token" || e.user_id == Some(UNKNOWN_USER)),
        "--only-failed touched another user: {log:?}"
    );
    assert_eq!(
        users_of(&log, "create_building"),
        BTreeSet::from([UNKNOWN_USER])
    );
    let rows = summary(&fixed)["rows"].clone();
    assert_eq!(count(&rows, "/created"), 1);
    assert_eq!(count(&rows, "/skipped_not_selected"), 6);
    let state = h.state();
    assert_eq!(
        state.users[&user(0)].external_user_id.as_deref(),
        Some("CRM-0")
    );
    assert!(
        !state.buildings.contains_key(&user(5)),
        "the new row was onboarded"
    );
    assert_eq!(states(&h.checkpoint_rows()).get("done"), Some(&6));
    h.assert_no_duplicates_and_map_matches();

    // The work it left alone was real: a plain run does it.
    let since = h.state().log.len();
    let plain = h.run(&tonight, &["--json"]).await;
    h.expect_code(&plain, 0);
    let rows = summary(&plain)["rows"].clone();
    assert_eq!((count(&rows, "/updated"), count(&rows, "/created")), (1, 1));
    assert_eq!(
        users_of(&log_since(&h, since), "put_user"),
        BTreeSet::from([user(0), user(5)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_by_the_next_plain_run() {
    let h = Harness::with_users(10).await;
    let first = h.write("first.csv", generated_csv(8, 1));
    h.expect_code(&h.run(&first, &[]).await, 0);
    h.sandbox.set_faults(Faults {
        random_5xx: 1.0,
        ..Faults::default()
    });
    let all = h.write("all.csv", generated_csv(10, 1));
    let flaky = h.run(&all, &["--max-attempts", "1"]).await;
    h.expect_code(&flaky, 1);
    assert!(
        flaky
            .stderr
            .contains("2  failed after retries: retried automatically next run"),
        "{}",
        flaky.stderr
    );
    let failed: Vec<_> = h
        .checkpoint_rows()
        .into_iter()
        .filter(|r| r.state == "failed")
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed.iter().all(|r| r.http_status.unwrap_or(0) >= 500),
        "{failed:?}"
    );

    h.sandbox.set_faults(Faults::default());
    let since = h.state().log.len();
    let out = h.run(&all, &["--json"]).await;
    h.expect_code(&out, 0);
    assert_eq!(
        users_of(&log_since(&h, since), "create_building"),
        BTreeSet::from([user(8), user(9)])
    );
    assert_eq!(count(&summary(&out)["rows"], "/created"), 2);
    assert_eq!(states(&h.checkpoint_rows()).get("done"), Some(&10));
}

// ---------------------------------------------------------------------------------------
// Progress and logs
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lines_appear_every_interval_when_stderr_is_not_a_terminal() {
    let h = Harness::with_users(30).await;
    let csv = h.write("users.csv", generated_csv(30, 1));
    // 61 requests at 20/s: about 3 s.
    let out = h
        .run(&csv, &["--rate", "20", "--progress-interval", "1"])
        .await;
    h.expect_code(&out, 0);
    let progress: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("progress: "))
        .collect();
    assert!(progress.len() >= 2, "{}", out.stderr);
    assert!(
        progress
            .iter()
            .all(|l| l.contains("/30 rows (") && l.contains("rows/s")),
        "{progress:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_prints_nothing_on_success_and_the_summary_on_failure() {
    let h = Harness::with_users(20).await;
    let csv = h.write("users.csv", generated_csv(20, 1));
    // 41 requests at 20/s: about 2 s, so a progress line would be due without -q.
    let out = h
        .run(
            &csv,
            &["-q", "--json", "--rate", "20", "--progress-interval", "1"],
        )
        .await;
    h.expect_code(&out, 0);
    assert_eq!(out.stderr, "", "-q with exit 0 prints nothing on stderr");
    assert_eq!(summary(&out)["outcome"], "completed");

    let failing = h.write(
        "failing.csv",
        generated_csv(20, 1) + &line(UNKNOWN_USER, "CRM-404", "Home 0"),
    );
    let out = h.run(&failing, &["-q"]).await;
    h.expect_code(&out, 1);
    assert!(
        out.stderr.contains("1 × failed (HTTP 404)"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("progress:"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_logs_one_line_per_row() {
    let h = Harness::with_users(4).await;
    let csv = h.write(
        "users.csv",
        generated_csv(4, 1) + &line(UNKNOWN_USER, "CRM-404", "Home 0"),
    );
    let out = h.run(&csv, &["-v"]).await;
    h.expect_code(&out, 1);
    let created: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("INFO") && l.contains(" created "))
        .collect();
    assert_eq!(created.len(), 4, "{}", out.stderr);
    for i in 0..4u64 {
        let expected = format!("line={} user={}", i + 2, user(i));
        assert!(
            created.iter().any(|l| l.contains(&expected)),
            "{expected}: {created:?}"
        );
    }
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("INFO") && l.contains("failed") && l.contains("line=6")),
        "{}",
        out.stderr
    );
    let quiet = h.run(&csv, &[]).await;
    h.expect_code(&quiet, 1);
    assert!(!quiet.stderr.contains("INFO"), "{}", quiet.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format_makes_every_log_line_a_json_object() {
    let h = Harness::with_users(2).await;
    let csv = h.write(
        "users.csv",
        "user_id,external_user_id,building_name,crm_segment\n".to_owned()
            + &format!(
                "{},CRM-0,Home 0,gold\n{},CRM-1,Home 0,silver\n",
                user(0),
                user(1)
            ),
    );
    let out = h.run(&csv, &["-v", "--log-format", "json"]).await;
    h.expect_code(&out, 0);
    let logs: Vec<Value> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let warning = logs
        .iter()
        .find(|l| l["level"] == "WARN")
        .unwrap_or_else(|| panic!("no JSON warning in:\n{}", out.stderr));
    let message = warning["fields"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("ignoring unknown columns crm_segment"),
        "{warning}"
    );
    let rows: Vec<&Value> = logs
        .iter()
        .filter(|l| l["fields"]["message"] == "created")
        .collect();
    assert_eq!(rows.len(), 2, "{}", out.stderr);
    assert!(
        rows.iter().all(|l| l["fields"]["line"].is_u64()),
        "{rows:?}"
    );
    // The rest of stderr is the human summary, never a half-JSON line.
    assert!(
        out.stderr
            .lines()
            .all(|l| !l.contains("\"level\"") || l.starts_with('{')),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------
// Reports and summaries
// ---------------------------------------------------------------------------------------

/// Two done rows, a duplicate line, an invalid line, a 404, in that order.
fn report_csv() -> String {
    format!(
        "{HEADER}{}{}{}12345,CRM-bad,Home 0\n{}",
        line(user(0), "CRM-0", "Home 0"),
        line(user(1), "CRM-1", "=Home 1"),
        line(user(0), "CRM-0", "Home 0"),
        line(UNKNOWN_USER, "CRM-404", "Home 0"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_has_one_line_per_input_row_in_line_order_and_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::with_users(2).await;
    let csv = h.write("users.csv", report_csv());
    let report = h.path("report.csv");
    let out = h
        .run(&csv, &["--report", report.to_str().expect("utf-8")])
        .await;
    h.expect_code(&out, 1);
    let mode = std::fs::metadata(&report)
        .expect("report")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut text = std::fs::read_to_string(&report).expect("report");
    for ((user, name), ids) in h.state().building_map() {
        text = text.replace(&ids[0].to_string(), &format!("<building of {user} {name}>"));
    }
    let expected = r#"line,user_id,external_user_id,building_name,building_id,state,attempts,http_status,error,outcome
2,5eed0000-0000-4000-8000-000000000000,CRM-0,Home 0,<building of 5eed0000-0000-4000-8000-000000000000 Home 0>,done,1,,,created
3,5eed0000-0000-4000-8000-000000000001,CRM-1,'=Home 1,<building of 5eed0000-0000-4000-8000-000000000001 =Home 1>,done,1,,,created
4,5eed0000-0000-4000-8000-000000000000,CRM-0,Home 0,,duplicate,0,,{..},not_sent
5,12345,CRM-bad,Home 0,,invalid,0,,{..},not_sent
6,0bad0000-0000-4000-8000-000000000001,CRM-404,Home 0,,failed,1,404,{..},failed
"#;
    assert_lines_match(&text, expected);
}

/// A row given twice with different fields (another property_type, another name for one
/// property_id) is a conflict: which line is right is not known, so neither is sent, and
/// the run ends 1. (The first line used to win by line order alone, with exit 0.) A line
/// that says the same again is still a duplicate, processed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_given_twice_with_different_fields_is_a_conflict_and_neither_line_is_sent() {
    let h = Harness::with_users(4).await;
    let u = |i| user(i).to_string();
    let rows = [
        format!("{},CRM-0,Home 0,P-0,Flat", u(0)),
        format!("{},CRM-0,Home 0,P-0,Flat", u(0)),
        format!("{},CRM-1,Home 1,P-1,Flat", u(1)),
        format!("{},CRM-1,Home 1,P-1,Detached", u(1)),
        format!("{},CRM-2,Main,P-2,", u(2)),
        format!("{},CRM-2,Garage,P-2,", u(2)),
        format!("{},CRM-3,Home 3,P-3,", u(3)),
        format!("{},CRM-1,Home 1,P-1,Flat", u(1)),
    ];
    let header = "user_id,external_user_id,building_name,property_id,property_type\n";
    let csv = h.write("users.csv", format!("{header}{}\n", rows.join("\n")));
    let report = h.path("report.csv");
    let out = h
        .run(&csv, &["--report", report.to_str().expect("utf-8")])
        .await;
    h.expect_code(&out, 1);
    let text = std::fs::read_to_string(&report).expect("report");
    let state_of = |line: &str| {
        let row = text.lines().find(|l| l.starts_with(&format!("{line},")));
        row.unwrap_or_else(|| panic!("no line {line} in {text}"))
            .to_owned()
    };
    assert!(state_of("3").contains(",duplicate,"), "{text}");
    // Line 9 equals line 4, but line 5 already put that row in conflict.
    for line in ["4", "5", "6", "7", "9"] {
        let row = state_of(line);
        assert!(
            row.contains(",conflict,") && row.contains("none is sent"),
            "{text}"
        );
    }
    let buildings = h.state().building_map();
    let names: BTreeSet<String> = buildings.keys().map(|(_, name)| name.clone()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["Home 0".to_owned(), "Home 3".to_owned()]),
        "only the rows without a conflict were sent"
    );

    let agreed = [&rows[0], &rows[2], &rows[4], &rows[6]]
        .map(|r| r.as_str())
        .join("\n");
    let fixed = h.write("fixed.csv", format!("{header}{agreed}\n"));
    h.expect_code(&h.run(&fixed, &[]).await, 0);
    assert_eq!(h.state().building_map().len(), 4);
    h.assert_no_duplicates_and_map_matches();
}

/// The documented way to fix failed rows: export them, fix them, feed them back with
/// `--only-failed`. Fixing the user_id makes a new row, which `--only-failed` leaves: it
/// says so and names the way on (it was silent, exit 0), and that way onboards it. A full
/// export fed to `--only-failed`, with no new row, gets no such warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_fixed_into_a_new_row_is_named_by_only_failed_and_onboarded_by_a_plain_run() {
    let h = Harness::with_users(3).await;
    let rows = [
        line(user(0), "CRM-0", "Home 0"),
        line(user(1), "CRM-1", "Home 1"),
        line(UNKNOWN_USER, "CRM-2", "Home 2"),
    ];
    let csv = h.write("users.csv", format!("{HEADER}{}", rows.concat()));
    h.expect_code(&h.run(&csv, &[]).await, 1);
    let again = h.run(&csv, &["--only-failed"]).await;
    assert!(
        !again.stderr.contains("new to the checkpoint"),
        "{}",
        again.stderr
    );

    let failed = h.export(&["--state", "failed"]).await.stdout;
    let fixed = failed.replace(&UNKNOWN_USER.to_string(), &user(2).to_string());
    assert_ne!(fixed, failed, "the failed row is exported: {failed}");
    let to_fix = h.write("to-fix.csv", fixed);
    let out = h.run(&to_fix, &["--only-failed"]).await;
    h.expect_code(&out, 0);
    assert!(
        out.stderr
            .contains("1 rows of the input are new to the checkpoint")
            && out.stderr.contains("run without --only-failed"),
        "{}",
        out.stderr
    );
    assert!(h.state().buildings.get(&user(2)).is_none_or(Vec::is_empty));

    let out = h.run(&to_fix, &["--max-vanished", "100%"]).await;
    h.expect_code(&out, 0);
    assert_eq!(h.state().buildings.get(&user(2)).map(Vec::len), Some(1));
    h.assert_no_duplicates_and_map_matches();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_summary_keeps_its_field_names() {
    let h = Harness::with_users(2).await;
    let csv = h.write("users.csv", report_csv());
    let out = h.run(&csv, &["--json"]).await;
    h.expect_code(&out, 1);
    let value = summary(&out);
    for volatile in ["/duration_secs", "/rate/effective", "/rate/achieved"] {
        let field = value.pointer(volatile).expect(volatile);
        assert!(
            field.as_f64().is_some_and(|v| v >= 0.0),
            "{volatile}: {field}"
        );
    }
    // Redact the printed text, not a re-serialized value, so the field order is checked too.
    let text: String = out
        .stdout
        .lines()
        .map(|l| {
            let volatile = ["\"duration_secs\": ", "\"effective\": ", "\"achieved\": "]
                .iter()
                .find(|key| l.trim_start().starts_with(**key));
            match volatile {
                Some(key) => {
                    let comma = if l.ends_with(',') { "," } else { "" };
                    format!(
                        "{}{key}\"<redacted>\"{comma}\n",
                        &l[..l.find('"').expect("key")]
                    )
                }
                None => format!("{l}\n"),
            }
        })
        .collect();
    let text = redact_dir(&h, &text);
    let expected = r#"{
  "summary_version": 1,
  "outcome": "completed_with_failures",
  "exit_code": 1,
  "abort_reason": null,
  "input": "<dir>/users.csv",
  "checkpoint": "<dir>/checkpoint.sqlite",
  "run_id": 1,
  "duration_secs": "<redacted>",
  "rows": {
    "read": 5,
    "valid": 3,
    "invalid": 1,
    "duplicates": 1,
    "created": 2,
    "adopted": 0,
    "updated": 0,
    "buildings_updated": 0,
    "adopted_existing": 0,
    "user_only": 0,
    "skipped_done": 0,
    "skipped_failed": 0,
    "skipped_not_selected": 0,
    "failed_permanent": 1,
    "failed_transient": 0,
    "unresolved": 0,
    "users_created": 0,
    "users_found": 0,
    "users_adopted": 0,
    "failed": 1,
    "not_processed": 0,
    "vanished": 0
  },
  "plan": null,
  "requests": {
    "total": 6,
    "by_status": {
      "200": 3,
      "201": 2,
      "404": 1
    }
  },
  "rate": {
    "limit": 5000.0,
    "effective": "<redacted>",
    "achieved": "<redacted>"
  },
  "new_customers_checked_by": "none",
  "failures": [
    {
      "state": "failed",
      "cause": "HTTP 404",
      "count": 1,
      "lines": [
        6
      ],
      "example": "{..}"
    },
    {
      "state": "invalid",
      "cause": "column user_id",
      "count": 1,
      "lines": [
        5
      ],
      "example": "column user_id: value \"12345\" is not a UUID{..}"
    }
  ]
}"#;
    assert_lines_match(&text, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_summary_is_short_and_groups_failures_by_reason() {
    let h = Harness::with_users(5).await;
    let mut csv = generated_csv(5, 1);
    for i in 0..7u128 {
        let unknown = Uuid::from_u128(UNKNOWN_USER.as_u128() + i);
        csv.push_str(&line(unknown, &format!("CRM-x{i}"), "Home 0"));
    }
    csv.push_str("12345,CRM-bad,Home 0\n");
    let csv = h.write("users.csv", csv);
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 1);
    let expected = "\
13 rows read from <dir>/users.csv in {..}
         5  buildings created
         7  failed: fix the data (see --report)
         1  invalid: not sent (see --report)
not done, by reason:
       7 × failed (HTTP 404) — lines 7, 8, 9, 10, 11, …
           e.g. line 7: {..}
       1 × invalid (column user_id) — line 14
           e.g. line 14: column user_id: value \"12345\" is not a UUID{..}
requests: 18 (200: 6, 201: 5, 404: 7){..} · rate limit 5000 req/s, effective {..}
checkpoint: <dir>/checkpoint.sqlite · exit code 1
";
    assert_lines_match(&redact_dir(&h, &out.stderr), expected);
}

// ---------------------------------------------------------------------------------------
// Richer rows
// ---------------------------------------------------------------------------------------

const RICH_HEADER: &str = "user_id,external_user_id,building_name,first_name,last_name,\
street_and_number,street_add_info,zip_code,town,country,latitude,longitude,email,\
property_type,occupant_type,space_heating,water_heating,property_size_m2,property_age,\
num_occupants,photovoltaic,building_street_and_number,building_street_add_info,\
building_town,building_zip_code,building_country\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_columns_reach_the_api_as_given_and_empty_cells_are_not_sent() {
    let h = Harness::with_users(3).await;
    let csv = format!(
        "{RICH_HEADER}\
{},CRM-0,Home,Anna,Huber,Hauptstraße 1,Stiege 2,1010,Wien,AT,48.2082,16.3738,anna@example.com,\
Detached,Young family,Heat pump,Gas boiler,120,35,4,yes,Gartenweg 3,Top 4,Graz,8010,AT\n\
{},CRM-1,Home,,,,,,,,,,,,,,,,,,,,,,,\n\
{},CRM-2,Home,Lukas,,,,,,,,,,semi-detached,retirees,,,,,0,no,,,,,\n",
        user(0),
        user(1),
        user(2)
    );
    let csv = h.write("rich.csv", csv);
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 0);
    let state = h.state();
    assert!(state.anomalies.is_empty(), "{:?}", state.anomalies);
    let user_fields = |i: u64| Value::Object(state.users[&user(i)].fields.clone());
    let building_fields = |i: u64| Value::Object(state.buildings[&user(i)][0].fields.clone());
    assert_eq!(
        user_fields(0),
        json!({
            "external_user_id": "CRM-0", "first_name": "Anna", "last_name": "Huber",
            "street_and_number": "Hauptstraße 1", "street_add_info": "Stiege 2",
            "zip_code": "1010", "town": "Wien", "country_iso2": "AT",
            "latitude": 48.2082, "longitude": 16.3738, "email": "anna@example.com"
        })
    );
    assert_eq!(
        building_fields(0),
        json!({
            "name": "Home", "property_type": "Detached", "occupant_type": "Young family",
            "space_heating": "Heat pump", "water_heating": "Gas boiler",
            "property_size_m2": 120, "property_age": 35, "num_occupants": 4,
            "photovoltaic": true, "street_and_number": "Gartenweg 3",
            "street_add_info": "Top 4", "town": "Graz", "zip_code": "8010", "country": "AT"
        })
    );
    assert_eq!(user_fields(1), json!({"external_user_id": "CRM-1"}));
    assert_eq!(building_fields(1), json!({"name": "Home"}));
    assert_eq!(
        user_fields(2),
        json!({"external_user_id": "CRM-2", "first_name": "Lukas"})
    );
    assert_eq!(
        building_fields(2),
        json!({
            "name": "Home", "property_type": "Semi-detached", "occupant_type": "Retirees",
            "num_occupants": 0, "photovoltaic": false
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_enum_values_are_rejected_with_line_and_column_before_any_call() {
    let h = Harness::with_users(4).await;
    let empty_tail = ",".repeat(23);
    let csv = format!(
        "{RICH_HEADER}\
{u0},CRM-0,Home{empty_tail}\n\
{u1},CRM-1,Home,,,,,,,,,,,Castle,,,,,,,,,,,,\n\
{u2},CRM-2,Home,,,,,,,,,,,,Aliens,,,,,,,,,,,\n\
{u3},CRM-3,Home,,,,,,,,,,,,,,,,,,maybe,,,,,\n",
        u0 = user(0),
        u1 = user(1),
        u2 = user(2),
        u3 = user(3),
    );
    let csv = h.write("rich.csv", csv);
    let out = h.run(&csv, &["--json"]).await;
    h.expect_code(&out, 1);
    let state = h.state();
    for i in 1..4 {
        assert!(
            state.log.iter().all(|e| e.user_id != Some(user(i))),
            "a request was sent for the invalid row of user {i}"
        );
    }
    assert!(
        state.buildings.contains_key(&user(0)),
        "the valid row proceeds"
    );
    for (line, column, value) in [
        (3, "property_type", "Castle"),
        (4, "occupant_type", "Aliens"),
        (5, "photovoltaic", "maybe"),
    ] {
        let expected = format!("line {line}: column {column}: value \"{value}\"");
        assert!(
            out.stderr.contains(&expected),
            "no {expected:?} in:\n{}",
            out.stderr
        );
    }
    assert_eq!(count(&summary(&out)["rows"], "/invalid"), 3);
}

// ---------------------------------------------------------------------------------------
// Small commands
// ---------------------------------------------------------------------------------------

/// The `Examples:` block of `<command> --help`, if any.
async fn help_examples(h: &Harness, command: &str) -> (String, Option<String>) {
    let out = exec(h, &[command, "--help"]).await;
    h.expect_code(&out, 0);
    let examples = out
        .stdout
        .split_once("Examples:\n")
        .map(|(_, e)| e.to_owned());
    (out.stdout, examples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_of_run_export_and_status_shows_examples() {
    let h = Harness::with_users(0).await;
    for command in ["run", "export", "status"] {
        let (help, examples) = help_examples(&h, command).await;
        assert!(
            examples.is_some_and(|e| e.contains(&format!("  podero-onboard {command} "))),
            "`{command} --help` shows no \"Examples:\" block:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_never_wraps_an_example_command_over_two_lines() {
    let h = Harness::with_users(0).await;
    for command in ["run", "export", "status"] {
        let (help, examples) = help_examples(&h, command).await;
        // An example is a command to copy. A line is a comment, a command, or the
        // continuation of a command ending in `\`.
        let mut continued = false;
        for example in examples.unwrap_or_default().lines() {
            assert!(
                continued || example.starts_with("  #") || example.starts_with("  podero-onboard "),
                "`{command} --help` breaks an example over two lines at {example:?}:\n{help}"
            );
            continued = example.ends_with('\\');
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_for_bash_complete_the_binary() {
    let h = Harness::with_users(0).await;
    let out = exec(&h, &["completions", "bash"]).await;
    h.expect_code(&out, 0);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("complete -F ") && l.ends_with(" podero-onboard")),
        "not a bash completion script for podero-onboard:\n{}",
        out.stdout
    );
}

/// `--report`, `--metrics-file` and `links --out` that name the checkpoint (however spelled),
/// a file beside it, the input or another output are refused before anything is opened:
/// `--report onboard.sqlite` once emptied a checkpoint, so the next run would have created
/// every building again, and `--report export.csv` the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_naming_the_checkpoint_or_the_input_is_refused_and_destroys_nothing() {
    let h = Harness::with_users(5).await;
    let csv = h.write("users.csv", generated_csv(5, 1));
    h.expect_code(&h.run(&csv, &[]).await, 0);
    let checkpoint = h.checkpoint();
    let link = h.path("link.sqlite");
    std::os::unix::fs::symlink(&checkpoint, &link).expect("symlink to the checkpoint");
    let read = |path: &std::path::Path| std::fs::read(path).expect("read");
    let (checkpoint_bytes, csv_bytes) = (read(&checkpoint), read(&csv));
    let requests = h.state().log.len();

    let ckpt = checkpoint.to_str().expect("utf-8");
    let wal = format!("{ckpt}-wal");
    let cases: [(&[&str], &str, &str); 6] = [
        (&["--report", ckpt], "--report", "is the checkpoint"),
        (&["--report", "./users.csv"], "--report", "is the input CSV"),
        (
            &["--report", link.to_str().expect("utf-8")],
            "--report",
            "is the checkpoint",
        ),
        (
            &["--metrics-file", ckpt],
            "--metrics-file",
            "is the checkpoint",
        ),
        (
            &["--report", &wal],
            "--report",
            "is the checkpoint's -wal file",
        ),
        (
            &["--report", "r.csv", "--metrics-file", "./r.csv"],
            "--metrics-file",
            "is the --report file",
        ),
    ];
    for (extra, flag, what) in cases {
        let out = h.run(&csv, extra).await;
        h.expect_code(&out, 2);
        assert!(
            out.stderr.contains(flag)
                && out.stderr.contains(what)
                && out.stderr.contains("a path of its own"),
            "{extra:?}: {}",
            out.stderr
        );
    }
    let out = h.links(&csv, &["--out", ckpt]).await;
    h.expect_code(&out, 2);
    assert!(out.stderr.contains("--out"), "{}", out.stderr);

    assert!(
        read(&checkpoint) == checkpoint_bytes,
        "the checkpoint changed"
    );
    assert!(read(&csv) == csv_bytes, "the input changed");
    assert_eq!(
        h.state().log.len(),
        requests,
        "a refused command sent requests"
    );
    assert!(
        !h.path("r.csv").exists(),
        "a refused run created its report"
    );
    let again = h.run(&csv, &[]).await;
    h.expect_code(&again, 0);
    assert_eq!(
        h.state().api_requests(),
        10,
        "the checkpoint still knows every row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_rows_per_state_and_the_last_runs() {
    let h = Harness::with_users(3).await;
    let csv = h.write(
        "users.csv",
        generated_csv(3, 1) + &line(UNKNOWN_USER, "CRM-404", "Home 0") + "12345,CRM-bad,Home 0\n",
    );
    h.expect_code(&h.run(&csv, &["--dry-run"]).await, 1);
    h.expect_code(&h.run(&csv, &[]).await, 1);
    let checkpoint = checkpoint_arg(&h);
    let out = exec(&h, &["status", "--checkpoint", &checkpoint]).await;
    h.expect_code(&out, 0);
    let text = redact_dir(&h, &out.stdout);
    let expected = format!(
        "\
checkpoint <dir>/checkpoint.sqlite
  organization {org}
  API          {base}
rows by state:
         3  done
         1  failed
invalid rows in the last run: 1 (the run's --report lists them)
last runs:
  #2 run      <dir>/users.csv · 5 rows · started {{..}} · took {{..}} · exit code 1
  #1 dry-run  <dir>/users.csv · 5 rows · started {{..}} · took {{..}} · exit code 1
",
        org = h.sandbox.org_id(),
        base = h.sandbox.base_url()
    );
    assert_lines_match(&text, &expected);

    let out = exec(&h, &["status", "--checkpoint", &checkpoint, "--json"]).await;
    h.expect_code(&out, 0);
    let value: Value = serde_json::from_str(&out.stdout).expect("status --json is JSON");
    assert_eq!(value["rows_by_state"], json!({"done": 3, "failed": 1}));
    assert_eq!(value["invalid_in_last_run"], 1);
    let runs = value["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["command"], "run");
    assert_eq!(runs[0]["exit_code"], 1);
    assert_eq!(runs[1]["command"], "dry-run");
}
