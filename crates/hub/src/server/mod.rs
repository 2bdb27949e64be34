//! A lean HTTP/1.1 server for event streams, with every other request handed to an axum
//! [`Router`] (feature `server`, on by default).
//!
//! `axum::serve` gives each connection hyper's 8 KiB read and write buffers and writes every
//! chunk through the chunked encoder: about 22 KiB of memory per idle stream. [`Server`] reads
//! the first request head itself, into a small buffer: a `GET` of the event-stream path is
//! answered by a writer of its own that holds only the socket, the hub's [`Subscription`] and a
//! few words, and writes each chunk the hub hands out in one write (no chunked framing: the end
//! of the body is the end of the connection). Any other request, and the rest of its
//! connection, goes to hyper and your router, so the push API, health checks and middleware work
//! as under `axum::serve`.
//!
//! What the lean path bypasses: tower middleware does not run for the event-stream route, so
//! authentication is the function given to [`Server::builder`], and headers such as CORS go
//! through [`HubBuilder::stream_header`](crate::HubBuilder::stream_header).
//!
//! ```no_run
//! use ssehub_hub::{Hub, server::Server};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::new();
//! let server = Server::builder(hub.clone(), |parts| {
//!     // A real application checks a token or a session cookie here.
//!     match parts.headers.get("x-user") {
//!         Some(uid) => uid.to_str().map(str::to_owned).map_err(|_| http::StatusCode::BAD_REQUEST),
//!         None => Err(http::StatusCode::UNAUTHORIZED),
//!     }
//! })
//! .fallback(axum::Router::new().route("/push", ssehub_hub::axum::push(hub.clone())))
//! .build()?;
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server
//!     .serve(listener)
//!     .with_graceful_shutdown(async move {
//!         tokio::signal::ctrl_c().await.ok();
//!         hub.close().await; // ends every stream with the `close` event
//!     })
//!     .await;
//! # Ok(()) }
//! ```
//!
//! [`Subscription`]: crate::Subscription

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;
mod connection;
mod fallback;
mod head;
mod prefixed;
mod response;
mod stream;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::StatusCode;
use http::request::Parts;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Hub;

/// The default event-stream path.
pub const DEFAULT_EVENTS_PATH: &str = "/events";
/// The default write timeout: a stream whose client has taken nothing for this long is dropped.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default time a new connection has to send its first request head (hyper's default for
/// the same).
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Finds the uid of an event-stream request, or the status that refuses it.
type Authenticate = dyn Fn(&Parts) -> Result<String, StatusCode> + Send + Sync;

/// Serves a [`Hub`]'s event streams on a lean path and everything else with an axum
/// [`Router`]. Cheap to clone. See the [module](self) for what it does and why.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = ssehub_hub::Hub::new();
/// let server = ssehub_hub::server::Server::builder(hub, |_| Ok("u001".to_owned())).build()?;
/// server.serve(tokio::net::TcpListener::bind("127.0.0.1:8080").await?).await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    events_path: String,
    authenticate: Arc<Authenticate>,
    fallback: Router,
    write_timeout: Duration,
    head_timeout: Duration,
    http1: hyper::server::conn::http1::Builder,
}

impl Server {
    /// Starts a server for `hub`. `authenticate` gets the head of each event-stream request
    /// (with the peer's `axum::extract::ConnectInfo<SocketAddr>` in its extensions) and returns
    /// the uid to subscribe, or the status to answer instead (`401`, `403`, ...; the connection
    /// then closes). It runs on the connection's task: keep it quick and non-blocking.
    ///
    /// ```
    /// use http::StatusCode;
    ///
    /// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |parts| {
    ///     parts
    ///         .uri
    ///         .query()
    ///         .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("uid=")))
    ///         .map(str::to_owned)
    ///         .ok_or(StatusCode::UNAUTHORIZED)
    /// });
    /// ```
    pub fn builder<F>(hub: Hub, authenticate: F) -> ServerBuilder
    where
        F: Fn(&Parts) -> Result<String, StatusCode> + Send + Sync + 'static,
    {
        ServerBuilder {
            hub,
            events_path: DEFAULT_EVENTS_PATH.to_owned(),
            authenticate: Arc::new(authenticate),
            fallback: Router::new(),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
        }
    }

    /// Accepts connections from `listener` until the returned future is dropped or, with
    /// [`Serve::with_graceful_shutdown`], until a signal. Await it (it never fails: accept errors
    /// are logged and retried, as `axum::serve` does).
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_| Ok("u".into())).build()?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// server.serve(listener).await;
    /// # Ok(()) }
    /// ```
    pub fn serve(&self, listener: TcpListener) -> Serve {
        Serve {
            inner: Arc::clone(&self.inner),
            listener,
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("events_path", &self.inner.events_path)
            .field("write_timeout", &self.inner.write_timeout)
            .field("head_timeout", &self.inner.head_timeout)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Server`]; made by [`Server::builder`].
///
/// ```
/// use std::time::Duration;
///
/// let hub = ssehub_hub::Hub::new();
/// let server = ssehub_hub::server::Server::builder(hub.clone(), |_| Ok("u001".to_owned()))
///     .events_path("/sse")
///     .fallback(axum::Router::new().route("/push", ssehub_hub::axum::push(hub)))
///     .write_timeout(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// ```
#[must_use]
pub struct ServerBuilder {
    hub: Hub,
    events_path: String,
    authenticate: Arc<Authenticate>,
    fallback: Router,
    write_timeout: Duration,
    head_timeout: Duration,
}

impl ServerBuilder {
    /// The path of the event stream (any query is allowed after it). Default
    /// [`DEFAULT_EVENTS_PATH`]. `GET` of exactly this path is served by the lean path; every
    /// other request goes to the fallback router.
    ///
    /// ```
    /// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_| Ok("u".into()))
    ///     .events_path("/api/stream");
    /// ```
    pub fn events_path(mut self, path: impl Into<String>) -> Self {
        self.events_path = path.into();
        self
    }

    /// The router for every request that is not an event stream (the push API, health checks,
    /// your pages), with its middleware. Default: an empty router (`404` for everything).
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::new();
    /// let builder = ssehub_hub::server::Server::builder(hub.clone(), |_| Ok("u".into()))
    ///     .fallback(axum::Router::new().route("/push", ssehub_hub::axum::push(hub)));
    /// ```
    pub fn fallback(mut self, router: Router) -> Self {
        self.fallback = router;
        self
    }

    /// How long writing one chunk of an event stream (everything the hub had queued for it when
    /// the socket last had room) may take once the socket is full; past it the connection is
    /// dropped. Default [`DEFAULT_WRITE_TIMEOUT`]. A client that stops reading would otherwise
    /// keep its socket (and the kernel's buffers for it) forever; its events in the hub are
    /// bounded either way, by the slow-client policy. The response heads written before closing
    /// a refused connection use the same limit.
    ///
    /// ```
    /// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_| Ok("u".into()))
    ///     .write_timeout(std::time::Duration::from_secs(10));
    /// ```
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long a new connection may take to send its first request head before it is closed
    /// without an answer; the same limit applies to later heads on fallback connections.
    /// Default [`DEFAULT_HEAD_TIMEOUT`].
    ///
    /// ```
    /// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_| Ok("u".into()))
    ///     .head_timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = timeout;
        self
    }

    /// Checks the configuration and makes the server.
    ///
    /// # Errors
    ///
    /// [`ServerError`] names the option that is wrong.
    ///
    /// ```
    /// use ssehub_hub::server::{Server, ServerError};
    ///
    /// let err = Server::builder(ssehub_hub::Hub::new(), |_| Ok("u".into()))
    ///     .events_path("events")
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, ServerError::EventsPath { .. }));
    /// ```
    pub fn build(self) -> Result<Server, ServerError> {
        check_events_path(&self.events_path)?;
        for (option, value) in [
            ("write_timeout", self.write_timeout),
            ("head_timeout", self.head_timeout),
        ] {
            if value.is_zero() {
                return Err(ServerError::ZeroTimeout { option });
            }
        }
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(self.head_timeout);
        Ok(Server {
            inner: Arc::new(Inner {
                hub: self.hub,
                events_path: self.events_path,
                authenticate: self.authenticate,
                fallback: self.fallback,
                write_timeout: self.write_timeout,
                head_timeout: self.head_timeout,
                http1,
            }),
        })
    }
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("events_path", &self.events_path)
            .field("write_timeout", &self.write_timeout)
            .field("head_timeout", &self.head_timeout)
            .finish_non_exhaustive()
    }
}

/// A path that requests can match byte for byte: absolute, no query or fragment, valid in a URI.
fn check_events_path(path: &str) -> Result<(), ServerError> {
    let reason = if !path.starts_with('/') {
        "it must start with '/'"
    } else if path.contains(['?', '#']) {
        "it must not contain '?' or '#' (any query is accepted after the path)"
    } else if http::uri::PathAndQuery::try_from(path).is_err() {
        "it is not a valid URI path (percent-encode spaces and other special characters)"
    } else {
        return Ok(());
    };
    Err(ServerError::EventsPath {
        path: path.to_owned(),
        reason,
    })
}

/// Why [`ServerBuilder::build`] refused the configuration.
///
/// ```
/// use ssehub_hub::server::{Server, ServerError};
///
/// let err = Server::builder(ssehub_hub::Hub::new(), |_| Ok("u".into()))
///     .write_timeout(std::time::Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!(err, ServerError::ZeroTimeout { option: "write_timeout" });
/// assert_eq!(err.to_string(), "write_timeout must be longer than zero");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerError {
    /// The event-stream path cannot match a request.
    EventsPath {
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A timeout was zero, which would drop every connection at once.
    ZeroTimeout {
        /// The builder method.
        option: &'static str,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EventsPath { path, reason } => {
                write!(f, "events_path {path:?} cannot be used: {reason}")
            }
            Self::ZeroTimeout { option } => write!(f, "{option} must be longer than zero"),
        }
    }
}

impl std::error::Error for ServerError {}

/// The future of [`Server::serve`]: await it to serve until it is dropped, or add a shutdown
/// signal with [`with_graceful_shutdown`](Serve::with_graceful_shutdown).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_| Ok("u".into())).build()?;
/// let serve = server.serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
/// tokio::spawn(serve.into_future());
/// # Ok(()) }
/// # use std::future::IntoFuture;
/// ```
#[must_use = "a server does nothing until awaited"]
pub struct Serve {
    inner: Arc<Inner>,
    listener: TcpListener,
}

impl Serve {
    /// Serves until `signal` completes, then stops accepting, lets fallback connections finish
    /// the request in progress, and waits for every connection to end. Event streams end when
    /// the hub closes: call [`Hub::close`] or [`Hub::close_for_restart`] in `signal`, else the
    /// wait lasts as long as the streams do (the same as with `axum::serve`).
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = ssehub_hub::Hub::new();
    /// let server = ssehub_hub::server::Server::builder(hub.clone(), |_| Ok("u".into())).build()?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// server
    ///     .serve(listener)
    ///     .with_graceful_shutdown(async move {
    ///         tokio::signal::ctrl_c().await.ok();
    ///         hub.close().await;
    ///     })
    ///     .await;
    /// # Ok(()) }
    /// ```
    pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown<F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        WithGracefulShutdown {
            serve: self,
            signal,
        }
    }
}

impl IntoFuture for Serve {
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self.inner, self.listener, std::future::pending()))
    }
}

impl fmt::Debug for Serve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// The future of [`Serve::with_graceful_shutdown`]: await it.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_| Ok("u".into())).build()?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let serving = tokio::spawn(
///     server.serve(listener).with_graceful_shutdown(async { stopped.await.ok(); }).into_future(),
/// );
/// stop.send(()).ok();
/// serving.await?;
/// # Ok(()) }
/// # use std::future::IntoFuture;
/// ```
#[must_use = "a server does nothing until awaited"]
pub struct WithGracefulShutdown<F> {
    serve: Serve,
    signal: F,
}

impl<F> IntoFuture for WithGracefulShutdown<F>
where
    F: Future<Output = ()> + Send + 'static,
{
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self.serve.inner, self.serve.listener, self.signal))
    }
}

impl<F> fmt::Debug for WithGracefulShutdown<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithGracefulShutdown")
            .field("serve", &self.serve)
            .finish_non_exhaustive()
    }
}

/// The accept loop: one task per connection, until `signal`; then waits for the connections.
async fn run(inner: Arc<Inner>, listener: TcpListener, signal: impl Future<Output = ()>) {
    let shutdown = CancellationToken::new();
    let connections = TaskTracker::new();
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
                // Out of file descriptors or memory: retrying at once would spin.
                tracing::error!(%error, "accepting a connection failed; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = &mut signal => break,
                }
            }
        };
        // Each event goes out when written: Nagle's algorithm would hold a small event back
        // until the client acknowledged the previous one.
        if let Err(error) = socket.set_nodelay(true) {
            tracing::debug!(%peer, %error, "TCP_NODELAY failed");
        }
        connections.spawn(connection::serve(
            Arc::clone(&inner),
            socket,
            peer,
            shutdown.clone(),
        ));
    }
    drop(listener); // new connections are refused from now on
    shutdown.cancel();
    connections.close();
    connections.wait().await;
}

/// Errors about one connection (which is gone), not about the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::{Server, ServerError};
    use crate::Hub;

    #[test]
    fn events_path_is_checked() {
        for (path, ok) in [
            ("/events", true),
            ("/a/b-c", true),
            ("events", false),
            ("/events?x", false),
            ("/ev ents", false),
            ("", false),
        ] {
            let built = Server::builder(Hub::new(), |_| Ok("u".into()))
                .events_path(path)
                .build();
            assert_eq!(built.is_ok(), ok, "{path:?}");
            if let Err(error) = built {
                assert!(matches!(error, ServerError::EventsPath { .. }));
                assert!(error.to_string().contains(path), "{error}");
            }
        }
    }

    /// The task of an idle event stream is this future: it must stay a few hundred bytes.
    #[tokio::test]
    async fn a_connection_task_is_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let ((socket, peer), _client) =
            tokio::join!(async { listener.accept().await.unwrap() }, async {
                client.await.unwrap()
            });
        let server = Server::builder(Hub::new(), |_| Ok("u".into()))
            .build()
            .unwrap();
        let task = super::connection::serve(
            server.inner,
            socket,
            peer,
            tokio_util::sync::CancellationToken::new(),
        );
        // Measured: 304 bytes for the task, and the stream it runs (boxed) is the socket, the
        // subscription and a few words. A regression here multiplies by every idle connection.
        let size = std::mem::size_of_val(&task);
        assert!(size <= 384, "a connection task is {size} bytes");
        let stream = std::mem::size_of::<super::stream::EventStream>();
        let parts = std::mem::size_of::<tokio::net::TcpStream>()
            + std::mem::size_of::<crate::Subscription>();
        assert!(stream <= parts + 96, "an event stream is {stream} bytes");
    }
}
