//! `ssehub_hub::server::Server` on 127.0.0.1, spoken to with raw sockets: the lean event-stream
//! path, the fallback router on the same port, limits, timeouts and shutdown.
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

mod common;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::{CountedStore, PATIENCE, eventually, within};
use http::{HeaderName, HeaderValue, StatusCode};
use ssehub_hub::server::{Authenticate, PushRoute, Refusal, Server, ServerBuilder};
use ssehub_hub::store::MemoryStore;
use ssehub_hub::{AllowedTopics, CLOSE_EVENT_TYPE, Event, Hub, Subscriber};
use ssehub_wire::{Decoder, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The test's authentication: the uid is the `uid` query parameter; none is `401`, `nobody`
/// is `403`, `busy` a whole `429` refusal with `Retry-After` and a body, `down` a bare `503`.
/// Each `allow` parameter is a topic pattern the subscriber may ask for. It also checks that the
/// peer's address is there for it.
fn uid_from_query(parts: &http::request::Parts) -> std::future::Ready<Result<Subscriber, Refusal>> {
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
        .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("uid=")));
    std::future::ready(match uid {
        None => Err(StatusCode::UNAUTHORIZED.into()),
        Some("nobody") => Err(StatusCode::FORBIDDEN.into()),
        Some("busy") => Err(Refusal::new(StatusCode::TOO_MANY_REQUESTS)
            .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("5"))
            .with_body("slow down")),
        Some("down") => Err(StatusCode::SERVICE_UNAVAILABLE.into()),
        Some(uid) => {
            let allow = parts
                .uri
                .query()
                .into_iter()
                .flat_map(|query| query.split('&'))
                .filter_map(|pair| pair.strip_prefix("allow="));
            Ok(Subscriber::new(uid).allow_topics(AllowedTopics::new(allow)))
        }
    })
}

/// The fallback router of these tests: the push API.
fn router(hub: &Hub) -> axum::Router {
    axum::Router::new().route("/push", ssehub_hub::axum::push(hub.clone()))
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
        Self::start_with_auth(hub, uid_from_query, configure).await
    }

    async fn start_with_auth(
        hub: Hub,
        authenticate: impl Authenticate,
        configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
    ) -> Self {
        let server = configure(Server::builder(hub.clone(), authenticate).fallback(router(&hub)))
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
        (
            "GET /events HTTP/1.1\r\nHost: t\r\n\r\n",
            "401 Unauthorized",
        ),
        (
            "GET /events?uid=nobody HTTP/1.1\r\nHost: t\r\n\r\n",
            "403 Forbidden",
        ),
        (
            "GET /events?uid= HTTP/1.1\r\nHost: t\r\n\r\n",
            "400 Bad Request",
        ), // empty uid
        (
            // The same resume rules as the axum extractor: a duplicate is a bad query.
            "GET /events?uid=a&event_type=x&event_type=y HTTP/1.1\r\nHost: t\r\n\r\n",
            "400 Bad Request",
        ),
        (
            "GET /events?uid=a HTTP/1.1\r\nHost: t\r\nLast-Event-ID: \u{e9}\r\n\r\n",
            "400 Bad Request",
        ),
        (
            "GET /events HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
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
        .send("GET /events?uid=a&last_event_id=1 HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 2\r\n\r\n")
        .await;
    assert!(by_header.head().await.starts_with("HTTP/1.1 200 OK"));
    assert_eq!(by_header.next_data().await, "e3", "the header wins");

    let mut by_query = server.connect().await;
    by_query
        .send("GET /events?uid=a&last_event_id=1 HTTP/1.1\r\nHost: t\r\n\r\n")
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
        .write_all(b"GET /events?uid=stalled HTTP/1.1\r\nHost: t\r\n\r\n")
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
    let server = Server::builder(hub.clone(), uid_from_query)
        .fallback(router(&hub))
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
    raw.send("GET /events?uid=alice HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    // With the stream headers: a cross-origin EventSource must be able to read the 204 to stop
    // (one it may not read is a network error, and it would reconnect).
    assert_eq!(
        raw.rest().await,
        "HTTP/1.1 204 No Content\r\nx-accel-buffering: no\r\nconnection: close\r\n\r\n"
    );

    let restarting = Lean::start(Hub::new()).await;
    within(restarting.hub.close_for_restart()).await;
    let mut raw = restarting.connect().await;
    raw.send("GET /events?uid=alice HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
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

/// The first line of `answer` (its status line).
fn status_line(answer: &str) -> &str {
    answer.split("\r\n").next().unwrap_or_default()
}

/// The same router served by `axum::serve` (hyper alone), for what hyper answers by itself.
async fn hyper_alone(hub: &Hub) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, router(hub)).into_future());
    addr
}

/// Sends `request` to `addr` and reads the response head.
async fn head_from(addr: SocketAddr, request: &str) -> String {
    let mut raw = Raw {
        socket: within(TcpStream::connect(addr)).await.unwrap(),
        buf: BytesMut::new(),
        decoder: Decoder::new(),
    };
    raw.send(request).await;
    raw.head().await
}

#[tokio::test]
async fn over_long_request_lines_on_other_routes_get_what_hyper_alone_answers() {
    let server = Lean::start(Hub::new()).await;
    let alone = hyper_alone(&server.hub).await;
    for (what, request, status) in [
        // Longer than the lean path's 16 KiB head buffer, well within hyper's limits: routed.
        (
            "a 20 KiB path",
            format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "p".repeat(20 << 10)),
            "HTTP/1.1 404 Not Found",
        ),
        (
            "a 20 KiB query on the push path",
            format!(
                "POST /push?{} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
                "q".repeat(20 << 10)
            ),
            "HTTP/1.1 400 Bad Request",
        ),
        // Past hyper's URI limit (64 KiB): hyper's own 414.
        (
            "a 70 KiB target",
            format!(
                "GET /x?{} HTTP/1.1\r\nHost: t\r\n\r\n",
                "q".repeat(70 << 10)
            ),
            "HTTP/1.1 414 URI Too Long",
        ),
    ] {
        let lean = head_from(server.addr, &request).await;
        let reference = head_from(alone, &request).await;
        assert_eq!(status_line(&reference), status, "hyper alone, {what}");
        assert_eq!(status_line(&lean), status, "the lean server, {what}");
    }
    // On the events path the lean limit holds: a request line over 16 KiB is a 414.
    let mut raw = server.connect().await;
    raw.send(&format!(
        "GET /events?uid=alice&x={} HTTP/1.1\r\nHost: t\r\n\r\n",
        "q".repeat(20 << 10)
    ))
    .await;
    let answer = raw.rest().await;
    assert!(
        answer.starts_with("HTTP/1.1 414 URI Too Long\r\n"),
        "{answer}"
    );
    assert_eq!(server.hub.stats().connections, 0);
}

#[tokio::test]
async fn head_on_the_events_path_answers_as_get_would_without_a_body_or_a_subscription() {
    let hub = Hub::builder()
        .stream_header(
            HeaderName::from_static("access-control-allow-origin"),
            HeaderValue::from_static("*"),
        )
        .build()
        .unwrap();
    let server = Lean::start(hub).await;
    let mut get = server.connect().await;
    get.send("GET /events?uid=alice HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let get_head = get.head().await;
    assert_eq!(server.hub.stats().connections, 1);

    let mut probe = server.connect().await;
    probe
        .send("HEAD /events?uid=bob HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(probe.rest().await, get_head, "the GET's head, no body");
    assert_eq!(
        server.hub.stats().connections,
        1,
        "bob was never subscribed"
    );
    assert_eq!(server.hub.online_clients_num(), 1);

    // Authentication applies: the refusal's head, with the length its body would have.
    let mut refused = server.connect().await;
    refused
        .send("HEAD /events?uid=busy HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(
        refused.rest().await,
        "HTTP/1.1 429 Too Many Requests\r\n\
         retry-after: 5\r\n\
         x-accel-buffering: no\r\n\
         access-control-allow-origin: *\r\n\
         content-type: text/plain; charset=utf-8\r\n\
         content-length: 9\r\n\
         connection: close\r\n\r\n"
    );

    // A closed hub answers 204 to HEAD as to GET.
    within(server.hub.close()).await;
    let mut closed = server.connect().await;
    closed
        .send("HEAD /events?uid=bob HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert!(
        closed
            .rest()
            .await
            .starts_with("HTTP/1.1 204 No Content\r\n"),
        "closed"
    );
}

#[tokio::test]
async fn empty_lines_before_the_request_line_are_ignored() {
    let server = Lean::start(Hub::new()).await;
    let mut raw = server.connect().await;
    raw.send("\r\n\r\nGET /events?uid=alice HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert!(raw.head().await.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(raw.next_frame().await, Some(Frame::Comment("ok".into())));
    server
        .hub
        .push(["alice"], [Event::new("after a CRLF")])
        .await
        .unwrap();
    assert_eq!(raw.next_data().await, "after a CRLF");
    // The empty line may come in a write of its own.
    let mut split = server.connect().await;
    split.send("\r\n").await;
    split
        .send("HEAD /events?uid=bob HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert!(split.rest().await.starts_with("HTTP/1.1 200 OK\r\n"));
}

#[tokio::test]
async fn host_is_required_and_an_absolute_target_must_agree_with_it() {
    let server = Lean::start(Hub::new()).await;
    for (request, reason) in [
        (
            "GET /events?uid=alice HTTP/1.1\r\n\r\n".to_owned(),
            "missing Host header",
        ),
        (
            "GET /events?uid=alice HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n".to_owned(),
            "more than one Host header",
        ),
        (
            format!(
                "GET http://{}/events?uid=alice HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n",
                server.addr
            ),
            "the Host header disagrees with the request target",
        ),
    ] {
        let mut raw = server.connect().await;
        raw.send(&request).await;
        let answer = raw.rest().await;
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{request:?}: {answer}"
        );
        assert!(answer.ends_with(reason), "{answer}");
    }
    assert_eq!(server.hub.stats().connections, 0);

    let mut agreeing = server.connect().await;
    agreeing
        .send(&format!(
            "GET http://{0}/events?uid=alice HTTP/1.1\r\nHost: {0}\r\n\r\n",
            server.addr
        ))
        .await;
    assert!(agreeing.head().await.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(server.hub.stats().connections, 1);
}

#[tokio::test]
async fn refusals_carry_the_stream_headers_and_401_a_challenge() {
    let hub = Hub::builder()
        .stream_header(
            HeaderName::from_static("access-control-allow-origin"),
            HeaderValue::from_static("https://app.example"),
        )
        .build()
        .unwrap();
    let server = Lean::start(hub).await;
    let cors = "access-control-allow-origin: https://app.example\r\n";
    for (query, status, extra) in [
        ("", "401 Unauthorized", "www-authenticate: Bearer\r\n"),
        ("uid=nobody", "403 Forbidden", ""),
        ("uid=busy", "429 Too Many Requests", "retry-after: 5\r\n"),
        ("uid=down", "503 Service Unavailable", ""),
    ] {
        let mut raw = server.connect().await;
        raw.send(&format!("GET /events?{query} HTTP/1.1\r\nHost: t\r\n\r\n"))
            .await;
        let answer = raw.rest().await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{answer}"
        );
        assert!(answer.contains(cors), "{status}: {answer}");
        assert!(answer.contains(extra), "{status}: {answer}");
        assert_eq!(
            answer.contains("www-authenticate"),
            status.starts_with("401"),
            "{answer}"
        );
    }
    let mut busy = server.connect().await;
    busy.send("GET /events?uid=busy HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert!(busy.rest().await.ends_with("\r\n\r\nslow down"));
}

#[tokio::test]
async fn authentication_can_await_and_refuse_with_a_whole_response() {
    // A session store the hook awaits: sessions are read under a lock the test can hold.
    let sessions = Arc::new(tokio::sync::RwLock::new(HashMap::from([(
        "s1".to_owned(),
        "alice".to_owned(),
    )])));
    let (entered, mut hook_entered) = tokio::sync::mpsc::unbounded_channel();
    let store = Arc::clone(&sessions);
    let authenticate = move |parts: &http::request::Parts| {
        let session = parts
            .headers
            .get(http::header::COOKIE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("session="))
            .map(str::to_owned);
        let store = Arc::clone(&store);
        let entered = entered.clone();
        async move {
            entered.send(()).unwrap();
            let uid = match session {
                Some(session) => store.read().await.get(&session).cloned(),
                None => None,
            };
            uid.ok_or_else(|| {
                Refusal::from(
                    http::Response::builder()
                        .status(StatusCode::UNAUTHORIZED)
                        .header(http::header::WWW_AUTHENTICATE, r#"Cookie realm="events""#)
                        .body("log in first")
                        .unwrap(),
                )
            })
        }
    };
    let server = Lean::start_with_auth(Hub::new(), authenticate, |builder| builder).await;

    // While the store is locked the hook waits, and the connection with it.
    let locked = sessions.write().await;
    let mut alice = server.connect().await;
    alice
        .send("GET /events HTTP/1.1\r\nHost: t\r\nCookie: session=s1\r\n\r\n")
        .await;
    within(hook_entered.recv()).await.unwrap();
    assert_eq!(server.hub.stats().connections, 0, "not subscribed yet");
    drop(locked);
    assert!(alice.head().await.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(alice.next_frame().await, Some(Frame::Comment("ok".into())));
    server
        .hub
        .push(["alice"], [Event::new("hello")])
        .await
        .unwrap();
    assert_eq!(alice.next_data().await, "hello");

    // An unknown session gets the hook's whole response.
    let mut stranger = server.connect().await;
    stranger
        .send("GET /events HTTP/1.1\r\nHost: t\r\nCookie: session=s2\r\n\r\n")
        .await;
    assert_eq!(
        stranger.rest().await,
        "HTTP/1.1 401 Unauthorized\r\n\
         www-authenticate: Cookie realm=\"events\"\r\n\
         x-accel-buffering: no\r\n\
         content-type: text/plain; charset=utf-8\r\n\
         content-length: 12\r\n\
         connection: close\r\n\r\n\
         log in first"
    );
}

#[tokio::test]
async fn an_authentication_that_never_answers_is_cut_off_by_the_head_timeout() {
    let timeout = Duration::from_millis(200);
    let never = |_: &http::request::Parts| std::future::pending::<Result<String, StatusCode>>();
    let server =
        Lean::start_with_auth(Hub::new(), never, |builder| builder.head_timeout(timeout)).await;
    let started = tokio::time::Instant::now();
    let mut raw = server.connect().await;
    raw.send("GET /events?uid=alice HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(raw.rest().await, "", "closed without an answer");
    assert!(started.elapsed() >= timeout, "not before the head timeout");
    assert_eq!(server.hub.stats().connections, 0);

    // The rest of the server is not held up by the hook.
    let mut publisher = server.connect().await;
    publisher
        .send(&push_request(r#"{"events":[{"data":"x"}]}"#))
        .await;
    assert!(
        publisher
            .response()
            .await
            .0
            .starts_with("HTTP/1.1 200 OK\r\n")
    );
}

#[tokio::test]
async fn topics_over_the_lean_path_are_authorized_checked_and_delivered() {
    let server = Lean::start(Hub::new()).await;
    // Allowed by a prefix pattern: a topic push reaches it, over the fallback's push API.
    let mut watcher = server
        .subscribe("uid=bob&allow=orders/*&topic=orders%2F42")
        .await;
    let mut other = server.subscribe("uid=carol&allow=*&topic=orders/7").await;
    assert_eq!(server.hub.stats().topics, 2);
    let mut publisher = server.connect().await;
    publisher
        .send(&push_request(
            r#"{"topics":["orders/42"],"events":[{"data":"shipped"}]}"#,
        ))
        .await;
    let (head, body) = publisher.response().await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}{body}");
    assert!(body.contains(r#""connections":1"#), "{body}");
    server.hub.broadcast([Event::new("all")]).await.unwrap();
    assert_eq!(watcher.next_data().await, "shipped");
    assert_eq!(watcher.next_data().await, "all");
    assert_eq!(other.next_data().await, "all", "orders/7 is another topic");

    for (query, status, says) in [
        // Outside the allowed patterns, or no pattern at all: 403 naming the topic.
        (
            "uid=bob&allow=orders/*&topic=prices",
            "403 Forbidden",
            "\"prices\"",
        ),
        ("uid=bob&topic=orders/1", "403 Forbidden", "\"orders/1\""),
        (
            "uid=bob&allow=orders/*&topic=orders",
            "403 Forbidden",
            "\"orders\"",
        ),
        // Not a valid name: 400 naming it and what is wrong.
        (
            "uid=bob&allow=*&topic=a%0Ab",
            "400 Bad Request",
            "control character",
        ),
        (
            "uid=bob&allow=*&topic=",
            "400 Bad Request",
            "must not be empty",
        ),
        ("uid=bob&allow=*&topic=%FF", "400 Bad Request", "not UTF-8"),
    ] {
        let mut raw = server.connect().await;
        raw.send(&format!("GET /events?{query} HTTP/1.1\r\nHost: t\r\n\r\n"))
            .await;
        let answer = raw.rest().await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{query}: {answer}"
        );
        assert!(answer.contains(says), "{query}: {answer}");
    }
    // A HEAD probe is authorized the same way, and leaves nothing behind.
    let mut probe = server.connect().await;
    probe
        .send("HEAD /events?uid=bob&topic=prices HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert!(probe.rest().await.starts_with("HTTP/1.1 403 Forbidden\r\n"));
    assert_eq!(server.hub.stats().connections, 2);
    assert_eq!(server.hub.stats().topics, 2);
}

#[tokio::test]
async fn too_many_topics_for_one_connection_is_a_400() {
    let hub = Hub::builder().max_topics_per_connection(2).build().unwrap();
    let server = Lean::start(hub).await;
    let _ok = server
        .subscribe("uid=a&allow=*&topic=x&topic=y&topic=x")
        .await; // x once
    let mut raw = server.connect().await;
    raw.send("GET /events?uid=a&allow=*&topic=x&topic=y&topic=z HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let answer = raw.rest().await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(answer.contains("3 topics, over the limit of 2"), "{answer}");
}

/// The soak's finding: a client that stops reading while the server's send buffer still has
/// room. No write ever waits, so only the watch on the kernel's send queue sees the stall; and
/// the client must be told (a reset), since the kernel may later drop the socket without a word
/// (its `TCP_USER_TIMEOUT` counts a zero window too) and a silent client would wait for ever.
#[tokio::test]
async fn a_client_that_stops_reading_before_any_write_waits_is_reset_after_the_write_timeout() {
    let hub = Hub::builder().heartbeat(None).build().unwrap();
    let server = Lean::start_with(hub, |builder| {
        builder.write_timeout(Duration::from_millis(500))
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = within(socket.connect(server.addr)).await.unwrap();
    client
        .write_all(b"GET /events?uid=paused HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let hub = server.hub.clone();
    eventually("the stream to open", || hub.stats().connections == 1).await;

    // 32 KiB in small events: more than the client's window, far less than the server's send
    // buffer, so every write succeeds and the rest waits in the kernel.
    let started = tokio::time::Instant::now();
    for i in 0..32 {
        let event = Event::new(format!("{i:04}{}", "x".repeat(1020)));
        hub.push(["paused"], [event]).await.unwrap();
    }
    eventually("the paused client to be dropped", || {
        hub.stats().connections == 0
    })
    .await;
    let dropped_after = started.elapsed();
    assert!(
        dropped_after >= Duration::from_millis(450),
        "dropped after {dropped_after:?}, before the write timeout"
    );
    // It learns at once: a reset, not a silence or a FIN stuck behind the unread bytes.
    let mut buf = vec![0; 64 << 10];
    let ended = loop {
        match within(client.read(&mut buf)).await {
            Ok(0) => break Ok(()),
            Ok(_) => continue,
            Err(error) => break Err(error.kind()),
        }
    };
    assert_eq!(ended, Err(std::io::ErrorKind::ConnectionReset));
}

#[tokio::test]
async fn response_headers_are_chosen_per_request_for_streams_head_and_refusals() {
    let server = Lean::start_with(Hub::new(), |builder| {
        builder.response_headers(|parts, headers| {
            let origin = parts.headers.get(http::header::ORIGIN);
            if let Some(origin) = origin.filter(|origin| *origin == "https://app.example") {
                headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            }
            headers.insert(http::header::VARY, HeaderValue::from_static("origin"));
        })
    })
    .await;
    let allowed = "access-control-allow-origin: https://app.example\r\n";
    for (request, status, cors) in [
        ("GET /events?uid=a", "200 OK", true),
        ("HEAD /events?uid=a", "200 OK", true),
        ("GET /events", "401 Unauthorized", true),
        ("GET /events?uid=nobody", "403 Forbidden", true),
    ] {
        for (origin, expect_cors) in [
            ("https://app.example", cors),
            ("https://evil.example", false),
        ] {
            let mut raw = server.connect().await;
            raw.send(&format!(
                "{request} HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n\r\n"
            ))
            .await;
            let head = raw.head().await;
            assert!(
                head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{head}"
            );
            assert_eq!(
                head.contains(allowed),
                expect_cors,
                "{request} from {origin}: {head}"
            );
            assert!(head.contains("vary: origin\r\n"), "{head}");
        }
    }
}

#[tokio::test]
async fn a_stream_ends_when_its_subscribers_credential_expires() {
    // The subscriber's credential expires two seconds from now; its stream then ends cleanly
    // (no `close` event: the client comes back with a fresh credential).
    let expiry = std::time::SystemTime::now() + Duration::from_secs(2);
    let authenticate = move |_: &http::request::Parts| {
        std::future::ready(Ok::<_, StatusCode>(
            Subscriber::new("alice").expires_at(expiry),
        ))
    };
    let server = Lean::start_with_auth(Hub::new(), authenticate, |builder| builder).await;
    let mut raw = server.subscribe("").await;
    server
        .hub
        .push(["alice"], [Event::new("before")])
        .await
        .unwrap();
    assert_eq!(raw.next_data().await, "before");
    let started = std::time::Instant::now();
    assert_eq!(raw.next_event().await, None, "the stream ended");
    assert!(std::time::SystemTime::now() >= expiry);
    assert!(started.elapsed() < Duration::from_secs(5));
    eventually("the stream left the hub", || {
        server.hub.stats().connections == 0
    })
    .await;
}

#[tokio::test]
async fn a_later_request_for_the_events_path_on_a_kept_alive_connection_is_a_stream_too() {
    // A browser fetches a page, then opens its EventSource on the same kept-alive connection.
    let server = Lean::start(Hub::new()).await;
    let mut browser = server.connect().await;
    browser.send("GET /page HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let (head, _) = browser.response().await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // Refused as the lean path refuses: the status and a challenge; the connection lives on.
    browser
        .send("GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let (head, _) = browser.response().await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(head.contains("www-authenticate: Bearer"), "{head}");
    browser
        .send("GET /events?uid=alice&allow=news&topic=sport HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let (head, _) = browser.response().await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");

    browser
        .send("GET /events?uid=alice&allow=news&topic=news HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let head = browser.head().await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert_eq!(server.hub.stats().connections, 1);
    server
        .hub
        .push(["alice"], [Event::new("to alice")])
        .await
        .unwrap();
    server
        .hub
        .push_to(
            ssehub_hub::store::Recipients::topics(["news"]),
            [Event::new("on news")],
        )
        .await
        .unwrap();
    within(async {
        while !String::from_utf8_lossy(&browser.buf).contains("data: on news") {
            assert!(browser.fill().await, "the stream ended");
        }
    })
    .await;
    let body = String::from_utf8_lossy(&browser.buf).into_owned();
    assert!(
        body.find("data: to alice") < body.find("data: on news"),
        "{body}"
    );
    drop(browser);
    eventually("the stream to leave the hub", || {
        server.hub.stats().connections == 0
    })
    .await;
}

// The lean push path (`ServerBuilder::push_route`).

/// A hub served with the lean push path at `/push` (and the same route in the router).
async fn with_lean_push(hub: Hub, route: PushRoute) -> Lean {
    Lean::start_with(hub, |builder| builder.push_route(route)).await
}

/// `body` as a chunked request, which the lean push path hands to hyper.
fn chunked_push_request(body: &str) -> String {
    format!(
        "POST /push HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    )
}

/// The ids in a `200` push answer.
fn answered_ids(body: &str) -> Vec<String> {
    let answer: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(answer["code"], 0, "{body}");
    answer["data"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn pipelined_pushes_on_the_lean_push_path_are_answered_in_order() {
    let server = with_lean_push(Hub::new(), PushRoute::new("/push")).await;
    let mut alice = server.subscribe("uid=alice").await;
    let mut bob = server.subscribe("uid=bob").await;
    let mut publisher = server.connect().await;
    // 100 pushes in one write, alternately to alice and bob.
    let requests: String = (0..100)
        .map(|n| {
            let uid = if n % 2 == 0 { "alice" } else { "bob" };
            push_request(&format!(
                r#"{{"uids":["{uid}"],"events":[{{"data":"{n}"}}]}}"#
            ))
        })
        .collect();
    publisher.send(&requests).await;
    let mut ids = Vec::new();
    for _ in 0..100 {
        let (head, body) = publisher.response().await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("content-type: application/json\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\ndate: "), "{head}");
        ids.extend(answered_ids(&body));
    }
    // Each answer is its own push's: the event's id, in the order the pushes were sent.
    for (n, id) in ids.iter().enumerate() {
        let reader = if n % 2 == 0 { &mut alice } else { &mut bob };
        let event = reader.next_event().await.unwrap();
        assert_eq!(event.data.as_str(), n.to_string());
        assert_eq!(event.id.as_deref(), Some(id.as_str()), "push {n}");
    }
    // Kept alive for more.
    publisher
        .send(&push_request(
            r#"{"uids":["bob"],"events":[{"data":"later"}]}"#,
        ))
        .await;
    assert!(publisher.response().await.0.starts_with("HTTP/1.1 200 OK"));
    assert_eq!(bob.next_data().await, "later");
}

#[tokio::test]
async fn the_lean_push_path_answers_every_body_as_the_router_does() {
    let hub = Hub::builder().max_data_len(8).build().unwrap();
    let server = with_lean_push(hub, PushRoute::new("/push")).await;
    let _alice = server.subscribe("uid=alice").await;
    for body in [
        r#"{"uids":["alice"],"events":[{"data":"hi","id":"fixed"}]}"#,
        r#"{"uids":["nobody"],"events":[{"data":"hi","id":"fixed2"}]}"#,
        r#"{"events":[]}"#,
        r#"{"uids":[],"events":[{"data":"hi"}]}"#,
        r#"{"uid":["alice"],"events":[{"data":"hi"}]}"#,
        r#"{"uids":["alice"],"events":[{"data":"far too long"}]}"#,
        r#"{"events":[{"event":"close","data":"x"}]}"#,
        r#"{"topics":["a\u0001"],"events":[{"data":"x"}]}"#,
        "not json",
        "",
    ] {
        // The lean path first, then the router (a chunked body is handed to hyper).
        let mut lean = server.connect().await;
        lean.send(&push_request(body)).await;
        let (lean_head, lean_body) = lean.response().await;
        let mut routed = server.connect().await;
        routed.send(&chunked_push_request(body)).await;
        let (routed_head, routed_body) = routed.response().await;
        assert_eq!(status_line(&lean_head), status_line(&routed_head), "{body}");
        let content_type = |head: &str| {
            head.lines()
                .find(|line| line.starts_with("content-type"))
                .map(str::to_owned)
        };
        assert_eq!(
            content_type(&lean_head),
            content_type(&routed_head),
            "{body}"
        );
        if status_line(&lean_head).contains("200") {
            // The same event id pushed twice: the ids differ only when the hub assigns them.
            assert!(lean_body.contains(r#""code":0"#), "{lean_body}");
            assert!(routed_body.contains(r#""code":0"#), "{routed_body}");
        } else {
            assert_eq!(lean_body, routed_body, "{body}");
        }
    }
}

#[tokio::test]
async fn empty_lines_between_pushes_are_skipped_however_many() {
    let server = with_lean_push(Hub::new(), PushRoute::new("/push")).await;
    let mut alice = server.subscribe("uid=alice").await;
    let mut publisher = server.connect().await;
    let push = push_request(r#"{"uids":["alice"],"events":[{"data":"after"}]}"#);
    publisher
        .send(&format!("{push}{}", "\r\n".repeat(256 * 1024)))
        .await;
    publisher.send(&push).await;
    for _ in 0..2 {
        let (head, _) = publisher.response().await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    }
    assert_eq!(alice.next_data().await, "after");
    assert_eq!(alice.next_data().await, "after");
}

#[tokio::test]
async fn a_connection_is_handed_to_hyper_at_its_first_request_the_lean_path_does_not_take() {
    let server = with_lean_push(Hub::new(), PushRoute::new("/push")).await;
    let mut alice = server.subscribe("uid=alice").await;
    let mut publisher = server.connect().await;
    let plain = |data: &str| {
        push_request(&format!(
            r#"{{"uids":["alice"],"events":[{{"data":"{data}"}}]}}"#
        ))
    };
    let chunked = chunked_push_request(r#"{"uids":["alice"],"events":[{"data":"two"}]}"#);
    publisher
        .send(&format!(
            "{}{chunked}{}GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n",
            plain("one"),
            plain("three")
        ))
        .await;
    for expected in ["200", "200", "200", "404"] {
        let (head, _) = publisher.response().await;
        assert_eq!(
            status_line(&head).split(' ').nth(1),
            Some(expected),
            "{head}"
        );
    }
    for expected in ["one", "two", "three"] {
        assert_eq!(alice.next_data().await, expected);
    }
}

#[tokio::test]
async fn a_push_body_over_the_limit_is_refused_unread_and_the_connection_closes() {
    let server = with_lean_push(Hub::new(), PushRoute::new("/push").max_body_bytes(100)).await;
    let mut publisher = server.connect().await;
    // The head alone: the answer must not wait for a body that never comes.
    publisher
        .send("POST /push HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
        .await;
    let (head, body) = publisher.response().await;
    assert!(
        head.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{head}"
    );
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert!(body.contains("limit of 100 bytes"), "{body}");
    assert_eq!(publisher.rest().await, "", "closed after the answer");
    // With the body on its way: the answer arrives all the same (the server drains before it
    // closes, as after any refusal).
    let mut sender = server.connect().await;
    let request = format!(
        "POST /push HTTP/1.1\r\nHost: t\r\nContent-Length: 30000\r\n\r\n{}",
        "x".repeat(30_000)
    );
    sender.send(&request).await;
    let (head, _) = sender.response().await;
    assert!(
        head.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn the_push_routes_authorization_is_asked_before_the_body_is_read() {
    let route = PushRoute::new("/push").authorize(|headers| {
        match headers.get(http::header::AUTHORIZATION) {
            Some(value) if value == "Bearer key" => Ok(()),
            Some(_) => Err(StatusCode::FORBIDDEN),
            None => Err(StatusCode::UNAUTHORIZED),
        }
    });
    let server = with_lean_push(Hub::new(), route).await;
    let mut alice = server.subscribe("uid=alice").await;
    for (credential, status) in [("", "401"), ("Authorization: Bearer nope\r\n", "403")] {
        let mut publisher = server.connect().await;
        // A head that announces a body and never sends it: answered at once all the same.
        publisher
            .send(&format!(
                "POST /push HTTP/1.1\r\nHost: t\r\n{credential}Content-Length: 50\r\n\r\n"
            ))
            .await;
        let (head, _) = publisher.response().await;
        assert_eq!(status_line(&head).split(' ').nth(1), Some(status), "{head}");
        if status == "401" {
            assert!(head.contains("www-authenticate: Bearer\r\n"), "{head}");
        }
        assert_eq!(publisher.rest().await, "", "closed after the refusal");
    }
    let mut publisher = server.connect().await;
    let request = push_request(r#"{"uids":["alice"],"events":[{"data":"allowed"}]}"#)
        .replace("Host: t\r\n", "Host: t\r\nAuthorization: Bearer key\r\n");
    publisher.send(&request).await;
    assert!(publisher.response().await.0.starts_with("HTTP/1.1 200 OK"));
    assert_eq!(alice.next_data().await, "allowed");
}

#[tokio::test]
async fn a_trickled_push_gets_408_and_an_idle_publisher_is_closed_quietly() {
    let server = Lean::start_with(Hub::new(), |builder| {
        builder
            .push_route(PushRoute::new("/push"))
            .request_timeout(Duration::from_millis(300))
            .head_timeout(Duration::from_millis(300))
    })
    .await;
    let mut trickler = server.connect().await;
    let request = push_request(r#"{"events":[{"data":"x"}]}"#);
    trickler.send(&request[..request.len() - 5]).await;
    let (head, _) = trickler.response().await;
    assert!(
        head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{head}"
    );
    assert_eq!(trickler.rest().await, "");

    let mut idle = server.connect().await;
    idle.send(&request).await;
    assert!(idle.response().await.0.starts_with("HTTP/1.1 200 OK"));
    // Nothing more: closed at the head timeout, without an answer.
    assert_eq!(idle.rest().await, "");
}

#[tokio::test]
async fn pushes_pipelined_on_one_connection_share_the_stores_saves() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (store, saves) = CountedStore::gated(1_000, &gate);
    let hub = Hub::builder().store(store).build().unwrap();
    let server = with_lean_push(hub, PushRoute::new("/push")).await;
    let mut alice = server.subscribe("uid=alice").await;
    let mut publisher = server.connect().await;
    let requests: String = (0..20)
        .map(|n| {
            push_request(&format!(
                r#"{{"uids":["alice"],"events":[{{"data":"{n}"}}]}}"#
            ))
        })
        .collect();
    publisher.send(&requests).await;
    // The first save holds; through hyper the second push would not even be read until the
    // first is answered.
    eventually("the first save starts", || {
        saves.load(std::sync::atomic::Ordering::SeqCst) >= 1
    })
    .await;
    gate.add_permits(1_000);
    for _ in 0..20 {
        assert!(publisher.response().await.0.starts_with("HTTP/1.1 200 OK"));
    }
    for n in 0..20 {
        assert_eq!(alice.next_data().await, n.to_string());
    }
    let saves = saves.load(std::sync::atomic::Ordering::SeqCst);
    assert!(saves <= 3, "20 pipelined pushes took {saves} saves");
}

#[tokio::test]
async fn lean_pushes_share_the_fallbacks_limit_on_requests_at_once() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (store, saves) = CountedStore::gated(1_000, &gate);
    let hub = Hub::builder().store(store).build().unwrap();
    let server = Lean::start_with(hub, |builder| {
        builder
            .push_route(PushRoute::new("/push"))
            .max_fallback_requests(1)
    })
    .await;
    let mut publisher = server.connect().await;
    let push = push_request(r#"{"events":[{"data":"x"}]}"#);
    publisher.send(&format!("{push}{push}")).await;
    eventually("the first push holds the only permit", || {
        saves.load(std::sync::atomic::Ordering::SeqCst) >= 1
    })
    .await;
    // The router's requests are refused meanwhile too.
    let mut other = server.connect().await;
    other
        .send(&push.replace("Host: t\r\n", "Host: t\r\nOrigin: https://a.example\r\n"))
        .await;
    let (head, _) = other.response().await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    gate.add_permits(10);
    let (first, _) = publisher.response().await;
    assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
    let (second, body) = publisher.response().await;
    assert!(
        second.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{second}"
    );
    assert!(second.contains("retry-after: "), "{second}");
    assert!(body.contains("maximum of requests"), "{body}");
}
