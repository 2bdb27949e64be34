//! `ssehub_hub::server::Server` on 127.0.0.1, spoken to with raw sockets: the lean event-stream
//! path, the fallback router on the same port, limits, timeouts and shutdown.
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

mod common;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use common::{PATIENCE, eventually, within};
use http::{HeaderName, HeaderValue, StatusCode};
use ssehub_hub::server::{Server, ServerBuilder};
use ssehub_hub::store::MemoryStore;
use ssehub_hub::{CLOSE_EVENT_TYPE, Event, Hub};
use ssehub_wire::{Decoder, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The test's authentication: the uid is the `uid` query parameter; none is `401`, `nobody`
/// is `403`. It also checks that the peer's address is there for it.
fn uid_from_query(parts: &http::request::Parts) -> Result<String, StatusCode> {
    assert!(
        parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .is_some(),
        "the peer address reaches authenticate"
    );
    let uid = parts
        .uri
        .query()
        .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("uid=")))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    match uid {
        "nobody" => Err(StatusCode::FORBIDDEN),
        uid => Ok(uid.to_owned()),
    }
}

/// A hub served by `Server` with the push API as the fallback, on a free port.
struct Lean {
    addr: SocketAddr,
    hub: Hub,
    serving: JoinHandle<()>,
}

impl Lean {
    async fn start(hub: Hub) -> Self {
        Self::start_with(hub, |builder| builder).await
    }

    async fn start_with(hub: Hub, configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Self {
        let fallback = axum::Router::new().route("/push", ssehub_hub::axum::push(hub.clone()));
        let server = configure(Server::builder(hub.clone(), uid_from_query).fallback(fallback))
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = tokio::spawn(server.serve(listener).into_future());
        Self { addr, hub, serving }
    }

    async fn connect(&self) -> Raw {
        Raw {
            socket: within(TcpStream::connect(self.addr)).await.unwrap(),
            buf: BytesMut::new(),
            decoder: Decoder::new(),
        }
    }

    /// Opens `/events?<query>`, checks the `200` head, and reads the opening comment.
    async fn subscribe(&self, query: &str) -> Raw {
        let mut raw = self.connect().await;
        raw.send(&format!("GET /events?{query} HTTP/1.1\r\nHost: t\r\n\r\n"))
            .await;
        let head = raw.head().await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(raw.next_frame().await, Some(Frame::Comment("ok".into())));
        raw
    }
}

/// A raw HTTP/1.1 connection, read with the SSE decoder once past the head.
struct Raw {
    socket: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Raw {
    async fn send(&mut self, bytes: &str) {
        within(self.socket.write_all(bytes.as_bytes()))
            .await
            .unwrap();
    }

    /// Reads more; false at the end of the connection (a reset counts as an end).
    async fn fill(&mut self) -> bool {
        self.buf.reserve(4096);
        matches!(within(self.socket.read_buf(&mut self.buf)).await, Ok(n) if n > 0)
    }

    /// A response head, up to and including its blank line.
    async fn head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = self.buf.split_to(end + 4);
                return String::from_utf8(head.to_vec()).unwrap();
            }
            assert!(self.fill().await, "the connection ended inside a head");
        }
    }

    /// A whole response with a `content-length` body: the head and the body.
    async fn response(&mut self) -> (String, String) {
        let head = self.head().await;
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .map_or(0, |n| n.parse().unwrap());
        while self.buf.len() < length {
            assert!(self.fill().await, "the connection ended inside a body");
        }
        let body = self.buf.split_to(length);
        (head, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Everything until the server closes the connection.
    async fn rest(&mut self) -> String {
        while self.fill().await {}
        String::from_utf8_lossy(&self.buf.split()).into_owned()
    }

    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(frame);
            }
            if !self.fill().await {
                return self.decoder.decode_eof(&mut self.buf).unwrap();
            }
        }
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            match self.next_frame().await? {
                Frame::Event(event) => return Some(event),
                Frame::Comment(_) | Frame::Retry(_) => {}
            }
        }
    }

    async fn next_data(&mut self) -> String {
        let event = self.next_event().await.expect("the stream ended early");
        event.data.as_str().to_owned()
    }
}

fn push_request(body: &str) -> String {
    format!(
        "POST /push HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn unicast_and_broadcast_arrive_over_the_lean_path() {
    let server = Lean::start(Hub::new()).await;
    let mut alice = server.subscribe("uid=alice").await;
    let mut bob = server.subscribe("uid=bob").await;
    assert_eq!(server.hub.stats().connections, 2);

    server
        .hub
        .push(["alice"], [Event::new("a1")])
        .await
        .unwrap();
    server.hub.broadcast([Event::new("all")]).await.unwrap();
    assert_eq!(alice.next_data().await, "a1");
    assert_eq!(alice.next_data().await, "all");
    assert_eq!(bob.next_data().await, "all", "bob gets only the broadcast");
}

#[tokio::test]
async fn stream_response_head_is_exact_and_unframed() {
    let hub = Hub::builder()
        .stream_header(
            HeaderName::from_static("access-control-allow-origin"),
            HeaderValue::from_static("*"),
        )
        .build()
        .unwrap();
    let server = Lean::start(hub).await;
    let mut raw = server.connect().await;
    raw.send("GET /events?uid=alice HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(
        raw.head().await,
        "HTTP/1.1 200 OK\r\n\
         content-type: text/event-stream\r\n\
         cache-control: no-cache\r\n\
         x-accel-buffering: no\r\n\
         access-control-allow-origin: *\r\n\
         connection: close\r\n\r\n"
    );
    // The body is the SSE bytes as they are: no chunk sizes around them.
    while raw.buf.len() < 4 {
        assert!(raw.fill().await);
    }
    assert_eq!(&raw.buf[..], b":ok\n");
    raw.buf.clear();
    server
        .hub
        .push(["alice"], [Event::new("hi").with_id("1")])
        .await
        .unwrap();
    while raw.buf.len() < 15 {
        assert!(raw.fill().await);
    }
    assert_eq!(&raw.buf[..], b"id: 1\ndata: hi\n\n");

    // HTTP/1.0 clients get the same stream.
    let mut old = server.connect().await;
    old.send("GET /events?uid=bob HTTP/1.0\r\n\r\n").await;
    assert!(old.head().await.starts_with("HTTP/1.1 200 OK\r\n"));
}

#[tokio::test]
async fn refused_streams_get_the_status_and_the_connection_closes() {
    let server = Lean::start(Hub::new()).await;
    for (request, status) in [
        ("GET /events HTTP/1.1\r\n\r\n", "401 Unauthorized"),
        ("GET /events?uid=nobody HTTP/1.1\r\n\r\n", "403 Forbidden"),
        ("GET /events?uid= HTTP/1.1\r\n\r\n", "400 Bad Request"), // empty uid
        (
            // The same resume rules as the axum extractor: a duplicate is a bad query.
            "GET /events?uid=a&event_type=x&event_type=y HTTP/1.1\r\n\r\n",
            "400 Bad Request",
        ),
        (
            "GET /events?uid=a HTTP/1.1\r\nLast-Event-ID: \u{e9}\r\n\r\n",
            "400 Bad Request",
        ),
        (
            "GET /events HTTP/1.1\r\nBad Header\r\n\r\n",
            "400 Bad Request",
        ),
    ] {
        let mut raw = server.connect().await;
        raw.send(request).await;
        let answer = raw.rest().await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{request:?}: {answer}"
        );
        assert!(answer.contains("connection: close\r\n"), "{answer}");
    }
    assert_eq!(server.hub.stats().connections, 0);
}

#[tokio::test]
async fn last_event_id_header_and_query_reach_the_hub() {
    let hub = Hub::builder()
        .store(MemoryStore::new(100))
        .resend(true)
        .build()
        .unwrap();
    let server = Lean::start(hub).await;
    for id in ["1", "2", "3"] {
        server
            .hub
            .broadcast([Event::new(format!("e{id}")).with_id(id)])
            .await
            .unwrap();
    }

    let mut by_header = server.connect().await;
    by_header
        .send("GET /events?uid=a&last_event_id=1 HTTP/1.1\r\nLast-Event-ID: 2\r\n\r\n")
        .await;
    assert!(by_header.head().await.starts_with("HTTP/1.1 200 OK"));
    assert_eq!(by_header.next_data().await, "e3", "the header wins");

    let mut by_query = server.connect().await;
    by_query
        .send("GET /events?uid=a&last_event_id=1 HTTP/1.1\r\n\r\n")
        .await;
    assert!(by_query.head().await.starts_with("HTTP/1.1 200 OK"));
    assert_eq!(by_query.next_data().await, "e2");
    assert_eq!(by_query.next_data().await, "e3");
}

#[tokio::test]
async fn push_through_the_fallback_including_a_pipelined_second_request() {
    let server = Lean::start(Hub::new()).await;
    let mut alice = server.subscribe("uid=alice").await;

    let mut publisher = server.connect().await;
    let first = push_request(r#"{"uids":["alice"],"events":[{"data":"one"}]}"#);
    let second = push_request(r#"{"events":[{"data":"two"}]}"#);
    publisher.send(&format!("{first}{second}")).await; // one write: hyper gets both
    for _ in 0..2 {
        let (head, body) = publisher.response().await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(body.contains(r#""code":0"#), "{body}");
    }
    assert_eq!(alice.next_data().await, "one");
    assert_eq!(alice.next_data().await, "two");

    // The connection stays open (keep-alive) for a third request.
    publisher
        .send(&push_request(r#"{"events":[{"data":"three"}]}"#))
        .await;
    let (head, _) = publisher.response().await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(alice.next_data().await, "three");

    // Unknown routes and other methods on the stream path are the router's to answer.
    for request in [
        "GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /events HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    ] {
        let mut raw = server.connect().await;
        raw.send(request).await;
        let (head, _) = raw.response().await;
        assert!(
            head.starts_with("HTTP/1.1 404") || head.starts_with("HTTP/1.1 405"),
            "{request:?}: {head}"
        );
    }
}

#[tokio::test]
async fn a_head_over_the_limit_gets_431_and_the_connection_closes() {
    let server = Lean::start(Hub::new()).await;
    let mut raw = server.connect().await;
    let big = "x".repeat(20 * 1024);
    raw.send(&format!(
        "GET /events?uid=alice HTTP/1.1\r\nX-Big: {big}\r\n\r\n"
    ))
    .await;
    let answer = raw.rest().await; // ends: the server closed the connection
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
    assert_eq!(server.hub.stats().connections, 0);
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_head_timeout() {
    let server = Lean::start_with(Hub::new(), |builder| {
        builder.head_timeout(Duration::from_millis(100))
    })
    .await;
    let mut raw = server.connect().await;
    raw.send("GET /events?uid=alice HTTP/1.1\r\n").await; // and never the rest
    assert_eq!(raw.rest().await, "", "closed without an answer");
}

#[tokio::test]
async fn a_client_closing_its_socket_leaves_the_hub() {
    let server = Lean::start(Hub::new()).await;
    let alice = server.subscribe("uid=alice").await;
    let _bob = server.subscribe("uid=bob").await;
    assert_eq!(server.hub.stats().connections, 2);
    drop(alice);
    let hub = server.hub.clone();
    eventually("alice's connection to leave the hub", || {
        hub.stats().connections == 1
    })
    .await;
    assert_eq!(hub.online_clients_num(), 1);
}

#[tokio::test]
async fn the_write_timeout_drops_a_client_that_never_reads() {
    // The hub's policy waits and never disconnects: only the write timeout can end the stream.
    let hub = Hub::builder()
        .heartbeat(None)
        .connection_buffer(8)
        .slow_client(ssehub_hub::SlowClientPolicy::Wait {
            timeout: Duration::from_secs(3600),
            retries: 1,
        })
        .build()
        .unwrap();
    let server = Lean::start_with(hub, |builder| {
        builder.write_timeout(Duration::from_millis(300))
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap(); // a small window fills the server's socket soon
    let mut stalled = within(socket.connect(server.addr)).await.unwrap();
    stalled
        .write_all(b"GET /events?uid=stalled HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let hub = server.hub.clone();
    eventually("the stream to open", || hub.stats().connections == 1).await;

    // Push until the server's socket is full and the write has waited out its timeout.
    let payload = "x".repeat(64 << 10);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while hub.stats().connections > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled client was never dropped"
        );
        hub.push(["stalled"], [Event::new(payload.clone())])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stalled);
}

#[tokio::test]
async fn graceful_shutdown_with_close_ends_streams_and_serve_returns() {
    let hub = Hub::new();
    let fallback = axum::Router::new().route("/push", ssehub_hub::axum::push(hub.clone()));
    let server = Server::builder(hub.clone(), uid_from_query)
        .fallback(fallback)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let closing = hub.clone();
    let serving = tokio::spawn(
        server
            .serve(listener)
            .with_graceful_shutdown(async move {
                stopped.await.ok();
                closing.close().await;
            })
            .into_future(),
    );
    let server = Lean {
        addr,
        hub,
        serving: tokio::spawn(async {}),
    };
    let mut alice = server.subscribe("uid=alice").await;
    // An idle keep-alive connection on the fallback must not hold the shutdown.
    let mut publisher = server.connect().await;
    publisher
        .send(&push_request(r#"{"events":[{"data":"before"}]}"#))
        .await;
    assert!(publisher.response().await.0.starts_with("HTTP/1.1 200"));

    stop.send(()).unwrap();
    assert_eq!(alice.next_data().await, "before");
    let close = alice.next_event().await.unwrap();
    assert_eq!(close.event_type(), CLOSE_EVENT_TYPE);
    assert_eq!(
        alice.next_frame().await,
        None,
        "the stream ends after the close event"
    );
    within(serving).await.unwrap();
    assert_eq!(
        publisher.rest().await,
        "",
        "the idle fallback connection was closed"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
    server.serving.await.unwrap();
}

#[tokio::test]
async fn a_closed_hub_answers_204_and_a_restarting_one_an_ended_stream() {
    let closed = Lean::start(Hub::new()).await;
    within(closed.hub.close()).await;
    let mut raw = closed.connect().await;
    raw.send("GET /events?uid=alice HTTP/1.1\r\n\r\n").await;
    assert_eq!(
        raw.rest().await,
        "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
    );

    let restarting = Lean::start(Hub::new()).await;
    within(restarting.hub.close_for_restart()).await;
    let mut raw = restarting.connect().await;
    raw.send("GET /events?uid=alice HTTP/1.1\r\n\r\n").await;
    let answer = raw.rest().await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n:restarting\n"), "{answer}");
    restarting.serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_policy_ends_a_never_reading_clients_stream() {
    let hub = Hub::builder()
        .connection_buffer(8)
        .slow_client(ssehub_hub::SlowClientPolicy::Disconnect)
        .heartbeat(None)
        .build()
        .unwrap();
    let lean = Lean::start(hub.clone()).await;
    let mut client = lean.subscribe("uid=stalled").await;
    common::push_until_cut_off(&hub, "stalled").await;
    // Once the client reads, it gets what was in flight and then the end of the connection.
    let mut sink = vec![0u8; 1 << 20];
    within(async { while client.socket.read(&mut sink).await.unwrap() > 0 {} }).await;
    eventually("the hub to drop the client", || {
        hub.stats().connections == 0
    })
    .await;
}
