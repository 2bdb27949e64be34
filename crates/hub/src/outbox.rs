//! One live connection's bounded outbox: where pushes leave events and the stream picks them up.
//!
//! Bounded twice, in events (the connection buffer) and in bytes (`max_queued_bytes`), for the
//! queue and for the waiting area alike. A drain copies at most [`COALESCE_LIMIT`] bytes into a
//! private chunk, so a connection owed a large backlog never copies all of it at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::time::{Duration, Instant};

use crate::SlowClientPolicy;

/// Queued events are copied together into one chunk (one write) up to this size; an event that
/// would take a chunk past it goes out on its own, as the shared bytes.
pub(crate) const COALESCE_LIMIT: usize = 64 * 1024;

/// A deque that grew past this many events is replaced by an empty one (which owns no memory)
/// once drained, so that a burst's capacity is given back.
const KEEP_CAPACITY: usize = 32;

/// What a connection may hold and what happens past it; the same for every connection of a hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
///
/// An empty outbox takes a whole push, whatever its size: every valid push reaches an idle
/// client, and what that pins is the push itself, whose bytes all connections share.
pub(crate) struct Rules {
    /// Events the queue holds (the waiting area holds as many more).
    pub(crate) events: usize,
    /// Bytes the queue holds (the waiting area holds as many more).
    pub(crate) bytes: usize,
    pub(crate) policy: SlowClientPolicy,
    /// With a store and resend: a delivery the policy gives up on ends the stream instead of
    /// leaving a hole, so that the client resumes from its last id and the store fills it.
    pub(crate) cut_off_on_failure: bool,
}

/// A live connection as the registry and pushers see it.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) id: u64,
    pub(crate) uid: Arc<str>,
    /// Its topics, sorted, without duplicates (each shared with the registry's topic index).
    pub(crate) topics: Box<[Arc<str>]>,
    outbox: Mutex<Outbox>,
}

#[derive(Debug, Default)]
struct Outbox {
    /// Accepted events, within the rules' events and bytes.
    queue: VecDeque<Queued>,
    queue_bytes: usize,
    /// Events waiting for room under [`SlowClientPolicy::Wait`], within the same bounds.
    overflow: VecDeque<Waiting>,
    overflow_bytes: usize,
    /// Written after everything else when the hub closes (the `close` event).
    last: Option<Bytes>,
    /// The stream's task, when it found nothing to write.
    reader: Option<Waker>,
    /// No more events are accepted; the stream ends once the outbox is empty.
    closed: bool,
    /// A watchdog task is timing the overflow.
    watchdog: bool,
    /// What a resend from the store already sent, so it is not sent again live.
    covered: Option<Box<Covered>>,
    /// With metrics on: when the oldest push with an event here was called, set as the outbox
    /// goes from empty to not; a drain reports it once per chunk. 16 bytes per connection
    /// (with the feature) instead of a time per queued event.
    #[cfg(feature = "metrics")]
    oldest: Option<Instant>,
}

/// Events up to `through` (of `event_type` only, if the resend was filtered) were sent by a
/// resend from the store: drop them if they come live (a push saved before the resend read it
/// may be delivered after).
#[derive(Debug)]
struct Covered {
    through: u64,
    event_type: Option<Box<str>>,
}

impl Covered {
    fn covers(&self, seq: u64, event: &[u8]) -> bool {
        seq != 0
            && seq <= self.through
            && self
                .event_type
                .as_deref()
                .is_none_or(|wanted| wanted.as_bytes() == encoded_event_type(event))
    }
}

/// The type of an event encoded by the hub (`message` without an `event:` line). The encoder
/// writes `id`, `event`, `retry`, then `data`, so the type, if any, is among the first lines.
fn encoded_event_type(event: &[u8]) -> &[u8] {
    for line in event.split(|&b| b == b'\n') {
        if let Some(event_type) = line.strip_prefix(b"event: ") {
            return event_type;
        }
        if line.is_empty() || line.starts_with(b"data") {
            break;
        }
    }
    ssehub_wire::DEFAULT_EVENT_TYPE.as_bytes()
}

/// An accepted event and its place in the store's history (0 without a store).
#[derive(Debug)]
struct Queued {
    seq: u64,
    event: Bytes,
}

#[derive(Debug)]
struct Waiting {
    seq: u64,
    event: Bytes,
    since: Instant,
    /// Expired waits so far.
    timeouts: u32,
}

impl Outbox {
    /// Remembers the stream's waker for the next offer (kept if it is the same task's).
    fn park(&mut self, cx: &Context<'_>) {
        match &self.reader {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => self.reader = Some(cx.waker().clone()),
        }
    }

    /// Closes the outbox and frees what it holds (empty deques own no memory). Returns the
    /// events that were still waiting for room: they were never delivered.
    fn discard(&mut self) -> Vec<Bytes> {
        self.closed = true;
        self.queue = VecDeque::new();
        self.queue_bytes = 0;
        self.overflow_bytes = 0;
        self.last = None;
        #[cfg(feature = "metrics")]
        {
            self.oldest = None;
        }
        std::mem::take(&mut self.overflow)
            .into_iter()
            .map(|waiting| waiting.event)
            .collect()
    }

    fn has_room(&self, event: &Bytes, rules: &Rules) -> bool {
        self.queue.len() < rules.events && self.queue_bytes + event.len() <= rules.bytes
    }

    fn overflow_has_room(&self, event: &Bytes, rules: &Rules) -> bool {
        self.overflow.is_empty()
            || (self.overflow.len() < rules.events
                && self.overflow_bytes + event.len() <= rules.bytes)
    }

    /// Takes events from the front, up to [`COALESCE_LIMIT`] bytes (at least one event).
    /// Returns them with how many came from the overflow.
    fn take_chunk(&mut self) -> Option<(Bytes, usize)> {
        let mut taken = Vec::new();
        let mut len = 0;
        let mut from_overflow = 0;
        loop {
            let next = match self.queue.front() {
                Some(queued) => queued.event.len(),
                None => match self.overflow.front() {
                    Some(waiting) => waiting.event.len(),
                    None => break,
                },
            };
            if !taken.is_empty() && len + next > COALESCE_LIMIT {
                break;
            }
            let event = if let Some(queued) = self.queue.pop_front() {
                self.queue_bytes -= queued.event.len();
                queued.event
            } else if let Some(waiting) = self.overflow.pop_front() {
                self.overflow_bytes -= waiting.event.len();
                from_overflow += 1;
                waiting.event
            } else {
                break;
            };
            len += event.len();
            taken.push(event);
        }
        self.give_back_capacity();
        let chunk = match taken.len() {
            0 => return None,
            // One event: hand over the shared bytes, no copy.
            1 => taken.pop().unwrap_or_default(),
            // Several: one write (one HTTP chunk, one syscall) instead of several.
            _ => {
                let mut chunk = BytesMut::with_capacity(len);
                for event in &taken {
                    chunk.extend_from_slice(event);
                }
                chunk.freeze()
            }
        };
        Some((chunk, from_overflow))
    }

    fn give_back_capacity(&mut self) {
        if self.queue.is_empty() && self.queue.capacity() > KEEP_CAPACITY {
            self.queue = VecDeque::new();
        }
        if self.overflow.is_empty() && self.overflow.capacity() > KEEP_CAPACITY {
            self.overflow = VecDeque::new();
        }
    }
}

impl Waiting {
    /// When the current wait for room runs out.
    fn deadline(&self, timeout: Duration) -> Instant {
        self.since + timeout * (self.timeouts + 1)
    }
}

/// What happened to a push's events at one connection.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Offered {
    /// Events accepted into the queue.
    pub(crate) queued: usize,
    /// Events parked in the overflow, waiting for room.
    pub(crate) waiting: usize,
    /// Index of the first event that failed; all after it failed too. `None`: none failed.
    pub(crate) failed_from: Option<usize>,
    /// The connection was cut off: it ends once the stream sees it.
    pub(crate) cut_off: bool,
    /// Events of earlier pushes that were waiting for room when the connection was cut off.
    pub(crate) dropped_waiting: Vec<Bytes>,
    /// The caller must start the overflow watchdog.
    pub(crate) start_watchdog: bool,
    /// The connection was already closed: nothing was offered.
    pub(crate) closed: bool,
}

/// What the stream found in the outbox.
#[derive(Debug)]
pub(crate) struct Drained {
    /// The next events, in order, as one chunk.
    pub(crate) chunk: Bytes,
    /// How many of the chunk's events came from the overflow (they now count as delivered).
    pub(crate) from_overflow: usize,
    /// Events are still queued after it (a backlog of more than one chunk).
    pub(crate) more: bool,
    /// With metrics on, when the push of the chunk's oldest event was called.
    #[cfg(feature = "metrics")]
    pub(crate) pushed: Option<Instant>,
}

/// Events the watchdog gave up on.
#[derive(Debug, Default)]
pub(crate) struct Expired {
    pub(crate) timeouts: u64,
    pub(crate) failed: Vec<Bytes>,
    /// The connection was cut off (the rules' `cut_off_on_failure`).
    pub(crate) cut_off: bool,
}

impl Connection {
    pub(crate) fn new(id: u64, uid: Arc<str>, topics: Box<[Arc<str>]>) -> Self {
        Self {
            id,
            uid,
            topics,
            outbox: Mutex::new(Outbox::default()),
        }
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // A panic while holding this lock cannot leave the deques inconsistent: keep serving.
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Offers a push's events, in order, under the rules. With a store, `first_seq` is the first
    /// event's `seq` (the others follow on); 0 without. `pushed`: when the push was called, with
    /// metrics on.
    #[cfg(test)]
    pub(crate) fn offer(
        &self,
        events: &[Bytes],
        first_seq: u64,
        pushed: Option<Instant>,
        rules: &Rules,
    ) -> Offered {
        let (offered, waker) = self.offer_unwoken(events, first_seq, pushed, rules);
        if let Some(waker) = waker {
            waker.wake();
        }
        offered
    }

    /// [`Connection::offer`], returning the stream's waker (if it waits) for the caller to wake,
    /// outside the lock: now, or once a whole batch is offered and its pushers answered.
    pub(crate) fn offer_unwoken(
        &self,
        events: &[Bytes],
        first_seq: u64,
        pushed: Option<Instant>,
        rules: &Rules,
    ) -> (Offered, Option<Waker>) {
        let mut offered = Offered::default();
        let waker = {
            let mut outbox = self.outbox();
            if outbox.closed {
                offered.closed = true;
                return (offered, None);
            }
            let idle = outbox.queue.is_empty() && outbox.overflow.is_empty();
            for (index, event) in events.iter().enumerate() {
                let seq = if first_seq == 0 {
                    0
                } else {
                    first_seq + index as u64
                };
                if outbox
                    .covered
                    .as_ref()
                    .is_some_and(|covered| covered.covers(seq, event))
                {
                    offered.queued += 1; // the resend delivered it
                    continue;
                }
                // Once anything waits, later events wait behind it so order is kept.
                if idle || (outbox.overflow.is_empty() && outbox.has_room(event, rules)) {
                    outbox.queue_bytes += event.len();
                    outbox.queue.push_back(Queued {
                        seq,
                        event: event.clone(),
                    });
                    offered.queued += 1;
                    continue;
                }
                match rules.policy {
                    SlowClientPolicy::Wait { retries, .. }
                        if retries > 0 && outbox.overflow_has_room(event, rules) =>
                    {
                        outbox.overflow_bytes += event.len();
                        outbox.overflow.push_back(Waiting {
                            seq,
                            event: event.clone(),
                            since: Instant::now(),
                            timeouts: 0,
                        });
                        offered.waiting += 1;
                    }
                    SlowClientPolicy::Wait { .. } if !rules.cut_off_on_failure => {
                        offered.failed_from = Some(index);
                        break;
                    }
                    _ => {
                        // Drop what it has not read: the client resumes from its Last-Event-ID.
                        offered.dropped_waiting = outbox.discard();
                        offered.cut_off = true;
                        offered.failed_from = Some(index);
                        break;
                    }
                }
            }
            #[cfg(feature = "metrics")]
            if idle && pushed.is_some() && !(outbox.queue.is_empty() && outbox.overflow.is_empty())
            {
                outbox.oldest = pushed;
            }
            #[cfg(not(feature = "metrics"))]
            let _ = pushed;
            if offered.waiting > 0 && !offered.cut_off && !outbox.watchdog {
                outbox.watchdog = true;
                offered.start_watchdog = true;
            }
            outbox.reader.take()
        };
        (offered, waker)
    }

    /// Ready once anything is queued (or the connection closed); registers the stream's waker
    /// otherwise. Takes nothing.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut outbox = self.outbox();
        if !outbox.queue.is_empty() || !outbox.overflow.is_empty() || outbox.closed {
            return Poll::Ready(());
        }
        outbox.park(cx);
        Poll::Pending
    }

    /// Takes the next events as one chunk (all of them, up to [`COALESCE_LIMIT`] bytes), or
    /// registers the stream's waker. `Ready(None)`: the connection is closed and fully drained.
    pub(crate) fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<Option<Drained>> {
        let mut outbox = self.outbox();
        if let Some((chunk, from_overflow)) = outbox.take_chunk() {
            let more = !(outbox.queue.is_empty() && outbox.overflow.is_empty());
            // Emptied: the next push starts the clock again. Not emptied (a backlog over one
            // chunk): the rest keeps the oldest time, an upper bound of its wait.
            #[cfg(feature = "metrics")]
            let pushed = if more {
                outbox.oldest
            } else {
                outbox.oldest.take()
            };
            return Poll::Ready(Some(Drained {
                chunk,
                from_overflow,
                more,
                #[cfg(feature = "metrics")]
                pushed,
            }));
        }
        if outbox.closed {
            return Poll::Ready(outbox.last.take().map(|chunk| Drained {
                chunk,
                from_overflow: 0,
                more: false,
                #[cfg(feature = "metrics")]
                pushed: None,
            }));
        }
        outbox.park(cx);
        Poll::Pending
    }

    /// Drops the events with a `seq` up to `cut` (of `event_type` only, if given), queued now or
    /// offered later: a resend from the store sent them. Returns how many of those dropped now
    /// had waited in the overflow (they count as delivered).
    pub(crate) fn skip_through(&self, cut: u64, event_type: Option<&str>) -> usize {
        let mut outbox = self.outbox();
        let covered = Covered {
            through: outbox
                .covered
                .as_ref()
                .map_or(cut, |covered| covered.through.max(cut)),
            event_type: event_type.map(Box::from),
        };
        let outbox = &mut *outbox;
        let mut dropped_bytes = 0;
        outbox.queue.retain(|queued| {
            let keep = !covered.covers(queued.seq, &queued.event);
            if !keep {
                dropped_bytes += queued.event.len();
            }
            keep
        });
        outbox.queue_bytes -= dropped_bytes;
        let mut from_overflow = 0;
        let mut dropped_bytes = 0;
        outbox.overflow.retain(|waiting| {
            let keep = !covered.covers(waiting.seq, &waiting.event);
            if !keep {
                from_overflow += 1;
                dropped_bytes += waiting.event.len();
            }
            keep
        });
        outbox.overflow_bytes -= dropped_bytes;
        outbox.covered = Some(Box::new(covered));
        outbox.give_back_capacity();
        from_overflow
    }

    /// The bytes of the events queued or waiting for room here.
    #[cfg(feature = "metrics")]
    pub(crate) fn queued_bytes(&self) -> usize {
        let outbox = self.outbox();
        outbox.queue_bytes + outbox.overflow_bytes
    }

    /// Stops accepting events. With `last`, it is written after everything already queued.
    pub(crate) fn close(&self, last: Option<Bytes>) {
        let waker = {
            let mut outbox = self.outbox();
            if outbox.closed {
                return;
            }
            outbox.closed = true;
            outbox.last = last;
            outbox.reader.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The stream went away: drop everything still queued.
    pub(crate) fn abandon(&self) {
        let mut outbox = self.outbox();
        outbox.discard();
        outbox.reader = None;
    }

    /// When the oldest waiting event's current wait runs out. `None`, and the watchdog flag is
    /// cleared, once nothing waits: the watchdog then stops and the next wait starts a new one.
    pub(crate) fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        let mut outbox = self.outbox();
        let deadline = outbox.overflow.front().map(|front| front.deadline(timeout));
        if deadline.is_none() {
            outbox.watchdog = false;
        }
        deadline
    }

    /// Counts the waits that ran out by `now` and removes the events out of retries; under the
    /// rules' `cut_off_on_failure`, the first such event cuts the connection off instead.
    pub(crate) fn expire(
        &self,
        now: Instant,
        timeout: Duration,
        retries: u32,
        rules: &Rules,
    ) -> Expired {
        let mut expired = Expired::default();
        let waker = {
            let mut outbox = self.outbox();
            for waiting in &mut outbox.overflow {
                while waiting.timeouts < retries && now >= waiting.deadline(timeout) {
                    waiting.timeouts += 1;
                    expired.timeouts += 1;
                }
            }
            let out_of_retries = |outbox: &Outbox| {
                outbox
                    .overflow
                    .front()
                    .is_some_and(|w| w.timeouts >= retries)
            };
            if rules.cut_off_on_failure && out_of_retries(&outbox) {
                expired.failed = outbox.discard();
                expired.cut_off = true;
                outbox.reader.take()
            } else {
                // Events wait in arrival order, so those out of retries are at the front.
                while out_of_retries(&outbox) {
                    if let Some(waiting) = outbox.overflow.pop_front() {
                        outbox.overflow_bytes -= waiting.event.len();
                        expired.failed.push(waiting.event);
                    }
                }
                outbox.give_back_capacity();
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(events: usize, bytes: usize, policy: SlowClientPolicy) -> Rules {
        Rules {
            events,
            bytes,
            policy,
            cut_off_on_failure: false,
        }
    }

    fn event(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    fn drain(connection: &Connection) -> Option<Drained> {
        match connection.poll_drain(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(drained) => drained,
            Poll::Pending => None,
        }
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_as_well_as_in_events() {
        let connection = Connection::new(1, Arc::from("a"), Box::default());
        let rules = rules(100, 1000, SlowClientPolicy::Disconnect);
        assert_eq!(connection.offer(&[event(400)], 0, None, &rules).queued, 1);
        assert_eq!(connection.offer(&[event(400)], 0, None, &rules).queued, 1);
        let offered = connection.offer(&[event(400)], 0, None, &rules);
        assert_eq!(offered.failed_from, Some(0));
        assert!(offered.cut_off);

        let connection = Connection::new(2, Arc::from("a"), Box::default());
        let rules = super::Rules { events: 2, ..rules };
        connection.offer(&[event(1)], 0, None, &rules);
        connection.offer(&[event(1)], 0, None, &rules);
        assert!(connection.offer(&[event(1)], 0, None, &rules).cut_off);
    }

    #[test]
    fn an_idle_connection_takes_a_whole_push_whatever_its_size() {
        let connection = Connection::new(1, Arc::from("a"), Box::default());
        let rules = rules(2, 1000, SlowClientPolicy::Disconnect);
        let offered = connection.offer(&[event(5000), event(5000), event(1)], 0, None, &rules);
        assert_eq!((offered.queued, offered.failed_from), (3, None));
        // It is not idle any more: the next push finds the budget spent.
        assert!(connection.offer(&[event(1)], 0, None, &rules).cut_off);
    }

    #[test]
    fn the_waiting_area_is_bounded_in_bytes_too() {
        let connection = Connection::new(1, Arc::from("a"), Box::default());
        let policy = SlowClientPolicy::Wait {
            timeout: Duration::from_secs(1),
            retries: 1,
        };
        let rules = rules(100, 1000, policy);
        connection.offer(&[event(600)], 0, None, &rules);
        let offered = connection.offer(&[event(600), event(600), event(600)], 0, None, &rules);
        assert_eq!((offered.queued, offered.waiting), (0, 1));
        assert_eq!(offered.failed_from, Some(1));
        assert!(!offered.cut_off);
    }

    #[tokio::test]
    async fn with_cut_off_on_failure_a_full_waiting_area_ends_the_stream() {
        let connection = Connection::new(1, Arc::from("a"), Box::default());
        let policy = SlowClientPolicy::Wait {
            timeout: Duration::from_secs(1),
            retries: 1,
        };
        let mut rules = rules(1, 1000, policy);
        rules.cut_off_on_failure = true;
        connection.offer(&[event(10)], 0, None, &rules);
        let offered = connection.offer(&[event(20), event(30)], 0, None, &rules);
        assert_eq!((offered.queued, offered.waiting), (0, 1));
        assert!(offered.cut_off);
        assert_eq!(offered.failed_from, Some(1));
        assert_eq!(offered.dropped_waiting, [event(20)]);
        assert!(
            drain(&connection).is_none(),
            "nothing left: the stream ends"
        );
    }

    #[test]
    fn a_drain_copies_at_most_the_coalesce_limit_and_sends_big_events_as_they_are() {
        let connection = Connection::new(1, Arc::from("a"), Box::default());
        let rules = rules(1000, usize::MAX, SlowClientPolicy::Disconnect);
        let big = event(100 * 1024);
        let small: Vec<Bytes> = (0..100).map(|_| event(1024)).collect();
        connection.offer(&small, 0, None, &rules);
        connection.offer(std::slice::from_ref(&big), 0, None, &rules);
        let first = drain(&connection).unwrap().chunk;
        assert_eq!(first.len(), 64 * 1024);
        let second = drain(&connection).unwrap().chunk;
        assert_eq!(second.len(), 36 * 1024);
        let third = drain(&connection).unwrap().chunk;
        assert_eq!(third.as_ptr(), big.as_ptr(), "the shared bytes, not a copy");
        assert!(drain(&connection).is_none());
    }

    #[test]
    fn a_drained_queue_gives_its_capacity_back() {
        let connection = Connection::new(1, Arc::from("a"), Box::default());
        let rules = rules(1000, usize::MAX, SlowClientPolicy::Disconnect);
        let events: Vec<Bytes> = (0..500).map(|_| event(10)).collect();
        connection.offer(&events, 0, None, &rules);
        while drain(&connection).is_some() {}
        assert_eq!(connection.outbox().queue.capacity(), 0);
    }

    #[test]
    fn the_encoded_event_type_is_read_back() {
        assert_eq!(
            encoded_event_type(b"id: 1\nevent: order\ndata: x\n\n"),
            b"order"
        );
        assert_eq!(
            encoded_event_type(b"id: 1\ndata: event: no\n\n"),
            b"message"
        );
        assert_eq!(encoded_event_type(b"data: x\n\n"), b"message");
    }

    #[test]
    fn a_filtered_resend_covers_only_its_event_type() {
        let connection = Connection::new(1, Arc::from("a"), Box::default());
        let rules = rules(100, usize::MAX, SlowClientPolicy::Disconnect);
        let order = Bytes::from_static(b"id: 1\nevent: order\ndata: o\n\n");
        let chat = Bytes::from_static(b"id: 2\nevent: chat\ndata: c\n\n");
        connection.offer(&[order.clone(), chat.clone()], 1, None, &rules);
        connection.skip_through(4, Some("order"));
        let later_order = Bytes::from_static(b"id: 3\nevent: order\ndata: o\n\n");
        let later_chat = Bytes::from_static(b"id: 4\nevent: chat\ndata: c\n\n");
        connection.offer(&[later_order, later_chat.clone()], 3, None, &rules);
        let chunk = drain(&connection).unwrap().chunk;
        assert_eq!(chunk, [&chat[..], &later_chat[..]].concat());
    }
}
