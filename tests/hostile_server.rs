//! A hostile server (issue 8): whatever it answers, the job never panics, never marks a
//! row done without a valid building id, never re-sends a POST blindly, never follows a
//! redirect with the token, and never waits longer than `--timeout`.
//!
//! The server (tests/common/hostile.rs) answers the token endpoint and the user PUT correctly, the
//! building POST with the case's hostile answer, and the list of buildings with 404 (so an
//! unknown outcome cannot be verified and the row must end `unresolved`).

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::hostile::{self, HostileServer, Reply, Request};
use common::{CheckpointRow, Harness, Output};
use podero_onboard::sandbox;
use serde_json::json;
use uuid::Uuid;

type Answer = Box<dyn Fn(&Request) -> Reply + Send + Sync>;

/// How the hostile Podero answers each kind of request.
struct Script {
    /// Given the 0-based number of the token request.
    token: Box<dyn Fn(usize) -> Reply + Send + Sync>,
    put: Answer,
    post: Answer,
}

fn good_token(_: usize) -> Reply {
    hostile::token_reply()
}

fn good_put(request: &Request) -> Reply {
    hostile::user_put_reply(request)
}

impl Script {
    /// Correct token and PUT; `post` for the building.
    fn posting(post: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Script {
        Script {
            token: Box::new(good_token),
            put: Box::new(good_put),
            post: Box::new(post),
        }
    }

    async fn start(self) -> HostileServer {
        let tokens = AtomicUsize::new(0);
        HostileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), move |request| {
            let path = request.path.as_str();
            match request.method.as_str() {
                "POST" if path == "/oauth2/token/" => {
                    (self.token)(tokens.fetch_add(1, Ordering::SeqCst))
                }
                "PUT" if path.starts_with("/api/") => (self.put)(request),
                "POST" if path.ends_with("/buildings") => (self.post)(request),
                _ => Reply::json(404, &json!({"detail": "Not Found"})),
            }
        })
        .await
        .expect("hostile server starts")
    }
}

/// What a run against a hostile server produced.
struct Ran {
    h: Harness,
    out: Output,
    server: HostileServer,
    elapsed: Duration,
}

impl Ran {
    fn rows(&self) -> Vec<CheckpointRow> {
        self.h.checkpoint_rows()
    }

    fn count(&self, method: &str, suffix: &str) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .count()
    }

    fn posts(&self) -> usize {
        self.count("POST", "/buildings")
    }

    /// Exit code, no panic, the one row in `state`, never `done` by mistake.
    fn expect(&self, code: i32, state: &str) -> CheckpointRow {
        self.h.expect_code(&self.out, code);
        assert!(!self.out.stderr.contains("panicked"), "{}", self.out.stderr);
        assert_eq!(
            self.h.state().requests.values().sum::<u64>(),
            0,
            "the simulator of the harness must see nothing"
        );
        let rows = self.rows();
        assert!(rows.len() <= 1, "{rows:?}");
        let row = rows
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no row\n{}", self.out.stderr));
        assert_eq!(row.state, state, "{row:?}\n{}", self.out.stderr);
        if state != "done" {
            assert_eq!(row.building_id, None, "{row:?}");
        }
        row
    }
}

/// One row for generated user 0 against `script`, with `extra` flags.
async fn run_against(script: Script, extra: &[&str]) -> Ran {
    let server = script.start().await;
    let h = Harness::new(sandbox::Builder::new()).await;
    let csv = h.write(
        "users.csv",
        format!(
            "user_id,external_user_id,building_name\n{},CRM-0,Home 0\n",
            sandbox::generated_user_id(0)
        ),
    );
    let args = h.run_args(&csv, extra);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = h.command(&strs);
    cmd.env("PODERO_BASE_URL", server.base_url());
    let started = Instant::now();
    let out = h.exec_with(cmd).await;
    Ran {
        h,
        out,
        server,
        elapsed: started.elapsed(),
    }
}

/// An unknown POST outcome: one POST, a check of the list (404 here), row `unresolved`.
async fn assert_unknown_outcome(post: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Ran {
    let ran = run_against(Script::posting(post), &[]).await;
    let row = ran.expect(1, "unresolved");
    assert!(
        row.error
            .as_deref()
            .is_some_and(|e| e.contains("cannot list buildings")),
        "{row:?}"
    );
    assert_eq!(
        ran.posts(),
        1,
        "an unknown outcome must never be re-posted blindly"
    );
    assert!(
        ran.count("GET", "/buildings") >= 1,
        "the outcome must be checked"
    );
    ran
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_page_with_200_on_post_is_an_unknown_outcome_not_done() {
    let ran = assert_unknown_outcome(|_| {
        Reply::new(
            200,
            &[("Content-Type", "text/html")],
            "<html><head><title>Welcome to nginx</title></head><body>hi</body></html>",
        )
    })
    .await;
    assert!(
        ran.out.stderr.contains("without a building id"),
        "{}",
        ran.out.stderr
    );
    assert!(
        ran.out.stderr.contains("Welcome to nginx"),
        "{}",
        ran.out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_201_is_an_unknown_outcome_not_done() {
    assert_unknown_outcome(|_| Reply::new(201, &[("Content-Type", "application/json")], "")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_201_is_an_unknown_outcome_not_done() {
    assert_unknown_outcome(|_| {
        Reply::new(201, &[("Content-Type", "application/json")], "{\"id\": ")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_uuid_id_201_is_an_unknown_outcome_not_done() {
    assert_unknown_outcome(|_| Reply::json(201, &json!({"id": "not-a-uuid", "name": "Home 0"})))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nil_or_numeric_id_201_is_never_done() {
    assert_unknown_outcome(|_| Reply::json(201, &json!({"id": 42}))).await;
}

/// 5 MiB of JSON whitespace before a valid id: the read stops at 1 MiB, so the id is
/// never seen and the outcome is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_201_body_is_read_at_most_1_mib_and_is_an_unknown_outcome() {
    let ran = assert_unknown_outcome(|_| {
        let mut body = vec![b' '; 5 << 20];
        body.extend_from_slice(format!("{{\"id\": \"{}\"}}", Uuid::new_v4()).as_bytes());
        Reply::new(201, &[("Content-Type", "application/json")], body)
    })
    .await;
    let row = &ran.rows()[0];
    assert!(
        row.error
            .as_deref()
            .is_some_and(|e| e.contains("larger than 1048576 bytes")),
        "{row:?}"
    );
}

/// A byte per second: `--timeout 2` gives up, the outcome is unknown, the run ends soon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_drip_response_times_out_and_is_an_unknown_outcome() {
    let ran = run_against(
        Script::posting(|_| Reply::Drip {
            bytes: hostile::response_bytes(
                201,
                &[("Content-Type", "application/json")],
                json!({"id": Uuid::new_v4()}).to_string().as_bytes(),
            ),
            every: Duration::from_secs(1),
        }),
        &["--timeout", "2"],
    )
    .await;
    let row = ran.expect(1, "unresolved");
    assert!(
        row.error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "{row:?}"
    );
    assert_eq!(ran.posts(), 1);
    assert!(
        ran.elapsed < Duration::from_secs(15),
        "the run took {:?}",
        ran.elapsed
    );
}

/// Chosen behaviour: the content type is not checked; a 2xx whose body is JSON with a
/// UUID `id` is a created building (Podero's docs do not promise a content type).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_plain_201_with_a_valid_id_is_accepted_leniently() {
    let id = Uuid::new_v4();
    let ran = run_against(
        Script::posting(move |_| {
            Reply::new(
                201,
                &[("Content-Type", "text/plain")],
                json!({"id": id, "name": "Home 0"}).to_string(),
            )
        }),
        &[],
    )
    .await;
    let row = ran.expect(0, "done");
    assert_eq!(row.building_id, Some(id.to_string()));
    assert_eq!(ran.posts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_500_on_post_is_an_unknown_outcome_and_not_retried() {
    let ran = assert_unknown_outcome(|_| {
        Reply::new(
            500,
            &[("Content-Type", "text/html")],
            "<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>\
             <body><h1>Oops</h1><script>alert(1)</script></body></html>",
        )
    })
    .await;
    assert!(
        ran.out.stderr.contains("500 Internal Server Error"),
        "{}",
        ran.out.stderr
    );
    assert!(!ran.out.stderr.contains("<script>"), "{}", ran.out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_500_on_put_is_retried_then_the_row_fails_without_a_post() {
    let mut script = Script::posting(|_| panic!("no POST may follow a failed PUT"));
    script.put = Box::new(|_| {
        Reply::new(
            500,
            &[("Content-Type", "text/html")],
            "<html><title>Bad Gateway</title></html>",
        )
    });
    let ran = run_against(script, &["--max-attempts", "3"]).await;
    let row = ran.expect(1, "failed");
    assert_eq!(row.http_status, Some(500), "{row:?}");
    let puts = ran
        .server
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert_eq!(puts, 3, "idempotent PUTs are retried up to --max-attempts");
    assert_eq!(ran.posts(), 0);
}

/// A second listener stands for "another host": it must never see a request, so the
/// token cannot leak through a redirect.
async fn thief() -> HostileServer {
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    match HostileServer::start(other, |_| Reply::json(200, &json!({"id": Uuid::new_v4()}))).await {
        Ok(server) => server,
        Err(_) => HostileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), |_| {
            Reply::json(200, &json!({"id": Uuid::new_v4()}))
        })
        .await
        .expect("second listener"),
    }
}

fn redirect_to(thief: &HostileServer) -> Arc<dyn Fn(&Request) -> Reply + Send + Sync> {
    let location = format!("{}/steal", thief.base_url());
    Arc::new(move |_| Reply::new(302, &[("Location", location.as_str())], ""))
}

fn assert_redirect_refused(ran: &Ran, thief: &HostileServer) {
    ran.h.expect_code(&ran.out, 3);
    assert!(!ran.out.stderr.contains("panicked"), "{}", ran.out.stderr);
    assert!(
        thief.requests().is_empty(),
        "a redirect was followed: {:?}",
        thief.requests()
    );
    assert!(ran.out.stderr.contains("redirect"), "{}", ran.out.stderr);
    assert!(
        ran.rows().iter().all(|r| r.state != "done"),
        "{:?}",
        ran.rows()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_on_post_is_fatal_and_not_followed() {
    let thief = thief().await;
    let redirect = redirect_to(&thief);
    let ran = run_against(Script::posting(move |r| redirect(r)), &[]).await;
    assert_redirect_refused(&ran, &thief);
    assert_eq!(ran.posts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_on_put_is_fatal_and_not_followed() {
    let thief = thief().await;
    let redirect = redirect_to(&thief);
    let mut script = Script::posting(|_| panic!("no POST after a redirected PUT"));
    script.put = Box::new(move |r| redirect(r));
    let ran = run_against(script, &[]).await;
    assert_redirect_refused(&ran, &thief);
    assert_eq!(ran.posts(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_on_the_token_endpoint_is_fatal_and_not_followed() {
    let thief = thief().await;
    let location = format!("{}/steal", thief.base_url());
    let mut script = Script::posting(|_| panic!("no POST without a token"));
    script.token = Box::new(move |_| Reply::new(302, &[("Location", location.as_str())], ""));
    let ran = run_against(script, &[]).await;
    ran.h.expect_code(&ran.out, 3);
    assert!(thief.requests().is_empty(), "{:?}", thief.requests());
    assert_eq!(ran.count("PUT", ""), 0);
    assert!(!ran.out.stderr.contains("panicked"), "{}", ran.out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_closed_without_answer_on_post_is_an_unknown_outcome() {
    assert_unknown_outcome(|_| Reply::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_http_on_post_is_an_unknown_outcome() {
    assert_unknown_outcome(|_| Reply::Raw(b"\x00\xffSSH-2.0-OpenSSH\r\n\r\n".to_vec())).await;
}

/// The token expires between the PUT and the POST and its renewal fails once with a 500:
/// the POST was never sent, so the row must not become an unknown outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_token_renewal_before_a_post_does_not_make_its_outcome_unknown() {
    let id = Uuid::new_v4();
    let mut script = Script::posting(move |_| Reply::json(201, &json!({"id": id})));
    script.token = Box::new(|n| match n {
        0 => Reply::json(
            200,
            &json!({"access_token": "short-lived", "expires_in": 1, "token_type": "Bearer"}),
        ),
        1 => Reply::new(500, &[], "<html><title>token service down</title></html>"),
        _ => good_token(n),
    });
    // The PUT outlives the first token (renewed 0.9 s after it was issued).
    script.put = Box::new(|r| Reply::Late {
        after: Duration::from_millis(1200),
        reply: Box::new(good_put(r)),
    });
    let ran = run_against(script, &[]).await;
    let row = ran.expect(0, "done");
    assert_eq!(row.building_id, Some(id.to_string()));
    assert_eq!(ran.posts(), 1);
}

/// A token response of 5 MiB (whitespace before a valid token) is not read whole: the
/// token endpoint gets the same 1 MiB bound as the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_token_response_is_refused_like_any_huge_body() {
    let mut script = Script::posting(|_| Reply::json(201, &json!({"id": Uuid::new_v4()})));
    script.token = Box::new(|_| {
        let mut body = vec![b' '; 5 << 20];
        body.extend_from_slice(br#"{"access_token": "t", "expires_in": 3600}"#);
        Reply::new(200, &[("Content-Type", "application/json")], body)
    });
    let ran = run_against(script, &[]).await;
    ran.h.expect_code(&ran.out, 3);
    assert!(!ran.out.stderr.contains("panicked"), "{}", ran.out.stderr);
    assert!(ran.out.stderr.contains("1048576"), "{}", ran.out.stderr);
    assert_eq!(ran.count("PUT", ""), 0);
}

/// `expires_in` is the server's word: absurd values must not crash the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_token_lifetimes_are_not_a_panic() {
    for expires_in in [
        json!(1e300),
        json!(1e19),
        json!(-5),
        json!("soon"),
        json!(null),
    ] {
        let id = Uuid::new_v4();
        let mut script = Script::posting(move |_| Reply::json(201, &json!({"id": id})));
        let lifetime = expires_in.clone();
        script.token = Box::new(move |_| {
            Reply::json(
                200,
                &json!({"access_token": "t", "expires_in": lifetime, "token_type": "Bearer"}),
            )
        });
        let ran = run_against(script, &[]).await;
        assert!(
            !ran.out.stderr.contains("panicked"),
            "expires_in {expires_in}: {}",
            ran.out.stderr
        );
        assert!(
            matches!(ran.out.code, 0 | 3),
            "expires_in {expires_in}: exit {}\n{}",
            ran.out.code,
            ran.out.stderr
        );
        if ran.out.code == 0 {
            assert_eq!(ran.rows()[0].building_id, Some(id.to_string()));
        }
    }
}
