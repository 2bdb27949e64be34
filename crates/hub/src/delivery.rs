//! The delivery engine: a push's encoded events into each addressed connection's outbox, the
//! slow-client watchdogs, and the accounting of what was delivered and what failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;

use bytes::{Bytes, BytesMut};
use ssehub_wire::{Decoder, Event, Frame};
use tokio::time::Instant;

use crate::SlowClientPolicy;
use crate::hub::Shared;
use crate::outbox::Connection;
use crate::store::Recipients;

/// Broadcasts reaching fewer connections than this per worker run on the pushing task: below it,
/// handing work to other tasks costs more than it saves.
const CONNECTIONS_PER_WORKER: usize = 2048;

/// Deliveries made by one task of a push, summed at the end.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) total: usize,
    pub(crate) success: usize,
    pub(crate) connections: usize,
    pub(crate) failed: Vec<(Arc<str>, Bytes)>,
    /// Connections cut off by the slow-client policy.
    pub(crate) cut_off: usize,
    /// The wakers of the streams offered something, when the caller wakes them itself (the
    /// store's deliverer: after answering the batch's pushers); `None`: woken at once.
    pub(crate) wakers: Option<Vec<Waker>>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.total += other.total;
        self.success += other.success;
        self.connections += other.connections;
        self.failed.extend(other.failed);
        self.cut_off += other.cut_off;
        if let (Some(wakers), Some(other)) = (&mut self.wakers, other.wakers) {
            wakers.extend(other);
        }
    }

    /// A tally that keeps the streams' wakers for the caller, or wakes them at once.
    fn new(hold_wakes: bool) -> Self {
        Self {
            wakers: hold_wakes.then(Vec::new),
            ..Self::default()
        }
    }
}

impl Shared {
    /// Offers a push's events to every connection `recipients` reaches, each once. `first_seq`
    /// is the first event's place in the store's history, 0 without a store; `pushed`, when the
    /// push was called, with metrics on. With `hold_wakes` the streams are not woken: their
    /// wakers are in the tally's `wakers`, for the caller.
    pub(crate) async fn fan_out(
        self: &Arc<Self>,
        recipients: &Recipients,
        events: &Arc<[Bytes]>,
        first_seq: u64,
        pushed: Option<Instant>,
        hold_wakes: bool,
    ) -> Tally {
        let listed = match recipients {
            Recipients::All => {
                return self.broadcast(events, first_seq, pushed, hold_wakes).await;
            }
            Recipients::Listed(listed) => listed,
        };
        let mut tally = Tally::new(hold_wakes);
        // A connection has one uid, so the uids' connections are distinct.
        for uid in listed.uids() {
            self.registry.for_uid(uid, |connection| {
                self.deliver(connection, events, first_seq, pushed, &mut tally)
            });
        }
        let (uids, topics) = (listed.uids(), listed.topics());
        for topic in topics {
            self.registry.for_topic(topic, |connection| {
                // Once per connection, with no set to fill: skip it here if its uid was named,
                // or if it has a topic of this push that comes earlier (it got the push there).
                let by_uid = !uids.is_empty() && contains(uids, &connection.uid);
                let by_earlier_topic = topics.len() > 1
                    && connection
                        .topics
                        .iter()
                        .take_while(|own| own.as_ref() < topic.as_ref())
                        .any(|own| contains(topics, own));
                if !by_uid && !by_earlier_topic {
                    self.deliver(connection, events, first_seq, pushed, &mut tally);
                }
            });
        }
        tally
    }

    fn deliver(
        self: &Arc<Self>,
        connection: &Arc<Connection>,
        events: &[Bytes],
        first_seq: u64,
        pushed: Option<Instant>,
        tally: &mut Tally,
    ) {
        let (offered, waker) = connection.offer_unwoken(events, first_seq, pushed, &self.rules);
        if let Some(waker) = waker {
            match &mut tally.wakers {
                Some(wakers) => wakers.push(waker),
                None => waker.wake(),
            }
        }
        if offered.closed {
            return;
        }
        tally.total += events.len();
        tally.success += offered.queued;
        if offered.queued + offered.waiting > 0 {
            tally.connections += 1;
        }
        if offered.cut_off {
            tally.cut_off += 1;
            tracing::debug!(uid = %connection.uid, connection = connection.id, "slow client cut off");
        }
        // Checked first: building the chain costs a third of a delivery even when it is empty.
        if !offered.dropped_waiting.is_empty() || offered.failed_from.is_some() {
            let failed = offered.dropped_waiting.into_iter().chain(
                offered
                    .failed_from
                    .map_or(&[][..], |from| &events[from..])
                    .iter()
                    .cloned(),
            );
            tally
                .failed
                .extend(failed.map(|event| (Arc::clone(&connection.uid), event)));
        }
        if let (true, SlowClientPolicy::Wait { timeout, retries }) =
            (offered.start_watchdog, self.rules.policy)
        {
            self.spawn_watchdog(Arc::clone(connection), timeout, retries);
        }
    }

    /// Broadcasts to every connection, over several tasks when there are many.
    async fn broadcast(
        self: &Arc<Self>,
        events: &Arc<[Bytes]>,
        first_seq: u64,
        pushed: Option<Instant>,
        hold_wakes: bool,
    ) -> Tally {
        let shards = self.registry.shard_count();
        let workers = (self.registry.connections() / CONNECTIONS_PER_WORKER)
            .clamp(1, self.config.workers.min(shards));
        let mut handles = Vec::with_capacity(workers - 1);
        for worker in 1..workers {
            let shared = Arc::clone(self);
            let events = Arc::clone(events);
            handles.push(tokio::spawn(async move {
                shared.deliver_shards(worker, workers, &events, first_seq, pushed, hold_wakes)
            }));
        }
        let mut tally = self.deliver_shards(0, workers, events, first_seq, pushed, hold_wakes);
        for handle in handles {
            match handle.await {
                Ok(part) => tally.merge(part),
                Err(error) => tracing::error!(%error, "a broadcast worker failed"),
            }
        }
        tally
    }

    /// Delivers to the shards `first`, `first + step`, ...
    fn deliver_shards(
        self: &Arc<Self>,
        first: usize,
        step: usize,
        events: &[Bytes],
        first_seq: u64,
        pushed: Option<Instant>,
        hold_wakes: bool,
    ) -> Tally {
        let mut tally = Tally::new(hold_wakes);
        for index in (first..self.registry.shard_count()).step_by(step) {
            self.registry.for_shard(index, |connection| {
                self.deliver(connection, events, first_seq, pushed, &mut tally)
            });
        }
        tally
    }

    /// Adds a push's outcome to the counters and reports its failures.
    pub(crate) fn settle(&self, tally: Tally) {
        self.counters.add_total(tally.total as u64);
        self.counters.add_success(tally.success as u64);
        self.report_failed(&tally.failed, tally.cut_off);
    }

    /// Counts failed deliveries, logs them (aggregated) and hands each to the push-failed handler.
    fn report_failed(&self, failed: &[(Arc<str>, Bytes)], cut_off: usize) {
        if failed.is_empty() && cut_off == 0 {
            return;
        }
        self.counters.add_failed(failed.len() as u64);
        self.counters.add_cut_off(cut_off as u64);
        self.failure_log.record(failed.len() as u64, cut_off as u64);
        let Some(handler) = &self.config.push_failed else {
            return;
        };
        // Failures are rare: rebuild each event from its bytes rather than keep a second copy of
        // every queued event around for them; once per event, however many clients it failed for.
        let mut decoded: Vec<(Bytes, Event)> = Vec::new();
        for (uid, bytes) in failed {
            let index = match decoded
                .iter()
                .position(|(seen, _)| seen.as_ptr() == bytes.as_ptr())
            {
                Some(index) => index,
                None => {
                    decoded.push((bytes.clone(), decode_event(bytes)));
                    decoded.len() - 1
                }
            };
            handler(uid, &decoded[index].1);
        }
    }

    /// Times the events waiting for room at one connection until they get in or run out of
    /// retries. One task per connection with waiting events, none otherwise.
    fn spawn_watchdog(
        self: &Arc<Self>,
        connection: Arc<Connection>,
        timeout: std::time::Duration,
        retries: u32,
    ) {
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(deadline) = connection.next_expiry(timeout) {
                tokio::time::sleep_until(deadline).await;
                let expired = connection.expire(Instant::now(), timeout, retries, &shared.rules);
                shared.counters.add_timeout(expired.timeouts);
                let failed: Vec<_> = expired
                    .failed
                    .into_iter()
                    .map(|event| (Arc::clone(&connection.uid), event))
                    .collect();
                shared.report_failed(&failed, usize::from(expired.cut_off));
            }
        });
    }
}

/// The event that `bytes` (one encoded event) carries, as a client would see it.
fn decode_event(bytes: &Bytes) -> Event {
    let mut buf = BytesMut::from(&bytes[..]);
    let mut decoder = Decoder::new()
        .max_line_len(usize::MAX)
        .max_event_len(usize::MAX);
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(Frame::Event(event))) => return event,
            Ok(Some(_)) => {}
            // Unreachable for bytes the encoder wrote; an empty event is still a useful report.
            Ok(None) | Err(_) => return Event::new(""),
        }
    }
}

/// Logs failed deliveries as one line with counts, at most once a second, so that a push failing
/// for 50,000 slow clients (or 50,000 watchdogs giving up at once) does not write 50,000 lines.
/// The first failure after a quiet second is logged at once; the counters always have them all.
#[derive(Debug)]
pub(crate) struct FailureLog {
    start: std::time::Instant,
    /// Milliseconds since `start` before which no line is written.
    quiet_until: AtomicU64,
    failed: AtomicU64,
    cut_off: AtomicU64,
}

impl Default for FailureLog {
    fn default() -> Self {
        Self {
            start: std::time::Instant::now(),
            quiet_until: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cut_off: AtomicU64::new(0),
        }
    }
}

impl FailureLog {
    const INTERVAL_MS: u64 = 1000;

    fn record(&self, failed: u64, cut_off: u64) {
        self.failed.fetch_add(failed, Ordering::Relaxed);
        self.cut_off.fetch_add(cut_off, Ordering::Relaxed);
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let quiet_until = self.quiet_until.load(Ordering::Relaxed);
        if now < quiet_until
            || self
                .quiet_until
                .compare_exchange(
                    quiet_until,
                    now + Self::INTERVAL_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let failed = self.failed.swap(0, Ordering::Relaxed);
        let cut_off = self.cut_off.swap(0, Ordering::Relaxed);
        tracing::warn!(
            target: "ssehub",
            failed,
            cut_off,
            "deliveries failed: clients too slow (at most one such line a second; see the stats)"
        );
    }
}

/// Whether the sorted `names` holds `name`.
fn contains(names: &[Arc<str>], name: &str) -> bool {
    names.binary_search_by(|probe| (**probe).cmp(name)).is_ok()
}
