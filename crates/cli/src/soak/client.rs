//! One soak client: its own uid, a stream it drops at random and resumes with `Last-Event-ID`,
//! pauses if it is a slow reader, and a record of every push it received.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use hdrhistogram::Histogram;
use serde::Serialize;
use ssehub_wire::{Decoder, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use super::ledger::{Ledger, Recipient, Seen, parse_data};
use crate::bench::http1::{BodyDecoder, Framing, parse_head};
use crate::bench::now_ns;
use crate::bench::rng::Rng;

/// The type of the event a hub sends when history cannot cover a resume (the hub's
/// `HISTORY_GAP_EVENT_TYPE`; the cli does not depend on the hub crate).
const HISTORY_GAP: &str = "history-gap";

/// A slow reader's receive buffer.
const SLOW_RECEIVE_BUFFER: u32 = 4 * 1024;
/// A slow reader's largest read.
const SLOW_READ: usize = 1024;

/// Where the soak is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Pushing: clients drop and pause at random.
    Running,
    /// Pushes are over: clients read (and resume) until they have caught up.
    Draining,
    /// Clients stop and hand in what they received.
    Finished,
}

/// What every client shares.
#[derive(Debug)]
pub struct Shared {
    pub target: SocketAddr,
    pub host: String,
    /// The stream's path and query, `{uid}` to be replaced.
    pub path: String,
    pub ledger: Arc<Ledger>,
    /// Mean seconds between a client's own drops (0: never).
    pub drop_every: f64,
    /// Mean seconds of a slow client's pauses, and between them.
    pub pause: f64,
    pub pause_every: f64,
    /// Bytes a second a slow client reads while the soak runs (0: no cap).
    pub slow_rate: f64,
    /// A stream silent this long (not even a heartbeat) is taken for dead and reconnected, as
    /// the ssehub client does; `None`: never.
    pub idle_timeout: Option<Duration>,
    pub connect_timeout: Duration,
    pub counters: Counters,
    /// Latency of this sample window (clients that are not slow), in nanoseconds.
    pub latency: Mutex<Histogram<u64>>,
}

/// Counts that the sampler reads while the soak runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Clients that have connected at least once.
    pub started: AtomicU64,
    pub connected: AtomicU64,
    pub connects: AtomicU64,
    pub connect_errors: AtomicU64,
    /// Streams the client dropped on purpose.
    pub drops: AtomicU64,
    /// Streams the server ended (cut off as slow, or restarted).
    pub server_ended: AtomicU64,
    /// Streams given up as dead: nothing, not even a heartbeat, within the idle timeout.
    pub silent: AtomicU64,
    pub received: AtomicU64,
    pub duplicates: AtomicU64,
    pub misdelivered: AtomicU64,
    pub history_gaps: AtomicU64,
    pub other_events: AtomicU64,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What one client hands in at the end.
#[derive(Debug)]
pub struct Outcome {
    pub index: u32,
    pub seen: Seen,
    /// What the client went through, for the verdict's account of a client that lost events.
    pub trace: Trace,
}

/// One client's history in numbers.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Trace {
    pub slow: bool,
    pub connects: u32,
    pub ended_by_server: u32,
    pub given_up_silent: u32,
    pub gap_notices: u32,
    /// When it last received one of the soak's events (ns since the epoch; 0: never).
    pub last_delivery_ns: u64,
    /// Whether it was connected when the run finished.
    pub connected_at_end: bool,
}

/// Runs client `index` until the phase is [`Phase::Finished`].
pub async fn run(
    index: u32,
    source: Ipv4Addr,
    slow: bool,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    mut phase: watch::Receiver<Phase>,
) -> Outcome {
    let mut rng = Rng::new(u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5);
    let mut seen = Seen::new(shared.ledger.len());
    let mut last_id: Option<String> = None;
    let mut first = true;
    let mut trace = Trace {
        slow,
        ..Trace::default()
    };
    let request_path = shared.path.replace("{uid}", &format!("s{index}"));
    loop {
        if *phase.borrow() == Phase::Finished {
            break;
        }
        let opened = {
            let _permit = permits.acquire().await;
            let open = open(&shared, source, slow, &request_path, last_id.as_deref());
            tokio::time::timeout(shared.connect_timeout, open)
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
        };
        let (stream, early, framing) = match opened {
            Ok(opened) => opened,
            Err(reason) => {
                count(&shared.counters.connect_errors);
                tracing::debug!(index, %reason, "connect failed");
                // Back off a little, with jitter, as a real client does.
                let wait = Duration::from_millis(200 + rng.next() % 800);
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    _ = phase.wait_for(|p| *p == Phase::Finished) => break,
                }
            }
        };
        count(&shared.counters.connects);
        trace.connects += 1;
        if first {
            count(&shared.counters.started);
            first = false;
        }
        shared.counters.connected.fetch_add(1, Ordering::Relaxed);
        let mut connection = Connection {
            index,
            body: BodyDecoder::new(framing),
            buf: BytesMut::new(),
            decoder: Decoder::new(),
        };
        let ended = connection
            .read(
                stream,
                early,
                slow,
                &mut rng,
                &shared,
                &mut phase,
                &mut seen,
                &mut last_id,
            )
            .await;
        shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
        match ended {
            End::Dropped => count(&shared.counters.drops),
            End::ByServer => {
                count(&shared.counters.server_ended);
                trace.ended_by_server += 1;
            }
            End::Silent => {
                count(&shared.counters.silent);
                trace.given_up_silent += 1;
            }
            End::Finished => {
                trace.connected_at_end = true;
                break;
            }
        }
        // Reconnect after a short random pause, like a browser's reconnection time.
        let wait = Duration::from_millis(50 + rng.next() % 450);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = phase.wait_for(|p| *p == Phase::Finished) => break,
        }
    }
    trace.gap_notices = seen.gap_notices();
    trace.last_delivery_ns = seen.last_delivery_ns();
    Outcome { index, seen, trace }
}

/// Connects from `source`, asks for the stream (resuming after `last_id`), reads the head.
async fn open(
    shared: &Shared,
    source: Ipv4Addr,
    slow: bool,
    path: &str,
    last_id: Option<&str>,
) -> Result<(TcpStream, Vec<u8>, Framing), String> {
    let socket = TcpSocket::new_v4().map_err(|error| format!("socket: {error}"))?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(|error| format!("bind {source}: {error}"))?;
    if slow {
        // A small window, so that a pause shows at the hub instead of in the kernel's buffers.
        socket
            .set_recv_buffer_size(SLOW_RECEIVE_BUFFER)
            .map_err(|error| format!("SO_RCVBUF: {error}"))?;
    }
    let mut stream = socket
        .connect(shared.target)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let resume = last_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{resume}\r\n",
        shared.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("send: {error}"))?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if stream
            .read_buf(&mut buf)
            .await
            .map_err(|error| format!("read head: {error}"))?
            == 0
        {
            return Err("closed before the response head".into());
        }
        if let Some((head, len)) = parse_head(&buf).map_err(|error| error.to_string())? {
            if head.status != 200 {
                return Err(format!("HTTP status {}", head.status));
            }
            buf.drain(..len);
            return Ok((stream, buf, head.framing));
        }
    }
}

enum End {
    Dropped,
    ByServer,
    /// Nothing arrived within the idle timeout: a connection the server's side may have
    /// abandoned without the client hearing of it.
    Silent,
    Finished,
}

/// One connection's parsing state.
struct Connection {
    index: u32,
    body: BodyDecoder,
    buf: BytesMut,
    decoder: Decoder,
}

impl Connection {
    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
    async fn read(
        &mut self,
        mut stream: TcpStream,
        early: Vec<u8>,
        slow: bool,
        rng: &mut Rng,
        shared: &Shared,
        phase: &mut watch::Receiver<Phase>,
        seen: &mut Seen,
        last_id: &mut Option<String>,
    ) -> End {
        if self.consume(&early, slow, shared, seen, last_id).is_err() {
            return End::ByServer;
        }
        let deadline = |rng: &mut Rng, mean: f64| {
            (mean > 0.0).then(|| Instant::now() + Duration::from_secs_f64(rng.exponential(mean)))
        };
        // Without an id to resume from, a dropped client could not be owed what was pushed while
        // it was away (no hub can know what it missed): drop only once it has one.
        let mut drop_at = None;
        let mut pause_at = if slow {
            deadline(rng, shared.pause_every)
        } else {
            None
        };
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let mut raw = vec![0; 16 * 1024];
        let mut heard_at = Instant::now();
        loop {
            let silent_at = shared.idle_timeout.map(|idle| heard_at + idle);
            if drop_at.is_none() && last_id.is_some() {
                drop_at = deadline(rng, shared.drop_every);
            }
            let running = *phase.borrow() == Phase::Running;
            // A slow reader takes a little at a time, at `slow_rate` bytes a second.
            let capped = slow && running && shared.slow_rate > 0.0;
            let room = if capped { SLOW_READ } else { raw.len() };
            tokio::select! {
                read = stream.read(&mut raw[..room]) => match read {
                    Ok(0) | Err(_) => return End::ByServer,
                    Ok(n) => {
                        heard_at = Instant::now();
                        if self.consume(&raw[..n], slow, shared, seen, last_id).is_err() {
                            return End::ByServer;
                        }
                        if capped {
                            tokio::time::sleep(Duration::from_secs_f64(n as f64 / shared.slow_rate)).await;
                        }
                    }
                },
                () = tokio::time::sleep_until(drop_at.unwrap_or(far)), if running && drop_at.is_some() => {
                    return End::Dropped;
                }
                () = tokio::time::sleep_until(silent_at.unwrap_or(far)), if silent_at.is_some() => {
                    return End::Silent;
                }
                () = tokio::time::sleep_until(pause_at.unwrap_or(far)), if running && pause_at.is_some() => {
                    // A slow reader: it reads nothing for a while; the hub must neither grow nor
                    // lose anything for it.
                    let pause = Duration::from_secs_f64(rng.exponential(shared.pause));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = phase.wait_for(|p| *p != Phase::Running) => {}
                    }
                    pause_at = deadline(rng, shared.pause_every);
                    // It was not listening: the silence of its pause is its own.
                    heard_at = Instant::now();
                }
                changed = phase.changed() => {
                    if changed.is_err() || *phase.borrow() == Phase::Finished {
                        return End::Finished;
                    }
                }
            }
        }
    }

    /// Takes body bytes: decodes the events and checks each delivery.
    fn consume(
        &mut self,
        input: &[u8],
        slow: bool,
        shared: &Shared,
        seen: &mut Seen,
        last_id: &mut Option<String>,
    ) -> Result<(), ()> {
        let buf = &mut self.buf;
        self.body
            .decode(input, |payload| buf.extend_from_slice(payload))
            .map_err(|_| ())?;
        let now = now_ns();
        loop {
            let frame = match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(_) => return Err(()),
            };
            let Frame::Event(event) = frame else { continue };
            if event.event_type() == HISTORY_GAP {
                count(&shared.counters.history_gaps);
                seen.gap_notice(now);
                continue;
            }
            if let Some(id) = &event.id {
                *last_id = Some(id.as_str().to_owned());
            }
            let Some(delivery) = parse_data(&event.data) else {
                count(&shared.counters.other_events);
                continue;
            };
            if let Recipient::Client(client) = delivery.recipient
                && client != self.index
            {
                count(&shared.counters.misdelivered);
                continue;
            }
            if delivery.seq >= shared.ledger.len() {
                count(&shared.counters.other_events);
            } else if seen.insert(delivery.seq) {
                seen.delivered_at(now);
                count(&shared.counters.received);
                if slow {
                    continue; // a slow reader's latency is its own doing
                }
                let mut latency = shared
                    .latency
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                latency.saturating_record(now.saturating_sub(delivery.ts_ns).max(1_000));
            } else {
                count(&shared.counters.duplicates);
            }
        }
    }
}
