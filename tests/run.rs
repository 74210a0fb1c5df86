//! The onboarding run against the simulator over loopback (issue: the product).

mod common;

use common::{Harness, generated_csv, states};
use podero_onboard::sandbox;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboards_500_rows_and_export_equals_the_simulator() {
    let h = Harness::with_users(400).await;
    let csv = h.write(
        "users.csv",
        generated_csv(400, 1)
            + &generated_csv(100, 2)
                .lines()
                .skip(1)
                .filter(|l| l.ends_with("Home 1"))
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
    );
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 0);
    let state = h.state();
    assert_eq!(state.buildings.values().map(Vec::len).sum::<usize>(), 500);
    for i in 0..400u64 {
        let user = &state.users[&sandbox::generated_user_id(i)];
        assert_eq!(
            user.external_user_id.as_deref(),
            Some(format!("CRM-{i}").as_str())
        );
    }
    h.assert_no_duplicates_and_map_matches();
    let export = h.export(&[]).await;
    let mut exported: Vec<(String, String, String)> = export
        .stdout
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            (
                cells[0].to_owned(),
                cells[2].to_owned(),
                cells[3].to_owned(),
            )
        })
        .collect();
    exported.sort();
    let mut server: Vec<(String, String, String)> = state
        .building_map()
        .into_iter()
        .map(|((user, name), ids)| (user.to_string(), name, ids[0].to_string()))
        .collect();
    server.sort();
    assert_eq!(exported, server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_of_the_same_csv_makes_zero_api_calls() {
    let h = Harness::with_users(50).await;
    let csv = h.write("users.csv", generated_csv(50, 2));
    h.expect_code(&h.run(&csv, &[]).await, 0);
    let before = h.state().api_requests();
    let again = h.run(&csv, &[]).await;
    h.expect_code(&again, 0);
    assert_eq!(
        h.state().api_requests(),
        before,
        "a done row must cost no call"
    );
    assert!(
        again.stderr.contains("100  already done"),
        "{}",
        again.stderr
    );
    assert_eq!(states(&h.checkpoint_rows()).get("done"), Some(&100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_1_when_some_rows_fail_and_the_rest_are_done() {
    let h = Harness::with_users(3).await;
    let unknown = uuid::Uuid::from_u128(0xdead_beef);
    let csv = h.write(
        "users.csv",
        generated_csv(3, 1) + &format!("{unknown},CRM-x,Home 0\n"),
    );
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 1);
    let rows = h.checkpoint_rows();
    assert_eq!(states(&rows).get("done"), Some(&3));
    let failed = rows
        .iter()
        .find(|r| r.state == "failed")
        .expect("a failed row");
    assert_eq!(failed.http_status, Some(404));
    assert!(out.stderr.contains("Not Found"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_2_for_configuration_errors_before_any_request() {
    let h = Harness::with_users(1).await;
    let csv = h.write("users.csv", generated_csv(1, 1));
    let cases: [(&str, Vec<String>, Option<&str>); 4] = [
        (
            "bad org",
            h.run_args(&csv, &["--org-id", "not-a-uuid"]),
            None,
        ),
        ("bad rate", h.run_args(&csv, &["--rate", "0"]), None),
        (
            "plain http to a remote host",
            h.run_args(&csv, &["--base-url", "http://example.com"]),
            None,
        ),
        (
            "no credentials",
            h.run_args(&csv, &[]),
            Some("PODERO_CLIENT_ID"),
        ),
    ];
    for (name, args, remove) in cases {
        let strs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = h.command(&strs);
        if let Some(var) = remove {
            cmd.env_remove(var).env_remove("PODERO_CLIENT_SECRET");
        }
        let out = h.exec_with(cmd).await;
        assert_eq!(out.code, 2, "{name}: {}", out.stderr);
        assert!(out.stderr.starts_with("error: "), "{name}: {}", out.stderr);
    }
    assert_eq!(
        h.state().requests.values().sum::<u64>(),
        0,
        "nothing may be sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_3_when_the_credentials_are_refused_and_no_api_call_is_made() {
    let h = Harness::with_users(2).await;
    let csv = h.write("users.csv", generated_csv(2, 1));
    let args = h.run_args(&csv, &[]);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = h.command(&strs);
    cmd.env("PODERO_CLIENT_SECRET", "wrong-secret");
    let out = h.exec_with(cmd).await;
    h.expect_code(&out, 3);
    assert!(
        out.stderr.contains("PODERO_CLIENT_SECRET"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("wrong-secret"),
        "the secret leaked: {}",
        out.stderr
    );
    assert_eq!(h.state().api_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_130_on_sigterm_and_the_rerun_finishes_without_recreating_buildings() {
    let h = Harness::with_users(60).await;
    let csv = h.write("users.csv", generated_csv(60, 1));
    let args = h.run_args(&csv, &["--rate", "40"]);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = h.command(&strs).spawn().expect("spawn");
    let pid = child.id().expect("pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while h.state().count("create_building") < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    let out = child.wait_with_output().await.expect("wait");
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not processed"), "{stderr}");
    let created_before = h.state().count("create_building");
    assert!(
        created_before < 60,
        "the stop came too late to test anything"
    );
    let again = h.run(&csv, &[]).await;
    h.expect_code(&again, 0);
    h.assert_no_duplicates_and_map_matches();
    assert_eq!(
        h.state().buildings.values().map(Vec::len).sum::<usize>(),
        60
    );
    assert_eq!(
        h.state().count("create_building"),
        60,
        "finished buildings were created again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_from_the_repository_and_suggests_next_commands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = tokio::process::Command::new(common::BIN)
        .args(["demo", "--rate", "1000", "--dir"])
        .arg(dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .expect("demo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("buildings created"), "{stderr}");
    assert!(stderr.contains("0 duplicates"), "{stderr}");
    assert!(stderr.contains("status --checkpoint"), "{stderr}");
    assert!(dir.path().join("checkpoint.sqlite").exists());
    let report = std::fs::read_to_string(dir.path().join("report.csv")).expect("report");
    assert_eq!(
        report.lines().count(),
        44,
        "header + one line per input line"
    );
}
