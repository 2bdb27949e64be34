//! The lean push path's request parser (`server/push.rs`), on requests built from arbitrary
//! parts and on arbitrary bytes.
//!
//! Checks:
//! - a verdict for every input, no panic;
//! - a push it takes is what httparse reads: a complete head of exactly that length, `POST` of
//!   the push path (any query) over HTTP/1.1, one `Host`, one `Content-Length` equal to the
//!   body's length, none of the headers the lean path hands to hyper, a body within the limit
//!   and within the bytes read;
//! - `Nothing` is only empty lines; `TooLarge` only a `Content-Length` over the limit;
//! - no prefix of the bytes gets another verdict than "wait" (`Nothing`, `Head`, or the same
//!   head with its body still coming) when the whole gets a push: bytes arriving in pieces give
//!   the same answer as bytes arriving at once.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run push_head --fuzz-dir crates/hub/fuzz`

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use ssehub_hub::server::__fuzz::{PushVerdict, push_next};

const PATH: &str = "/push";
const MAX_BODY: usize = 64;
/// Headers a request with any of them goes to hyper.
const HANDED_OVER: [&str; 5] = [
    "transfer-encoding",
    "expect",
    "upgrade",
    "connection",
    "origin",
];

#[derive(Arbitrary, Debug)]
enum Method {
    Post,
    Get,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Target {
    Push,
    PushQuery(String),
    Absolute,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Name {
    Host,
    ContentLength,
    TransferEncoding,
    Expect,
    Connection,
    Origin,
    Authorization,
    Any(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Sent first (empty lines, junk).
    before: Vec<u8>,
    method: Method,
    target: Target,
    http10: bool,
    headers: Vec<(Name, String)>,
    /// Bytes after the head: the body and whatever follows.
    after: Vec<u8>,
    /// Only the raw bytes, no request around them.
    raw: Option<Vec<u8>>,
    /// Where to cut for the prefix check (modulo the length).
    cut: u16,
}

fn build(input: &Input) -> Vec<u8> {
    if let Some(raw) = &input.raw {
        return raw.clone();
    }
    let mut out = input.before.clone();
    let method = match &input.method {
        Method::Post => "POST",
        Method::Get => "GET",
        Method::Other(other) => other,
    };
    let target = match &input.target {
        Target::Push => PATH.to_owned(),
        Target::PushQuery(query) => format!("{PATH}?{query}"),
        Target::Absolute => format!("http://h{PATH}"),
        Target::Other(other) => other.clone(),
    };
    let version = if input.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
    out.extend_from_slice(format!("{method} {target} {version}\r\n").as_bytes());
    for (name, value) in &input.headers {
        let name = match name {
            Name::Host => "Host",
            Name::ContentLength => "Content-Length",
            Name::TransferEncoding => "Transfer-Encoding",
            Name::Expect => "Expect",
            Name::Connection => "Connection",
            Name::Origin => "Origin",
            Name::Authorization => "Authorization",
            Name::Any(any) => any,
        };
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&input.after);
    out
}

/// Checks a whole head of `head` bytes at the start of `buf`, taken with a `body`-byte body.
fn check_head(buf: &[u8], head: usize, body: usize) {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    assert_eq!(
        request.parse(&buf[..head]),
        Ok(httparse::Status::Complete(head)),
        "the head httparse reads"
    );
    assert_eq!(request.method, Some("POST"));
    assert_eq!(request.version, Some(1));
    let target = request.path.unwrap_or_default();
    let rest = target.strip_prefix(PATH).expect("the push path");
    assert!(rest.is_empty() || rest.starts_with('?'), "{target:?}");
    let named = |wanted: &str| {
        request
            .headers
            .iter()
            .filter(|header| header.name.eq_ignore_ascii_case(wanted))
            .collect::<Vec<_>>()
    };
    assert_eq!(named("host").len(), 1, "one Host");
    let lengths = named("content-length");
    assert_eq!(lengths.len(), 1, "one Content-Length");
    let length = lengths[0].value;
    assert!(
        !length.is_empty() && length.iter().all(u8::is_ascii_digit),
        "{length:?}"
    );
    let length: u64 = std::str::from_utf8(length).unwrap().parse().unwrap();
    assert_eq!(length, body as u64, "the body's length");
    for name in HANDED_OVER {
        assert!(named(name).is_empty(), "{name} is hyper's");
    }
    assert!(body <= MAX_BODY);
}

fuzz_target!(|input: Input| {
    let buf = build(&input);
    let verdict = push_next(&buf, PATH, MAX_BODY);
    match verdict {
        PushVerdict::Push { head, body } => {
            assert!(head + body <= buf.len());
            check_head(&buf, head, body);
        }
        PushVerdict::Body { head, body } => {
            assert!(head <= buf.len() && head + body > buf.len());
            check_head(&buf, head, body);
        }
        PushVerdict::Nothing => assert!(buf.iter().all(|&b| b == b'\r' || b == b'\n')),
        PushVerdict::TooLarge => {
            let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
            assert!(text.contains("content-length"), "413 without a length");
        }
        PushVerdict::Refused => panic!("no authorization hook here"),
        PushVerdict::Head | PushVerdict::Other => {}
    }
    // A prefix waits for more, or agrees.
    if let PushVerdict::Push { head, body } | PushVerdict::Body { head, body } = verdict
        && !buf.is_empty()
    {
        let cut = usize::from(input.cut) % buf.len();
        match push_next(&buf[..cut], PATH, MAX_BODY) {
            PushVerdict::Nothing | PushVerdict::Head => assert!(cut < head, "{cut} {head}"),
            PushVerdict::Body { head: h, body: b } => assert_eq!((h, b), (head, body)),
            PushVerdict::Push { head: h, body: b } => assert_eq!((h, b), (head, body)),
            other => panic!("a prefix of {cut} bytes got {other:?}, the whole {verdict:?}"),
        }
    }
});
