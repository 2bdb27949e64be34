//! One SSE client: it connects from its own source address, reads the response head, then
//! parses the stream and counts every delivery.
//!
//! A client is one task with a few dozen bytes of parser state and a bitset of the pushes it has
//! seen; it has no read buffer of its own. When its socket is readable it reads into a buffer
//! shared by all clients of the worker thread, which works because the parser keeps nothing of
//! the bytes it has seen and the buffer is never held across an `.await`.

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use super::http1::{BodyDecoder, Framing, HttpError, parse_head};
use super::now_ns;
use super::recipients::Recipients;
use super::report::Tally;
use super::sse::{Parsed, SseParser};

/// The size of each worker thread's read buffer: large enough that a burst of events for one
/// client is read in one call.
const READ_BUF_LEN: usize = 16 * 1024;

/// Reads per wake-up before the client lets the others run.
const READS_PER_WAKE: usize = 8;

thread_local! {
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUF_LEN].into_boxed_slice());
}

/// What every client shares: where to connect, the request, and the counts.
#[derive(Debug)]
pub struct Shared {
    /// The SSE server.
    pub target: SocketAddr,
    /// The `GET` request, written as is (in a uni-cast run, with `{client}` replaced by the
    /// client's index).
    pub request: Box<[u8]>,
    /// The time limit of one client's connection and response head.
    pub connect_timeout: Duration,
    /// Pushes planned: sequence numbers at or above it are not ours.
    pub pushes_planned: u64,
    /// The run's pushes carry an event type (`--typed`): only typed events count, and untyped
    /// ones only without it, so two publishers' stamped events can share the streams.
    pub typed: bool,
    /// When publishing started, ns since the UNIX epoch; 0 before. Events stamped earlier are not
    /// this run's pushes (a server replaying a previous run's events, for instance).
    pub publish_start_ns: AtomicU64,
    /// Clients whose stream ended or failed after they connected.
    pub dropped: AtomicU64,
    /// Counts by group of clients, so that threads rarely wait for the same lock.
    pub tallies: Box<[Mutex<Tally>]>,
    /// In a uni-cast run: who each push is for, and how many of them got it.
    pub unicast: Option<Unicast>,
}

/// What the clients of a uni-cast run share.
#[derive(Debug)]
pub struct Unicast {
    /// Who each push is for: a delivery to anyone else is misdelivered.
    pub recipients: Recipients,
    /// First deliveries of each push to a client it was for (at most K ≤ 255 each): at the end,
    /// an acknowledged push's clients that connected minus these were lost.
    pub delivered: Box<[AtomicU8]>,
}

impl Unicast {
    pub fn new(recipients: Recipients, pushes: u64) -> Self {
        Self {
            recipients,
            delivered: (0..pushes).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    /// First deliveries of push `seq` to its clients.
    pub fn delivered(&self, seq: u64) -> u64 {
        usize::try_from(seq)
            .ok()
            .and_then(|seq| self.delivered.get(seq))
            .map_or(0, |count| u64::from(count.load(Ordering::Relaxed)))
    }
}

impl Shared {
    /// The merged counts of every client.
    pub fn total(&self) -> Tally {
        let mut total = Tally::default();
        for tally in &self.tallies {
            total.merge(&lock(tally));
        }
        total
    }

    /// First deliveries so far, over all clients.
    pub fn received(&self) -> u64 {
        self.tallies.iter().map(|tally| lock(tally).received).sum()
    }
}

fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    // A panic while holding the lock leaves plain counters behind: still worth reporting.
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How client `.0`'s connection attempt ended: `Err` says why it failed.
pub type ConnectOutcome = (usize, Result<(), String>);

/// Runs client `index`: connects from `source` (at most as many at once as `permits` allows),
/// reports the outcome on `outcome`, then reads until the stream ends or the runtime stops.
pub async fn run_client(
    index: usize,
    source: Ipv4Addr,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    outcome: mpsc::UnboundedSender<ConnectOutcome>,
) {
    let opened = {
        // The semaphore is never closed; without a permit, connecting anyway is still right.
        let _permit = permits.acquire().await;
        tokio::time::timeout(shared.connect_timeout, open(index, source, &shared))
            .await
            .unwrap_or_else(|_| Err("timed out connecting or waiting for the response head".into()))
    };
    let (mut stream, early, framing) = match opened {
        Ok(opened) => opened,
        Err(reason) => {
            let _ = outcome.send((index, Err(reason)));
            return;
        }
    };
    let _ = outcome.send((index, Ok(())));
    drop(outcome);

    let mut client = Client {
        index: index as u64,
        body: BodyDecoder::new(framing),
        sse: SseParser::new(),
        seen: Bitset::new(shared.pushes_planned),
        scratch: Vec::new(),
    };
    let tally = &shared.tallies[index % shared.tallies.len()];
    let start_ns = shared.publish_start_ns.load(Ordering::Acquire);
    let ended = match client.consume(&early, now_ns(), start_ns, &shared, tally) {
        Ok(()) => {
            drop(early);
            client.read(&mut stream, &shared, tally).await
        }
        Err(reason) => reason,
    };
    shared.dropped.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(index, %ended, "client stream ended");
}

/// Connects, sends the request, reads the response head. Returns the stream, the body bytes
/// read with the head, and the body's framing.
async fn open(
    index: usize,
    source: Ipv4Addr,
    shared: &Shared,
) -> Result<(TcpStream, Vec<u8>, Framing), String> {
    let socket = TcpSocket::new_v4().map_err(|error| format!("socket: {error}"))?;
    // Binding a distinct loopback address per client spreads connections over many
    // (address, port) pairs, so ephemeral ports never run out.
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(|error| format!("bind {source}: {error}"))?;
    let mut stream = socket
        .connect(shared.target)
        .await
        .map_err(|error| format!("connect to {}: {error}", shared.target))?;
    // A uni-cast client subscribes under its own uid: one small allocation per connection.
    let own_request;
    let request: &[u8] = if shared.unicast.is_some() {
        own_request =
            String::from_utf8_lossy(&shared.request).replace("{client}", &index.to_string());
        own_request.as_bytes()
    } else {
        &shared.request
    };
    stream
        .write_all(request)
        .await
        .map_err(|error| format!("send request: {error}"))?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let read = stream
            .read_buf(&mut buf)
            .await
            .map_err(|error| format!("read response head: {error}"))?;
        if read == 0 {
            return Err("connection closed before the response head".into());
        }
        if let Some((head, len)) = parse_head(&buf).map_err(|error| error.to_string())? {
            if !(200..300).contains(&head.status) {
                return Err(format!("HTTP status {}", head.status));
            }
            buf.drain(..len);
            return Ok((stream, buf, head.framing));
        }
    }
}

/// The state of one connected client.
struct Client {
    index: u64,
    body: BodyDecoder,
    sse: SseParser,
    seen: Bitset,
    /// Room for a random run's recipients of a push, to check a delivery against.
    scratch: Vec<u64>,
}

impl Client {
    /// Reads until the stream ends or fails; returns why it ended.
    ///
    /// `poll_read` rather than `readable` + `try_read`: a read that does not fill the buffer
    /// shows the socket is drained, so tokio waits for the next readiness without the second
    /// `read` that would return `EAGAIN`. That halves the generator's system calls.
    async fn read(
        &mut self,
        stream: &mut TcpStream,
        shared: &Shared,
        tally: &Mutex<Tally>,
    ) -> String {
        std::future::poll_fn(|cx| {
            let start_ns = shared.publish_start_ns.load(Ordering::Acquire);
            READ_BUF.with_borrow_mut(|buf| {
                for _ in 0..READS_PER_WAKE {
                    let mut read = ReadBuf::new(buf);
                    match Pin::new(&mut *stream).poll_read(cx, &mut read) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(error)) => return Poll::Ready(error.to_string()),
                        Poll::Ready(Ok(())) if read.filled().is_empty() => {
                            return Poll::Ready("closed by the server".to_owned());
                        }
                        // One clock read per read, not per event: events read together
                        // arrived together.
                        Poll::Ready(Ok(())) => {
                            if let Err(reason) =
                                self.consume(read.filled(), now_ns(), start_ns, shared, tally)
                            {
                                return Poll::Ready(reason);
                            }
                        }
                    }
                }
                // A busy stream lets the other clients run, and comes back at once.
                cx.waker().wake_by_ref();
                Poll::Pending
            })
        })
        .await
    }

    /// Parses bytes read at `now_ns` and counts the events they complete. The tally is locked
    /// once for all of them, and only if there is an event.
    fn consume(
        &mut self,
        bytes: &[u8],
        now_ns: u64,
        start_ns: u64,
        shared: &Shared,
        tally: &Mutex<Tally>,
    ) -> Result<(), String> {
        let mut guard: Option<MutexGuard<'_, Tally>> = None;
        let Self {
            index,
            body,
            sse,
            seen,
            scratch,
        } = self;
        let mut unicast = shared.unicast.as_ref().map(|unicast| Addressee {
            unicast,
            client: *index,
            scratch,
        });
        body.decode(bytes, |payload| {
            sse.feed(payload, |event| {
                let tally = guard.get_or_insert_with(|| lock(tally));
                count(
                    event,
                    now_ns,
                    start_ns,
                    shared.typed,
                    seen,
                    unicast.as_mut(),
                    tally,
                );
            });
        })
        .map_err(|error: HttpError| error.to_string())?;
        if body.is_done() {
            return Err("the server ended the stream".into());
        }
        Ok(())
    }
}

/// A uni-cast client, as a delivery is checked against who the push was for.
struct Addressee<'a> {
    unicast: &'a Unicast,
    client: u64,
    scratch: &'a mut Vec<u64>,
}

/// Counts one event received at `now_ns`; in a uni-cast run, by client `addressee`. Only
/// events typed as `typed` says are this run's.
fn count(
    event: Parsed,
    now_ns: u64,
    start_ns: u64,
    typed: bool,
    seen: &mut Bitset,
    mut addressee: Option<&mut Addressee<'_>>,
    tally: &mut Tally,
) {
    match event {
        Parsed::Stamped {
            seq,
            ts,
            typed: event_typed,
        } if event_typed == typed && start_ns != 0 && ts >= start_ns && seq < seen.len() => {
            if let Some(addressee) = addressee.as_deref_mut()
                && !addressee
                    .unicast
                    .recipients
                    .includes(seq, addressee.client, addressee.scratch)
            {
                // Somebody else's push: the server broke its promise. Not a delivery.
                tally.misdelivered += 1;
                return;
            }
            if seen.insert(seq) {
                if let Some(counter) = addressee.and_then(|addressee| {
                    usize::try_from(seq)
                        .ok()
                        .and_then(|seq| addressee.unicast.delivered.get(seq))
                }) {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                tally.received += 1;
                tally.latency.saturating_record(now_ns.saturating_sub(ts));
                tally.last_receive_ns = tally.last_receive_ns.max(now_ns);
            } else {
                tally.duplicates += 1;
            }
        }
        _ => tally.other += 1,
    }
}

/// The pushes a client has received: one bit per sequence number.
struct Bitset {
    words: Box<[u64]>,
    len: u64,
}

impl Bitset {
    fn new(len: u64) -> Self {
        let words = usize::try_from(len.div_ceil(64)).unwrap_or(0);
        Self {
            words: vec![0; words].into_boxed_slice(),
            len,
        }
    }

    fn len(&self) -> u64 {
        self.len
    }

    /// Sets bit `index`; `true` if it was not set (callers check `index < len`).
    fn insert(&mut self, index: u64) -> bool {
        let Some(word) = usize::try_from(index / 64)
            .ok()
            .and_then(|word| self.words.get_mut(word))
        else {
            return false;
        };
        let bit = 1u64 << (index % 64);
        let new = *word & bit == 0;
        *word |= bit;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset() {
        let mut seen = Bitset::new(130);
        assert_eq!(seen.len(), 130);
        assert!(seen.insert(0));
        assert!(!seen.insert(0));
        assert!(seen.insert(129));
        assert!(seen.insert(64));
        assert!(!seen.insert(129));
        assert!(!seen.insert(1000));
        assert!(Bitset::new(0).words.is_empty());
    }

    #[test]
    fn counting() {
        let mut seen = Bitset::new(4);
        let mut tally = Tally::default();
        let start = 1_000_000_000;
        let stamped = |seq, ts| Parsed::Stamped {
            seq,
            ts,
            typed: false,
        };
        let now = start + 5_000_000;
        for event in [
            stamped(0, start + 1_000_000),
            stamped(1, start + 2_000_000),
            stamped(1, start + 2_000_000),
            stamped(3, start),
            stamped(2, start - 1), // before this run
            stamped(4, start + 1), // beyond the plan
            Parsed::Other,
        ] {
            count(event, now, start, false, &mut seen, None, &mut tally);
        }
        assert_eq!((tally.received, tally.duplicates, tally.other), (3, 1, 3));
        assert_eq!(tally.last_receive_ns, now);
        assert_eq!(tally.latency.len(), 3);
        assert_eq!(
            tally.latency.max(),
            tally.latency.highest_equivalent(5_000_000)
        );
        // Before publishing starts, nothing counts as a delivery.
        count(
            stamped(2, start),
            now,
            0,
            false,
            &mut seen,
            None,
            &mut tally,
        );
        assert_eq!((tally.received, tally.other), (3, 4));
        assert_eq!(tally.misdelivered, 0);
        // Another publisher's typed events are not this run's, nor, in a typed run, untyped ones.
        let typed = Parsed::Stamped {
            seq: 2,
            ts: start,
            typed: true,
        };
        count(typed, now, start, false, &mut seen, None, &mut tally);
        assert_eq!((tally.received, tally.other), (3, 5));
        count(
            stamped(2, start),
            now,
            start,
            true,
            &mut seen,
            None,
            &mut tally,
        );
        assert_eq!((tally.received, tally.other), (3, 6));
        count(typed, now, start, true, &mut seen, None, &mut tally);
        assert_eq!((tally.received, tally.other), (4, 6));
    }

    #[test]
    fn uni_cast_deliveries_are_checked_against_their_clients() {
        // 4 clients, 2 per push in turn: push 0 is for clients 0 and 1, push 1 for 2 and 3, ...
        let unicast = Unicast::new(
            Recipients::new(4, 2, crate::bench::recipients::Order::RoundRobin, 1),
            4,
        );
        let start = 1_000_000_000;
        let now = start + 1_000;
        let mut tally = Tally::default();
        let mut scratch = Vec::new();
        let mut client_1 = Addressee {
            unicast: &unicast,
            client: 1,
            scratch: &mut scratch,
        };
        let mut seen = Bitset::new(4);
        for seq in [0, 1, 2, 0, 3] {
            let event = Parsed::Stamped {
                seq,
                ts: start,
                typed: false,
            };
            count(
                event,
                now,
                start,
                false,
                &mut seen,
                Some(&mut client_1),
                &mut tally,
            );
        }
        // Pushes 0 and 2 are client 1's (0 twice), 1 and 3 are not.
        assert_eq!(
            (tally.received, tally.duplicates, tally.misdelivered),
            (2, 1, 2)
        );
        let delivered: Vec<u64> = (0..4).map(|seq| unicast.delivered(seq)).collect();
        assert_eq!(delivered, [1, 0, 1, 0]);
        // A misdelivery is not a delivery: it leaves nothing behind for the push's own client.
        assert_eq!(tally.latency.len(), 2);
    }
}
