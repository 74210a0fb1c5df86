//! A tiny hostile HTTP/1.1 server for tests: a raw `TcpListener` on an ephemeral port
//! that reads one request per connection, logs it, and writes whatever canned bytes the
//! test's handler returns (well-formed or not, all at once or a byte per second).
//! Every answer closes the connection, so the client never reuses a poisoned one.
//!
//! [`scripted_podero`] is the usual start: a server that answers the token request and
//! user PUTs like Podero, and whatever else the test scripts.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The request target, query string included.
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (by `Content-Length`).
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What to send back.
pub enum Reply {
    /// Raw bytes, written at once (write errors are ignored: the client may hang up).
    Raw(Vec<u8>),
    /// Raw bytes, one byte per `every`.
    Drip { bytes: Vec<u8>, every: Duration },
    /// Close the connection without a word.
    Close,
    /// `reply` after a pause.
    Late { after: Duration, reply: Box<Reply> },
}

impl Reply {
    /// A complete response with `Content-Length` and `Connection: close`.
    pub fn new(status: u16, headers: &[(&str, &str)], body: impl AsRef<[u8]>) -> Reply {
        Reply::Raw(response_bytes(status, headers, body.as_ref()))
    }

    /// A JSON response.
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply::new(
            status,
            &[("Content-Type", "application/json")],
            body.to_string(),
        )
    }
}

/// The bytes of a complete response.
pub fn response_bytes(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// A token answer valid for ten hours.
pub fn token_reply() -> Reply {
    Reply::json(
        200,
        &serde_json::json!({"access_token": "scripted-token", "expires_in": 36000, "token_type": "Bearer"}),
    )
}

/// The answer to a user PUT: the user whose id ends the path.
pub fn user_put_reply(request: &Request) -> Reply {
    let id = request.path.rsplit('/').next().unwrap_or_default();
    Reply::json(
        200,
        &serde_json::json!({"id": id, "external_user_id": "CRM-0"}),
    )
}

/// A scripted Podero on `127.0.0.1:0`: `script` answers first; what it leaves (`None`)
/// gets [`token_reply`] on the token endpoint, [`user_put_reply`] for a user PUT, and
/// 404 otherwise.
pub async fn scripted_podero(
    script: impl Fn(&Request) -> Option<Reply> + Send + Sync + 'static,
) -> HostileServer {
    let localhost = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    HostileServer::start(localhost, move |request| {
        script(request).unwrap_or_else(|| match request.method.as_str() {
            "POST" if request.path == "/oauth2/token/" => token_reply(),
            "PUT" if request.path.starts_with("/api/") => user_put_reply(request),
            _ => Reply::json(404, &serde_json::json!({"detail": "Not Found"})),
        })
    })
    .await
    .expect("scripted server starts")
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// The running server; dropping it stops accepting.
pub struct HostileServer {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Request>>>,
    task: JoinHandle<()>,
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileServer {
    /// Listens on `ip:0`.
    pub async fn start(
        ip: IpAddr,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<HostileServer> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn(accept(listener, Arc::clone(&log), handler));
        Ok(HostileServer { addr, log, task })
    }

    /// `http://ip:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().expect("log lock").clone()
    }
}

async fn accept(listener: TcpListener, log: Arc<Mutex<Vec<Request>>>, handler: Arc<Handler>) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let log = Arc::clone(&log);
        let handler = Arc::clone(&handler);
        connections.spawn(async move {
            let _ = serve(stream, &log, &*handler).await;
        });
    }
}

async fn serve(
    mut stream: TcpStream,
    log: &Mutex<Vec<Request>>,
    handler: &Handler,
) -> std::io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else {
        return Ok(());
    };
    log.lock().expect("log lock").push(request.clone());
    let mut reply = handler(&request);
    while let Reply::Late {
        after,
        reply: later,
    } = reply
    {
        tokio::time::sleep(after).await;
        reply = *later;
    }
    match reply {
        Reply::Late { .. } => unreachable!("unwrapped above"),
        Reply::Raw(bytes) => {
            stream.write_all(&bytes).await?;
            stream.shutdown().await?;
        }
        Reply::Drip { bytes, every } => {
            for byte in bytes {
                stream.write_all(&[byte]).await?;
                stream.flush().await?;
                tokio::time::sleep(every).await;
            }
        }
        Reply::Close => {}
    }
    Ok(())
}

/// Reads the head (at most 64 KiB) and a `Content-Length` body (at most 1 MiB).
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > 64 << 10 {
            return Ok(None);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let method = start.next().unwrap_or_default().to_owned();
    let path = start.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
        .min(1 << 20);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}
