//! `run --metrics-file` (issue 14): the file parses as Prometheus text (a strict parser
//! below, and `promtool`), its values match the run and the simulator, its row outcomes
//! equal the `--json` summary's and add up to the rows read (user-only rows, building
//! updates, adoptions), the last-success time survives failed runs, and an unwritable
//! path stops the run before any request.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Harness, generated_csv};
use podero_onboard::sandbox;
use uuid::Uuid;

const LAST_SUCCESS: &str = "podero_onboard_last_success_timestamp_seconds";

/// Parses the Prometheus text exposition format strictly: every sample belongs to a
/// family declared by `# TYPE` before it (once), names and label names are valid, label
/// values are quoted with the format's escapes, values are floats, no series appears
/// twice, and the file ends with a newline. Returns `name{labels}` → value.
fn parse_prometheus(text: &str) -> Result<BTreeMap<String, f64>, String> {
    if !text.ends_with('\n') {
        return Err("the file does not end with a newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let fail = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    check_name(name).map_err(|e| fail(&e))?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(fail("unknown type"));
                    }
                    if samples.keys().any(|k: &String| family_of(k) == name) {
                        return Err(fail("TYPE after samples of its family"));
                    }
                    if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                        return Err(fail("second TYPE for the family"));
                    }
                }
                (Some("HELP"), Some(name), _) => check_name(name).map_err(|e| fail(&e))?,
                _ => {}
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let (series, value) = split_sample(line).map_err(|e| fail(&e))?;
        let name = family_of(&series);
        if !types.contains_key(name) {
            return Err(fail("sample without a TYPE line"));
        }
        if samples.insert(series, value).is_some() {
            return Err(fail("duplicate series"));
        }
    }
    Ok(samples)
}

fn family_of(series: &str) -> &str {
    series.split('{').next().unwrap_or(series)
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("invalid metric name {name:?}"))
    }
}

/// `name{a="x",b="y"} value` → (`name{a="x",b="y"}`, value), checking the labels.
fn split_sample(line: &str) -> Result<(String, f64), String> {
    let (series, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}').ok_or("unclosed label set")?;
            check_name(&line[..open])?;
            check_labels(&line[open + 1..close])?;
            (line[..=close].to_owned(), &line[close + 1..])
        }
        None => {
            let space = line.find(' ').ok_or("no value")?;
            check_name(&line[..space])?;
            (line[..space].to_owned(), &line[space..])
        }
    };
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|_| format!("bad value {v:?}"))?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("bad timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok((series, value))
}

fn check_labels(mut labels: &str) -> Result<(), String> {
    while !labels.is_empty() {
        let eq = labels.find('=').ok_or("label without =")?;
        let name = &labels[..eq];
        if name.is_empty()
            || name.starts_with(|c: char| c.is_ascii_digit())
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!("invalid label name {name:?}"));
        }
        let rest = labels[eq + 1..]
            .strip_prefix('"')
            .ok_or("unquoted label value")?;
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\' | '"' | 'n')) => {}
                    _ => return Err("bad escape in label value".into()),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) | None => return Err("unterminated label value".into()),
                Some(_) => {}
            }
        };
        labels = &rest[end + 1..];
        labels = labels.strip_prefix(',').unwrap_or(labels);
    }
    Ok(())
}

fn read_metrics(path: &Path) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(path).expect("metrics file written");
    parse_prometheus(&text).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"))
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn the_parser_refuses_what_prometheus_refuses() {
    let ok = "# HELP a_b x\n# TYPE a_b gauge\na_b{s=\"1\\\"\"} 2\na_b{s=\"2\"} 3.5\n";
    assert_eq!(parse_prometheus(ok).unwrap().len(), 2);
    for bad in [
        "a 1\n",                                   // no TYPE
        "# TYPE a gauge\na 1",                     // no final newline
        "# TYPE a gauge\na{s=1} 1\n",              // unquoted label value
        "# TYPE a gauge\na 1\na 2\n",              // duplicate series
        "# TYPE a gauge\na one\n",                 // bad value
        "# TYPE 1a gauge\n1a 1\n",                 // bad name
        "# TYPE a gauge\na{s=\"x} 1\n",            // unterminated value
        "# TYPE a gauge\n# TYPE a counter\na 1\n", // two TYPEs
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_file_parses_and_matches_the_run_and_the_simulator() {
    let h = Harness::with_users(18).await;
    // 18 known users and 2 the server does not know (404: failed).
    let mut csv = generated_csv(18, 1);
    for i in 0..2u128 {
        csv.push_str(&format!(
            "{},CRM-x{i},Home 0\n",
            Uuid::from_u128(0xdead_0000 + i)
        ));
    }
    let csv = h.write("users.csv", csv);
    let prom = h.path("podero.prom");
    let before = now();
    let out = h
        .run(&csv, &["--metrics-file", prom.to_str().unwrap()])
        .await;
    h.expect_code(&out, 1);
    let m = read_metrics(&prom);
    assert_eq!(m["podero_onboard_rows{state=\"done\"}"], 18.0);
    assert_eq!(m["podero_onboard_rows{state=\"failed\"}"], 2.0);
    assert_eq!(m["podero_onboard_rows{state=\"pending\"}"], 0.0);
    assert_eq!(m["podero_onboard_last_run_rows{outcome=\"read\"}"], 20.0);
    assert_eq!(m["podero_onboard_last_run_rows{outcome=\"created\"}"], 18.0);
    assert_eq!(m["podero_onboard_last_run_rows{outcome=\"failed\"}"], 2.0);
    assert_eq!(m["podero_onboard_last_run_exit_code"], 1.0);
    assert_eq!(m[LAST_SUCCESS], 0.0, "never succeeded yet");
    let ran_at = m["podero_onboard_last_run_timestamp_seconds"];
    assert!(ran_at >= before.floor() && ran_at <= now(), "{ran_at}");
    assert!(m["podero_onboard_last_run_duration_seconds"] > 0.0);
    // Requests by status: what the simulator answered, token requests included.
    let server: BTreeMap<String, f64> = h
        .state()
        .statuses
        .iter()
        .map(|(status, n)| {
            (
                format!("podero_onboard_last_run_requests{{status=\"{status}\"}}"),
                *n as f64,
            )
        })
        .collect();
    let client: BTreeMap<String, f64> = m
        .iter()
        .filter(|(k, _)| k.starts_with("podero_onboard_last_run_requests"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(client, server);
    assert_eq!(
        server["podero_onboard_last_run_requests{status=\"404\"}"],
        2.0
    );
    let leftovers: Vec<_> = std::fs::read_dir(h.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_success_survives_failed_runs() {
    let h = Harness::with_users(5).await;
    let csv = h.write("users.csv", generated_csv(5, 1));
    let prom = h.path("podero.prom");
    let metrics_flag = ["--metrics-file", prom.to_str().unwrap()];
    let out = h.run(&csv, &metrics_flag).await;
    h.expect_code(&out, 0);
    let first = read_metrics(&prom);
    let success = first[LAST_SUCCESS];
    assert_eq!(success, first["podero_onboard_last_run_timestamp_seconds"]);
    assert!(success > 0.0);
    // Wrong credentials: the run stops before its pipeline (exit 3).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut cmd = h.command(&[]);
    cmd.env("PODERO_CLIENT_SECRET", "wrong")
        .args(h.run_args(&csv, &metrics_flag));
    let out = h.exec_with(cmd).await;
    h.expect_code(&out, 3);
    let failed = read_metrics(&prom);
    assert_eq!(failed["podero_onboard_last_run_exit_code"], 3.0);
    assert_eq!(failed[LAST_SUCCESS], success, "carried over");
    assert!(failed["podero_onboard_last_run_timestamp_seconds"] > success);
    assert_eq!(failed["podero_onboard_rows{state=\"done\"}"], 5.0);
    // Even with the metrics file gone, the checkpoint still knows the last success.
    std::fs::remove_file(&prom).unwrap();
    let out = h
        .exec_with({
            let mut cmd = h.command(&[]);
            cmd.env("PODERO_CLIENT_SECRET", "wrong")
                .args(h.run_args(&csv, &metrics_flag));
            cmd
        })
        .await;
    h.expect_code(&out, 3);
    assert_eq!(read_metrics(&prom)[LAST_SUCCESS], success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_metrics_path_stops_the_run_before_any_request() {
    let h = Harness::new(sandbox::Builder::new().generated_users(3)).await;
    let csv = h.write("users.csv", generated_csv(3, 1));
    let out = h
        .run(&csv, &["--metrics-file", "/nonexistent-dir/podero.prom"])
        .await;
    h.expect_code(&out, 2);
    assert!(
        out.stderr
            .contains("--metrics-file /nonexistent-dir/podero.prom"),
        "{}",
        out.stderr
    );
    assert_eq!(h.state().tokens_issued, 0);
    assert_eq!(h.state().requests.values().sum::<u64>(), 0);
    assert!(
        !h.checkpoint().exists(),
        "nothing was written, the checkpoint included"
    );
}

/// `promtool`, Prometheus' own checker (Debian: `prometheus`; `.ci/run` installs it).
fn promtool() -> Option<&'static str> {
    let found = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    common::require(found, "promtool (apt-get install prometheus)").then_some("promtool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_pass_promtool_check_metrics() {
    let Some(promtool) = promtool() else { return };
    let h = Harness::with_users(3).await;
    let csv = h.write("users.csv", generated_csv(3, 1));
    let prom = h.path("podero.prom");
    let out = h
        .run(&csv, &["--metrics-file", prom.to_str().unwrap()])
        .await;
    h.expect_code(&out, 0);
    let check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&prom).unwrap())
        .output()
        .unwrap();
    assert!(
        check.status.success() && check.stdout.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// The alert rule shown in docs/operations.md fires after 36 h without a success, not
/// before: checked with `promtool test rules` on a series stuck at "never".
#[test]
fn the_documented_alert_fires_after_36_hours_in_promtool() {
    let Some(promtool) = promtool() else { return };
    let docs = include_str!("../docs/operations.md");
    let rules: String = docs
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a yaml block in docs/operations.md")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    let unit_test = format!(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    \
         input_series:\n      - series: {LAST_SUCCESS}\n        values: '0+0x3000'\n    \
         alert_rule_test:\n      - eval_time: 30h\n        alertname: PoderoOnboardSyncNotSuccessful\n        \
         exp_alerts: []\n      - eval_time: 40h\n        alertname: PoderoOnboardSyncNotSuccessful\n        \
         exp_alerts:\n          - exp_labels: {{severity: warning}}\n            exp_annotations:\n              \
         summary: \"Podero onboarding has not completed successfully for 36 h\"\n              \
         description: \"See journalctl -u podero-onboard.service, podero_onboard_last_run_exit_code and the report in /var/lib/podero-onboard.\"\n"
    );
    std::fs::write(dir.path().join("test.yml"), unit_test).unwrap();
    let out = std::process::Command::new(promtool)
        .args(["test", "rules", "test.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `outcome -> value` of the `podero_onboard_last_run_rows` samples.
fn run_rows(path: &Path) -> BTreeMap<String, u64> {
    read_metrics(path)
        .into_iter()
        .filter_map(|(series, value)| {
            let outcome = series
                .strip_prefix("podero_onboard_last_run_rows{outcome=\"")?
                .strip_suffix("\"}")?;
            Some((outcome.to_owned(), value as u64))
        })
        .collect()
}

/// Runs `csv` with `--json` and a metrics file and checks that every row outcome of the
/// metrics file equals the summary's field of that name, and that they add up to the
/// rows read. Returns the outcomes.
async fn outcomes_of_run(
    h: &Harness,
    csv: &Path,
    extra: &[&str],
    code: i32,
) -> BTreeMap<String, u64> {
    let prom = h.path("podero.prom");
    let mut flags = vec!["--json", "--metrics-file", prom.to_str().unwrap()];
    flags.extend_from_slice(extra);
    let out = h.run(csv, &flags).await;
    h.expect_code(&out, code);
    let summary: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let rows = run_rows(&prom);
    for (outcome, value) in &rows {
        assert_eq!(
            summary["rows"][outcome].as_u64(),
            Some(*value),
            "metrics outcome {outcome} differs from the summary: {rows:?}\n{summary:#}"
        );
    }
    // `read` is the total; every other outcome is a part of it.
    let outcomes: u64 = rows
        .iter()
        .filter(|(outcome, _)| *outcome != "read")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        outcomes, rows["read"],
        "outcomes add up to the rows read: {rows:?}"
    );
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_only_rows_are_in_the_metrics_file_and_the_outcomes_add_up() {
    let h = Harness::with_users(3).await;
    let mut csv = String::from("user_id,external_user_id,building_name\n");
    csv.push_str(&format!("{},CRM-0,Home 0\n", sandbox::generated_user_id(0)));
    csv.push_str(&format!("{},CRM-1,\n", sandbox::generated_user_id(1)));
    csv.push_str(&format!("{},CRM-2,\n", sandbox::generated_user_id(2)));
    let csv = h.write("users.csv", csv);
    let rows = outcomes_of_run(&h, &csv, &[], 0).await;
    assert_eq!(rows.get("user_only"), Some(&2), "{rows:?}");
    assert_eq!(rows.get("created"), Some(&1), "{rows:?}");
    let buildings: usize = h.state().buildings.values().map(Vec::len).sum();
    assert_eq!(buildings, 1, "one building only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn building_updates_and_adoptions_are_counted_in_the_metrics_file() {
    let user = sandbox::generated_user_id;
    let mut home = serde_json::Map::new();
    home.insert("name".into(), "Home".into());
    // User 2 created "Home" in the app already: --adopt-existing takes it over.
    let h = Harness::new(
        sandbox::Builder::new()
            .generated_users(3)
            .existing_building(user(2), home),
    )
    .await;
    let file = |kind: &str| {
        let mut csv = String::from("user_id,external_user_id,building_name,property_type\n");
        for i in 0..2 {
            csv.push_str(&format!("{},CRM-{i},Home,{kind}\n", user(i)));
        }
        csv
    };
    let first = h.write("first.csv", file("Detached"));
    let rows = outcomes_of_run(&h, &first, &[], 0).await;
    assert_eq!(rows.get("created"), Some(&2), "{rows:?}");
    // The next night: both buildings changed, and user 2's row is new.
    let second = file("Flat") + &format!("{},CRM-2,Home,Flat\n", user(2));
    let second = h.write("second.csv", second);
    let rows = outcomes_of_run(&h, &second, &["--adopt-existing"], 0).await;
    assert_eq!(rows.get("buildings_updated"), Some(&2), "{rows:?}");
    assert_eq!(rows.get("adopted_existing"), Some(&1), "{rows:?}");
    assert_eq!(rows.get("created"), Some(&0), "{rows:?}");
    let state = h.state();
    assert_eq!(
        state.count("create_building"),
        2,
        "nothing created the second night"
    );
    assert_eq!(
        state.count("update_building"),
        3,
        "2 updates + the adopted one's fields"
    );
}
