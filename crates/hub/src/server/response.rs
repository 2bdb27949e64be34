//! The few responses the lean path writes itself: the event-stream head, and short answers
//! after which the connection closes.

use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// After answering and half-closing, how long a connection is drained before it is dropped.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// ... and how many bytes at most.
const LINGER_BYTES: usize = 64 * 1024;

/// `HTTP/1.1 <status> <reason>\r\n`.
fn status_line(out: &mut BytesMut, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
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

/// A complete response with a short text body (none for `204`/`304`) and `Connection: close`.
pub(super) fn short_response(status: StatusCode, body: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(128 + body.len());
    status_line(&mut out, status);
    let bodiless = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    if !bodiless {
        if !body.is_empty() {
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
    if !bodiless {
        out.extend_from_slice(body.as_bytes());
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

    use super::{short_response, stream_head};

    #[test]
    fn heads_are_exact() {
        let mut headers = HeaderMap::new();
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        assert_eq!(
            &stream_head(&headers)[..],
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nx-accel-buffering: no\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            &short_response(StatusCode::UNAUTHORIZED, "")[..],
            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
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
}
