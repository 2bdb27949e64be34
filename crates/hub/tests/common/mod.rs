//! Shared by the hub's integration tests: a hub served by axum on 127.0.0.1 and an SSE reader.
#![allow(dead_code)] // each test file uses a different part
#![allow(clippy::unwrap_used)] // test support: a panic is how a test reports

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ssehub_hub::axum::SubscriberId;
use ssehub_hub::{AllowedTopics, Hub, Subscriber};
use ssehub_wire::{Decoder, Event, Frame};

/// How long any single wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A hub behind a real HTTP server: `GET /events?uid=..` and `POST /push`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

/// Stands in for an application's auth middleware: the uid comes from the `uid` query
/// parameter, the allowed topic patterns from `allow` (repeatable); with no `allow` it inserts a
/// bare [`SubscriberId`] (no topic allowed).
async fn uid_from_query(mut request: Request, next: Next) -> Response {
    let query = request.uri().query().unwrap_or("").to_owned();
    let param = |name: &str| {
        let prefix = format!("{name}=");
        query
            .split('&')
            .filter_map(|pair| pair.strip_prefix(prefix.as_str()).map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let uid = param("uid").into_iter().next().unwrap_or_default();
    let allow = param("allow");
    if allow.is_empty() {
        request.extensions_mut().insert(SubscriberId(uid));
    } else {
        let allowed = AllowedTopics::new(allow);
        request
            .extensions_mut()
            .insert(Subscriber::new(uid).allow_topics(allowed));
    }
    next.run(request).await
}

impl TestServer {
    pub async fn start(hub: Hub) -> Self {
        let app = Router::new()
            .route("/events", ssehub_hub::axum::events(hub.clone()))
            .route_layer(middleware::from_fn(uid_from_query))
            .route("/push", ssehub_hub::axum::push(hub.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { addr, hub, client }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// Opens `/events` for `uid` and waits until the stream is open (its first comment).
    pub async fn subscribe(&self, uid: &str) -> SseStream {
        self.subscribe_with(&format!("/events?uid={uid}"), &[])
            .await
    }

    pub async fn subscribe_with(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> SseStream {
        let mut request = http::Request::get(self.url(path_and_query));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = within(self.client.request(request.body(Full::default()).unwrap()))
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let mut stream = SseStream {
            status: parts.status,
            headers: parts.headers,
            body,
            buf: BytesMut::new(),
            decoder: Decoder::new(),
            ended: false,
        };
        if stream.status == StatusCode::OK {
            match stream.next_frame().await {
                Some(Frame::Comment(_)) => {}
                other => panic!("expected the opening comment, got {other:?}"),
            }
        }
        stream
    }

    /// POSTs `body` to `/push`; returns the status and the parsed JSON envelope.
    pub async fn push_json(&self, body: &str) -> (StatusCode, serde_json::Value) {
        let request = http::Request::post(self.url("/push"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = within(self.client.request(request)).await.unwrap();
        let status = response.status();
        let bytes = within(response.into_body().collect())
            .await
            .unwrap()
            .to_bytes();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        (status, json)
    }
}

/// An SSE response body read through the ssehub-wire decoder.
pub struct SseStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    buf: BytesMut,
    decoder: Decoder,
    ended: bool,
}

impl SseStream {
    /// The next frame, `None` when the server ended the stream. Fails the test after [`PATIENCE`].
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(frame);
            }
            if self.ended {
                return self.decoder.decode_eof(&mut self.buf).unwrap();
            }
            match within(self.body.frame()).await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(_)) | None => self.ended = true,
            }
        }
    }

    /// The next event, skipping comments; `None` at the end of the stream.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            match self.next_frame().await? {
                Frame::Event(event) => return Some(event),
                Frame::Comment(_) | Frame::Retry(_) => {}
            }
        }
    }

    /// The data of the next `n` events.
    pub async fn next_data(&mut self, n: usize) -> Vec<String> {
        let mut data = Vec::with_capacity(n);
        for _ in 0..n {
            let event = self.next_event().await.expect("the stream ended early");
            data.push(event.data.as_str().to_owned());
        }
        data
    }
}

/// Awaits `future`, failing the test if it takes longer than [`PATIENCE`].
pub async fn within<F: std::future::IntoFuture>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("timed out waiting")
}

/// Waits until `condition` holds, checking every few milliseconds; fails after [`PATIENCE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Pushes 64 KiB events to `uid`, which reads nothing, until the hub gives up on it (its socket
/// buffers fill first, then its queue); returns how many were pushed. Fails after 10,000.
pub async fn push_until_cut_off(hub: &Hub, uid: &str) -> usize {
    let payload = "x".repeat(64 << 10);
    let mut pushed = 0;
    while hub.stats().failed == 0 {
        assert!(pushed < 10_000, "the client was never cut off");
        hub.push([uid], [Event::new(payload.clone())])
            .await
            .unwrap();
        pushed += 1;
        tokio::task::yield_now().await;
    }
    pushed
}

/// A subscription read in-process through the wire decoder.
pub struct Reader {
    pub stream: ssehub_hub::Subscription,
    buf: BytesMut,
    decoder: Decoder,
}

impl Reader {
    pub fn open(hub: &Hub, uid: &str, options: ssehub_hub::SubscribeOptions) -> Self {
        Self {
            stream: hub.subscribe(uid, options).unwrap(),
            buf: BytesMut::new(),
            decoder: Decoder::new(),
        }
    }

    pub fn resume(hub: &Hub, uid: &str, last_event_id: &str) -> Self {
        Self::open(
            hub,
            uid,
            ssehub_hub::SubscribeOptions::default().last_event_id(last_event_id),
        )
    }

    /// The next event, `None` when the stream ended.
    pub async fn next_event(&mut self) -> Option<Event> {
        use futures_util::StreamExt;
        loop {
            while let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                if let Frame::Event(event) = frame {
                    return Some(event);
                }
            }
            let chunk = within(self.stream.next()).await?;
            self.buf.extend_from_slice(&chunk);
        }
    }

    pub async fn next_data(&mut self, n: usize) -> Vec<String> {
        let mut data = Vec::new();
        for _ in 0..n {
            data.push(self.next_event().await.unwrap().data.as_str().to_owned());
        }
        data
    }

    /// The data of every event up to and including the `end` marker (a broadcast pushed last):
    /// what this connection received, and nothing it did not.
    pub async fn data_until_end(&mut self) -> Vec<String> {
        let mut data = Vec::new();
        loop {
            let event = self.next_event().await.expect("the stream ended");
            if event.data.as_str() == "end" {
                return data;
            }
            data.push(event.data.as_str().to_owned());
        }
    }
}

/// A memory store that counts its saves and, if gated, holds each save until the test adds a
/// permit to the gate.
pub struct CountedStore {
    inner: ssehub_hub::store::MemoryStore,
    saves: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    gate: Option<std::sync::Arc<tokio::sync::Semaphore>>,
}

impl CountedStore {
    /// A store of `capacity` events whose saves go through at once; the count of saves.
    pub fn new(capacity: u64) -> (Self, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let saves = std::sync::Arc::default();
        let store = Self {
            inner: ssehub_hub::store::MemoryStore::new(capacity),
            saves: std::sync::Arc::clone(&saves),
            gate: None,
        };
        (store, saves)
    }

    /// The same, each save waiting for a permit of `gate`.
    pub fn gated(
        capacity: u64,
        gate: &std::sync::Arc<tokio::sync::Semaphore>,
    ) -> (Self, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let (mut store, saves) = Self::new(capacity);
        store.gate = Some(std::sync::Arc::clone(gate));
        (store, saves)
    }
}

#[ssehub_hub::store::async_trait]
impl ssehub_hub::store::Store for CountedStore {
    async fn save(
        &self,
        records: &[ssehub_hub::store::Record],
    ) -> Result<(), ssehub_hub::store::StoreError> {
        self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        self.inner.save(records).await
    }
    async fn last_seq(&self) -> Result<u64, ssehub_hub::store::StoreError> {
        self.inner.last_seq().await
    }
    async fn seq_of(&self, id: &str) -> Result<Option<u64>, ssehub_hub::store::StoreError> {
        self.inner.seq_of(id).await
    }
    async fn list_after(
        &self,
        query: &ssehub_hub::store::ListQuery,
    ) -> Result<ssehub_hub::store::Page, ssehub_hub::store::StoreError> {
        self.inner.list_after(query).await
    }
}
