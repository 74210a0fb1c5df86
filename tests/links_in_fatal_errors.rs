//! A Connect link or session id quoted by the server in a *fatal*
//! answer to the session POST (403) must not reach stderr (`-vv`), the `--json` summary or
//! the checkpoint, exactly like the non-fatal answers `links::worker::redact_links` covers.
//!
//! `run` and `links` talk to a scripted server (tests/hostile): it onboards the one row,
//! lists no heat pumps and refuses the session POST with a 403 whose body quotes a link.

mod common;
mod hostile;

use std::net::{IpAddr, Ipv4Addr};

use common::{Harness, generated_csv};
use hostile::{HostileServer, Reply};
use serde_json::json;

const SECRET: &str = "S3SSION7SECRET";
const BUILDING: &str = "b0000000-0000-4000-8000-000000000001";

async fn refusing_server() -> HostileServer {
    HostileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), |request| {
        let path = request.path.as_str();
        match request.method.as_str() {
            "POST" if path == "/oauth2/token/" => Reply::json(
                200,
                &json!({"access_token": "scripted-token", "expires_in": 36000, "token_type": "Bearer"}),
            ),
            "PUT" if path.starts_with("/api/") => {
                let id = path.rsplit('/').next().unwrap_or_default();
                Reply::json(200, &json!({"id": id, "external_user_id": "CRM-0"}))
            }
            "POST" if path.ends_with("/buildings") => {
                Reply::json(201, &json!({"id": BUILDING, "name": "Home"}))
            }
            "GET" if path.ends_with("/heat-pumps") => Reply::json(200, &json!([])),
            "POST" if path.ends_with("/device-onboarding") => Reply::json(
                403,
                &json!({"detail": format!(
                    "forbidden: a session exists https://connect.podero.com/?onboarding_session_id={SECRET}"
                )}),
            ),
            _ => Reply::json(404, &json!({"detail": "Not Found"})),
        }
    })
    .await
    .expect("scripted server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_quoted_in_a_fatal_session_answer_is_redacted() {
    let h = Harness::with_users(1).await;
    let csv = h.write("users.csv", generated_csv(1, 1));
    let server = refusing_server().await;
    let run_args = h.run_args(&csv, &[]);
    let run_args: Vec<&str> = run_args.iter().map(String::as_str).collect();
    let mut run = h.command(&run_args);
    run.env("PODERO_BASE_URL", server.base_url());
    let out = h.exec_with(run).await;
    h.expect_code(&out, 0);
    let checkpoint = h.checkpoint();
    let args = [
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
        "--timeout",
        "3",
        "-vv",
        "--json",
    ];
    let mut cmd = h.command(&args);
    cmd.env("PODERO_BASE_URL", server.base_url());
    let out = h.exec_with(cmd).await;
    h.expect_code(&out, 3);
    let posts = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/device-onboarding"))
        .count();
    assert_eq!(posts, 1, "the session POST was sent once:\n{}", out.stderr);
    assert!(
        !out.stderr.contains(SECRET),
        "session id in stderr:\n{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains(SECRET),
        "session id in the summary:\n{}",
        out.stdout
    );
    let db = std::fs::read(&checkpoint).expect("checkpoint");
    let wal = std::fs::read(format!("{}-wal", checkpoint.display())).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "session id in the checkpoint"
        );
    }
}
