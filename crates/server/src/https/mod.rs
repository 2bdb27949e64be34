//! The HTTPS path of `serve` (`--tls-cert`/`--tls-key`): TLS through rustls, then HTTP/2 or
//! HTTP/1.1 as ALPN chose, both served by hyper with one router that has the stream route too.
//!
//! The guarantees of the cleartext path, kept here:
//!
//! - **Connection cap**: at most `max_connections` open at once (every kind); past it the socket
//!   is closed at once (a `503` would first cost a handshake).
//! - **Handshake deadline**: a TLS handshake must finish within `handshake_timeout`, else the
//!   socket is closed; it holds a connection slot only that long. HTTP/1.1 then gives the first
//!   and every later head the lean path's head timeout.
//! - **Dead peers**: TCP keepalive as on the lean path; HTTP/2 pings every half
//!   `dead_peer_timeout`, a peer that does not answer one within 20 s is dropped with all its
//!   streams.
//! - **Stalled readers**: a socket that takes nothing for `write_timeout` while a write waits
//!   ends its connection ([`watched`]). What a stalled stream can hold is bounded by the hub's
//!   per-connection outbox, plus, over HTTP/2, one chunk and the stream's small send buffer:
//!   hyper asks the stream for more only once flow control lets it send.
//! - **Graceful shutdown**: the signal closes the hub (streams get `close`, or nothing with
//!   `--restart`), then handshakes in progress are dropped, HTTP/1.1 connections close after
//!   their response and HTTP/2 ones get `GOAWAY`; it returns once every connection has ended.

mod h1;
mod route;
mod watched;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use route::Events;
use watched::Watched;

use crate::tls::Certificates;

/// Concurrent streams one HTTP/2 connection may open (RFC 9113 asks for at least 100). A
/// browser puts every tab of an origin on one connection.
pub(crate) const MAX_STREAMS_PER_CONNECTION: u32 = 100;
/// How long an HTTP/2 ping may go unanswered before the connection is dropped.
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// The receive window of one HTTP/2 stream: the most a client can make us buffer per stream
/// (requests are small; a push body just takes more round trips).
const STREAM_WINDOW: u32 = 64 * 1024;
/// The receive window of one HTTP/2 connection.
const CONNECTION_WINDOW: u32 = 256 * 1024;
/// What HTTP/2 buffers for one stream beyond what flow control lets through.
const SEND_BUFFER: usize = 64 * 1024;
/// The largest header block accepted (the lean path's head limit).
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// What rustls buffers of TLS records not yet taken by the socket, per connection.
const TLS_BUFFER: usize = 64 * 1024;

/// A TLS session over a watched socket.
type Tls = tokio_rustls::server::TlsStream<Watched<TcpStream>>;

/// The HTTPS server: built by `Hubserver::bind`, run by `Hubserver::run_until`.
pub(crate) struct Https {
    inner: Arc<Inner>,
}

struct Inner {
    acceptor: TlsAcceptor,
    events: Events,
    router: Router,
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    handshake_timeout: Duration,
    write_timeout: Duration,
    dead_peer_timeout: Option<Duration>,
    max_connections: usize,
}

/// What [`Https::new`] needs.
pub(crate) struct Options {
    pub(crate) certificates: Certificates,
    pub(crate) events: Events,
    pub(crate) routes: Router,
    pub(crate) handshake_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) dead_peer_timeout: Option<Duration>,
    pub(crate) max_connections: usize,
}

impl Https {
    pub(crate) fn new(options: Options) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(ssehub_hub::server::DEFAULT_HEAD_TIMEOUT);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_send_buf_size(SEND_BUFFER)
            .max_header_list_size(MAX_HEADER_LIST);
        if let Some(dead) = options.dead_peer_timeout {
            http2
                .keep_alive_interval(dead / 2)
                .keep_alive_timeout(PING_TIMEOUT.min(dead / 2));
        }
        Self {
            inner: Arc::new(Inner {
                acceptor: TlsAcceptor::from(options.certificates.server_config()),
                events: options.events.clone(),
                router: route::router(options.events, options.routes),
                http1,
                http2,
                handshake_timeout: options.handshake_timeout,
                write_timeout: options.write_timeout,
                dead_peer_timeout: options.dead_peer_timeout,
                max_connections: options.max_connections,
            }),
        }
    }

    /// Accepts until `signal`, then shuts down gracefully (module docs).
    pub(crate) async fn run(self, listener: TcpListener, signal: impl Future<Output = ()>) {
        let shutdown = CancellationToken::new();
        let connections = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(
            self.inner.max_connections.min(Semaphore::MAX_PERMITS),
        ));
        let mut backoff = Duration::ZERO;
        tokio::pin!(signal);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut signal => break,
            };
            let (socket, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    // Out of descriptors or memory: retrying at once would spin.
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    tracing::error!(%error, ?backoff, "accepting a connection failed; backing off");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => continue,
                        () = &mut signal => break,
                    }
                }
            };
            backoff = Duration::ZERO;
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::debug!(%peer, "connection cap reached; closing");
                continue;
            };
            prepare(&socket, peer, self.inner.dead_peer_timeout);
            connections.spawn(serve(
                Arc::clone(&self.inner),
                socket,
                peer,
                shutdown.clone(),
                slot,
            ));
        }
        drop(listener); // new connections are refused from now on
        shutdown.cancel();
        connections.close();
        connections.wait().await;
    }
}

/// `TCP_NODELAY` (an event leaves when written) and keepalive, as on the lean path: probes after
/// half the dead-peer timeout of silence, four of them over the other half.
fn prepare(socket: &TcpStream, peer: SocketAddr, dead_peer_timeout: Option<Duration>) {
    if let Err(error) = socket.set_nodelay(true) {
        tracing::debug!(%peer, %error, "TCP_NODELAY failed");
    }
    let Some(timeout) = dead_peer_timeout else {
        return;
    };
    let idle = (timeout / 2).max(Duration::from_secs(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval((idle / 4).max(Duration::from_secs(1)))
        .with_retries(4);
    if let Err(error) = socket2::SockRef::from(socket).set_tcp_keepalive(&keepalive) {
        tracing::debug!(%peer, %error, "setting keepalive failed");
    }
}

/// One connection: the handshake under its deadline, then hyper until the connection ends or,
/// after shutdown, until its requests in progress are done.
async fn serve(
    inner: Arc<Inner>,
    socket: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
    slot: OwnedSemaphorePermit,
) {
    // Boxed: the handshake's state (a whole TLS session) would otherwise stay in the task's
    // allocation for the life of the connection.
    let handshake = Box::pin(tokio::time::timeout(
        inner.handshake_timeout,
        inner
            .acceptor
            .accept(Watched::new(socket, inner.write_timeout)),
    ));
    // Boxed at once: the session (1.2 KiB) is then one allocation that every phase below moves
    // as a pointer; held by value, each phase's copy would keep its own slot in this task.
    let mut tls: Box<Tls> = tokio::select! {
        done = handshake => match done {
            Ok(Ok(tls)) => Box::new(tls),
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                return;
            }
            Err(_elapsed) => {
                tracing::debug!(%peer, timeout = ?inner.handshake_timeout, "no TLS handshake within the deadline; closing");
                return;
            }
        },
        () = shutdown.cancelled() => return,
    };
    tls.get_mut().1.set_buffer_limit(Some(TLS_BUFFER));
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let requested = Arc::new(AtomicBool::new(false));
    let service = Service {
        router: inner.router.clone(),
        peer,
        requested: Arc::clone(&requested),
    };
    let result = if h2 {
        let connection = inner.http2.serve_connection(TokioIo::new(tls), service);
        Box::pin(drive(connection, &shutdown, &requested, |c| {
            c.graceful_shutdown();
        }))
        .await
    } else {
        // The first head decides: a stream is served here, anything else by hyper.
        let deadline = tokio::time::Instant::now() + ssehub_hub::server::DEFAULT_HEAD_TIMEOUT;
        let first = tokio::select! {
            first = Box::pin(h1::first(tls, peer, deadline)) => first,
            // A connection that has not sent its first request has nothing to finish.
            () = shutdown.cancelled() => return,
        };
        match first {
            h1::First::Stream(io, parts) => {
                // The hub's close ends a stream, not the server's shutdown.
                drop((shutdown, service, requested));
                let events = inner.events.clone();
                let write_timeout = inner.write_timeout;
                drop(inner);
                if let Err(error) = Box::pin(h1::stream(io, &events, parts)).await {
                    tracing::debug!(%peer, %error, ?write_timeout, "event stream ended with an error");
                }
                drop(slot);
                return;
            }
            h1::First::Other(io) => {
                let connection = inner.http1.serve_connection(TokioIo::new(io), service);
                Box::pin(drive(connection, &shutdown, &requested, |c| {
                    c.graceful_shutdown();
                }))
                .await
            }
            h1::First::Answer(io, status, message) => {
                h1::answer_and_close(io, status, message, inner.write_timeout).await;
                Ok(())
            }
            h1::First::Close => Ok(()),
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
    drop(slot);
}

/// Runs `connection` to its end; on shutdown, asks it to finish gracefully, or drops it if it
/// never had a request: hyper would wait for the first request (HTTP/1.1, until the head
/// timeout) or the client's preface (HTTP/2, for ever) before closing.
async fn drive<C>(
    connection: C,
    shutdown: &CancellationToken,
    requested: &AtomicBool,
    graceful: impl FnOnce(Pin<&mut C>),
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            if !requested.load(Ordering::Relaxed) {
                return Ok(());
            }
            graceful(connection.as_mut());
            connection.await
        }
    }
}

/// The router for one connection: the peer's address in each request's extensions (as
/// `ConnectInfo`, as on the cleartext path), and the router's future boxed, so that what hyper
/// keeps per request (an HTTP/2 stream's task, an HTTP/1.1 connection's slot for the request in
/// flight) is a pointer, not the router's largest future, for as long as the stream lasts.
#[derive(Clone)]
struct Service {
    router: Router,
    peer: SocketAddr,
    /// Set by the first request (see [`drive`]).
    requested: Arc<AtomicBool>,
}

impl hyper::service::Service<http::Request<Incoming>> for Service {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        self.requested.store(true, Ordering::Relaxed);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let router = self.router.clone();
        Box::pin(async move {
            tower::ServiceExt::oneshot(router, request.map(axum::body::Body::new)).await
        })
    }
}

/// Errors about one connection (which is gone), not about the listener.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
