//! Runs through a corporate-style proxy (issue 14): a small in-test proxy (CONNECT for
//! HTTPS, absolute-form forwarding for plain HTTP) that demands Basic credentials.
//! `HTTPS_PROXY`/`NO_PROXY` are honoured for https, a loopback `http://` run never goes
//! through a proxy (issue 21), and the proxy's password, given in the URL, never appears in
//! stdout, stderr at `-vv`, the report or the checkpoint, including when the proxy is
//! unreachable or refuses.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use common::pki::TestPki;
use common::{Harness, Output, generated_csv, states};
use podero_onboard::sandbox;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const USERS: usize = 10;
const PROXY_USER: &str = "proxyuser";
const PROXY_PASSWORD: &str = "pr0xy-s3cret-pw";

/// How the test proxy answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Tunnels/forwards when the credentials are right, 407 otherwise.
    Forward,
    /// Always 407 Proxy Authentication Required.
    Refuse,
}

/// A running test proxy and what it saw.
struct Proxy {
    addr: SocketAddr,
    /// Requests (plain HTTP) or tunnels (CONNECT) that carried the right
    /// `Proxy-Authorization` and were passed on.
    passed: Arc<AtomicUsize>,
    /// Requests seen at all.
    seen: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start(mode: Mode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (passed, seen) = (Arc::default(), Arc::default());
        let counters = (Arc::clone(&passed), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let counters = (Arc::clone(&counters.0), Arc::clone(&counters.1));
                connections.spawn(handle(client, mode, counters));
            }
        });
        Proxy {
            addr,
            passed,
            seen,
            task,
        }
    }

    /// `http://user:password@127.0.0.1:PORT`.
    fn url(&self) -> String {
        format!("http://{PROXY_USER}:{PROXY_PASSWORD}@{}", self.addr)
    }
}

/// One client connection: read the request head, check the credentials, then tunnel
/// (CONNECT) or forward the request as is to the host of its absolute URI.
async fn handle(
    mut client: TcpStream,
    mode: Mode,
    (passed, seen): (Arc<AtomicUsize>, Arc<AtomicUsize>),
) {
    let Some(head) = read_head(&mut client).await else {
        return;
    };
    seen.fetch_add(1, Ordering::SeqCst);
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut words = text.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let expected = format!(
        "proxy-authorization: basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{PROXY_USER}:{PROXY_PASSWORD}"))
    )
    .to_lowercase();
    let authorized = text.to_lowercase().lines().any(|l| l.trim() == expected);
    if mode == Mode::Refuse || !authorized {
        let _ = client
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    }
    passed.fetch_add(1, Ordering::SeqCst);
    let (host, connect) = match method {
        "CONNECT" => (target.to_owned(), true),
        _ => (
            target
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("")
                .to_owned(),
            false,
        ),
    };
    let Ok(mut upstream) = TcpStream::connect(&host).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if connect {
        let _ = client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await;
    } else if upstream.write_all(&one_request_only(&head)).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// A forwarded head with `Connection: close`: the server closes after its answer, so the
/// client sends its next request on a new proxy connection, and `passed` counts every
/// request, not every connection.
fn one_request_only(head: &[u8]) -> Vec<u8> {
    let mut head = head[..head.len() - 2].to_vec();
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    head
}

/// Reads up to the end of the request head (bounded), keeping any bytes of a body.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// A port where nothing listens.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Fails if the proxy password, or its Basic encoding, is anywhere the user can see.
fn assert_password_nowhere(h: &Harness, out: &Output) {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{PROXY_USER}:{PROXY_PASSWORD}"));
    for (what, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !text.contains(PROXY_PASSWORD) && !text.contains(&basic),
            "the proxy password is in {what}:\n{text}"
        );
    }
    for entry in std::fs::read_dir(h.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(PROXY_PASSWORD) && !text.contains(&basic),
            "the proxy password is in {}",
            path.display()
        );
    }
}

/// `run` with `-vv`, `--report` and `--json`, so every output channel is exercised.
fn run_command(h: &Harness, env: &[(&str, String)], extra: &[&str]) -> tokio::process::Command {
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    let report = h.path("report.csv");
    let mut args = vec!["-vv", "--json", "--report", report.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut cmd = h.command(&[]);
    cmd.args(h.run_args(&csv, &args));
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_run_goes_through_the_connect_proxy_of_https_proxy() {
    let pki = TestPki::new();
    let h = Harness::new(
        sandbox::Builder::new()
            .generated_users(USERS)
            .tls(pki.server_tls()),
    )
    .await;
    let proxy = Proxy::start(Mode::Forward).await;
    let ca = h.write("ca.pem", &pki.ca_pem);
    let cmd = run_command(
        &h,
        &[("HTTPS_PROXY", proxy.url())],
        &["--ca-cert", ca.to_str().unwrap()],
    );
    let out = h.exec_with(cmd).await;
    h.expect_code(&out, 0);
    // Every connection the server accepted came through a tunnel of the proxy: none
    // went around it (the harness reads the simulator in-process, not over TCP).
    let tunnels = proxy.passed.load(Ordering::SeqCst);
    assert!(tunnels >= 1, "no CONNECT reached the proxy");
    assert_eq!(
        tunnels as u64,
        h.sandbox.connections_accepted(),
        "the server accepted connections that did not come through the proxy"
    );
    assert_eq!(states(&h.checkpoint_rows())["done"], USERS);
    h.assert_no_duplicates_and_map_matches();
    assert_password_nowhere(&h, &out);
}

/// Plain http is only allowed to loopback, and a proxy would carry the Basic credentials
/// and tokens in clear text (issue 21): HTTP_PROXY and ALL_PROXY are not used for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_loopback_run_never_goes_through_a_proxy() {
    let h = Harness::with_users(USERS).await;
    let proxy = Proxy::start(Mode::Forward).await;
    let env = [
        ("HTTP_PROXY", proxy.url()),
        ("http_proxy", proxy.url()),
        ("ALL_PROXY", proxy.url()),
    ];
    let out = h.exec_with(run_command(&h, &env, &[])).await;
    h.expect_code(&out, 0);
    assert_eq!(
        proxy.seen.load(Ordering::SeqCst),
        0,
        "a loopback http:// run went through the proxy"
    );
    assert_eq!(states(&h.checkpoint_rows())["done"], USERS);
    assert_password_nowhere(&h, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_sends_matching_hosts_directly() {
    let pki = TestPki::new();
    let h = Harness::new(
        sandbox::Builder::new()
            .generated_users(USERS)
            .tls(pki.server_tls()),
    )
    .await;
    let proxy = Proxy::start(Mode::Forward).await;
    let ca = h.write("ca.pem", &pki.ca_pem);
    let env = [
        ("HTTPS_PROXY", proxy.url()),
        ("NO_PROXY", "localhost,127.0.0.1".to_owned()),
    ];
    let out = h
        .exec_with(run_command(&h, &env, &["--ca-cert", ca.to_str().unwrap()]))
        .await;
    h.expect_code(&out, 0);
    assert_eq!(proxy.seen.load(Ordering::SeqCst), 0, "NO_PROXY was ignored");
    assert_eq!(states(&h.checkpoint_rows())["done"], USERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_proxy_stops_the_run_without_showing_its_password() {
    let pki = TestPki::new();
    let h = Harness::new(
        sandbox::Builder::new()
            .generated_users(USERS)
            .tls(pki.server_tls()),
    )
    .await;
    let dead = format!(
        "http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{}",
        closed_port().await
    );
    let ca = h.write("ca.pem", &pki.ca_pem);
    let env = [("HTTPS_PROXY", dead.clone()), ("HTTP_PROXY", dead)];
    let out = h
        .exec_with(run_command(&h, &env, &["--ca-cert", ca.to_str().unwrap()]))
        .await;
    h.expect_code(&out, 3);
    assert_eq!(h.state().tokens_issued, 0, "{}", h.describe_state());
    assert!(
        out.stderr.contains("proxy set in HTTPS_PROXY"),
        "{}",
        out.stderr
    );
    assert_password_nowhere(&h, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_proxy_stops_the_run_without_showing_its_password() {
    let pki = TestPki::new();
    let h = Harness::new(
        sandbox::Builder::new()
            .generated_users(USERS)
            .tls(pki.server_tls()),
    )
    .await;
    let proxy = Proxy::start(Mode::Refuse).await;
    let ca = h.write("ca.pem", &pki.ca_pem);
    let env = [("HTTPS_PROXY", proxy.url())];
    let out = h
        .exec_with(run_command(&h, &env, &["--ca-cert", ca.to_str().unwrap()]))
        .await;
    h.expect_code(&out, 3);
    assert!(
        proxy.seen.load(Ordering::SeqCst) >= 1,
        "the proxy was not asked"
    );
    assert_eq!(h.state().tokens_issued, 0, "{}", h.describe_state());
    assert!(
        out.stderr.contains("proxy authorization required"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("proxy set in HTTPS_PROXY"),
        "{}",
        out.stderr
    );
    assert_password_nowhere(&h, &out);
}
