//! The embedded persistent store: one directory on disk, crash-safe, no server (redb).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use ::redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};

use ssehub_store::{ListQuery, Listed, Page, Recipients, Record, Store, async_trait};
pub use ssehub_store::{Retention, StoreError};

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;
mod format;

/// `seq` → the record (see the `format` module).
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Event id → `seq` of the newest record with that id (for `Last-Event-ID` lookups).
const IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");
/// The seq of the first record that used a recipient set → the set. Consecutive records with
/// the same recipients share one set, so the records that refer to a set are one run of seqs.
const SETS: TableDefinition<u64, &[u8]> = TableDefinition::new("recipients");
/// The store's own numbers, below.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The highest `seq` ever saved (kept when retention empties `events`).
const LAST_SEQ: &str = "last_seq";
/// The format of the file (absent in format 1).
const FORMAT: &str = "format";
/// The bytes held, as `Retention::max_bytes` counts them: every record's and set's value length.
const BYTES: &str = "bytes";

/// The file inside the store's directory.
const FILE_NAME: &str = "events.redb";

/// How often, at most, a save compacts the file unless told otherwise.
const COMPACT_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// Scheduled compaction is not worth it for less than this.
const COMPACT_MIN_BYTES: u64 = 1 << 20;

/// Keeps history in a directory on disk with [redb](https://docs.rs/redb): survives restarts
/// and crashes (a save returns once its transaction is synced to disk), needs no server.
///
/// The hub saves in batches: every push that arrives while one transaction commits goes into
/// the next, so one disk sync serves many pushes and persistence does not cap push throughput.
/// Only one process can open a directory at a time.
///
/// - **Recipients are stored once per push**: consecutive records with the same recipients
///   (the hub gives every event of a push the same list of uids and topics) share one stored
///   set.
/// - **Retention** (count, age, bytes) drops the oldest records on every save; for
///   [`Retention::max_bytes`] a record counts its encoded length and each recipient set its own
///   once. The total is kept in the file, not recounted.
/// - **Compaction**: redb reuses the space of dropped records but does not give it back to the
///   file system. A save compacts the file (see [`RedbStore::compact`]) when
///   [`RedbStore::compact_interval`] (default 1 hour) has passed since the last compaction, at
///   least as many bytes were dropped since then as are kept (and 1 MiB), and the file is over
///   twice the bytes kept (plus 1 MiB). Compaction holds up every other call meanwhile.
/// - **A damaged record** (one that cannot be decoded) does not stop the store: listing skips it
///   (counted in [`RedbStore::report`]), [`Store::seq_of`] treats an id whose record's header is
///   unreadable as unknown, and retention drops it without decoding it once it is the oldest
///   (at once if even its header is unreadable).
///
/// The file has a format version: a file from an older build is upgraded on open (format 1,
/// recipients in every record, is migrated in one transaction; format 2, whose sets hold no
/// topics, is already valid format 3 and only marked so); a newer format is refused.
///
/// ```
/// use ssehub_store_redb::{RedbStore, Retention};
///
/// # fn main() -> Result<(), ssehub_store_redb::StoreError> {
/// # let dir = std::env::temp_dir().join(format!("ssehub-doc-{}", std::process::id()));
/// let store = RedbStore::open(&dir, Retention::events(1_000_000).max_bytes(1 << 30))?;
/// // Hub::builder().store(store).resend(true).build()
/// # drop(store); std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
    /// Where saves go: the thread that writes and syncs them.
    saves: std::sync::mpsc::Sender<Save>,
}

/// One save for the save thread: the records, and where to answer.
type Save = (Vec<Record>, oneshot::Sender<Result<(), StoreError>>);

#[derive(Debug)]
struct Inner {
    /// Every transaction runs under the read lock; compaction, which needs no transaction in
    /// progress, under the write lock.
    db: RwLock<Database>,
    retention: Retention,
    path: PathBuf,
    compaction: Mutex<Compaction>,
    report: Mutex<Report>,
}

/// When the file was last compacted, and what retention dropped since.
#[derive(Debug)]
struct Compaction {
    interval: Option<Duration>,
    last: Instant,
    dropped: u64,
}

/// What went wrong in a [`RedbStore`] without failing a call: damaged records skipped, failed
/// scheduled compactions.
///
/// ```
/// use ssehub_store_redb::{RedbStore, Retention};
/// # let dir = std::env::temp_dir().join(format!("ssehub-doc-report-{}", std::process::id()));
/// let store = RedbStore::open(&dir, Retention::events(10)).unwrap();
/// let report = store.report();
/// assert_eq!(report.corrupt_skipped, 0);
/// assert!(report.last_corrupt.is_none() && report.compaction_error.is_none());
/// # drop(store); std::fs::remove_dir_all(&dir).ok();
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// How many times a listing skipped a record it could not decode (the same record counts
    /// once per listing that passes it, until retention drops it).
    pub corrupt_skipped: u64,
    /// The last such record's error ([`StoreError::Corrupt`], with its seq and what is wrong).
    pub last_corrupt: Option<StoreError>,
    /// Compactions done, scheduled or asked for.
    pub compactions: u64,
    /// The last scheduled compaction's error, if it failed (the save it followed had succeeded).
    pub compaction_error: Option<StoreError>,
}

/// The default size of a store's page cache (redb's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

impl RedbStore {
    /// Opens the store in `dir` (created if missing), keeping what `retention` says.
    ///
    /// A file written before the format had a version (format 1) is migrated to this build's
    /// format (3) in one transaction: it is readable by this build only afterwards. Records
    /// it cannot decode are dropped in the migration. A format-2 file is kept as it is, only
    /// marked format 3: from then on, older builds refuse it (it may come to hold topics).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] naming the path if the directory cannot be created, the file is
    /// not a store, another process has it open, or it is in a format newer than this build
    /// reads (the message gives both versions).
    ///
    /// ```
    /// use ssehub_store_redb::{RedbStore, Retention};
    /// # let dir = std::env::temp_dir().join(format!("ssehub-doc-open-{}", std::process::id()));
    /// let store = RedbStore::open(&dir, Retention::events(1_000)).unwrap();
    /// # drop(store); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn open(dir: impl AsRef<Path>, retention: Retention) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, retention, DEFAULT_CACHE_BYTES)
    }

    /// [`RedbStore::open`] with a page cache of at most `cache_bytes` (default
    /// [`DEFAULT_CACHE_BYTES`]). redb keeps the pages it reads and writes in its own memory; its
    /// default of 1 GiB would let the cache grow with the file up to that, so the store sets a
    /// smaller one. Resend reads recent pages, which a cache of tens of MiB holds.
    ///
    /// # Errors
    ///
    /// As [`RedbStore::open`].
    ///
    /// ```
    /// use ssehub_store_redb::{RedbStore, Retention};
    /// # let dir = std::env::temp_dir().join(format!("ssehub-doc-cache-{}", std::process::id()));
    /// let store = RedbStore::open_with_cache(&dir, Retention::events(1_000), 16 << 20).unwrap();
    /// # drop(store); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn open_with_cache(
        dir: impl AsRef<Path>,
        retention: Retention,
        cache_bytes: usize,
    ) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        let path = dir.join(FILE_NAME);
        let fail = |what: &str, error: &dyn std::fmt::Display| {
            StoreError::backend(format!("{what} {}: {error}", path.display()))
        };
        std::fs::create_dir_all(dir)
            .map_err(|error| fail("cannot create the directory of", &error))?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|error| fail("cannot open", &error))?;
        let txn = db
            .begin_write()
            .map_err(|error| fail("cannot write to", &error))?;
        {
            let mut meta = txn.open_table(META).map_err(backend)?;
            let found = meta.get(FORMAT).map_err(backend)?.map(|v| v.value());
            match found {
                Some(format::VERSION) => {}
                // Format 2's records and sets are valid format 3 (its sets have no topic part):
                // only the version changes, so that older builds refuse the file once it may
                // hold topics.
                Some(2) => {
                    meta.insert(FORMAT, format::VERSION).map_err(backend)?;
                }
                // No version: format 1, or a new file (migrating an empty file is just this).
                None | Some(1) => {
                    migrate_from_v1(&txn, &mut meta).map_err(|error| match error {
                        StoreError::Backend(error) => fail("cannot migrate", &error),
                        other => other,
                    })?;
                }
                Some(found) => {
                    return Err(StoreError::backend(format!(
                        "{} is in store format {found}, which this build does not read (it reads \
                         format {} and upgrades formats 1 and 2): open it with the newer ssehub \
                         that wrote it, or move the file away to start an empty history",
                        path.display(),
                        format::VERSION
                    )));
                }
            }
            // Create the tables now, so that reads before the first save find them.
            txn.open_table(EVENTS).map_err(backend)?;
            txn.open_table(IDS).map_err(backend)?;
            txn.open_table(SETS).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        let inner = Arc::new(Inner {
            db: RwLock::new(db),
            retention,
            path,
            compaction: Mutex::new(Compaction {
                interval: Some(COMPACT_INTERVAL),
                last: Instant::now(),
                dropped: 0,
            }),
            report: Mutex::new(Report::default()),
        });
        let (saves, jobs) = std::sync::mpsc::channel();
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("ssehub-redb-save".into())
            .spawn(move || run_saves(&weak, &jobs))
            .map_err(|error| {
                StoreError::backend(format!(
                    "cannot start the save thread of {}: {error}",
                    inner.path.display()
                ))
            })?;
        Ok(Self { inner, saves })
    }

    /// How often, at most, a save compacts the file (`None`: never; [`RedbStore::compact`]
    /// still does). Default: 1 hour. See [`RedbStore`] for the other conditions.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ssehub_store_redb::{RedbStore, Retention};
    /// # let dir = std::env::temp_dir().join(format!("ssehub-doc-interval-{}", std::process::id()));
    /// let store = RedbStore::open(&dir, Retention::events(1_000))
    ///     .unwrap()
    ///     .compact_interval(Some(Duration::from_secs(24 * 60 * 60)));
    /// # drop(store); std::fs::remove_dir_all(&dir).ok();
    /// ```
    #[must_use]
    pub fn compact_interval(self, interval: Option<Duration>) -> Self {
        lock(&self.inner.compaction).interval = interval;
        self
    }

    /// Compacts the file now, giving the space of dropped records back to the file system;
    /// `true` if anything moved. Every other call on the store waits meanwhile.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] naming the file if redb cannot compact it.
    ///
    /// ```
    /// use ssehub_store_redb::{RedbStore, Retention};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = std::env::temp_dir().join(format!("ssehub-doc-compact-{}", std::process::id()));
    /// let store = RedbStore::open(&dir, Retention::events(1_000)).unwrap();
    /// store.compact().await.unwrap();
    /// assert_eq!(store.report().compactions, 1);
    /// # drop(store); std::fs::remove_dir_all(&dir).ok();
    /// # }
    /// ```
    pub async fn compact(&self) -> Result<bool, StoreError> {
        self.blocking(Inner::compact).await
    }

    /// What went wrong without failing a call: see [`Report`].
    ///
    /// ```
    /// use ssehub_store_redb::{RedbStore, Retention};
    /// # let dir = std::env::temp_dir().join(format!("ssehub-doc-report2-{}", std::process::id()));
    /// let store = RedbStore::open(&dir, Retention::events(10)).unwrap();
    /// assert_eq!(store.report().corrupt_skipped, 0);
    /// # drop(store); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn report(&self) -> Report {
        lock(&self.inner.report).clone()
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

/// The save thread: one per store, saving in the order asked, each save one transaction and one
/// disk sync. A thread of its own rather than `spawn_blocking`: a save, which every push waits
/// for, never queues behind other blocking work (replays reading the store, a runtime's file
/// I/O). It holds the store weakly, so dropping the last handle closes the file at once, and it
/// ends when the last handle is gone. A save that panics fails that save alone.
fn run_saves(inner: &std::sync::Weak<Inner>, jobs: &std::sync::mpsc::Receiver<Save>) {
    while let Ok((records, reply)) = jobs.recv() {
        let result = match inner.upgrade() {
            Some(inner) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.save(&records)))
                    .unwrap_or_else(|_| {
                        Err(StoreError::backend(
                            "a store task failed: the save panicked",
                        ))
                    })
            }
            None => Err(StoreError::backend("the store was closed")),
        };
        drop(records);
        let _ = reply.send(result);
    }
}

/// The tables a save writes.
struct Tables<'txn> {
    events: Table<'txn, u64, &'static [u8]>,
    ids: Table<'txn, &'static str, u64>,
    sets: Table<'txn, u64, &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            events: txn.open_table(EVENTS).map_err(backend)?,
            ids: txn.open_table(IDS).map_err(backend)?,
            sets: txn.open_table(SETS).map_err(backend)?,
        })
    }
}

impl Inner {
    fn db(&self) -> RwLockReadGuard<'_, Database> {
        // The database holds no state of ours that a panic could leave half-updated.
        self.db.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        let (dropped, kept) = {
            let db = self.db();
            let txn = db.begin_write().map_err(backend)?;
            let totals = {
                let mut tables = Tables::open(&txn)?;
                let mut meta = txn.open_table(META).map_err(backend)?;
                let get = |key| -> Result<u64, StoreError> {
                    Ok(meta.get(key).map_err(backend)?.map_or(0, |v| v.value()))
                };
                let (mut last_seq, mut bytes) = (get(LAST_SEQ)?, get(BYTES)?);
                let mut buf = Vec::new();
                // The set the previous record used, while consecutive records share it.
                let mut shared: Option<(&Listed, u64)> = None;
                for record in records {
                    let set = match &record.recipients {
                        Recipients::All => {
                            shared = None;
                            None
                        }
                        // A list of no one is stored as a set too (reaching nobody), never as a
                        // broadcast.
                        Recipients::Listed(listed) => match shared {
                            Some((previous, key))
                                if previous.same(listed) || previous == listed =>
                            {
                                Some(key)
                            }
                            _ => {
                                buf.clear();
                                format::encode_set(listed, &mut buf);
                                bytes += buf.len() as u64;
                                let old = tables.sets.insert(record.seq, buf.as_slice());
                                if let Some(old) = old.map_err(backend)? {
                                    bytes = bytes.saturating_sub(old.value().len() as u64);
                                }
                                shared = Some((listed, record.seq));
                                Some(record.seq)
                            }
                        },
                    };
                    buf.clear();
                    format::encode(record, set, &mut buf);
                    bytes += buf.len() as u64;
                    let old = tables.events.insert(record.seq, buf.as_slice());
                    if let Some(old) = old.map_err(backend)? {
                        bytes = bytes.saturating_sub(old.value().len() as u64);
                    }
                    tables
                        .ids
                        .insert(record.id(), record.seq)
                        .map_err(backend)?;
                    last_seq = last_seq.max(record.seq);
                }
                let dropped = self.retain(&mut tables, &mut bytes, SystemTime::now())?;
                meta.insert(LAST_SEQ, last_seq).map_err(backend)?;
                meta.insert(BYTES, bytes).map_err(backend)?;
                (dropped, bytes)
            };
            txn.commit().map_err(backend)?;
            totals
        };
        self.compact_if_due(dropped, kept);
        Ok(())
    }

    /// Drops the oldest records beyond the retention, their ids and the recipient sets no record
    /// refers to any more; returns the bytes dropped. Reads only each record's header (and id),
    /// and drops a record whose header cannot be read.
    fn retain(
        &self,
        tables: &mut Tables<'_>,
        bytes: &mut u64,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        let retention = &self.retention;
        let before = *bytes;
        // A damaged record was dropped: sets may be left that no adjacent record named.
        let mut sweep = false;
        loop {
            let count = tables.events.len().map_err(backend)?;
            let Some(Oldest {
                seq,
                size,
                header,
                id,
            }) = first(&tables.events, true)?
            else {
                break;
            };
            let over = count > retention.max_events || (count > 1 && retention.over_bytes(*bytes));
            let drop = over
                || header
                    .as_ref()
                    .is_none_or(|header| retention.expired(header.saved_at, now));
            if !drop {
                break;
            }
            tables.events.remove(seq).map_err(backend)?;
            *bytes = bytes.saturating_sub(size);
            if let Some(id) = id {
                let newest_with_id = tables.ids.get(id.as_str()).map_err(backend)?;
                if newest_with_id.map(|v| v.value()) == Some(seq) {
                    tables.ids.remove(id.as_str()).map_err(backend)?;
                }
            }
            let Some(header) = header else {
                sweep = true;
                continue;
            };
            let Some(set) = header.set else {
                continue;
            };
            // The records of a set are one run: the set goes with the run's last record.
            match first(&tables.events, false)?.map(|next| next.header) {
                Some(Some(next)) if next.set == Some(set) => {}
                // Cannot tell: keep the set, sweep below.
                Some(None) => sweep = true,
                _ => *bytes = bytes.saturating_sub(remove_set(&mut tables.sets, set)?),
            }
        }
        if sweep {
            // Every set below the oldest record's seq is dropped, but the one it refers to.
            let (oldest, keep) = match first(&tables.events, false)? {
                Some(oldest) => (oldest.seq, oldest.header.and_then(|header| header.set)),
                None => (u64::MAX, None),
            };
            let orphans = tables
                .sets
                .extract_from_if(..oldest, |key, _| Some(key) != keep)
                .map_err(backend)?;
            for orphan in orphans {
                let (_, set) = orphan.map_err(backend)?;
                *bytes = bytes.saturating_sub(set.value().len() as u64);
            }
        }
        Ok(before.saturating_sub(*bytes))
    }

    /// The `seq` of the newest record with `id`, if it is still kept: records past their age
    /// linger until the next save prunes them, so their age is checked here too. A record whose
    /// header cannot be read is treated as gone (the client is told history has a gap).
    fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let db = self.db();
        let txn = db.begin_read().map_err(backend)?;
        let ids = txn.open_table(IDS).map_err(backend)?;
        let Some(seq) = ids.get(id).map_err(backend)?.map(|v| v.value()) else {
            return Ok(None);
        };
        let events = txn.open_table(EVENTS).map_err(backend)?;
        let Some(bytes) = events.get(seq).map_err(backend)? else {
            return Ok(None);
        };
        Ok(format::header(seq, bytes.value())
            .ok()
            .filter(|header| !self.retention.expired(header.saved_at, SystemTime::now()))
            .map(|_| seq))
    }

    /// A page of records; a record that cannot be decoded is skipped and reported (see
    /// [`Report`]) rather than failing every resume that passes it.
    fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let db = self.db();
        let txn = db.begin_read().map_err(backend)?;
        let events = txn.open_table(EVENTS).map_err(backend)?;
        let sets = txn.open_table(SETS).map_err(backend)?;
        // Consecutive records share a set: decode it once per run.
        let mut last_set: Option<(u64, Listed)> = None;
        let mut load_set = |seq: u64, key: u64| -> Result<Listed, StoreError> {
            if let Some((cached, set)) = &last_set
                && *cached == key
            {
                return Ok(set.clone());
            }
            let Some(bytes) = sets.get(key).map_err(backend)? else {
                return Err(StoreError::Corrupt {
                    seq,
                    reason: format!("its recipient set {key} is missing"),
                });
            };
            let set = format::decode_set(seq, key, bytes.value())?;
            last_set = Some((key, set.clone()));
            Ok(set)
        };
        let mut skipped: Vec<StoreError> = Vec::new();
        let range = events
            .range(query.after.saturating_add(1)..)
            .map_err(backend)?;
        let page = Page::try_collect(
            query,
            range.filter_map(|entry| {
                let (seq, bytes) = match entry {
                    Ok(entry) => entry,
                    Err(error) => return Some(Err(backend(error))),
                };
                let seq = seq.value();
                match format::decode(seq, bytes.value(), |key| load_set(seq, key)) {
                    Err(error @ StoreError::Corrupt { .. }) => {
                        skipped.push(error);
                        None
                    }
                    record => Some(record),
                }
            }),
        );
        if let Some(last) = skipped.last() {
            let mut report = lock(&self.report);
            report.corrupt_skipped += skipped.len() as u64;
            report.last_corrupt = Some(last.clone());
        }
        page
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        let db = self.db();
        let txn = db.begin_read().map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        Ok(meta
            .get(LAST_SEQ)
            .map_err(backend)?
            .map_or(0, |v| v.value()))
    }

    /// After a save that dropped `dropped` bytes and keeps `kept`: compacts if it is due (see
    /// [`RedbStore`]). A failure is reported, not returned: the save itself succeeded.
    fn compact_if_due(&self, dropped: u64, kept: u64) {
        let due = {
            let mut compaction = lock(&self.compaction);
            compaction.dropped = compaction.dropped.saturating_add(dropped);
            let waited = compaction
                .interval
                .is_some_and(|interval| compaction.last.elapsed() >= interval);
            if !waited || compaction.dropped < kept.max(COMPACT_MIN_BYTES) {
                return;
            }
            // Looked at: not again before another interval, whatever is decided.
            compaction.last = Instant::now();
            let file = std::fs::metadata(&self.path).map_or(0, |metadata| metadata.len());
            file > kept.saturating_mul(2).saturating_add(COMPACT_MIN_BYTES)
        };
        if due && let Err(error) = self.compact() {
            lock(&self.report).compaction_error = Some(error);
        }
    }

    fn compact(&self) -> Result<bool, StoreError> {
        let compacted = {
            let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
            db.compact().map_err(|error| {
                StoreError::backend(format!("cannot compact {}: {error}", self.path.display()))
            })?
        };
        {
            let mut compaction = lock(&self.compaction);
            compaction.last = Instant::now();
            compaction.dropped = 0;
        }
        lock(&self.report).compactions += 1;
        Ok(compacted)
    }
}

/// What retention reads of the oldest record.
struct Oldest {
    seq: u64,
    /// Its value's length.
    size: u64,
    /// `None` if it cannot be read.
    header: Option<format::Header>,
    /// If asked for and readable.
    id: Option<String>,
}

/// The oldest record, without decoding it.
fn first(
    events: &Table<'_, u64, &'static [u8]>,
    with_id: bool,
) -> Result<Option<Oldest>, StoreError> {
    let Some((seq, bytes)) = events.first().map_err(backend)? else {
        return Ok(None);
    };
    let (seq, bytes) = (seq.value(), bytes.value());
    let header = format::header(seq, bytes).ok();
    let id = (with_id && header.is_some())
        .then(|| format::id(seq, bytes))
        .flatten();
    Ok(Some(Oldest {
        seq,
        size: bytes.len() as u64,
        header,
        id,
    }))
}

/// Removes a recipient set; returns its size (0 if it was not there).
fn remove_set(sets: &mut Table<'_, u64, &'static [u8]>, key: u64) -> Result<u64, StoreError> {
    let removed = sets.remove(key).map_err(backend)?;
    Ok(removed.map_or(0, |set| set.value().len() as u64))
}

/// Rewrites every record of a format-1 file in format 3, in the open transaction: recipients
/// move to the sets table (consecutive equal ones shared), records it cannot decode are dropped,
/// and the bytes held are counted.
fn migrate_from_v1(
    txn: &WriteTransaction,
    meta: &mut Table<'_, &'static str, u64>,
) -> Result<(), StoreError> {
    const CHUNK: usize = 1_024;
    let mut tables = Tables::open(txn)?;
    let mut bytes = 0u64;
    let mut buf = Vec::new();
    let mut shared: Option<(Listed, u64)> = None;
    let mut after = 0u64;
    loop {
        let chunk = tables
            .events
            .range(after.saturating_add(1)..)
            .map_err(backend)?
            .take(CHUNK)
            .map(|entry| {
                let (seq, value) = entry.map_err(backend)?;
                Ok((seq.value(), format::v1::decode(seq.value(), value.value())))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let Some(&(last, _)) = chunk.last() else {
            break;
        };
        after = last;
        for (seq, record) in chunk {
            let Ok(record) = record else {
                tables.events.remove(seq).map_err(backend)?;
                shared = None;
                continue;
            };
            let set = match &record.recipients {
                Recipients::All => {
                    shared = None;
                    None
                }
                Recipients::Listed(listed) => match &shared {
                    Some((previous, key)) if previous == listed => Some(*key),
                    _ => {
                        buf.clear();
                        format::encode_set(listed, &mut buf);
                        bytes += buf.len() as u64;
                        tables.sets.insert(seq, buf.as_slice()).map_err(backend)?;
                        shared = Some((listed.clone(), seq));
                        Some(seq)
                    }
                },
            };
            buf.clear();
            format::encode(&record, set, &mut buf);
            bytes += buf.len() as u64;
            tables.events.insert(seq, buf.as_slice()).map_err(backend)?;
        }
    }
    meta.insert(FORMAT, format::VERSION).map_err(backend)?;
    meta.insert(BYTES, bytes).map_err(backend)?;
    Ok(())
}

#[async_trait]
impl Store for RedbStore {
    async fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        let stopped = || StoreError::backend("a store task failed: the save thread stopped");
        let (reply, answer) = oneshot::channel();
        self.saves
            .send((records.to_vec(), reply))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters only: a panic cannot leave them inconsistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn backend(error: impl Into<::redb::Error>) -> StoreError {
    StoreError::backend(error.into())
}

#[cfg(test)]
mod tests;
