//! Hubs as nodes of one shared log (`HubBuilder::log`), here a `MemoryLog` shared in-process:
//! a push on one node reaches every node's addressed connections, in one order; resend works on
//! any node; privacy holds; reused ids are refused across nodes; a hole closes the streams.
//! The same against Redis, with `serve` processes: `crates/cli/tests/multi_node.rs`.
#![allow(clippy::unwrap_used)] // helpers in test code: a panic is how a test reports

mod common;

use std::sync::Arc;

use common::{Reader, within};
use ssehub_hub::store::{Append, Log, MemoryLog, Recipients};
use ssehub_hub::{Event, Hub, PushError, SubscribeOptions};

fn node(log: &Arc<MemoryLog>) -> Hub {
    Hub::builder()
        .log(Arc::clone(log))
        .resend(true)
        .heartbeat(None)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_on_one_node_reaches_every_node_in_one_order() {
    let log = Arc::new(MemoryLog::new(10_000));
    let (a, b, c) = (node(&log), node(&log), node(&log));
    let mut on_a = Reader::open(&a, "alice", SubscribeOptions::default());
    let mut on_b = Reader::open(&b, "alice", SubscribeOptions::default());
    let mut on_c = Reader::open(&c, "bob", SubscribeOptions::default());
    // Pushes from every node at once: each reader sees one order, the log's.
    let pushers: Vec<_> = [a.clone(), b.clone(), c.clone()]
        .into_iter()
        .enumerate()
        .map(|(n, hub)| {
            tokio::spawn(async move {
                for i in 0..30 {
                    let receipt = hub
                        .broadcast([Event::new(format!("{n}-{i}"))])
                        .await
                        .unwrap();
                    // Delivery happens on every node afterwards: the receipt counts nothing.
                    assert_eq!(receipt.connections, 0);
                }
            })
        })
        .collect();
    for pusher in pushers {
        within(pusher).await.unwrap();
    }
    let mut orders = Vec::new();
    for reader in [&mut on_a, &mut on_b, &mut on_c] {
        let mut order = Vec::new();
        for _ in 0..90 {
            let event = reader.next_event().await.unwrap();
            order.push((event.id.unwrap().to_string(), event.data.to_string()));
        }
        orders.push(order);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    let ids: Vec<u64> = orders[0]
        .iter()
        .map(|(id, _)| id.parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=90).collect::<Vec<_>>(), "the log's seqs, dense");
    assert_eq!(
        a.stats().success,
        90,
        "node a delivered to its one connection"
    );
}

#[tokio::test]
async fn a_client_moved_to_another_node_gets_exactly_what_it_missed() {
    let log = Arc::new(MemoryLog::new(10_000));
    let (a, b) = (node(&log), node(&log));
    let mut on_a = Reader::open(&a, "alice", SubscribeOptions::default());
    a.push(["alice"], [Event::new("one")]).await.unwrap();
    let seen = on_a.next_event().await.unwrap();
    drop(on_a);
    b.push(["alice"], [Event::new("two")]).await.unwrap();
    a.push(["bob"], [Event::new("not yours")]).await.unwrap();
    a.broadcast([Event::new("three")]).await.unwrap();
    let mut on_b = Reader::resume(&b, "alice", seen.id.as_deref().unwrap());
    assert_eq!(on_b.next_data(2).await, ["two", "three"]);
    a.push(["alice"], [Event::new("live")]).await.unwrap();
    assert_eq!(on_b.next_data(1).await, ["live"]);
}

#[tokio::test]
async fn uni_cast_and_topics_stay_private_across_nodes() {
    let log = Arc::new(MemoryLog::new(10_000));
    let (a, b) = (node(&log), node(&log));
    let mut bob = Reader::open(&b, "bob", SubscribeOptions::default().topic("orders/4"));
    let mut carol = Reader::open(&a, "carol", SubscribeOptions::default().topic("orders/42"));
    a.push(["alice"], [Event::new("for alice")]).await.unwrap();
    a.push_to(Recipients::topics(["orders/42"]), [Event::new("order 42")])
        .await
        .unwrap();
    b.push_to(
        Recipients::uids(["bob"]).and_topics(["orders/42"]),
        [Event::new("bob and 42")],
    )
    .await
    .unwrap();
    a.broadcast([Event::new("end")]).await.unwrap();
    assert_eq!(bob.data_until_end().await, ["bob and 42"]);
    assert_eq!(carol.data_until_end().await, ["order 42", "bob and 42"]);
}

#[tokio::test]
async fn an_id_used_on_one_node_is_refused_on_another() {
    let log = Arc::new(MemoryLog::new(10_000));
    let (a, b) = (node(&log), node(&log));
    a.broadcast([Event::new("x").with_id("order-1")])
        .await
        .unwrap();
    let again = b.broadcast([Event::new("y").with_id("order-1")]).await;
    assert!(
        matches!(again, Err(PushError::DuplicateId { index: 0, ref id }) if id == "order-1"),
        "{again:?}"
    );
}

#[tokio::test]
async fn records_the_node_can_no_longer_deliver_close_its_streams() {
    // Retention of 2 events, and a node that is not reading: pushes trim what it has not read.
    let log = Arc::new(MemoryLog::new(2));
    let a = node(&log);
    let mut on_a = Reader::open(&a, "alice", SubscribeOptions::default());
    a.broadcast([Event::new("first")]).await.unwrap();
    assert_eq!(on_a.next_data(1).await, ["first"]);
    // Appended behind the node's back (as another node would), all at once.
    let events: Vec<Event> = (0..5).map(|i| Event::new(format!("{i}"))).collect();
    log.append(
        &[Append {
            recipients: &Recipients::All,
            events: &events,
        }],
        0,
    )
    .await
    .unwrap();
    // The node finds 2..=4 gone (it reads 5 and 6): the stream ends, so that the client resumes.
    let mut rest = Vec::new();
    while let Some(event) = on_a.next_event().await {
        rest.push(event.data.to_string());
    }
    assert!(rest.is_empty(), "{rest:?}");
}
