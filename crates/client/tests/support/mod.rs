//! A scripted HTTP/1.1 server on 127.0.0.1 for client tests: each connection gets one request,
//! recorded with its headers and arrival time, and a reply of raw bytes chosen by a script.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long any wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One received request.
#[derive(Debug, Clone)]
pub struct Request {
    /// 0 for the first connection, 1 for the next…
    pub index: usize,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does on a connection, in order. After the last step it closes the connection.
#[derive(Debug, Clone)]
pub enum Step {
    Write(Vec<u8>),
    /// Lets a write go out as its own TCP segment, so the client reads the stream in pieces.
    Pause(Duration),
    /// Keeps the connection open, silent, until the client closes it.
    Hold,
}

pub fn write(bytes: impl AsRef<[u8]>) -> Step {
    Step::Write(bytes.as_ref().to_vec())
}

/// The head of an event-stream response whose body lasts until the connection closes.
pub fn sse_head() -> Step {
    write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n")
}

/// A complete response with a status, extra header lines and a body.
pub fn response(status: &str, headers: &str, body: &str) -> Step {
    write(format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
}

pub struct Server {
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Request>,
    closed: mpsc::UnboundedReceiver<(usize, Instant)>,
    accepted: Arc<AtomicUsize>,
}

impl Server {
    /// Starts a server whose reply to each request is `script(&request)`.
    pub async fn start(script: impl Fn(&Request) -> Vec<Step> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let index = counter.fetch_add(1, Ordering::SeqCst);
                let script = script.clone();
                let requests_tx = requests_tx.clone();
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    if let Some(at) = serve(socket, index, &*script, requests_tx).await {
                        let _ = closed_tx.send((index, at));
                    }
                });
            }
        });
        Self {
            addr,
            requests,
            closed,
            accepted,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request, in arrival order.
    pub async fn request(&mut self) -> Request {
        tokio::time::timeout(PATIENCE, self.requests.recv())
            .await
            .expect("timed out waiting for a request")
            .expect("server gone")
    }

    /// The next connection the server finished with: its index and when it began closing it
    /// (before the client can have seen the end).
    pub async fn closed(&mut self) -> (usize, Instant) {
        tokio::time::timeout(PATIENCE, self.closed.recv())
            .await
            .expect("timed out waiting for a connection to close")
            .expect("server gone")
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut socket: TcpStream,
    index: usize,
    script: &(dyn Fn(&Request) -> Vec<Step> + Send + Sync),
    requests: mpsc::UnboundedSender<Request>,
) -> Option<Instant> {
    let request = read_request(&mut socket, index).await?;
    let steps = script(&request);
    let _ = requests.send(request);
    for step in steps {
        match step {
            Step::Write(bytes) => {
                if socket.write_all(&bytes).await.is_err() || socket.flush().await.is_err() {
                    return Some(Instant::now());
                }
            }
            Step::Pause(time) => tokio::time::sleep(time).await,
            Step::Hold => {
                let mut sink = [0u8; 1024];
                while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                return Some(Instant::now());
            }
        }
    }
    let at = Instant::now();
    let _ = socket.shutdown().await;
    Some(at)
}

async fn read_request(socket: &mut TcpStream, index: usize) -> Option<Request> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&chunk[..n]);
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        index,
        method,
        path,
        headers,
        body,
        at,
    })
}
