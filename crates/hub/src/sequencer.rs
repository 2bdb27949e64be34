//! Pushes with a store: save in batches, then deliver in the order saved.
//!
//! Resend relies on one order: a client that saw the event with `seq` n must find everything it
//! misses after n, so no event may reach a connection before an event saved ahead of it. One
//! task (the committer) therefore takes the pushes in turn: it saves every push that arrived
//! while the last batch was saving as one batch (one disk sync for all of them) and hands the
//! saved batch to one deliverer task, which delivers the batches in the order they were saved,
//! each in `seq` order, then answers each push. The two overlap: batch N+1 is saved while batch N
//! is delivered. The committer also assigns the missing ids, so ids increase in the order events
//! are saved and delivered. Without a store none of this runs: pushes deliver on their own tasks.
//!
//! On a multi-thread runtime both run on a thread of their own (`ssehub-committer`), driven with
//! the handle of the runtime the hub was built on (or, failing that, the first push's): the
//! committer then resumes as soon as a save ends, rather than once the runtime gets round to it
//! behind every stream task the last batch woke, and what delivery spawns still goes to the
//! runtime's workers. On a current-thread runtime they are two of its tasks. The deliverer
//! answers a batch's pushers before it wakes the streams the batch reached, each once. The
//! committer never waits for a pusher nor for a timer (a push that finds it idle is saved at
//! once), and polls store calls in place with panics caught, so a store that panics fails one
//! batch, not the hub. A pusher waits at most the store timeout.

use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use ssehub_wire::{Event, Utf8Bytes};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::PushError;
use crate::delivery::Tally;
use crate::hub::Shared;
use crate::shared_log::{self, Node};
use crate::store::{Log, Recipients, Record, Store, StoreError};

/// Pushes waiting for the committer; a full queue makes pushers wait (backpressure).
const QUEUE: usize = 4096;
/// At most this many pushes per saved batch, so one batch's delivery doesn't hold up the next.
pub(crate) const MAX_BATCH: usize = 1024;
/// The events' data waiting for the committer, at most (a push larger than this alone still
/// goes, alone): the queue is bounded in bytes as well as in pushes.
pub(crate) const QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// The push side's handle on the committer.
pub(crate) struct Sequencer {
    store: Arc<dyn Store>,
    /// With a shared log: what its appender and tail share (then no committer, no deliverer).
    node: Option<Arc<Node>>,
    submissions: mpsc::Sender<Submission>,
    /// Taken by the first push, which starts the committer (building a hub needs no runtime).
    idle: Mutex<Option<mpsc::Receiver<Submission>>>,
    /// The runtime the hub was built on, if any: the committer lives there, not on whichever
    /// (perhaps short-lived) runtime pushes first.
    runtime: Option<Handle>,
    queued_bytes: Arc<Semaphore>,
    timeout: Duration,
    /// At most one save begins per this long (`HubBuilder::save_interval`).
    save_interval: Option<Duration>,
}

/// One push, validated; its missing ids are assigned by the committer.
pub(crate) struct Submission {
    pub(crate) recipients: Recipients,
    /// The events as they will be saved: `event: message` dropped, an id only where the
    /// publisher gave one.
    pub(crate) events: Vec<Event>,
    pub(crate) reply: oneshot::Sender<Result<Committed, PushError>>,
    /// When the push was called, with metrics on.
    pushed: Option<Instant>,
    /// Its share of the queue's byte budget, given back once it is answered.
    _bytes: OwnedSemaphorePermit,
}

/// A push saved and delivered.
pub(crate) struct Committed {
    pub(crate) ids: Vec<String>,
    pub(crate) tally: Tally,
}

impl Sequencer {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        log: Option<Arc<dyn Log>>,
        timeout: Duration,
        save_interval: Option<Duration>,
    ) -> Self {
        let (submissions, idle) = mpsc::channel(QUEUE);
        Self {
            store,
            node: log.map(|log| Arc::new(Node::new(log))),
            submissions,
            idle: Mutex::new(Some(idle)),
            runtime: Handle::try_current().ok(),
            queued_bytes: Arc::new(Semaphore::new(QUEUE_BYTES)),
            timeout,
            save_interval,
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether the hub is a node on a shared log (its tail must run before anyone subscribes
    /// misses anything: started with the first subscription too).
    pub(crate) fn is_shared(&self) -> bool {
        self.node.is_some()
    }

    /// Stops the shared log's tail (the hub closed).
    pub(crate) fn stop(&self) {
        if let Some(node) = &self.node {
            node.stop.cancel();
        }
    }

    /// Saves and delivers one push, returning once both are done, or with
    /// [`PushError::StoreTimeout`] after the store timeout. A push that times out before its batch
    /// is saved is dropped unsent; one whose batch was already being saved is delivered when the
    /// store answers.
    pub(crate) async fn push(
        &self,
        shared: &Arc<Shared>,
        recipients: Recipients,
        events: Vec<Event>,
        pushed: Option<Instant>,
    ) -> Result<Committed, PushError> {
        self.start(shared);
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.submit(recipients, events, pushed))
            .await
            .map_err(|_| PushError::StoreTimeout { after: timeout })?
    }

    async fn submit(
        &self,
        recipients: Recipients,
        events: Vec<Event>,
        pushed: Option<Instant>,
    ) -> Result<Committed, PushError> {
        let stopped = || {
            PushError::Store(StoreError::backend(
                "the hub's store task stopped; see the log for why",
            ))
        };
        let size: usize = events.iter().map(|event| event.data.len()).sum();
        let permits = u32::try_from(size.clamp(1, QUEUE_BYTES)).unwrap_or(u32::MAX);
        let bytes = Arc::clone(&self.queued_bytes)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| stopped())?;
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            recipients,
            events,
            reply,
            pushed,
            _bytes: bytes,
        };
        self.submissions
            .send(submission)
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    pub(crate) fn start(&self, shared: &Arc<Shared>) {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(submissions) = idle else { return };
        if let Some(node) = &self.node {
            // Network-bound, not disk-bound: tasks of the runtime are enough.
            let runtime = self.runtime.clone().unwrap_or_else(Handle::current);
            let appender =
                shared_log::append(Arc::downgrade(shared), Arc::clone(node), submissions);
            drop(runtime.spawn(appender));
            drop(runtime.spawn(shared_log::tail(Arc::downgrade(shared), Arc::clone(node))));
            return;
        }
        // Weak handles: both end when the hub is dropped (its sender with it).
        let (to_deliver, saved) = mpsc::channel(SAVED_WAITING);
        let committer = commit(
            Arc::downgrade(shared),
            Arc::clone(&self.store),
            submissions,
            to_deliver,
            self.save_interval,
        );
        let deliverer = deliver(Arc::downgrade(shared), saved);
        let runtime = self.runtime.clone().unwrap_or_else(Handle::current);
        let tasks = Arc::new(Mutex::new(Some((committer, deliverer))));
        if runtime.runtime_flavor() == RuntimeFlavor::MultiThread {
            // A thread of its own, driving both on the hub's runtime (its timers and I/O; what
            // delivery spawns, broadcast workers and watchdogs, goes to the runtime's workers).
            let (on_thread, taken) = (runtime.clone(), Arc::clone(&tasks));
            let started = std::thread::Builder::new()
                .name("ssehub-committer".into())
                .spawn(move || {
                    let tasks = taken.lock().unwrap_or_else(PoisonError::into_inner).take();
                    if let Some((committer, deliverer)) = tasks {
                        on_thread.block_on(async move {
                            tokio::join!(committer, deliverer);
                        });
                    }
                });
            if let Err(error) = started {
                tracing::warn!(%error, "no thread for the store committer: it runs as a task");
            }
        }
        // On a current-thread runtime (or without a thread): tasks of the runtime.
        let tasks = tasks.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some((committer, deliverer)) = tasks {
            drop(runtime.spawn(committer));
            drop(runtime.spawn(deliverer));
        }
    }
}

/// Batches saved, waiting for the deliverer: at most one waits while another is delivered and
/// a third is saved, so the pushes in flight stay bounded (each holds its bytes until answered).
const SAVED_WAITING: usize = 1;

/// A batch saved, for the deliverer: its pushes in `seq` order, from `first_seq`.
struct Saved {
    batch: Vec<Submission>,
    prepared: Vec<Prepared>,
    first_seq: u64,
}

/// The committer: batch, save, hand over to the deliverer; until the hub is gone.
///
/// Saving and delivering are pipelined: while the deliverer sends batch N, the committer saves
/// batch N+1 (whatever arrived meanwhile). The deliverer takes the batches in the order they
/// were saved, each push of a batch in `seq` order, so no event reaches a connection before an
/// event saved ahead of it.
///
/// With a `save_interval`, at most one save begins per interval: a push that comes while the
/// last save began less than that long ago waits for the rest of it, with whatever else comes
/// meanwhile, and they share the next save (and its sync of the disk, whose kernel time is most
/// of a save's cost). A push that finds the committer idle longer than that is saved at once.
async fn commit(
    hub: Weak<Shared>,
    store: Arc<dyn Store>,
    mut submissions: mpsc::Receiver<Submission>,
    to_deliver: mpsc::Sender<Saved>,
    save_interval: Option<Duration>,
) {
    // The next `seq` to hand out; read from the store before the first batch and after any
    // failed save (which may or may not have stored something).
    let mut next_seq = None;
    let mut batch = Vec::new();
    let mut last_save: Option<Instant> = None;
    loop {
        if submissions.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        if let (Some(interval), Some(started)) = (save_interval, last_save) {
            let due = started + interval;
            if Instant::now() < due {
                tokio::time::sleep_until(due).await;
                // Whatever came meanwhile joins this save.
                while batch.len() < MAX_BATCH
                    && let Ok(submission) = submissions.try_recv()
                {
                    batch.push(submission);
                }
            }
        }
        let Some(shared) = hub.upgrade() else { return };
        // A pusher that gave up waiting was told its push failed: don't save it.
        batch.retain(|submission| !submission.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let first_seq = match next_seq {
            Some(seq) => seq,
            None => match isolated(store.last_seq()).await {
                Ok(last) => last + 1,
                Err(error) => {
                    refuse(&mut batch, &error);
                    continue;
                }
            },
        };
        if let Err(error) = refuse_reused_ids(&store, &mut batch).await {
            refuse(&mut batch, &error);
            continue;
        }
        if batch.is_empty() {
            continue; // every push reused an id: nothing to save
        }
        let prepared = prepare(&shared, &mut batch);
        // Taken now: the time of the save alone, and `shared` is let go before it.
        let timing = shared.metrics_now().is_some();
        drop(shared);
        let mut records = Vec::with_capacity(prepared.iter().map(|p| p.encoded.len()).sum());
        let mut seq = first_seq;
        for submission in &batch {
            for event in &submission.events {
                records.push(Record::new(
                    seq,
                    event.clone(),
                    submission.recipients.clone(),
                ));
                seq += 1;
            }
        }
        let records_len = records.len();
        let save_started = Instant::now();
        last_save = Some(save_started);
        let started = timing.then_some(save_started);
        let saved = isolated(store.save(&records)).await;
        drop(records);
        #[cfg(feature = "metrics")]
        if let Some(started) = started {
            crate::metrics::record_store_commit(started.elapsed(), records_len);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (started, records_len);
        if let Err(error) = saved {
            next_seq = None;
            refuse(&mut batch, &error);
            continue;
        }
        next_seq = Some(seq);
        let saved = Saved {
            batch: std::mem::take(&mut batch),
            prepared,
            first_seq,
        };
        if let Err(mpsc::error::SendError(saved)) = to_deliver.send(saved).await {
            // The deliverer is gone (its runtime shut down): saved, but not sent.
            let mut batch = saved.batch;
            refuse(
                &mut batch,
                &StoreError::backend("the hub's delivery task stopped after the save"),
            );
        }
    }
}

/// The deliverer: sends each saved batch, in the order saved, then answers its pushes.
///
/// The streams the batch reached are woken only after its pushers are answered: a pusher's
/// task (an HTTP request whose connection carries the next push) then runs before those
/// streams' writes rather than behind all of them, as it does without a store, where the
/// pushing task delivers and answers in one go. Each stream is woken once per batch.
async fn deliver(hub: Weak<Shared>, mut saved: mpsc::Receiver<Saved>) {
    let mut wakers = Vec::new();
    while let Some(Saved {
        batch,
        prepared,
        first_seq,
    }) = saved.recv().await
    {
        let Some(shared) = hub.upgrade() else { return };
        let mut seq = first_seq;
        let mut answers = Vec::with_capacity(batch.len());
        for (submission, prepared) in batch.into_iter().zip(prepared) {
            let mut tally = shared
                .fan_out(
                    &submission.recipients,
                    &prepared.encoded,
                    seq,
                    submission.pushed,
                    true,
                )
                .await;
            seq += prepared.encoded.len() as u64;
            wakers.extend(tally.wakers.take().into_iter().flatten());
            answers.push((submission, prepared.ids, tally));
        }
        for (submission, ids, tally) in answers {
            // The pusher may have given up waiting; the push happened all the same.
            let _ = submission.reply.send(Ok(Committed { ids, tally }));
        }
        for waker in wakers.drain(..) {
            waker.wake();
        }
    }
}

/// A submission's events with their ids assigned, encoded once.
struct Prepared {
    ids: Vec<String>,
    encoded: Arc<[Bytes]>,
}

/// Assigns the missing ids, in batch order (so in `seq` order), and encodes every event.
fn prepare(shared: &Shared, batch: &mut [Submission]) -> Vec<Prepared> {
    let mut ids = shared.ids();
    batch
        .iter_mut()
        .map(|submission| {
            let mut assigned = Vec::with_capacity(submission.events.len());
            let mut encoded = Vec::with_capacity(submission.events.len());
            for event in &mut submission.events {
                let id = match &event.id {
                    Some(id) => id.clone(),
                    None => {
                        let id = Utf8Bytes::from(ids.next());
                        event.id = Some(id.clone());
                        id
                    }
                };
                assigned.push(String::from(id.as_str()));
                // Validated when pushed; an id we made is safe to send.
                encoded.push(event.encode().unwrap_or_default());
            }
            Prepared {
                ids: assigned,
                encoded: encoded.into(),
            }
        })
        .collect()
}

/// Refuses every push that reuses an id: one already in the store, or earlier in this batch.
/// An id is where a client resumes from; two events with one id would make that ambiguous (and
/// a publisher retrying a push that timed out learns that it went through).
async fn refuse_reused_ids(
    store: &Arc<dyn Store>,
    batch: &mut Vec<Submission>,
) -> Result<(), StoreError> {
    let explicit: Vec<String> = batch
        .iter()
        .flat_map(|submission| submission.events.iter())
        .filter_map(|event| event.id.as_deref().map(String::from))
        .collect();
    if explicit.is_empty() {
        return Ok(());
    }
    let stored = isolated(Box::pin(async move {
        let mut stored = HashSet::new();
        for id in explicit {
            if store.seq_of(&id).await?.is_some() {
                stored.insert(id);
            }
        }
        Ok(stored)
    }))
    .await?;
    let mut seen = HashSet::new();
    let mut kept = Vec::with_capacity(batch.len());
    for submission in batch.drain(..) {
        let mut own = HashSet::new();
        let reused = submission
            .events
            .iter()
            .enumerate()
            .find_map(|(index, event)| {
                let id = event.id.as_deref()?;
                let reused = stored.contains(id) || seen.contains(id) || !own.insert(id);
                reused.then(|| (index, id.to_owned()))
            });
        match reused {
            Some((index, id)) => {
                let _ = submission
                    .reply
                    .send(Err(PushError::DuplicateId { index, id }));
            }
            None => {
                seen.extend(own.into_iter().map(String::from));
                kept.push(submission);
            }
        }
    }
    *batch = kept;
    Ok(())
}

/// Runs a store call, turning a panic inside it into an error for this call instead of taking
/// the committer down with it. Polled in place (a task of its own would cost a trip through the
/// runtime's queues per call, behind every stream task woken meanwhile).
pub(crate) async fn isolated<T>(
    mut call: Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + '_>>,
) -> Result<T, StoreError> {
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(_) => Poll::Ready(Err(StoreError::backend("the store panicked"))),
        }
    })
    .await
}

/// Answers every push of a batch that could not be saved: nothing of it was sent.
pub(crate) fn refuse(batch: &mut Vec<Submission>, error: &StoreError) {
    tracing::error!(%error, pushes = batch.len(), "pushes refused: saving them failed");
    for submission in batch.drain(..) {
        let _ = submission.reply.send(Err(PushError::Store(error.clone())));
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Waker};

    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn the_queue_to_the_committer_is_bounded_in_bytes() {
        // No committer runs: what is submitted stays queued.
        let sequencer = Sequencer::new(
            Arc::new(MemoryStore::new(10)),
            None,
            Duration::from_secs(60),
            None,
        );
        let big = || vec![Event::new("x".repeat(QUEUE_BYTES / 4))];
        let mut queued = Vec::new();
        for _ in 0..4 {
            let mut submit = Box::pin(sequencer.submit(Recipients::All, big(), None));
            let polled = submit
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()));
            assert!(polled.is_pending(), "queued, waiting for its answer");
            queued.push(submit);
        }
        assert_eq!(sequencer.queued_bytes.available_permits(), 0);
        let mut fifth = Box::pin(sequencer.submit(Recipients::All, big(), None));
        assert!(
            fifth
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
        assert_eq!(
            sequencer.submissions.capacity(),
            QUEUE - 4,
            "the fifth waits for bytes, not in the queue"
        );
    }
}
