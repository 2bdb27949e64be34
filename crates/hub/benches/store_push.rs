//! Push throughput with and without a store: how many pushes a second the hub accepts (saved,
//! then delivered to 100 subscribers) from P concurrent pushers, with no store, the in-memory
//! store, and the embedded on-disk store (redb, every batch synced to disk).
//!
//! ```sh
//! cargo bench -p ssehub-hub --bench store_push                       # P = 1, 16, 256; 3 s each
//! PUSHERS=64 DURATION=5 cargo bench -p ssehub-hub --bench store_push
//! ```
//!
//! Set `DATA_DIR` to put the on-disk store somewhere other than the temp directory.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ssehub_hub::store::{MemoryStore, RedbStore, Retention};
use ssehub_hub::{Event, Hub};

const SUBSCRIBERS: usize = 100;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Pushes per second from `pushers` tasks pushing one 100-byte event each, back to back.
async fn measure(hub: Hub, pushers: usize, seconds: u64) -> f64 {
    // Subscribers that read everything, so queues never fill.
    let mut readers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let mut stream = hub.subscribe(&format!("u{i}"), Default::default()).unwrap();
        readers.push(tokio::spawn(async move {
            while stream.next().await.is_some() {}
        }));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(0));
    let payload = "x".repeat(100);
    let mut tasks = Vec::new();
    for p in 0..pushers {
        let (hub, stop, pushed, payload) =
            (hub.clone(), stop.clone(), pushed.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Half uni-cast, half broadcast, as a mixed workload.
                let event = Event::new(payload.clone());
                if n.is_multiple_of(2) {
                    let uid = format!("u{}", (p as u64 + n) % SUBSCRIBERS as u64);
                    hub.push([uid], [event]).await.unwrap();
                } else {
                    hub.broadcast([event]).await.unwrap();
                }
                n += 1;
                pushed.fetch_add(1, Ordering::Relaxed);
                // A push without a store never waits: let the readers and the clock run.
                tokio::task::yield_now().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // warm-up
    let start_count = pushed.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let count = pushed.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    hub.close().await;
    for reader in readers {
        reader.await.unwrap();
    }
    count as f64 / elapsed
}

fn main() {
    let seconds = env("DURATION", 3);
    let pusher_counts: Vec<usize> = match std::env::var("PUSHERS") {
        Ok(value) => value
            .split(',')
            .map(|p| p.trim().parse().unwrap())
            .collect(),
        Err(_) => vec![1, 16, 256],
    };
    let base = std::env::var_os("DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!("pushers | no store | memory store | redb store | redb / memory");
    for pushers in pusher_counts {
        let rates = runtime.block_on(async {
            let plain = Hub::builder().heartbeat(None).build().unwrap();
            let memory = Hub::builder()
                .heartbeat(None)
                .store(MemoryStore::new(1_000_000))
                .build()
                .unwrap();
            let dir = base.join(format!("ssehub-bench-{}", ulid::Ulid::generate()));
            let redb = Hub::builder()
                .heartbeat(None)
                .store(RedbStore::open(&dir, Retention::events(1_000_000)).unwrap())
                .build()
                .unwrap();
            let rates = [
                measure(plain, pushers, seconds).await,
                measure(memory, pushers, seconds).await,
                measure(redb, pushers, seconds).await,
            ];
            std::fs::remove_dir_all(&dir).ok();
            rates
        });
        println!(
            "{pushers:>7} | {:>8.0} | {:>12.0} | {:>10.0} | {:>5.2}",
            rates[0],
            rates[1],
            rates[2],
            rates[2] / rates[1]
        );
    }
}
