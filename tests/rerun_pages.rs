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

/// Stages `csv` into the harness's checkpoint in-process, as a run does, and returns the
/// staging counts and the whole plan (every page).
fn stage_and_page(
    h: &Harness,
    csv: &std::path::Path,
) -> (podero_onboard::checkpoint::stage::Staged, Vec<String>) {
    use podero_onboard::checkpoint::{Checkpoint, Identity};
    use podero_onboard::input::{self, InputOptions, Source};
    let identity = Identity {
        org_id: h.sandbox.org_id(),
        base_url: h.sandbox.base_url(),
    };
    let mut checkpoint = Checkpoint::open_for_run(&h.checkpoint(), &identity).expect("open");
    let run = checkpoint.begin_run("dry-run", "test").expect("begin run");
    let reader = input::open(&InputOptions::new(Source::Path(csv.to_owned()))).expect("input");
    let staged = checkpoint
        .stage(
            run,
            reader,
            podero_onboard::commands::run::plan::Options::default(),
        )
        .expect("stage")
        .expect("read");
    let (mut planned, mut after) = (Vec::new(), None);
    loop {
        let page = checkpoint.plan_page(after.as_ref(), 512).expect("page");
        planned.extend(page.iter().map(|row| row.external_user_id.clone()));
        match page.last() {
            Some(last) => after = Some((last.user_id.to_string(), last.row_key.clone())),
            None => break,
        }
    }
    (staged, planned)
}

/// One pass (issue 13): skips are decided while staging, so the plan pages of a done
/// re-run are empty and those of a nightly sync hold only the changed row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_pages_hold_only_rows_with_work_after_staging() {
    let h = Harness::with_users(USERS).await;
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    h.expect_code(&h.run(&csv, &[]).await, 0);
    let (staged, planned) = stage_and_page(&h, &csv);
    assert_eq!(planned, Vec::<String>::new(), "a done re-run pages no row");
    assert_eq!(staged.skipped.skipped_done, USERS as u64);
    assert_eq!(
        staged.valid, USERS as u64,
        "skipped rows stay staged (report)"
    );
    let changed = 1200;
    let nightly = h.write(
        "nightly.csv",
        generated_csv(USERS, 1)
            .replace(&format!(",CRM-{changed},"), &format!(",CRM-{changed}-v2,")),
    );
    let (staged, planned) = stage_and_page(&h, &nightly);
    assert_eq!(planned, vec![format!("CRM-{changed}-v2")]);
    assert_eq!(staged.skipped.skipped_done, USERS as u64 - 1);
}
