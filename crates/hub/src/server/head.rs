//! Reading the first request head of a connection and deciding where it goes.

use std::fmt;
use std::io;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The head buffer starts this small: a browser's `GET /events` with cookies fits in it.
pub(super) const INITIAL_HEAD_BUFFER: usize = 1024;
/// A head still unfinished at this size gets `431`.
pub(super) const MAX_HEAD: usize = 16 * 1024;
/// hyper's default too: the same request gets the same answer on either path.
const MAX_HEADERS: usize = 100;

/// Where a connection goes, from its first request.
pub(super) enum Route {
    /// `GET` of the event-stream path: the parsed head. The bytes read stay in the caller's
    /// buffer and are dropped with it (anything pipelined behind an event-stream request is
    /// ignored, as the stream never ends to make room for a next response).
    Events(Box<Parts>),
    /// Anything else: the whole connection goes to hyper, replaying the bytes read.
    Other,
}

/// Why no route was found.
#[derive(Debug)]
pub(super) enum HeadError {
    /// The client closed the connection before sending a whole head.
    Closed,
    /// The head of an event-stream request did not fit in [`MAX_HEAD`] bytes, or had more than
    /// [`MAX_HEADERS`] headers.
    TooLarge,
    /// The head of an event-stream request is not valid HTTP/1.x.
    Parse(httparse::Error),
    /// The head of an event-stream request parsed, but `http` refuses a part of it.
    Malformed(&'static str),
    /// Reading the socket failed.
    Io(io::Error),
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the client closed the connection before its request"),
            Self::TooLarge => write!(
                f,
                "the request head is larger than {MAX_HEAD} bytes or has more than {MAX_HEADERS} headers"
            ),
            Self::Parse(error) => write!(f, "malformed request head: {error}"),
            Self::Malformed(what) => write!(f, "malformed request head: {what}"),
            Self::Io(error) => write!(f, "reading the request failed: {error}"),
        }
    }
}

/// Reads from `socket` into `buf` until the first request's route is known: as soon as its
/// request line shows it is not `GET <events_path>`, or once the whole head of an event-stream
/// request is in.
pub(super) async fn read_route(
    socket: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    events_path: &str,
) -> Result<Route, HeadError> {
    loop {
        if let Some(route) = route(buf, events_path)? {
            return Ok(route);
        }
        if buf.len() == buf.capacity() {
            if buf.capacity() >= MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            // Grow by doubling, never past the limit.
            let target = (buf.capacity() * 2).clamp(INITIAL_HEAD_BUFFER, MAX_HEAD);
            buf.reserve_exact(target - buf.len());
        }
        // Reads into the spare capacity only: the buffer grows above, nowhere else.
        match socket.read_buf(buf).await {
            Ok(0) => return Err(HeadError::Closed),
            Ok(_) => {}
            Err(error) => return Err(HeadError::Io(error)),
        }
    }
}

/// The route of the head at the start of `buf`, `None` if more bytes are needed to tell.
fn route(buf: &[u8], events_path: &str) -> Result<Option<Route>, HeadError> {
    let Some(line_end) = buf.iter().position(|&byte| byte == b'\n') else {
        return Ok(None);
    };
    if !is_events_request(&buf[..line_end], events_path) {
        return Ok(Some(Route::Other));
    }
    parse(buf).map(|parts| parts.map(|parts| Route::Events(Box::new(parts))))
}

/// Whether a request line (without its LF) is `GET <events_path>[?query] HTTP/1.x`. Anything
/// unusual answers no: hyper then judges it, with the same rules as for every other request.
fn is_events_request(line: &[u8], events_path: &str) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut fields = line.split(|&byte| byte == b' ');
    let (Some(b"GET"), Some(target), Some(_version), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    // Usually origin-form (`/events?uid=1`); absolute-form (`http://host/events`) is valid too.
    Uri::try_from(target).is_ok_and(|uri| uri.path() == events_path)
}

/// The whole head at the start of `buf` as request parts, `None` if it is not all in yet.
fn parse(buf: &[u8]) -> Result<Option<Parts>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(error) => return Err(HeadError::Parse(error)),
    }
    let uri = request
        .path
        .and_then(|path| Uri::try_from(path).ok())
        .ok_or(HeadError::Malformed("invalid request target"))?;
    let version = match request.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut map = HeaderMap::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| HeadError::Malformed("invalid header value"))?;
        map.append(name, value);
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = Method::GET;
    parts.uri = uri;
    parts.version = version;
    parts.headers = map;
    Ok(Some(parts))
}

#[cfg(test)]
mod tests {
    use super::{HeadError, MAX_HEAD, Route, route};

    fn decide(head: &str) -> Result<Option<Route>, HeadError> {
        route(head.as_bytes(), "/events")
    }

    #[test]
    fn other_requests_are_known_from_the_request_line_alone() {
        for head in [
            "POST /push HTTP/1.1\r\n",
            "GET /health HTTP/1.1\n",
            "GET /events/x HTTP/1.1\r\n",
            "HEAD /events HTTP/1.1\r\n",
            "GET  /events HTTP/1.1\r\n", // unusual spacing: hyper judges it
            "garbage\r\n",
        ] {
            assert!(matches!(decide(head), Ok(Some(Route::Other))), "{head:?}");
        }
        assert!(matches!(decide("POST /pu"), Ok(None)));
    }

    #[test]
    fn an_event_stream_request_waits_for_its_whole_head() {
        let head =
            "GET /events?uid=u1&last_event_id=7 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 9\r\n\r\n";
        for end in 0..head.len() {
            assert!(matches!(decide(&head[..end]), Ok(None)), "{end}");
        }
        let Ok(Some(Route::Events(parts))) = decide(head) else {
            panic!("not an event stream");
        };
        assert_eq!(parts.uri.query(), Some("uid=u1&last_event_id=7"));
        assert_eq!(parts.headers["last-event-id"], "9");
        assert_eq!(parts.version, http::Version::HTTP_11);

        let Ok(Some(Route::Events(parts))) = decide("GET http://h/events HTTP/1.0\n\n") else {
            panic!("absolute-form, HTTP/1.0, bare LF");
        };
        assert_eq!(parts.version, http::Version::HTTP_10);
    }

    #[test]
    fn bad_or_huge_event_stream_heads_are_refused() {
        assert!(matches!(
            decide("GET /events HTTP/1.1\r\nBad Name: x\r\n\r\n"),
            Err(HeadError::Parse(httparse::Error::HeaderName))
        ));
        let many: String = (0..101).map(|i| format!("h{i}: v\r\n")).collect();
        assert!(matches!(
            decide(&format!("GET /events HTTP/1.1\r\n{many}\r\n")),
            Err(HeadError::TooLarge)
        ));
        // Under the limit a long head is fine; `read_route` enforces MAX_HEAD while reading.
        let long = format!(
            "GET /events HTTP/1.1\r\nCookie: {}\r\n\r\n",
            "c".repeat(MAX_HEAD / 2)
        );
        assert!(matches!(decide(&long), Ok(Some(Route::Events(_)))));
    }
}
