//! What `Hub::push` and `Hub::broadcast` refuse when called from Rust: no uids, pushes over the
//! hub's limits. Streams are read over real HTTP on 127.0.0.1; a refused push sends nothing to
//! anyone, moves no counter and, with a store, saves nothing.
#![allow(clippy::unwrap_used)] // a panic is how a test reports

mod common;

use common::{SseStream, TestServer};
use ssehub_hub::store::MemoryStore;
use ssehub_hub::{Event, Hub, HubStats, PushError, PushField};

/// Nothing reached `streams` and no counter moved since `before`: a broadcast marker is the
/// first event each stream sees.
async fn assert_nothing_sent(hub: &Hub, before: HubStats, streams: &mut [&mut SseStream]) {
    assert_eq!(hub.stats(), before, "a refused push changes no counter");
    hub.broadcast([Event::new("marker")]).await.unwrap();
    for stream in streams {
        assert_eq!(stream.next_data(1).await, ["marker"]);
    }
}

#[tokio::test]
async fn push_with_no_uids_is_refused_and_reaches_nobody() {
    let server = TestServer::start(Hub::new()).await;
    let hub = &server.hub;
    let mut alice = server.subscribe("alice").await;
    let mut bob = server.subscribe("bob").await;
    let before = hub.stats();

    // A uid list that came out empty, e.g. a filter that matched nobody.
    let nobody: Vec<String> = ["alice", "bob"]
        .iter()
        .filter(|uid| uid.starts_with('z'))
        .map(|uid| (*uid).to_owned())
        .collect();
    let err = hub.push(nobody, [Event::new("secret")]).await.unwrap_err();
    assert_eq!(err, PushError::NoRecipients);
    assert!(
        err.to_string()
            .contains("call Hub::broadcast to reach everyone"),
        "{err}"
    );
    assert_eq!(
        hub.push(std::iter::empty::<&str>(), [Event::new("secret")])
            .await,
        Err(PushError::NoRecipients)
    );
    assert_nothing_sent(hub, before, &mut [&mut alice, &mut bob]).await;
}

#[tokio::test]
async fn rust_callers_get_the_limit_errors_and_nothing_is_sent() {
    let server = TestServer::start(Hub::new()).await;
    let hub = &server.hub;
    let mut alice = server.subscribe("alice").await;
    let before = hub.stats();

    let long_id = Event::new("x").with_id("7".repeat(20 << 10));
    assert_eq!(
        hub.push(["alice"], [Event::new("ok"), long_id.clone()])
            .await,
        Err(PushError::LimitExceeded {
            field: PushField::Id(1),
            limit: 256,
            actual: 20 << 10
        })
    );
    assert!(matches!(
        hub.broadcast([long_id]).await,
        Err(PushError::LimitExceeded {
            field: PushField::Id(0),
            ..
        })
    ));
    assert!(matches!(
        hub.broadcast([Event::new("x").with_event("t".repeat(65))])
            .await,
        Err(PushError::LimitExceeded {
            field: PushField::EventType(0),
            limit: 64,
            actual: 65
        })
    ));
    assert!(matches!(
        hub.broadcast(vec![Event::new("x"); 1_001]).await,
        Err(PushError::LimitExceeded {
            field: PushField::Events,
            limit: 1_000,
            actual: 1_001
        })
    ));
    let uids: Vec<String> = (0..10_001).map(|i| format!("u{i}")).collect();
    assert!(matches!(
        hub.push(uids, [Event::new("x")]).await,
        Err(PushError::LimitExceeded {
            field: PushField::Uids,
            limit: 10_000,
            actual: 10_001
        })
    ));
    assert_eq!(
        hub.broadcast([Event::new("x".repeat((1 << 20) + 1))]).await,
        Err(PushError::TooLarge {
            field: PushField::Data(0),
            limit: 1 << 20,
            actual: (1 << 20) + 1
        })
    );
    assert_nothing_sent(hub, before, &mut [&mut alice]).await;
}

#[tokio::test]
async fn a_refused_push_is_not_saved_so_never_resent() {
    let hub = Hub::builder()
        .store(MemoryStore::new(1_000))
        .resend(true)
        .heartbeat(None)
        .build()
        .unwrap();
    let server = TestServer::start(hub).await;
    let first = server
        .hub
        .push(["alice"], [Event::new("one")])
        .await
        .unwrap();
    let refused = server
        .hub
        .push(["alice"], [Event::new("too big").with_id("x".repeat(300))])
        .await;
    assert!(matches!(refused, Err(PushError::LimitExceeded { .. })));
    server
        .hub
        .push(["alice"], [Event::new("two")])
        .await
        .unwrap();

    let mut alice = server
        .subscribe_with("/events?uid=alice", &[("Last-Event-ID", &first.ids[0])])
        .await;
    assert_eq!(alice.next_data(1).await, ["two"]);
}

#[tokio::test]
async fn reserved_event_types_are_the_rust_callers_to_send() {
    // The HTTP push API refuses them by default; the Rust API is the application's own code.
    let server = TestServer::start(Hub::new()).await;
    let mut alice = server.subscribe("alice").await;
    server
        .hub
        .push(
            ["alice"],
            [Event::new("bye").with_event(ssehub_hub::CLOSE_EVENT_TYPE)],
        )
        .await
        .unwrap();
    let event = alice.next_event().await.unwrap();
    assert_eq!(event.event_type(), "close");
}
