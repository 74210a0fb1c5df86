//! Verifying an unknown POST outcome by name must not adopt a building
//! another checkpoint row owns. With `property_id`, two rows of one user may share a
//! building name; when the second row's POST fails ambiguously and the server lists only
//! the first row's building, adopting it would give two rows one building and lose the
//! second building.
//!
//! A scripted server (tests/hostile): the first building POST creates `OWNED`, every later
//! one answers an HTML 500 (unknown outcome, nothing created); the list of the user's
//! buildings always holds `OWNED` only.

mod common;
mod hostile;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Harness;
use hostile::{HostileServer, Reply};
use podero_onboard::sandbox;
use serde_json::json;

const OWNED: &str = "b0000000-0000-4000-8000-00000000000a";

async fn server() -> HostileServer {
    let posts = AtomicUsize::new(0);
    HostileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), move |request| {
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
                if posts.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::json(201, &json!({"id": OWNED, "name": "Home"}))
                } else {
                    Reply::new(500, &[("Content-Type", "text/html")], "<html>oops</html>")
                }
            }
            "GET" if path.ends_with("/buildings") => {
                Reply::json(200, &json!([{"id": OWNED, "name": "Home"}]))
            }
            _ => Reply::json(404, &json!({"detail": "Not Found"})),
        }
    })
    .await
    .expect("scripted server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_post_is_never_resolved_to_a_building_another_row_owns() {
    let h = Harness::with_users(1).await;
    let server = server().await;
    let user = sandbox::generated_user_id(0);
    let header = "user_id,external_user_id,property_id,building_name\n";
    let first = h.write("first.csv", format!("{header}{user},CRM-0,P1,Home\n"));
    let both = h.write(
        "both.csv",
        format!("{header}{user},CRM-0,P1,Home\n{user},CRM-0,P2,Home\n"),
    );
    for csv in [&first, &both] {
        let args = h.run_args(csv, &[]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = h.command(&args);
        cmd.env("PODERO_BASE_URL", server.base_url());
        let out = h.exec_with(cmd).await;
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    let rows = h.checkpoint_rows();
    let owners = rows
        .iter()
        .filter(|r| r.building_id.as_deref() == Some(OWNED))
        .count();
    assert_eq!(owners, 1, "one building, one row: {rows:?}");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter().any(|r| r.state != "done"),
        "the second row's building was never created: {rows:?}"
    );
}
