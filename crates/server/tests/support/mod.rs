//! Shared by the serve tests: a `Hubserver` on 127.0.0.1:0 in-process, raw HTTP/1.1 requests,
//! and an SSE reader over a raw socket.
#![allow(dead_code)] // each test file uses a different part
#![allow(clippy::unwrap_used)] // test support: a panic is how a test reports

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use ssehub_server::config::{Config, Settings, StoreKind};
use ssehub_server::units::Size;
use ssehub_wire::{Decoder, Event, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// The publisher key of these tests.
pub const KEY: &str = "publisher-key-of-the-tests-0123456789";
/// The HS256 secret of these tests.
pub const SECRET: &str = "a-secret-of-the-tests-that-is-long-enough";

pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("timed out waiting")
}

/// A fresh directory under the system's temp directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ssehub-serve-test-{name}-{}-{}",
        std::process::id(),
        ulid::Ulid::generate()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The settings most tests start from: any free port, memory store, known key and secret.
pub fn settings() -> Settings {
    Settings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        store: Some(StoreKind::Memory),
        data_dir: Some(temp_dir("data")),
        publisher_key: Some(KEY.to_owned()),
        jwt_secret: Some(SECRET.to_owned()),
        max_push_bytes: Some(Size(64 * 1024)),
        max_event_bytes: Some(Size(16 * 1024)),
        ..Settings::default()
    }
}

/// A running `Hubserver`.
pub struct Running {
    pub addr: SocketAddr,
    pub hub: ssehub_hub::Hub,
    pub banner: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    pub async fn start(settings: Settings) -> Self {
        Self::start_prepared(settings, |_| async {}).await
    }

    /// Binds, lets `prepare` use the hub (push to it, say) before a client can be served, then
    /// serves: clients already knocking wait in the listen queue meanwhile.
    pub async fn start_prepared<F, Fut>(settings: Settings, prepare: F) -> Self
    where
        F: FnOnce(ssehub_hub::Hub) -> Fut,
        Fut: Future<Output = ()>,
    {
        let config = Config::from_settings(settings).unwrap();
        let server = ssehub_server::Hubserver::bind(config).await.unwrap();
        prepare(server.hub().clone()).await;
        let addr = server.local_addr();
        let hub = server.hub().clone();
        let banner = server.banner();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async {
            stopped.await.ok();
        }));
        Self {
            addr,
            hub,
            banner,
            stop: Some(stop),
            task,
        }
    }

    /// Shuts down as a signal would, and waits until the server has returned (and so has let
    /// go of its store: this test's handle on the hub goes first).
    pub async fn stop(self) {
        let Self {
            hub, stop, task, ..
        } = self;
        drop(hub);
        if let Some(stop) = stop {
            stop.send(()).ok();
        }
        within(task).await.unwrap();
    }

    pub async fn request(&self, text: &str) -> Answer {
        request(self.addr, text).await
    }

    /// `POST /push` with `body` and this bearer credential.
    pub async fn push(&self, bearer: Option<&str>, body: &str) -> Answer {
        let auth = bearer
            .map(|b| format!("Authorization: Bearer {b}\r\n"))
            .unwrap_or_default();
        self.request(&format!(
            "POST /push HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
        .await
    }

    /// `GET <target>` with these extra header lines, as a stream.
    pub async fn stream(&self, target: &str, headers: &str) -> Sse {
        Sse::open(self.addr, target, headers).await
    }
}

/// A whole answer to a request sent with `Connection: close`.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The value of header `name` (lower case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The envelope's `msg`.
    pub fn msg(&self) -> String {
        let value: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body));
        value["msg"].as_str().unwrap_or_default().to_owned()
    }
}

/// Sends `request` (its head gets `Connection: close`) and reads the whole answer.
pub async fn request(addr: SocketAddr, request: &str) -> Answer {
    let mut socket = within(TcpStream::connect(addr)).await.unwrap();
    let request = request.replacen("\r\n", "\r\nConnection: close\r\n", 1);
    within(socket.write_all(request.as_bytes())).await.unwrap();
    let mut bytes = Vec::new();
    within(socket.read_to_end(&mut bytes)).await.ok();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    // Bodies here are small and sent whole: chunked framing is undone crudely.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        head: head.to_owned(),
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// An event stream read over a raw socket.
pub struct Sse {
    pub head: String,
    pub status: u16,
    socket: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Sse {
    pub async fn open(addr: SocketAddr, target: &str, headers: &str) -> Self {
        let mut socket = within(TcpStream::connect(addr)).await.unwrap();
        let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n");
        within(socket.write_all(request.as_bytes())).await.unwrap();
        let mut buf = BytesMut::new();
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = buf.split_to(end + 4);
                break String::from_utf8(head.to_vec()).unwrap();
            }
            buf.reserve(4096);
            let n = within(socket.read_buf(&mut buf)).await.unwrap();
            assert!(n > 0, "closed before a head: {buf:?}");
        };
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        Self {
            head,
            status,
            socket,
            buf,
            decoder: Decoder::new(),
        }
    }

    /// The rest of the body until the server closes (for refusals).
    pub async fn rest(mut self) -> String {
        let mut rest = self.buf.to_vec();
        within(self.socket.read_to_end(&mut rest)).await.ok();
        String::from_utf8_lossy(&rest).into_owned()
    }

    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(frame);
            }
            self.buf.reserve(4096);
            match within(self.socket.read_buf(&mut self.buf)).await {
                Ok(n) if n > 0 => {}
                _ => return self.decoder.decode_eof(&mut self.buf).unwrap(),
            }
        }
    }

    /// The next event; `None` when the stream ends.
    pub async fn event(&mut self) -> Option<Event> {
        loop {
            match self.frame().await? {
                Frame::Event(event) => return Some(event),
                Frame::Comment(_) | Frame::Retry(_) => {}
            }
        }
    }

    /// The next event's data (panics if the stream ends).
    pub async fn data(&mut self) -> String {
        let event = self.event().await.expect("the stream ended");
        event.data.as_str().to_owned()
    }
}

/// A subscriber token signed with the tests' secret.
pub fn token(claims: &ssehub_server::auth::Claims) -> String {
    ssehub_server::auth::sign_hs256(claims, SECRET).unwrap()
}
