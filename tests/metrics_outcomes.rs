//! `--metrics-file` row outcomes equal the `--json` summary's,
//! including the outcomes the nightly sync added (user-only rows, building updates,
//! adopted existing buildings), so the outcomes of a run add up to the rows it read.

mod common;

use std::collections::BTreeMap;

use common::Harness;
use podero_onboard::sandbox;

/// `outcome -> value` of the `podero_onboard_last_run_rows` samples.
fn run_rows(text: &str) -> BTreeMap<String, u64> {
    let prefix = "podero_onboard_last_run_rows{outcome=\"";
    text.lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .filter_map(|rest| rest.split_once("\"} "))
        .map(|(outcome, value)| (outcome.to_owned(), value.parse::<f64>().unwrap() as u64))
        .collect()
}

/// The first value of `key` anywhere in `json`.
fn find(json: &serde_json::Value, key: &str) -> Option<u64> {
    match json {
        serde_json::Value::Object(map) => map
            .get(key)
            .and_then(serde_json::Value::as_u64)
            .or_else(|| map.values().find_map(|v| find(v, key))),
        serde_json::Value::Array(items) => items.iter().find_map(|v| find(v, key)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_only_rows_are_in_the_metrics_file_and_the_outcomes_add_up() {
    let h = Harness::with_users(3).await;
    let mut csv = String::from("user_id,external_user_id,building_name\n");
    csv.push_str(&format!("{},CRM-0,Home 0\n", sandbox::generated_user_id(0)));
    csv.push_str(&format!("{},CRM-1,\n", sandbox::generated_user_id(1)));
    csv.push_str(&format!("{},CRM-2,\n", sandbox::generated_user_id(2)));
    let csv = h.write("users.csv", csv);
    let prom = h.path("podero.prom");
    let out = h
        .run(&csv, &["--json", "--metrics-file", prom.to_str().unwrap()])
        .await;
    h.expect_code(&out, 0);
    let summary: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(find(&summary, "user_only"), Some(2), "{summary}");
    let buildings: usize = h.state().buildings.values().map(Vec::len).sum();
    assert_eq!(buildings, 1, "one building only");
    let rows = run_rows(&std::fs::read_to_string(&prom).unwrap());
    assert_eq!(rows.get("user_only"), Some(&2), "{rows:?}");
    assert_eq!(rows.get("created"), Some(&1), "{rows:?}");
    let outcomes: u64 = rows
        .iter()
        .filter(|(outcome, _)| *outcome != "read")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        outcomes, rows["read"],
        "outcomes add up to the rows read: {rows:?}"
    );
}
