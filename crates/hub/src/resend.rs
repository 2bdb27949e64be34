//! Resend on reconnect: the events a client missed, from the store, before its live stream.
//!
//! The connection is registered (and queues live events) before the store is read, so nothing
//! pushed during the replay is missed. The replay reads pages until the store has no more; the
//! last page says how far it looked (the cut). Queued live events up to the cut were covered by
//! the replay and are dropped; those after it follow. Since the hub delivers in `seq` order, the
//! client sees every event once, in order.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ssehub_wire::Event;
use tokio::sync::Semaphore;

use crate::store::{ListQuery, Page, Store, StoreError};

/// The type of the event a reconnecting client gets when the store cannot cover what it missed:
/// its `Last-Event-ID` is unknown, or older than the store's retention. Its data is JSON,
/// `{"last_event_id":"<the id it sent>"}`; an application reloads its state when it sees one.
pub const HISTORY_GAP_EVENT_TYPE: &str = "history-gap";

type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// One connection's replay, driven by its stream's polls.
pub(crate) struct Replay {
    store: Arc<dyn Store>,
    /// The id the client resumed from, then of the last event this replay sent: what a
    /// `history-gap` names.
    last_event_id: String,
    query: ListQuery,
    /// How long each store call may take.
    timeout: Duration,
    /// The hub's replay turns: each store call takes one (`HubBuilder::max_concurrent_replays`).
    turns: Arc<Semaphore>,
    state: State,
}

/// A store call made once a turn is free, that fails once `timeout` has passed after that: a
/// resend never waits forever for the store, and a crowd of resends cannot queue more reads on
/// it than there are turns. `call` must not have started (an `async` block): it runs, and holds
/// a page, only while it has its turn.
fn deadline<T: Send + 'static>(
    turns: &Arc<Semaphore>,
    timeout: Duration,
    call: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> StoreFuture<T> {
    let turns = Arc::clone(turns);
    Box::pin(async move {
        // The hub never closes the semaphore; the error cannot happen.
        let _turn = turns
            .acquire_owned()
            .await
            .map_err(|_| StoreError::backend("the hub's replay turns were closed"))?;
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::backend(format!(
                    "the event store did not answer within {timeout:?}"
                )))
            })
    })
}

enum State {
    /// Finding where the client's last event is in the history.
    Locating(StoreFuture<Option<u64>>),
    /// Reading the next page.
    Listing(StoreFuture<Page>),
    /// The store reached its newest record at this `seq`; the replay has nothing more to send.
    Finished { cut: u64 },
}

/// What the replay has for the stream.
pub(crate) enum Step {
    /// Bytes to write.
    Chunk(Bytes),
    /// Done: live events up to `cut` were covered by the replay (0: none were).
    Done { cut: u64 },
    /// The store failed; the stream should end so that the client retries later.
    Failed(StoreError),
}

impl Replay {
    /// A replay of what `query` may see (its uid, topics and event type; pages of its limit)
    /// after `last_event_id`.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        query: ListQuery,
        last_event_id: String,
        timeout: Duration,
        turns: Arc<Semaphore>,
    ) -> Self {
        let locate = {
            let store = Arc::clone(&store);
            let id = last_event_id.clone();
            deadline(&turns, timeout, async move { store.seq_of(&id).await })
        };
        Self {
            store,
            last_event_id,
            query,
            timeout,
            turns,
            state: State::Locating(locate),
        }
    }

    fn list_next(&mut self) {
        let store = Arc::clone(&self.store);
        let query = self.query.clone();
        self.state = State::Listing(deadline(&self.turns, self.timeout, async move {
            store.list_after(&query).await
        }));
    }

    /// The client's last event id is now the page's last one.
    fn note_sent(&mut self, page: &Page) {
        if let Some(last) = page.records.last() {
            self.last_event_id = last.id().to_owned();
        }
    }

    pub(crate) fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        loop {
            match &mut self.state {
                State::Locating(locate) => match ready!(locate.as_mut().poll(cx)) {
                    Ok(Some(seq)) => {
                        self.query.after = seq;
                        self.list_next();
                    }
                    Ok(None) => {
                        tracing::debug!(
                            uid = %self.query.uid,
                            last_event_id = %self.last_event_id,
                            "resend: history cannot cover the gap"
                        );
                        self.state = State::Finished { cut: 0 };
                        return Poll::Ready(Step::Chunk(gap_event(&self.last_event_id)));
                    }
                    Err(error) => return Poll::Ready(Step::Failed(error)),
                },
                State::Listing(list) => {
                    let page = match ready!(list.as_mut().poll(cx)) {
                        Ok(page) => page,
                        Err(error) => return Poll::Ready(Step::Failed(error)),
                    };
                    // Seqs have no holes: a first record past `after + 1` means retention
                    // dropped events this replay had not reached (a slow reader's replay can
                    // take longer than the history lasts). Say so, as at the start.
                    let dropped = page
                        .first_scanned
                        .is_some_and(|first| first > self.query.after.saturating_add(1));
                    // A store that returns nothing yet claims more would loop forever.
                    let stuck = !page.end && page.scanned_through <= self.query.after;
                    self.query.after = page.scanned_through.max(self.query.after);
                    if page.end || stuck {
                        self.state = State::Finished {
                            cut: self.query.after,
                        };
                    } else {
                        self.list_next();
                    }
                    if dropped {
                        tracing::debug!(
                            uid = %self.query.uid,
                            "resend: history moved past the replay; telling the client"
                        );
                        let mut chunk = BytesMut::from(&gap_event(&self.last_event_id)[..]);
                        if let Step::Chunk(events) = encode_page(&page) {
                            chunk.extend_from_slice(&events);
                        }
                        self.note_sent(&page);
                        return Poll::Ready(Step::Chunk(chunk.freeze()));
                    }
                    if !page.records.is_empty() {
                        self.note_sent(&page);
                        return Poll::Ready(encode_page(&page));
                    }
                }
                State::Finished { cut } => return Poll::Ready(Step::Done { cut: *cut }),
            }
        }
    }
}

/// One chunk with all of a page's events.
fn encode_page(page: &Page) -> Step {
    let mut chunk = BytesMut::new();
    for record in &page.records {
        match record.event.encode() {
            Ok(bytes) => chunk.extend_from_slice(&bytes),
            // Only a store that changed the event could make it unsendable; skip it loudly.
            Err(error) => {
                tracing::error!(seq = record.seq, %error, "resend: a stored event cannot be sent")
            }
        }
    }
    Step::Chunk(chunk.freeze())
}

fn gap_event(last_event_id: &str) -> Bytes {
    let data = serde_json::json!({ "last_event_id": last_event_id }).to_string();
    Event::new(data)
        .with_event(HISTORY_GAP_EVENT_TYPE)
        .encode()
        .unwrap_or_default()
}

impl fmt::Debug for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay")
            .field("last_event_id", &self.last_event_id)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}
