//! The delivery engine: a push's encoded events into each addressed connection's outbox, the
//! slow-client watchdogs, and the accounting of what was delivered and what failed.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ssehub_wire::{Decoder, Event, Frame};
use tokio::time::Instant;

use crate::SlowClientPolicy;
use crate::hub::Shared;
use crate::outbox::Connection;

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
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.total += other.total;
        self.success += other.success;
        self.connections += other.connections;
        self.failed.extend(other.failed);
    }
}

impl Shared {
    /// Delivers a push's encoded events to every connection of `uids` (sorted, without
    /// duplicates), or to every connection when `uids` is `None`. `first_seq` is the first
    /// event's place in the store's history, 0 without a store.
    pub(crate) async fn fan_out<S: AsRef<str>>(
        self: &Arc<Self>,
        uids: Option<&[S]>,
        events: &Arc<[Bytes]>,
        first_seq: u64,
    ) -> Tally {
        let Some(uids) = uids else {
            return self.broadcast(events, first_seq).await;
        };
        let mut tally = Tally::default();
        for uid in uids {
            self.registry.for_uid(uid.as_ref(), |connection| {
                self.deliver(connection, events, first_seq, &mut tally)
            });
        }
        tally
    }

    /// Offers a push's events to one connection and records the outcome in `tally`.
    fn deliver(
        self: &Arc<Self>,
        connection: &Arc<Connection>,
        events: &[Bytes],
        first_seq: u64,
        tally: &mut Tally,
    ) {
        let policy = self.config.slow_client;
        let offered = connection.offer(events, first_seq, self.config.connection_buffer, policy);
        if offered.closed {
            return;
        }
        tally.total += events.len();
        tally.success += offered.queued;
        if offered.queued + offered.waiting > 0 {
            tally.connections += 1;
        }
        if let Some(from) = offered.failed_from {
            if policy == SlowClientPolicy::Disconnect {
                tracing::info!(uid = %connection.uid, connection = connection.id, "slow client disconnected");
            }
            tally.failed.extend(
                events[from..]
                    .iter()
                    .map(|event| (Arc::clone(&connection.uid), event.clone())),
            );
        }
        if let (true, SlowClientPolicy::Wait { timeout, retries }) =
            (offered.start_watchdog, policy)
        {
            self.spawn_watchdog(Arc::clone(connection), timeout, retries);
        }
    }

    /// Broadcasts to every connection, over several tasks when there are many.
    async fn broadcast(self: &Arc<Self>, events: &Arc<[Bytes]>, first_seq: u64) -> Tally {
        let shards = self.registry.shard_count();
        let workers = (self.registry.connections() / CONNECTIONS_PER_WORKER)
            .clamp(1, self.config.workers.min(shards));
        let mut handles = Vec::with_capacity(workers - 1);
        for worker in 1..workers {
            let shared = Arc::clone(self);
            let events = Arc::clone(events);
            handles.push(tokio::spawn(async move {
                shared.deliver_shards(worker, workers, &events, first_seq)
            }));
        }
        let mut tally = self.deliver_shards(0, workers, events, first_seq);
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
    ) -> Tally {
        let mut tally = Tally::default();
        for index in (first..self.registry.shard_count()).step_by(step) {
            self.registry.for_shard(index, |connection| {
                self.deliver(connection, events, first_seq, &mut tally)
            });
        }
        tally
    }

    /// Adds a push's outcome to the counters and reports its failures.
    pub(crate) fn settle(&self, tally: Tally) {
        self.counters.add_total(tally.total as u64);
        self.counters.add_success(tally.success as u64);
        for (uid, event) in &tally.failed {
            self.report_failed(uid, std::slice::from_ref(event));
        }
    }

    /// Counts failed deliveries and hands them to the push-failed handler.
    fn report_failed(&self, uid: &str, events: &[Bytes]) {
        if events.is_empty() {
            return;
        }
        self.counters.add_failed(events.len() as u64);
        for bytes in events {
            // Failures are rare: rebuild the event from its bytes rather than keep a second copy
            // of every queued event around for them.
            let event = decode_event(bytes);
            tracing::warn!(uid, id = ?event.id, "push failed: the client is too slow");
            if let Some(handler) = &self.config.push_failed {
                handler(uid, &event);
            }
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
                let expired = connection.expire(Instant::now(), timeout, retries);
                shared.counters.add_timeout(expired.timeouts);
                shared.report_failed(&connection.uid, &expired.failed);
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
