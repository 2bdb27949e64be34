//! One live connection's bounded outbox: where pushes leave events and the stream picks them up.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::time::{Duration, Instant};

use crate::SlowClientPolicy;

/// A live connection as the registry and pushers see it.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) id: u64,
    pub(crate) uid: Arc<str>,
    outbox: Mutex<Outbox>,
}

#[derive(Debug, Default)]
struct Outbox {
    /// Accepted events, at most the connection buffer.
    queue: VecDeque<Queued>,
    /// Events waiting for room under [`SlowClientPolicy::Wait`], at most the connection buffer.
    overflow: VecDeque<Waiting>,
    /// Written after everything else when the hub closes (the `close` event).
    last: Option<Bytes>,
    /// The stream's task, when it found nothing to write.
    reader: Option<Waker>,
    /// No more events are accepted; the stream ends once the outbox is empty.
    closed: bool,
    /// A watchdog task is timing the overflow.
    watchdog: bool,
    /// Events up to this `seq` were sent by a resend from the store: drop them if they come
    /// live (a push saved before the resend read it may be delivered after).
    covered: u64,
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

    /// Closes the outbox and frees what it holds (empty deques own no memory).
    fn discard(&mut self) {
        self.closed = true;
        self.queue = VecDeque::new();
        self.overflow = VecDeque::new();
        self.last = None;
    }
}

impl Waiting {
    /// When the current wait for room runs out.
    fn deadline(&self, timeout: Duration) -> Instant {
        self.since + timeout * (self.timeouts + 1)
    }
}

/// What happened to a push's events at one connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offered {
    /// Events accepted into the queue.
    pub(crate) queued: usize,
    /// Events parked in the overflow, waiting for room.
    pub(crate) waiting: usize,
    /// Index of the first event that failed; all after it failed too. `None`: none failed.
    pub(crate) failed_from: Option<usize>,
    /// The caller must start the overflow watchdog.
    pub(crate) start_watchdog: bool,
    /// The connection was already closed: nothing was offered.
    pub(crate) closed: bool,
}

/// What the stream found in the outbox.
#[derive(Debug)]
pub(crate) struct Drained {
    /// Everything queued, in order, as one chunk.
    pub(crate) chunk: Bytes,
    /// How many of the chunk's events came from the overflow (they now count as delivered).
    pub(crate) from_overflow: usize,
}

/// Events the watchdog gave up on.
#[derive(Debug, Default)]
pub(crate) struct Expired {
    pub(crate) timeouts: u64,
    pub(crate) failed: Vec<Bytes>,
}

impl Connection {
    pub(crate) fn new(id: u64, uid: Arc<str>) -> Self {
        Self {
            id,
            uid,
            outbox: Mutex::new(Outbox::default()),
        }
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // A panic while holding this lock cannot leave the deques inconsistent: keep serving.
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Offers a push's events, in order, under the queue's capacity and the slow-client policy.
    /// With a store, `first_seq` is the first event's `seq` (the others follow on); 0 without.
    pub(crate) fn offer(
        &self,
        events: &[Bytes],
        first_seq: u64,
        capacity: usize,
        policy: SlowClientPolicy,
    ) -> Offered {
        let mut offered = Offered::default();
        let waker = {
            let mut outbox = self.outbox();
            if outbox.closed {
                offered.closed = true;
                return offered;
            }
            for (index, event) in events.iter().enumerate() {
                let seq = if first_seq == 0 {
                    0
                } else {
                    first_seq + index as u64
                };
                if seq != 0 && seq <= outbox.covered {
                    offered.queued += 1; // the resend delivered it
                    continue;
                }
                // Once anything waits, later events wait behind it so order is kept.
                if outbox.overflow.is_empty() && outbox.queue.len() < capacity {
                    outbox.queue.push_back(Queued {
                        seq,
                        event: event.clone(),
                    });
                    offered.queued += 1;
                    continue;
                }
                match policy {
                    SlowClientPolicy::Wait { retries, .. }
                        if retries > 0 && outbox.overflow.len() < capacity =>
                    {
                        outbox.overflow.push_back(Waiting {
                            seq,
                            event: event.clone(),
                            since: Instant::now(),
                            timeouts: 0,
                        });
                        offered.waiting += 1;
                    }
                    SlowClientPolicy::Wait { .. } => {
                        offered.failed_from = Some(index);
                        break;
                    }
                    SlowClientPolicy::Disconnect => {
                        // Drop what it has not read: the client resumes from its Last-Event-ID.
                        outbox.discard();
                        offered.failed_from = Some(index);
                        break;
                    }
                }
            }
            if offered.waiting > 0 && !outbox.watchdog {
                outbox.watchdog = true;
                offered.start_watchdog = true;
            }
            outbox.reader.take()
        };
        // Wake outside the lock so the stream's task doesn't contend with us.
        if let Some(waker) = waker {
            waker.wake();
        }
        offered
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

    /// Takes everything queued as one chunk, or registers the stream's waker.
    /// `Ready(None)`: the connection is closed and fully drained.
    pub(crate) fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<Option<Drained>> {
        let mut outbox = self.outbox();
        let events = outbox.queue.len() + outbox.overflow.len();
        if events == 0 {
            if outbox.closed {
                return Poll::Ready(outbox.last.take().map(|chunk| Drained {
                    chunk,
                    from_overflow: 0,
                }));
            }
            outbox.park(cx);
            return Poll::Pending;
        }
        let from_overflow = outbox.overflow.len();
        let chunk = if events == 1 {
            // The common case at low rates: hand over the shared bytes, no copy.
            match outbox.queue.pop_front() {
                Some(queued) => queued.event,
                None => outbox
                    .overflow
                    .pop_front()
                    .map(|waiting| waiting.event)
                    .unwrap_or_default(),
            }
        } else {
            // Several events: one write (one HTTP chunk, one syscall) instead of several.
            let len = outbox.queue.iter().map(|q| q.event.len()).sum::<usize>()
                + outbox.overflow.iter().map(|w| w.event.len()).sum::<usize>();
            let mut chunk = BytesMut::with_capacity(len);
            for queued in outbox.queue.drain(..) {
                chunk.extend_from_slice(&queued.event);
            }
            for waiting in outbox.overflow.drain(..) {
                chunk.extend_from_slice(&waiting.event);
            }
            chunk.freeze()
        };
        Poll::Ready(Some(Drained {
            chunk,
            from_overflow,
        }))
    }

    /// Drops the events with a `seq` up to `cut`, queued now or offered later: a resend from
    /// the store covered them. Returns how many of those dropped now had waited in the overflow
    /// (they count as delivered).
    pub(crate) fn skip_through(&self, cut: u64) -> usize {
        let mut outbox = self.outbox();
        outbox.covered = outbox.covered.max(cut);
        let covered = |seq: u64| seq != 0 && seq <= cut;
        // Events arrive in `seq` order, so the covered ones are at the front.
        while outbox
            .queue
            .front()
            .is_some_and(|queued| covered(queued.seq))
        {
            outbox.queue.pop_front();
        }
        let mut from_overflow = 0;
        while outbox
            .overflow
            .front()
            .is_some_and(|waiting| covered(waiting.seq))
        {
            outbox.overflow.pop_front();
            from_overflow += 1;
        }
        from_overflow
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

    /// Counts the waits that ran out by `now` and removes the events out of retries.
    pub(crate) fn expire(&self, now: Instant, timeout: Duration, retries: u32) -> Expired {
        let mut expired = Expired::default();
        let mut outbox = self.outbox();
        for waiting in &mut outbox.overflow {
            while waiting.timeouts < retries && now >= waiting.deadline(timeout) {
                waiting.timeouts += 1;
                expired.timeouts += 1;
            }
        }
        // Events wait in arrival order, so those out of retries are at the front.
        while outbox
            .overflow
            .front()
            .is_some_and(|waiting| waiting.timeouts >= retries)
        {
            if let Some(waiting) = outbox.overflow.pop_front() {
                expired.failed.push(waiting.event);
            }
        }
        expired
    }
}
