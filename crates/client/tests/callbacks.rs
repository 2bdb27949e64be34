//! The callback API: connect, callbacks, disconnect, wait.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ssehub_client::{Client, ClientBuilder, Error, StopReason};
use support::{PATIENCE, Server, Step, response, sse_head, write};
use tokio::sync::mpsc;

const MS: Duration = Duration::from_millis(1);

fn builder(server: &Server) -> ClientBuilder {
    ClientBuilder::new(server.url("/events"))
        .reconnection_time(10 * MS)
        .jitter(false)
        .idle_timeout(None)
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("timed out")
        .expect("channel closed")
}

async fn wait(client: &Client) -> Result<StopReason, Error> {
    tokio::time::timeout(PATIENCE, client.wait())
        .await
        .expect("wait() did not resolve")
}

#[tokio::test]
async fn callbacks_per_type_open_and_error_across_a_reconnect() {
    let server = Server::start(|request| match request.index {
        0 => vec![
            sse_head(),
            write("data: m1\n\nevent: update\nid: 9\ndata: u1\n\nevent: other\ndata: o\n\n"),
        ],
        1 => vec![response("500 Oops", "", "")],
        _ => vec![sse_head(), write("data: m2\n\n"), Step::Hold],
    })
    .await;
    let client = builder(&server)
        .reconnect_on_http_error(true)
        .build()
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let events = tx.clone();
    client.on_message(move |event| {
        let _ = events.send(format!("message:{}:{:?}", event.data, event.id.as_deref()));
    });
    let events = tx.clone();
    client.on_event("update", move |event| {
        let _ = events.send(format!("update:{}:{:?}", event.data, event.id.as_deref()));
    });
    let opens = tx.clone();
    client.on_open(move || {
        let _ = opens.send("open".to_owned());
    });
    let errors = tx.clone();
    client.on_error(move |error| {
        let _ = errors.send(format!(
            "error:{}",
            error.status().map_or(0, |s| s.as_u16())
        ));
    });
    client.connect().await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(recv(&mut rx).await);
    }
    assert_eq!(
        seen,
        [
            "open",
            "message:m1:None",
            "update:u1:Some(\"9\")",
            // The `other` event has no callback. The stream ends; the next attempt fails.
            "error:500",
            "open",
            "message:m2:Some(\"9\")",
        ]
    );
    client.disconnect();
    assert_eq!(wait(&client).await.unwrap(), StopReason::Disconnected);
}

#[tokio::test]
async fn connect_returns_the_first_connections_error() {
    let server = Server::start(|_| vec![response("404 Not Found", "", "no such stream")]).await;
    let client = builder(&server).build().unwrap();
    let error = client.connect().await.unwrap_err();
    assert!(
        matches!(&error, Error::Http { status, body, .. } if status.as_u16() == 404 && body == "no such stream"),
        "{error:?}"
    );
    // Nothing keeps running, and the outcome is there for wait().
    assert!(matches!(wait(&client).await, Err(Error::Http { .. })));
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn connect_fails_on_a_network_error_too() {
    // A port that was just free: nothing listens there.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let client = ClientBuilder::new(format!("http://{addr}/events"))
        .build()
        .unwrap();
    let error = client.connect().await.unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}

#[tokio::test]
async fn no_content_on_reconnect_stops_for_good() {
    let server = Server::start(|request| match request.index {
        0 => vec![sse_head(), write("data: a\n\n")],
        _ => vec![response("204 No Content", "", "")],
    })
    .await;
    let client = builder(&server).build().unwrap();
    client.connect().await.unwrap();
    assert_eq!(wait(&client).await.unwrap(), StopReason::NoContent);
    // wait() resolves once the task has ended: nothing is left to reconnect.
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn close_event_stops_the_client_after_its_callbacks() {
    let server = Server::start(|_| {
        vec![
            sse_head(),
            write("data: a\n\nevent: close\ndata: bye\n\ndata: never\n\n"),
            Step::Hold,
        ]
    })
    .await;
    let client = builder(&server).build().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let messages = tx.clone();
    client.on_message(move |event| {
        let _ = messages.send(event.data.to_string());
    });
    client.on_event("close", move |event| {
        let _ = tx.send(format!("close:{}", event.data));
    });
    client.connect().await.unwrap();
    assert_eq!(wait(&client).await.unwrap(), StopReason::CloseEvent);
    assert_eq!(recv(&mut rx).await, "a");
    assert_eq!(recv(&mut rx).await, "close:bye");
    assert!(rx.try_recv().is_err(), "nothing after the close event");
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn disconnect_is_prompt_and_leaves_no_task_or_connection() {
    let mut server = Server::start(|_| vec![sse_head(), write("data: a\n\n"), Step::Hold]).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let client = builder(&server).build().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    client.on_message(move |event| {
        let _ = tx.send(event.data.to_string());
    });
    client.connect().await.unwrap();
    assert_eq!(recv(&mut rx).await, "a");
    assert!(metrics.num_alive_tasks() > baseline);

    let started = Instant::now();
    client.disconnect();
    assert!(
        started.elapsed() < 50 * MS,
        "disconnect took {:?}",
        started.elapsed()
    );
    assert_eq!(wait(&client).await.unwrap(), StopReason::Disconnected);
    // The server sees the connection closed.
    assert_eq!(server.closed().await.0, 0);
    // Our task and hyper's connection task are gone (the latter ends once it sees the body
    // dropped, so poll for it, within the usual patience).
    let deadline = Instant::now() + PATIENCE;
    while metrics.num_alive_tasks() > baseline {
        assert!(
            Instant::now() < deadline,
            "{} tasks alive, {baseline} before connect",
            metrics.num_alive_tasks()
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn disconnect_from_a_callback_stops_further_callbacks() {
    let server = Server::start(|_| {
        vec![
            sse_head(),
            write("data: 1\n\ndata: 2\n\ndata: 3\n\n"),
            Step::Hold,
        ]
    })
    .await;
    let client = Arc::new(builder(&server).build().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let (counter, weak) = (count.clone(), Arc::downgrade(&client));
    client.on_message(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        if let Some(client) = weak.upgrade() {
            client.disconnect();
        }
    });
    client.connect().await.unwrap();
    assert_eq!(wait(&client).await.unwrap(), StopReason::Disconnected);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dropping_the_client_closes_the_connection() {
    let mut server = Server::start(|_| vec![sse_head(), Step::Hold]).await;
    let client = builder(&server).build().unwrap();
    client.connect().await.unwrap();
    drop(client);
    assert_eq!(server.closed().await.0, 0);
}

#[tokio::test]
async fn connect_twice_is_refused_and_reconnect_after_stop_works() {
    let mut server = Server::start(|_| vec![sse_head(), Step::Hold]).await;
    let client = builder(&server).last_event_id("3").build().unwrap();
    client.connect().await.unwrap();
    assert!(matches!(
        client.connect().await,
        Err(Error::AlreadyConnected)
    ));
    client.disconnect();
    wait(&client).await.unwrap();
    client.connect().await.unwrap();
    let _ = server.request().await;
    assert_eq!(server.request().await.header("last-event-id"), Some("3"));
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn wait_before_connect_resolves_at_once() {
    let client = Client::new("http://127.0.0.1:9/events").unwrap();
    assert_eq!(wait(&client).await.unwrap(), StopReason::Disconnected);
}

#[tokio::test]
async fn last_event_id_follows_id_only_blocks_and_carries_over_to_the_next_connect() {
    let mut server = Server::start(|request| match request.index {
        0 => vec![sse_head(), write("id: 1\ndata: a\n\nid: 9\n\n"), Step::Hold],
        _ => vec![sse_head(), Step::Hold],
    })
    .await;
    let client = builder(&server).build().unwrap();
    assert_eq!(client.last_event_id(), "");
    let (tx, mut rx) = mpsc::unbounded_channel();
    client.on_message(move |event| {
        let _ = tx.send(event.data.to_string());
    });
    client.connect().await.unwrap();
    assert_eq!(recv(&mut rx).await, "a");
    // The id-only block dispatches nothing but moves the position.
    let deadline = Instant::now() + PATIENCE;
    while client.last_event_id() != "9" {
        assert!(
            Instant::now() < deadline,
            "last_event_id stayed {:?}",
            client.last_event_id()
        );
        tokio::time::sleep(MS).await;
    }
    client.disconnect();
    assert_eq!(wait(&client).await.unwrap(), StopReason::Disconnected);

    client.connect().await.unwrap();
    assert_eq!(server.request().await.header("last-event-id"), None);
    assert_eq!(server.request().await.header("last-event-id"), Some("9"));
    client.disconnect();
}
