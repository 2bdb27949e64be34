//! The authentication hook of the lean event-stream path: [`Authenticate`] and [`Refusal`].

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::Subscriber;

/// Finds who is asking for an event stream (a [`Subscriber`]: its uid and the topics it may
/// subscribe to), or the answer that refuses it.
///
/// [`Server::builder`](super::Server::builder) takes one. Any closure
/// `Fn(&Parts) -> impl Future<Output = Result<T, E>>` with `T: Into<Subscriber>` (a `String`
/// uid is a subscriber with no topic) and `E: Into<Refusal>` is one, so a refusal can be a bare
/// [`StatusCode`] or a whole [`Refusal`]. The server then checks the request's `?topic=` against
/// the subscriber's allowed topics: one outside them is a `403` naming it. The future may await a session
/// store or a key set; it runs under the server's head timeout. The closure gets the head by
/// reference and its future must not borrow it: take what the future needs (a header, the
/// query) before the `async move` block.
///
/// ```
/// use http::StatusCode;
/// use http::request::Parts;
///
/// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |parts: &Parts| {
///     let token = parts.headers.get("x-token").cloned();
///     async move {
///         // A real application awaits its session store here.
///         match token {
///             Some(token) if token == "secret" => Ok("alice".to_owned()),
///             Some(_) => Err(StatusCode::FORBIDDEN),
///             None => Err(StatusCode::UNAUTHORIZED),
///         }
///     }
/// });
/// ```
///
/// Implement it for a type of your own when the future should borrow the head or `self`:
///
/// ```
/// use std::collections::HashMap;
///
/// use http::StatusCode;
/// use http::request::Parts;
/// use ssehub_hub::Subscriber;
/// use ssehub_hub::server::{Authenticate, Refusal};
///
/// struct ApiKeys(HashMap<String, String>);
///
/// impl Authenticate for ApiKeys {
///     async fn authenticate(&self, parts: &Parts) -> Result<Subscriber, Refusal> {
///         let key = parts
///             .headers
///             .get("x-api-key")
///             .and_then(|key| key.to_str().ok())
///             .ok_or(StatusCode::UNAUTHORIZED)?;
///         let uid = self.0.get(key).ok_or(StatusCode::FORBIDDEN)?;
///         Ok(Subscriber::new(uid.as_str()))
///     }
/// }
///
/// let keys = ApiKeys(HashMap::from([("k1".to_owned(), "alice".to_owned())]));
/// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), keys);
/// ```
///
/// With topics: the subscriber may ask for `?topic=orders/...` of its own, and `prices`.
///
/// ```
/// use http::request::Parts;
/// use ssehub_hub::{AllowedTopics, Subscriber};
///
/// let builder = ssehub_hub::server::Server::builder(ssehub_hub::Hub::new(), |_: &Parts| {
///     // A real application reads these from a verified token.
///     let (uid, patterns) = ("alice", ["orders/alice/*", "prices"]);
///     std::future::ready(Ok::<_, http::StatusCode>(
///         Subscriber::new(uid).allow_topics(AllowedTopics::new(patterns)),
///     ))
/// });
/// ```
pub trait Authenticate: Send + Sync + 'static {
    /// The uid to subscribe `parts` to, or the answer that refuses it. `parts` has the peer's
    /// `axum::extract::ConnectInfo<SocketAddr>` in its extensions; its method is `GET` or
    /// `HEAD` (a load balancer's probe, answered as a `GET` would be but without subscribing).
    ///
    /// ```
    /// use ssehub_hub::server::Authenticate;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let authenticate = |_: &http::request::Parts| async { Ok::<_, http::StatusCode>("u".to_owned()) };
    /// let (parts, ()) = http::Request::new(()).into_parts();
    /// assert_eq!(authenticate.authenticate(&parts).await.unwrap().uid, "u");
    /// # }
    /// ```
    fn authenticate(
        &self,
        parts: &Parts,
    ) -> impl Future<Output = Result<Subscriber, Refusal>> + Send;
}

impl<F, Fut, T, E> Authenticate for F
where
    F: Fn(&Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Into<Subscriber> + 'static,
    E: Into<Refusal> + 'static,
{
    fn authenticate(
        &self,
        parts: &Parts,
    ) -> impl Future<Output = Result<Subscriber, Refusal>> + Send {
        let verdict = self(parts);
        async move { verdict.await.map(Into::into).map_err(Into::into) }
    }
}

/// The authentication's future, boxed: the connection's task holds a pointer to it, not the
/// future itself, so an idle stream's task does not grow with the application's hook.
pub(super) type Verdict<'a> =
    Pin<Box<dyn Future<Output = Result<Subscriber, Refusal>> + Send + 'a>>;

/// [`Authenticate`] as a trait object (its method returns an `impl Future`, so it has none).
pub(super) trait DynAuthenticate: Send + Sync + 'static {
    fn authenticate_boxed<'a>(&'a self, parts: &'a Parts) -> Verdict<'a>;
}

impl<A: Authenticate> DynAuthenticate for A {
    fn authenticate_boxed<'a>(&'a self, parts: &'a Parts) -> Verdict<'a> {
        Box::pin(self.authenticate(parts))
    }
}

/// The answer to an event-stream request that [`Authenticate`] refused: a status, headers and a
/// short body, written at once, after which the connection closes.
///
/// Every refusal also carries the hub's stream headers
/// ([`HubBuilder::stream_header`](crate::HubBuilder::stream_header), CORS for example: a browser
/// can then read the refusal), unless it sets the same header itself. A `401` without a
/// `WWW-Authenticate` header gets `WWW-Authenticate: Bearer` (RFC 9110 requires a challenge;
/// `Bearer` makes no browser show a login dialog); set your own to name another scheme or a
/// realm. The server writes the framing headers (`content-length`, `connection`) itself.
///
/// ```
/// use http::{StatusCode, header};
/// use ssehub_hub::server::Refusal;
///
/// let refusal = Refusal::new(StatusCode::TOO_MANY_REQUESTS)
///     .with_header(header::RETRY_AFTER, http::HeaderValue::from_static("10"))
///     .with_body("too many streams for this account");
/// assert_eq!(refusal.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(refusal.headers()[header::RETRY_AFTER], "10");
///
/// // A bare status, or an `http::Response` with a body that converts to `Bytes`, works too.
/// let bare: Refusal = StatusCode::FORBIDDEN.into();
/// assert!(bare.body().is_empty());
/// let whole: Refusal = http::Response::builder()
///     .status(StatusCode::UNAUTHORIZED)
///     .header(header::WWW_AUTHENTICATE, r#"Bearer realm="events""#)
///     .body("log in first")
///     .unwrap()
///     .into();
/// assert_eq!(whole.headers()[header::WWW_AUTHENTICATE], r#"Bearer realm="events""#);
/// ```
#[derive(Debug, Clone)]
pub struct Refusal {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Refusal {
    /// A refusal with `status`, no headers of its own and no body. A `1xx` status is not a final
    /// answer (the client would wait for another one): the server answers `500` instead.
    ///
    /// ```
    /// let refusal = ssehub_hub::server::Refusal::new(http::StatusCode::SERVICE_UNAVAILABLE);
    /// assert_eq!(refusal.status(), 503);
    /// ```
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header (a second value for the same name adds a second line).
    ///
    /// ```
    /// use http::{HeaderValue, StatusCode, header};
    ///
    /// let refusal = ssehub_hub::server::Refusal::new(StatusCode::UNAUTHORIZED)
    ///     .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    /// assert_eq!(refusal.headers().len(), 1);
    /// ```
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sets the body, sent as `text/plain; charset=utf-8` unless a `content-type` header says
    /// otherwise (not sent for `204`, `304` or a `HEAD` request).
    ///
    /// ```
    /// let refusal = ssehub_hub::server::Refusal::new(http::StatusCode::FORBIDDEN).with_body("no");
    /// assert_eq!(&refusal.body()[..], b"no");
    /// ```
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The status.
    ///
    /// ```
    /// let refusal = ssehub_hub::server::Refusal::from(http::StatusCode::FORBIDDEN);
    /// assert_eq!(refusal.status(), http::StatusCode::FORBIDDEN);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers set on the refusal (not the ones the server adds when writing it).
    ///
    /// ```
    /// let refusal = ssehub_hub::server::Refusal::from(http::StatusCode::FORBIDDEN);
    /// assert!(refusal.headers().is_empty());
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    ///
    /// ```
    /// let refusal = ssehub_hub::server::Refusal::from(http::StatusCode::FORBIDDEN);
    /// assert!(refusal.body().is_empty());
    /// ```
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// A boxed refusal: what a hook returns to keep its `Result` small.
impl From<Box<Refusal>> for Refusal {
    /// ```
    /// let boxed = Box::new(ssehub_hub::server::Refusal::new(http::StatusCode::FORBIDDEN));
    /// let refusal: ssehub_hub::server::Refusal = boxed.into();
    /// assert_eq!(refusal.status(), 403);
    /// ```
    fn from(refusal: Box<Refusal>) -> Self {
        *refusal
    }
}

impl From<StatusCode> for Refusal {
    /// ```
    /// let refusal: ssehub_hub::server::Refusal = http::StatusCode::UNAUTHORIZED.into();
    /// assert_eq!(refusal.status(), 401);
    /// ```
    fn from(status: StatusCode) -> Self {
        Self::new(status)
    }
}

impl<B: Into<Bytes>> From<http::Response<B>> for Refusal {
    /// The response's status, headers and body; its version and extensions are not used.
    ///
    /// ```
    /// let response = http::Response::builder().status(403).body("not yours").unwrap();
    /// let refusal = ssehub_hub::server::Refusal::from(response);
    /// assert_eq!(&refusal.body()[..], b"not yours");
    /// ```
    fn from(response: http::Response<B>) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            status: parts.status,
            headers: parts.headers,
            body: body.into(),
        }
    }
}
