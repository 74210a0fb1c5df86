//! Test harness: a temp dir, a simulator on an ephemeral loopback port, the real binary
//! run against it, and the checkpoint read back with SQLite. On failure it prints the
//! command, stdout, stderr and the simulator's state.
#![allow(dead_code)]

pub mod hostile;
pub mod pki;
pub mod users;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use podero_onboard::sandbox::{self, Sandbox, Snapshot};
use uuid::Uuid;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_podero-onboard");

/// Set to `1` by CI (`.ci/run`): a test that lacks a tool or a privilege fails instead of
/// skipping, so a green CI means every test ran.
pub const REQUIRE_ALL_ENV: &str = "PODERO_TEST_REQUIRE_ALL";

/// Whether a test needing `what` may go on. When `available` is false it fails under
/// [`REQUIRE_ALL_ENV`]`=1`; elsewhere it prints `SKIPPED: ...` on stderr and the caller
/// returns (libtest has no skip: the test shows as passed, so CI must not rely on this).
pub fn require(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var_os(REQUIRE_ALL_ENV).is_some_and(|v| v == "1") {
        panic!(
            "{what} is missing and {REQUIRE_ALL_ENV}=1 requires every test to run (.ci/run installs it)"
        );
    }
    eprintln!("SKIPPED: {what} is missing (with {REQUIRE_ALL_ENV}=1 this test fails instead)");
    false
}

/// Converts `args` for [`Harness::command`].
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A temp dir, a simulator and helpers to run the binary against it.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub sandbox: Sandbox,
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
}

/// One row of the checkpoint's `rows` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRow {
    pub user_id: String,
    pub building_name: String,
    pub state: String,
    pub building_id: Option<String>,
    pub http_status: Option<i64>,
    pub error: Option<String>,
}

impl Harness {
    /// Starts the simulator from `builder` (use `sandbox::Builder::new()` for defaults).
    pub async fn new(builder: sandbox::Builder) -> Harness {
        let sandbox = builder.start().await.expect("simulator starts");
        Harness {
            dir: tempfile::tempdir().expect("temp dir"),
            sandbox,
        }
    }

    /// A simulator knowing `users` generated users (`sandbox::generated_user_id(0..users)`).
    pub async fn with_users(users: usize) -> Harness {
        Harness::new(sandbox::Builder::new().generated_users(users)).await
    }

    /// A path inside the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The default checkpoint path.
    pub fn checkpoint(&self) -> PathBuf {
        self.path("checkpoint.sqlite")
    }

    /// Writes a file in the temp dir and returns its path.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, content).expect("write test file");
        path
    }

    /// The binary with a clean environment: credentials, org and base URL of the simulator.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PODERO_CLIENT_ID", sandbox::DEMO_CLIENT_ID)
            .env("PODERO_CLIENT_SECRET", sandbox::DEMO_CLIENT_SECRET)
            .env("PODERO_ORG_ID", self.sandbox.org_id().to_string())
            .env("PODERO_BASE_URL", self.sandbox.base_url())
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// `run <csv> --checkpoint <default> --rate 5000 --concurrency 16 --timeout 3` plus
    /// `extra`; a default whose flag appears in `extra` is left out, so `extra` overrides it.
    pub fn run_args(&self, csv: &Path, extra: &[&str]) -> Vec<String> {
        let checkpoint = self.checkpoint().to_str().expect("utf-8 path").to_owned();
        let defaults = [
            ("--checkpoint", checkpoint.as_str()),
            ("--rate", "5000"),
            ("--concurrency", "16"),
            ("--timeout", "3"),
        ];
        let mut args = vec![
            "run".to_owned(),
            csv.to_str().expect("utf-8 path").to_owned(),
        ];
        for (flag, value) in defaults {
            let overridden = extra
                .iter()
                .any(|e| *e == flag || e.starts_with(&format!("{flag}=")));
            if !overridden {
                args.extend([flag.to_owned(), value.to_owned()]);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// `links <csv>` arguments: the session flags, this harness's checkpoint and fast
    /// settings, then `extra`.
    pub fn links_args(&self, csv: &Path, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "links",
            csv.to_str().expect("utf-8"),
            "--checkpoint",
            self.checkpoint().to_str().expect("utf-8"),
            "--language",
            "de",
            "--price-zone",
            "AT",
            "--success-url",
            "https://partner.example/ok",
            "--cancel-url",
            "https://partner.example/cancel",
            "--rate",
            "5000",
            "--concurrency",
            "16",
            "--timeout",
            "3",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Runs `links <csv>` (see [`Harness::links_args`]).
    pub async fn links(&self, csv: &Path, extra: &[&str]) -> Output {
        self.exec(&self.links_args(csv, extra)).await
    }

    /// Runs the binary to completion (60 s at most).
    pub async fn exec(&self, args: &[String]) -> Output {
        let strs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.exec_with(self.command(&strs)).await
    }

    /// Runs a prepared command to completion (60 s at most).
    pub async fn exec_with(&self, mut cmd: tokio::process::Command) -> Output {
        let command = format!("{:?}", cmd.as_std());
        let output = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("timed out after 60 s: {command}"))
            .expect("binary runs");
        Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            command,
        }
    }

    /// Runs `export --checkpoint <default>` plus `extra`, expecting exit 0.
    pub async fn export(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "export".to_owned(),
            "--checkpoint".to_owned(),
            self.checkpoint().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = self.exec(&args).await;
        self.expect_code(&out, 0);
        out
    }

    /// Runs `run` on `csv` with the fast defaults plus `extra`.
    pub async fn run(&self, csv: &Path, extra: &[&str]) -> Output {
        self.exec(&self.run_args(csv, extra)).await
    }

    /// Panics with everything needed to debug unless the exit code is `code`.
    pub fn expect_code(&self, output: &Output, code: i32) {
        if output.code != code {
            panic!(
                "expected exit code {code}, got {}\ncommand: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- simulator ---\n{}",
                output.code,
                output.command,
                output.stdout,
                output.stderr,
                self.describe_state()
            );
        }
    }

    /// A short description of the simulator's state for failure messages.
    pub fn describe_state(&self) -> String {
        let state = self.sandbox.state();
        format!(
            "requests {:?}\nstatuses {:?}\nbuildings {}\nduplicates {:?}\nanomalies {:?}",
            state.requests,
            state.statuses,
            state.buildings.values().map(Vec::len).sum::<usize>(),
            state.duplicates(),
            state.anomalies
        )
    }

    /// The simulator's state.
    pub fn state(&self) -> Snapshot {
        self.sandbox.state()
    }

    /// Every row of the checkpoint.
    pub fn checkpoint_rows(&self) -> Vec<CheckpointRow> {
        let conn = rusqlite::Connection::open(self.checkpoint()).expect("open checkpoint");
        let mut stmt = conn
            .prepare(
                "SELECT user_id, building_name, state, building_id, http_status, error
                 FROM rows ORDER BY user_id, building_name",
            )
            .expect("query rows");
        stmt.query_map([], |r| {
            Ok(CheckpointRow {
                user_id: r.get(0)?,
                building_name: r.get(1)?,
                state: r.get(2)?,
                building_id: r.get(3)?,
                http_status: r.get(4)?,
                error: r.get(5)?,
            })
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows decode")
    }

    /// Asserts the invariant of the mission: no (user, name) has two buildings, and every
    /// `done` row of the checkpoint maps to exactly the building the simulator has.
    pub fn assert_no_duplicates_and_map_matches(&self) {
        let state = self.state();
        assert!(
            state.duplicates().is_empty(),
            "duplicates on the server: {:?}",
            state.duplicates()
        );
        let server = state.building_map();
        for row in self
            .checkpoint_rows()
            .into_iter()
            // A user-only row (empty name) has no building.
            .filter(|r| r.state == "done" && !r.building_name.is_empty())
        {
            let user = Uuid::parse_str(&row.user_id).expect("uuid");
            let ids = server
                .get(&(user, row.building_name.clone()))
                .unwrap_or_else(|| {
                    panic!("checkpoint says done but the server has no building: {row:?}")
                });
            assert_eq!(
                Some(ids[0].to_string()),
                row.building_id,
                "checkpoint id differs from the server's for {row:?}"
            );
        }
    }
}

/// A CSV with a header and `per_user` buildings for each of `users` generated users.
/// External ids are `CRM-<i>`, names `Home 0`, `Home 1`, ...
pub fn generated_csv(users: usize, per_user: usize) -> String {
    let mut csv = String::from("user_id,external_user_id,building_name\n");
    for i in 0..users {
        let id = sandbox::generated_user_id(i as u64);
        for b in 0..per_user {
            csv.push_str(&format!("{id},CRM-{i},Home {b}\n"));
        }
    }
    csv
}

/// Count of done rows by state, from the checkpoint.
pub fn states(rows: &[CheckpointRow]) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for row in rows {
        *map.entry(row.state.clone()).or_default() += 1;
    }
    map
}

/// A simulator of `users` generated users behind a token bucket: `per_second` sustained,
/// `burst` back to back (the rate-limit suites' server).
pub fn limited(users: usize, per_second: f64, burst: u32) -> sandbox::Builder {
    sandbox::Builder::new()
        .generated_users(users)
        .faults(sandbox::Faults {
            rate_limit: Some(sandbox::RateLimit { per_second, burst }),
            ..sandbox::Faults::default()
        })
}
