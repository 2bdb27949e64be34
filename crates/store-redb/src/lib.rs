//! The embedded persistent store: one directory on disk, crash-safe, no server (redb).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use bytes::Bytes;
use ssehub_wire::{Event, Utf8Bytes};

use ssehub_store::{ListQuery, Page, Recipients, Record, Store, async_trait};
pub use ssehub_store::{Retention, StoreError};

/// `seq` → the record, encoded by [`encode`].
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Event id → `seq` of the newest record with that id (for `Last-Event-ID` lookups).
const IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");
/// `last_seq` → the highest `seq` ever saved (kept when retention empties `events`).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LAST_SEQ: &str = "last_seq";

/// The file inside the store's directory.
const FILE_NAME: &str = "events.redb";

/// Keeps history in a directory on disk with [redb](https://docs.rs/redb): survives restarts
/// and crashes (a save returns once its transaction is synced to disk), needs no server.
///
/// The hub saves in batches: every push that arrives while one transaction commits goes into
/// the next, so one disk sync serves many pushes and persistence does not cap push throughput.
/// Only one process can open a directory at a time.
///
/// ```
/// use ssehub_store_redb::{RedbStore, Retention};
///
/// # fn main() -> Result<(), ssehub_store_redb::StoreError> {
/// # let dir = std::env::temp_dir().join(format!("ssehub-doc-{}", std::process::id()));
/// let store = RedbStore::open(&dir, Retention::events(1_000_000))?;
/// // Hub::builder().store(store).resend(true).build()
/// # drop(store); std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    retention: Retention,
    path: PathBuf,
}

impl RedbStore {
    /// Opens the store in `dir` (created if missing), keeping what `retention` says.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] naming the path if the directory cannot be created, the file is
    /// not a store, or another process has it open.
    ///
    /// ```
    /// use ssehub_store_redb::{RedbStore, Retention};
    /// # let dir = std::env::temp_dir().join(format!("ssehub-doc-open-{}", std::process::id()));
    /// let store = RedbStore::open(&dir, Retention::events(1_000)).unwrap();
    /// # drop(store); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn open(dir: impl AsRef<Path>, retention: Retention) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        let path = dir.join(FILE_NAME);
        let fail = |what: &str, error: &dyn std::fmt::Display| {
            StoreError::backend(format!("{what} {}: {error}", path.display()))
        };
        std::fs::create_dir_all(dir)
            .map_err(|error| fail("cannot create the directory of", &error))?;
        let db = Database::create(&path).map_err(|error| fail("cannot open", &error))?;
        // Create the tables now, so that reads before the first save find them.
        let txn = db
            .begin_write()
            .map_err(|error| fail("cannot write to", &error))?;
        {
            txn.open_table(EVENTS).map_err(backend)?;
            txn.open_table(IDS).map_err(backend)?;
            txn.open_table(META).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                retention,
                path,
            }),
        })
    }

    /// The database file.
    ///
    /// ```
    /// use ssehub_store_redb::{RedbStore, Retention};
    /// # let dir = std::env::temp_dir().join(format!("ssehub-doc-path-{}", std::process::id()));
    /// let store = RedbStore::open(&dir, Retention::events(10)).unwrap();
    /// assert!(store.path().starts_with(&dir));
    /// # drop(store); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` on a blocking thread: redb does synchronous I/O.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|error| StoreError::backend(format!("a store task failed: {error}")))?
    }
}

impl Inner {
    fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut events = txn.open_table(EVENTS).map_err(backend)?;
            let mut ids = txn.open_table(IDS).map_err(backend)?;
            let mut meta = txn.open_table(META).map_err(backend)?;
            let mut buf = Vec::new();
            let mut last_seq = meta
                .get(LAST_SEQ)
                .map_err(backend)?
                .map_or(0, |v| v.value());
            for record in records {
                buf.clear();
                encode(record, &mut buf);
                events.insert(record.seq, buf.as_slice()).map_err(backend)?;
                ids.insert(record.id(), record.seq).map_err(backend)?;
                last_seq = last_seq.max(record.seq);
            }
            meta.insert(LAST_SEQ, last_seq).map_err(backend)?;
            self.retain(&mut events, &mut ids, SystemTime::now())?;
        }
        txn.commit().map_err(backend)
    }

    /// Drops the oldest records beyond the retention, and their ids.
    fn retain(
        &self,
        events: &mut ::redb::Table<'_, u64, &[u8]>,
        ids: &mut ::redb::Table<'_, &str, u64>,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        loop {
            let over = events.len().map_err(backend)? > self.retention.max_events;
            let oldest = match events.first().map_err(backend)? {
                Some((seq, bytes)) => decode(seq.value(), bytes.value())?,
                None => return Ok(()),
            };
            let (seq, record) = (oldest.seq, oldest);
            if !over && !self.retention.expired(record.saved_at, now) {
                return Ok(());
            }
            events.remove(seq).map_err(backend)?;
            let newest_with_id = ids.get(record.id()).map_err(backend)?.map(|v| v.value());
            if newest_with_id == Some(seq) {
                ids.remove(record.id()).map_err(backend)?;
            }
        }
    }

    /// The `seq` of the newest record with `id`, if it is still kept: records past their age
    /// linger until the next save prunes them, so their age is checked here too.
    fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let ids = txn.open_table(IDS).map_err(backend)?;
        let Some(seq) = ids.get(id).map_err(backend)?.map(|v| v.value()) else {
            return Ok(None);
        };
        let events = txn.open_table(EVENTS).map_err(backend)?;
        let Some(bytes) = events.get(seq).map_err(backend)? else {
            return Ok(None);
        };
        let record = decode(seq, bytes.value())?;
        Ok((!self.retention.expired(record.saved_at, SystemTime::now())).then_some(seq))
    }

    fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let events = txn.open_table(EVENTS).map_err(backend)?;
        let range = events
            .range(query.after.saturating_add(1)..)
            .map_err(backend)?;
        Page::try_collect(
            query,
            range.map(|entry| {
                let (seq, bytes) = entry.map_err(backend)?;
                decode(seq.value(), bytes.value())
            }),
        )
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        Ok(meta
            .get(LAST_SEQ)
            .map_err(backend)?
            .map_or(0, |v| v.value()))
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        let records = records.to_vec();
        self.blocking(move |inner| inner.save(&records)).await
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.blocking(Inner::last_seq).await
    }

    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |inner| inner.seq_of(&id)).await
    }

    async fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let query = query.clone();
        self.blocking(move |inner| inner.list_after(&query)).await
    }
}

fn backend(error: impl Into<::redb::Error>) -> StoreError {
    StoreError::backend(error.into())
}

// The record format: fixed-width numbers little-endian, strings as a u32 length and UTF-8.
//
//   saved_at (u64 ms since the UNIX epoch)
//   recipients (u32 count, u32::MAX for everyone; then each uid)
//   flags (u8: 1 id, 2 event type, 4 retry); id; event type; retry (u64 ms); data

const ALL: u32 = u32::MAX;
const HAS_ID: u8 = 1;
const HAS_TYPE: u8 = 2;
const HAS_RETRY: u8 = 4;

fn encode(record: &Record, buf: &mut Vec<u8>) {
    let millis = record
        .saved_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    buf.extend_from_slice(&millis.to_le_bytes());
    match &record.recipients {
        Recipients::All => buf.extend_from_slice(&ALL.to_le_bytes()),
        Recipients::Uids(uids) => {
            put_len(buf, uids.len());
            for uid in uids.iter() {
                put_str(buf, uid);
            }
        }
    }
    let event = &record.event;
    let flag = |set: bool, bit: u8| if set { bit } else { 0 };
    let flags = flag(event.id.is_some(), HAS_ID)
        | flag(event.event.is_some(), HAS_TYPE)
        | flag(event.retry.is_some(), HAS_RETRY);
    buf.push(flags);
    if let Some(id) = &event.id {
        put_str(buf, id);
    }
    if let Some(event_type) = &event.event {
        put_str(buf, event_type);
    }
    if let Some(retry) = event.retry {
        let millis = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
        buf.extend_from_slice(&millis.to_le_bytes());
    }
    put_str(buf, &event.data);
}

fn put_len(buf: &mut Vec<u8>, len: usize) {
    // Events are bounded far below 4 GiB by the push API's body limit.
    let len = u32::try_from(len).unwrap_or(u32::MAX - 1);
    buf.extend_from_slice(&len.to_le_bytes());
}

fn put_str(buf: &mut Vec<u8>, text: &str) {
    put_len(buf, text.len());
    buf.extend_from_slice(text.as_bytes());
}

fn decode(seq: u64, bytes: &[u8]) -> Result<Record, StoreError> {
    let mut reader = Reader { seq, bytes };
    let saved_at = UNIX_EPOCH + Duration::from_millis(reader.u64()?);
    let recipients = match reader.u32()? {
        ALL => Recipients::All,
        count => {
            let uids = (0..count)
                .map(|_| reader.text().map(|uid| Arc::from(uid.as_str())))
                .collect::<Result<Vec<_>, _>>()?;
            Recipients::Uids(uids.into())
        }
    };
    let flags = reader.u8()?;
    let id = (flags & HAS_ID != 0).then(|| reader.text()).transpose()?;
    let event_type = (flags & HAS_TYPE != 0).then(|| reader.text()).transpose()?;
    let retry = (flags & HAS_RETRY != 0)
        .then(|| reader.u64().map(Duration::from_millis))
        .transpose()?;
    let data = reader.text()?;
    let mut event = Event::new(data);
    event.id = id;
    event.event = event_type;
    event.retry = retry;
    Ok(Record {
        seq,
        event,
        recipients,
        saved_at,
    })
}

/// Reads the record format, naming the record in every error.
struct Reader<'a> {
    seq: u64,
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], StoreError> {
        if self.bytes.len() < len {
            return Err(StoreError::Corrupt {
                seq: self.seq,
                reason: "the record ends early".to_owned(),
            });
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let mut raw = [0; 4];
        raw.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(raw))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let mut raw = [0; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }

    fn text(&mut self) -> Result<Utf8Bytes, StoreError> {
        let len = self.u32()? as usize;
        let seq = self.seq;
        let raw = Bytes::copy_from_slice(self.take(len)?);
        Utf8Bytes::try_from_bytes(raw).map_err(|error| StoreError::Corrupt {
            seq,
            reason: format!("a text field is not UTF-8: {error}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ssehub-redb-{name}-{}-{}",
            std::process::id(),
            ulid::Ulid::generate()
        ));
        std::fs::remove_dir_all(&dir).ok();
        dir
    }

    #[test]
    fn records_round_trip_through_the_format() {
        let mut full = Record::new(
            9,
            Event::new("line one\nline two")
                .with_id("01ABC")
                .with_event("order")
                .with_retry(Duration::from_millis(1500)),
            Recipients::uids(["bob", "alice"]),
        );
        full.saved_at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut bare = Record::new(10, Event::new(""), Recipients::All);
        bare.saved_at = UNIX_EPOCH;
        for record in [full, bare] {
            let mut buf = Vec::new();
            encode(&record, &mut buf);
            assert_eq!(decode(record.seq, &buf).unwrap(), record);
            // Every truncation is an error naming the record, never a panic.
            for len in 0..buf.len() {
                assert!(matches!(
                    decode(record.seq, &buf[..len]),
                    Err(StoreError::Corrupt { seq, .. }) if seq == record.seq
                ));
            }
        }
    }

    #[tokio::test]
    async fn keeps_history_across_reopening_and_applies_retention() {
        let dir = temp_dir("reopen");
        {
            let store = RedbStore::open(&dir, Retention::events(3)).unwrap();
            let records: Vec<_> = (1..=5)
                .map(|seq| {
                    Record::new(
                        seq,
                        Event::new(format!("e{seq}")).with_id(format!("id{seq}")),
                        Recipients::All,
                    )
                })
                .collect();
            store.save(&records[..2]).await.unwrap();
            store.save(&records[2..]).await.unwrap();
        }
        let store = RedbStore::open(&dir, Retention::events(3)).unwrap();
        assert_eq!(store.last_seq().await.unwrap(), 5);
        assert_eq!(store.seq_of("id2").await.unwrap(), None);
        assert_eq!(store.seq_of("id3").await.unwrap(), Some(3));
        let page = store
            .list_after(&ListQuery::new("anyone", 3, 10))
            .await
            .unwrap();
        assert_eq!(
            page.records
                .iter()
                .map(|record| record.event.data.as_str())
                .collect::<Vec<_>>(),
            ["e4", "e5"]
        );
        assert!(page.end);
        drop(store);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn an_id_older_than_the_max_age_is_unknown() {
        let dir = temp_dir("age");
        let store = RedbStore::open(
            &dir,
            Retention::events(100).max_age(Duration::from_secs(60)),
        )
        .unwrap();
        let mut old = Record::new(1, Event::new("old").with_id("old"), Recipients::All);
        old.saved_at = SystemTime::now() - Duration::from_secs(120);
        let new = Record::new(2, Event::new("new").with_id("new"), Recipients::All);
        store.save(&[old, new]).await.unwrap();
        assert_eq!(store.seq_of("old").await.unwrap(), None);
        assert_eq!(store.seq_of("new").await.unwrap(), Some(2));
        drop(store);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_second_process_opening_the_directory_gets_a_clear_error() {
        let dir = temp_dir("locked");
        let first = RedbStore::open(&dir, Retention::events(10)).unwrap();
        let error = RedbStore::open(&dir, Retention::events(10)).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("cannot open"), "{message}");
        assert!(message.contains("events.redb"), "{message}");
        drop(first);
        std::fs::remove_dir_all(&dir).ok();
    }
}
