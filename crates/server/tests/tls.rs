//! `serve` over TLS (`--tls-cert`/`--tls-key`): HTTP/2 and HTTP/1.1 by ALPN, with real sockets
//! on 127.0.0.1, certificates made here (rcgen), and hyper's client.
#![allow(clippy::unwrap_used)] // tests: a panic is how a test reports

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ssehub_server::auth::Claims;
use ssehub_server::config::{Config, Settings};
use ssehub_server::tls::Certificates;
use ssehub_wire::{Decoder, Event, Frame};
use support::{KEY, PATIENCE, temp_dir, token, within};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::ServerName};

/// A self-signed certificate for `localhost` in two PEM files.
struct Cert {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

impl Cert {
    fn new(dir: &Path, name: &str) -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        Self {
            cert,
            key,
            der: made.cert.der().clone(),
        }
    }

    /// Puts `other`'s files in place of these (as a renewal would).
    fn replace_with(&self, other: &Cert) {
        std::fs::copy(&other.cert, &self.cert).unwrap();
        std::fs::copy(&other.key, &self.key).unwrap();
    }
}

fn tls_settings(cert: &Cert) -> Settings {
    Settings {
        tls_cert: Some(cert.cert.clone()),
        tls_key: Some(cert.key.clone()),
        ..support::settings()
    }
}

/// A `Hubserver` over TLS, in-process.
struct Running {
    addr: std::net::SocketAddr,
    hub: ssehub_hub::Hub,
    certificates: Certificates,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    async fn start(settings: Settings) -> Self {
        let config = Config::from_settings(settings).unwrap();
        let server = ssehub_server::Hubserver::bind(config).await.unwrap();
        assert!(server.banner().contains("https://"), "{}", server.banner());
        let addr = server.local_addr();
        let hub = server.hub().clone();
        let certificates = server.certificates().unwrap().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async {
            stopped.await.ok();
        }));
        Self {
            addr,
            hub,
            certificates,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(self) {
        let Self {
            hub, stop, task, ..
        } = self;
        drop(hub);
        if let Some(stop) = stop {
            stop.send(()).ok();
        }
        within(task).await.unwrap();
    }
}

/// A TLS connection to `addr` as `localhost`, trusting `roots`, offering `alpn`.
async fn tls(
    addr: std::net::SocketAddr,
    roots: &[&CertificateDer<'static>],
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let socket = within(TcpStream::connect(addr)).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    within(TlsConnector::from(Arc::new(config)).connect(name, socket))
        .await
        .unwrap()
}

/// An HTTP/2 connection (ALPN `h2`).
async fn h2(
    addr: std::net::SocketAddr,
    cert: &Cert,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let io = tls(addr, &[&cert.der], &[b"h2"]).await;
    assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

/// An HTTP/1.1 connection (ALPN `http/1.1`).
async fn h1(
    addr: std::net::SocketAddr,
    cert: &Cert,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let io = tls(addr, &[&cert.der], &[b"http/1.1"]).await;
    assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// `GET target` in origin form (`GET /events HTTP/1.1`, as browsers send it over HTTP/1.1),
/// on a new HTTP/1.1 connection.
async fn h1_get(
    addr: std::net::SocketAddr,
    cert: &Cert,
    target: &str,
    bearer: Option<&str>,
) -> http::Response<Incoming> {
    let mut sender = h1(addr, cert).await;
    let mut request = Request::get(target).header("host", "localhost");
    if let Some(bearer) = bearer {
        request = request.header("authorization", format!("Bearer {bearer}"));
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    within(sender.send_request(request)).await.unwrap()
}

fn get(target: &str, bearer: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::get(format!("https://localhost{target}"));
    if let Some(bearer) = bearer {
        request = request.header("authorization", format!("Bearer {bearer}"));
    }
    request.body(Full::new(Bytes::new())).unwrap()
}

/// An event stream read from a hyper body.
struct Sse {
    body: Incoming,
    buf: BytesMut,
    decoder: Decoder,
}

impl Sse {
    fn new(response: http::Response<Incoming>) -> Self {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: response.into_body(),
            buf: BytesMut::new(),
            decoder: Decoder::new(),
        }
    }

    /// The next event; `None` when the stream ends.
    async fn event(&mut self) -> Option<Event> {
        loop {
            while let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                if let Frame::Event(event) = frame {
                    return Some(event);
                }
            }
            match within(self.body.frame()).await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                _ => {
                    return match self.decoder.decode_eof(&mut self.buf).unwrap() {
                        Some(Frame::Event(event)) => Some(event),
                        _ => None,
                    };
                }
            }
        }
    }

    async fn data(&mut self) -> String {
        self.event()
            .await
            .expect("the stream ended")
            .data
            .as_str()
            .to_owned()
    }
}

fn user_token(uid: &str) -> String {
    token(&Claims::new(uid, Duration::from_secs(3600)))
}

async fn push(hub: &ssehub_hub::Hub, uid: &str, data: &str) {
    hub.push([uid], vec![ssehub_hub::Event::new(data)])
        .await
        .unwrap();
}

#[tokio::test]
async fn alpn_negotiates_h2_then_http11_and_both_serve_the_routes() {
    let dir = temp_dir("tls-alpn");
    let cert = Cert::new(&dir, "a");
    let server = Running::start(tls_settings(&cert)).await;

    let both = tls(server.addr, &[&cert.der], &[b"h2", b"http/1.1"]).await;
    assert_eq!(both.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let old = tls(server.addr, &[&cert.der], &[b"http/1.1"]).await;
    assert_eq!(old.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // No ALPN at all (an old client): HTTP/1.1.
    let none = tls(server.addr, &[&cert.der], &[]).await;
    assert_eq!(none.get_ref().1.alpn_protocol(), None);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(none))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = within(sender.send_request(get("/healthz", None)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    for mut sender in [h2(server.addr, &cert).await] {
        let response = within(sender.send_request(get("/healthz", None)))
            .await
            .unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), StatusCode::OK);
        // The push API over HTTP/2, with the key.
        let body = r#"{"uids":["nobody"],"events":[{"data":"x"}]}"#;
        let push = Request::post("https://localhost/push")
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = within(sender.send_request(push)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut sender = h1(server.addr, &cert).await;
    let response = within(sender.send_request(get("/nothing", None)))
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

/// An HTTP/1.1 stream over TLS is written by ssehub itself (no chunked framing; the body ends
/// with the connection) and gets its events; `HEAD` subscribes no one; the other routes go to
/// hyper on the same kind of connection, with keep-alive.
#[tokio::test]
async fn http11_streams_over_tls_take_the_lean_writer_and_other_routes_hyper() {
    let dir = temp_dir("tls-h1");
    let cert = Cert::new(&dir, "a");
    let server = Running::start(Settings {
        cors_origins: vec!["https://app.example".to_owned()],
        ..tls_settings(&cert)
    })
    .await;
    // A refusal, written the same way: its body ends with the connection.
    let response = h1_get(
        server.addr,
        &cert,
        "/events?topic=news",
        Some(&user_token("alice")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("news"), "{body:?}");
    let response = h1_get(server.addr, &cert, "/events", Some(&user_token("alice"))).await;
    assert!(response.headers().get("transfer-encoding").is_none());
    assert_eq!(response.headers()["connection"], "close");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    assert_eq!(response.headers()["vary"], "origin");
    let mut alice = Sse::new(response);
    within(async {
        while server.hub.stats().connections < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    push(&server.hub, "bob", "not for alice").await;
    push(&server.hub, "alice", "one").await;
    push(&server.hub, "alice", "two").await;
    assert_eq!(alice.data().await, "one");
    assert_eq!(alice.data().await, "two");

    let mut sender = h1(server.addr, &cert).await;
    let head = Request::head("/events")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", user_token("carol")))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = within(sender.send_request(head)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(server.hub.stats().connections, 1, "HEAD subscribed no one");

    // Two requests on one keep-alive connection, through hyper.
    let mut sender = h1(server.addr, &cert).await;
    for _ in 0..2 {
        let request = Request::get("/healthz")
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = within(sender.send_request(request)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("connection").is_none());
        response.into_body().collect().await.unwrap();
    }
    // The client leaving ends its stream.
    drop(alice);
    within(async {
        while server.hub.stats().connections > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    server.stop().await;
}

/// Uni-cast privacy over HTTP/2: 40 users' streams on one connection, each push to one of them;
/// every stream gets its own event, and then the broadcast marker next, with nothing between.
#[tokio::test]
async fn many_streams_on_one_h2_connection_each_get_only_their_own_events() {
    let dir = temp_dir("tls-many");
    let cert = Cert::new(&dir, "a");
    let server = Running::start(tls_settings(&cert)).await;
    let sender = h2(server.addr, &cert).await;
    let mut streams = Vec::new();
    for i in 0..40 {
        let mut sender = sender.clone();
        let response =
            within(sender.send_request(get("/events", Some(&user_token(&format!("u{i}"))))))
                .await
                .unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        streams.push(Sse::new(response));
    }
    within(async {
        while server.hub.stats().connections < 40 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    for i in 0..40 {
        push(&server.hub, &format!("u{i}"), &format!("for u{i}")).await;
    }
    server
        .hub
        .broadcast(vec![ssehub_hub::Event::new("marker")])
        .await
        .unwrap();
    for (i, stream) in streams.iter_mut().enumerate() {
        assert_eq!(stream.data().await, format!("for u{i}"));
        assert_eq!(stream.data().await, "marker");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_bad_or_missing_token_is_refused_over_h2_and_http11() {
    let dir = temp_dir("tls-auth");
    let cert = Cert::new(&dir, "a");
    let server = Running::start(tls_settings(&cert)).await;
    let expired = {
        let mut claims = Claims::new("alice", Duration::from_secs(0));
        claims.exp -= 3600;
        token(&claims)
    };
    let mut over_h2 = h2(server.addr, &cert).await;
    for (name, bearer, reason) in [
        ("none", None, "a token is required"),
        (
            "tampered",
            Some(format!("{}x", user_token("alice"))),
            "signature",
        ),
        ("expired", Some(expired), "expired"),
    ] {
        for (version, response) in [
            (
                "h2",
                within(over_h2.send_request(get("/events", bearer.as_deref())))
                    .await
                    .unwrap(),
            ),
            (
                "h1",
                h1_get(server.addr, &cert, "/events", bearer.as_deref()).await,
            ),
        ] {
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{name} over {version}"
            );
            let challenge = response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains(reason), "{name} over {version}: {body}");
        }
    }
    // A topic outside the token's claims: 403 naming it, over HTTP/2 too; HEAD answers alike
    // without subscribing.
    let response =
        within(over_h2.send_request(get("/events?topic=secret", Some(&user_token("alice")))))
            .await
            .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let head = Request::head("https://localhost/events?topic=secret")
        .header("authorization", format!("Bearer {}", user_token("alice")))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        within(over_h2.send_request(head)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let head = Request::head("https://localhost/events")
        .header("authorization", format!("Bearer {}", user_token("alice")))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = within(over_h2.send_request(head)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(server.hub.stats().connections, 0, "HEAD subscribed no one");
    // Publishing without the key: 401.
    let push = Request::post("https://localhost/push")
        .body(Full::new(Bytes::from(r#"{"events":[{"data":"x"}]}"#)))
        .unwrap();
    assert_eq!(
        within(over_h2.send_request(push)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}

#[tokio::test]
async fn cors_headers_on_the_tls_path() {
    let dir = temp_dir("tls-cors");
    let cert = Cert::new(&dir, "a");
    let server = Running::start(Settings {
        cors_origins: vec!["https://app.example".to_owned()],
        ..tls_settings(&cert)
    })
    .await;
    let mut sender = h2(server.addr, &cert).await;
    let with_origin = |origin: &str, bearer: Option<String>| {
        let mut request = Request::get("https://localhost/events").header("origin", origin);
        if let Some(bearer) = bearer {
            request = request.header("authorization", format!("Bearer {bearer}"));
        }
        request.body(Full::new(Bytes::new())).unwrap()
    };
    let response = within(sender.send_request(with_origin(
        "https://app.example",
        Some(user_token("alice")),
    )))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(
        response.headers()["access-control-allow-credentials"],
        "true"
    );
    assert_eq!(response.headers()["vary"], "origin");
    drop(response);
    // A refusal a browser can read.
    let response = within(sender.send_request(with_origin("https://app.example", None)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    // Another origin: no grant.
    let response =
        within(sender.send_request(with_origin("https://evil.example", Some(user_token("bob")))))
            .await
            .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    drop(response);
    // The preflight of the stream, answered by the router's CORS layer.
    let preflight = Request::options("https://localhost/events")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header(
            "access-control-request-headers",
            "authorization, last-event-id",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = within(sender.send_request(preflight)).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    server.stop().await;
}

/// SIGHUP: new handshakes get the new certificate, a stream opened before keeps receiving.
/// A bad file on reload keeps the certificate in use.
#[tokio::test]
async fn sighup_reloads_the_certificate_and_a_bad_file_keeps_the_old_one() {
    let dir = temp_dir("tls-reload");
    let old = Cert::new(&dir, "served");
    let new = Cert::new(&dir, "next");
    let server = Running::start(tls_settings(&old)).await;
    let mut sender = h2(server.addr, &old).await;
    let mut stream = Sse::new(
        within(sender.send_request(get("/events", Some(&user_token("alice")))))
            .await
            .unwrap(),
    );
    let presented =
        |io: &TlsStream<TcpStream>| io.get_ref().1.peer_certificates().unwrap()[0].clone();

    // A bad file: the reload fails naming it, the old certificate stays.
    std::fs::write(&old.cert, "not a certificate").unwrap();
    let error = server.certificates.reload().unwrap_err();
    assert!(error.to_string().starts_with("--tls-cert "), "{error}");
    assert!(
        error.to_string().contains("no CERTIFICATE block"),
        "{error}"
    );
    let io = tls(server.addr, &[&old.der, &new.der], &[b"h2"]).await;
    assert_eq!(presented(&io), old.der);
    // A key that is not the certificate's: refused alike.
    std::fs::copy(&new.cert, &old.cert).unwrap();
    let error = server.certificates.reload().unwrap_err();
    assert!(
        error.to_string().contains("not the one of the certificate"),
        "{error}"
    );
    let io = tls(server.addr, &[&old.der, &new.der], &[b"h2"]).await;
    assert_eq!(presented(&io), old.der);

    // The renewed pair in place, then SIGHUP to this process (the server listens for it).
    old.replace_with(&new);
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP).unwrap();
    within(async {
        loop {
            let io = tls(server.addr, &[&old.der, &new.der], &[b"h2"]).await;
            if presented(&io) == new.der {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The stream opened under the old certificate goes on.
    push(&server.hub, "alice", "after the reload").await;
    assert_eq!(stream.data().await, "after the reload");
    server.stop().await;
}

/// A connection that never finishes its handshake is closed at the deadline and gives its slot
/// back; past the connection cap, a connection is closed at once.
#[tokio::test]
async fn a_stalled_handshake_is_dropped_and_the_connection_cap_applies() {
    let dir = temp_dir("tls-stall");
    let cert = Cert::new(&dir, "a");
    let server = Running::start(Settings {
        tls_handshake_timeout: Some("500ms".parse().unwrap()),
        max_connections: Some(1),
        ..tls_settings(&cert)
    })
    .await;
    let started = tokio::time::Instant::now();
    let mut stalled = within(TcpStream::connect(server.addr)).await.unwrap();
    // Past the cap (the stalled one holds the only slot): closed without a handshake.
    let mut over = within(TcpStream::connect(server.addr)).await.unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(within(over.read(&mut byte)).await, Ok(0) | Err(_)));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the cap answered at once"
    );
    // The stalled one: closed at the deadline, not before.
    assert!(matches!(
        within(stalled.read(&mut byte)).await,
        Ok(0) | Err(_)
    ));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "closed after {waited:?}"
    );
    assert!(waited < PATIENCE / 2, "closed after {waited:?}");
    // Its slot is free again.
    within(async {
        loop {
            let mut sender = h1(server.addr, &cert).await;
            if let Ok(response) = sender.send_request(get("/healthz", None)).await {
                assert_eq!(response.status(), StatusCode::OK);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    server.stop().await;
}

/// Shutdown: streams over HTTP/2 and over HTTP/1.1 get `close` and end; the server returns.
#[tokio::test]
async fn shutdown_ends_tls_streams_with_the_close_event() {
    let dir = temp_dir("tls-close");
    let cert = Cert::new(&dir, "a");
    let server = Running::start(tls_settings(&cert)).await;
    let mut over_h2 = h2(server.addr, &cert).await;
    let mut streams = vec![
        Sse::new(
            within(over_h2.send_request(get("/events", Some(&user_token("a")))))
                .await
                .unwrap(),
        ),
        Sse::new(h1_get(server.addr, &cert, "/events", Some(&user_token("b"))).await),
    ];
    within(async {
        while server.hub.stats().connections < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let addr = server.addr;
    let stopping = tokio::spawn(server.stop());
    for stream in &mut streams {
        let event = stream.event().await.expect("a close event");
        assert_eq!(event.event.as_ref().map(|t| t.as_str()), Some("close"));
        assert!(
            stream.event().await.is_none(),
            "the stream ends after close"
        );
    }
    within(stopping).await.unwrap();
    // The listener is gone.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[test]
fn tls_flags_are_both_or_neither_and_bad_files_name_their_flag() {
    let dir = temp_dir("tls-config");
    let cert = Cert::new(&dir, "a");
    let only_cert = Settings {
        tls_cert: Some(cert.cert.clone()),
        ..support::settings()
    };
    let error = Config::from_settings(only_cert).unwrap_err().to_string();
    assert!(
        error.starts_with("--tls-key (SSEHUB_TLS_KEY): missing"),
        "{error}"
    );
    let only_key = Settings {
        tls_key: Some(cert.key.clone()),
        ..support::settings()
    };
    let error = Config::from_settings(only_key).unwrap_err().to_string();
    assert!(
        error.starts_with("--tls-cert (SSEHUB_TLS_CERT): missing"),
        "{error}"
    );
    let missing = Settings {
        tls_cert: Some(dir.join("nope.crt")),
        ..tls_settings(&cert)
    };
    let error = Config::from_settings(missing).unwrap_err().to_string();
    assert!(
        error.starts_with("--tls-cert (SSEHUB_TLS_CERT): "),
        "{error}"
    );
    assert!(error.contains("nope.crt"), "{error}");
    std::fs::write(dir.join("garbage.key"), "-----BEGIN NOTHING-----\n").unwrap();
    let garbage = Settings {
        tls_key: Some(dir.join("garbage.key")),
        ..tls_settings(&cert)
    };
    let error = Config::from_settings(garbage).unwrap_err().to_string();
    assert!(error.starts_with("--tls-key (SSEHUB_TLS_KEY): "), "{error}");
    let other = Cert::new(&dir, "b");
    let mismatched = Settings {
        tls_key: Some(other.key.clone()),
        ..tls_settings(&cert)
    };
    let error = Config::from_settings(mismatched).unwrap_err().to_string();
    assert!(error.contains("not the one of the certificate"), "{error}");
    assert!(Config::from_settings(tls_settings(&cert)).is_ok());
}
