//! The store committer under unlucky conditions: reused ids, a store that hangs or panics, a
//! first push from a short-lived runtime, and closing while a push waits for the store; and its
//! pipeline: the next batch saved while the last is delivered, never a timer, the saved order
//! kept under concurrent pushes (and across a resume).
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use common::{Reader, TestServer, eventually, within};
use futures_util::{FutureExt, StreamExt};
use http::StatusCode;
use ssehub_hub::store::{
    ListQuery, MemoryStore, Page, Record, RedbStore, Retention, Store, StoreError, async_trait,
};
use ssehub_hub::{Event, Hub, PushError, SubscribeOptions};

/// A memory store whose saves can be made to hang (a dead database) or to panic (a bug).
struct UnluckyStore {
    inner: MemoryStore,
    hang: AtomicBool,
    panic_once: AtomicBool,
}

impl UnluckyStore {
    fn new() -> Self {
        Self {
            inner: MemoryStore::new(1_000),
            hang: AtomicBool::new(false),
            panic_once: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl Store for UnluckyStore {
    async fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        if self.panic_once.swap(false, Ordering::SeqCst) {
            panic!("a bug in the store");
        }
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
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

#[tokio::test]
async fn a_reused_id_is_refused_and_sends_nothing() {
    let hub = Hub::builder()
        .store(MemoryStore::new(1_000))
        .heartbeat(None)
        .build()
        .unwrap();
    let mut stream = hub.subscribe("alice", Default::default()).unwrap();
    assert_eq!(stream.next().await.unwrap(), ":ok\n");
    hub.broadcast([Event::new("first").with_id("a")])
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap(), "id: a\ndata: first\n\n");

    let error = hub
        .broadcast([
            Event::new("x").with_id("new"),
            Event::new("again").with_id("a"),
        ])
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PushError::DuplicateId {
            index: 1,
            id: "a".into()
        }
    );
    let error = hub
        .broadcast([Event::new("1").with_id("b"), Event::new("2").with_id("b")])
        .await
        .unwrap_err();
    assert!(
        matches!(error, PushError::DuplicateId { index: 1, .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("events[1].id: \"b\" is already used")
    );
    // Nothing of either push was sent (nor saved: "new" and "b" are still free).
    assert!(stream.next().now_or_never().is_none());
    hub.broadcast([
        Event::new("ok").with_id("new"),
        Event::new("ok").with_id("b"),
    ])
    .await
    .unwrap();
    assert_eq!(
        stream.next().await.unwrap(),
        "id: new\ndata: ok\n\nid: b\ndata: ok\n\n"
    );
    assert_eq!(hub.stats().total, 3);
}

#[tokio::test]
async fn a_reused_id_over_http_is_a_409() {
    let hub = Hub::builder()
        .store(MemoryStore::new(1_000))
        .build()
        .unwrap();
    let server = TestServer::start(hub).await;
    let body = r#"{"events":[{"id":"order-42","data":"paid"}]}"#;
    let (status, _) = server.push_json(body).await;
    assert_eq!(status, StatusCode::OK);
    let (status, envelope) = server.push_json(body).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        envelope["msg"]
            .as_str()
            .unwrap()
            .starts_with("events[0].id"),
        "{envelope}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_that_hangs_fails_the_push_after_the_store_timeout_and_the_hub_keeps_serving() {
    let store = Arc::new(UnluckyStore::new());
    let hub = Hub::builder()
        .store(Arc::clone(&store))
        .store_timeout(Duration::from_secs(2))
        .heartbeat(None)
        .build()
        .unwrap();
    let mut stream = hub.subscribe("alice", Default::default()).unwrap();
    assert_eq!(stream.next().await.unwrap(), ":ok\n");
    store.hang.store(true, Ordering::SeqCst);

    let started = tokio::time::Instant::now();
    let error = hub.broadcast([Event::new("stuck")]).await.unwrap_err();
    assert_eq!(
        error,
        PushError::StoreTimeout {
            after: Duration::from_secs(2)
        }
    );
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    // Later pushes fail the same way, in bounded time; subscribers are still served.
    let error = hub.broadcast([Event::new("later")]).await.unwrap_err();
    assert!(matches!(error, PushError::StoreTimeout { .. }));
    assert!(stream.next().now_or_never().is_none(), "nothing was sent");
    let _another = hub.subscribe("bob", Default::default()).unwrap();
    assert_eq!(hub.stats().connections, 2);
}

#[tokio::test(start_paused = true)]
async fn close_returns_within_its_timeout_while_a_push_waits_for_the_store() {
    let store = Arc::new(UnluckyStore::new());
    store.hang.store(true, Ordering::SeqCst);
    let hub = Hub::builder()
        .store(Arc::clone(&store))
        .store_timeout(Duration::from_secs(3600))
        .close_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let _stream = hub.subscribe("alice", Default::default()).unwrap();
    let pushing = tokio::spawn({
        let hub = hub.clone();
        async move { hub.broadcast([Event::new("stuck")]).await }
    });
    tokio::task::yield_now().await;
    let started = tokio::time::Instant::now();
    hub.close().await;
    assert!(
        started.elapsed() <= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    pushing.abort();
}

#[tokio::test]
async fn a_panicking_store_fails_its_batch_and_the_next_push_works() {
    let store = Arc::new(UnluckyStore::new());
    let hub = Hub::builder()
        .store(Arc::clone(&store))
        .heartbeat(None)
        .build()
        .unwrap();
    let mut stream = hub.subscribe("alice", Default::default()).unwrap();
    assert_eq!(stream.next().await.unwrap(), ":ok\n");
    store.panic_once.store(true, Ordering::SeqCst);
    let error = hub.broadcast([Event::new("lost")]).await.unwrap_err();
    assert!(
        matches!(&error, PushError::Store(_)) && error.to_string().contains("panicked"),
        "{error}"
    );
    hub.broadcast([Event::new("after").with_id("1")])
        .await
        .unwrap();
    assert_eq!(
        within(stream.next()).await.unwrap(),
        "id: 1\ndata: after\n\n"
    );
}

#[test]
fn the_committer_outlives_the_runtime_of_the_first_push() {
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Built on `main`: the committer will live there.
    let hub = main.block_on(async { Hub::builder().store(MemoryStore::new(100)).build().unwrap() });
    // The first push comes from a runtime that is gone right after.
    let short_lived = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    short_lived
        .block_on(hub.broadcast([Event::new("first")]))
        .unwrap();
    drop(short_lived);
    main.block_on(async {
        within(hub.broadcast([Event::new("second")])).await.unwrap();
    });
}

/// A memory store that writes in `log` when a save starts, and holds each save until the test
/// gives it a turn (`turns`).
struct HeldStore {
    inner: MemoryStore,
    log: Arc<Mutex<Vec<String>>>,
    turns: tokio::sync::Semaphore,
}

#[async_trait]
impl Store for HeldStore {
    async fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        let data: Vec<&str> = records.iter().map(|r| r.event.data.as_str()).collect();
        self.log
            .lock()
            .unwrap()
            .push(format!("save {}", data.join(",")));
        self.turns.acquire().await.unwrap().forget();
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

/// A waker that writes "delivered" in the log: a stream's waker is woken when an event reaches
/// its outbox.
struct LogWaker(Arc<Mutex<Vec<String>>>);

impl Wake for LogWaker {
    fn wake(self: Arc<Self>) {
        self.0.lock().unwrap().push("delivered".into());
    }
}

#[tokio::test]
async fn the_next_batch_is_saved_while_the_one_before_is_delivered() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::new(HeldStore {
        inner: MemoryStore::new(100),
        log: Arc::clone(&log),
        turns: tokio::sync::Semaphore::new(0),
    });
    let hub = Hub::builder()
        .store(Arc::clone(&store))
        .heartbeat(None)
        .build()
        .unwrap();
    let mut stream = hub.subscribe("alice", Default::default()).unwrap();
    assert_eq!(stream.next().await.unwrap(), ":ok\n");
    let waker = Waker::from(Arc::new(LogWaker(Arc::clone(&log))));
    assert!(
        stream
            .poll_next_unpin(&mut Context::from_waker(&waker))
            .is_pending()
    );

    let push = |data: &'static str| {
        let hub = hub.clone();
        tokio::spawn(async move { hub.broadcast([Event::new(data)]).await })
    };
    let a = push("a");
    eventually("the save of a", || log.lock().unwrap().len() == 1).await;
    let b = push("b"); // queued behind a's save: the next batch
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    store.turns.add_permits(1); // a is saved
    within(a).await.unwrap().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["save a", "save b", "delivered"],
        "b's save started before a was delivered"
    );
    store.turns.add_permits(1);
    within(b).await.unwrap().unwrap();
    let mut got = String::new();
    while !got.contains("data: b") {
        got.push_str(&String::from_utf8_lossy(
            &within(stream.next()).await.unwrap(),
        ));
    }
    assert!(got.find("data: a") < got.find("data: b"), "{got}");
}

#[tokio::test(start_paused = true)]
async fn a_push_alone_waits_for_no_timer() {
    let hub = Hub::builder()
        .store(MemoryStore::new(100))
        .save_interval(None)
        .heartbeat(None)
        .build()
        .unwrap();
    let mut stream = hub.subscribe("alice", Default::default()).unwrap();
    assert_eq!(stream.next().await.unwrap(), ":ok\n");
    // The clock is paused and moves only when every task waits for a timer: a push that waited
    // for one (to gather a batch) would show as time passed.
    let start = tokio::time::Instant::now();
    for n in 0..3 {
        hub.broadcast([Event::new(n.to_string())]).await.unwrap();
        let chunk = stream.next().await.unwrap();
        assert!(chunk.ends_with(format!("data: {n}\n\n").as_bytes()));
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn with_a_save_interval_a_quiet_push_is_saved_at_once_and_a_stream_of_them_together() {
    let interval = Duration::from_millis(10);
    let (store, saves) = common::CountedStore::new(100);
    let hub = Hub::builder()
        .store(store)
        .save_interval(Some(interval))
        .heartbeat(None)
        .build()
        .unwrap();
    // The clock is paused: it moves only when every task waits for a timer.
    let start = tokio::time::Instant::now();
    hub.broadcast([Event::new("quiet")]).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "a push to an idle store: no wait"
    );
    // Right after a save: the next waits out the interval, and what comes meanwhile joins it.
    let first = tokio::spawn({
        let hub = hub.clone();
        async move { hub.broadcast([Event::new("first")]).await }
    });
    tokio::time::sleep(interval / 2).await;
    hub.broadcast([Event::new("second")]).await.unwrap();
    first.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), interval);
    assert_eq!(saves.load(Ordering::SeqCst), 2, "the two pushes, one save");
    // Idle longer than the interval: at once again.
    tokio::time::advance(interval * 2).await;
    let quiet = tokio::time::Instant::now();
    hub.broadcast([Event::new("quiet again")]).await.unwrap();
    assert_eq!(quiet.elapsed(), Duration::ZERO);
    assert_eq!(saves.load(Ordering::SeqCst), 3);
}

/// The data of every record the store holds for `uid`, in `seq` order, up to the `end` marker.
async fn saved_for(store: &RedbStore, uid: &str) -> Vec<String> {
    let mut data = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .list_after(&ListQuery::new(uid, after, 1_000))
            .await
            .unwrap();
        for record in &page.records {
            if record.event.data.as_str() == "end" {
                return data;
            }
            data.push(record.event.data.as_str().to_owned());
        }
        assert!(!page.end, "no end marker for {uid}");
        after = page.scanned_through;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_reach_each_connection_in_the_saved_order_also_across_a_resume() {
    let dir = std::env::temp_dir().join(format!("ssehub-pipeline-{}", ulid::Ulid::generate()));
    let store = RedbStore::open(&dir, Retention::events(100_000)).unwrap();
    let hub = Hub::builder()
        .store(store.clone())
        .resend(true)
        .heartbeat(None)
        .connection_buffer(100_000)
        .build()
        .unwrap();
    let uids = ["u0", "u1", "u2"];
    // One reader per uid, subscribed before the first push: each gets all its events.
    let mut readers = Vec::new();
    for uid in uids {
        let mut reader = Reader::open(&hub, uid, SubscribeOptions::default());
        readers.push(tokio::spawn(
            async move { (uid, reader.data_until_end().await) },
        ));
    }
    // A second connection of u1 that drops after 40 events and resumes from the last id it got,
    // while the pushes go on: replay, then live, must give it the same.
    let resumer = {
        let hub = hub.clone();
        let mut reader = Reader::open(&hub, "u1", SubscribeOptions::default());
        tokio::spawn(async move {
            let mut got = Vec::new();
            let mut last_id = String::new();
            while got.len() < 40 {
                let event = reader.next_event().await.unwrap();
                last_id = event.id.unwrap().as_str().to_owned();
                got.push(event.data.as_str().to_owned());
            }
            drop(reader);
            tokio::time::sleep(Duration::from_millis(2)).await;
            got.extend(Reader::resume(&hub, "u1", &last_id).data_until_end().await);
            got
        })
    };
    // Eight pushers at once: a third broadcasts, the rest to one uid each.
    let mut pushers = Vec::new();
    for p in 0..8usize {
        let hub = hub.clone();
        pushers.push(tokio::spawn(async move {
            for i in 0..60usize {
                let event = Event::new(format!("{p}-{i}"));
                if i % 3 == 0 {
                    hub.broadcast([event]).await.unwrap();
                } else {
                    hub.push([uids[(p + i) % 3]], [event]).await.unwrap();
                }
            }
        }));
    }
    for pusher in pushers {
        within(pusher).await.unwrap();
    }
    hub.broadcast([Event::new("end")]).await.unwrap();
    for reader in readers {
        let (uid, got) = within(reader).await.unwrap();
        let saved = saved_for(&store, uid).await;
        let unicast = (0..8)
            .flat_map(|p| (0..60).filter(move |i| i % 3 != 0 && uids[(p + i) % 3] == uid))
            .count();
        assert_eq!(saved.len(), 8 * 20 + unicast, "{uid}: every push saved");
        assert_eq!(
            got, saved,
            "{uid} got what was saved for it, in the saved order"
        );
    }
    let resumed = within(resumer).await.unwrap();
    assert_eq!(resumed, saved_for(&store, "u1").await, "u1 across a resume");
    drop((hub, store));
    std::fs::remove_dir_all(&dir).ok();
}
