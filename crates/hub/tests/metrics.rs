//! The hub's metrics through the `metrics` facade, read back with `metrics-util`'s
//! `DebuggingRecorder` installed as the process's recorder.
//!
//! One recorder per process, and its snapshots take what they read (counters and gauges go back
//! to 0, histograms are emptied): every test takes the lock below, starts with a snapshot to
//! throw away what came before, and reads only what its own hub did since.
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use ssehub_hub::store::{ListQuery, MemoryStore, Page, Record, Store, StoreError, async_trait};
use ssehub_hub::{Event, Hub, PushError, Recipients, SlowClientPolicy, SubscribeOptions};

/// One test at a time: they share the recorder, and gauges are set by whoever publishes last.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        ssehub_hub::metrics::describe();
        snapshotter
    })
}

/// What the recorder got since the last snapshot, by name and sorted labels.
struct Seen {
    values: HashMap<(String, Vec<(String, String)>), DebugValue>,
    descriptions: HashMap<String, (Option<metrics::Unit>, String)>,
}

impl Seen {
    fn take() -> Self {
        let mut values = HashMap::new();
        let mut descriptions = HashMap::new();
        for (key, unit, description, value) in snapshotter().snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|label| (label.key().to_owned(), label.value().to_owned()))
                .collect();
            labels.sort();
            if let Some(description) = description {
                descriptions.insert(key.name().to_owned(), (unit, description.to_string()));
            }
            values.insert((key.name().to_owned(), labels), value);
        }
        Self {
            values,
            descriptions,
        }
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.values.get(&(name.to_owned(), labels))
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn gauge(&self, name: &str) -> Option<f64> {
        match self.get(name, &[]) {
            Some(DebugValue::Gauge(value)) => Some(value.into_inner()),
            None => None,
            Some(other) => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    fn histogram(&self, name: &str) -> Vec<f64> {
        match self.get(name, &[]) {
            Some(DebugValue::Histogram(values)) => values.iter().map(|v| v.into_inner()).collect(),
            None => Vec::new(),
            Some(other) => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    /// Every push outcome counted since the last snapshot, as (outcome, count). (A series seen
    /// once stays in every snapshot, at 0 when nothing happened since.)
    fn all_pushes(&self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .values
            .iter()
            .filter(|((name, _), _)| name == "ssehub_pushes_total")
            .map(|((_, labels), value)| {
                let count = match value {
                    DebugValue::Counter(n) => *n,
                    _ => 0,
                };
                (labels[0].1.clone(), count)
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        all.sort();
        all
    }
}

/// Takes the lock and clears what earlier tests left in the recorder.
async fn start() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().await;
    Seen::take();
    guard
}

fn hub() -> ssehub_hub::HubBuilder {
    Hub::builder().metrics(true).heartbeat(None)
}

/// Pushes once and returns the outcomes counted for it.
async fn outcome_of(
    push: impl std::future::Future<Output = Result<impl Sized, PushError>>,
) -> Vec<(String, u64)> {
    let _ = push.await;
    Seen::take().all_pushes()
}

fn one(outcome: &str) -> Vec<(String, u64)> {
    vec![(outcome.to_owned(), 1)]
}

#[tokio::test]
async fn each_push_outcome_is_counted_once_under_its_label() {
    let _serial = start().await;
    let hub = hub()
        .max_events_per_push(2)
        .max_data_len(4)
        .build()
        .unwrap();
    let _alice = hub.subscribe("alice", Default::default()).unwrap();

    assert_eq!(
        outcome_of(hub.broadcast([Event::new("ok")])).await,
        one("ok")
    );
    assert_eq!(
        outcome_of(hub.push(["alice"], [Event::new("ok")])).await,
        one("ok")
    );
    let to_topic = Recipients::topics(["news"]);
    assert_eq!(
        outcome_of(hub.push_to(to_topic, [Event::new("ok")])).await,
        one("ok")
    );

    let nobody: Vec<String> = Vec::new();
    assert_eq!(
        outcome_of(hub.push(nobody, [Event::new("x")])).await,
        one("invalid")
    );
    assert_eq!(
        outcome_of(hub.push([""], [Event::new("x")])).await,
        one("invalid")
    );
    assert_eq!(outcome_of(hub.broadcast([])).await, one("invalid"));
    let bad = Event::new("x").with_event("a\nb");
    assert_eq!(outcome_of(hub.broadcast([bad])).await, one("invalid"));
    let three = [Event::new("1"), Event::new("2"), Event::new("3")];
    assert_eq!(outcome_of(hub.broadcast(three)).await, one("invalid"));
    let bad_topic = Recipients::topics(["a\nb"]);
    assert_eq!(
        outcome_of(hub.push_to(bad_topic, [Event::new("x")])).await,
        one("invalid")
    );

    assert_eq!(
        outcome_of(hub.broadcast([Event::new("12345")])).await,
        one("too_large")
    );

    hub.close().await;
    assert_eq!(
        outcome_of(hub.broadcast([Event::new("late")])).await,
        one("closed")
    );
}

/// A memory store whose saves can be made to hang (a dead database) or to fail.
struct UnluckyStore {
    inner: MemoryStore,
    hang: AtomicBool,
    fail: AtomicBool,
}

#[async_trait]
impl Store for UnluckyStore {
    async fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::backend("the disk is on fire"));
        }
        self.inner.save(records).await
    }
    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.inner.last_seq().await
    }
    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.inner.seq_of(id).await
    }
    async fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list_after(query).await
    }
}

#[tokio::test(start_paused = true)]
async fn the_store_outcomes_are_counted_and_each_batch_saved_is_timed() {
    let _serial = start().await;
    let store = Arc::new(UnluckyStore {
        inner: MemoryStore::new(1_000),
        hang: AtomicBool::new(false),
        fail: AtomicBool::new(false),
    });
    let hub = hub()
        .store(Arc::clone(&store))
        .store_timeout(Duration::from_secs(2))
        .build()
        .unwrap();

    let three = [
        Event::new("1").with_id("a"),
        Event::new("2"),
        Event::new("3"),
    ];
    hub.broadcast(three).await.unwrap();
    let seen = Seen::take();
    assert_eq!(seen.all_pushes(), one("ok"));
    assert_eq!(seen.histogram("ssehub_store_commit_events"), [3.0]);
    assert_eq!(seen.histogram("ssehub_store_commit_seconds").len(), 1);

    let again = [Event::new("again").with_id("a")];
    assert_eq!(outcome_of(hub.broadcast(again)).await, one("duplicate_id"));

    store.fail.store(true, Ordering::SeqCst);
    assert_eq!(
        outcome_of(hub.broadcast([Event::new("x")])).await,
        one("store_error")
    );
    store.fail.store(false, Ordering::SeqCst);

    store.hang.store(true, Ordering::SeqCst);
    assert_eq!(
        outcome_of(hub.broadcast([Event::new("x")])).await,
        one("store_timeout")
    );
}

#[tokio::test]
async fn publish_metrics_reports_who_is_online_and_the_deliveries_as_the_stats_have_them() {
    let _serial = start().await;
    let hub = hub()
        .connection_buffer(1)
        .slow_client(SlowClientPolicy::Wait {
            timeout: Duration::from_secs(3600),
            retries: 1,
        })
        .build()
        .unwrap();
    let _alice = hub.subscribe("alice", Default::default()).unwrap();
    let _alice2 = hub
        .subscribe("alice", SubscribeOptions::default().topic("news"))
        .unwrap();
    let _bob = hub
        .subscribe("bob", SubscribeOptions::default().topics(["news", "sport"]))
        .unwrap();
    // Nobody reads: the first push is queued, the second waits, the third fails.
    for data in ["1", "2", "3"] {
        hub.broadcast([Event::new(data)]).await.unwrap();
    }
    hub.publish_metrics();
    let stats = hub.stats();
    assert_eq!((stats.success, stats.failed), (3, 3), "{stats}");
    let seen = Seen::take();
    assert_eq!(seen.gauge("ssehub_connections"), Some(3.0));
    assert_eq!(seen.gauge("ssehub_users"), Some(2.0));
    assert_eq!(seen.gauge("ssehub_topics"), Some(2.0));
    let queued = seen.counter("ssehub_deliveries_total", &[("outcome", "queued")]);
    let failed = seen.counter("ssehub_deliveries_total", &[("outcome", "failed")]);
    assert_eq!((queued, failed), (stats.success, stats.failed));
    assert_eq!(
        seen.counter("ssehub_delivery_timeouts_total", &[]),
        stats.timeout
    );

    // Published again, the counters move by what happened since, not by the totals again.
    hub.broadcast([Event::new("4")]).await.unwrap();
    hub.publish_metrics();
    let seen = Seen::take();
    let failed = seen.counter("ssehub_deliveries_total", &[("outcome", "failed")]);
    assert_eq!(failed, hub.stats().failed - stats.failed);
    assert_eq!(
        seen.counter("ssehub_deliveries_total", &[("outcome", "queued")]),
        0
    );
}

#[tokio::test]
async fn every_series_is_described_with_its_unit() {
    let _serial = start().await;
    // Describing again is harmless, and makes the descriptions part of the next snapshot.
    ssehub_hub::metrics::describe();
    let hub = hub().store(MemoryStore::new(10)).build().unwrap();
    let mut stream = hub.subscribe("alice", Default::default()).unwrap();
    stream.next().await.unwrap();
    hub.broadcast([Event::new("x")]).await.unwrap();
    stream.next().await.unwrap();
    hub.publish_metrics();
    let seen = Seen::take();
    for name in [
        "ssehub_connections",
        "ssehub_users",
        "ssehub_topics",
        "ssehub_queued_bytes",
        "ssehub_pushes_total",
        "ssehub_deliveries_total",
        "ssehub_delivery_timeouts_total",
        "ssehub_cutoffs_total",
        "ssehub_stalled_resets_total",
        "ssehub_push_to_write_seconds",
        "ssehub_store_commit_seconds",
        "ssehub_store_commit_events",
    ] {
        let Some((_, help)) = seen.descriptions.get(name) else {
            panic!("{name} has no description: {:?}", seen.descriptions.keys());
        };
        assert!(help.len() > 20, "{name}: {help:?}");
    }
    assert_eq!(
        seen.descriptions["ssehub_push_to_write_seconds"].0,
        Some(metrics::Unit::Seconds)
    );
    assert_eq!(
        seen.descriptions["ssehub_queued_bytes"].0,
        Some(metrics::Unit::Bytes)
    );
}

#[tokio::test]
async fn queued_bytes_are_what_waits_in_the_outboxes_and_none_once_read() {
    let _serial = start().await;
    let hub = hub()
        .connection_buffer(2)
        .slow_client(SlowClientPolicy::Wait {
            timeout: Duration::from_secs(3600),
            retries: 1,
        })
        .build()
        .unwrap();
    let mut stream = hub.subscribe("alice", Default::default()).unwrap();
    assert_eq!(stream.next().await.unwrap(), ":ok\n");
    let _idle = hub.subscribe("bob", Default::default()).unwrap();
    hub.publish_metrics();
    // bob's stream was never polled, and its opening comment is not queued bytes.
    assert_eq!(Seen::take().gauge("ssehub_queued_bytes"), Some(0.0));

    // Four events to alice: two in the queue, two waiting for room.
    let events: Vec<Event> = (0..4)
        .map(|i| Event::new("x".repeat(100 * (i + 1))).with_id(i.to_string()))
        .collect();
    let bytes: usize = events.iter().map(|e| e.encode().unwrap().len()).sum();
    for event in events {
        hub.push(["alice"], [event]).await.unwrap();
    }
    hub.publish_metrics();
    assert_eq!(
        Seen::take().gauge("ssehub_queued_bytes"),
        Some(bytes as f64)
    );

    let mut read = 0;
    while read < bytes {
        read += stream.next().await.unwrap().len();
    }
    assert_eq!(read, bytes);
    hub.publish_metrics();
    assert_eq!(Seen::take().gauge("ssehub_queued_bytes"), Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn push_to_write_is_one_sample_per_chunk_the_oldest_events_wait() {
    let _serial = start().await;
    let hub = hub().build().unwrap();
    let mut stream = hub.subscribe("alice", Default::default()).unwrap();
    assert_eq!(stream.next().await.unwrap(), ":ok\n");
    assert!(
        Seen::take()
            .histogram("ssehub_push_to_write_seconds")
            .is_empty()
    );

    hub.broadcast([Event::new("1")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    stream.next().await.unwrap();
    let samples = Seen::take().histogram("ssehub_push_to_write_seconds");
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert!(samples[0] >= 0.25, "{samples:?}");

    // After a publish the hub keeps the series' handle (no lookup per chunk): same samples.
    hub.publish_metrics();
    Seen::take();

    // Three pushes, 100 ms apart, read as one chunk: one sample, the first push's wait.
    for data in ["2", "3", "4"] {
        hub.broadcast([Event::new(data)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let chunk = stream.next().await.unwrap();
    assert_eq!(chunk.windows(2).filter(|w| w == b"\n\n").count(), 3);
    let samples = Seen::take().histogram("ssehub_push_to_write_seconds");
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert!(samples[0] >= 0.3, "{samples:?}");

    // The next chunk times its own push, not the last chunk's.
    hub.broadcast([Event::new("5")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    stream.next().await.unwrap();
    let samples = Seen::take().histogram("ssehub_push_to_write_seconds");
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert!((0.01..0.1).contains(&samples[0]), "{samples:?}");
}

#[tokio::test]
async fn connections_cut_off_by_the_disconnect_policy_are_counted() {
    let _serial = start().await;
    let hub = hub()
        .connection_buffer(1)
        .slow_client(SlowClientPolicy::Disconnect)
        .build()
        .unwrap();
    let _slow = hub.subscribe("slow", Default::default()).unwrap();
    let _other = hub.subscribe("other", Default::default()).unwrap();
    hub.push(["slow"], [Event::new("1")]).await.unwrap();
    let receipt = hub.push(["slow"], [Event::new("2")]).await.unwrap();
    assert_eq!(receipt.failed, 1);
    assert_eq!(hub.stats().cut_off, 1);
    hub.publish_metrics();
    assert_eq!(Seen::take().counter("ssehub_cutoffs_total", &[]), 1);
}

#[tokio::test]
async fn with_metrics_off_nothing_is_recorded() {
    let _serial = start().await;
    let hub = Hub::builder()
        .heartbeat(None)
        .store(MemoryStore::new(10))
        .build()
        .unwrap();
    let mut stream = hub.subscribe("alice", Default::default()).unwrap();
    stream.next().await.unwrap();
    hub.broadcast([Event::new("x")]).await.unwrap();
    stream.next().await.unwrap();
    assert!(hub.broadcast([]).await.is_err());
    hub.publish_metrics();
    // Series of earlier tests stay in the snapshots, at 0: nothing may have moved.
    let seen = Seen::take();
    let moved: Vec<_> = seen
        .values
        .iter()
        .filter(|(_, value)| match value {
            DebugValue::Counter(n) => *n > 0,
            DebugValue::Gauge(value) => value.into_inner() != 0.0,
            DebugValue::Histogram(samples) => !samples.is_empty(),
        })
        .collect();
    assert!(moved.is_empty(), "{moved:?}");
}

/// What walking the outboxes costs a scrape: printed, not asserted (the machine is shared).
#[tokio::test]
async fn queued_bytes_for_20_000_connections() {
    let _serial = start().await;
    let hub = hub().max_streams(30_000).build().unwrap();
    let streams: Vec<_> = (0..20_000)
        .map(|i| hub.subscribe(&format!("u{i}"), Default::default()).unwrap())
        .collect();
    hub.broadcast([Event::new("x").with_id("1")]).await.unwrap();
    let runs = 20;
    let started = std::time::Instant::now();
    for _ in 0..runs {
        hub.publish_metrics();
    }
    let each = started.elapsed() / runs;
    let seen = Seen::take();
    let expected = "id: 1\ndata: x\n\n".len() * streams.len();
    assert_eq!(seen.gauge("ssehub_queued_bytes"), Some(expected as f64));
    eprintln!("publish_metrics with 20,000 connections: {each:?}");
}

#[cfg(feature = "server")]
mod lean {
    use std::future::IntoFuture;

    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::common::{eventually, within};

    /// The lean server resets a client that stopped reading (the send-queue watch); the hub
    /// counts it.
    #[tokio::test]
    async fn a_stalled_client_reset_by_the_lean_server_is_counted() {
        let _serial = start().await;
        let hub = hub().build().unwrap();
        let server =
            ssehub_hub::server::Server::builder(hub.clone(), |_: &http::request::Parts| async {
                Ok::<_, http::StatusCode>("paused".to_owned())
            })
            .write_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(server.serve(listener).into_future());
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut client = within(socket.connect(addr)).await.unwrap();
        client
            .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        eventually("the stream to open", || hub.stats().connections == 1).await;
        for i in 0..32 {
            let event = Event::new(format!("{i:04}{}", "x".repeat(1020)));
            hub.push(["paused"], [event]).await.unwrap();
        }
        eventually("the paused client to be reset", || {
            hub.stats().connections == 0
        })
        .await;
        assert_eq!(hub.stats().stalled_resets, 1);
        hub.publish_metrics();
        assert_eq!(Seen::take().counter("ssehub_stalled_resets_total", &[]), 1);
        drop(client);
    }
}
