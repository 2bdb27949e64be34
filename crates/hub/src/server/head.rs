//! Reading the first request head of a connection and deciding where it goes.

use std::fmt;
use std::io;

use http::request::Parts;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version, header};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The head buffer starts this small: a browser's `GET /events` with cookies fits in it.
pub(super) const INITIAL_HEAD_BUFFER: usize = 1024;
/// A head still unfinished at this size gets `431`.
pub(super) const MAX_HEAD: usize = 16 * 1024;
/// hyper's default too: the same request gets the same answer on either path.
const MAX_HEADERS: usize = 100;

/// Where a connection goes, from its first request.
pub(super) enum Route {
    /// `GET` or `HEAD` of the event-stream path: the parsed head. The bytes read stay in the
    /// caller's buffer and are dropped with it (anything pipelined behind an event-stream
    /// request is ignored, as the stream never ends to make room for a next response).
    Events(Box<Parts>),
    /// `POST` of the push path (known from the request line alone): the connection goes to the
    /// lean push path, the bytes read with it.
    Push,
    /// Anything else: the whole connection goes to hyper, replaying the bytes read.
    Other,
}

/// The paths the lean server serves itself.
#[derive(Clone, Copy)]
pub(super) struct Paths<'a> {
    pub(super) events: &'a str,
    /// `None`: no lean push path; pushes go to hyper with every other request.
    pub(super) push: Option<&'a str>,
}

/// Why no route was found.
#[derive(Debug)]
pub(super) enum HeadError {
    /// The client closed the connection before sending a whole head.
    Closed,
    /// The head of an event-stream request did not fit in [`MAX_HEAD`] bytes, or had more than
    /// [`MAX_HEADERS`] headers.
    TooLarge,
    /// The request line of an event-stream request (its query, in practice) did not fit in
    /// [`MAX_HEAD`] bytes.
    UriTooLong,
    /// The head of an event-stream request is not valid HTTP/1.x.
    Parse(httparse::Error),
    /// The head of an event-stream request parsed, but a part of it is refused (an invalid
    /// target or header, a missing or contradicting `Host`).
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
            Self::UriTooLong => write!(f, "the request line is longer than {MAX_HEAD} bytes"),
            Self::Parse(error) => write!(f, "malformed request head: {error}"),
            Self::Malformed(what) => write!(f, "malformed request head: {what}"),
            Self::Io(error) => write!(f, "reading the request failed: {error}"),
        }
    }
}

/// Reads from `socket` into `buf` until the first request's route is known: as soon as what was
/// read shows it is neither `GET`/`HEAD` of the events path nor `POST` of the push path, once
/// the request line of a push is in, or once the whole head of an event-stream request is in.
pub(super) async fn read_route(
    socket: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    paths: Paths<'_>,
) -> Result<Route, HeadError> {
    loop {
        if let Some(route) = route(buf, paths)? {
            return Ok(route);
        }
        if buf.len() == buf.capacity() {
            if buf.capacity() >= MAX_HEAD {
                // A push's request line still coming at the limit: hyper judges it, as it
                // judges such a line without a lean push path.
                if route(
                    buf,
                    Paths {
                        push: None,
                        ..paths
                    },
                )?
                .is_some()
                {
                    return Ok(Route::Other);
                }
                // Still undecided, so an event-stream request: its line or its headers are too
                // long for the lean path (other requests went to hyper, with its own limits).
                return Err(if request_line_is_complete(buf) {
                    HeadError::TooLarge
                } else {
                    HeadError::UriTooLong
                });
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
fn route(buf: &[u8], paths: Paths<'_>) -> Result<Option<Route>, HeadError> {
    let Some(start) = request_line_start(buf) else {
        return Ok(None);
    };
    let line = &buf[start..];
    let Some(line_end) = line.iter().position(|&byte| byte == b'\n') else {
        // A request line that can become neither an event-stream request nor a push goes to
        // hyper now, however long it grows: hyper answers it as it answers any other (`414`,
        // `431`, ...).
        let undecided = may_become_request(line, &[b"GET", b"HEAD"], paths.events)
            || paths
                .push
                .is_some_and(|push| may_become_request(line, &[b"POST"], push));
        return Ok((!undecided).then_some(Route::Other));
    };
    let line = &line[..line_end];
    if paths
        .push
        .is_some_and(|push| is_request(line, &[b"POST"], push))
    {
        return Ok(Some(Route::Push));
    }
    if !is_request(line, &[b"GET", b"HEAD"], paths.events) {
        return Ok(Some(Route::Other));
    }
    parse(buf).map(|parts| parts.map(|parts| Route::Events(Box::new(parts))))
}

/// Where the request line starts: after any empty lines, which RFC 9112 section 2.2 lets a
/// server ignore before a request (some clients send a CRLF after a previous request's body).
/// `None` while the buffer holds nothing else.
fn request_line_start(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        match &buf[at..] {
            [b'\r', b'\n', ..] => at += 2,
            [b'\n', ..] => at += 1,
            [] | [b'\r'] => return None,
            _ => return Some(at),
        }
    }
}

fn request_line_is_complete(buf: &[u8]) -> bool {
    request_line_start(buf).is_some_and(|start| buf[start..].contains(&b'\n'))
}

/// Whether a request line (without its LF) is `<one of methods> <path>[?query] HTTP/1.x`.
/// Anything unusual answers no: hyper then judges it, with the same rules as for every other
/// request.
fn is_request(line: &[u8], methods: &[&[u8]], path: &str) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut fields = line.split(|&byte| byte == b' ');
    let (Some(method), Some(target), Some(_version), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    methods.contains(&method) && is_target(target, path)
}

/// Usually origin-form (`/events?uid=1`); absolute-form (`http://host/events`) is valid too.
fn is_target(target: &[u8], path: &str) -> bool {
    Uri::try_from(target).is_ok_and(|uri| uri.path() == path)
}

/// Whether the start of a request line (no LF in it yet) may still become a request of one of
/// `methods` for `path` once the rest arrives.
fn may_become_request(prefix: &[u8], methods: &[&[u8]], path: &str) -> bool {
    let mut fields = prefix.splitn(2, |&byte| byte == b' ');
    let method = fields.next().unwrap_or_default();
    let Some(rest) = fields.next() else {
        // The method is still coming.
        return methods.iter().any(|known| known.starts_with(method));
    };
    if !methods.contains(&method) {
        return false;
    }
    match rest.iter().position(|&byte| byte == b' ') {
        // The whole target is in: only the version is still coming.
        Some(end) => is_target(&rest[..end], path),
        None => target_may_become(rest, path),
    }
}

/// Whether the start of a request target may still become one whose path is `wanted`.
fn target_may_become(target: &[u8], wanted: &str) -> bool {
    let path = if target.starts_with(b"/") {
        target
    } else {
        // Absolute-form: a scheme, `://`, an authority, then the path.
        let mut after_scheme = None;
        for scheme in [&b"http://"[..], b"https://"] {
            let n = scheme.len().min(target.len());
            if !target[..n].eq_ignore_ascii_case(&scheme[..n]) {
                continue;
            }
            if target.len() <= scheme.len() {
                return true; // the scheme is still coming
            }
            after_scheme = Some(&target[scheme.len()..]);
        }
        let Some(after_scheme) = after_scheme else {
            return false;
        };
        match after_scheme
            .iter()
            .position(|&byte| matches!(byte, b'/' | b'?' | b'#'))
        {
            None => return true, // the authority is still coming
            Some(at) => &after_scheme[at..],
        }
    };
    match path.iter().position(|&byte| byte == b'?' || byte == b'#') {
        // The path is whole: an empty one is `/`.
        Some(0) => wanted == "/",
        Some(end) => &path[..end] == wanted.as_bytes(),
        None => wanted.as_bytes().starts_with(path),
    }
}

/// The whole head at the start of `buf` as request parts, `None` if it is not all in yet.
fn parse(buf: &[u8]) -> Result<Option<Parts>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    // httparse skips the empty lines before the request line too.
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
    let method = match request.method {
        Some("HEAD") => Method::HEAD,
        _ => Method::GET,
    };
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
    check_host(&uri, version, &map)?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = map;
    Ok(Some(parts))
}

/// `http` takes any text after the last colon for a port; a Host's port is a number (or empty).
fn has_valid_port(authority: &Authority) -> bool {
    let text = authority.as_str();
    match text.rfind(':') {
        // A colon inside an IPv6 literal is no port separator.
        Some(colon) if !text[colon..].contains(']') => {
            let port = &text[colon + 1..];
            port.is_empty() || port.parse::<u16>().is_ok()
        }
        _ => true,
    }
}

/// RFC 9112 section 3.2: an HTTP/1.1 request has exactly one `Host`, and a valid one. With an
/// absolute-form target, the target's authority is the host; a `Host` that names another one
/// is refused rather than ignored, because the authentication hook may read either.
fn check_host(uri: &Uri, version: Version, headers: &HeaderMap) -> Result<(), HeadError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HeadError::Malformed("more than one Host header"));
    }
    let Some(host) = host else {
        return if version == Version::HTTP_10 {
            Ok(()) // HTTP/1.0 has no Host requirement
        } else {
            Err(HeadError::Malformed("missing Host header"))
        };
    };
    let host = if host.is_empty() {
        None // allowed when the target has no authority
    } else if host.as_bytes().contains(&b'@') {
        return Err(HeadError::Malformed("invalid Host header"));
    } else {
        match Authority::try_from(host.as_bytes()) {
            Ok(host) if has_valid_port(&host) => Some(host),
            _ => return Err(HeadError::Malformed("invalid Host header")),
        }
    };
    let Some(target) = uri.authority() else {
        return Ok(());
    };
    let default_port = if uri.scheme() == Some(&Scheme::HTTPS) {
        443
    } else {
        80
    };
    let same = host.is_some_and(|host| {
        host.host().eq_ignore_ascii_case(target.host())
            && host.port_u16().unwrap_or(default_port) == target.port_u16().unwrap_or(default_port)
    });
    if same {
        Ok(())
    } else {
        Err(HeadError::Malformed(
            "the Host header disagrees with the request target",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{HeadError, MAX_HEAD, Paths, Route, route};

    /// The events path alone: pushes go to hyper.
    const EVENTS: Paths<'static> = Paths {
        events: "/events",
        push: None,
    };
    /// With the lean push path at `/push`.
    const BOTH: Paths<'static> = Paths {
        events: "/events",
        push: Some("/push"),
    };

    fn decide(head: &str) -> Result<Option<Route>, HeadError> {
        route(head.as_bytes(), EVENTS)
    }

    #[test]
    fn a_push_is_known_from_its_request_line_when_the_push_path_is_lean() {
        for head in [
            "POST /push HTTP/1.1\r\n",
            "POST /push?x=1 HTTP/1.1\n",
            "\r\nPOST /push HTTP/1.1\r\n",
        ] {
            assert!(
                matches!(route(head.as_bytes(), BOTH), Ok(Some(Route::Push))),
                "{head:?}"
            );
            assert!(is_other(head), "without a lean push path: {head:?}");
        }
        for prefix in [
            "P",
            "POS",
            "POST ",
            "POST /pu",
            "POST /push",
            "POST /push?a",
        ] {
            assert!(
                matches!(route(prefix.as_bytes(), BOTH), Ok(None)),
                "{prefix:?}"
            );
        }
        for head in [
            "POST /pushx",
            "PUT /push HTTP/1.1\r\n",
            "POST /push/x HTTP/1.1\r\n",
            "GET /push HTTP/1.1\r\n",
            "POST  /push HTTP/1.1\r\n",
        ] {
            assert!(
                matches!(route(head.as_bytes(), BOTH), Ok(Some(Route::Other))),
                "{head:?}"
            );
        }
        // The events path keeps its route beside it.
        assert!(matches!(
            route(b"GET /events HTTP/1.1\r\nHost: h\r\n\r\n", BOTH),
            Ok(Some(Route::Events(_)))
        ));
    }

    fn is_other(head: &str) -> bool {
        matches!(decide(head), Ok(Some(Route::Other)))
    }

    fn is_undecided(head: &str) -> bool {
        matches!(decide(head), Ok(None))
    }

    #[test]
    fn other_requests_are_known_from_the_request_line_alone() {
        for head in [
            "POST /push HTTP/1.1\r\n",
            "GET /health HTTP/1.1\n",
            "GET /events/x HTTP/1.1\r\n",
            "OPTIONS /events HTTP/1.1\r\n",
            "GET  /events HTTP/1.1\r\n", // unusual spacing: hyper judges it
            "garbage\r\n",
            "\r\n\r\nPOST /push HTTP/1.1\r\n",
        ] {
            assert!(is_other(head), "{head:?}");
        }
    }

    #[test]
    fn an_unfinished_request_line_goes_to_hyper_once_it_cannot_be_a_stream() {
        for prefix in [
            "POST /pu",
            "PUT",
            "GET /x",
            "GET /eventsX",
            "GET /events/",
            "GET /health?uid=",
            "GET http://h/x",
            "GET ftp://h/events",
            "HEAD *",
        ] {
            assert!(is_other(prefix), "{prefix:?}");
        }
        for prefix in [
            "",
            "\r\n",
            "\r",
            "G",
            "HEA",
            "GET /",
            "GET /events",
            "GET /events?uid=1&x=",
            "GET /events ",
            "GET /events?uid=1 HTTP/1.1",
            "HEAD /events?a",
            "GET HTTP:/",
            "GET http://h",
            "GET https://very-long-host.example:8443/eve",
            "GET http://h/events?x",
        ] {
            assert!(is_undecided(prefix), "{prefix:?}");
        }
        // An authority followed by a query: the path is `/`.
        assert!(is_other("GET http://h?x"));
        let root = Paths {
            events: "/",
            push: None,
        };
        assert!(matches!(route(b"GET http://h?x", root), Ok(None)));
    }

    #[test]
    fn an_event_stream_request_waits_for_its_whole_head() {
        let head =
            "GET /events?uid=u1&last_event_id=7 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 9\r\n\r\n";
        for end in 0..head.len() {
            assert!(is_undecided(&head[..end]), "{end}");
        }
        let Ok(Some(Route::Events(parts))) = decide(head) else {
            panic!("not an event stream");
        };
        assert_eq!(parts.method, http::Method::GET);
        assert_eq!(parts.uri.query(), Some("uid=u1&last_event_id=7"));
        assert_eq!(parts.headers["last-event-id"], "9");
        assert_eq!(parts.version, http::Version::HTTP_11);

        let Ok(Some(Route::Events(parts))) = decide("GET http://h/events HTTP/1.0\n\n") else {
            panic!("absolute-form, HTTP/1.0, bare LF");
        };
        assert_eq!(parts.version, http::Version::HTTP_10);

        let Ok(Some(Route::Events(parts))) =
            decide("\r\n\nHEAD /events HTTP/1.1\r\nHost: x\r\n\r\n")
        else {
            panic!("HEAD after empty lines");
        };
        assert_eq!(parts.method, http::Method::HEAD);
    }

    #[test]
    fn host_is_required_once_and_must_agree_with_an_absolute_target() {
        let malformed = |head: &str| match decide(head) {
            Err(HeadError::Malformed(what)) => what,
            _ => panic!("{head:?} was not refused"),
        };
        assert_eq!(
            malformed("GET /events HTTP/1.1\r\n\r\n"),
            "missing Host header"
        );
        assert_eq!(
            malformed("GET /events HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            "more than one Host header"
        );
        for host in ["a b", "u@a", "a:port", "a:99999"] {
            let head = format!("GET /events HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(malformed(&head), "invalid Host header", "{host}");
        }
        for (target, host) in [
            ("http://a/events", "b"),
            ("http://a/events", "a:8080"),
            ("http://a:8080/events", "a"),
            ("https://a/events", "a:80"),
            ("http://a/events", ""),
        ] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(
                malformed(&head),
                "the Host header disagrees with the request target",
                "{target} {host}"
            );
        }
        for (target, host) in [
            ("http://a/events", "a"),
            ("http://A/events", "a:80"),
            ("https://a:443/events", "a"),
            ("http://127.0.0.1:9/events", "127.0.0.1:9"),
            ("http://[::1]:9/events", "[::1]:9"),
            ("/events", ""), // an empty Host is allowed when the target names no host
        ] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(
                matches!(decide(&head), Ok(Some(Route::Events(_)))),
                "{target} {host}"
            );
        }
        // HTTP/1.0 needs no Host.
        assert!(matches!(
            decide("GET /events HTTP/1.0\r\n\r\n"),
            Ok(Some(Route::Events(_)))
        ));
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
            "GET /events HTTP/1.1\r\nHost: h\r\nCookie: {}\r\n\r\n",
            "c".repeat(MAX_HEAD / 2)
        );
        assert!(matches!(decide(&long), Ok(Some(Route::Events(_)))));
    }
}
