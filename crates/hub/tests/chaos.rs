//! Chaos: a client reads a continuous run of pushes while it is cut off at random points and the
//! hub process (embedded store on disk) is killed with SIGKILL and restarted. At the end the
//! client must hold every pushed event exactly once, in order.
//!
//! The hub runs in a child process: this test binary started again with
//! `chaos_hub_process` selected and the store's directory and port in its environment.
#![allow(clippy::unwrap_used)] // helpers in test code: a panic is how a test reports

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use futures_util::StreamExt;
use ssehub_client::ClientBuilder;
use ssehub_hub::Hub;
use ssehub_hub::server::Server;
use ssehub_hub::store::{RedbStore, Retention};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const DIR_VAR: &str = "SSEHUB_CHAOS_DIR";
const ADDR_VAR: &str = "SSEHUB_CHAOS_ADDR";
const READY: &str = "chaos hub ready";

/// Pushes in the run, kills of the hub, and how often the client cuts itself off.
const PUSHES: u32 = 600;
const KILL_EVERY: u32 = 97;
const CUT_ONE_IN: u64 = 23;
const PATIENCE: Duration = Duration::from_secs(60);

/// The hub process. Does nothing in a normal test run: only as the chaos test's child.
#[tokio::test]
#[ignore = "the chaos test's hub process; the chaos test starts it"]
async fn chaos_hub_process() {
    let (Ok(dir), Ok(addr)) = (std::env::var(DIR_VAR), std::env::var(ADDR_VAR)) else {
        return;
    };
    let store = RedbStore::open(&dir, Retention::events(100_000)).unwrap();
    let hub = Hub::builder()
        .store(store)
        .resend(true)
        .client_retry(Duration::from_millis(20))
        .build()
        .unwrap();
    // Served the way the example server serves: the lean stream path, the push API behind it.
    let server = Server::builder(hub.clone(), |_: &http::request::Parts| async {
        Ok::<_, http::StatusCode>("reader".to_owned())
    })
    .fallback(Router::new().route("/push", ssehub_hub::axum::push(hub.clone())))
    .build()
    .unwrap();
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("{READY}");
    server.serve(listener).await;
}

/// Starts the hub process and waits until it listens.
async fn start_hub(dir: &Path, addr: SocketAddr) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["chaos_hub_process", "--exact", "--ignored", "--nocapture"])
        .env(DIR_VAR, dir)
        .env(ADDR_VAR, addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(READY) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the hub process did not start");
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

#[tokio::test]
async fn every_event_arrives_once_and_in_order_through_cuts_and_kills() {
    let dir = std::env::temp_dir().join(format!("ssehub-chaos-{}", ulid::Ulid::generate()));
    let addr = {
        // A free port, reused by every run of the hub.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let mut hub = start_hub(&dir, addr).await;
    let url = format!("http://{addr}/events");

    // The reader: resumes from its last id after every cut, and follows the client's own
    // reconnection when the hub dies under it.
    let (received, mut numbers) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut last_id = String::new();
        let mut cuts = 0u32;
        let mut state = 0x9E37_79B9_7F4A_7C15u64; // xorshift: reproducible "random" cut points
        loop {
            let mut builder = ClientBuilder::new(url.clone())
                .reconnection_time(Duration::from_millis(20))
                .max_reconnect_delay(Duration::from_millis(200))
                .idle_timeout(Some(Duration::from_secs(10)));
            if !last_id.is_empty() {
                builder = builder.last_event_id(last_id.clone());
            }
            let mut events = builder.build_stream().unwrap();
            loop {
                let Some(event) = events.next().await else {
                    return cuts;
                };
                let Ok(event) = event else { continue }; // a failed attempt; it reconnects
                let Ok(n) = event.data.parse::<u32>() else {
                    panic!("unexpected event {event:?}");
                };
                last_id = events.last_event_id().as_str().to_owned();
                if received.send(n).is_err() || n + 1 == PUSHES {
                    return cuts;
                }
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if state.is_multiple_of(CUT_ONE_IN) {
                    cuts += 1;
                    break; // drop the stream: a cut at a random point
                }
            }
        }
    });

    let mut kills = 0;
    for n in 0..PUSHES {
        // Retry until confirmed: a push is only retried when the hub was not running, since
        // kills happen between pushes (a push the hub confirmed must survive the kill).
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while let Err(error) = push(addr, n).await {
            assert!(tokio::time::Instant::now() < deadline, "push {n}: {error}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if n % KILL_EVERY == KILL_EVERY - 1 {
            hub.start_kill().unwrap(); // SIGKILL
            hub.wait().await.unwrap();
            kills += 1;
            hub = start_hub(&dir, addr).await;
        }
    }

    let cuts = tokio::time::timeout(PATIENCE, reader)
        .await
        .expect("the reader did not get every event in time")
        .unwrap();
    let mut got = Vec::new();
    while let Ok(n) = numbers.try_recv() {
        got.push(n);
    }
    let expected: Vec<u32> = (0..PUSHES).collect();
    assert_eq!(got, expected, "after {kills} kills and {cuts} cuts");
    assert!(kills >= 5 && cuts >= 5, "kills {kills}, cuts {cuts}");
    hub.start_kill().ok();
    std::fs::remove_dir_all(&dir).ok();
}

/// Pushes `n` with the few lines of HTTP/1.1 this needs, over a fresh connection each time so
/// that a killed hub never leaves a dead pooled connection behind. `Err` unless confirmed.
async fn push(addr: SocketAddr, n: u32) -> Result<(), String> {
    let body = format!(r#"{{"events":[{{"data":"{n}"}}]}}"#);
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!(
        "POST /push HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    if response.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("the hub answered: {response}"))
    }
}
