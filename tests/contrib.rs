//! The install-and-schedule files in `contrib/` (issue 14): the systemd units pass
//! `systemd-analyze verify` (skipped, saying so, where it does not exist, unless
//! `PODERO_TEST_REQUIRE_ALL=1`, as in CI, makes that a failure), carry the
//! promised hardening, and the commands they and the crontab line run are real: each
//! is executed here against the simulator, with only the paths moved into a temp dir.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Harness, generated_csv};
use podero_onboard::sandbox;

const SERVICE: &str = include_str!("../contrib/systemd/podero-onboard.service");
const TIMER: &str = include_str!("../contrib/systemd/podero-onboard.timer");
const CRON: &str = include_str!("../contrib/cron/podero-onboard");

/// `Key=value` settings of a unit (continuation lines joined), in order.
fn settings(unit: &str) -> Vec<(String, String)> {
    let joined = unit.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && !l.is_empty())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn setting(unit: &str, key: &str) -> String {
    settings(unit)
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("{key}= is missing"))
        .1
}

/// The unit's paths moved into `root`, and the installed binary replaced by this build.
fn relocate(text: &str, root: &Path) -> String {
    let root = root.display();
    text.replace("/usr/local/bin/podero-onboard", BIN)
        .replace("/srv/podero-export", &format!("{root}/export"))
        .replace("/var/lib/podero-onboard", &format!("{root}/state"))
        .replace(
            "/var/lib/prometheus/node-exporter",
            &format!("{root}/textfile"),
        )
        .replace("/var/log/podero-onboard", &format!("{root}/log"))
        .replace("/etc/podero-onboard", &format!("{root}/etc"))
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let installed = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !common::require(installed, "systemd-analyze (apt-get install systemd)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // `verify` checks that ExecStart's binary exists: point it at this build.
    let service = dir.path().join("podero-onboard.service");
    std::fs::write(
        &service,
        SERVICE.replace("/usr/local/bin/podero-onboard", BIN),
    )
    .unwrap();
    let timer = dir.path().join("podero-onboard.timer");
    std::fs::write(&timer, TIMER).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args([&service, &timer])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // It exits 0 on ignored (misspelled or invalid) settings, printing them: none allowed.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("podero-onboard"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

#[test]
fn the_units_are_scheduled_persistent_hardened_and_keep_the_checkpoint_writable() {
    assert_eq!(setting(TIMER, "Persistent"), "true");
    assert!(setting(TIMER, "OnCalendar").contains("02:30"));
    assert_eq!(setting(SERVICE, "Type"), "oneshot");
    assert_eq!(setting(SERVICE, "User"), "podero-onboard");
    assert_eq!(setting(SERVICE, "ProtectSystem"), "strict");
    assert_eq!(setting(SERVICE, "NoNewPrivileges"), "yes");
    assert_eq!(
        setting(SERVICE, "EnvironmentFile"),
        "/etc/podero-onboard/env"
    );
    assert!(
        SERVICE.contains("0600"),
        "the env file's mode is documented"
    );
    // ProtectSystem=strict makes everything read-only but the state directory and
    // ReadWritePaths: the checkpoint and the metrics file must be inside them.
    assert_eq!(setting(SERVICE, "StateDirectory"), "podero-onboard");
    let exec = setting(SERVICE, "ExecStart");
    assert!(
        exec.contains("--checkpoint /var/lib/podero-onboard/"),
        "{exec}"
    );
    let textfile = setting(SERVICE, "ReadWritePaths");
    assert!(
        exec.contains(&format!("--metrics-file {textfile}/")),
        "{exec}"
    );
}

/// Runs `command` (a shell command line) with the simulator's credentials in an env file.
async fn run_relocated(h: &Harness, command: &str) -> common::Output {
    let root = h.dir.path();
    for sub in ["export", "state", "textfile", "log", "etc"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("export/customers.csv"), generated_csv(5, 1)).unwrap();
    std::fs::write(
        root.join("etc/env"),
        format!(
            "PODERO_ORG_ID={}\nPODERO_CLIENT_ID={}\nPODERO_CLIENT_SECRET={}\nPODERO_BASE_URL={}\n",
            h.sandbox.org_id(),
            sandbox::DEMO_CLIENT_ID,
            sandbox::DEMO_CLIENT_SECRET,
            h.sandbox.base_url()
        ),
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("-c")
        .arg(relocate(command, root))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    h.exec_with(cmd).await
}

fn assert_synced(h: &Harness) {
    let root = h.dir.path();
    assert_eq!(h.state().buildings.values().map(Vec::len).sum::<usize>(), 5);
    assert!(root.join("state/onboard.sqlite").exists());
    assert!(root.join("state/report.csv").exists());
    let metrics = std::fs::read_to_string(root.join("textfile/podero-onboard.prom")).unwrap();
    assert!(
        metrics.contains("podero_onboard_last_run_exit_code 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_command_runs_a_sync() {
    let h = Harness::with_users(5).await;
    let exec = setting(SERVICE, "ExecStart");
    // EnvironmentFile= is systemd's job: here the shell exports the same file.
    let command = format!("set -a && . /etc/podero-onboard/env && set +a && exec {exec}");
    let out = run_relocated(&h, &command).await;
    h.expect_code(&out, 0);
    assert!(out.stdout.contains("\"completed\""), "{}", out.stdout);
    assert_synced(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crontab_line_runs_a_sync() {
    let h = Harness::with_users(5).await;
    let line = CRON
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("podero-onboard run"))
        .expect("a crontab line");
    // Five time fields and the user, then the command.
    let fields: Vec<&str> = line.splitn(7, ' ').collect();
    assert_eq!(fields[..5], ["30", "2", "*", "*", "*"]);
    assert_eq!(fields[5], "podero-onboard");
    assert!(!fields[6].contains('%'), "cron turns % into newlines");
    let out = run_relocated(&h, fields[6]).await;
    h.expect_code(&out, 0);
    let log = std::fs::read_to_string(h.dir.path().join("log/sync.log")).unwrap();
    assert!(log.contains("completed"), "{log}");
    assert_synced(&h);
}
