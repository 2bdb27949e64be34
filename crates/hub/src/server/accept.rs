//! What the accept loop decides before a connection gets its task: whether there is room for
//! it (the connection cap and its `503`), the socket's liveness options, and how long to wait
//! when `accept` itself fails (out of descriptors).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::response::respond_and_close;

/// The first wait after `accept` fails for want of descriptors or memory.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// The longest: short enough to notice freed descriptors soon without a wake-up.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The connections the server has open, against its cap.
#[derive(Debug)]
pub(super) struct Slots {
    max: usize,
    open: AtomicUsize,
    /// Notified when a connection ends: an accept loop backing off from `EMFILE` tries again.
    freed: Notify,
}

/// One open connection's place; gives it back when dropped.
#[derive(Debug)]
pub(super) struct Slot(Arc<Slots>);

impl Slots {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// A place for a new connection, or `None` when `max` are open.
    pub(super) fn take(self: &Arc<Self>) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }

    /// Resolves when a connection ends.
    pub(super) async fn freed(&self) {
        self.freed.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

/// The waits between failed accepts: 5 ms doubling up to 1 s, from the start again after an
/// accept succeeds. A failing `accept` returns at once, so retrying without a wait would spin
/// a core; a fixed long wait would leave clients in the backlog long after descriptors free up.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    /// The wait before the next attempt.
    pub(super) fn next(&mut self) -> Duration {
        let wait = self.next.unwrap_or(FIRST_BACKOFF);
        self.next = Some((wait * 2).min(MAX_BACKOFF));
        wait
    }

    /// Whether the last attempt failed (the next failure continues a streak).
    pub(super) fn failing(&self) -> bool {
        self.next.is_some()
    }

    pub(super) fn reset(&mut self) {
        self.next = None;
    }
}

/// Sets the accepted socket's liveness options: a peer that vanished (unplugged, its host gone,
/// a NAT that forgot the flow) is dropped within about `timeout`, where the kernel's defaults
/// (keepalive off, retransmissions for about 15 minutes) would keep its socket and stream.
///
/// Keepalive probes start after `timeout / 2` of silence (in whole seconds, as the kernel takes
/// it), one every quarter of that (at least 1 s), four unanswered ending the connection (58 s
/// for the default 60 s); `TCP_USER_TIMEOUT` (Linux) bounds how long sent data may stay
/// unacknowledged, which covers a request or response in flight, where keepalive never probes.
/// An event stream clears it again (`stream.rs`): there the send-queue watch ends a stalled
/// or vanished peer with data in flight, and resets a live one, where the kernel's timeout would
/// also end a live reader's shut window without a word. `tests/vanished_peer.rs` measures both
/// cases with a peer that really vanishes.
pub(super) fn set_liveness(socket: &TcpStream, timeout: Duration) -> io::Result<()> {
    let socket = SockRef::from(socket);
    let idle = (timeout / 2).max(Duration::from_secs(1));
    let keepalive = TcpKeepalive::new()
        .with_time(idle)
        .with_interval((idle / 4).max(Duration::from_secs(1)));
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd"
    ))]
    let keepalive = keepalive.with_retries(4);
    socket.set_tcp_keepalive(&keepalive)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(timeout))?;
    Ok(())
}

/// Answers a connection over the cap with `503` and `Retry-After` without reading its request,
/// and closes it. Its descriptor is already spent; answering is what lets the client tell
/// "busy, come back" from a dead server.
pub(super) async fn refuse(socket: TcpStream, retry_after: u64, write_timeout: Duration) {
    let body = "the server is at its connection limit; try again later";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: {retry_after}\r\n\
         content-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    respond_and_close(socket, response.as_bytes(), write_timeout).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Backoff, Slots, set_liveness};

    #[test]
    fn backoff_doubles_to_a_bound_and_resets() {
        let mut backoff = Backoff::default();
        let waits: Vec<_> = (0..10).map(|_| backoff.next()).collect();
        assert_eq!(waits[0], Duration::from_millis(5));
        assert_eq!(waits[1], Duration::from_millis(10));
        assert_eq!(waits[9], Duration::from_secs(1));
        assert!(backoff.failing());
        backoff.reset();
        assert!(!backoff.failing());
        assert_eq!(backoff.next(), Duration::from_millis(5));
    }

    #[test]
    fn slots_are_counted_and_given_back() {
        let slots = Slots::new(2);
        let a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        assert!(slots.take().is_none());
        drop(a);
        assert!(slots.take().is_some());
    }

    /// The options reach the accepted socket (the kernel reports them back).
    #[tokio::test]
    async fn liveness_options_are_set() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        set_liveness(&socket, Duration::from_secs(60)).unwrap();
        let socket = socket2::SockRef::from(&socket);
        assert!(socket.keepalive().unwrap());
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(30)
        );
        #[cfg(target_os = "linux")]
        {
            assert_eq!(
                socket.tcp_keepalive_interval().unwrap(),
                Duration::from_secs(7)
            );
            assert_eq!(socket.tcp_keepalive_retries().unwrap(), 4);
            assert_eq!(
                socket.tcp_user_timeout().unwrap(),
                Some(Duration::from_secs(60))
            );
        }
    }
}
