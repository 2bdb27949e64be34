//! The lean server's first-head reader and router (`server/head.rs`), fed bytes as a client
//! would send them, arriving in arbitrary pieces, then a close or a reset.
//!
//! Checks:
//! - a verdict for every input: a route, or an error (the reader never waits for nothing);
//! - it never reads past its limit: at most `MAX_HEAD` bytes read, buffered or offered to a read,
//!   and what it read is the start of what was sent;
//! - the same verdict however the bytes are split;
//! - the verdict agrees with httparse on the bytes read: an event-stream route is a complete
//!   `GET /events` head whose parts are httparse's, a push route (when the server has a lean
//!   push path, half the inputs) a whole `POST /push` request line, `Other` is a request line
//!   that is neither, a
//!   parse error is httparse's own, `TooLarge` is more than 100 headers or a head still partial
//!   at the limit, `Malformed` is a head httparse takes and `http` refuses, and a close before a
//!   verdict leaves an unfinished request line or event-stream head.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run head --fuzz-dir crates/hub/fuzz`

#![no_main]

use http::{HeaderName, HeaderValue, Method, Uri, Version};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use ssehub_hub::server::__fuzz::{End, MAX_HEAD, Outcome, Verdict, read_route};

const EVENTS_PATH: &str = "/events";
const PUSH_PATH: &str = "/push";
/// As `server/head.rs` (hyper's default).
const MAX_HEADERS: usize = 100;
/// A header line to pad heads with, so that inputs reach the limit cheaply.
const PAD: &[u8] = b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";

#[derive(Arbitrary, Debug)]
enum Start {
    Nothing,
    Events,
    EventsQuery,
    EventsAbsolute,
    EventsHttp10,
    Push,
}

impl Start {
    fn bytes(&self) -> &'static [u8] {
        match self {
            Self::Nothing => b"",
            Self::Events => b"GET /events HTTP/1.1\r\n",
            Self::EventsQuery => b"GET /events?uid=1&last_event_id=9 HTTP/1.1\r\nHost: h\r\n",
            Self::EventsAbsolute => b"GET http://h:8080/events HTTP/1.1\r\n",
            Self::EventsHttp10 => b"GET /events HTTP/1.0\n",
            Self::Push => b"POST /push HTTP/1.1\r\n",
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Sent before the start (empty lines, junk).
    before: Vec<u8>,
    start: Start,
    /// Header lines of 64 bytes after the start: up to 255, past both limits.
    pad: u8,
    bytes: Vec<u8>,
    /// Where the sent bytes are cut into pieces (each modulo their length).
    cuts: Vec<u16>,
    /// The client resets the connection rather than closing it.
    reset: bool,
    /// The server has a lean push path at `/push`.
    lean_push: bool,
}

/// A verdict in comparable form.
fn summary(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Events(parts) => {
            let headers: Vec<_> = parts.headers.iter().collect();
            format!(
                "Events {} {:?} {:?} {:?}",
                parts.method, parts.uri, parts.version, headers
            )
        }
        other => format!("{other:?}"),
    }
}

/// Checks a verdict against httparse's reading of the bytes read, and the limits.
fn check(outcome: &Outcome, sent: &[u8], end: End, lean_push: bool) {
    let read = &outcome.read[..];
    assert!(read.len() <= MAX_HEAD && outcome.capacity <= MAX_HEAD);
    assert!(outcome.largest_read <= MAX_HEAD);
    assert_eq!(read, &sent[..read.len()], "read is not what was sent");

    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(read);
    let line_end = read.iter().position(|&b| b == b'\n');
    // httparse's reading of the request line, if it got that far.
    let events_line = matches!(request.method, Some("GET" | "HEAD"))
        && request.version.is_some()
        && request
            .path
            .and_then(|path| Uri::try_from(path).ok())
            .is_some_and(|uri| uri.path() == EVENTS_PATH);
    let push_line = request.method == Some("POST")
        && request.version.is_some()
        && request
            .path
            .and_then(|path| Uri::try_from(path).ok())
            .is_some_and(|uri| uri.path() == PUSH_PATH);

    match &outcome.verdict {
        Verdict::Events(parts) => {
            let Ok(httparse::Status::Complete(len)) = parsed else {
                panic!("an event-stream route for a head httparse reads as {parsed:?}");
            };
            assert!(len <= read.len());
            assert!(events_line);
            assert!(parts.method == Method::GET || parts.method == Method::HEAD);
            assert_eq!(parts.uri.path(), EVENTS_PATH);
            let uri = request.path.map(Uri::try_from);
            assert!(
                matches!(&uri, Some(Ok(uri)) if *uri == parts.uri),
                "{uri:?}"
            );
            let version = match request.version {
                Some(0) => Version::HTTP_10,
                _ => Version::HTTP_11,
            };
            assert_eq!(parts.version, version);
            assert_eq!(parts.headers.len(), request.headers.len());
            // The same headers in the same order (a `HeaderMap` keeps a name's values in order;
            // compare per name).
            for header in request.headers.iter() {
                let expected: Vec<&[u8]> = request
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case(header.name))
                    .map(|h| h.value)
                    .collect();
                let got: Vec<&[u8]> = parts
                    .headers
                    .get_all(header.name)
                    .iter()
                    .map(HeaderValue::as_bytes)
                    .collect();
                assert_eq!(got, expected, "header {:?}", header.name);
            }
        }
        Verdict::Push => {
            assert!(lean_push, "a push route without a lean push path");
            assert!(push_line, "a push route for {parsed:?}");
        }
        Verdict::Other => {
            assert!(
                !(lean_push && push_line),
                "a POST of the push path routed to hyper"
            );
            // Routed to hyper, perhaps before the line ended (its start ruled a stream out):
            // never a GET or HEAD of the event-stream path.
            assert!(
                !events_line,
                "a GET of the event-stream path routed to hyper"
            );
        }
        Verdict::Parse(error) => {
            assert!(line_end.is_some());
            assert_eq!(parsed, Err(*error));
        }
        Verdict::TooLarge => assert!(
            parsed == Err(httparse::Error::TooManyHeaders)
                || (read.len() == MAX_HEAD && parsed == Ok(httparse::Status::Partial)),
            "TooLarge after {} bytes that httparse reads as {parsed:?}",
            read.len()
        ),
        Verdict::UriTooLong => assert!(
            line_end.is_none() && read.len() >= MAX_HEAD,
            "UriTooLong for a request line of {:?} within {} bytes",
            line_end,
            read.len()
        ),
        Verdict::Malformed(what) => {
            assert!(matches!(parsed, Ok(httparse::Status::Complete(_))));
            let hosts = request
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("host"))
                .count();
            let absolute = request
                .path
                .and_then(|path| Uri::try_from(path).ok())
                .is_some_and(|uri| uri.authority().is_some());
            // The server's Host rules (RFC 9112 3.2): one Host in HTTP/1.1, at most one in 1.0,
            // valid, and agreeing with an absolute-form target's authority.
            let host_rule = hosts > 1
                || (request.version == Some(1) && hosts == 0)
                || absolute
                || request.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("host")
                        && HeaderValue::from_bytes(h.value)
                            .ok()
                            .and_then(|v| v.to_str().ok().map(str::to_owned))
                            .and_then(|v| v.parse::<http::uri::Authority>().ok())
                            .is_none()
                });
            let refused = host_rule
                || request.path.is_none_or(|path| Uri::try_from(path).is_err())
                || request.headers.iter().any(|h| {
                    HeaderName::from_bytes(h.name.as_bytes()).is_err()
                        || HeaderValue::from_bytes(h.value).is_err()
                });
            assert!(refused, "Malformed({what}) for a head http takes");
        }
        Verdict::Closed | Verdict::Io(_) => {
            assert_eq!(matches!(outcome.verdict, Verdict::Closed), end == End::Eof);
            assert_eq!(read.len(), sent.len(), "gave up before the end");
            assert!(
                line_end.is_none() || parsed == Ok(httparse::Status::Partial),
                "no verdict for {parsed:?}"
            );
        }
    }
}

fuzz_target!(|input: Input| {
    let mut sent = input.before;
    sent.extend_from_slice(input.start.bytes());
    for _ in 0..input.pad {
        sent.extend_from_slice(PAD);
    }
    sent.extend_from_slice(&input.bytes);
    let end = if input.reset { End::Error } else { End::Eof };

    let mut cuts: Vec<usize> = input
        .cuts
        .iter()
        .map(|&cut| usize::from(cut) % (sent.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts.into_iter().chain([sent.len()]) {
        pieces.push(&sent[start..cut]);
        start = cut;
    }

    let push = input.lean_push.then_some(PUSH_PATH);
    let whole = read_route(&[&sent], end, EVENTS_PATH, push);
    check(&whole, &sent, end, input.lean_push);
    let split = read_route(&pieces, end, EVENTS_PATH, push);
    check(&split, &sent, end, input.lean_push);
    assert_eq!(
        summary(&whole.verdict),
        summary(&split.verdict),
        "the verdict depends on how the bytes arrive"
    );
});
