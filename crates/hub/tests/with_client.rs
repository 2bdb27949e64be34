//! The hub and the ssehub client together, over real HTTP on 127.0.0.1: what one sends, the other
//! understands, including the way the hub tells clients to stop or to come back.
#![allow(clippy::unwrap_used)] // helpers in test code: a panic is how a test reports

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use common::{TestServer, within};
use futures_util::StreamExt;
use ssehub_client::{Client, ClientBuilder, StopReason};
use ssehub_hub::{Event, Hub, SubscribeOptions};
use tokio::sync::mpsc;

#[tokio::test]
async fn client_receives_what_the_hub_pushes_and_stops_on_close() {
    let server = TestServer::start(Hub::new()).await;
    let mut events = ClientBuilder::new(server.url("/events?uid=alice"))
        .build_stream()
        .unwrap();
    // The stream connects when first polled: push once the hub sees the connection.
    let first = tokio::spawn(async move {
        let event = events.next().await;
        (events, event)
    });
    common::eventually("the client to connect", || {
        server.hub.online_clients_num() == 1
    })
    .await;

    let receipt = server
        .hub
        .push(["alice"], [Event::new("line 1\nline 2").with_event("note")])
        .await
        .unwrap();
    server
        .hub
        .push(["bob"], [Event::new("not for alice")])
        .await
        .unwrap();
    server
        .hub
        .broadcast([Event::new("to all").with_id("b-1")])
        .await
        .unwrap();

    let (mut events, first) = within(first).await.unwrap();
    let first = first.unwrap().unwrap();
    assert_eq!(
        (first.event_type(), first.data.as_str()),
        ("note", "line 1\nline 2")
    );
    assert_eq!(first.id.as_deref(), Some(receipt.ids[0].as_str()));
    let second = within(events.next()).await.unwrap().unwrap();
    assert_eq!(
        (second.data.as_str(), second.id.as_deref()),
        ("to all", Some("b-1"))
    );

    within(server.hub.close()).await;
    let close = within(events.next()).await.unwrap().unwrap();
    assert_eq!(close.event_type(), ssehub_hub::CLOSE_EVENT_TYPE);
    assert!(
        within(events.next()).await.is_none(),
        "the client stops after the close event"
    );
}

#[tokio::test]
async fn callback_client_stops_on_close_and_on_204() {
    let server = TestServer::start(Hub::new()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let client = Client::new(server.url("/events?uid=alice")).unwrap();
    client.on_message(move |event| {
        tx.send(event.data.as_str().to_owned()).ok();
    });
    within(client.connect()).await.unwrap();
    server
        .hub
        .broadcast([Event::new("hello_world_1")])
        .await
        .unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), "hello_world_1");
    within(server.hub.close()).await;
    assert_eq!(within(client.wait()).await.unwrap(), StopReason::CloseEvent);

    // Reconnecting to a closed hub gets 204, which stops a client for good.
    within(client.connect()).await.unwrap();
    assert_eq!(within(client.wait()).await.unwrap(), StopReason::NoContent);
}

/// Serves `hub` on `addr`, reporting where each subscriber asked to resume.
async fn serve_recording(
    hub: Hub,
    addr: SocketAddr,
    resumes: mpsc::UnboundedSender<Option<String>>,
) {
    let app = Router::new().route(
        "/events",
        axum::routing::get(move |options: SubscribeOptions| {
            let hub = hub.clone();
            let resumes = resumes.clone();
            async move {
                resumes.send(options.last_event_id.clone()).ok();
                let response: Response = ssehub_hub::axum::sse_response(&hub, "alice", options);
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}

#[tokio::test]
async fn client_resumes_with_its_last_event_id_after_a_restart() {
    let addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let (resumes_tx, mut resumes) = mpsc::unbounded_channel();
    let first_hub = Hub::new();
    let first_server = tokio::spawn(serve_recording(first_hub.clone(), addr, resumes_tx.clone()));

    let mut events = ClientBuilder::new(format!("http://{addr}/events"))
        .reconnection_time(Duration::from_millis(20))
        .max_reconnect_delay(Duration::from_millis(100))
        .build_stream()
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(event) = events.next().await {
            let event = event.unwrap();
            seen.push((
                event.data.as_str().to_owned(),
                event.id.as_deref().map(str::to_owned),
            ));
            if seen.len() == 4 {
                break;
            }
        }
        seen
    });
    assert_eq!(
        within(resumes.recv()).await.unwrap(),
        None,
        "a fresh client sends no Last-Event-ID"
    );
    common::eventually("the client to connect", || {
        first_hub.online_clients_num() == 1
    })
    .await;
    first_hub
        .push(["alice"], [Event::new("one").with_id("1")])
        .await
        .unwrap();
    first_hub
        .push(["alice"], [Event::new("two").with_id("2")])
        .await
        .unwrap();
    first_hub
        .push(["alice"], [Event::new("three")])
        .await
        .unwrap();
    assert_eq!(first_hub.stats().success, 3);

    // The node goes away: streams end without a close event, the server stops.
    within(first_hub.close_for_restart()).await;
    first_server.abort();
    let _ = first_server.await;

    // Back on the same address with a new hub: the client comes back on its own and says where
    // it stopped.
    let second_hub = Hub::new();
    tokio::spawn(serve_recording(second_hub.clone(), addr, resumes_tx));
    common::eventually("the client to reconnect", || {
        second_hub.online_clients_num() == 1
    })
    .await;
    // Every reconnection (including any answered "restarting" by the old node as it closed).
    let mut resumed_from = Vec::new();
    while let Ok(resume) = resumes.try_recv() {
        resumed_from.push(resume);
    }
    second_hub
        .push(["alice"], [Event::new("four").with_id("4")])
        .await
        .unwrap();

    let seen = within(reader).await.unwrap();
    let third = seen[2].1.clone().unwrap();
    assert!(!resumed_from.is_empty());
    for resume in resumed_from {
        assert_eq!(
            resume.as_deref(),
            Some(third.as_str()),
            "Last-Event-ID is the last id seen"
        );
    }
    let data: Vec<&str> = seen.iter().map(|(data, _)| data.as_str()).collect();
    assert_eq!(data, ["one", "two", "three", "four"]);
}
