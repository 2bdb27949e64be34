//! The store committer under unlucky conditions: reused ids, a store that hangs or panics, a
//! first push from a short-lived runtime, and closing while a push waits for the store.
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{TestServer, within};
use futures_util::{FutureExt, StreamExt};
use http::StatusCode;
use ssehub_hub::store::{ListQuery, MemoryStore, Page, Record, Store, StoreError, async_trait};
use ssehub_hub::{Event, Hub, PushError};

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
