//! Topics: who gets a push to a topic (and who never does), the union of uids and topics with
//! no duplicate, the registry's topic index, the push API's `topics`, authorization over axum,
//! and resend of topic events from the store, across a restart of the on-disk store.
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

mod common;

use common::{Reader, TestServer};
use http::StatusCode;
use ssehub_hub::store::{MemoryStore, RedbStore, Retention};
use ssehub_hub::{Event, Hub, PushError, Recipients, SubscribeOptions};

fn on_topics(hub: &Hub, uid: &str, topics: &[&str]) -> Reader {
    Reader::open(
        hub,
        uid,
        SubscribeOptions::default().topics(topics.iter().copied()),
    )
}

fn quiet_hub() -> Hub {
    Hub::builder().heartbeat(None).build().unwrap()
}

#[tokio::test]
async fn a_topic_push_reaches_its_subscribers_and_nobody_else() {
    let hub = quiet_hub();
    let mut a = on_topics(&hub, "alice", &["orders/42"]);
    let mut a2 = on_topics(&hub, "alice", &[]); // alice's other tab, not on the topic
    let mut b = on_topics(&hub, "bob", &["orders/4", "orders/420", "orders"]);
    // A uid spelled like the topic is not a subscriber of it.
    let mut named = on_topics(&hub, "orders/42", &[]);
    let receipt = hub
        .push_to(Recipients::topics(["orders/42"]), [Event::new("shipped")])
        .await
        .unwrap();
    assert_eq!(receipt.connections, 1);
    hub.broadcast([Event::new("end")]).await.unwrap();
    assert_eq!(a.data_until_end().await, ["shipped"]);
    assert!(a2.data_until_end().await.is_empty());
    assert!(b.data_until_end().await.is_empty());
    assert!(named.data_until_end().await.is_empty());
}

#[tokio::test]
async fn uids_and_topics_address_the_union_each_connection_once() {
    let hub = quiet_hub();
    // alice: by uid and by both topics; bob: by both topics; carol: by uid only; dave: neither.
    let mut alice = on_topics(&hub, "alice", &["t1", "t2", "t3"]);
    let mut bob = on_topics(&hub, "bob", &["t2", "t1"]);
    let mut carol = on_topics(&hub, "carol", &[]);
    let mut dave = on_topics(&hub, "dave", &["t3"]);
    let to = Recipients::uids(["alice", "carol", "alice"]).and_topics(["t2", "t1", "t2"]);
    let receipt = hub
        .push_to(to, [Event::new("one"), Event::new("two")])
        .await
        .unwrap();
    assert_eq!(receipt.connections, 3);
    assert_eq!(
        hub.stats().success,
        6,
        "3 connections × 2 events, no duplicate"
    );
    hub.broadcast([Event::new("end")]).await.unwrap();
    for reader in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(reader.data_until_end().await, ["one", "two"]);
    }
    assert!(dave.data_until_end().await.is_empty());
}

#[tokio::test]
async fn a_push_to_nobody_or_to_a_bad_topic_is_refused_before_anything_is_sent() {
    let hub = quiet_hub();
    let mut reader = on_topics(&hub, "alice", &["ok"]);
    let nobody = Recipients::topics(Vec::<String>::new());
    assert_eq!(
        hub.push_to(nobody, [Event::new("x")]).await,
        Err(PushError::NoRecipients)
    );
    let bad = hub
        .push_to(Recipients::topics(["a", "b\u{0}d"]), [Event::new("x")])
        .await
        .unwrap_err();
    assert_eq!(
        bad.to_string(),
        "topics[1]: a control character at byte 1; topics are printable text"
    );
    let long = "x".repeat(257);
    assert!(matches!(
        hub.push_to(Recipients::topics([long]), [Event::new("x")])
            .await,
        Err(PushError::InvalidTopic { .. })
    ));
    hub.broadcast([Event::new("end")]).await.unwrap();
    assert!(
        reader.data_until_end().await.is_empty(),
        "nothing half-sent"
    );
    assert_eq!(hub.stats().total, 1, "only the end marker was delivered");
}

#[tokio::test]
async fn the_topic_index_is_empty_after_many_subscribe_and_drop_cycles() {
    let hub = quiet_hub();
    let topic = |i: usize| format!("room/{}", i % 997);
    let mut held = Vec::new();
    for cycle in 0..10_000usize {
        let options =
            SubscribeOptions::default().topics([topic(cycle), topic(cycle * 7), topic(cycle + 1)]);
        let subscription = hub
            .subscribe(&format!("u{}", cycle % 100), options)
            .unwrap();
        // Keep a few alive for a while, so removals meet lists with other entries in them.
        if cycle % 3 == 0 {
            held.push(subscription);
        }
        if held.len() > 50 {
            held.drain(..25);
        }
        if cycle % 1000 == 0 {
            hub.push_to(Recipients::topics([topic(cycle)]), [Event::new("x")])
                .await
                .unwrap();
        }
    }
    assert!(hub.stats().topics > 0);
    drop(held);
    let stats = hub.stats();
    assert_eq!(
        (stats.connections, stats.online_users, stats.topics),
        (0, 0, 0)
    );
    // And a topic push now reaches nobody, without error.
    let receipt = hub
        .push_to(Recipients::topics([topic(1)]), [Event::new("x")])
        .await
        .unwrap();
    assert_eq!(receipt.connections, 0);
}

#[tokio::test]
async fn concurrent_subscribes_drops_and_topic_pushes_leave_the_index_empty() {
    let hub = Hub::builder().heartbeat(None).build().unwrap();
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..2_000usize {
                let topics = [format!("t{}", i % 13), format!("t{}", (i + worker) % 17)];
                let subscription = hub
                    .subscribe(
                        &format!("w{worker}"),
                        SubscribeOptions::default().topics(topics),
                    )
                    .unwrap();
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
                drop(subscription);
            }
        }));
    }
    let pusher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 0..500usize {
                let to = Recipients::topics([format!("t{}", i % 13), format!("t{}", i % 17)]);
                hub.push_to(to, [Event::new("x")]).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    for task in tasks {
        task.await.unwrap();
    }
    pusher.await.unwrap();
    let stats = hub.stats();
    assert_eq!((stats.connections, stats.topics), (0, 0));
}

#[tokio::test]
async fn the_push_api_takes_topics_and_refuses_empty_or_bad_ones_naming_them() {
    let server = TestServer::start(quiet_hub()).await;
    let mut watcher = server
        .subscribe_with("/events?uid=bob&allow=orders/*&topic=orders/42", &[])
        .await;
    assert_eq!(watcher.status, StatusCode::OK);
    let mut owner = server.subscribe("alice").await;
    let mut bystander = server.subscribe("carol").await;
    let (status, body) = server
        .push_json(r#"{"uids":["alice"],"topics":["orders/42"],"events":[{"data":"shipped"}]}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["connections"], 2);
    server.hub.broadcast([Event::new("end")]).await.unwrap();
    assert_eq!(watcher.next_data(2).await, ["shipped", "end"]);
    assert_eq!(owner.next_data(2).await, ["shipped", "end"]);
    assert_eq!(bystander.next_data(1).await, ["end"]);

    for (body, says) in [
        (r#"{"topics":[],"events":[{"data":"x"}]}"#, "topics: empty"),
        (
            r#"{"topics":null,"events":[{"data":"x"}]}"#,
            "topics: empty",
        ),
        (
            r#"{"topics":["ok",""],"events":[{"data":"x"}]}"#,
            "topics[1]: a topic must not be empty",
        ),
        (
            r#"{"topics":["z","a\nb"],"events":[{"data":"x"}]}"#,
            "topics[1]: a control character",
        ),
        (
            r#"{"topic":["a"],"events":[{"data":"x"}]}"#,
            "unknown field `topic`",
        ),
        (r#"{"topics":"a","events":[{"data":"x"}]}"#, "topics"),
    ] {
        let (status, json) = server.push_json(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        let message = json["msg"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    // 2 deliveries of "shipped", 3 of "end": the refused pushes reached nobody.
    assert_eq!(server.hub.stats().total, 5);
}

#[tokio::test]
async fn over_axum_a_topic_outside_the_allowed_ones_is_403_and_a_bad_one_400() {
    let server = TestServer::start(quiet_hub()).await;
    for (query, status) in [
        (
            "/events?uid=bob&allow=orders/*&topic=prices",
            StatusCode::FORBIDDEN,
        ),
        // A bare SubscriberId (no `allow`) may not ask for topics at all.
        ("/events?uid=bob&topic=orders/1", StatusCode::FORBIDDEN),
        (
            "/events?uid=bob&allow=*&topic=a%0Db",
            StatusCode::BAD_REQUEST,
        ),
        ("/events?uid=bob&allow=*&topic=%C3", StatusCode::BAD_REQUEST),
    ] {
        let stream = server.subscribe_with(query, &[]).await;
        assert_eq!(stream.status, status, "{query}");
    }
    let allowed = server
        .subscribe_with(
            "/events?uid=bob&allow=orders/*&allow=prices&topic=prices&topic=orders/9",
            &[],
        )
        .await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(server.hub.stats().topics, 2);
}

/// Pushes one event of `data` to `to` and returns its id.
async fn push(hub: &Hub, to: Recipients, data: &str) -> String {
    let receipt = hub.push_to(to, [Event::new(data)]).await.unwrap();
    receipt.ids[0].clone()
}

/// The history the resend tests use: one event each to topic a, topic b, alice, bob, everyone,
/// and a and b together, after a first broadcast to resume from.
async fn history(hub: &Hub) -> String {
    let start = push(hub, Recipients::All, "start").await;
    push(hub, Recipients::topics(["a"]), "to a").await;
    push(hub, Recipients::topics(["b"]), "to b").await;
    push(hub, Recipients::uids(["alice"]), "to alice").await;
    push(hub, Recipients::uids(["bob"]), "to bob").await;
    push(hub, Recipients::All, "to all").await;
    push(hub, Recipients::topics(["b", "a"]), "to a and b").await;
    start
}

async fn resent(hub: &Hub, uid: &str, topics: &[&str], last_event_id: &str) -> Vec<String> {
    let options = SubscribeOptions::default()
        .topics(topics.iter().copied())
        .last_event_id(last_event_id);
    let mut reader = Reader::open(hub, uid, options);
    hub.broadcast([Event::new("end")]).await.unwrap();
    reader.data_until_end().await
}

#[tokio::test]
async fn resend_gives_what_was_pushed_to_the_uid_to_the_topics_it_has_now_or_to_everyone() {
    let hub = Hub::builder()
        .store(MemoryStore::new(1_000))
        .resend(true)
        .heartbeat(None)
        .build()
        .unwrap();
    let start = history(&hub).await;
    assert_eq!(
        resent(&hub, "alice", &["a"], &start).await,
        ["to a", "to alice", "to all", "to a and b"]
    );
    // Resuming with another topic set: the history of the topics it has now. (The first
    // resume's end marker is history too: the replay stops there.)
    assert_eq!(
        resent(&hub, "alice", &["b"], &start).await,
        ["to b", "to alice", "to all", "to a and b"]
    );
    assert_eq!(
        resent(&hub, "carol", &[], &start).await,
        ["to all"],
        "no topic, not addressed: broadcasts only"
    );
    assert_eq!(
        resent(&hub, "bob", &["a", "b"], &start).await,
        ["to a", "to b", "to bob", "to all", "to a and b"],
        "in order, the event to both topics once"
    );
}

#[tokio::test]
async fn topic_events_are_resent_after_a_restart_of_the_on_disk_store() {
    let dir =
        std::env::temp_dir().join(format!("ssehub-topics-restart-{}", ulid::Ulid::generate()));
    let hub_on = |store| {
        Hub::builder()
            .store(store)
            .resend(true)
            .heartbeat(None)
            .build()
            .unwrap()
    };
    let hub = hub_on(RedbStore::open(&dir, Retention::events(1_000)).unwrap());
    let start = history(&hub).await;
    hub.close().await;
    drop(hub);
    // The first hub's committer holds the file until it ends: wait for it to be free.
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    let store = loop {
        match RedbStore::open(&dir, Retention::events(1_000)) {
            Ok(store) => break store,
            Err(error) if tokio::time::Instant::now() > deadline => panic!("{error}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    };
    let hub = hub_on(store);
    assert_eq!(
        resent(&hub, "alice", &["a"], &start).await,
        ["to a", "to alice", "to all", "to a and b"]
    );
    assert_eq!(
        resent(&hub, "dave", &["b"], &start).await,
        ["to b", "to all", "to a and b"]
    );
    assert_eq!(
        resent(&hub, "bob", &["c"], &start).await,
        ["to bob", "to all"],
        "an event to topic a is not resent to a connection on c"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
