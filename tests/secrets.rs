//! Secrets, transport and files (issue 8): the client secret and every token stay out of
//! stdout, stderr, logs at every level, the report and the checkpoint, even when the
//! server echoes them back; credentials are never flags; plain http only to loopback;
//! every file the job writes is owner-only.

use crate::common;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Parser;
use common::hostile::{HostileServer, Reply, Request};
use common::{Harness, generated_csv};
use podero_onboard::api::{ClientConfig, Credentials};
use podero_onboard::cli::{Cli, Command};
use podero_onboard::commands::run::RunConfig;
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
        // SQLite may delete the -wal and -shm at any moment: read each mode once, if there.
        let present_mode = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| m.permissions().mode() & 0o777)
        };
        if h.state().count("create_building") >= 1
            && let Some(wal_mode) = present_mode(&wal)
        {
            assert_eq!(wal_mode, 0o600, "-wal");
            if let Some(shm_mode) = present_mode(&shm) {
                assert_eq!(shm_mode, 0o600, "-shm");
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

/// Error messages are cut at this many characters; the echoes below straddle the cut.
const MESSAGE_CUT: usize = 300;

/// A 31-character token the scripted server issues, echoed back where the cut falls
/// inside it (12 of its characters before the cut, as in the review).
const STRADDLING_TOKEN: &str = "T0k3nStraddlingTheCut0123456789";

/// A server that issues [`STRADDLING_TOKEN`] and answers every API call with `api`.
async fn scripted_api(
    token: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    api: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> HostileServer {
    HostileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), move |request| {
        if request.path == "/oauth2/token/" {
            token(request)
        } else {
            api(request)
        }
    })
    .await
    .expect("scripted server starts")
}

fn issue_straddling_token(_: &Request) -> Reply {
    Reply::json(
        200,
        &json!({"access_token": STRADDLING_TOKEN, "expires_in": 36000, "token_type": "Bearer"}),
    )
}

/// `run` on one row against `server` with `-vv`, `--json` and a report; `secret` as the
/// client secret. Returns the output and every file the run left, as (name, bytes).
async fn run_against_scripted(
    server: &HostileServer,
    secret: &str,
) -> (common::Output, Vec<(String, Vec<u8>)>) {
    let h = Harness::new(sandbox::Builder::new()).await;
    let csv = h.write("users.csv", generated_csv(1, 1));
    let report = h.path("report.csv");
    let args = h.run_args(
        &csv,
        &["-vv", "--json", "--report", report.to_str().expect("utf-8")],
    );
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = h.command(&strs);
    cmd.env("PODERO_BASE_URL", server.base_url())
        .env("PODERO_CLIENT_ID", CLIENT_ID)
        .env("PODERO_CLIENT_SECRET", secret);
    let out = h.exec_with(cmd).await;
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let files = std::fs::read_dir(h.dir.path())
        .expect("temp dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect();
    (out, files)
}

/// Every place `needle` was found: stdout, stderr, or a file of the run.
fn places_holding(needle: &str, out: &common::Output, files: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    let mut look = |place: &str, bytes: &[u8]| {
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            found.push(format!("{needle:?} in {place}"));
        }
    };
    look("stdout", out.stdout.as_bytes());
    look("stderr", out.stderr.as_bytes());
    for (name, bytes) in files {
        if name != "users.csv" {
            look(name, bytes);
        }
    }
    found
}

/// No `fragment` anywhere the run wrote, and `echo` (the redacted echo) on stderr: the
/// server's words did reach the outputs, so finding no fragment proves something.
fn assert_redacted_whole(
    out: &common::Output,
    files: &[(String, Vec<u8>)],
    fragments: &[&str],
    echo: &str,
) {
    for fragment in fragments {
        let leaks = places_holding(fragment, out, files);
        assert!(leaks.is_empty(), "{leaks:?}\n{}", out.stderr);
    }
    assert!(
        out.stderr.contains(echo),
        "the echo did not reach stderr, so the scan proves nothing:\n{}",
        out.stderr
    );
}

/// The API of a server whose token endpoint refuses: never called.
fn no_api_call(_: &Request) -> Reply {
    Reply::json(
        500,
        &json!({"detail": "no API call may follow a refused token"}),
    )
}

/// The review's case: a 404 body of filler plus the echoed `Authorization` header, so
/// that the 300-character cut falls after the first 12 characters of the token. They
/// must not reach stderr, the report or the checkpoint's `rows.error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_straddling_the_message_cut_is_redacted_whole() {
    let prefix = "Not Found, you sent ";
    let filler = "f".repeat(MESSAGE_CUT - 12 - prefix.len() - "Bearer ".len());
    let server = scripted_api(issue_straddling_token, move |request| {
        let auth = request.header("authorization").unwrap_or_default();
        Reply::json(404, &json!({"detail": format!("{filler}{prefix}{auth}")}))
    })
    .await;
    let (out, files) = run_against_scripted(&server, "cs-straddle").await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    let fragment = &STRADDLING_TOKEN[..12];
    assert_redacted_whole(&out, &files, &[fragment], "you sent Bearer [redacted");
}

/// The token endpoint's 401 echoes `Authorization: Basic base64(id:secret)` where the cut
/// falls inside the base64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_straddling_the_message_cut_are_redacted_whole() {
    let secret = format!("cs-{}", uuid::Uuid::new_v4().simple());
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{secret}"));
    let lead = "invalid_client: ".len() + " you sent Basic ".len();
    let filler = "f".repeat(MESSAGE_CUT - 12 - lead);
    let server = scripted_api(
        move |request| {
            let auth = request.header("authorization").unwrap_or_default();
            Reply::json(
                401,
                &json!({"error": "invalid_client",
                        "error_description": format!("{filler} you sent {auth}")}),
            )
        },
        no_api_call,
    )
    .await;
    let (out, files) = run_against_scripted(&server, &secret).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_redacted_whole(&out, &files, &[&basic[..12]], "you sent Basic [redacted");
}

/// A secret with a double space and a tab: collapsing whitespace before redaction made it
/// unmatchable (echoed whole), and the cut left its start (echoed across the cut).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_with_spaces_is_redacted_whole_even_across_the_cut() {
    let secret = "correct horse  battery\tstaple 2024";
    let server = scripted_api(
        move |_| {
            let lead = format!("bad credentials: {secret} ");
            let filler = "f".repeat(MESSAGE_CUT - 10 - lead.chars().count());
            Reply::json(401, &json!({"detail": format!("{lead}{filler}{secret}")}))
        },
        no_api_call,
    )
    .await;
    let (out, files) = run_against_scripted(&server, secret).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    let words = ["correct", "horse", "battery", "staple"];
    assert_redacted_whole(&out, &files, &words, "bad credentials: [redacted]");
}

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

/// A Podero for `run` then `links`: token, PUT user, POST building (a new id each), no
/// heat pumps, and `session(user index, request)` for the session POST.
async fn links_server(
    session: impl Fn(u64, &Request) -> Reply + Send + Sync + 'static,
) -> HostileServer {
    HostileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), move |request| {
        let path = request.path.as_str();
        match request.method.as_str() {
            "POST" if path == "/oauth2/token/" => issue_straddling_token(request),
            "PUT" if path.starts_with("/api/") => {
                let id = path.rsplit('/').next().unwrap_or_default();
                Reply::json(200, &json!({"id": id}))
            }
            "POST" if path.ends_with("/buildings") => {
                Reply::json(201, &json!({"id": uuid::Uuid::new_v4(), "name": "Home 0"}))
            }
            "GET" if path.ends_with("/heat-pumps") => Reply::json(200, &json!([])),
            "POST" if path.ends_with("/device-onboarding") => {
                let body: serde_json::Value =
                    serde_json::from_slice(&request.body).unwrap_or_default();
                let user = body["user_id"]
                    .as_str()
                    .and_then(|id| u64::from_str_radix(id.get(24..)?, 16).ok())
                    .unwrap_or(u64::MAX);
                session(user, request)
            }
            _ => Reply::json(404, &json!({"detail": "Not Found"})),
        }
    })
    .await
    .expect("scripted server starts")
}

/// `run`, then `links --out links.csv -vv --json` with `extra`, both against `server`.
async fn run_then_links(h: &Harness, users: usize, server: &HostileServer) -> common::Output {
    let csv = h.write("users.csv", generated_csv(users, 1));
    let args = h.run_args(&csv, &[]);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = h.command(&strs);
    run.env("PODERO_BASE_URL", server.base_url());
    h.expect_code(&h.exec_with(run).await, 0);
    let extra = ["--timeout", "3", "-vv", "--json"];
    let mut links = links_command(h, &csv, &h.path("links.csv"), &extra);
    links.env("PODERO_BASE_URL", server.base_url());
    h.exec_with(links).await
}

/// The checkpoint's bytes with its -wal, to search for what must not be there.
fn checkpoint_bytes(h: &Harness) -> Vec<u8> {
    let mut bytes = std::fs::read(h.checkpoint()).expect("checkpoint");
    bytes.extend(std::fs::read(h.path("checkpoint.sqlite-wal")).unwrap_or_default());
    bytes
}

/// A 409 to the session POST quoting the session id bare and a link without its scheme
/// (`connect.podero.com/s/<id>`): neither may reach the `-vv` log, the warning line, the
/// summary, the `--json` summary or the checkpoint's `links.error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_and_schemeless_links_in_a_session_error_stay_out_of_every_output() {
    let session = "8c4b2f0e-6a1d-4e3b-9f7a-2d5c1e0b3a49";
    let h = Harness::new(sandbox::Builder::new()).await;
    let server = links_server(move |_, _| {
        Reply::json(
            409,
            &json!({"detail": format!(
                "a session already exists for this building: {session} \
                 (open connect.podero.com/s/{session} to continue)"
            )}),
        )
    })
    .await;
    let out = run_then_links(&h, 1, &server).await;
    h.expect_code(&out, 1);
    assert!(
        out.stderr
            .contains("a session already exists for this building"),
        "the body must still be told, without its ids:\n{}",
        out.stderr
    );
    let checkpoint = checkpoint_bytes(&h);
    for needle in [session, "connect.podero.com/s", &session[..8]] {
        for (place, bytes) in [
            ("stderr", out.stderr.as_bytes()),
            ("stdout", out.stdout.as_bytes()),
            ("the checkpoint", &checkpoint[..]),
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in {place}:\n{}",
                out.stderr
            );
        }
    }
}

/// What the server answers for the session of user `i`: a link that must be refused
/// (not https, a control character), or one on another host (kept, warned about once).
fn session_with_link(user: u64, _: &Request) -> Reply {
    let id = uuid::Uuid::new_v4();
    let link = match user {
        0 => format!("javascript:alert(1)//connect.podero.com?onboarding_session_id={id}"),
        1 => format!("http://connect.podero.com?onboarding_session_id={id}"),
        2 => format!("https://connect.podero.com/\u{1b}[2J?onboarding_session_id={id}"),
        3 => format!("https://links.elsewhere.example/?onboarding_session_id={id}"),
        _ => format!("https://connect.podero.com?onboarding_session_id={id}"),
    };
    Reply::json(
        200,
        &json!({"id": id, "authentication_url": link, "expiration_date": "2999-12-31"}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_links_are_checked_before_they_are_stored_or_mailed() {
    let h = Harness::new(sandbox::Builder::new()).await;
    let server = links_server(session_with_link).await;
    let out = run_then_links(&h, 5, &server).await;
    h.expect_code(&out, 1);
    let mailed = std::fs::read_to_string(h.path("links.csv")).expect("--out");
    let stored: Vec<String> = {
        let conn = rusqlite::Connection::open(h.checkpoint()).expect("open");
        let mut stmt = conn
            .prepare("SELECT link FROM links WHERE link IS NOT NULL")
            .expect("query");
        stmt.query_map([], |r| r.get(0))
            .expect("links")
            .collect::<Result<_, _>>()
            .expect("decode")
    };
    assert_eq!(stored.len(), 2, "{stored:?}\n{}", out.stderr);
    for link in &stored {
        assert!(link.starts_with("https://"), "{link:?}");
        assert!(!link.contains('\u{1b}'), "{link:?}");
        assert!(mailed.contains(link.as_str()), "{mailed}");
    }
    for refused in ["javascript:", "http://connect", "\u{1b}"] {
        assert!(!mailed.contains(refused), "{refused:?} in --out:\n{mailed}");
    }
    assert!(out.stderr.contains("does not use https"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("holds control, bidi or space characters"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr
            .matches("point at a host under elsewhere.example")
            .count(),
        1,
        "one warning for the other host:\n{}",
        out.stderr
    );
}

/// Reads the standalone simulator's stderr up to the end of its banner.
async fn read_banner(stderr: tokio::process::ChildStderr) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut banner = String::new();
    let reading = async {
        while let Some(line) = lines.next_line().await.expect("stderr") {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), reading)
        .await
        .unwrap_or_else(|_| panic!("no banner within 20 s"));
    banner
}

/// One HTTP/1.1 request on a fresh connection; returns the status code.
async fn http_status(addr: std::net::SocketAddr, head: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {text}"))
}

/// `podero-onboard sandbox`: the client secret only from PODERO_SANDBOX_CLIENT_SECRET (no
/// flag), neither it nor the admin token in the banner, `/__sandbox/*` closed without the
/// admin token, and a warning for a bind address other hosts can reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_simulator_keeps_its_secrets_out_of_flags_and_banner_and_guards_its_state() {
    let secret = format!("sandbox-secret-{}", uuid::Uuid::new_v4().simple());
    let admin = format!("admin-token-{}", uuid::Uuid::new_v4().simple());
    let mut child = tokio::process::Command::new(common::BIN)
        .args(["sandbox", "--port", "0", "--bind", "0.0.0.0"])
        .env_clear()
        .env("PODERO_SANDBOX_CLIENT_SECRET", &secret)
        .env("PODERO_SANDBOX_ADMIN_TOKEN", &admin)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sandbox starts");
    let banner = read_banner(child.stderr.take().expect("stderr")).await;
    assert!(
        !banner.contains(&secret),
        "client secret in the banner:\n{banner}"
    );
    assert!(
        !banner.contains(&admin),
        "admin token in the banner:\n{banner}"
    );
    assert!(
        banner.contains("warning: --bind 0.0.0.0 is not a loopback address"),
        "{banner}"
    );
    let port: u16 = banner
        .split("listening on http://0.0.0.0:")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in:\n{banner}"));
    let addr = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let get_state = |auth: &str| {
        format!("GET /__sandbox/state HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
    };
    assert_eq!(http_status(addr, &get_state("")).await, 401);
    let wrong = get_state("Authorization: Bearer not-the-token\r\n");
    assert_eq!(http_status(addr, &wrong).await, 401);
    let right = get_state(&format!("Authorization: Bearer {admin}\r\n"));
    assert_eq!(http_status(addr, &right).await, 200);
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{secret}", sandbox::DEMO_CLIENT_ID));
    let body = r#"{"grant_type": "client_credentials"}"#;
    let token = format!(
        "POST /oauth2/token/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(
        http_status(addr, &token).await,
        200,
        "the secret from the environment is the one accepted"
    );
    child.start_kill().expect("stop the simulator");
    let _ = child.wait().await;
    let flag = Cli::try_parse_from(["podero-onboard", "sandbox", "--client-secret", "x"]);
    assert!(flag.is_err(), "--client-secret must not exist");
}
