//! A [`Log`] in the process's memory: several hubs of one process as nodes of one hub (for
//! tests and examples; between processes use `ssehub-store-redis`).

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::{
    Append, Appended, ListQuery, Log, MemoryStore, Page, Record, Retention, Store, StoreError,
    async_trait,
};

/// A shared log kept in memory: hubs built with `HubBuilder::log` on clones of one `Arc` of it
/// behave as nodes of one hub. The ids it assigns are the seq in decimal (`.1` added in the
/// unlikely case that a publisher used that id already). Retention: as [`MemoryStore`]'s.
///
/// ```
/// use ssehub_store::{Append, Appended, Event, Log, MemoryLog, Recipients};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), ssehub_store::StoreError> {
/// let log = MemoryLog::new(1_000);
/// let events = [Event::new("hi")];
/// let answers = log.append(&[Append { recipients: &Recipients::All, events: &events }], 0).await?;
/// assert_eq!(answers[0], Appended::Accepted { first_seq: 1, ids: vec!["1".into()] });
/// assert_eq!(log.read(0, 10).await?[0].event.data, "hi");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemoryLog {
    store: MemoryStore,
    /// Readers waiting for an append; held while appending, so numbering is one at a time.
    waiting: Mutex<Vec<Waker>>,
}

impl MemoryLog {
    /// A log keeping the newest `max_events` events.
    ///
    /// ```
    /// let log = ssehub_store::MemoryLog::new(100);
    /// ```
    pub fn new(max_events: u64) -> Self {
        Self::with_retention(Retention::events(max_events))
    }

    /// A log keeping what `retention` says.
    ///
    /// ```
    /// let log = ssehub_store::MemoryLog::with_retention(ssehub_store::Retention::events(10));
    /// ```
    pub fn with_retention(retention: Retention) -> Self {
        Self {
            store: MemoryStore::with_retention(retention),
            waiting: Mutex::new(Vec::new()),
        }
    }

    fn waiting(&self) -> MutexGuard<'_, Vec<Waker>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `MemoryStore`'s calls never wait: poll them once, in place.
fn now<T>(call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    match pin!(call).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(StoreError::backend("the memory store waited")),
    }
}

#[async_trait]
impl Store for MemoryLog {
    /// Not used: a log numbers events itself ([`Log::append`]).
    async fn save(&self, _records: &[Record]) -> Result<(), StoreError> {
        Err(StoreError::backend(
            "MemoryLog numbers the events itself: give it to HubBuilder::log",
        ))
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.store.last_seq().await
    }

    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.store.seq_of(id).await
    }

    async fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.store.list_after(query).await
    }
}

#[async_trait]
impl Log for MemoryLog {
    fn opened_at(&self) -> u64 {
        now(self.store.last_seq()).unwrap_or(0)
    }

    async fn append(
        &self,
        pushes: &[Append<'_>],
        _known: u64,
    ) -> Result<Vec<Appended>, StoreError> {
        let mut waiting = self.waiting();
        let mut next = now(self.store.last_seq())? + 1;
        let mut used = HashSet::new();
        let mut answers = Vec::with_capacity(pushes.len());
        let mut records = Vec::new();
        for push in pushes {
            let mut own = HashSet::new();
            let mut reused = None;
            for (index, event) in push.events.iter().enumerate() {
                let Some(id) = event.id.as_deref() else {
                    continue;
                };
                if used.contains(id) || !own.insert(id) || now(self.store.seq_of(id))?.is_some() {
                    reused = Some(Appended::DuplicateId {
                        index,
                        id: id.to_owned(),
                    });
                    break;
                }
            }
            if let Some(reused) = reused {
                answers.push(reused);
                continue;
            }
            used.extend(own);
            let first_seq = next;
            let mut ids = Vec::with_capacity(push.events.len());
            for event in push.events {
                let mut event = event.clone();
                let id = match event.id.as_deref() {
                    Some(id) => id.to_owned(),
                    None => {
                        // The seq, unless a publisher took it as an id already.
                        let mut id = next.to_string();
                        let mut n = 0;
                        while used.contains(id.as_str()) || now(self.store.seq_of(&id))?.is_some() {
                            n += 1;
                            id = format!("{next}.{n}");
                        }
                        id
                    }
                };
                event.id = Some(id.clone().into());
                ids.push(id);
                records.push(Record::new(next, event, push.recipients.clone()));
                next += 1;
            }
            answers.push(Appended::Accepted { first_seq, ids });
        }
        now(self.store.save(&records))?;
        for waker in waiting.drain(..) {
            waker.wake();
        }
        Ok(answers)
    }

    async fn read(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        std::future::poll_fn(|cx| {
            let mut waiting = self.waiting();
            let records = self.store.records_after(after, limit.max(1));
            if records.is_empty() {
                if !waiting.iter().any(|waker| waker.will_wake(cx.waker())) {
                    waiting.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Poll::Ready(Ok(records))
        })
        .await
    }
}
