//! The floor of a first run's HTTP, for the benchmark (issue 25): the two requests of a
//! row (`PUT .../users/{id}`, `POST .../users/{id}/buildings`) sent to the static
//! responder with nothing else — no CSV, no checkpoint, no limiter, no retries — at
//! `CONCURRENCY` rows at once, so `/usr/bin/time` shows what the HTTP client alone costs
//! per row. `scripts/bench.sh` prints it next to the job.
//!
//! Usage: `http_floor BASE_URL ROWS CLIENT`, CLIENT one of
//! - `reqwest`: the job's client stack (reqwest, configured as `api::Client` configures
//!   it) on the job's runtime (one thread);
//! - `reqwest-mt`: the same on tokio's multi-threaded runtime (a worker per core), which
//!   the job used before issue 25;
//! - `hyper`: hyper's bare HTTP/1.1 connections (no pool, no redirect or timeout layer),
//!   one per task, on one thread: about the least any client could spend on these
//!   requests.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

const CONCURRENCY: usize = 32;
const USER_BODY: &str = r#"{"external_user_id":"CRM-00000000"}"#;
const BUILDING_BODY: &str = r#"{"name":"Home"}"#;
const ORG: &str = "6f726700-0000-4000-8000-000000000001";

#[derive(serde::Deserialize)]
struct Created {
    id: uuid::Uuid,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, rows, client] = args.as_slice() else {
        return Err("usage: http_floor BASE_URL ROWS reqwest|reqwest-mt|hyper".into());
    };
    let rows: u64 = rows.parse()?;
    let created = match client.as_str() {
        "reqwest" => one_thread()?.block_on(with_reqwest(base, rows))?,
        "reqwest-mt" => tokio::runtime::Runtime::new()?.block_on(with_reqwest(base, rows))?,
        "hyper" => one_thread()?.block_on(with_hyper(base, rows))?,
        other => {
            return Err(format!("unknown client {other}: reqwest, reqwest-mt or hyper").into());
        }
    };
    if created != rows {
        return Err(format!("{created} buildings created for {rows} rows").into());
    }
    println!("{rows} rows, {created} buildings");
    Ok(())
}

fn one_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn user(n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | u128::from(n))
}

async fn with_reqwest(base: &str, rows: u64) -> Result<u64, Box<dyn std::error::Error>> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| "crypto provider")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let api = reqwest::Url::parse(&format!("{base}/api/partners/v2.0/org/{ORG}"))?;
    let row = |n: u64| {
        let (http, mut url) = (http.clone(), api.clone());
        async move {
            url.path_segments_mut()
                .map_err(|()| "base")?
                .extend(["users", &user(n).to_string()]);
            let put = http.put(url.clone()).bearer_auth("static-bench-token");
            let put = put.header("content-type", "application/json");
            put.body(USER_BODY).send().await?.bytes().await?;
            url.path_segments_mut()
                .map_err(|()| "base")?
                .push("buildings");
            let post = http.post(url).bearer_auth("static-bench-token");
            let post = post.header("content-type", "application/json");
            let body = post.body(BUILDING_BODY).send().await?.bytes().await?;
            let Created { id } = serde_json::from_slice(&body)?;
            Ok::<_, Box<dyn std::error::Error>>(u64::from(!id.is_nil()))
        }
    };
    let mut created = 0;
    let mut rows = futures::stream::iter(0..rows)
        .map(row)
        .buffer_unordered(CONCURRENCY);
    while let Some(row) = rows.next().await {
        created += row?;
    }
    Ok(created)
}

async fn with_hyper(base: &str, rows: u64) -> Result<u64, Box<dyn std::error::Error>> {
    let authority = base.trim_start_matches("http://").to_owned();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..CONCURRENCY as u64 {
        let stream = tokio::net::TcpStream::connect(&authority).await?;
        stream.set_nodelay(true)?;
        let (mut send, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let authority = authority.clone();
        tasks.spawn(async move {
            let mut created = 0;
            for n in (task..rows).step_by(CONCURRENCY) {
                let path = format!("/api/partners/v2.0/org/{ORG}/users/{}", user(n));
                let request = |method, uri: String, body: &'static str| {
                    hyper::Request::builder()
                        .method(method)
                        .uri(uri)
                        .header("host", &authority)
                        .header("authorization", "Bearer static-bench-token")
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                };
                let put = request(hyper::Method::PUT, path.clone(), USER_BODY)?;
                send.send_request(put).await?.collect().await?;
                let post = request(
                    hyper::Method::POST,
                    format!("{path}/buildings"),
                    BUILDING_BODY,
                )?;
                let body = send.send_request(post).await?.collect().await?.to_bytes();
                let Created { id } = serde_json::from_slice(&body)?;
                created += u64::from(!id.is_nil());
            }
            Ok::<u64, Box<dyn std::error::Error + Send + Sync>>(created)
        });
    }
    let mut created = 0;
    while let Some(task) = tasks.join_next().await {
        created += task?.map_err(|e| e.to_string())?;
    }
    Ok(created)
}
