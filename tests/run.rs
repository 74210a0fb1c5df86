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
    let export = h
        .exec(&[
            "export".into(),
            "--checkpoint".into(),
            h.checkpoint().display().to_string(),
        ])
        .await;
    h.expect_code(&export, 0);
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
