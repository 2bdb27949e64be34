//! Admission, liveness and reconnect storms over real sockets on 127.0.0.1: the stream and
//! per-uid caps on both front ends, the lean server's connection cap, the write timeout as a
//! measure of progress, the fallback's request timeout and concurrency limit, and the limit on
//! concurrent replays. (The defaults derived from the open-file limit, and `accept` running out
//! of descriptors, are in `accept_under_fd_limit.rs`: they change the process's limit.)
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

mod common;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use common::{PATIENCE, TestServer, eventually, within};
use futures_util::StreamExt;
use http::StatusCode;
use ssehub_hub::server::{Server, ServerBuilder};
use ssehub_hub::store::{ListQuery, MemoryStore, Page, Record, Store, StoreError};
use ssehub_hub::{Event, Hub, SubscribeError, SubscribeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

fn uid_of(parts: &http::request::Parts) -> Result<String, StatusCode> {
    parts
        .uri
        .query()
        .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("uid=")))
        .map(str::to_owned)
        .ok_or(StatusCode::UNAUTHORIZED)
}

/// The test's authentication hook: [`uid_of`], with nothing to await.
fn uid_from_query(parts: &http::request::Parts) -> std::future::Ready<Result<String, StatusCode>> {
    std::future::ready(uid_of(parts))
}

/// A lean server with the push API as its fallback, on a free port.
async fn lean(hub: &Hub, configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> SocketAddr {
    let fallback = axum::Router::new().route("/push", ssehub_hub::axum::push(hub.clone()));
    let server = configure(Server::builder(hub.clone(), uid_from_query).fallback(fallback))
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener).into_future());
    addr
}

/// Sends `request` on a new connection; returns the socket.
async fn send(addr: SocketAddr, request: &str) -> TcpStream {
    let mut socket = within(TcpStream::connect(addr)).await.unwrap();
    within(socket.write_all(request.as_bytes())).await.unwrap();
    socket
}

/// Reads until the response head is complete; returns it and what followed it so far.
async fn read_head(socket: &mut TcpStream) -> (String, BytesMut) {
    let mut buf = BytesMut::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = buf.split_to(end + 4);
            return (String::from_utf8(head.to_vec()).unwrap(), buf);
        }
        let n = within(socket.read_buf(&mut buf)).await.unwrap();
        assert!(n > 0, "the connection ended inside a head: {buf:?}");
    }
}

/// Everything until the server closes the connection.
async fn read_to_end(socket: &mut TcpStream, mut buf: BytesMut) -> String {
    while within(socket.read_buf(&mut buf)).await.unwrap_or(0) > 0 {}
    String::from_utf8_lossy(&buf).into_owned()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn push_request(body: &str) -> String {
    format!(
        "POST /push HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Opens `/events?uid=<uid>` and returns the socket once the stream is open (`:ok` read).
async fn open_stream(addr: SocketAddr, uid: &str) -> TcpStream {
    let mut socket = send(
        addr,
        &format!("GET /events?uid={uid} HTTP/1.1\r\nHost: hub\r\n\r\n"),
    )
    .await;
    let (head, mut rest) = read_head(&mut socket).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    while !rest.starts_with(b":ok\n") {
        assert!(within(socket.read_buf(&mut rest)).await.unwrap() > 0);
    }
    socket
}

/// Asserts the answer to a stream over a cap: a `200` stream with `Retry-After` whose body is
/// the over-capacity comment and a `retry:` between `base` and twice `base`, then the end.
async fn assert_refused_stream(socket: &mut TcpStream, base: Duration) {
    let (head, rest) = read_head(socket).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(header(&head, "content-type"), Some("text/event-stream"));
    let retry_after: u64 = header(&head, "retry-after").unwrap().parse().unwrap();
    assert!(
        (base.as_secs()..=2 * base.as_secs() + 1).contains(&retry_after),
        "{head}"
    );
    let body = read_to_end(socket, rest).await;
    let retry: u64 = body
        .strip_prefix(":over capacity\nretry: ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected body {body:?}"))
        .parse()
        .unwrap();
    let base_ms = u64::try_from(base.as_millis()).unwrap();
    assert!((base_ms..2 * base_ms).contains(&retry), "retry: {retry}");
}

#[tokio::test]
async fn streams_over_the_hub_caps_are_told_to_come_back_on_the_lean_server() {
    let hub = Hub::builder()
        .max_streams(3)
        .max_streams_per_uid(2)
        .over_capacity_retry(Duration::from_secs(2))
        .build()
        .unwrap();
    let addr = lean(&hub, |builder| builder).await;
    let _a1 = open_stream(addr, "alice").await;
    let _a2 = open_stream(addr, "alice").await;

    // alice is at her cap; bob is not.
    let mut third = send(addr, "GET /events?uid=alice HTTP/1.1\r\nHost: hub\r\n\r\n").await;
    assert_refused_stream(&mut third, Duration::from_secs(2)).await;
    let _b1 = open_stream(addr, "bob").await;
    assert_eq!(hub.stats().connections, 3);

    // The hub is at its cap: everyone is refused, and the push API still answers.
    let mut carol = send(addr, "GET /events?uid=carol HTTP/1.1\r\nHost: hub\r\n\r\n").await;
    assert_refused_stream(&mut carol, Duration::from_secs(2)).await;
    assert_eq!(hub.stats().connections, 3, "a refused stream holds no slot");
    let mut push = send(addr, &push_request(r#"{"events":[{"data":"hello"}]}"#)).await;
    let (head, _) = read_head(&mut push).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
}

#[tokio::test]
async fn streams_over_the_hub_caps_are_told_to_come_back_on_the_axum_path() {
    let hub = Hub::builder()
        .max_streams(2)
        .max_streams_per_uid(1)
        .over_capacity_retry(Duration::from_secs(1))
        .build()
        .unwrap();
    let server = TestServer::start(hub).await;
    let _alice = server.subscribe("alice").await;
    for uid in ["alice", "bob"] {
        // alice over her cap; then, with bob in, carol over the hub's.
        let mut socket = send(
            server.addr,
            &format!("GET /events?uid={uid} HTTP/1.1\r\nHost: t\r\n\r\n"),
        )
        .await;
        if uid == "bob" {
            let (head, _) = read_head(&mut socket).await;
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            assert!(header(&head, "retry-after").is_none(), "{head}");
            let mut carol = send(
                server.addr,
                "GET /events?uid=carol HTTP/1.1\r\nHost: t\r\n\r\n",
            )
            .await;
            let (head, _) = read_head(&mut carol).await;
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            assert!(header(&head, "retry-after").is_some(), "{head}");
            let mut refused = server.subscribe("carol").await;
            assert!(matches!(
                refused.next_frame().await,
                Some(ssehub_wire::Frame::Retry(retry)) if retry >= Duration::from_secs(1)
            ));
            assert!(refused.next_frame().await.is_none(), "the refusal ends");
        } else {
            let (head, _) = read_head(&mut socket).await;
            assert!(header(&head, "retry-after").is_some(), "{head}");
        }
    }
    assert_eq!(
        server
            .hub
            .subscribe("dave", SubscribeOptions::default())
            .unwrap_err(),
        SubscribeError::AtCapacity { limit: 2 }
    );
}

/// The ssehub client, with its defaults (it gives up on `503`), is refused, comes back after
/// the `retry:` it was given, and gets in once a slot is free.
#[tokio::test]
async fn a_refused_client_comes_back_and_gets_in_once_a_slot_frees() {
    let hub = Hub::builder()
        .max_streams(1)
        .over_capacity_retry(Duration::from_millis(100))
        .build()
        .unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    let server = Server::builder(hub.clone(), move |parts: &http::request::Parts| {
        let uid = uid_of(parts);
        if uid.as_deref() == Ok("second") {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        std::future::ready(uid)
    })
    .build()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener).into_future());

    let first = open_stream(addr, "first").await;
    let mut client = ssehub_client::ClientBuilder::new(format!("http://{addr}/events?uid=second"))
        .build_stream()
        .unwrap();
    let reading = tokio::spawn(async move { client.next().await.map(|event| event.unwrap()) });
    // Refused, it keeps coming back (a client that gave up would stop at one attempt).
    eventually("three attempts", || attempts.load(Ordering::SeqCst) >= 3).await;
    assert!(!reading.is_finished());
    assert_eq!(hub.stats().connections, 1);

    drop(first);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let receipt = hub.push(["second"], [Event::new("in")]).await.unwrap();
        if receipt.connections == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client never got in"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let event = within(reading).await.unwrap().unwrap();
    assert_eq!(event.data.as_str(), "in");
}

#[tokio::test]
async fn over_the_connection_cap_the_lean_server_answers_503_with_retry_after() {
    let hub = Hub::builder()
        .over_capacity_retry(Duration::from_secs(3))
        .build()
        .unwrap();
    let addr = lean(&hub, |builder| builder.max_connections(2)).await;
    let _stream = open_stream(addr, "alice").await;
    let idle = within(TcpStream::connect(addr)).await.unwrap();
    // Both slots taken (a stream and a connection that has sent nothing yet).
    let mut over = within(TcpStream::connect(addr)).await.unwrap();
    let (head, rest) = read_head(&mut over).await;
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    let retry_after: u64 = header(&head, "retry-after").unwrap().parse().unwrap();
    assert!((3..=7).contains(&retry_after), "{head}");
    assert!(
        read_to_end(&mut over, rest)
            .await
            .contains("connection limit")
    );

    // A slot given back is taken by the next connection.
    drop(idle);
    let mut push = None;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while push.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        let mut socket = send(addr, &push_request(r#"{"events":[{"data":"x"}]}"#)).await;
        let (head, _) = read_head(&mut socket).await;
        if head.starts_with("HTTP/1.1 200 OK\r\n") {
            push = Some(head);
        }
    }
}

/// A client that takes 4 KiB every 100 ms of one large event keeps its stream well past the
/// write timeout; one that takes nothing is dropped after it. The kernel's send buffer grows to
/// megabytes and reports room only once half is free, so progress is the queue shrinking.
#[tokio::test]
async fn a_slow_steady_reader_keeps_its_stream_and_a_stalled_one_is_dropped() {
    let hub = Hub::builder()
        .heartbeat(None)
        .max_data_len(8 << 20)
        .build()
        .unwrap();
    let timeout = Duration::from_millis(300);
    let addr = lean(&hub, |builder| builder.write_timeout(timeout)).await;
    let connect = |uid: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap(); // a small window: the server's socket fills
        let mut socket = within(socket.connect(addr)).await.unwrap();
        socket
            .write_all(format!("GET /events?uid={uid} HTTP/1.1\r\nHost: hub\r\n\r\n").as_bytes())
            .await
            .unwrap();
        socket
    };
    let mut slow = connect("slow").await;
    let stalled = connect("stalled").await;
    eventually("both streams to open", || hub.stats().connections == 2).await;

    // One event of 8 MiB: one chunk, more than the kernel takes.
    let data = "x".repeat(8 << 20);
    hub.push(["slow", "stalled"], [Event::new(data.clone())])
        .await
        .unwrap();

    // The slow reader: 4 KiB every 100 ms for 2 s, more than six write timeouts.
    let mut taken = 0;
    let mut scratch = vec![0u8; 4096];
    let start = tokio::time::Instant::now();
    let mut stalled_dropped_after = None;
    while start.elapsed() < Duration::from_secs(2) {
        let n = within(slow.read(&mut scratch)).await.unwrap();
        assert!(
            n > 0,
            "the slow reader was cut off after {:?}",
            start.elapsed()
        );
        taken += n;
        if stalled_dropped_after.is_none() && hub.stats().connections == 1 {
            stalled_dropped_after = Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        taken < data.len(),
        "the reader must still be behind ({taken})"
    );
    let dropped = stalled_dropped_after.expect("the stalled client was not dropped");
    assert!(dropped >= timeout, "{dropped:?}");
    let receipt = hub.push(["slow"], [Event::new("next")]).await.unwrap();
    assert_eq!(receipt.connections, 1, "the slow reader is still connected");
    drop(stalled);
}

const PUSH_HEAD: &str =
    "POST /push HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n";

/// A `POST /push` whose body trickles in gets `408` at the request timeout, and a graceful
/// shutdown while a body trickles returns in bounded time.
#[tokio::test]
async fn a_trickled_push_body_gets_408_and_does_not_hold_shutdown() {
    let hub = Hub::new();
    let entered = Arc::new(tokio::sync::Notify::new());
    let slow_route = {
        let entered = Arc::clone(&entered);
        axum::routing::post(move |request: axum::extract::Request| async move {
            entered.notify_one();
            let _ = axum::body::to_bytes(request.into_body(), usize::MAX).await;
            "done"
        })
    };
    let fallback = axum::Router::new()
        .route("/push", ssehub_hub::axum::push(hub.clone()))
        .route("/slow", slow_route);
    let server = Server::builder(hub.clone(), uid_from_query)
        .fallback(fallback)
        .request_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        server
            .serve(listener)
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .into_future(),
    );

    // One byte every 100 ms, until the server answers.
    let trickle = |mut socket: TcpStream| async move {
        let mut response = BytesMut::new();
        for _ in 0..100 {
            if socket.write_all(b" ").await.is_err() {
                break;
            }
            tokio::select! {
                read = socket.read_buf(&mut response) => {
                    if read.unwrap_or(0) == 0 || response.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        String::from_utf8_lossy(&response).into_owned()
    };
    let started = tokio::time::Instant::now();
    let push = send(addr, PUSH_HEAD).await;
    let response = within(trickle(push)).await;
    assert!(
        response.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{response:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A second trickler, inside its handler, then shut down while it trickles.
    let slow = send(addr, &PUSH_HEAD.replace("/push", "/slow")).await;
    let trickling = tokio::spawn(trickle(slow));
    within(entered.notified()).await;
    stop.send(()).unwrap();
    let stopping = tokio::time::Instant::now();
    within(serving).await.unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopping.elapsed()
    );
    let response = within(trickling).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
}

/// Past the fallback's concurrency limit a request is answered `503` with `Retry-After` at once.
#[tokio::test]
async fn requests_over_the_fallback_limit_get_503_at_once() {
    let hub = Hub::new();
    let addr = lean(&hub, |builder| {
        builder
            .max_fallback_requests(1)
            .request_timeout(Duration::from_secs(60))
    })
    .await;
    // Holds the only place: its body never comes.
    let _holder = send(addr, PUSH_HEAD).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut socket = send(addr, &push_request(r#"{"events":[{"data":"x"}]}"#)).await;
        let (head, _) = read_head(&mut socket).await;
        if head.starts_with("HTTP/1.1 503 Service Unavailable\r\n") {
            assert!(header(&head, "retry-after").is_some(), "{head}");
            break;
        }
        // The holder's request may not have reached the router yet.
        assert!(
            tokio::time::Instant::now() < deadline,
            "never refused: {head}"
        );
    }
}

/// A memory store whose reads wait at a gate, counting how many are inside at once.
struct CountingStore {
    inner: MemoryStore,
    gate: Arc<Semaphore>,
    reading: AtomicUsize,
    most: Arc<AtomicUsize>,
}

impl CountingStore {
    async fn read<T>(&self, read: impl std::future::Future<Output = T>) -> T {
        let now = self.reading.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        // Each read takes one permit for good: the test lets them through one by one.
        self.gate.acquire().await.unwrap().forget();
        let result = read.await;
        self.reading.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        self.inner.save(records).await
    }
    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.inner.last_seq().await
    }
    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.read(self.inner.seq_of(id)).await
    }
    async fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.read(self.inner.list_after(query)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_the_replay_limit_read_the_store_and_pushes_go_on() {
    const REPLAYS: usize = 8;
    let gate = Arc::new(Semaphore::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let hub = Hub::builder()
        .store(CountingStore {
            inner: MemoryStore::new(10_000),
            gate: Arc::clone(&gate),
            reading: AtomicUsize::new(0),
            most: Arc::clone(&most),
        })
        .resend(true)
        .max_concurrent_replays(2)
        .heartbeat(None)
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..10 {
        let receipt = hub.broadcast([Event::new(n.to_string())]).await.unwrap();
        ids.push(receipt.ids[0].clone());
    }
    // Every client resumes after the first event: 9 to replay each.
    let readers: Vec<_> = (0..REPLAYS)
        .map(|n| {
            let options = SubscribeOptions::default().last_event_id(ids[0].clone());
            let mut stream = hub.subscribe(&format!("u{n}"), options).unwrap();
            tokio::spawn(async move {
                let mut text = String::new();
                while text.matches("data: ").count() < 10 {
                    let chunk = stream.next().await.expect("the stream ended");
                    text.push_str(std::str::from_utf8(&chunk).unwrap());
                }
                text
            })
        })
        .collect();
    eventually("two replays to read the store", || {
        most.load(Ordering::SeqCst) >= 2
    })
    .await;

    // Every replay is stuck at the gate or waiting for its turn: a push still goes through.
    let live = within(hub.broadcast([Event::new("live")])).await.unwrap();
    assert_eq!(live.connections, REPLAYS);

    gate.add_permits(1_000);
    for reader in readers {
        let text = within(reader).await.unwrap();
        let data: Vec<_> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(data, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "live"]);
    }
    assert_eq!(most.load(Ordering::SeqCst), 2, "reads at once");
}
