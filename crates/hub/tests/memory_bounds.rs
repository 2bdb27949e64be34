//! Memory bounded in bytes, over real sockets: hundreds of readers that pause while large
//! events are broadcast, then resume. Its own test binary, so that the process's peak resident
//! size (`VmHWM`) is this scenario's alone. Run with `--nocapture` to see the figures
//! (`docs/benchmarks.md`).
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

mod common;

use std::future::IntoFuture;
use std::time::Duration;

use common::within;
use ssehub_hub::server::Server;
use ssehub_hub::{Event, Hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::watch;

const READERS: usize = 300;
const EVENTS: usize = 200;
const EVENT_DATA: usize = 64 * 1024;

/// `VmRSS` and `VmHWM` (peak) of this process, in bytes.
fn resident() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_pause_while_large_events_are_broadcast_keep_the_server_bounded() {
    let hub = Hub::builder()
        .heartbeat(None)
        .close_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let server = Server::builder(hub.clone(), |parts: &http::request::Parts| {
        let uid = parts.uri.query().unwrap_or("anonymous").to_owned();
        std::future::ready(Ok::<_, http::StatusCode>(uid))
    })
    .build()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener).into_future());

    // Each reader reads its response head, pauses until told, then reads to the end.
    let (resume, resumed) = watch::channel(false);
    let mut readers = Vec::new();
    for n in 0..READERS {
        // A small receive window, so that the kernel does not absorb the backlog for us.
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        stream
            .write_all(format!("GET /events?u{n} HTTP/1.1\r\nHost: hub\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = [0; 512];
        let read = stream.read(&mut head).await.unwrap();
        assert!(head[..read].starts_with(b"HTTP/1.1 200"));
        let mut resumed = resumed.clone();
        readers.push(tokio::spawn(async move {
            resumed.wait_for(|go| *go).await.unwrap();
            let mut buf = vec![0; 64 * 1024];
            let mut total = 0;
            loop {
                match stream.read(&mut buf).await.unwrap() {
                    0 => return total,
                    n => total += n,
                }
            }
        }));
    }
    common::eventually("every reader is registered", || {
        hub.stats().connections == READERS
    })
    .await;
    let (before, _) = resident();

    for n in 0..EVENTS {
        let data = format!("{n:06} {}", "x".repeat(EVENT_DATA - 7));
        hub.broadcast([Event::new(data)]).await.unwrap();
    }
    let stats = hub.stats();
    // Close (it flushes what each stream holds), and let the readers take it all.
    let closing = tokio::spawn({
        let hub = hub.clone();
        async move { hub.close().await }
    });
    resume.send(true).unwrap();
    let mut received = 0;
    for reader in readers {
        received += within(reader).await.unwrap();
    }
    within(closing).await.unwrap();
    let (after, peak) = resident();

    // The bound: the distinct events (shared by every connection), one coalesced chunk per
    // connection at most, and 32 MiB for the allocator and the runtime.
    let events = (EVENTS * (EVENT_DATA + 64)) as u64;
    let chunks = (READERS * 64 * 1024) as u64;
    let bound = events + chunks + 32 * 1024 * 1024;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    eprintln!(
        "{READERS} paused readers, {EVENTS} x {} KiB broadcast: RSS {:.1} MiB before the pushes, \
         peak {:.1} MiB (+{:.1} MiB, bound +{:.1} MiB), {:.1} MiB after; {} deliveries queued, \
         {} failed, {:.1} MiB read by the readers",
        EVENT_DATA / 1024,
        mib(before),
        mib(peak),
        mib(peak.saturating_sub(before)),
        mib(bound),
        mib(after),
        stats.success,
        stats.failed,
        mib(received as u64),
    );
    assert!(
        stats.success >= READERS as u64,
        "every reader was owed events"
    );
    assert!(
        received >= (stats.success as usize) * EVENT_DATA,
        "the readers got every queued event"
    );
    assert!(
        peak.saturating_sub(before) < bound,
        "peak {} MiB over {} MiB before exceeds the bound of {} MiB",
        mib(peak),
        mib(before),
        mib(bound)
    );
}
