//! Pushes with a store: save in batches, then deliver in the order saved.
//!
//! Resend relies on one order: a client that saw the event with `seq` n must find everything it
//! misses after n, so no event may reach a connection before an event saved ahead of it. One
//! task (the committer) therefore takes the pushes in turn: it saves every push that arrived
//! while the last batch was committing as one batch (one disk sync for all of them), then
//! delivers them in `seq` order, then answers each push. Without a store none of this runs: pushes
//! deliver on their own tasks.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use ssehub_wire::Event;
use tokio::sync::{mpsc, oneshot};

use crate::PushError;
use crate::delivery::Tally;
use crate::hub::Shared;
use crate::store::{Recipients, Record, Store, StoreError};

/// Pushes waiting for the committer; a full queue makes pushers wait (backpressure).
const QUEUE: usize = 4096;
/// At most this many pushes per saved batch, so one batch's delivery doesn't hold up the next.
const MAX_BATCH: usize = 1024;

/// The push side's handle on the committer.
pub(crate) struct Sequencer {
    store: Arc<dyn Store>,
    submissions: mpsc::Sender<Submission>,
    /// Taken by the first push, which starts the committer (building a hub needs no runtime).
    idle: Mutex<Option<mpsc::Receiver<Submission>>>,
}

/// One push, prepared and validated.
pub(crate) struct Submission {
    pub(crate) recipients: Recipients,
    /// The events as saved: ids assigned, `event: message` dropped.
    pub(crate) events: Vec<Event>,
    /// The same events encoded, as delivered.
    pub(crate) encoded: Arc<[Bytes]>,
    pub(crate) reply: oneshot::Sender<Result<Tally, PushError>>,
}

impl Sequencer {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        let (submissions, idle) = mpsc::channel(QUEUE);
        Self {
            store,
            submissions,
            idle: Mutex::new(Some(idle)),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Saves and delivers one push, returning once both are done.
    pub(crate) async fn push(
        &self,
        shared: &Arc<Shared>,
        recipients: Recipients,
        events: Vec<Event>,
        encoded: Arc<[Bytes]>,
    ) -> Result<Tally, PushError> {
        self.start(shared);
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            recipients,
            events,
            encoded,
            reply,
        };
        let stopped = || {
            PushError::Store(StoreError::backend(
                "the hub's store task stopped; see the log for why",
            ))
        };
        self.submissions
            .send(submission)
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    fn start(&self, shared: &Arc<Shared>) {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(submissions) = idle {
            // A weak handle: the committer ends when the hub is dropped (its sender with it).
            tokio::spawn(commit(
                Arc::downgrade(shared),
                Arc::clone(&self.store),
                submissions,
            ));
        }
    }
}

/// The committer: batch, save, deliver, answer; until the hub is gone.
async fn commit(
    hub: Weak<Shared>,
    store: Arc<dyn Store>,
    mut submissions: mpsc::Receiver<Submission>,
) {
    // The next `seq` to hand out; read from the store before the first batch and after any
    // failed save (which may or may not have stored something).
    let mut next_seq = None;
    let mut batch = Vec::new();
    while submissions.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let Some(shared) = hub.upgrade() else { return };
        let first_seq = match next_seq {
            Some(seq) => seq,
            None => match store.last_seq().await {
                Ok(last) => last + 1,
                Err(error) => {
                    refuse(&mut batch, &error);
                    continue;
                }
            },
        };
        let mut records = Vec::with_capacity(batch.len());
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
        if let Err(error) = store.save(&records).await {
            next_seq = None;
            refuse(&mut batch, &error);
            continue;
        }
        next_seq = Some(seq);
        drop(records);
        let mut seq = first_seq;
        for submission in batch.drain(..) {
            let uids = match &submission.recipients {
                Recipients::All => None,
                Recipients::Uids(uids) => Some(&uids[..]),
            };
            let tally = shared.fan_out(uids, &submission.encoded, seq).await;
            seq += submission.encoded.len() as u64;
            // The pusher may have given up waiting; the push happened all the same.
            let _ = submission.reply.send(Ok(tally));
        }
    }
}

/// Answers every push of a batch that could not be saved: nothing of it was sent.
fn refuse(batch: &mut Vec<Submission>, error: &StoreError) {
    tracing::error!(%error, pushes = batch.len(), "pushes refused: saving them failed");
    for submission in batch.drain(..) {
        let _ = submission.reply.send(Err(PushError::Store(error.clone())));
    }
}
