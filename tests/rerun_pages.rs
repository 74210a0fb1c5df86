//! Re-runs over a checkpoint larger than one plan page (pipeline::PAGE_SIZE = 512 rows):
//! found by the benchmark (issue 7), where a re-run over 10k done rows stopped after 512.

mod common;

use common::{Harness, generated_csv, states};
use podero_onboard::sandbox;

const USERS: usize = 1300; // three plan pages: 512 + 512 + 276

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_over_three_pages_of_done_rows_skips_them_all_with_zero_calls() {
    let h = Harness::with_users(USERS).await;
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    h.expect_code(&h.run(&csv, &[]).await, 0);
    let before = h.state().api_requests();
    let again = h.run(&csv, &["--json"]).await;
    h.expect_code(&again, 0);
    assert_eq!(
        h.state().api_requests(),
        before,
        "a done row must cost no call"
    );
    let summary: serde_json::Value = serde_json::from_str(&again.stdout).expect("JSON summary");
    assert_eq!(summary["rows"]["skipped_done"], USERS as u64, "{summary:#}");
    assert_eq!(summary["rows"]["not_processed"], 0, "{summary:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nightly_sync_updates_a_changed_user_that_follows_a_page_of_unchanged_ones() {
    let h = Harness::with_users(USERS).await;
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    h.expect_code(&h.run(&csv, &[]).await, 0);
    let changed = 1200;
    let nightly = h.write(
        "nightly.csv",
        generated_csv(USERS, 1)
            .replace(&format!(",CRM-{changed},"), &format!(",CRM-{changed}-v2,")),
    );
    let out = h.run(&nightly, &[]).await;
    h.expect_code(&out, 0);
    let user = &h.state().users[&sandbox::generated_user_id(changed as u64)];
    assert_eq!(
        user.external_user_id.as_deref(),
        Some(format!("CRM-{changed}-v2").as_str()),
        "the changed user on the third page must be updated"
    );
    assert_eq!(states(&h.checkpoint_rows()).get("done"), Some(&USERS));
}
