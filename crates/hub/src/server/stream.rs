//! One event-stream connection after its head: the hub's chunks written to the socket as they
//! come, the socket watched for the client leaving.

use std::fmt;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::hub::Shared;
use crate::{Hub, Subscription};

/// How many bytes a client may send after its request before it is cut off: an event-stream
/// client has nothing more to say, and what it sends is read only to be thrown away.
const MAX_DISCARDED: usize = 64 * 1024;

/// Writes a subscription to its socket until either side ends it. It holds no buffer of its
/// own: the chunk being written is the hub's shared bytes, and the client's input is read into
/// the stack and dropped.
pub(super) struct EventStream {
    socket: TcpStream,
    /// The subscription, until the hub ends the stream.
    feed: Feed,
    /// What is left to write of the current chunk.
    pending: Bytes,
    write_timeout: Duration,
    /// Made when a write first blocks (an idle or keeping-up stream never has one).
    stall: Option<Pin<Box<Sleep>>>,
    /// Whether `stall` is armed for the current wait (since the last byte written).
    stalled: bool,
    /// The kernel's send queue when `stall` was armed: if it shrank when the timer fires, the
    /// client is reading and the wait starts again.
    unsent_at_stall: Option<usize>,
    /// Watches the kernel's send queue while it holds bytes the client has not taken: writes
    /// into a large send buffer succeed long after the client stopped reading, so a stall can
    /// start without a write ever waiting. Armed by a write, it looks every `write_timeout`.
    /// `None` while the queue is empty: an idle stream keeps no watch (a word, not a timer).
    queue_watch: Option<Box<QueueWatch>>,
    /// Whether the head is still to be joined with the opening chunk.
    opening: bool,
    discarded: usize,
}

/// Where a stream's chunks come from.
// A stream is `Live` for all of its life but its last moment, and the writer is boxed once:
// boxing the subscription to shrink `Ended` would cost every stream an allocation.
#[allow(clippy::large_enum_variant)]
enum Feed {
    Live(Subscription),
    /// The hub ended the stream (or there was none): the subscription is dropped, and only the
    /// hub is kept, to count a reset. No bigger than `Live`: an idle stream pays nothing for it.
    Ended(Arc<Shared>),
}

/// The watch on the kernel's send queue while it holds bytes.
struct QueueWatch {
    timer: Pin<Box<Sleep>>,
    /// The last two looks, half a `write_timeout` apart. The client took something over the
    /// last timeout iff the queue now is below the older look's plus what was written since.
    looks: [Option<Look>; 2],
    /// Bytes written since the watch was armed.
    written: usize,
}

/// One look at the kernel's send queue.
#[derive(Debug, Clone, Copy)]
struct Look {
    unsent: usize,
    /// [`QueueWatch::written`] then.
    written: usize,
}

/// How an event stream ended.
#[derive(Debug)]
pub(super) enum End {
    /// The hub ended the stream (closing, or the slow-client policy); everything was written.
    Hub,
    /// The client closed its side.
    ClientClosed,
    /// The socket took nothing for the write timeout: the client does not read.
    WriteTimeout,
    /// The client sent more than [`MAX_DISCARDED`] bytes after its request.
    TooMuchInput,
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hub => f.write_str("the hub ended the stream"),
            Self::ClientClosed => f.write_str("the client closed the connection"),
            Self::WriteTimeout => f.write_str("the client read nothing within the write timeout"),
            Self::TooMuchInput => write!(
                f,
                "the client sent more than {MAX_DISCARDED} bytes after its request"
            ),
            Self::Io(error) => write!(f, "socket error: {error}"),
        }
    }
}

impl EventStream {
    /// Writes `head` (the response head), then the subscription's chunks. Without a
    /// subscription the stream ends after the head.
    pub(super) fn new(
        socket: TcpStream,
        subscription: Option<Subscription>,
        hub: &Hub,
        head: Bytes,
        write_timeout: Duration,
    ) -> Self {
        // The kernel's TCP_USER_TIMEOUT (set on every accepted socket) also ends a connection
        // whose live peer kept its window (nearly) shut that long, and tells it nothing: the
        // client then waits for ever. On a stream the send-queue watch decides instead, and
        // resets, which a live client hears; a vanished one is ended by it all the same.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Err(error) = socket2::SockRef::from(&socket).set_tcp_user_timeout(None) {
            tracing::debug!(%error, "could not clear TCP_USER_TIMEOUT on an event stream");
        }
        let feed = match subscription {
            Some(subscription) => Feed::Live(subscription),
            None => Feed::Ended(Arc::clone(hub.shared())),
        };
        Self {
            socket,
            feed,
            pending: head,
            write_timeout,
            stall: None,
            stalled: false,
            unsent_at_stall: None,
            queue_watch: None,
            opening: true,
            discarded: 0,
        }
    }

    /// Joins the head with the subscription's opening chunk (a comment, ready at once), so the
    /// client gets both in one write.
    fn join_opening(&mut self, cx: &mut Context<'_>) {
        self.opening = false;
        let Feed::Live(subscription) = &mut self.feed else {
            return;
        };
        if let Poll::Ready(Some(chunk)) = Pin::new(subscription).poll_next(cx) {
            let mut joined = BytesMut::with_capacity(self.pending.len() + chunk.len());
            joined.extend_from_slice(&self.pending);
            joined.extend_from_slice(&chunk);
            self.pending = joined.freeze();
        }
        // `None` (an ended stream) is seen again by the next poll, after the head is written.
    }

    /// Reads and drops whatever the client sent; `Ready` when the stream must end.
    fn poll_client(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        loop {
            // On the stack only while polled: an idle connection keeps no read buffer. Left
            // uninitialised: zeroing it on every wake-up was 3 % of a delivery's user time.
            let mut scratch = [MaybeUninit::<u8>::uninit(); 512];
            let mut buf = ReadBuf::uninit(&mut scratch);
            match Pin::new(&mut self.socket).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    return Poll::Ready(End::ClientClosed);
                }
                Poll::Ready(Ok(())) => {
                    self.discarded += buf.filled().len();
                    if self.discarded > MAX_DISCARDED {
                        return Poll::Ready(End::TooMuchInput);
                    }
                }
                Poll::Ready(Err(error)) => return Poll::Ready(End::Io(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Writes chunks until the subscription has none ready or the socket is full.
    fn poll_write_chunks(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        if self.opening {
            self.join_opening(cx);
        }
        loop {
            if self.pending.is_empty() {
                let Feed::Live(subscription) = &mut self.feed else {
                    return match Pin::new(&mut self.socket).poll_shutdown(cx) {
                        Poll::Ready(Ok(())) => Poll::Ready(End::Hub),
                        Poll::Ready(Err(error)) => Poll::Ready(End::Io(error)),
                        Poll::Pending => Poll::Pending,
                    };
                };
                match Pin::new(&mut *subscription).poll_next(cx) {
                    Poll::Ready(Some(chunk)) => self.pending = chunk,
                    Poll::Ready(None) => {
                        // Leaves the hub now: `Hub::close` waits for this.
                        self.feed = Feed::Ended(Arc::clone(subscription.shared()));
                        continue;
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            match Pin::new(&mut self.socket).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(End::Io(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(written)) => {
                    self.pending.advance(written);
                    // The write timeout measures progress, not chunks: any byte taken restarts
                    // it, so a slow but steady reader of a large chunk is not cut off.
                    self.stalled = false;
                    match &mut self.queue_watch {
                        Some(watch) => watch.written += written,
                        None => self.arm_queue_watch(),
                    }
                }
                Poll::Ready(Err(error)) => return Poll::Ready(End::Io(error)),
                Poll::Pending => return self.poll_stall(cx),
            }
        }
    }

    /// The socket is full: `Ready` once the client took nothing for longer than the timeout,
    /// neither from us (no byte written) nor from the kernel's send queue (which can hold
    /// megabytes, and reports room only once half of it is free: see `unsent.rs`).
    /// Starts watching the send queue from now, if it holds anything. Once armed, the watch
    /// re-arms itself when it fires, so a busy stream touches the timer wheel once per half
    /// `write_timeout`, not on every write.
    fn arm_queue_watch(&mut self) {
        let first =
            super::unsent::unsent_bytes(&self.socket).map(|unsent| Look { unsent, written: 0 });
        // No way to look (not Linux): writes that wait decide alone. Nothing held: the client
        // took it all already (the common case on a fast link), so no watch and no allocation;
        // the next write looks again.
        let Some(first) = first.filter(|first| first.unsent > 0) else {
            return;
        };
        self.queue_watch = Some(Box::new(QueueWatch {
            timer: Box::pin(tokio::time::sleep_until(self.next_look())),
            looks: [None, Some(first)],
            written: 0,
        }));
    }

    /// Every half timeout, so that a stall is seen within 1.5 × write_timeout of its start:
    /// before the kernel's own TCP_USER_TIMEOUT (2 × write_timeout by default) ends the
    /// connection without telling the client.
    fn next_look(&self) -> Instant {
        Instant::now() + self.write_timeout / 2
    }

    /// `Ready` when the kernel's send queue held unsent bytes for a whole `write_timeout` while
    /// the client took none of them: it stopped reading, whether or not our writes wait.
    fn poll_queue_watch(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        loop {
            let next = self.next_look();
            let Some(watch) = &mut self.queue_watch else {
                return Poll::Pending;
            };
            ready!(watch.timer.as_mut().poll(cx));
            let now = super::unsent::unsent_bytes(&self.socket).map(|unsent| Look {
                unsent,
                written: watch.written,
            });
            let Some(now) = now.filter(|now| now.unsent > 0) else {
                self.queue_watch = None; // drained: nothing to watch until the next write
                return Poll::Pending;
            };
            if let Some(then) = watch.looks[0] {
                let written_since = now.written - then.written;
                if now.unsent >= then.unsent.saturating_add(written_since) {
                    return Poll::Ready(End::WriteTimeout);
                }
            }
            watch.looks = [watch.looks[1], Some(now)];
            watch.timer.as_mut().reset(next);
        }
    }

    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        loop {
            if !self.stalled {
                self.stalled = true;
                self.unsent_at_stall = super::unsent::unsent_bytes(&self.socket);
                let deadline = Instant::now() + self.write_timeout;
                match &mut self.stall {
                    Some(timer) => timer.as_mut().reset(deadline),
                    None => self.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
            }
            let Some(timer) = &mut self.stall else {
                return Poll::Pending;
            };
            ready!(timer.as_mut().poll(cx));
            let unsent = super::unsent::unsent_bytes(&self.socket);
            match (self.unsent_at_stall, unsent) {
                // The queue shrank: the client is reading, only slower than the kernel lets us
                // see. Wait again from now.
                (Some(before), Some(now)) if now < before => self.stalled = false,
                _ => return Poll::Ready(End::WriteTimeout),
            }
        }
    }
}

impl Future for EventStream {
    type Output = End;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = self.get_mut();
        let end = match this.poll_client(cx) {
            Poll::Ready(end) => Poll::Ready(end),
            Poll::Pending => match this.poll_write_chunks(cx) {
                Poll::Pending => this.poll_queue_watch(cx),
                ready => ready,
            },
        };
        if let Poll::Ready(End::WriteTimeout) = end {
            // Reset rather than close: a FIN would wait behind the bytes the client is not
            // reading, and the kernel may then give the socket up without a word (its
            // TCP_USER_TIMEOUT counts a zero window too), leaving the client waiting for ever.
            // A reset reaches it at once; it reconnects and resumes from its Last-Event-ID.
            let _ = socket2::SockRef::from(&this.socket).set_linger(Some(Duration::ZERO));
            let hub = match &this.feed {
                Feed::Live(subscription) => subscription.shared(),
                Feed::Ended(hub) => hub,
            };
            hub.counters.add_stalled_reset();
        }
        end
    }
}
