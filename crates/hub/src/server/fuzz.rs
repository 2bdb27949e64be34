//! The lean server's head reader and its push path's request parser over bytes in memory, for
//! `crates/hub/fuzz` (feature `fuzzing`). Not an API: it changes with the server.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use http::request::Parts;
use tokio::io::{AsyncRead, ReadBuf};

use super::head::{self, HeadError, Route};

/// The head buffer's first capacity, as a connection allocates it.
pub const INITIAL_HEAD_BUFFER: usize = head::INITIAL_HEAD_BUFFER;
/// The most a head may take.
pub const MAX_HEAD: usize = head::MAX_HEAD;

/// What the lean push path makes of the start of a connection's read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushVerdict {
    /// Only the empty lines allowed before a request, or nothing.
    Nothing,
    /// The start of a head: more bytes needed.
    Head,
    /// A whole head whose body is not all in: its length and the body's.
    Body { head: usize, body: usize },
    /// A whole push: the head's length (empty lines before it included) and the body's.
    Push { head: usize, body: usize },
    /// Not for the lean path: hyper gets the connection from here.
    Other,
    /// A `Content-Length` over `max_body`.
    TooLarge,
    /// The authorization hook refused it (never: this entry point has none).
    Refused,
}

/// The push path's parser on `buf`, for a route at `path` taking bodies up to `max_body`.
pub fn push_next(buf: &[u8], path: &str, max_body: usize) -> PushVerdict {
    let route = super::PushRoute::new(path).max_body_bytes(max_body);
    match super::push::next(buf, &route) {
        super::push::Next::Nothing => PushVerdict::Nothing,
        super::push::Next::Head => PushVerdict::Head,
        super::push::Next::Body { head, body } => PushVerdict::Body { head, body },
        super::push::Next::Push { head, body } => PushVerdict::Push { head, body },
        super::push::Next::Other => PushVerdict::Other,
        super::push::Next::TooLarge => PushVerdict::TooLarge,
        super::push::Next::Refused(_) => PushVerdict::Refused,
    }
}

/// How the client's bytes end once all are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closes its side.
    Eof,
    /// Reading fails (a reset connection).
    Error,
}

/// What the head reader decided.
#[derive(Debug)]
pub enum Verdict {
    /// An event-stream request, with its head.
    Events(Box<Parts>),
    /// `POST` of the push path (given one): the lean push path gets the connection.
    Push,
    /// Anything else: hyper gets the connection.
    Other,
    /// The client closed before a route was known.
    Closed,
    /// The head passed its limit.
    TooLarge,
    /// An event-stream request line passed the head's limit.
    UriTooLong,
    /// httparse refused the head.
    Parse(httparse::Error),
    /// httparse took it, `http` refused a part.
    Malformed(&'static str),
    /// The read failed.
    Io(io::ErrorKind),
}

/// The verdict and what the reader did to reach it.
#[derive(Debug)]
pub struct Outcome {
    /// What it decided.
    pub verdict: Verdict,
    /// The bytes it read, in the buffer a connection replays to hyper (for [`Verdict::Other`]).
    pub read: Vec<u8>,
    /// The buffer's capacity at the end.
    pub capacity: usize,
    /// The most bytes any one read offered to take.
    pub largest_read: usize,
}

/// Runs the head reader of a connection to `events_path` (and `push_path`, if any) over `chunks`, as a socket would
/// deliver them (each chunk after the first arriving only after the reader has waited once), then
/// `end`.
///
/// # Panics
///
/// If the reader waits when the source has more to give (it would hang on a real socket) or
/// reads into a full buffer (a zero-length read would look like the end of the stream).
pub fn read_route(
    chunks: &[&[u8]],
    end: End,
    events_path: &str,
    push_path: Option<&str>,
) -> Outcome {
    let mut source = Source {
        chunks: chunks.iter().copied().filter(|c| !c.is_empty()).collect(),
        wait: false,
        end,
        largest_read: 0,
    };
    let mut buf = Vec::with_capacity(INITIAL_HEAD_BUFFER);
    let result = {
        let paths = head::Paths {
            events: events_path,
            push: push_path,
        };
        let mut future = pin!(head::read_route(&mut source, &mut buf, paths));
        let mut cx = Context::from_waker(Waker::noop());
        // One poll per chunk, and one for the end.
        let mut polls = 0;
        loop {
            if let Poll::Ready(result) = future.as_mut().poll(&mut cx) {
                break result;
            }
            polls += 1;
            assert!(
                polls <= chunks.len() + 1,
                "the head reader waits after the source ended"
            );
        }
    };
    let verdict = match result {
        Ok(Route::Events(parts)) => Verdict::Events(parts),
        Ok(Route::Push) => Verdict::Push,
        Ok(Route::Other) => Verdict::Other,
        Err(HeadError::Closed) => Verdict::Closed,
        Err(HeadError::TooLarge) => Verdict::TooLarge,
        Err(HeadError::UriTooLong) => Verdict::UriTooLong,
        Err(HeadError::Parse(error)) => Verdict::Parse(error),
        Err(HeadError::Malformed(what)) => Verdict::Malformed(what),
        Err(HeadError::Io(error)) => Verdict::Io(error.kind()),
    };
    Outcome {
        verdict,
        capacity: buf.capacity(),
        read: buf,
        largest_read: source.largest_read,
    }
}

/// A socket that has `chunks` to give, one per readiness.
struct Source<'a> {
    chunks: VecDeque<&'a [u8]>,
    /// Whether the next read must wait first (a chunk was just used up).
    wait: bool,
    end: End,
    largest_read: usize,
}

impl AsyncRead for Source<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        assert!(buf.remaining() > 0, "a read into a full buffer");
        self.largest_read = self.largest_read.max(buf.remaining());
        if std::mem::take(&mut self.wait) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let Some(chunk) = self.chunks.pop_front() else {
            return Poll::Ready(match self.end {
                End::Eof => Ok(()),
                End::Error => Err(io::ErrorKind::ConnectionReset.into()),
            });
        };
        let (now, rest) = chunk.split_at(chunk.len().min(buf.remaining()));
        buf.put_slice(now);
        if rest.is_empty() {
            self.wait = true;
        } else {
            self.chunks.push_front(rest);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::{End, MAX_HEAD, Verdict, read_route};

    #[test]
    fn a_head_split_anywhere_gets_one_verdict() {
        let head = b"GET /events?uid=1 HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..=head.len() {
            let outcome = read_route(&[&head[..cut], &head[cut..]], End::Eof, "/events", None);
            let Verdict::Events(parts) = outcome.verdict else {
                panic!("{cut}: {:?}", outcome.verdict);
            };
            assert_eq!(parts.uri, "/events?uid=1");
        }
        let outcome = read_route(&[b"POST /push HTTP/1.1\r\n"], End::Error, "/events", None);
        assert!(matches!(outcome.verdict, Verdict::Other));
        let outcome = read_route(&[b"GET /events HTTP/1.1\r\n"], End::Error, "/events", None);
        assert!(matches!(
            outcome.verdict,
            Verdict::Io(std::io::ErrorKind::ConnectionReset)
        ));
    }

    #[test]
    fn the_reader_stops_at_the_limit() {
        let mut head = b"GET /events HTTP/1.1\r\nCookie: ".to_vec();
        head.resize(MAX_HEAD * 2, b'c');
        let outcome = read_route(&[&head], End::Eof, "/events", None);
        assert!(matches!(outcome.verdict, Verdict::TooLarge));
        assert_eq!(outcome.read.len(), MAX_HEAD);
        assert_eq!(outcome.capacity, MAX_HEAD);
    }
}
