//! The few responses the lean path writes itself: the event-stream head, and short answers
//! after which the connection closes.

use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Refusal;

/// After answering and half-closing, how long a connection is drained before it is dropped.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// ... and how many bytes at most.
const LINGER_BYTES: usize = 64 * 1024;

/// `HTTP/1.1 <status> <reason>\r\n`.
pub(super) fn status_line(out: &mut BytesMut, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub(super) fn header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The head of an event stream: `200`, the content type, no caching, the hub's stream headers,
/// and a body that the closing of the connection delimits (no chunked framing, so each chunk
/// the hub hands out goes to the socket as it is).
pub(super) fn stream_head(stream_headers: &HeaderMap) -> BytesMut {
    let mut out = BytesMut::with_capacity(256);
    status_line(&mut out, StatusCode::OK);
    header(&mut out, b"content-type", b"text/event-stream");
    header(&mut out, b"cache-control", b"no-cache");
    for (name, value) in stream_headers {
        header(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    header(&mut out, b"connection", b"close");
    out.extend_from_slice(b"\r\n");
    out
}

/// Headers whose values the server decides: the framing is its own.
fn is_framing(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::CONNECTION
}

/// The whole answer for `refusal`, after which the connection closes: its headers, then the
/// `stream_headers` it does not set itself (so that a browser may read it, CORS for one), a
/// challenge on a `401` that has none, and the body unless `head_only` (the answer to `HEAD`
/// keeps the length the body would have).
pub(super) fn closing_response(
    refusal: &Refusal,
    stream_headers: &HeaderMap,
    head_only: bool,
) -> BytesMut {
    let mut status = refusal.status();
    if status.is_informational() {
        // A 1xx is not a final answer: the client would wait for another one.
        tracing::error!(%status, "an event-stream request was refused with a 1xx status; answering 500");
        status = StatusCode::INTERNAL_SERVER_ERROR;
    }
    let own = refusal.headers();
    let body = refusal.body();
    let mut out = BytesMut::with_capacity(192 + body.len());
    status_line(&mut out, status);
    for (name, value) in own.iter().filter(|(name, _)| !is_framing(name)) {
        header(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    for (name, value) in stream_headers {
        if !own.contains_key(name) && !is_framing(name) {
            header(&mut out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if status == StatusCode::UNAUTHORIZED && !own.contains_key(header::WWW_AUTHENTICATE) {
        // RFC 9110 section 15.5.2: a 401 carries at least one challenge.
        header(&mut out, b"www-authenticate", b"Bearer");
    }
    let bodiless = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    if !bodiless {
        if !body.is_empty() && !own.contains_key(header::CONTENT_TYPE) {
            header(&mut out, b"content-type", b"text/plain; charset=utf-8");
        }
        header(
            &mut out,
            b"content-length",
            body.len().to_string().as_bytes(),
        );
    }
    header(&mut out, b"connection", b"close");
    out.extend_from_slice(b"\r\n");
    if !bodiless && !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// Writes `response` (within `write_timeout`), half-closes, and drains what the client still
/// sends for a moment before dropping the socket: closing a socket with unread input makes the
/// kernel send a reset, which can destroy the response before the client reads it.
pub(super) async fn respond_and_close(
    mut socket: TcpStream,
    response: &[u8],
    write_timeout: Duration,
) {
    let written = tokio::time::timeout(write_timeout, async {
        socket.write_all(response).await?;
        socket.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    linger(socket).await;
}

/// After the last answer was written and the socket half-closed: drains what the client still
/// sends for a moment (at most [`LINGER_TIME`], [`LINGER_BYTES`]) before dropping the socket.
pub(super) async fn linger(mut socket: TcpStream) {
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut scratch = [0u8; 1024];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match socket.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, StatusCode};

    use super::{Refusal, closing_response, stream_head};

    /// A short answer without stream headers.
    fn short_response(status: StatusCode, body: &'static str) -> bytes::BytesMut {
        closing_response(
            &Refusal::new(status).with_body(body),
            &HeaderMap::new(),
            false,
        )
    }

    #[test]
    fn heads_are_exact() {
        let mut headers = HeaderMap::new();
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        assert_eq!(
            &stream_head(&headers)[..],
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nx-accel-buffering: no\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            &short_response(StatusCode::FORBIDDEN, "")[..],
            b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            &short_response(StatusCode::BAD_REQUEST, "query: bad")[..],
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 10\r\nconnection: close\r\n\r\nquery: bad"[..]
        );
        assert_eq!(
            &short_response(StatusCode::NO_CONTENT, "ignored")[..],
            b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn refusals_carry_the_stream_headers_and_a_challenge() {
        let mut stream_headers = HeaderMap::new();
        stream_headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        stream_headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        assert_eq!(
            &closing_response(&StatusCode::UNAUTHORIZED.into(), &stream_headers, false)[..],
            b"HTTP/1.1 401 Unauthorized\r\naccess-control-allow-origin: *\r\nx-accel-buffering: no\r\nwww-authenticate: Bearer\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        // The refusal's own headers win over the stream's; the framing stays the server's.
        let refusal = Refusal::new(StatusCode::UNAUTHORIZED)
            .with_header(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"x\""),
            )
            .with_header(
                http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("https://a.example"),
            )
            .with_header(http::header::CONTENT_LENGTH, HeaderValue::from_static("99"))
            .with_body("log in");
        assert_eq!(
            &closing_response(&refusal, &stream_headers, false)[..],
            &b"HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm=\"x\"\r\naccess-control-allow-origin: https://a.example\r\nx-accel-buffering: no\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 6\r\nconnection: close\r\n\r\nlog in"[..]
        );
        // HEAD: the same head, no body.
        let head_only = closing_response(&refusal, &stream_headers, true);
        assert!(head_only.ends_with(b"content-length: 6\r\nconnection: close\r\n\r\n"));
        // A 1xx is no final answer.
        assert!(
            closing_response(&StatusCode::CONTINUE.into(), &HeaderMap::new(), false)
                .starts_with(b"HTTP/1.1 500 ")
        );
    }
}
