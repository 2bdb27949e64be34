//! What addressing by topic costs, in process (subscriptions drained by tasks, no sockets), on
//! one thread: deliveries per CPU-second of the process, for two pairs of pushes that reach the
//! same connections through the same readers and differ only in how they are addressed.
//!
//! - `fanout`: CLIENTS connections (default 1,000), each its own uid, all on topic `room`;
//!   a broadcast against a push to `room` (both reach every connection once).
//! - `single`: SINGLES connections (default 10,000), each its own uid and its own topic; one push
//!   to each topic against one push to each uid (one delivery per push either way).
//!
//! ```sh
//! cargo bench -p ssehub-hub --bench topics                    # both, 5 alternating runs of 2 s
//! SCENARIO=fanout RUNS=7 SECONDS=3 WINDOW=128 cargo bench -p ssehub-hub --bench topics
//! ```
//!
//! `WINDOW` is how far the pusher may run ahead of the readers, in events per connection, as in
//! the broadcast bench: 1 (the default) waits until every reader has the last round. `ROUNDS=N`
//! replaces the time limit with N rounds per run (for `valgrind --tool=callgrind`), and `MODES`
//! (e.g. `topic`) keeps only the named modes.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ssehub_hub::{Event, Hub, Recipients, SubscribeOptions};
use tokio::sync::Notify;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system) of the whole process, from /proc: the pusher and the readers alike.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// `Hub::broadcast`: every connection.
    Broadcast,
    /// One `push_to(Recipients::topics(["room"]))`: every connection.
    Topic,
    /// One `push_to(Recipients::topics([t]))` per connection's own topic.
    EachTopic,
    /// One `push_to(Recipients::uids([u]))` per connection's own uid.
    EachUid,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Broadcast => "broadcast",
            Mode::Topic => "topic",
            Mode::EachTopic => "each-topic",
            Mode::EachUid => "each-uid",
        }
    }
}

/// Connections and the tasks that read them, counting the events they receive.
struct Bench {
    hub: Hub,
    uids: Vec<String>,
    topics: Vec<String>,
    payload: String,
    window: u64,
    received: Arc<AtomicU64>,
    /// Readers wake the pusher instead of it spinning, which would bill its wait to the run.
    progress: Arc<Notify>,
    /// Deliveries pushed so far (each connection reached by each round).
    pushed: u64,
}

impl Bench {
    /// `shared_topic`: every connection on topic `room`; otherwise each on a topic of its own.
    fn new(clients: usize, shared_topic: bool, payload: String, window: u64) -> Self {
        let hub = Hub::builder()
            .heartbeat(None)
            .connection_buffer(1024)
            .max_streams(usize::MAX)
            .build()
            .unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let progress = Arc::new(Notify::new());
        let uids: Vec<String> = (0..clients).map(|n| format!("u{n}")).collect();
        let topics: Vec<String> = (0..clients)
            .map(|n| {
                if shared_topic {
                    "room".to_owned()
                } else {
                    format!("t/{n}")
                }
            })
            .collect();
        for (uid, topic) in uids.iter().zip(&topics) {
            let mut stream = hub
                .subscribe(uid, SubscribeOptions::default().topic(topic.as_str()))
                .unwrap();
            let (received, progress) = (Arc::clone(&received), Arc::clone(&progress));
            tokio::spawn(async move {
                // The opening comment holds no blank line, so it counts for nothing.
                let mut last = 0u8;
                while let Some(chunk) = stream.next().await {
                    // An event ends with a blank line: count "\n\n", even across chunks.
                    let mut events = 0;
                    for &byte in chunk.iter() {
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
            });
        }
        Self {
            hub,
            uids,
            topics,
            payload,
            window,
            received,
            progress,
            pushed: 0,
        }
    }

    /// One event to every connection, addressed as `mode` says.
    async fn round(&mut self, mode: Mode) {
        let event = || [Event::new(self.payload.clone())];
        match mode {
            Mode::Broadcast => {
                self.hub.broadcast(event()).await.unwrap();
            }
            Mode::Topic => {
                let to = Recipients::topics([self.topics[0].as_str()]);
                self.hub.push_to(to, event()).await.unwrap();
            }
            Mode::EachTopic => {
                for topic in &self.topics {
                    let to = Recipients::topics([topic.as_str()]);
                    self.hub.push_to(to, event()).await.unwrap();
                }
            }
            Mode::EachUid => {
                for uid in &self.uids {
                    let to = Recipients::uids([uid.as_str()]);
                    self.hub.push_to(to, event()).await.unwrap();
                }
            }
        }
        self.pushed += self.uids.len() as u64;
    }

    /// Rounds of `mode` for `seconds` (or `rounds` of them), then waits until every event is
    /// read. Returns (deliveries, wall time, process CPU time).
    async fn run(&mut self, mode: Mode, seconds: u64, rounds: u64) -> (u64, Duration, Duration) {
        let clients = self.uids.len() as u64;
        let before = self.received.load(Ordering::Relaxed);
        let start = Instant::now();
        let cpu_start = process_cpu();
        let mut done = 0;
        while if rounds > 0 {
            done < rounds
        } else {
            start.elapsed() < Duration::from_secs(seconds)
        } {
            if self.pushed >= self.received.load(Ordering::Relaxed) + self.window * clients {
                self.progress.notified().await;
                continue;
            }
            self.round(mode).await;
            done += 1;
        }
        while self.received.load(Ordering::Relaxed) < self.pushed {
            self.progress.notified().await;
        }
        let cpu = process_cpu() - cpu_start;
        (
            self.received.load(Ordering::Relaxed) - before,
            start.elapsed(),
            cpu,
        )
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let scenario = std::env::var("SCENARIO").unwrap_or_else(|_| "both".to_owned());
    let runs = env("RUNS", 5).max(1);
    let seconds = env("SECONDS", 2);
    let rounds = env("ROUNDS", 0);
    let window = env("WINDOW", 1).max(1);
    let payload = "x".repeat(env("PAYLOAD", 100) as usize);
    let only: Option<Vec<String>> = std::env::var("MODES")
        .ok()
        .map(|modes| modes.split(',').map(str::to_owned).collect());

    let mut scenarios = Vec::new();
    if scenario == "both" || scenario == "fanout" {
        let clients = env("CLIENTS", 1000) as usize;
        scenarios.push((clients, true, [Mode::Broadcast, Mode::Topic]));
    }
    if scenario == "both" || scenario == "single" {
        let clients = env("SINGLES", 10_000) as usize;
        scenarios.push((clients, false, [Mode::EachUid, Mode::EachTopic]));
    }
    assert!(
        !scenarios.is_empty(),
        "SCENARIO={scenario}: use fanout, single or both"
    );

    // One thread for the pusher and every reader, so that the process's CPU time is theirs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (clients, shared_topic, modes) in scenarios {
        let modes: Vec<Mode> = modes
            .into_iter()
            .filter(|mode| {
                only.as_ref()
                    .is_none_or(|only| only.iter().any(|m| m == mode.name()))
            })
            .collect();
        runtime.block_on(async {
            let mut bench = Bench::new(clients, shared_topic, payload.clone(), window);
            // Warm-up: the readers' first polls, the queues' first growth.
            for &mode in &modes {
                bench.run(mode, 0, 10).await;
            }
            let mut per_cpu: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
            for run in 0..runs {
                // Alternate, and swap the order every other run so neither always goes first.
                let mut order: Vec<usize> = (0..modes.len()).collect();
                if run % 2 == 1 {
                    order.reverse();
                }
                for index in order {
                    let mode = modes[index];
                    let (deliveries, wall, cpu) = bench.run(mode, seconds, rounds).await;
                    let rate = deliveries as f64 / cpu.as_secs_f64();
                    per_cpu[index].push(rate);
                    println!(
                        "{{\"mode\":\"{}\",\"clients\":{clients},\"window\":{window},\"payload\":{},\"run\":{run},\"deliveries\":{deliveries},\"seconds\":{:.2},\"cpu_s\":{:.2},\"deliveries_per_cpu_s\":{rate:.0}}}",
                        mode.name(),
                        payload.len(),
                        wall.as_secs_f64(),
                        cpu.as_secs_f64(),
                    );
                }
            }
            let stats = bench.hub.stats();
            assert_eq!(stats.failed, 0, "no delivery may fail: the window is under the buffer");
            for (index, mode) in modes.iter().enumerate() {
                let runs: Vec<String> = per_cpu[index].iter().map(|r| format!("{:.0}k", r / 1e3)).collect();
                println!(
                    "{} x {clients}: median {:.0}k deliveries per CPU-second (runs {})",
                    mode.name(),
                    median(&mut per_cpu[index]) / 1e3,
                    runs.join(" / "),
                );
            }
        });
    }
}
