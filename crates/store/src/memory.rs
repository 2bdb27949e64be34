//! A bounded history in the process's memory: resend across reconnects, not across restarts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use crate::{ListQuery, Page, Record, Retention, Store, StoreError, async_trait};

/// Keeps the newest events in memory, within a [`Retention`].
///
/// Clients that reconnect to the same process get what they missed; a restart loses the
/// history (use `ssehub_store_redb::RedbStore` to keep it). Memory is bounded by the
/// retention's event count times the events' size.
///
/// ```
/// use std::time::Duration;
/// use ssehub_store::MemoryStore;
///
/// let store = MemoryStore::new(10_000).max_age(Duration::from_secs(600));
/// assert!(store.is_empty());
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    retention: Retention,
    history: Mutex<History>,
}

#[derive(Debug, Default)]
struct History {
    /// In `seq` order.
    records: VecDeque<Record>,
    /// Event id → `seq` of the newest record with that id.
    ids: HashMap<String, u64>,
    /// The highest `seq` ever saved, kept when retention empties `records`.
    last_seq: u64,
}

impl MemoryStore {
    /// A store keeping the newest `max_events` events (at least 1).
    ///
    /// ```
    /// let store = ssehub_store::MemoryStore::new(1_000);
    /// ```
    pub fn new(max_events: u64) -> Self {
        Self::with_retention(Retention::events(max_events))
    }

    /// A store keeping what `retention` says.
    ///
    /// ```
    /// use ssehub_store::{MemoryStore, Retention};
    /// let store = MemoryStore::with_retention(Retention::events(100));
    /// ```
    pub fn with_retention(retention: Retention) -> Self {
        Self {
            retention,
            history: Mutex::new(History::default()),
        }
    }

    /// Also drops events older than `age`.
    ///
    /// ```
    /// let store = ssehub_store::MemoryStore::new(1_000)
    ///     .max_age(std::time::Duration::from_secs(60));
    /// ```
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.retention = self.retention.max_age(age);
        self
    }

    /// How many events it holds now.
    ///
    /// ```
    /// assert_eq!(ssehub_store::MemoryStore::new(10).len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.history().records.len()
    }

    /// Whether it holds no events.
    ///
    /// ```
    /// assert!(ssehub_store::MemoryStore::new(10).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The history with retention applied as of now.
    fn history(&self) -> MutexGuard<'_, History> {
        // Every update leaves the history consistent before anything can panic.
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history.retain(&self.retention, SystemTime::now());
        history
    }
}

impl History {
    fn retain(&mut self, retention: &Retention, now: SystemTime) {
        while let Some(oldest) = self.records.front() {
            let over = self.records.len() as u64 > retention.max_events;
            if !over && !retention.expired(oldest.saved_at, now) {
                break;
            }
            if let Some(oldest) = self.records.pop_front()
                && self.ids.get(oldest.id()) == Some(&oldest.seq)
            {
                self.ids.remove(oldest.id());
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut history = self.history();
        for record in records {
            history.ids.insert(record.id().to_owned(), record.seq);
            history.last_seq = history.last_seq.max(record.seq);
            history.records.push_back(record.clone());
        }
        history.retain(&self.retention, SystemTime::now());
        Ok(())
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(self.history().last_seq)
    }

    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.history().ids.get(id).copied())
    }

    async fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let history = self.history();
        let start = history
            .records
            .partition_point(|record| record.seq <= query.after);
        Ok(Page::collect(query, history.records.range(start..)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::Event;
    use crate::Recipients;

    fn record(seq: u64, uid: Option<&str>) -> Record {
        let recipients = uid.map_or(Recipients::All, |uid| Recipients::uids([uid]));
        Record::new(seq, Event::new("x").with_id(format!("e{seq}")), recipients)
    }

    #[tokio::test]
    async fn keeps_the_newest_events_and_forgets_the_ids_of_dropped_ones() {
        let store = MemoryStore::new(3);
        let records: Vec<_> = (1..=5).map(|seq| record(seq, None)).collect();
        store.save(&records).await.unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(store.seq_of("e2").await.unwrap(), None);
        assert_eq!(store.seq_of("e3").await.unwrap(), Some(3));
        assert_eq!(store.last_seq().await.unwrap(), 5);
    }

    #[tokio::test]
    async fn drops_events_older_than_the_max_age() {
        let store = MemoryStore::new(100).max_age(Duration::from_secs(60));
        let mut old = record(1, None);
        old.saved_at = SystemTime::now() - Duration::from_secs(61);
        store.save(&[old, record(2, None)]).await.unwrap();
        assert_eq!(store.seq_of("e1").await.unwrap(), None);
        assert_eq!(store.seq_of("e2").await.unwrap(), Some(2));
        // The numbering carries on even when retention emptied the store.
        let mut older = record(3, None);
        older.saved_at = SystemTime::now() - Duration::from_secs(120);
        store.save(&[older]).await.unwrap();
        assert_eq!(store.last_seq().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn lists_page_by_page_only_what_the_uid_may_see() {
        let store = MemoryStore::new(1_000);
        let records: Vec<_> = (1..=100)
            .map(|seq| record(seq, (seq % 3 != 0).then_some("bob")))
            .collect();
        store.save(&records).await.unwrap();
        // alice sees the broadcasts only: 3, 6, ..., 99.
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = store
                .list_after(&ListQuery::new("alice", after, 4))
                .await
                .unwrap();
            assert!(page.records.len() <= 4);
            seen.extend(page.records.iter().map(|record| record.seq));
            after = page.scanned_through;
            if page.end {
                break;
            }
        }
        assert_eq!(seen, (1..=33).map(|n| n * 3).collect::<Vec<_>>());
    }
}
