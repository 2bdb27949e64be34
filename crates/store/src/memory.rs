//! A bounded history in the process's memory: resend across reconnects, not across restarts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use crate::{ListQuery, Page, Recipients, Record, Retention, Store, StoreError, async_trait};

/// Keeps the newest events in memory, within a [`Retention`].
///
/// Clients that reconnect to the same process get what they missed; a restart loses the
/// history (use `ssehub_store_redb::RedbStore` to keep it). Memory is bounded by the
/// retention's event count times the events' size and, with [`MemoryStore::max_bytes`], in bytes
/// (as [`MemoryStore::record_bytes`] and [`MemoryStore::recipients_bytes`] count them).
///
/// Consecutive records addressed to the same recipients share one set in memory (the hub gives
/// every event of one push the same set).
///
/// ```
/// use std::time::Duration;
/// use ssehub_store::MemoryStore;
///
/// let store = MemoryStore::new(10_000)
///     .max_age(Duration::from_secs(600))
///     .max_bytes(64 << 20);
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
    /// What `records` hold, as `record_bytes` and `recipients_bytes` count it: kept as records
    /// come and go, so retention never rescans.
    bytes: u64,
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

    /// Also drops the oldest events while the records take more than `bytes` (see
    /// [`Retention::max_bytes`]).
    ///
    /// ```
    /// let store = ssehub_store::MemoryStore::new(1_000_000).max_bytes(16 << 20);
    /// ```
    #[must_use]
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.retention = self.retention.max_bytes(bytes);
        self
    }

    /// The bytes a record counts for [`Retention::max_bytes`], its recipient set aside: the
    /// record's fixed fields, the lengths of its id, event type and data, and its entry in the id
    /// index (the id again, and the seq).
    ///
    /// ```
    /// use ssehub_store::{Event, MemoryStore, Recipients, Record};
    /// let small = Record::new(1, Event::new("x").with_id("a"), Recipients::All);
    /// let large = Record::new(2, Event::new("x".repeat(1000)).with_id("a"), Recipients::All);
    /// assert_eq!(MemoryStore::record_bytes(&large) - MemoryStore::record_bytes(&small), 999);
    /// ```
    pub fn record_bytes(record: &Record) -> u64 {
        let event = &record.event;
        let text = event.data.len()
            + event
                .event
                .as_ref()
                .map_or(0, |event_type| event_type.len())
            + 2 * record.id().len();
        (size_of::<Record>() + size_of::<(String, u64)>() + text) as u64
    }

    /// The bytes a recipient set counts for [`Retention::max_bytes`], once however many
    /// consecutive records share it: each uid's and topic's length plus its pointer and
    /// reference counts; nothing for a broadcast.
    ///
    /// ```
    /// use ssehub_store::{MemoryStore, Recipients};
    /// assert_eq!(MemoryStore::recipients_bytes(&Recipients::All), 0);
    /// assert!(MemoryStore::recipients_bytes(&Recipients::uids(["alice"])) > 5);
    /// ```
    pub fn recipients_bytes(recipients: &Recipients) -> u64 {
        match recipients {
            Recipients::All => 0,
            Recipients::Listed(listed) => {
                // The lists' reference counts and boxes, and per name its reference counts and
                // fat pointer.
                let counts = 2 * size_of::<usize>();
                let per_name = counts + size_of::<Arc<str>>();
                let names = listed.uids().iter().chain(listed.topics());
                let (count, text) = names.fold((0, 0), |(n, len), name| (n + 1, len + name.len()));
                (counts + 2 * size_of::<Box<[Arc<str>]>>() + count * per_name + text) as u64
            }
        }
    }

    /// The bytes its records take now, as [`Retention::max_bytes`] counts them.
    ///
    /// ```
    /// use ssehub_store::{Event, MemoryStore, Recipients, Record, Store};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = MemoryStore::new(10);
    /// let record = Record::new(1, Event::new("hi"), Recipients::All);
    /// store.save(&[record.clone()]).await.unwrap();
    /// assert_eq!(store.bytes(), MemoryStore::record_bytes(&record));
    /// # }
    /// ```
    pub fn bytes(&self) -> u64 {
        self.history().bytes
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
    fn push(&mut self, record: &Record) {
        let mut record = record.clone();
        let shared = match (&mut record.recipients, self.records.back()) {
            (Recipients::Listed(listed), Some(previous)) => match &previous.recipients {
                Recipients::Listed(previous) if listed.same(previous) => true,
                Recipients::Listed(previous) if listed == previous => {
                    // Equal but apart: keep one copy.
                    *listed = previous.clone();
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !shared {
            self.bytes += MemoryStore::recipients_bytes(&record.recipients);
        }
        self.bytes += MemoryStore::record_bytes(&record);
        self.ids.insert(record.id().to_owned(), record.seq);
        self.last_seq = self.last_seq.max(record.seq);
        self.records.push_back(record);
    }

    fn retain(&mut self, retention: &Retention, now: SystemTime) {
        while let Some(oldest) = self.records.front() {
            let newest = self.records.len() == 1;
            let over = self.records.len() as u64 > retention.max_events
                || (!newest && retention.over_bytes(self.bytes));
            if !over && !retention.expired(oldest.saved_at, now) {
                break;
            }
            let Some(oldest) = self.records.pop_front() else {
                break;
            };
            if self.ids.get(oldest.id()) == Some(&oldest.seq) {
                self.ids.remove(oldest.id());
            }
            let set_still_held = match (&oldest.recipients, self.records.front()) {
                (Recipients::Listed(listed), Some(next)) => {
                    matches!(&next.recipients, Recipients::Listed(next) if listed.same(next))
                }
                _ => false,
            };
            if !set_still_held {
                self.bytes = self
                    .bytes
                    .saturating_sub(MemoryStore::recipients_bytes(&oldest.recipients));
            }
            self.bytes = self
                .bytes
                .saturating_sub(MemoryStore::record_bytes(&oldest));
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut history = self.history();
        for record in records {
            history.push(record);
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

impl MemoryStore {
    /// Up to `limit` records after `after`, whoever they are for (a log's tail reads them all).
    pub(crate) fn records_after(&self, after: u64, limit: usize) -> Vec<Record> {
        let history = self.history();
        let start = history
            .records
            .partition_point(|record| record.seq <= after);
        history
            .records
            .range(start..)
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::Event;

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

    /// The bytes of `records` counted from scratch: each record, and each run of consecutive
    /// records with one recipient set once.
    fn recount(store: &MemoryStore) -> u64 {
        let history = store.history();
        let mut bytes = 0;
        let mut previous: Option<&Recipients> = None;
        for record in &history.records {
            bytes += MemoryStore::record_bytes(record);
            if previous != Some(&record.recipients) {
                bytes += MemoryStore::recipients_bytes(&record.recipients);
            }
            previous = Some(&record.recipients);
        }
        bytes
    }

    #[tokio::test]
    async fn max_bytes_bounds_the_history_and_the_running_total_stays_exact() {
        let store = MemoryStore::new(1_000_000).max_bytes(50_000);
        for seq in 1..=500u64 {
            let uid = (seq % 4 != 0).then(|| format!("user{}", seq % 7));
            let data = "d".repeat((seq as usize * 37) % 900);
            let recipients = uid.map_or(Recipients::All, |uid| Recipients::uids([uid]));
            let record = Record::new(seq, Event::new(data).with_id(format!("e{seq}")), recipients);
            store.save(&[record]).await.unwrap();
            assert!(
                store.bytes() <= 50_000,
                "{} bytes after {seq}",
                store.bytes()
            );
            assert_eq!(store.bytes(), recount(&store));
        }
        // Dropped oldest first: what is kept is the newest run, ending at 500.
        let kept: Vec<u64> = store.history().records.iter().map(|r| r.seq).collect();
        assert_eq!(kept, (kept[0]..=500).collect::<Vec<_>>());
        assert!(kept[0] > 400);
        assert!(store.len() > 50, "{} records kept", store.len());
        assert_eq!(store.seq_of("e1").await.unwrap(), None);
        assert_eq!(store.seq_of("e500").await.unwrap(), Some(500));
    }

    #[tokio::test]
    async fn consecutive_records_share_one_recipient_set_until_the_last_one_goes() {
        let uids: Vec<String> = (0..10_000).map(|n| format!("user-{n:06}")).collect();
        let set = Recipients::uids(&uids);
        let set_bytes = MemoryStore::recipients_bytes(&set);
        assert!(set_bytes > 10_000 * 11);
        let store = MemoryStore::new(100);
        // One push's records share one set, as the hub builds them; the second save's set is
        // equal but a separate allocation, and is counted (and kept) once too.
        let push = |seqs: std::ops::RangeInclusive<u64>, recipients: &Recipients| {
            seqs.map(|seq| {
                Record::new(
                    seq,
                    Event::new("x").with_id(format!("e{seq}")),
                    recipients.clone(),
                )
            })
            .collect::<Vec<_>>()
        };
        store.save(&push(1..=50, &set)).await.unwrap();
        store
            .save(&push(51..=60, &Recipients::uids(&uids)))
            .await
            .unwrap();
        let records_bytes: u64 = store
            .history()
            .records
            .iter()
            .map(MemoryStore::record_bytes)
            .sum();
        assert_eq!(store.bytes(), records_bytes + set_bytes);
        // 60 more broadcasts push all but 40 of the set's records out: the set is still held.
        store.save(&push(61..=80, &Recipients::All)).await.unwrap();
        assert_eq!(store.bytes(), recount(&store));
        assert!(store.bytes() > set_bytes);
        store.save(&push(81..=160, &Recipients::All)).await.unwrap();
        assert!(
            store.bytes() < set_bytes,
            "the set's bytes went with its last record"
        );
        assert_eq!(store.bytes(), recount(&store));
        assert!(
            store
                .history()
                .records
                .iter()
                .all(|r| r.recipients == Recipients::All)
        );
    }
}
