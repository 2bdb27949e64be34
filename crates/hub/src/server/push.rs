//! `POST` of the push path, served without hyper: [`PushRoute`].
//!
//! A publisher's connection carries many small requests, one per push. Through hyper and the
//! router, each costs a trip through the dispatcher, the tower layers (two timers among them)
//! and axum's routing, and hyper answers the requests of a connection one at a time: a
//! publisher that pipelines its pushes gets no more than one of them into the hub at once, and
//! with a store each waits for the save of the one before it. Here the requests of a
//! connection are parsed straight from its read buffer, up to [`MAX_PIPELINED`] of them go into
//! the hub at once (one save can take them all), and their answers go out in order, as many as
//! are ready in one write.
//!
//! Only the plain case is taken: `POST <path> HTTP/1.1` with a `Content-Length`, one `Host`, and
//! no `Transfer-Encoding`, `Expect`, `Upgrade`, `Connection` or `Origin` header. At the first
//! request that is anything else, the connection (that request on) goes to hyper and the
//! fallback router, as if it had come there first: the router's own push route answers it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::stream::{FuturesOrdered, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::head::MAX_HEAD;
use super::prefixed::Prefixed;
use super::response::{header, linger, status_line};
use super::{Inner, Refusal, fallback};

/// The default largest push body the lean push path reads (axum's default body limit, so that
/// a request gets the same answer on either path).
pub const DEFAULT_MAX_PUSH_BODY: usize = 2 * 1024 * 1024;

/// Requests of one connection in the hub at once, at most. Past it the connection is not read
/// until one is answered: a publisher that pipelines more waits in its own socket buffer.
pub const MAX_PIPELINED: usize = 32;

/// How many headers a push head may have (hyper's default too).
const MAX_HEADERS: usize = 100;

/// Reads go into at least this much room.
const READ_ROOM: usize = 4096;

/// A check of a push request's headers before its body is read: `Ok` lets it through, a
/// [`Refusal`] is the answer (the connection then closes, the body unread).
type Authorize = dyn Fn(&HeaderMap) -> Result<(), Box<Refusal>> + Send + Sync;

/// Told the status of every push answered on the lean path (`200` for a push the hub took).
type OnAnswer = dyn Fn(StatusCode) + Send + Sync;

/// The lean push path: `POST` of `path` with the seed's push API body (see
/// [`push_response`](crate::axum::push_response)), answered as `push_response` answers it, for
/// [`ServerBuilder::push_route`](super::ServerBuilder::push_route).
///
/// It takes the plain requests: `POST <path>` (any query) over HTTP/1.1 with a
/// `Content-Length`, one `Host`, and no `Transfer-Encoding`, `Expect`, `Upgrade`, `Connection`
/// or `Origin` header. The pushes a connection pipelines go into the hub together (up to
/// [`MAX_PIPELINED`]; with a store, one save can take them all), and their answers go out in
/// order. Keep the same route in the fallback router: at the first request the lean path does
/// not take (a chunked body, `Expect: 100-continue`, a browser's CORS request), the connection
/// goes there.
///
/// ```
/// use http::StatusCode;
/// use ssehub_hub::server::{PushRoute, Refusal};
///
/// let route = PushRoute::new("/push")
///     .max_body_bytes(64 * 1024)
///     .authorize(|headers| match headers.get(http::header::AUTHORIZATION) {
///         Some(value) if value == "Bearer secret" => Ok(()),
///         Some(_) => Err(Box::new(Refusal::new(StatusCode::FORBIDDEN).with_body("wrong key"))),
///         None => Err(Box::new(Refusal::new(StatusCode::UNAUTHORIZED))),
///     });
/// ```
#[derive(Clone)]
pub struct PushRoute {
    pub(super) path: String,
    max_body: usize,
    authorize: Option<Arc<Authorize>>,
    on_answer: Option<Arc<OnAnswer>>,
}

impl PushRoute {
    /// The lean push path at `path`, open to anyone who reaches it (see [`authorize`](Self::authorize)),
    /// bodies up to [`DEFAULT_MAX_PUSH_BODY`].
    ///
    /// ```
    /// let route = ssehub_hub::server::PushRoute::new("/push");
    /// ```
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            max_body: DEFAULT_MAX_PUSH_BODY,
            authorize: None,
            on_answer: None,
        }
    }

    /// The largest body read; a larger `Content-Length` is answered `413` before any of it is
    /// read, and the connection closes.
    ///
    /// ```
    /// let route = ssehub_hub::server::PushRoute::new("/push").max_body_bytes(1024 * 1024);
    /// ```
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Checks each push's headers before its body is read: `Err` is the answer, anything that
    /// converts into a [`Refusal`] (a bare [`StatusCode`], a whole `Refusal`, boxed or not);
    /// a `401` gets a `WWW-Authenticate: Bearer` challenge unless it has one. The connection
    /// closes after a refusal.
    ///
    /// ```
    /// let route = ssehub_hub::server::PushRoute::new("/push").authorize(|headers| {
    ///     if headers.contains_key("x-publisher") {
    ///         Ok(())
    ///     } else {
    ///         Err(http::StatusCode::FORBIDDEN)
    ///     }
    /// });
    /// ```
    pub fn authorize<F, E>(mut self, check: F) -> Self
    where
        F: Fn(&HeaderMap) -> Result<(), E> + Send + Sync + 'static,
        E: Into<Refusal>,
    {
        self.authorize = Some(Arc::new(move |headers: &HeaderMap| {
            check(headers).map_err(|refusal| Box::new(refusal.into()))
        }));
        self
    }

    /// Calls `hook` with the status of every push the lean path answers (refusals included),
    /// for counters.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let accepted = Arc::new(AtomicU64::new(0));
    /// let counter = Arc::clone(&accepted);
    /// let route = ssehub_hub::server::PushRoute::new("/push").on_answer(move |status| {
    ///     if status.is_success() {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// ```
    pub fn on_answer<F>(mut self, hook: F) -> Self
    where
        F: Fn(StatusCode) + Send + Sync + 'static,
    {
        self.on_answer = Some(Arc::new(hook));
        self
    }
}

impl std::fmt::Debug for PushRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushRoute")
            .field("path", &self.path)
            .field("max_body", &self.max_body)
            .field("authorize", &self.authorize.is_some())
            .field("on_answer", &self.on_answer.is_some())
            .finish()
    }
}

/// What the start of the read buffer holds.
#[derive(Debug)]
pub(super) enum Next {
    /// Nothing but (perhaps) the empty lines allowed before a request.
    Nothing,
    /// The start of a head.
    Head,
    /// A head, checked and authorized, whose body is not all in yet.
    Body { head: usize, body: usize },
    /// A whole push: the head's length (empty lines before it included), then the body's.
    Push { head: usize, body: usize },
    /// A request the lean path does not take: hyper gets the connection from here.
    Other,
    /// A `Content-Length` over the limit: `413`, and the connection closes.
    TooLarge,
    /// The authorization hook's answer, after which the connection closes.
    Refused(Box<Refusal>),
}

fn is_blank(buf: &[u8]) -> bool {
    buf.iter().all(|&byte| byte == b'\r' || byte == b'\n')
}

/// What the start of `buf` holds, for `route`. `authorize` is asked here, once the head is in.
pub(super) fn next(buf: &[u8], route: &PushRoute) -> Next {
    if is_blank(buf) {
        return Next::Nothing;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(buf) {
        // A head past the limit goes to hyper however it arrived: whole or in pieces, one answer.
        Ok(httparse::Status::Complete(head)) if head <= MAX_HEAD => head,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Next::Head,
        // Too large, too many headers, malformed: hyper answers those as it answers any request.
        Ok(httparse::Status::Complete(_) | httparse::Status::Partial) | Err(_) => {
            return Next::Other;
        }
    };
    let path_matches = request.path.is_some_and(|target| {
        target
            .strip_prefix(route.path.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('?'))
    });
    if request.method != Some("POST") || request.version != Some(1) || !path_matches {
        return Next::Other;
    }
    let mut length = None;
    let mut hosts = 0;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let parsed = Some(header.value)
                .filter(|digits| !digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .and_then(|digits| digits.parse::<u64>().ok());
            match (parsed, length) {
                (Some(value), None) => length = Some(value),
                // Repeated or unreadable: hyper's rules decide.
                _ => return Next::Other,
            }
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if HANDED_OVER
            .iter()
            .any(|other| name.eq_ignore_ascii_case(other))
        {
            return Next::Other;
        }
    }
    let Some(length) = length.filter(|_| hosts == 1) else {
        return Next::Other;
    };
    let body = match usize::try_from(length) {
        Ok(body) if body <= route.max_body => body,
        _ => return Next::TooLarge,
    };
    if let Some(authorize) = &route.authorize
        && let Err(refusal) = authorize(&header_map(request.headers))
    {
        return Next::Refused(refusal);
    }
    if buf.len() < head + body {
        return Next::Body { head, body };
    }
    Next::Push { head, body }
}

/// Headers whose requests go to hyper: framing and semantics the lean path does not handle
/// (chunked bodies, `100 Continue`, upgrades, closing after the answer), and CORS, which is the
/// fallback router's middleware's.
const HANDED_OVER: [&str; 5] = [
    "transfer-encoding",
    "expect",
    "upgrade",
    "connection",
    "origin",
];

/// The headers as a map, for the authorization hook; a header `http` refuses is left out.
fn header_map(headers: &[httparse::Header<'_>]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for header in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// A push's answer as it goes on the wire, with the status for the hook.
struct Answer {
    status: StatusCode,
    bytes: Bytes,
}

type Pending = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// Serves a connection whose next request (at the start of `buf`) is a push, until it ends, is
/// handed to hyper, or the server shuts down (the pushes read by then are answered first).
pub(super) async fn serve(
    inner: Arc<Inner>,
    mut socket: TcpStream,
    buf: Vec<u8>,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let Some(route) = inner.push.clone() else {
        return;
    };
    let mut buf = BytesMut::from(&buf[..]);
    let mut in_flight: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut out = BytesMut::new();
    // Set once no more requests are taken: why, and what then.
    let mut done: Option<End> = None;
    // A head already checked whose body is still coming: not parsed (nor authorized) again.
    let mut pending: Option<(usize, usize)> = None;
    // One timer for the connection, moved as it goes from waiting for a request (the head
    // timeout) to waiting for the rest of one (the request timeout) and back.
    let mut waiting = Waiting::Request;
    let mut deadline = Box::pin(tokio::time::sleep_until(
        Instant::now() + inner.request_timeout,
    ));
    loop {
        // Start every whole push in the buffer, as many as may be in the hub at once.
        while done.is_none() && in_flight.len() < MAX_PIPELINED {
            let found = match pending {
                Some((head, body)) if buf.len() >= head + body => Next::Push { head, body },
                Some(_) => break,
                None => next(&buf, &route),
            };
            pending = None;
            match found {
                Next::Push { head, body } => {
                    let mut request = buf.split_to(head + body);
                    let body = request.split_off(head).freeze();
                    in_flight.push_back(Box::pin(push(Arc::clone(&inner), body)));
                    // The next request's time starts now.
                    waiting = Waiting::Answers;
                }
                Next::Body { head, body } => {
                    pending = Some((head, body));
                    break;
                }
                Next::Nothing => {
                    // Empty lines before a request are skipped, not kept: a client sending
                    // nothing else would otherwise grow the buffer until the head timeout.
                    buf.clear();
                    break;
                }
                Next::Head => break,
                Next::Other => done = Some(End::HandOver),
                Next::TooLarge => {
                    in_flight.push_back(Box::pin(std::future::ready(too_large(route.max_body))));
                    done = Some(End::Close);
                }
                Next::Refused(refusal) => {
                    in_flight.push_back(Box::pin(std::future::ready(refused(&refusal))));
                    done = Some(End::Close);
                }
            }
        }
        // Every answer that is ready goes out in one write.
        while let Some(Some(answer)) = in_flight.next().now_or_never() {
            answered(&route, &answer, &mut out);
        }
        if !out.is_empty() {
            let written = tokio::time::timeout(inner.write_timeout, socket.write_all(&out)).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::debug!(%peer, "a publisher stopped taking its answers");
                return;
            }
            out.clear();
        }
        if let Some(end) = &done
            && in_flight.is_empty()
        {
            match end {
                End::HandOver => {
                    let io = Prefixed::new(buf.to_vec(), socket);
                    drop(buf);
                    Box::pin(fallback::serve(inner, io, peer, shutdown)).await;
                }
                End::Close => {
                    // Unread input at the close would make the kernel reset the connection,
                    // which can destroy the answer before the client reads it (a refused
                    // push's body is usually on its way).
                    if socket.shutdown().await.is_ok() {
                        linger(socket).await;
                    }
                }
            }
            return;
        }
        // Wait for an answer, more bytes, the deadline or shutdown.
        let reading = done.is_none() && in_flight.len() < MAX_PIPELINED;
        let now_waiting = if !reading {
            Waiting::Answers
        } else if !is_blank(&buf) {
            Waiting::Request
        } else if in_flight.is_empty() {
            Waiting::Idle
        } else {
            Waiting::Answers
        };
        if now_waiting != waiting {
            waiting = now_waiting;
            let limit = match waiting {
                Waiting::Idle => Some(inner.head_timeout),
                Waiting::Request => Some(inner.request_timeout),
                Waiting::Answers => None,
            };
            if let Some(limit) = limit {
                deadline.as_mut().reset(Instant::now() + limit);
            }
        }
        if reading {
            let wanted = pending.map_or(0, |(head, body)| head + body);
            buf.reserve(wanted.saturating_sub(buf.len()).max(READ_ROOM));
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled(), if done.is_none() => done = Some(End::Close),
            Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                answered(&route, &answer, &mut out);
            }
            read = socket.read_buf(&mut buf), if reading => match read {
                Ok(0) if in_flight.is_empty() => return,
                // Half-closed: what was asked is still answered.
                Ok(0) => done = Some(End::Close),
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%peer, %error, "reading a publisher's connection failed");
                    return;
                }
            },
            () = &mut deadline, if waiting != Waiting::Answers => {
                if waiting == Waiting::Idle {
                    return; // an idle keep-alive connection: closed without an answer
                }
                in_flight.push_back(Box::pin(std::future::ready(timed_out())));
                done = Some(End::Close);
            }
        }
    }
}

/// What a connection of the lean push path is waiting for, and under which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// A next request: the head timeout.
    Idle,
    /// The rest of a request: the request timeout.
    Request,
    /// Answers from the hub only (no limit here: the hub's store timeout bounds a push).
    Answers,
}

/// What ends a connection of the lean push path.
enum End {
    /// A request it does not take: hyper serves the rest.
    HandOver,
    /// An answer after which the connection closes, the client left, or shutdown.
    Close,
}

/// One push into the hub, answered as the fallback's push route answers it. The fallback's
/// limit on requests at once covers these too, with the same answer past it.
async fn push(inner: Arc<Inner>, body: Bytes) -> Answer {
    let Ok(_permit) = inner.fallback_requests.clone().try_acquire_owned() else {
        let retry_after = fallback::retry_after(inner.hub.config().over_capacity_retry);
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            fallback::AT_CAPACITY.as_bytes(),
            &[("retry-after", retry_after.to_string().as_bytes())],
        );
    };
    let (status, envelope) = crate::axum::push_answer(&inner.hub, &body).await;
    answer(status, JSON, envelope.as_bytes(), &[])
}

fn answered(route: &PushRoute, answer: &Answer, out: &mut BytesMut) {
    if let Some(hook) = &route.on_answer {
        hook(answer.status);
    }
    out.extend_from_slice(&answer.bytes);
}

const JSON: &[u8] = b"application/json";
const TEXT: &[u8] = b"text/plain; charset=utf-8";

/// An answer with a body and `headers` (`connection: close` among them for the last one).
fn answer(
    status: StatusCode,
    content_type: &[u8],
    body: &[u8],
    headers: &[(&str, &[u8])],
) -> Answer {
    let mut out = BytesMut::with_capacity(160 + body.len());
    status_line(&mut out, status);
    header(&mut out, b"content-type", content_type);
    header(
        &mut out,
        b"content-length",
        body.len().to_string().as_bytes(),
    );
    for (name, value) in headers {
        header(&mut out, name.as_bytes(), value);
    }
    date(&mut out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Answer {
        status,
        bytes: out.freeze(),
    }
}

/// The answer to a request cut off at the request timeout, as the fallback answers it.
fn timed_out() -> Answer {
    answer(
        StatusCode::REQUEST_TIMEOUT,
        TEXT,
        fallback::TIMED_OUT.as_bytes(),
        &[("connection", b"close")],
    )
}

/// The answer to a `Content-Length` over the route's limit, in the push API's envelope.
fn too_large(limit: usize) -> Answer {
    let message = format!("the push body is larger than the server's limit of {limit} bytes");
    let body = crate::push_api::error_envelope(413, &message);
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        JSON,
        body.as_bytes(),
        &[("connection", b"close")],
    )
}

/// The authorization hook's refusal, after which the connection closes: written as the stream
/// path writes its refusals.
fn refused(refusal: &Refusal) -> Answer {
    Answer {
        status: refusal.status(),
        bytes: super::response::closing_response(refusal, &HeaderMap::new(), false).freeze(),
    }
}

/// `date: <IMF-fixdate>\r\n` (RFC 9110 section 6.6.1: an origin server with a clock sends
/// it), formatted once a second per thread.
fn date(out: &mut BytesMut) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    CACHED.with_borrow_mut(|(at, text)| {
        if *at != second || text.is_empty() {
            *at = second;
            *text = format!("date: {}\r\n", httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(text.as_bytes());
    });
}

#[cfg(test)]
impl PartialEq for Next {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Refused(a), Self::Refused(b)) => a.status() == b.status(),
            (Self::Body { head, body }, Self::Body { head: h, body: b })
            | (Self::Push { head, body }, Self::Push { head: h, body: b }) => {
                head == h && body == b
            }
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::{Next, PushRoute, next};

    fn route() -> PushRoute {
        PushRoute::new("/push").max_body_bytes(100)
    }

    fn at(buf: &str) -> Next {
        next(buf.as_bytes(), &route())
    }

    const HEAD: &str = "POST /push HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n";

    #[test]
    fn a_plain_push_is_taken_once_its_body_is_in() {
        let whole = format!("{HEAD}{{}}");
        for end in 0..whole.len() {
            let expected = if end < HEAD.len() {
                Next::Head
            } else {
                Next::Body {
                    head: HEAD.len(),
                    body: 2,
                }
            };
            if end == 0 {
                continue;
            }
            assert_eq!(at(&whole[..end]), expected, "{end}");
        }
        assert_eq!(
            at(&whole),
            Next::Push {
                head: HEAD.len(),
                body: 2
            }
        );
        // Empty lines before a request belong to its head; alone they are nothing.
        assert_eq!(
            at(&format!("\r\n{whole}")),
            Next::Push {
                head: HEAD.len() + 2,
                body: 2
            }
        );
        assert_eq!(at("\r\n"), Next::Nothing);
        assert_eq!(
            at(&format!("POST /push?x=1 {}", &whole["POST /push ".len()..])),
            Next::Push {
                head: HEAD.len() + "?x=1".len(),
                body: 2
            }
        );
    }

    #[test]
    fn anything_unusual_goes_to_hyper() {
        for head in [
            "GET /push HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n",
            "POST /pushx HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n",
            "POST /push HTTP/1.0\r\nHost: h\r\nContent-Length: 2\r\n\r\n",
            "POST http://h/push HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n",
            "POST /push HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /push HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
            "POST /push HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
            "POST /push HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nOrigin: https://a\r\n\r\n",
            "POST /push HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
            "POST /push HTTP/1.1\r\nHost: h\r\nContent-Length: +2\r\n\r\n",
            "POST /push HTTP/1.1\r\nContent-Length: 2\r\n\r\n",
            "POST /push HTTP/1.1\r\nHost: h\r\nHost: h\r\nContent-Length: 2\r\n\r\n",
            "POST /push HTTP/1.1\r\nHost: h\r\n\r\n",
            "POST /push HTTP/1.1\r\nHo st: h\r\n\r\n",
        ] {
            assert_eq!(at(head), Next::Other, "{head:?}");
        }
    }

    #[test]
    fn a_head_over_the_limit_goes_to_hyper_even_when_it_arrives_whole() {
        let padding = "x".repeat(super::MAX_HEAD);
        let head = format!(
            "POST /push HTTP/1.1\r\nHost: h\r\nX-Pad: {padding}\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        assert_eq!(at(&head), Next::Other);
        assert_eq!(at(&head[..super::MAX_HEAD + 10]), Next::Other);
    }

    #[test]
    fn a_body_over_the_limit_is_refused_before_it_is_read() {
        let head = "POST /push HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n";
        assert_eq!(at(head), Next::TooLarge);
        let huge =
            "POST /push HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(at(huge), Next::Other, "not a number hyper takes either");
    }

    #[test]
    fn authorization_is_asked_before_the_body() {
        let route = route().authorize(|headers| {
            if headers
                .get("authorization")
                .is_some_and(|v| v == "Bearer k")
            {
                Ok(())
            } else {
                Err(StatusCode::UNAUTHORIZED)
            }
        });
        let Next::Refused(refusal) = next(HEAD.as_bytes(), &route) else {
            panic!("not refused");
        };
        assert_eq!(refusal.status(), StatusCode::UNAUTHORIZED);
        let allowed = HEAD.replace("Host: h\r\n", "Host: h\r\nAuthorization: Bearer k\r\n");
        assert_eq!(
            next(allowed.as_bytes(), &route),
            Next::Body {
                head: allowed.len(),
                body: 2
            }
        );
    }
}
