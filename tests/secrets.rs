//! Secrets, transport and files (issue 8): the client secret and every token stay out of
//! stdout, stderr, logs at every level, the report and the checkpoint, even when the
//! server echoes them back; credentials are never flags; plain http only to loopback;
//! every file the job writes is owner-only.

mod common;
mod hostile;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Parser;
use common::{Harness, generated_csv};
use hostile::{HostileServer, Reply, Request};
use podero_onboard::api::{ClientConfig, Credentials};
use podero_onboard::cli::{Cli, Command};
use podero_onboard::config::RunConfig;
use podero_onboard::sandbox::{self, Faults};
use serde_json::json;

const CLIENT_ID: &str = "echo-client";

/// What the echoing server has done, to check the scenario really was hostile.
#[derive(Default)]
struct Echoed {
    /// Every access token issued.
    tokens: Vec<String>,
    /// Token → API requests it authorised.
    uses: std::collections::HashMap<String, usize>,
    /// Statuses sent with an echo of the Authorization header in the body.
    echoes: Vec<u16>,
    /// API requests so far (drives the deterministic 5xx).
    requests: usize,
    /// Token requests so far.
    token_requests: usize,
}

/// A Podero that echoes the Authorization header (and the decoded client secret) into
/// every error body: token refusals, 401 after a few uses of a token, 404/422 for some
/// users, deterministic 5xx, and a list endpoint that fails.
fn echoing_podero(
    secret: String,
    echoed: Arc<Mutex<Echoed>>,
) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{secret}"))
    );
    move |request| {
        let auth = request
            .header("authorization")
            .unwrap_or_default()
            .to_owned();
        let mut e = echoed.lock().expect("echo lock");
        if request.path == "/oauth2/token/" {
            e.token_requests += 1;
            if auth != basic {
                e.echoes.push(401);
                return Reply::json(
                    401,
                    &json!({"error": "invalid_client", "error_description": format!("you sent {auth}")}),
                );
            }
            // The first token request and one renewal fail, echoing the credentials.
            if matches!(e.token_requests, 1 | 3) {
                e.echoes.push(503);
                return Reply::new(
                    503,
                    &[("Content-Type", "text/plain")],
                    format!("token service busy; you sent {auth} ({CLIENT_ID}:{secret})"),
                );
            }
            let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
            e.tokens.push(token.clone());
            return Reply::json(
                200,
                &json!({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}),
            );
        }
        e.requests += 1;
        let token = auth.strip_prefix("Bearer ").unwrap_or_default().to_owned();
        let issued = e.tokens.contains(&token);
        let uses = e.uses.entry(token.clone()).or_default();
        *uses += 1;
        let echo = |e: &mut Echoed, status: u16, body: serde_json::Value| {
            e.echoes.push(status);
            Reply::json(status, &body)
        };
        // Tokens "expire" on the server after 8 uses: a 401 mid-run.
        if !issued || *uses > 8 {
            return echo(
                &mut e,
                401,
                json!({"detail": format!("token expired, you sent {auth}")}),
            );
        }
        if e.requests.is_multiple_of(7) {
            e.echoes.push(500);
            return Reply::new(
                500,
                &[("Content-Type", "text/html")],
                format!("<html><title>Internal error for {auth}</title><body>{auth}</body></html>"),
            );
        }
        let user: u64 = request
            .path
            .split('/')
            .nth(7)
            .and_then(|id| u64::from_str_radix(id.get(24..)?, 16).ok())
            .unwrap_or(0);
        match (request.method.as_str(), user % 5) {
            ("GET", _) => echo(
                &mut e,
                502,
                json!({"detail": format!("list failed for {auth}")}),
            ),
            ("PUT", 1) => echo(
                &mut e,
                404,
                json!({"detail": format!("Not Found: no such user, you sent {auth}")}),
            ),
            ("PUT", 2) => echo(
                &mut e,
                422,
                json!({"detail": [{"type": "value_error", "loc": ["body", "external_user_id"],
                                    "msg": format!("bad request, you sent {auth}")}]}),
            ),
            ("POST", 3) => echo(
                &mut e,
                422,
                json!({"detail": format!("bad request, you sent {auth} and {secret}")}),
            ),
            ("PUT", _) => Reply::json(200, &json!({"id": "x"})),
            _ => Reply::json(201, &json!({"id": uuid::Uuid::new_v4()})),
        }
    }
}

/// The credentials to look for: the client secret, its Basic encoding, every token the
/// server has issued so far.
fn needles(secret: &str, echoed: &Mutex<Echoed>) -> Vec<(&'static str, String)> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{secret}"));
    let mut needles = vec![(SECRET, secret.to_owned()), (BASIC, basic)];
    let tokens = echoed.lock().expect("echo lock").tokens.clone();
    needles.extend(tokens.into_iter().map(|t| (TOKEN, t)));
    needles
}

/// Adds "<what> in <place>" to `leaks` for every needle found in `bytes`.
fn scan(place: &str, bytes: &[u8], needles: &[(&str, String)], leaks: &mut Vec<String>) {
    for (what, needle) in needles {
        let leak = format!("{what} in {place}");
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) && !leaks.contains(&leak) {
            leaks.push(leak);
        }
    }
}

/// What a hostile run left behind.
struct Scanned {
    /// "<what> in <place>" for every credential found.
    leaks: Vec<String>,
    stderr: String,
    /// How many times the -wal was read while the run was going.
    wal_reads: usize,
    /// The checkpoint file's bytes after the run.
    checkpoint: Vec<u8>,
}

/// Runs the job against the echoing server and scans every place it wrote to: stdout,
/// stderr, the report, the checkpoint with its -wal/-shm and lock file, and the -wal as
/// it was while the run was going (SQLite deletes it at the end).
async fn run_and_scan(extra: &[&str]) -> Scanned {
    let secret = format!("cs-{}", uuid::Uuid::new_v4().simple());
    let echoed = Arc::new(Mutex::new(Echoed::default()));
    let server = HostileServer::start(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        echoing_podero(secret.clone(), Arc::clone(&echoed)),
    )
    .await
    .expect("server");
    let h = Harness::new(sandbox::Builder::new()).await;
    let csv = h.write("users.csv", generated_csv(20, 2));
    let report = h.path("report.csv");
    let mut flags = vec![
        "--report",
        report.to_str().expect("utf-8"),
        "--json",
        "--concurrency",
        "4",
    ];
    flags.extend_from_slice(extra);
    let args = h.run_args(&csv, &flags);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = h.command(&strs);
    cmd.env("PODERO_BASE_URL", server.base_url())
        .env("PODERO_CLIENT_ID", CLIENT_ID)
        .env("PODERO_CLIENT_SECRET", &secret);
    let waiting = tokio::spawn(cmd.spawn().expect("spawn").wait_with_output());
    let wal = h.path("checkpoint.sqlite-wal");
    let mut leaks = Vec::new();
    let mut wal_reads = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !waiting.is_finished() {
        assert!(Instant::now() < deadline, "the run did not end");
        if let Ok(bytes) = std::fs::read(&wal) {
            wal_reads += 1;
            let needles = needles(&secret, &echoed);
            scan("the -wal during the run", &bytes, &needles, &mut leaks);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = waiting.await.expect("join").expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let needles = needles(&secret, &echoed);
    scan("stdout", &output.stdout, &needles, &mut leaks);
    scan("stderr", &output.stderr, &needles, &mut leaks);
    for name in [
        "report.csv",
        "checkpoint.sqlite",
        "checkpoint.sqlite-wal",
        "checkpoint.sqlite-shm",
        "checkpoint.sqlite.lock",
    ] {
        if let Ok(bytes) = std::fs::read(h.path(name)) {
            scan(name, &bytes, &needles, &mut leaks);
        }
    }
    assert_hostile_enough(&echoed.lock().expect("echo lock"));
    Scanned {
        leaks,
        stderr,
        wal_reads,
        checkpoint: std::fs::read(h.checkpoint()).expect("checkpoint"),
    }
}

/// The scenario must really have been hostile, or finding nothing proves nothing.
fn assert_hostile_enough(e: &Echoed) {
    assert!(e.tokens.len() >= 3, "tokens issued: {}", e.tokens.len());
    let statuses: HashSet<u16> = e.echoes.iter().copied().collect();
    for status in [401, 404, 422, 500, 502, 503] {
        assert!(statuses.contains(&status), "no {status} echo: {statuses:?}");
    }
}

const SECRET: &str = "the client secret";
const BASIC: &str = "the Basic credentials (base64 of id:secret)";
const TOKEN: &str = "a token";

/// The secret and the tokens never appear, whatever `extra` logging is on.
async fn assert_no_secret_or_token_anywhere(extra: &[&str]) {
    let scanned = run_and_scan(extra).await;
    let leaks: Vec<&String> = scanned
        .leaks
        .iter()
        .filter(|l| !l.starts_with(BASIC))
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets leaked: {leaks:?}\n--- stderr ---\n{}",
        scanned.stderr
    );
    assert!(scanned.wal_reads > 0, "the -wal was never scanned");
    // The echoes did reach the logs and the checkpoint, scrubbed.
    assert!(
        scanned.stderr.contains("you sent Bearer [redacted]"),
        "{}",
        scanned.stderr
    );
    let scrubbed = b"you sent Bearer [redacted]";
    assert!(
        scanned
            .checkpoint
            .windows(scrubbed.len())
            .any(|w| w == scrubbed),
        "the checkpoint holds no scrubbed echo: the scan would prove nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_is_written_anywhere_at_maximum_verbosity() {
    assert_no_secret_or_token_anywhere(&["-vvv"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_is_written_anywhere_with_json_logs() {
    assert_no_secret_or_token_anywhere(&["-vvv", "--log-format", "json"]).await;
}

/// The token endpoint echoes `Authorization: Basic base64(id:secret)`: that string is the
/// secret in thin disguise and must be redacted like the secret itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_echoed_by_the_token_endpoint_are_redacted() {
    let scanned = run_and_scan(&["-vv"]).await;
    assert!(
        scanned.leaks.is_empty(),
        "secrets leaked: {:?}\n--- stderr ---\n{}",
        scanned.leaks,
        scanned.stderr
    );
}

fn run_config(env: &[(&str, &str)]) -> RunConfig {
    let cli = Cli::try_parse_from([
        "podero-onboard",
        "run",
        "users.csv",
        "--org-id",
        "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "--checkpoint",
        "c.sqlite",
    ])
    .expect("parses");
    let Command::Run(args) = cli.command else {
        panic!("not run")
    };
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    RunConfig::new(*args, &move |name: &str| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .expect("valid config")
}

#[test]
fn debug_of_the_configuration_shows_no_credential() {
    let client = run_config(&[
        ("PODERO_CLIENT_ID", "the-id"),
        ("PODERO_CLIENT_SECRET", "s3cret-value"),
    ]);
    let token = run_config(&[("PODERO_TOKEN", "tok3n-value")]);
    let client_config: &ClientConfig = client.client.as_ref().expect("client");
    let credentials: &Credentials = &client_config.credentials;
    for shown in [
        format!("{client:?}"),
        format!("{client:#?}"),
        format!("{client_config:?}"),
        format!("{credentials:?}"),
        format!("{token:?}"),
        format!("{:?}", token.client.as_ref().expect("client").credentials),
    ] {
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
        assert!(!shown.contains("tok3n-value"), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_not_accepted_as_flags() {
    let h = Harness::with_users(1).await;
    let csv = h.write("users.csv", generated_csv(1, 1));
    for flag in ["--client-secret", "--client-id", "--token", "--secret"] {
        let out = h.run(&csv, &[flag, "x"]).await;
        assert_eq!(out.code, 2, "{flag}: {}", out.stderr);
        assert!(
            out.stderr.contains("unexpected argument"),
            "{flag}: {}",
            out.stderr
        );
    }
    assert_eq!(h.state().requests.values().sum::<u64>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_refused_except_to_loopback() {
    let h = Harness::with_users(1).await;
    let csv = h.write("users.csv", generated_csv(1, 1));
    for url in [
        "http://example.com",
        "http://10.0.0.1",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
        "ftp://app.podero.com",
    ] {
        let out = h.run(&csv, &["--base-url", url]).await;
        assert_eq!(out.code, 2, "{url}: {}", out.stderr);
        assert!(out.stderr.contains("https://"), "{url}: {}", out.stderr);
    }
    assert_eq!(h.state().requests.values().sum::<u64>(), 0);
    // The simulator itself is plain http on 127.0.0.1.
    let url = h.sandbox.base_url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let out = h.run(&csv, &["--base-url", &url]).await;
    h.expect_code(&out, 0);
    assert_eq!(h.state().count("create_building"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_flag_turns_off_certificate_checks() {
    let h = Harness::with_users(0).await;
    for args in [vec!["run", "--help"], vec!["--help"]] {
        let out = h
            .exec(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        let help = out.stdout.to_lowercase();
        assert!(help.contains("--base-url") || args.len() == 1, "{help}");
        for word in [
            "insecure",
            "danger",
            "no-verify",
            "accept-invalid",
            "certificate",
        ] {
            assert!(!help.contains(word), "{word} in help:\n{help}");
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// With a permissive umask (022), the checkpoint, its -wal/-shm, the lock and the report
/// are still created owner-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_wal_lock_and_report_are_created_owner_only() {
    let h = Harness::new(sandbox::Builder::new().generated_users(6).faults(Faults {
        latency: Duration::from_millis(150),
        ..Faults::default()
    }))
    .await;
    let csv = h.write("users.csv", generated_csv(6, 1));
    let report = h.path("report.csv");
    let args = h.run_args(
        &csv,
        &[
            "--report",
            report.to_str().expect("utf-8"),
            "--concurrency",
            "1",
        ],
    );
    let mut sh = tokio::process::Command::new("sh");
    sh.args(["-c", "umask 022 && exec \"$0\" \"$@\"", common::BIN])
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PODERO_CLIENT_ID", sandbox::DEMO_CLIENT_ID)
        .env("PODERO_CLIENT_SECRET", sandbox::DEMO_CLIENT_SECRET)
        .env("PODERO_ORG_ID", h.sandbox.org_id().to_string())
        .env("PODERO_BASE_URL", h.sandbox.base_url())
        .current_dir(h.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = sh.spawn().expect("spawn");
    let waiting = tokio::spawn(child.wait_with_output());
    let wal = h.path("checkpoint.sqlite-wal");
    let shm = h.path("checkpoint.sqlite-shm");
    let mut seen_wal = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !waiting.is_finished() {
        assert!(Instant::now() < deadline, "the run did not end");
        if h.state().count("create_building") >= 1 && wal.exists() {
            assert_eq!(mode(&wal), 0o600, "-wal");
            if shm.exists() {
                assert_eq!(mode(&shm), 0o600, "-shm");
            }
            seen_wal = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = waiting.await.expect("join").expect("wait");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(seen_wal, "the -wal was never seen during the run");
    assert_eq!(mode(&h.checkpoint()), 0o600, "checkpoint");
    assert_eq!(mode(&h.path("checkpoint.sqlite.lock")), 0o600, "lock");
    assert_eq!(mode(&report), 0o600, "report");
    // Sanity: the umask really was permissive for other files the shell creates.
    let probe = h.path("probe");
    let status = std::process::Command::new("sh")
        .args([
            "-c",
            "umask 022 && : > \"$0\"",
            probe.to_str().expect("utf-8"),
        ])
        .status()
        .expect("sh");
    assert!(status.success());
    assert_eq!(mode(&probe), 0o644);
}

// ---------------------------------------------------------------------------------------
// Issue 21: secrets, links and files against a hostile server and a shared machine.
// ---------------------------------------------------------------------------------------

/// A file standing where an output goes, and what must become of it: left exactly as it
/// was.
struct Victim {
    path: std::path::PathBuf,
    content: &'static str,
}

impl Victim {
    const CONTENT: &'static str = "precious data that must survive\n";

    fn plant(h: &Harness) -> Victim {
        Victim::plant_with(h, Self::CONTENT)
    }

    fn plant_with(h: &Harness, content: &'static str) -> Victim {
        let path = h.path("victim.txt");
        std::fs::write(&path, content).expect("victim");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        Victim { path, content }
    }

    /// A symlink at `name` in the harness dir pointing at the victim.
    fn link_from(&self, h: &Harness, name: &str) -> std::path::PathBuf {
        let link = h.path(name);
        std::os::unix::fs::symlink(&self.path, &link).expect("symlink");
        link
    }

    fn assert_untouched(&self) {
        assert_eq!(
            std::fs::read_to_string(&self.path).expect("victim readable"),
            self.content,
            "the symlink's target was written"
        );
        assert_eq!(mode(&self.path), 0o644, "the symlink's target changed mode");
    }
}

/// Exit 2, stderr names `path` and the symlink, no API call.
fn assert_refused_as_symlink(h: &Harness, out: &common::Output, path: &Path) {
    h.expect_code(out, 2);
    assert!(
        out.stderr.contains(&path.display().to_string()),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    assert_eq!(h.state().api_requests(), 0, "{}", h.describe_state());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_at_the_report_path_is_refused_and_its_target_untouched() {
    let h = Harness::with_users(1).await;
    let victim = Victim::plant(&h);
    let report = victim.link_from(&h, "report.csv");
    let csv = h.write("users.csv", generated_csv(1, 1));
    let out = h
        .run(&csv, &["--report", report.to_str().expect("utf-8")])
        .await;
    assert_refused_as_symlink(&h, &out, &report);
    victim.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_at_the_lock_file_is_refused_and_its_target_untouched() {
    let h = Harness::with_users(1).await;
    let victim = Victim::plant(&h);
    let lock = victim.link_from(&h, "checkpoint.sqlite.lock");
    let csv = h.write("users.csv", generated_csv(1, 1));
    let out = h.run(&csv, &[]).await;
    assert_refused_as_symlink(&h, &out, &lock);
    victim.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_at_the_checkpoint_path_is_refused_and_its_target_untouched() {
    let h = Harness::with_users(1).await;
    // Empty, like a fresh log file: SQLite would happily make a checkpoint of it.
    let victim = Victim::plant_with(&h, "");
    let checkpoint = victim.link_from(&h, "checkpoint.sqlite");
    let csv = h.write("users.csv", generated_csv(1, 1));
    let out = h.run(&csv, &[]).await;
    assert_refused_as_symlink(&h, &out, &checkpoint);
    victim.assert_untouched();
}

/// The metrics file is replaced by `rename`; a symlink there is refused at start-up (a
/// planted link at a guessable temp name is covered by `metrics`' unit tests: the temp
/// name is random and created exclusively now).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_at_the_metrics_file_is_refused_before_any_request() {
    let h = Harness::with_users(1).await;
    let victim = Victim::plant(&h);
    let metrics = victim.link_from(&h, "podero.prom");
    let csv = h.write("users.csv", generated_csv(1, 1));
    let out = h
        .run(&csv, &["--metrics-file", metrics.to_str().expect("utf-8")])
        .await;
    assert_refused_as_symlink(&h, &out, &metrics);
    victim.assert_untouched();
    assert!(metrics.is_symlink(), "the link itself was replaced");
}

/// `links <csv> --out <out>` on the harness's checkpoint with the session flags, plus `extra`.
fn links_command(h: &Harness, csv: &Path, out: &Path, extra: &[&str]) -> tokio::process::Command {
    let checkpoint = h.checkpoint();
    let mut args = vec![
        "links",
        csv.to_str().expect("utf-8"),
        "--checkpoint",
        checkpoint.to_str().expect("utf-8"),
        "--language",
        "de",
        "--price-zone",
        "AT",
        "--success-url",
        "https://partner.example/ok",
        "--cancel-url",
        "https://partner.example/cancel",
        "--out",
        out.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    h.command(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_at_links_out_is_refused_and_its_target_untouched() {
    let h = Harness::with_users(2).await;
    let csv = h.write("users.csv", generated_csv(2, 1));
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 0);
    let victim = Victim::plant(&h);
    let links_out = victim.link_from(&h, "links.csv");
    let out = h.exec_with(links_command(&h, &csv, &links_out, &[])).await;
    h.expect_code(&out, 2);
    assert!(
        out.stderr.contains(&links_out.display().to_string())
            && out.stderr.contains("symbolic link"),
        "{}",
        out.stderr
    );
    assert!(h.state().sessions.is_empty(), "{}", h.describe_state());
    victim.assert_untouched();
}

/// A FIFO at `--report` used to block the run forever (an open for writing waits for a
/// reader); anything but a regular file is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_at_the_report_path_is_refused_not_waited_on() {
    let h = Harness::with_users(1).await;
    let fifo = h.path("report.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let csv = h.write("users.csv", generated_csv(1, 1));
    let out = h
        .run(&csv, &["--report", fifo.to_str().expect("utf-8")])
        .await;
    h.expect_code(&out, 2);
    assert!(
        out.stderr.contains("FIFO, not a regular file"),
        "{}",
        out.stderr
    );
    assert_eq!(h.state().api_requests(), 0, "{}", h.describe_state());
}

/// A checkpoint left world-readable (0644), with the -wal and -shm a reader holds open,
/// is narrowed to 0600 by the next run, which says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_world_readable_checkpoint_wal_and_shm_are_narrowed_to_0600() {
    let h = Harness::with_users(2).await;
    let csv = h.write("users.csv", generated_csv(2, 1));
    h.expect_code(&h.run(&csv, &[]).await, 0);
    let checkpoint = h.checkpoint();
    std::fs::set_permissions(&checkpoint, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    // A reader keeps the -wal and -shm in place; SQLite creates them with the database's
    // (wide) mode.
    let reader = rusqlite::Connection::open(&checkpoint).expect("open");
    let rows: i64 = reader
        .query_row("SELECT count(*) FROM rows", [], |r| r.get(0))
        .expect("query");
    assert_eq!(rows, 2);
    let wal = h.path("checkpoint.sqlite-wal");
    let shm = h.path("checkpoint.sqlite-shm");
    for file in [&wal, &shm] {
        assert_eq!(mode(file), 0o644, "{} before the run", file.display());
    }
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 0);
    for file in [&checkpoint, &wal, &shm] {
        assert_eq!(mode(file), 0o600, "{} after the run", file.display());
    }
    assert!(
        out.stderr
            .contains("was readable or writable by other accounts (mode 644)"),
        "{}",
        out.stderr
    );
    drop(reader);
}

