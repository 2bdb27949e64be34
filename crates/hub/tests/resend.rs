//! Persistence and resend: what a reconnecting client gets from the store, that it gets nothing
//! addressed to someone else, and the handover from replay to live with no gap and no duplicate.
#![allow(clippy::unwrap_used)] // helpers in test code: a panic is how a test reports

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Reader, TestServer, within};
use futures_util::StreamExt;
use http::StatusCode;
use ssehub_hub::store::{
    ListQuery, MemoryStore, Page, Record, Retention, Store, StoreError, async_trait,
};
use ssehub_hub::{
    Event, HISTORY_GAP_EVENT_TYPE, Hub, PushError, SlowClientPolicy, SubscribeOptions,
};

fn store_hub() -> Hub {
    Hub::builder()
        .store(MemoryStore::new(10_000))
        .resend(true)
        .heartbeat(None)
        .build()
        .unwrap()
}

/// Pushes `data` to `uids` (broadcasts when empty) and returns its id.
async fn push(hub: &Hub, uids: &[&str], data: &str) -> String {
    let events = [Event::new(data)];
    let receipt = if uids.is_empty() {
        hub.broadcast(events).await
    } else {
        hub.push(uids, events).await
    };
    receipt.unwrap().ids[0].clone()
}

#[tokio::test]
async fn a_reconnecting_client_gets_exactly_what_it_missed_then_live_events() {
    let hub = store_hub();
    let first = push(&hub, &["alice"], "a1").await;
    push(&hub, &["bob"], "b1").await;
    push(&hub, &[], "all1").await;
    push(&hub, &["alice", "bob"], "ab1").await;
    push(&hub, &["alice"], "a2").await;

    let mut alice = Reader::resume(&hub, "alice", &first);
    assert_eq!(alice.next_data(3).await, ["all1", "ab1", "a2"]);
    push(&hub, &["alice"], "live").await;
    assert_eq!(alice.next_data(1).await, ["live"]);
}

#[tokio::test]
async fn a_uni_cast_event_is_never_resent_to_another_user() {
    let hub = store_hub();
    let start = push(&hub, &[], "start").await;
    for i in 0..50 {
        push(&hub, &["alice"], &format!("secret-{i}")).await;
        push(&hub, &["bob"], &format!("bob-{i}")).await;
    }
    let end = push(&hub, &[], "end").await;
    let marker = push(&hub, &["bob"], "marker").await;

    let mut bob = Reader::resume(&hub, "bob", &start);
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("marker") {
        seen.push(bob.next_event().await.unwrap().data.as_str().to_owned());
    }
    assert!(
        seen.iter().all(|data| !data.starts_with("secret")),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 52); // 50 of bob's, `end`, the marker
    assert!(!end.is_empty() && !marker.is_empty());

    // Resuming from alice's own event id gives bob nothing of alice's either.
    let alices = hub
        .push(["alice"], [Event::new("secret-last")])
        .await
        .unwrap()
        .ids[0]
        .clone();
    push(&hub, &["bob"], "after").await;
    let mut bob = Reader::resume(&hub, "bob", &alices);
    assert_eq!(bob.next_data(1).await, ["after"]);
}

#[tokio::test]
async fn an_unknown_or_expired_id_gets_a_gap_event_then_live_events() {
    let hub = Hub::builder()
        .store(MemoryStore::new(3))
        .resend(true)
        .heartbeat(None)
        .build()
        .unwrap();
    let oldest = push(&hub, &[], "0").await;
    for i in 1..5 {
        push(&hub, &[], &i.to_string()).await;
    }
    for last_event_id in ["never-sent", oldest.as_str()] {
        let mut client = Reader::resume(&hub, "alice", last_event_id);
        let gap = client.next_event().await.unwrap();
        assert_eq!(gap.event_type(), HISTORY_GAP_EVENT_TYPE);
        let data: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
        assert_eq!(data["last_event_id"], last_event_id);
        push(&hub, &[], "live").await;
        assert_eq!(client.next_data(1).await, ["live"]);
    }
}

#[tokio::test]
async fn resend_keeps_only_the_asked_event_type_and_pages_through_long_histories() {
    let hub = Hub::builder()
        .store(MemoryStore::new(10_000))
        .resend(true)
        .resend_page_size(3)
        .heartbeat(None)
        .build()
        .unwrap();
    let start = push(&hub, &[], "start").await;
    for i in 0..40 {
        let event_type = if i % 2 == 0 { "order" } else { "chat" };
        hub.push(
            ["alice"],
            [Event::new(format!("{event_type}-{i}")).with_event(event_type)],
        )
        .await
        .unwrap();
    }
    let mut orders = Reader::open(
        &hub,
        "alice",
        SubscribeOptions::default()
            .last_event_id(&start)
            .event_type("order"),
    );
    let expected: Vec<String> = (0..40).step_by(2).map(|i| format!("order-{i}")).collect();
    assert_eq!(orders.next_data(20).await, expected);

    let mut everything = Reader::resume(&hub, "alice", &start);
    assert_eq!(everything.next_data(40).await.len(), 40);
}

/// A memory store that lets other tasks run inside every call, as a database round trip
/// would: pushes then land between the pages of a replay, and replays between a save and its
/// delivery.
struct YieldingStore(MemoryStore);

#[async_trait]
impl Store for YieldingStore {
    async fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        let saved = self.0.save(records).await;
        // Saved but not yet delivered: a replay may now read what the live stream gets later.
        tokio::task::yield_now().await;
        saved
    }
    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.0.last_seq().await
    }
    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        tokio::task::yield_now().await;
        self.0.seq_of(id).await
    }
    async fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError> {
        tokio::task::yield_now().await;
        let page = self.0.list_after(query).await;
        tokio::task::yield_now().await;
        page
    }
}

#[tokio::test]
async fn pushes_during_a_replay_arrive_once_and_in_order() {
    // Many clients resume while a pusher keeps going: each must see a gap-free, duplicate-free
    // run of the pusher's numbers from where it resumed.
    let hub = Hub::builder()
        .store(YieldingStore(MemoryStore::new(100_000)))
        .resend(true)
        .resend_page_size(7)
        .heartbeat(None)
        .connection_buffer(100_000)
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..200u32 {
        ids.push(push(&hub, &[], &n.to_string()).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let hub = hub.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut n = 200u32;
            while !stop.load(Ordering::Relaxed) {
                hub.broadcast([Event::new(n.to_string())]).await.unwrap();
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        })
    };
    let mut readers = Vec::new();
    for resume_at in (0..200).step_by(9) {
        let mut reader = Reader::resume(&hub, &format!("u{resume_at}"), &ids[resume_at]);
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 400 {
                let event = reader.next_event().await.unwrap();
                got.push(event.data.as_str().parse::<u32>().unwrap());
            }
            (resume_at as u32, got)
        }));
        tokio::task::yield_now().await;
    }
    for reader in readers {
        let (resume_at, got) = within(reader).await.unwrap();
        let expected: Vec<u32> = (resume_at + 1..resume_at + 401).collect();
        assert_eq!(got, expected, "resumed after {resume_at}");
    }
    stop.store(true, Ordering::Relaxed);
    pusher.await.unwrap();
}

/// A memory store that can hold one save between writing and returning, as a slow disk sync
/// would, or one listing before it reads, so that a test can act in that window.
#[derive(Default)]
struct GatedStore {
    inner: Option<MemoryStore>,
    armed: AtomicBool,
    saved: tokio::sync::Notify,
    list_armed: AtomicBool,
    listing: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[async_trait]
impl Store for GatedStore {
    async fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        let inner = self.inner.as_ref().unwrap();
        inner.save(records).await?;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.saved.notify_one();
            self.release.notified().await;
        }
        Ok(())
    }
    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.inner.as_ref().unwrap().last_seq().await
    }
    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.inner.as_ref().unwrap().seq_of(id).await
    }
    async fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError> {
        if self.list_armed.swap(false, Ordering::SeqCst) {
            self.listing.notify_one();
            self.release.notified().await;
        }
        self.inner.as_ref().unwrap().list_after(query).await
    }
}

/// A hub with resend over a [`GatedStore`], and a handle on that store.
fn gated_hub() -> (Arc<GatedStore>, Hub) {
    let store = Arc::new(GatedStore {
        inner: Some(MemoryStore::new(100)),
        ..GatedStore::default()
    });
    let hub = Hub::builder()
        .store(Arc::clone(&store))
        .resend(true)
        .heartbeat(None)
        .build()
        .unwrap();
    (store, hub)
}

#[tokio::test]
async fn an_event_saved_before_a_replay_and_delivered_after_it_arrives_once() {
    use futures_util::FutureExt;

    let (store, hub) = gated_hub();
    let first = push(&hub, &[], "1").await;

    // Push 2 is saved, then held before delivery.
    store.armed.store(true, Ordering::SeqCst);
    let saved = store.saved.notified();
    let held = tokio::spawn({
        let hub = hub.clone();
        async move { push(&hub, &[], "2").await }
    });
    within(saved).await;

    // A client resumes after 1: the replay finds 2 in the store and finishes...
    let mut client = Reader::resume(&hub, "alice", &first);
    assert_eq!(client.next_data(1).await, ["2"]);
    assert!(
        client.stream.next().now_or_never().is_none(),
        "nothing more yet"
    );
    // ...before 2 reaches the live stream, which must not send it again.
    store.release.notify_one();
    within(held).await.unwrap();
    push(&hub, &[], "3").await;
    assert_eq!(client.next_data(1).await, ["3"]);
}

#[tokio::test]
async fn a_slow_client_cut_off_catches_up_on_reconnect_without_loss() {
    let hub = Hub::builder()
        .store(MemoryStore::new(10_000))
        .resend(true)
        .slow_client(SlowClientPolicy::Disconnect)
        .connection_buffer(4)
        .heartbeat(None)
        .build()
        .unwrap();
    let mut slow = Reader::open(&hub, "alice", SubscribeOptions::default());
    for n in 0..3 {
        push(&hub, &["alice"], &n.to_string()).await;
    }
    let mut last_id = String::new();
    for _ in 0..3 {
        last_id = slow
            .next_event()
            .await
            .unwrap()
            .id
            .unwrap()
            .as_str()
            .to_owned();
    }
    // It stops reading; the pushes overflow its queue of 4 and it is cut off.
    for n in 3..20 {
        push(&hub, &["alice"], &n.to_string()).await;
    }
    assert!(
        slow.next_event().await.is_none(),
        "the slow client's stream ends"
    );
    assert!(hub.stats().failed > 0);

    let mut back = Reader::resume(&hub, "alice", &last_id);
    let expected: Vec<String> = (3..20).map(|n| n.to_string()).collect();
    assert_eq!(back.next_data(17).await, expected);
}

/// A store whose every call fails, as a database that went away.
struct BrokenStore;

#[async_trait]
impl Store for BrokenStore {
    async fn save(&self, _: &[Record]) -> Result<(), StoreError> {
        Err(StoreError::backend(std::io::Error::other("disk on fire")))
    }
    async fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn seq_of(&self, _: &str) -> Result<Option<u64>, StoreError> {
        Err(StoreError::backend(std::io::Error::other("disk on fire")))
    }
    async fn list_after(&self, _: &ListQuery) -> Result<Page, StoreError> {
        Err(StoreError::backend(std::io::Error::other("disk on fire")))
    }
}

#[tokio::test]
async fn a_failing_store_refuses_the_push_and_sends_nothing() {
    let hub = Hub::builder()
        .store(BrokenStore)
        .resend(true)
        .heartbeat(None)
        .build()
        .unwrap();
    let server = TestServer::start(hub.clone()).await;
    let mut alice = server.subscribe("alice").await;

    let error = hub
        .push(["alice"], [Event::new("lost?")])
        .await
        .unwrap_err();
    assert!(matches!(error, PushError::Store(_)));
    assert_eq!(
        error.to_string(),
        "nothing was sent: saving the push failed: the event store failed: disk on fire"
    );
    let (status, body) = server
        .push_json(r#"{"uids":["alice"],"events":[{"data":"lost?"}]}"#)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["msg"].as_str().unwrap().contains("disk on fire"),
        "{body}"
    );
    assert_eq!(hub.stats().total, 0);

    // Nothing reached alice: the next thing she gets is what a working path sends (the end of
    // the stream when the hub closes), not the refused event.
    hub.close().await;
    let next = alice.next_event().await.unwrap();
    assert_eq!(next.event_type(), "close");

    // A failing read ends a resuming stream, so the client retries later with the same id.
    let hub = Hub::builder()
        .store(BrokenStore)
        .resend(true)
        .build()
        .unwrap();
    let mut resuming = Reader::resume(&hub, "alice", "some-id");
    assert!(resuming.next_event().await.is_none());
}

#[tokio::test]
async fn last_event_id_header_resumes_over_http() {
    let hub = store_hub();
    let server = TestServer::start(hub.clone()).await;
    let first = push(&hub, &["alice"], "one").await;
    push(&hub, &["alice"], "two").await;
    let mut stream = server
        .subscribe_with("/events?uid=alice", &[("last-event-id", &first)])
        .await;
    assert_eq!(stream.next_data(1).await, ["two"]);
    // The query form, as the seed's clients send it.
    let mut stream = server
        .subscribe_with(&format!("/events?uid=alice&last_event_id={first}"), &[])
        .await;
    assert_eq!(stream.next_data(1).await, ["two"]);
}

#[tokio::test]
async fn without_resend_a_last_event_id_changes_nothing() {
    let hub = Hub::builder()
        .store(MemoryStore::new(100))
        .heartbeat(None)
        .build()
        .unwrap();
    let first = push(&hub, &["alice"], "one").await;
    push(&hub, &["alice"], "two").await;
    let mut client = Reader::resume(&hub, "alice", &first);
    push(&hub, &["alice"], "three").await;
    assert_eq!(client.next_data(1).await, ["three"]);
}

#[tokio::test]
async fn numbering_continues_after_a_restart_on_the_same_store() {
    let dir =
        std::env::temp_dir().join(format!("ssehub-resend-restart-{}", ulid::Ulid::generate()));
    let open = || ssehub_hub::store::RedbStore::open(&dir, Retention::events(1_000)).unwrap();
    let first = {
        let hub = Hub::builder().store(open()).resend(true).build().unwrap();
        let first = push(&hub, &["alice"], "before-1").await;
        push(&hub, &["alice"], "before-2").await;
        hub.close().await;
        first
    };
    // The first hub's store is dropped with its last handle (the committer task's, which ends
    // once the hub is gone): wait for the file to be free.
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    let store = loop {
        match ssehub_hub::store::RedbStore::open(&dir, Retention::events(1_000)) {
            Ok(store) => break store,
            Err(error) if tokio::time::Instant::now() > deadline => panic!("{error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    };
    let hub = Hub::builder()
        .store(store)
        .resend(true)
        .heartbeat(None)
        .build()
        .unwrap();
    push(&hub, &["alice"], "after").await;
    let mut client = Reader::resume(&hub, "alice", &first);
    assert_eq!(client.next_data(2).await, ["before-2", "after"]);
    drop(client);
    drop(hub);
    std::fs::remove_dir_all(&dir).ok();
}

/// Reads a stream until it ends, returning the ids of the events it delivered.
async fn ids_until_the_end(reader: &mut Reader) -> Vec<String> {
    let mut ids = Vec::new();
    while let Some(event) = reader.next_event().await {
        ids.push(event.id.unwrap().as_str().to_owned());
    }
    ids
}

#[tokio::test(start_paused = true)]
async fn with_a_store_a_client_past_the_waiting_area_is_cut_off_never_left_with_a_hole() {
    // The seed's Wait policy used to fail the events that did not fit and carry on with later
    // ones: the client's Last-Event-ID then moved past the hole and no reconnection repaired it.
    let hub = Hub::builder()
        .store(MemoryStore::new(10_000))
        .resend(true)
        .connection_buffer(4)
        .heartbeat(None)
        .build()
        .unwrap();
    let mut slow = Reader::open(&hub, "alice", SubscribeOptions::default());
    let first = push(&hub, &["alice"], "0").await;
    assert_eq!(slow.next_data(1).await, ["0"]);
    // It stops reading: 4 queued, 4 waiting, the 9th cannot be taken.
    for n in 1..=20 {
        push(&hub, &["alice"], &n.to_string()).await;
    }
    assert!(hub.stats().failed > 0);
    let seen = ids_until_the_end(&mut slow).await;
    assert!(
        seen.is_empty(),
        "the stream ends at once, holding nothing: {seen:?}"
    );

    let mut back = Reader::resume(&hub, "alice", &first);
    let expected: Vec<String> = (1..=20).map(|n| n.to_string()).collect();
    assert_eq!(back.next_data(20).await, expected);
}

#[tokio::test(start_paused = true)]
async fn with_a_store_a_client_whose_waits_run_out_is_cut_off_and_catches_up() {
    let hub = Hub::builder()
        .store(MemoryStore::new(10_000))
        .resend(true)
        .connection_buffer(4)
        .slow_client(SlowClientPolicy::Wait {
            timeout: Duration::from_secs(1),
            retries: 2,
        })
        .heartbeat(None)
        .build()
        .unwrap();
    let mut slow = Reader::open(&hub, "alice", SubscribeOptions::default());
    let first = push(&hub, &["alice"], "0").await;
    assert_eq!(slow.next_data(1).await, ["0"]);
    for n in 1..=6 {
        push(&hub, &["alice"], &n.to_string()).await;
    }
    // Two events wait; after 2 × 1 s they run out of retries and the stream is cut off.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(hub.stats().failed, 2);
    assert!(ids_until_the_end(&mut slow).await.is_empty());
    for n in 7..=8 {
        push(&hub, &["alice"], &n.to_string()).await;
    }
    let mut back = Reader::resume(&hub, "alice", &first);
    let expected: Vec<String> = (1..=8).map(|n| n.to_string()).collect();
    assert_eq!(back.next_data(8).await, expected);
}

#[tokio::test]
async fn a_live_event_of_another_type_pushed_during_a_filtered_replay_is_not_lost() {
    let (store, hub) = gated_hub();
    let order = |data: &str| Event::new(data).with_event("order");
    let first = hub.broadcast([order("o1")]).await.unwrap().ids[0].clone();

    // The client resumes asking for `order` events only; its replay is held while reading...
    store.list_armed.store(true, Ordering::SeqCst);
    let listing = store.listing.notified();
    let mut client = Reader::open(
        &hub,
        "alice",
        SubscribeOptions::default()
            .last_event_id(first)
            .event_type("order"),
    );
    let reading = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..3 {
            let event = client.next_event().await.unwrap();
            got.push(format!("{}:{}", event.event_type(), event.data));
        }
        got
    });
    within(listing).await;
    // ...while a chat event and an order event are pushed live: the replay will find both in
    // the store and send the order; the chat event is live and must still arrive.
    hub.broadcast([Event::new("c1").with_event("chat")])
        .await
        .unwrap();
    hub.broadcast([order("o2")]).await.unwrap();
    store.release.notify_one();
    hub.broadcast([Event::new("end")]).await.unwrap();
    assert_eq!(
        within(reading).await.unwrap(),
        ["order:o2", "chat:c1", "message:end"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn assigned_ids_increase_in_the_order_events_are_delivered() {
    // A client that drops "id <= the last it saw" must lose nothing: ids are assigned in the
    // order the committer saves and delivers, not when each pusher prepared its push.
    let hub = Hub::builder()
        .store(YieldingStore(MemoryStore::new(100_000)))
        .resend(true)
        .connection_buffer(100_000)
        .max_queued_bytes(usize::MAX)
        .heartbeat(None)
        .build()
        .unwrap();
    let mut reader = Reader::open(&hub, "alice", SubscribeOptions::default());
    let pushers: Vec<_> = (0..8)
        .map(|_| {
            let hub = hub.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    hub.broadcast([Event::new("x")]).await.unwrap();
                }
            })
        })
        .collect();
    for pusher in pushers {
        within(pusher).await.unwrap();
    }
    let mut previous = String::new();
    for n in 0..800 {
        let id = reader.next_event().await.unwrap().id.unwrap();
        assert!(
            id.as_str() > previous.as_str(),
            "event {n}: {id} after {previous}"
        );
        previous = id.as_str().to_owned();
    }
}

/// A store whose history moves on between the pages of a replay: from its second listing on,
/// the three records right after where the replay got to are gone, as retention drops them when
/// a slow reader's replay takes longer than the history lasts.
struct ForgettingStore {
    inner: MemoryStore,
    listings: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Store for ForgettingStore {
    async fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        self.inner.save(records).await
    }
    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.inner.last_seq().await
    }
    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.inner.seq_of(id).await
    }
    async fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let mut query = query.clone();
        if self.listings.fetch_add(1, Ordering::SeqCst) == 1 {
            query.after += 3;
        }
        self.inner.list_after(&query).await
    }
}

#[tokio::test]
async fn history_dropped_during_a_replay_is_told_to_the_client_not_skipped_silently() {
    let hub = Hub::builder()
        .store(ForgettingStore {
            inner: MemoryStore::new(1_000),
            listings: std::sync::atomic::AtomicUsize::new(0),
        })
        .resend(true)
        .resend_page_size(2)
        .heartbeat(None)
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for i in 1..=10 {
        ids.push(push(&hub, &[], &i.to_string()).await);
    }
    let mut client = Reader::resume(&hub, "alice", &ids[0]);
    assert_eq!(client.next_data(2).await, ["2", "3"], "the first page");
    let gap = client.next_event().await.unwrap();
    assert_eq!(
        gap.event_type(),
        HISTORY_GAP_EVENT_TYPE,
        "4, 5 and 6 are gone"
    );
    let data: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(
        data["last_event_id"],
        ids[2].as_str(),
        "names the last event it got"
    );
    // What the history still has, then live.
    assert_eq!(client.next_data(4).await, ["7", "8", "9", "10"]);
    push(&hub, &[], "live").await;
    assert_eq!(client.next_data(1).await, ["live"]);
}
