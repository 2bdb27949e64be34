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
//! through [`HubBuilder::stream_header`](crate::HubBuilder::stream_header) (refusals carry them
//! too). `HEAD` of the event-stream path is answered as a `GET` would be, without a body and
//! without subscribing.
//!
//! ```no_run
//! use ssehub_hub::{Hub, server::Server};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::new();
//! let server = Server::builder(hub.clone(), |parts: &http::request::Parts| {
//!     let user = parts.headers.get("x-user").cloned();
//!     async move {
//!         // A real application looks a token or a session cookie up here.
//!         match user {
//!             Some(uid) => uid.to_str().map(str::to_owned).map_err(|_| http::StatusCode::BAD_REQUEST),
//!             None => Err(http::StatusCode::UNAUTHORIZED),
//!         }
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
mod accept;
mod authenticate;
mod connection;
mod fallback;
mod head;
mod prefixed;
mod push;
mod response;
mod stream;
mod unsent;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Hub;
use authenticate::DynAuthenticate;
pub use authenticate::{Authenticate, Refusal};
pub use prefixed::Prefixed;
pub use push::{DEFAULT_MAX_PUSH_BODY, MAX_PIPELINED, PushRoute};

/// The default event-stream path.
pub const DEFAULT_EVENTS_PATH: &str = "/events";
/// The default write timeout: a stream whose client has taken nothing for this long is dropped.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default time a new connection has to send its first request head (hyper's default for
/// the same).
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The default time after which a peer that stopped answering (vanished without closing) is
/// dropped: keepalive probes and `TCP_USER_TIMEOUT` on every accepted socket.
pub const DEFAULT_DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(60);
/// The default time a fallback request may take from its head to its response, reading its
/// body included; past it the answer is `408`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The default number of fallback requests handled at once; past it the answer is `503`.
pub const DEFAULT_MAX_FALLBACK_REQUESTS: usize = 1024;

/// Serves a [`Hub`]'s event streams on a lean path and everything else with an axum
/// [`Router`]. Cheap to clone. See the [module](self) for what it does and why.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = ssehub_hub::Hub::new();
/// let server = ssehub_hub::server::Server::builder(hub, |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u001".to_owned()) }).build()?;
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
    authenticate: Arc<dyn DynAuthenticate>,
    fallback: Router,
    /// The lean push path, if any.
    push: Option<PushRoute>,
    /// Fallback requests and lean pushes in progress, over the whole server.
    fallback_requests: Arc<tokio::sync::Semaphore>,
    write_timeout: Duration,
    head_timeout: Duration,
    request_timeout: Duration,
    dead_peer_timeout: Option<Duration>,
    max_connections: usize,
    http1: hyper::server::conn::http1::Builder,
    response_headers: Option<Arc<ResponseHeaders>>,
}

/// A hook that adds headers to the answers of the event-stream path, per request.
type ResponseHeaders = dyn Fn(&http::request::Parts, &mut http::HeaderMap) + Send + Sync;

impl Inner {
    /// The headers for the answers to this event-stream request: the hub's stream headers, and
    /// what the [`ServerBuilder::response_headers`] hook adds for it.
    fn headers_for(&self, parts: &http::request::Parts) -> std::borrow::Cow<'_, http::HeaderMap> {
        let stream_headers = &self.hub.config().stream_headers;
        match &self.response_headers {
            None => std::borrow::Cow::Borrowed(stream_headers),
            Some(hook) => {
                let mut headers = stream_headers.clone();
                hook(parts, &mut headers);
                std::borrow::Cow::Owned(headers)
            }
        }
    }
}

impl Server {
    /// Starts a server for `hub`. `authenticate` gets the head of each event-stream request
    /// (with the peer's `axum::extract::ConnectInfo<SocketAddr>` in its extensions) and its
    /// future answers the uid to subscribe, or the [`Refusal`] to answer instead: a bare status
    /// (`401`, `403`, `429`, ...) or a whole response with headers and a short body, after which
    /// the connection closes. Refusals carry the hub's stream headers (CORS too) and a `401` a
    /// `WWW-Authenticate` challenge. The future may await a session store; reading the head and
    /// authenticating share the [head timeout](ServerBuilder::head_timeout), past which the
    /// connection is closed without an answer (clients retry). See [`Authenticate`].
    ///
    /// ```
    /// use http::StatusCode;
    /// use http::request::Parts;
    ///
    /// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |parts: &Parts| {
    ///     let uid = parts
    ///         .uri
    ///         .query()
    ///         .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("uid=")))
    ///         .map(str::to_owned);
    ///     async move { uid.ok_or(StatusCode::UNAUTHORIZED) }
    /// });
    /// ```
    pub fn builder<A: Authenticate>(hub: Hub, authenticate: A) -> ServerBuilder {
        ServerBuilder {
            hub,
            events_path: DEFAULT_EVENTS_PATH.to_owned(),
            authenticate: Arc::new(authenticate),
            fallback: Router::new(),
            push: None,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            dead_peer_timeout: Some(DEFAULT_DEAD_PEER_TIMEOUT),
            max_connections: crate::admission::default_max_connections(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_fallback_requests: DEFAULT_MAX_FALLBACK_REQUESTS,
            response_headers: None,
        }
    }

    /// Accepts connections from `listener` until the returned future is dropped or, with
    /// [`Serve::with_graceful_shutdown`], until a signal. Await it (it never fails: accept errors
    /// are logged and retried, as `axum::serve` does).
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) }).build()?;
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
            .field("dead_peer_timeout", &self.inner.dead_peer_timeout)
            .field("max_connections", &self.inner.max_connections)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Server`]; made by [`Server::builder`].
///
/// ```
/// use std::time::Duration;
///
/// let hub = ssehub_hub::Hub::new();
/// let server = ssehub_hub::server::Server::builder(hub.clone(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u001".to_owned()) })
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
    authenticate: Arc<dyn DynAuthenticate>,
    fallback: Router,
    push: Option<PushRoute>,
    write_timeout: Duration,
    head_timeout: Duration,
    dead_peer_timeout: Option<Duration>,
    max_connections: usize,
    request_timeout: Duration,
    max_fallback_requests: usize,
    response_headers: Option<Arc<ResponseHeaders>>,
}

impl ServerBuilder {
    /// Adds headers, chosen per request, to every answer of the event-stream path: the
    /// stream's head, `HEAD`, and refusals. `hook` gets the request head and the hub's
    /// [stream headers](crate::HubBuilder::stream_header) to change. For headers that depend
    /// on the request, such as CORS for a list of origins (echo the allowed `Origin`, add
    /// `Vary: Origin`); fixed headers are the hub's stream headers. The fallback router's
    /// answers (a CORS preflight among them) are its middleware's to set.
    ///
    /// ```
    /// use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, ORIGIN, VARY};
    ///
    /// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) })
    ///     .response_headers(|parts, headers| {
    ///         if let Some(origin) = parts.headers.get(ORIGIN).filter(|o| *o == "https://app.example") {
    ///             headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    ///         }
    ///         headers.append(VARY, http::HeaderValue::from_static("origin"));
    ///     });
    /// ```
    pub fn response_headers<F>(mut self, hook: F) -> Self
    where
        F: Fn(&http::request::Parts, &mut http::HeaderMap) + Send + Sync + 'static,
    {
        self.response_headers = Some(Arc::new(hook));
        self
    }

    /// The path of the event stream (any query is allowed after it). Default
    /// [`DEFAULT_EVENTS_PATH`]. `GET` of exactly this path is served by the lean path; every
    /// other request goes to the fallback router.
    ///
    /// ```
    /// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) })
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
    /// let builder = ssehub_hub::server::Server::builder(hub.clone(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) })
    ///     .fallback(axum::Router::new().route("/push", ssehub_hub::axum::push(hub)));
    /// ```
    pub fn fallback(mut self, router: Router) -> Self {
        self.fallback = router;
        self
    }

    /// Serves `POST` of the route's path on a lean path of its own, without hyper: the
    /// pushes a connection pipelines go into the hub together (one save of the store can take
    /// them all) and their answers out in one write. The plain requests only; any other goes
    /// to the [fallback](Self::fallback) router, which should keep the same route (see
    /// [`PushRoute`]). The fallback's [request timeout](Self::request_timeout) bounds reading
    /// each push (the hub's store timeout bounds its answer), and its
    /// [limit on requests at once](Self::max_fallback_requests) counts these pushes too.
    ///
    /// ```
    /// use ssehub_hub::server::{PushRoute, Server};
    ///
    /// let hub = ssehub_hub::Hub::new();
    /// let builder = Server::builder(hub.clone(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) })
    ///     .push_route(PushRoute::new("/push"))
    ///     .fallback(axum::Router::new().route("/push", ssehub_hub::axum::push(hub)));
    /// ```
    pub fn push_route(mut self, route: PushRoute) -> Self {
        self.push = Some(route);
        self
    }

    /// How long an event stream's socket may stay full without the client taking a single
    /// byte; past it the connection is dropped. Default [`DEFAULT_WRITE_TIMEOUT`]. The clock
    /// restarts with every byte the socket accepts, so it measures progress: a slow but steady
    /// reader working through a large backlog keeps its stream, one that stopped reading loses
    /// it. A client that stops reading would otherwise keep its socket (and the kernel's
    /// buffers for it) forever; its events in the hub are bounded either way, by the
    /// slow-client policy. The response heads written before closing a refused connection use
    /// the same limit.
    ///
    /// ```
    /// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) })
    ///     .write_timeout(std::time::Duration::from_secs(10));
    /// ```
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long a new connection may take to send its first request head before it is closed
    /// without an answer; the same limit applies to later heads on fallback connections. For an
    /// event-stream request it also bounds the authentication: the head and the
    /// [`Authenticate`] future together, from the moment the connection is accepted.
    /// Default [`DEFAULT_HEAD_TIMEOUT`].
    ///
    /// ```
    /// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) })
    ///     .head_timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = timeout;
        self
    }

    /// How many connections of every kind (event streams, publishers, anything the fallback
    /// serves) the server keeps open at once. A connection past it is answered `503 Service
    /// Unavailable` with `Retry-After` (the hub's
    /// [`over_capacity_retry`](crate::HubBuilder::over_capacity_retry)) before its request is
    /// read, and closed. Default
    /// [`admission::default_max_connections`](crate::admission::default_max_connections): the
    /// process's open-file limit less a reserve, above the hub's default
    /// [stream cap](crate::HubBuilder::max_streams) so that a `POST /push` still gets in when
    /// streams hold every slot. Without a cap the process would reach its open-file limit, and
    /// from there answer nobody.
    ///
    /// ```
    /// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) })
    ///     .max_connections(10_000);
    /// ```
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// How long a peer may go without answering at the TCP level (no acknowledgement of sent
    /// data, no answer to keepalive probes) before its connection is dropped; `None` leaves the
    /// kernel's defaults (keepalive off: a vanished peer without pending data holds its socket
    /// for ever, with pending data for about 15 minutes of retransmissions). Default
    /// [`DEFAULT_DEAD_PEER_TIMEOUT`]. Applies to every accepted socket, from keepalive probes
    /// after half the time of silence and, on Linux, `TCP_USER_TIMEOUT`.
    ///
    /// ```
    /// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) })
    ///     .dead_peer_timeout(Some(std::time::Duration::from_secs(30)));
    /// ```
    pub fn dead_peer_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.dead_peer_timeout = timeout;
        self
    }

    /// How long a fallback request may take, from its head to its response (reading its body
    /// included); past it the answer is `408 Request Timeout` and the connection closes.
    /// Default [`DEFAULT_REQUEST_TIMEOUT`]. A client trickling a `POST /push` body a byte at a
    /// time would otherwise hold its connection (and graceful shutdown) for as long as it
    /// likes. A response's body, once started, is not timed.
    ///
    /// ```
    /// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) })
    ///     .request_timeout(std::time::Duration::from_secs(10));
    /// ```
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How many fallback requests are handled at once, over every connection; a request past it
    /// is answered `503` with `Retry-After` at once, rather than waiting in memory. Default
    /// [`DEFAULT_MAX_FALLBACK_REQUESTS`]; at least 1.
    ///
    /// ```
    /// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) })
    ///     .max_fallback_requests(256);
    /// ```
    pub fn max_fallback_requests(mut self, requests: usize) -> Self {
        self.max_fallback_requests = requests.max(1);
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
    /// let err = Server::builder(ssehub_hub::Hub::new(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) })
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
            ("request_timeout", self.request_timeout),
            (
                "dead_peer_timeout",
                self.dead_peer_timeout.unwrap_or(Duration::MAX),
            ),
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
        let fallback_requests = Arc::new(tokio::sync::Semaphore::new(self.max_fallback_requests));
        let fallback = fallback::guard(
            self.fallback,
            self.request_timeout,
            Arc::clone(&fallback_requests),
            self.hub.config().over_capacity_retry,
        );
        Ok(Server {
            inner: Arc::new(Inner {
                hub: self.hub,
                events_path: self.events_path,
                authenticate: self.authenticate,
                fallback,
                push: self.push,
                fallback_requests,
                write_timeout: self.write_timeout,
                head_timeout: self.head_timeout,
                request_timeout: self.request_timeout,
                dead_peer_timeout: self.dead_peer_timeout,
                max_connections: self.max_connections,
                http1,
                response_headers: self.response_headers,
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
            .field("dead_peer_timeout", &self.dead_peer_timeout)
            .field("max_connections", &self.max_connections)
            .field("request_timeout", &self.request_timeout)
            .field("max_fallback_requests", &self.max_fallback_requests)
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
/// let err = Server::builder(ssehub_hub::Hub::new(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) })
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
/// # let server = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) }).build()?;
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
    /// let server = ssehub_hub::server::Server::builder(hub.clone(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) }).build()?;
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
/// # let server = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) }).build()?;
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
    let slots = accept::Slots::new(inner.max_connections);
    let mut backoff = accept::Backoff::default();
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
                // Out of file descriptors or memory: retrying at once would spin. Wait, longer
                // each time, or until one of our connections ends and frees a descriptor.
                // One error line per streak of failures, not one per attempt.
                if backoff.failing() {
                    tracing::debug!(%error, "accepting a connection still fails");
                } else {
                    tracing::error!(%error, "accepting a connection failed; backing off");
                }
                let wait = backoff.next();
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    () = slots.freed() => continue,
                    () = &mut signal => break,
                }
            }
        };
        backoff.reset();
        // Each event goes out when written: Nagle's algorithm would hold a small event back
        // until the client acknowledged the previous one.
        if let Err(error) = socket.set_nodelay(true) {
            tracing::debug!(%peer, %error, "TCP_NODELAY failed");
        }
        if let Some(timeout) = inner.dead_peer_timeout
            && let Err(error) = accept::set_liveness(&socket, timeout)
        {
            tracing::debug!(%peer, %error, "setting keepalive / TCP_USER_TIMEOUT failed");
        }
        let Some(slot) = slots.take() else {
            tracing::debug!(%peer, "connection cap reached; answering 503");
            let wait = crate::admission::jittered(inner.hub.config().over_capacity_retry);
            connections.spawn(accept::refuse(
                socket,
                crate::admission::retry_after_secs(wait),
                inner.write_timeout,
            ));
            continue;
        };
        let serving = connection::serve(Arc::clone(&inner), socket, peer, shutdown.clone());
        connections.spawn(async move {
            serving.await;
            drop(slot);
        });
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
            let built = Server::builder(Hub::new(), |_: &http::request::Parts| async {
                Ok::<_, http::StatusCode>("u".to_owned())
            })
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
        let server = Server::builder(Hub::new(), |_: &http::request::Parts| async {
            Ok::<_, http::StatusCode>("u".to_owned())
        })
        .build()
        .unwrap();
        let task = super::connection::serve(
            server.inner,
            socket,
            peer,
            tokio_util::sync::CancellationToken::new(),
        );
        // Measured: 264 bytes for the task, and the stream it runs (boxed) is the socket, the
        // subscription and a few words. A regression here multiplies by every idle connection.
        let size = std::mem::size_of_val(&task);
        assert!(size <= 384, "a connection task is {size} bytes");
        let stream = std::mem::size_of::<super::stream::EventStream>();
        let parts = std::mem::size_of::<tokio::net::TcpStream>()
            + std::mem::size_of::<crate::Subscription>();
        assert!(stream <= parts + 96, "an event stream is {stream} bytes");
    }
}
