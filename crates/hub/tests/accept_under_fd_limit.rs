//! The lean server under a real open-file limit. The server runs in a child process (this test
//! binary again, running only [`child_server`]) whose `RLIMIT_NOFILE` is lowered before the hub
//! and server are built, so the limit is the server's alone: the clients here have the usual
//! one. Linux only (`/proc` for the child's CPU time).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use http::StatusCode;
use ssehub_hub::Hub;
use ssehub_hub::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT_ENV: &str = "SSEHUB_TEST_CHILD_FD_LIMIT";
const CAPS_ENV: &str = "SSEHUB_TEST_CHILD_CAPS";
const PATIENCE: Duration = Duration::from_secs(10);

/// The server side, run in the child only (a no-op in the parent): lowers the open-file limit,
/// serves `/events` (uid from the query) and `POST /push` on a free port, prints `PORT <port>`
/// and the default caps, and exits when its stdin closes.
#[test]
fn child_server() {
    let Ok(limit) = std::env::var(LIMIT_ENV) else {
        return;
    };
    let limit: u64 = limit.parse().unwrap();
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(limit),
            maximum: hard,
        },
    )
    .unwrap();
    let caps_off = std::env::var(CAPS_ENV).is_ok_and(|caps| caps == "off");
    std::thread::spawn(|| {
        // The parent closes our stdin (or dies): time to go.
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut hub = Hub::builder().heartbeat(None);
        if caps_off {
            hub = hub.max_streams(usize::MAX);
        }
        let hub = hub.build().unwrap();
        let fallback = axum::Router::new().route("/push", ssehub_hub::axum::push(hub.clone()));
        let mut server = Server::builder(hub, |parts: &http::request::Parts| {
            std::future::ready(
                parts
                    .uri
                    .query()
                    .and_then(|query| query.strip_prefix("uid="))
                    .map(str::to_owned)
                    .ok_or(StatusCode::UNAUTHORIZED),
            )
        })
        .fallback(fallback);
        if caps_off {
            server = server.max_connections(usize::MAX);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("PORT {}", listener.local_addr().unwrap().port());
        println!(
            "CAPS {} {}",
            ssehub_hub::admission::default_max_streams(),
            ssehub_hub::admission::default_max_connections()
        );
        std::io::stdout().flush().unwrap();
        server.build().unwrap().serve(listener).await;
    });
}

/// The child server; killed when dropped.
struct ChildServer {
    child: Child,
    addr: SocketAddr,
    caps: (usize, usize),
}

impl ChildServer {
    fn start(limit: u64, caps: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child_server", "--exact", "--nocapture", "--test-threads=1"])
            .env(LIMIT_ENV, limit.to_string())
            .env(CAPS_ENV, caps)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut port = None;
        let mut caps = None;
        while port.is_none() || caps.is_none() {
            let line = lines.next().expect("the child server exited").unwrap();
            // The harness prints "test child_server ... " before our first line.
            if let Some((_, rest)) = line.split_once("PORT ") {
                port = Some(rest.parse::<u16>().unwrap());
            } else if let Some((_, rest)) = line.split_once("CAPS ") {
                let (streams, connections) = rest.split_once(' ').unwrap();
                caps = Some((streams.parse().unwrap(), connections.parse().unwrap()));
            }
        }
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port.unwrap())),
            caps: caps.unwrap(),
        }
    }

    /// The child's user + system CPU time so far.
    fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name (which ends with the last ')'): utime is the 12th.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let per_second = rustix::param::clock_ticks_per_second();
        Duration::from_millis(ticks * 1000 / per_second)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an event-stream attempt got.
#[derive(Debug, PartialEq)]
enum Answer {
    Stream,
    OverCapacity,
    Unavailable { retry_after: bool },
}

/// Opens `/events?uid=<uid>` and reads the answer's start within `patience`; the socket is
/// returned to keep the stream open.
async fn attempt(addr: SocketAddr, uid: &str, patience: Duration) -> Option<(Answer, TcpStream)> {
    tokio::time::timeout(patience, async {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(format!("GET /events?uid={uid} HTTP/1.1\r\nHost: hub\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                if head.starts_with("HTTP/1.1 503") {
                    let retry_after = head.to_ascii_lowercase().contains("\r\nretry-after: ");
                    return (Answer::Unavailable { retry_after }, socket);
                }
                assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
                if body.starts_with(":ok\n") {
                    return (Answer::Stream, socket);
                }
                if body.starts_with(":over capacity\n") {
                    return (Answer::OverCapacity, socket);
                }
            }
            let n = socket.read_buf(&mut buf).await.unwrap_or(0);
            assert!(n > 0, "the connection ended: {text:?}");
        }
    })
    .await
    .ok()
}

/// Reads from an open stream until `needle` arrives.
async fn wait_for(socket: &mut TcpStream, needle: &str) {
    let mut buf = BytesMut::new();
    tokio::time::timeout(PATIENCE, async {
        while !String::from_utf8_lossy(&buf).contains(needle) {
            assert!(
                socket.read_buf(&mut buf).await.unwrap() > 0,
                "the stream ended"
            );
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{needle:?} never came: {buf:?}"));
}

/// Under a 256-descriptor limit with the default caps (224 streams, 240 connections), 320
/// stream attempts are all answered, a `POST /push` still gets `200` and reaches every stream,
/// and connections past the cap get `503` with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_256_descriptors_everyone_is_answered_and_push_still_works() {
    let server = ChildServer::start(256, "default");
    assert_eq!(server.caps, (224, 240));
    let addr = server.addr;
    let attempts: Vec<_> = (0..320)
        .map(|n| tokio::spawn(async move { attempt(addr, &format!("u{n}"), PATIENCE).await }))
        .collect();
    let mut streams = Vec::new();
    let mut refused = 0;
    for (n, attempt) in attempts.into_iter().enumerate() {
        let (answer, socket) = attempt.await.unwrap().unwrap_or_else(|| {
            panic!("attempt {n} got no answer");
        });
        match answer {
            Answer::Stream => streams.push(socket),
            Answer::OverCapacity => refused += 1,
            Answer::Unavailable { retry_after } => {
                assert!(retry_after);
                refused += 1;
            }
        }
    }
    assert_eq!((streams.len(), refused), (224, 96));

    // Every stream slot is taken: a publisher still gets in, and reaches all of them.
    let body = r#"{"events":[{"data":"after the fill"}]}"#;
    let mut push = TcpStream::connect(addr).await.unwrap();
    push.write_all(
        format!(
            "POST /push HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    wait_for(&mut push, "HTTP/1.1 200 OK\r\n").await;
    for stream in &mut streams {
        wait_for(stream, "data: after the fill\n").await;
    }

    // Connections of any kind past the connection cap are answered 503 at once.
    drop(push);
    let mut unavailable = 0;
    let mut idle = Vec::new();
    for _ in 0..40 {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(200), socket.read(&mut buf)).await {
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                assert!(text.starts_with("http/1.1 503"), "{text}");
                assert!(text.contains("\r\nretry-after: "), "{text}");
                unavailable += 1;
            }
            // Admitted, waiting for a request: it holds a slot.
            Err(_) => idle.push(socket),
            Ok(Err(error)) => panic!("{error}"),
        }
    }
    assert!(
        idle.len() <= 240 - 224,
        "{} idle connections admitted",
        idle.len()
    );
    assert_eq!(unavailable + idle.len(), 40);
}

/// With the caps off, `accept` runs out of descriptors: the server neither spins nor stays
/// stuck, and answers the waiting client as soon as a connection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_accept_loop_backs_off_and_recovers() {
    let server = ChildServer::start(64, "off");
    let addr = server.addr;
    let mut streams = Vec::new();
    let waiting = loop {
        assert!(streams.len() < 64, "never ran out of descriptors");
        let uid = format!("u{}", streams.len());
        let pending = tokio::spawn(async move { attempt(addr, &uid, PATIENCE).await });
        // Answered at once while descriptors last; the first one left waiting is past them.
        match tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                if pending.is_finished() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        {
            Ok(()) => {
                let (answer, socket) = pending.await.unwrap().unwrap();
                assert_eq!(answer, Answer::Stream);
                streams.push(socket);
            }
            Err(_) => break pending,
        }
    };
    assert!(streams.len() >= 40, "only {} streams", streams.len());

    // Out of descriptors for a second: the accept loop waits rather than spins.
    let before = server.cpu_time();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = server.cpu_time() - before;
    assert!(
        spent < Duration::from_millis(200),
        "{spent:?} of CPU in 1 s"
    );
    assert!(!waiting.is_finished());

    // A stream ends: its descriptor goes to the waiting client at once.
    let freed = tokio::time::Instant::now();
    streams.truncate(streams.len() - 5);
    let (answer, _socket) = waiting.await.unwrap().expect("never answered");
    assert_eq!(answer, Answer::Stream);
    let took = freed.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "answered {took:?} after a stream ended"
    );
    let (answer, _another) = attempt(addr, "later", PATIENCE).await.unwrap();
    assert_eq!(answer, Answer::Stream);
}
