//! Broadcast fan-out over real sockets: one hub served on a one-thread runtime, N clients
//! reading raw HTTP on another one-thread runtime, one process. Prints deliveries per second and
//! per CPU-second of the server thread.
//!
//! ```sh
//! cargo bench -p ssehub-hub --bench broadcast                      # 1,000 clients, 5 s
//! CLIENTS=1000 SECONDS=10 PAYLOAD=100 WINDOW=1 cargo bench -p ssehub-hub --bench broadcast
//! SERVER=axum WINDOW=1 cargo bench -p ssehub-hub --bench broadcast # axum::serve + the handler
//! METRICS=1 cargo bench -p ssehub-hub --features metrics --bench broadcast # metrics on
//! ```
//!
//! `SERVER=lean` (the default) serves the streams with `ssehub_hub::server::Server`,
//! `SERVER=axum` with `axum::serve` and `ssehub_hub::axum::events`.
//!
//! `METRICS=1` (feature `metrics`) builds the hub with `metrics(true)` and installs the
//! recorder `ssehub serve` uses, metrics-exporter-prometheus's, with its upkeep every 5 s on a
//! thread of its own (as `PrometheusBuilder::install` does); `METRICS=0` (the default) leaves
//! metrics off. The feature alone, metrics off, is what `METRICS=0 --features metrics` measures.
//! `METRICS_BUCKETS=1` makes the exporter keep histograms with buckets instead of its default
//! summaries.
//!
//! A first measure for the hub issue; `ssehub bench` (separate processes, latency
//! percentiles, memory) is the real tool.

#![allow(clippy::unwrap_used, missing_docs)]

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use ssehub_hub::axum::SubscriberId;
use ssehub_hub::server::Server;
use ssehub_hub::{Event, Hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system) of the calling thread, from /proc.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

async fn uid(mut request: Request, next: Next) -> Response {
    let uid = request.uri().query().unwrap_or("u").to_owned();
    request.extensions_mut().insert(SubscriberId(uid));
    next.run(request).await
}

fn main() {
    let clients = env("CLIENTS", 1000) as usize;
    let seconds = env("SECONDS", 5);
    let payload = "x".repeat(env("PAYLOAD", 100) as usize);
    // How far the pusher may run ahead of the readers, in events per connection: below the queue
    // size, so nothing is dropped. WINDOW=1 pushes the next event only once every client has
    // read the last one, so each write carries one event (no batching).
    let window = env("WINDOW", 128).max(1);
    let lean = match std::env::var("SERVER").as_deref() {
        Ok("lean") | Err(_) => true,
        Ok("axum") => false,
        Ok(other) => panic!("SERVER={other}: use lean or axum"),
    };

    let metrics = env("METRICS", 0) == 1;
    let builder = Hub::builder();
    #[cfg(feature = "metrics")]
    let builder = builder.metrics(metrics);
    #[cfg(feature = "metrics")]
    let prometheus = metrics.then(|| {
        let mut builder = metrics_exporter_prometheus::PrometheusBuilder::new();
        if env("METRICS_BUCKETS", 0) == 1 {
            // Histograms with buckets instead of the exporter's default summaries.
            let buckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];
            builder = builder.set_buckets(&buckets).unwrap();
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).unwrap();
        ssehub_hub::metrics::describe();
        let upkeep = handle.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        });
        handle
    });
    #[cfg(not(feature = "metrics"))]
    assert!(!metrics, "METRICS=1 needs --features metrics");
    let hub = builder
        .connection_buffer(1024)
        .heartbeat(None)
        .workers(1)
        .build()
        .unwrap();
    // A first scrape, as `ssehub serve`'s first would be, before the measure.
    #[cfg(feature = "metrics")]
    hub.publish_metrics();
    let server = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/events", ssehub_hub::axum::events(hub.clone()))
        .route_layer(middleware::from_fn(uid));
    let lean_server = Server::builder(hub.clone(), |parts: &http::request::Parts| {
        std::future::ready(Ok::<_, http::StatusCode>(
            parts.uri.query().unwrap_or("u").to_owned(),
        ))
    })
    .build()
    .unwrap();

    let received = Arc::new(AtomicU64::new(0));
    // Readers wake the pusher instead of it spinning, which would bill its wait to the server.
    let progress = Arc::new(tokio::sync::Notify::new());
    let connected = Arc::new(AtomicU64::new(0));
    // Detached: the process exits at the end while its sockets are still open.
    {
        let received = Arc::clone(&received);
        let connected = Arc::clone(&connected);
        let progress = Arc::clone(&progress);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut readers = Vec::new();
                for i in 0..clients {
                    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let request = format!("GET /events?c{i} HTTP/1.1\r\nHost: bench\r\n\r\n");
                    socket.write_all(request.as_bytes()).await.unwrap();
                    let received = Arc::clone(&received);
                    let connected = Arc::clone(&connected);
                    let progress = Arc::clone(&progress);
                    readers.push(tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 << 10];
                        let mut last = 0u8;
                        let mut opened = false;
                        loop {
                            let n = match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if !opened {
                                opened = true;
                                connected.fetch_add(1, Ordering::Relaxed);
                            }
                            // An event ends with a blank line: count "\n\n", even across reads.
                            let mut events = 0;
                            for &byte in &buf[..n] {
                                if byte == b'\n' && last == b'\n' {
                                    events += 1;
                                }
                                last = byte;
                            }
                            if events > 0 {
                                received.fetch_add(events, Ordering::Relaxed);
                                progress.notify_one();
                            }
                        }
                    }));
                }
                for reader in readers {
                    let _ = reader.await;
                }
            });
        });
    }

    let (pushes, elapsed, cpu) = server.block_on(async {
        if lean {
            tokio::spawn(lean_server.serve(listener).into_future());
        } else {
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        }
        while connected.load(Ordering::Relaxed) < clients as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let clients = clients as u64;
        let start = Instant::now();
        let cpu_start = thread_cpu();
        let mut pushes = 0u64;
        while start.elapsed() < Duration::from_secs(seconds) {
            if pushes * clients >= received.load(Ordering::Relaxed) + window * clients {
                progress.notified().await;
                continue;
            }
            hub.broadcast([Event::new(payload.clone())]).await.unwrap();
            pushes += 1;
        }
        while received.load(Ordering::Relaxed) < pushes * clients
            && start.elapsed() < Duration::from_secs(seconds + 10)
        {
            tokio::task::yield_now().await;
        }
        (pushes, start.elapsed(), thread_cpu() - cpu_start)
    });
    let deliveries = received.load(Ordering::Relaxed);
    let stats = hub.stats();
    #[cfg(feature = "metrics")]
    if let Some(prometheus) = prometheus {
        // A scrape at the end, off the clock: shows the series were written, and what
        // publishing (which walks every outbox) takes for this many connections.
        let started = Instant::now();
        hub.publish_metrics();
        let publish = started.elapsed();
        let text = prometheus.render();
        let samples = text
            .lines()
            .find(|line| line.starts_with("ssehub_push_to_write_seconds_count"))
            .unwrap_or("ssehub_push_to_write_seconds_count (none)");
        eprintln!("{samples}; publish_metrics took {publish:?} for {clients} connections");
    }
    println!(
        "{{\"server\":\"{}\",\"metrics\":{metrics},\"clients\":{clients},\"window\":{window},\"payload\":{},\"pushes\":{pushes},\"deliveries\":{deliveries},\"expected\":{},\"failed\":{},\"seconds\":{:.2},\"deliveries_per_s\":{:.0},\"server_cpu_s\":{:.2},\"deliveries_per_server_cpu_s\":{:.0}}}",
        if lean { "lean" } else { "axum" },
        payload.len(),
        pushes * clients as u64,
        stats.failed,
        elapsed.as_secs_f64(),
        deliveries as f64 / elapsed.as_secs_f64(),
        cpu.as_secs_f64(),
        deliveries as f64 / cpu.as_secs_f64(),
    );
    std::process::exit(0);
}
