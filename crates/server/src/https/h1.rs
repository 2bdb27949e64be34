//! HTTP/1.1 over TLS, the lean way: the first request head is read here, into a small buffer;
//! `GET`/`HEAD /events` is answered by [`route::answer`] and its body written straight into the
//! TLS session, delimited by the connection's close (no chunked framing, no hyper buffers);
//! anything else goes to hyper with the bytes already read replayed first.
//!
//! Why: hyper keeps an 8 KiB read buffer and an 8 KiB write buffer per HTTP/1.1 connection for
//! as long as it lives, which was most of an idle TLS stream's 24 KiB (`docs/benchmarks.md`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::{Buf, Bytes, BytesMut};
use http::{Method, StatusCode};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use ssehub_hub::server::Prefixed;

use super::route::{self, Events};

/// The first read's buffer; it doubles up to [`MAX_HEAD`].
const INITIAL_HEAD_BUFFER: usize = 1024;
/// The largest head of a stream request (the lean path's).
const MAX_HEAD: usize = 16 * 1024;
/// Headers at most in a stream request.
const MAX_HEADERS: usize = 64;
/// What a client may send after its stream request before it is dropped (nothing is expected).
const MAX_TRAILING_INPUT: usize = 64 * 1024;
/// The request lines this path serves itself.
const STREAM_STARTS: [&[u8]; 2] = [b"GET /events", b"HEAD /events"];

/// What the first head of a connection leads to.
pub(super) enum First<IO> {
    /// An event-stream request: its head, for [`route::answer`].
    Stream(IO, Box<http::request::Parts>),
    /// Anything else: hyper serves the connection, these bytes first.
    Other(Prefixed<IO>),
    /// A short answer, then close (a head too large or malformed).
    Answer(IO, StatusCode, &'static str),
    /// Nothing to answer: the client left, or the deadline passed.
    Close,
}

/// Reads until the request line rules a stream out, or a whole stream head is in (by
/// `deadline`).
pub(super) async fn first<IO: AsyncRead + Unpin>(
    mut io: IO,
    peer: SocketAddr,
    deadline: Instant,
) -> First<IO> {
    let mut buf = Vec::with_capacity(INITIAL_HEAD_BUFFER);
    loop {
        if !could_be_stream(&buf) {
            return First::Other(Prefixed::new(buf, io));
        }
        if let Some(parts) = match parse(&buf) {
            Ok(parts) => parts,
            Err(message) => return First::Answer(io, StatusCode::BAD_REQUEST, message),
        } {
            let mut parts = Box::new(parts);
            parts.extensions.insert(ConnectInfo(peer));
            return First::Stream(io, parts);
        }
        if buf.len() >= MAX_HEAD {
            return First::Answer(
                io,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "the request head is over 16 KiB",
            );
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().min(MAX_HEAD - buf.len()));
        }
        let read = tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => return First::Close,
        }
    }
}

/// Whether the bytes so far may still be `GET|HEAD /events[ ?]`.
fn could_be_stream(buf: &[u8]) -> bool {
    STREAM_STARTS.iter().any(|start| {
        let n = buf.len().min(start.len());
        buf[..n] == start[..n]
            && (buf.len() <= start.len() || matches!(buf[start.len()], b' ' | b'?'))
    })
}

/// The whole head, once it is in.
fn parse(buf: &[u8]) -> Result<Option<http::request::Parts>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(_)) => {}
        Err(_) => return Err("malformed request head"),
    }
    let method = match request.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Err("malformed request head"),
    };
    let mut builder = http::Request::builder()
        .method(method)
        .uri(request.path.unwrap_or("/"))
        .version(if request.version == Some(0) {
            http::Version::HTTP_10
        } else {
            http::Version::HTTP_11
        });
    for header in request.headers.iter() {
        builder = builder.header(header.name, header.value);
    }
    builder
        .body(())
        .map(|request| Some(request.into_parts().0))
        .map_err(|_| "malformed request head")
}

/// Answers the stream request: the head, then (unless `HEAD`) the body as it comes, until it
/// ends (the hub closed it), the client leaves or sends more than it should, or a write fails
/// (the write timeout, below the TLS session).
pub(super) async fn stream<IO: AsyncRead + AsyncWrite + Unpin>(
    mut io: IO,
    events: &Events,
    parts: Box<http::request::Parts>,
) -> io::Result<()> {
    let head_only = parts.method == Method::HEAD;
    // Boxed: its state is done with once the stream starts.
    let response = Box::pin(route::answer(events, *parts)).await;
    let (parts, body) = response.into_parts();
    let mut head = BytesMut::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.extend_from_slice(b" ");
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
            || name == http::header::CONNECTION
        {
            continue; // the framing is ours: the body ends with the connection
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    drop(parts);
    io.write_all(&head).await?;
    drop(head);
    io.flush().await?;
    if !head_only {
        Pump {
            io: &mut io,
            body,
            chunk: Bytes::new(),
            trailing: 0,
        }
        .await?;
    }
    io.shutdown().await
}

/// Writes the body's frames as they come, and watches the client's side for its leaving.
struct Pump<'a, IO> {
    io: &'a mut IO,
    body: Body,
    /// The rest of the frame being written.
    chunk: Bytes,
    /// Bytes the client sent after its request.
    trailing: usize,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> std::future::Future for Pump<'_, IO> {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            // The client's side: EOF or an error ends the stream; input is thrown away.
            let mut scratch = [0u8; 64];
            let mut read = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *this.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    this.trailing += read.filled().len();
                    if this.trailing > MAX_TRAILING_INPUT {
                        return Poll::Ready(Ok(()));
                    }
                    continue;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {}
            }
            while this.chunk.has_remaining() {
                let n = ready!(Pin::new(&mut *this.io).poll_write(cx, &this.chunk))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                this.chunk.advance(n);
            }
            ready!(Pin::new(&mut *this.io).poll_flush(cx))?;
            this.chunk = Bytes::new(); // an idle stream holds no chunk
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.chunk = data;
                    }
                }
                Some(Err(error)) => return Poll::Ready(Err(io::Error::other(error))),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// Writes a short answer and closes, within `timeout`.
pub(super) async fn answer_and_close<IO: AsyncWrite + Unpin>(
    mut io: IO,
    status: StatusCode,
    message: &str,
    timeout: Duration,
) {
    let text = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{message}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        message.len()
    );
    let _ = tokio::time::timeout(timeout, async {
        io.write_all(text.as_bytes()).await?;
        io.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stream_routes_wait_for_a_whole_head() {
        for (bytes, stream) in [
            (&b""[..], true),
            (b"GE", true),
            (b"GET /ev", true),
            (b"GET /events", true),
            (b"GET /events HTTP/1.1\r\n", true),
            (b"GET /events?x=1 HTTP/1.1\r\n", true),
            (b"HEAD /events HTTP/1.1\r\n", true),
            (b"GET /eventsx HTTP/1.1\r\n", false),
            (b"GET /healthz HTTP/1.1\r\n", false),
            (b"POST /push HTTP/1.1\r\n", false),
            (b"OPTIONS /events HTTP/1.1\r\n", false),
        ] {
            assert_eq!(
                could_be_stream(bytes),
                stream,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
