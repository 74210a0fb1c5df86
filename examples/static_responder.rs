//! A minimal static HTTP responder for benchmarks: it answers the calls of a
//! `podero-onboard run` as cheaply as possible, so that the client is what is
//! measured, not the server.
//!
//! - `POST /oauth2/token/` → 200 with a bearer token;
//! - `PUT .../users/{user_id}` → 200 `{"id": "<user_id>"}`;
//! - `POST .../users/{user_id}/buildings` → 201 `{"id": "<uuid>", "name": "bench"}`, the id
//!   a counter formatted as a UUID (fresh for every request);
//! - `GET .../users/{user_id}/buildings` → 200 `[]`;
//! - `GET /__bench/count` → the number of API requests answered (token excluded);
//! - anything else → 404 `{"detail": "Not Found"}`.
//!
//! No validation, no state beyond two counters. Usage:
//! `cargo run --release --example static_responder -- [PORT]` (0 or none: any free port);
//! it prints `listening on http://127.0.0.1:PORT` on stdout and serves until killed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const TOKEN: &[u8] =
    br#"{"access_token":"static-bench-token","expires_in":36000,"token_type":"Bearer","scope":"read write"}"#;

/// Counters shared by every connection.
#[derive(Default)]
struct Counters {
    buildings: AtomicU64,
    requests: AtomicU64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(0);
    // One worker thread: on a 2-core machine the client gets the other core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(port))
}

async fn serve(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let counters = Arc::new(Counters::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, Arc::clone(&counters)));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(
    request: Request<Incoming>,
    counters: Arc<Counters>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // Read (and discard) the body so the connection can be reused.
    let _ = request.into_body().collect().await;
    if method == Method::POST && path == "/oauth2/token/" {
        return Ok(json(StatusCode::OK, Bytes::from_static(TOKEN)));
    }
    if method == Method::GET && path == "/__bench/count" {
        let count = counters.requests.load(Ordering::Relaxed);
        return Ok(json(StatusCode::OK, Bytes::from(count.to_string())));
    }
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let answer = match (&method, segments.as_slice()) {
        (&Method::PUT, [.., "users", user]) => {
            json(StatusCode::OK, Bytes::from(format!(r#"{{"id":"{user}"}}"#)))
        }
        (&Method::POST, [.., "users", _, "buildings"]) => {
            let n = counters.buildings.fetch_add(1, Ordering::Relaxed) + 1;
            let id =
                uuid::Uuid::from_u128(0xb1d0_0000_0000_4000_8000_0000_0000_0000 | u128::from(n));
            json(
                StatusCode::CREATED,
                Bytes::from(format!(r#"{{"id":"{id}","name":"bench"}}"#)),
            )
        }
        (&Method::GET, [.., "users", _, "buildings"]) => {
            json(StatusCode::OK, Bytes::from_static(b"[]"))
        }
        _ => json(
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"detail":"Not Found"}"#),
        ),
    };
    Ok(answer)
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
