//! A partner's first week, as a new user lives it: the mail-merge file survives a second
//! run, the README's cron line is quiet, a truncated export is caught before it is sent,
//! `export --state failed` can be fixed and fed back, a real CRM export maps with one
//! file, and the demo runs anywhere. Each test runs the real binary against the simulator.

use crate::common;

use std::path::Path;

use common::{Harness, Output};
use podero_onboard::sandbox;

/// `links <csv>` with the session flags, the default checkpoint and fast settings, plus `extra`.
async fn links(h: &Harness, csv: &Path, extra: &[&str]) -> Output {
    h.links(csv, extra).await
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", out.stdout, out.stderr))
}

/// `n` generated users with one home each and the mail-merge columns.
fn customers(n: u64) -> String {
    let mut csv =
        String::from("user_id,external_user_id,building_name,email,first_name,last_name\n");
    for i in 0..n {
        let id = sandbox::generated_user_id(i);
        csv.push_str(&format!(
            "{id},CRM-{i},Home,kunde{i}@example.at,Vorname{i},Nachname{i}\n"
        ));
    }
    csv
}

/// CSV text → rows of cells (no quoting in these tests' data).
fn cells(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

fn column(rows: &[Vec<String>], name: &str) -> usize {
    rows[0]
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", rows[0]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_out_is_kept_when_no_link_is_created_and_export_links_is_a_mail_merge() {
    let h = Harness::with_users(3).await;
    let csv = h.write("customers.csv", customers(3));
    h.expect_code(&h.run(&csv, &[]).await, 0);
    let out_path = h.path("links-today.csv");
    let out = out_path.to_str().unwrap();
    let first = links(&h, &csv, &["--out", out, "--json"]).await;
    h.expect_code(&first, 0);
    assert_eq!(json(&first)["out"], "written");
    let morning = std::fs::read_to_string(&out_path).unwrap();
    assert_eq!(morning.lines().count(), 4, "{morning}");
    // The same day again: nothing new, and the morning's links are still in the file.
    let second = links(&h, &csv, &["--out", out, "--json"]).await;
    h.expect_code(&second, 0);
    assert_eq!(json(&second)["out"], "kept", "{}", second.stdout);
    assert!(
        second.stderr.contains("--out left as it was"),
        "{}",
        second.stderr
    );
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), morning);
    let dry = links(&h, &csv, &["--out", out, "--dry-run"]).await;
    h.expect_code(&dry, 0);
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), morning);
    // export --links carries the mail-merge columns, one line per link of the morning.
    let export = cells(&h.export(&["--links"]).await.stdout);
    let mail = cells(&morning);
    assert_eq!(export.len(), 4);
    for name in ["email", "first_name", "last_name"] {
        let (e, m) = (column(&export, name), column(&mail, name));
        let mut exported: Vec<&str> = export[1..].iter().map(|r| r[e].as_str()).collect();
        let mut mailed: Vec<&str> = mail[1..].iter().map(|r| r[m].as_str()).collect();
        exported.sort();
        mailed.sort();
        assert_eq!(exported, mailed, "{name}");
        assert!(
            exported.iter().all(|v| !v.is_empty()),
            "{name}: {exported:?}"
        );
    }
    let (e, m) = (column(&export, "link"), column(&mail, "link"));
    let mut exported: Vec<&str> = export[1..].iter().map(|r| r[e].as_str()).collect();
    let mut mailed: Vec<&str> = mail[1..].iter().map(|r| r[m].as_str()).collect();
    exported.sort();
    mailed.sort();
    assert_eq!(exported, mailed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_warns_when_the_input_has_no_email_column() {
    let h = Harness::with_users(2).await;
    let csv = h.write("users.csv", common::generated_csv(2, 1));
    h.expect_code(&h.run(&csv, &[]).await, 0);
    let out = links(&h, &csv, &["--dry-run"]).await;
    h.expect_code(&out, 0);
    assert!(
        out.stderr.contains("no email column") && out.stderr.contains("--column email="),
        "{}",
        out.stderr
    );
    let with_email = h.write("customers.csv", customers(2));
    let out = links(&h, &with_email, &["--dry-run"]).await;
    assert!(!out.stderr.contains("no email column"), "{}", out.stderr);
}

/// The README's nightly command line, its paths moved into the test's directory.
fn readme_nightly_line(h: &Harness, export: &Path) -> String {
    let code = crate::docs::code_lines(&crate::docs::read("README.md"));
    let line = code
        .lines()
        .find(|l| l.contains("podero-onboard run") && l.contains("-q --json"))
        .expect("the README shows the nightly line");
    line.replace("/srv/crm/export.csv", export.to_str().unwrap())
        .replace("/var/lib/podero", h.dir.path().to_str().unwrap())
}

/// Runs a shell line as cron would, `podero-onboard` on the PATH, credentials set.
async fn cron(h: &Harness, line: &str) -> Output {
    let bin = h.path("bin");
    if !bin.exists() {
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(common::BIN, bin.join("podero-onboard")).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = h.command(&[]);
    let std = cmd.as_std_mut();
    let mut shell = tokio::process::Command::new("sh");
    shell
        .env_clear()
        .envs(std.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("PATH", path)
        .args(["-c", line])
        .current_dir(h.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    h.exec_with(shell).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_nightly_line_is_silent_on_a_good_night_and_speaks_on_a_bad_one() {
    let h = Harness::with_users(3).await;
    let export = h.write("export.csv", customers(3));
    let line = readme_nightly_line(&h, &export);
    let good = cron(&h, &line).await;
    h.expect_code(&good, 0);
    assert_eq!(
        (good.stdout.as_str(), good.stderr.as_str()),
        ("", ""),
        "{line}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(h.path("nightly.json")).unwrap()).unwrap();
    assert_eq!(summary["outcome"], "completed", "{summary}");
    assert!(h.path("nightly-report.csv").exists());
    // A bad night: one row's e-mail is broken. cron gets the summary (stderr), and the
    // JSON still goes to its file, not into the mail.
    let mut text = customers(3);
    text = text.replace("kunde1@example.at", "kunde1-at-example");
    std::fs::write(&export, text).unwrap();
    let bad = cron(&h, &line).await;
    h.expect_code(&bad, 1);
    assert_eq!(bad.stdout, "");
    assert!(bad.stderr.contains("invalid"), "{}", bad.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(h.path("nightly.json")).unwrap()).unwrap();
    assert_eq!(summary["exit_code"], 1, "{summary}");
}

/// Every request the simulator saw (tokens included).
fn requests(h: &Harness) -> u64 {
    h.state().requests.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_export_stops_before_any_call_and_the_vanished_rows_are_listed() {
    let h = Harness::with_users(40).await;
    let full = customers(40);
    let export = h.write("export.csv", &full);
    h.expect_code(&h.run(&export, &[]).await, 0);
    // The export job died after two customers: 38 rows vanished.
    let cut: String = full.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&export, &cut).unwrap();
    let (before, api_before) = (requests(&h), h.state().api_requests());
    let stopped = h.run(&export, &["-q", "--json"]).await;
    h.expect_code(&stopped, 2);
    assert_eq!(requests(&h), before, "the guard stops before any call");
    assert!(
        stopped
            .stderr
            .contains("38 of the checkpoint's 40 rows (95%)")
            && stopped.stderr.contains("--max-vanished 10%")
            && stopped.stderr.contains("--state vanished"),
        "{}",
        stopped.stderr
    );
    // Which rows: export --state vanished, state `vanished`, one line each.
    let listed = cells(&h.export(&["--state", "vanished"]).await.stdout);
    assert_eq!(listed.len(), 39, "{listed:?}");
    let state = column(&listed, "state");
    assert!(listed[1..].iter().all(|r| r[state] == "vanished"));
    let ext = column(&listed, "external_user_id");
    assert!(
        !listed[1..]
            .iter()
            .any(|r| r[ext] == "CRM-0" || r[ext] == "CRM-1")
    );
    // The dry run says so too, and counts them.
    let dry = h.run(&export, &["--dry-run"]).await;
    h.expect_code(&dry, 2);
    assert!(
        dry.stderr.contains("38 of the checkpoint's 40 rows"),
        "{}",
        dry.stderr
    );
    let dry = h.run(&export, &["--dry-run", "--max-vanished", "38"]).await;
    h.expect_code(&dry, 0);
    assert!(
        dry.stderr
            .contains("38  in the checkpoint but no longer in the input"),
        "{}",
        dry.stderr
    );
    // Allowed explicitly: the run goes on, its text counts them and --report lists them.
    let report = h.path("report.csv");
    let run = h
        .run(
            &export,
            &[
                "--max-vanished",
                "100%",
                "--report",
                report.to_str().unwrap(),
            ],
        )
        .await;
    h.expect_code(&run, 0);
    assert_eq!(
        h.state().api_requests(),
        api_before,
        "the two rows left are done"
    );
    assert!(
        run.stderr
            .contains("38  in the checkpoint but no longer in the input"),
        "{}",
        run.stderr
    );
    let report = cells(&std::fs::read_to_string(report).unwrap());
    let state = column(&report, "state");
    let vanished = report[1..]
        .iter()
        .filter(|r| r[state] == "vanished")
        .count();
    assert_eq!((report.len(), vanished), (41, 38));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_customers_leaving_pass_the_default_guard() {
    let h = Harness::with_users(40).await;
    let full = customers(40);
    let export = h.write("export.csv", &full);
    h.expect_code(&h.run(&export, &[]).await, 0);
    // Four customers left (10 %): a normal night.
    let fewer: String = full.lines().take(37).map(|l| format!("{l}\n")).collect();
    std::fs::write(&export, fewer).unwrap();
    let out = h.run(&export, &["-q"]).await;
    h.expect_code(&out, 0);
    assert_eq!(out.stderr, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_state_failed_is_a_file_to_fix_and_feed_back() {
    let h = Harness::with_users(2).await;
    let (known, unknown) = (sandbox::generated_user_id(0), sandbox::generated_user_id(7));
    let header = "user_id,external_user_id,property_id,building_name,email,country,\
                  property_type,property_size_m2,photovoltaic,building_town,building_zip_code";
    let input = format!(
        "{header}\n\
         {known},CRM-0,P-0,Home,a@example.at,AT,Detached,140,yes,Graz,8010\n\
         {unknown},CRM-7,P-7,Zuhause,b@example.at,AT,Flat,62,no,Wien,1010\n"
    );
    let csv = h.write("export.csv", &input);
    let first = h.run(&csv, &[]).await;
    h.expect_code(&first, 1);
    // The failed row comes back with the input's columns, building fields included.
    let to_fix = h.export(&["--state", "failed"]).await.stdout;
    let rows = cells(&to_fix);
    assert_eq!(rows.len(), 2, "{to_fix}");
    let mut exported: Vec<&str> = rows[0].iter().map(String::as_str).collect();
    exported.retain(|c| !matches!(*c, "state" | "error"));
    let mut expected: Vec<&str> = header.split(',').map(str::trim).collect();
    exported.sort();
    expected.sort();
    assert_eq!(exported, expected, "{to_fix}");
    let value = |name: &str| rows[1][column(&rows, name)].clone();
    assert_eq!(value("property_size_m2"), "62");
    assert_eq!(value("photovoltaic"), "false");
    assert_eq!(value("building_town"), "Wien");
    assert_eq!(value("property_id"), "P-7");
    // The cause is fixed on the Podero side, the size in the file: fed back, it is accepted.
    h.sandbox.add_user(unknown);
    let fixed = to_fix.replace(",62,", ",64,");
    let fixed_path = h.write("to-fix.csv", &fixed);
    let again = h.run(&fixed_path, &["--only-failed"]).await;
    h.expect_code(&again, 0);
    assert!(!again.stderr.contains("invalid"), "{}", again.stderr);
    let state = h.state();
    let building = &state.buildings[&unknown][0];
    let body = serde_json::Value::Object(building.fields.clone());
    assert_eq!(body["name"], "Zuhause", "{body}");
    assert_eq!(body["property_size_m2"], 64, "{body}");
    assert_eq!(body["town"], "Wien", "{body}");
    assert_eq!(body["photovoltaic"], false, "{body}");
    assert_eq!(
        h.export(&["--state", "failed"])
            .await
            .stdout
            .lines()
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn country_must_be_an_iso_alpha_2_code_and_the_message_names_the_value() {
    let h = Harness::with_users(3).await;
    let [a, b, c] = [0, 1, 2].map(sandbox::generated_user_id);
    let csv = h.write(
        "export.csv",
        format!(
            "user_id,external_user_id,building_name,country\n\
             {a},CRM-0,Home,at\n{b},CRM-1,Home,Österreich\n{c},CRM-2,Home,AUT\n"
        ),
    );
    let report = h.path("report.csv");
    let out = h.run(&csv, &["--report", report.to_str().unwrap()]).await;
    h.expect_code(&out, 1);
    assert!(
        out.stderr
            .contains("line 3: column country: value \"Österreich\" is not an ISO 3166-1 alpha-2"),
        "{}",
        out.stderr
    );
    let report = std::fs::read_to_string(report).unwrap();
    assert!(
        report.contains("value \"\"AUT\"\" is not an ISO"),
        "{report}"
    );
    assert!(report.contains("AUT → AT"), "{report}");
    let state = h.state();
    assert_eq!(state.users[&a].fields["country_iso2"], "AT");
    assert!(!state.buildings.contains_key(&b) && !state.buildings.contains_key(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_german_crm_export_is_onboarded_with_one_mapping_file() {
    let h = Harness::with_users(3).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let csv = h.write(
        "crm-export-de.csv",
        std::fs::read(root.join("crm-export-de.csv")).unwrap(),
    );
    let mapping = h.write(
        "crm-export-de.toml",
        std::fs::read(root.join("crm-export-de.toml")).unwrap(),
    );
    let out = h.run(&csv, &["--mapping", mapping.to_str().unwrap()]).await;
    h.expect_code(&out, 0);
    assert!(
        !out.stderr.contains("ignoring unknown columns"),
        "{}",
        out.stderr
    );
    let state = h.state();
    let juergen = sandbox::generated_user_id(0);
    let user = &state.users[&juergen].fields;
    assert_eq!(user["street_and_number"], "Grüne Gasse 5", "{user:?}");
    assert_eq!(user["zip_code"], "8054");
    assert_eq!(user["email"], "juergen.mueller@example.at");
    assert_eq!(user["country_iso2"], "AT");
    let building = &state.buildings[&juergen][0].fields;
    assert_eq!(building["name"], "Zuhause", "{building:?}");
    assert_eq!(building["street_and_number"], "Grüne Gasse 5");
    assert_eq!(building["zip_code"], "8054");
    assert_eq!(building["town"], "Graz");
    assert_eq!(building["property_size_m2"], 142);
    assert_eq!(state.buildings.values().map(Vec::len).sum::<usize>(), 3);
    // The flags override the file: a second night names the building differently and the
    // property id keeps it the same building (renamed, not created again).
    let again = h
        .run(
            &csv,
            &[
                "--mapping",
                mapping.to_str().unwrap(),
                "--building-name",
                "Haus",
            ],
        )
        .await;
    h.expect_code(&again, 0);
    let state = h.state();
    assert_eq!(state.buildings.values().map(Vec::len).sum::<usize>(), 3);
    assert_eq!(state.buildings[&juergen][0].fields["name"], "Haus");
    // A join naming a header the file lacks fails before anything is sent.
    let bad = h
        .run(
            &csv,
            &[
                "--mapping",
                mapping.to_str().unwrap(),
                "--column",
                "street_and_number=Straße+Hausnr",
            ],
        )
        .await;
    h.expect_code(&bad, 2);
    assert!(bad.stderr.contains("\"hausnr\""), "{}", bad.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_from_any_directory_and_names_the_command_as_invoked() {
    let h = Harness::with_users(0).await;
    let out = h
        .exec(&["demo", "--rate", "2000", "--dir", "out"].map(String::from))
        .await;
    h.expect_code(&out, 0);
    assert!(h.path("out/checkpoint.sqlite").exists());
    assert!(h.path("out/report.csv").exists());
    assert!(
        out.stderr.contains(&format!(
            "Try next:\n  {} status --checkpoint out/checkpoint.sqlite",
            common::BIN
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("cargo run"), "{}", out.stderr);
    // A demo that cannot start leaves no empty directory behind.
    let failed = h
        .exec(&["demo", "--input", "missing.csv", "--dir", "empty"].map(String::from))
        .await;
    h.expect_code(&failed, 2);
    assert!(failed.stderr.contains("missing.csv"), "{}", failed.stderr);
    assert!(!h.path("empty").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_failures_are_grouped_like_runs() {
    let h = Harness::with_users(36).await;
    let csv = h.write("users.csv", common::generated_csv(36, 1));
    h.expect_code(&h.run(&csv, &[]).await, 0);
    h.sandbox.set_faults(podero_onboard::sandbox::Faults {
        random_5xx: 1.0,
        ..Default::default()
    });
    let out = links(&h, &csv, &["--max-attempts", "1"]).await;
    // Every call fails: the breaker may stop the run (3) once the rows are all failed.
    assert!(matches!(out.code, 1 | 3), "{}", out.stderr);
    let groups: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(" × failed (HTTP 5"))
        .collect();
    assert!((1..=3).contains(&groups.len()), "{}", out.stderr);
    let total: u64 = groups
        .iter()
        .map(|l| l.split('×').next().unwrap().trim().parse::<u64>().unwrap())
        .sum();
    // Every failed building is in a group. The failed user list (read first) counts
    // towards the breaker too, so it may stop before the last building is tried.
    let failed: u64 = out
        .stderr
        .lines()
        .find(|l| l.contains("failed: no link"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failed count:\n{}", out.stderr));
    assert_eq!(total, failed, "{}", out.stderr);
    assert!(failed >= 30, "{}", out.stderr);
    assert!(
        out.stderr.lines().count() < 30,
        "one line per building:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(" — lines 2, "),
        "the first lines of the file:\n{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_1252_file_is_answered_with_the_exact_command_that_reads_it() {
    let h = Harness::with_users(1).await;
    let id = sandbox::generated_user_id(0);
    let mut bytes =
        format!("user_id,external_user_id,building_name\n{id},KD-1,Haus M").into_bytes();
    bytes.extend(b"\xfcller\n");
    let csv = h.write("export 1252.csv", bytes);
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 2);
    let line = out
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("run again as: "))
        .unwrap_or_else(|| panic!("no command to run again:\n{}", out.stderr))
        .to_owned();
    assert!(line.ends_with("--encoding windows-1252"), "{line}");
    let again = cron(&h, &line).await;
    h.expect_code(&again, 0);
    assert_eq!(h.state().buildings[&id][0].name, "Haus Müller");
}
