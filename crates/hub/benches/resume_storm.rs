//! A reconnect storm: N clients resume at once, each having missed M events, while a publisher
//! keeps pushing. Measures how long until every client has caught up, and the publisher's push
//! latency meanwhile, for several replay limits (`HubBuilder::max_concurrent_replays`). In
//! process (subscriptions without sockets), with the on-disk store (redb) or the memory store.
//!
//! ```sh
//! cargo bench -p ssehub-hub --bench resume_storm                      # 10,000 clients, 100 missed
//! CLIENTS=1000 MISSED=100 LIMITS=4,64,0 STORE=memory cargo bench -p ssehub-hub --bench resume_storm
//! ```
//!
//! `LIMITS` lists replay limits to compare; 0 is "no limit". Set `DATA_DIR` to put the on-disk
//! store somewhere other than the temp directory.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ssehub_hub::store::{MemoryStore, RedbStore, Retention};
use ssehub_hub::{Event, Hub, SubscribeOptions};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Outcome {
    resumed: Duration,
    pushes: Vec<Duration>,
}

async fn storm(hub: Hub, clients: usize, missed: usize) -> Outcome {
    let base = hub.broadcast([Event::new("base")]).await.unwrap().ids[0].clone();
    for n in 0..missed {
        hub.broadcast([Event::new(format!("missed {n} {}", "x".repeat(100)))])
            .await
            .unwrap();
    }
    // The publisher: one uni-cast push every 10 ms, timed, for as long as the storm lasts.
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (hub, stop) = (hub.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                hub.push(["publisher-probe"], [Event::new("probe")])
                    .await
                    .unwrap();
                latencies.push(start.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            latencies
        })
    };
    let start = Instant::now();
    let readers: Vec<_> = (0..clients)
        .map(|n| {
            let options = SubscribeOptions::default().last_event_id(base.clone());
            let mut stream = hub.subscribe(&format!("u{n}"), options).unwrap();
            tokio::spawn(async move {
                let mut seen = 0;
                while seen < missed {
                    let chunk = stream.next().await.expect("the stream ended");
                    seen += chunk.windows(6).filter(|w| w == b"data: ").count();
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.unwrap();
    }
    let resumed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut pushes = publisher.await.unwrap();
    pushes.sort();
    hub.close().await;
    Outcome { resumed, pushes }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let clients = env("CLIENTS", 10_000) as usize;
    let missed = env("MISSED", 100) as usize;
    let memory = std::env::var("STORE").is_ok_and(|store| store == "memory");
    let limits: Vec<usize> = std::env::var("LIMITS")
        .unwrap_or_else(|_| "0,4,64".to_owned())
        .split(',')
        .map(|limit| limit.trim().parse().unwrap())
        .collect();
    let base = std::env::var_os("DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "{clients} clients resume, {missed} missed events each, {} store",
        if memory { "memory" } else { "redb" }
    );
    println!("replay limit | all resumed | pushes meanwhile | push p50 | p99 | max");
    for limit in limits {
        let dir = base.join(format!("ssehub-storm-{}", ulid::Ulid::generate()));
        let outcome = runtime.block_on(async {
            let mut builder = Hub::builder()
                .heartbeat(None)
                .resend(true)
                .max_streams(usize::MAX)
                .connection_buffer(missed + 16);
            builder = if memory {
                builder.store(MemoryStore::new(1_000_000))
            } else {
                builder.store(RedbStore::open(&dir, Retention::events(1_000_000)).unwrap())
            };
            if limit > 0 {
                builder = builder.max_concurrent_replays(limit);
            } else {
                builder = builder.max_concurrent_replays(usize::MAX);
            }
            storm(builder.build().unwrap(), clients, missed).await
        });
        std::fs::remove_dir_all(&dir).ok();
        let label = if limit == 0 {
            "none".to_owned()
        } else {
            limit.to_string()
        };
        println!(
            "{label:>12} | {:>9.2} s | {:>16} | {:>8.1?} | {:>8.1?} | {:>8.1?}",
            outcome.resumed.as_secs_f64(),
            outcome.pushes.len(),
            percentile(&outcome.pushes, 0.5),
            percentile(&outcome.pushes, 0.99),
            outcome.pushes.last().copied().unwrap_or_default(),
        );
    }
}
