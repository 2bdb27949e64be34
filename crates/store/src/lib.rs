//! Event history for ssehub: the [`Store`] trait the hub saves pushes to and resends missed
//! events from, its record types, and [`MemoryStore`].
//!
//! This crate depends on the wire format only, so a backend's author compiles neither hyper nor
//! axum. The embedded on-disk store is `ssehub-store-redb`; the hub re-exports both as
//! `ssehub_hub::store`.
//!
//! The hub numbers every event it saves with a sequence number (`seq`): increasing, gap-free
//! within one store, and continued after a restart from [`Store::last_seq`]. Stored order is the
//! order events were delivered in, so "everything after the client's last id" is one range of
//! seqs. Each record keeps its recipients, so resend replays to a user only what was addressed to
//! that user or broadcast.
//!
//! ```
//! use ssehub_store::{Event, MemoryStore, Recipients, Record, Store};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), ssehub_store::StoreError> {
//! let store = MemoryStore::new(10_000);
//! store.save(&[Record::new(1, Event::new("hi").with_id("a"), Recipients::All)]).await?;
//! assert_eq!(store.last_seq().await?, 1);
//! # Ok(()) }
//! ```

use std::borrow::Borrow;
use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use ssehub_wire::Event;

mod memory;

pub use async_trait::async_trait;
pub use memory::MemoryStore;

/// Where pushed events are kept, so that a reconnecting client gets what it missed.
///
/// Implement it for your own database. Methods are async through [`macro@async_trait`] (re-exported
/// here), so the hub can hold any store as `Arc<dyn Store>`.
///
/// The contract the hub relies on:
/// - [`save`](Store::save) stores a whole batch or nothing, and only returns `Ok` once the
///   records are as durable as you want them to be: the hub sends nothing of a push before that.
/// - Records arrive in increasing `seq` order, batch after batch; [`last_seq`](Store::last_seq)
///   returns the highest saved (0 when empty), which the hub continues from after a restart.
/// - [`seq_of`](Store::seq_of) forgets an id once its record is dropped by retention; the hub
///   then tells the client that history cannot cover its gap.
/// - [`list_after`](Store::list_after) returns, in `seq` order, only records the query's uid may
///   see ([`Record::visible_to`]) and of the query's event type if one is given.
///
/// ```
/// use std::sync::Mutex;
/// use ssehub_store::{async_trait, ListQuery, Page, Record, Store, StoreError};
///
/// /// A store that keeps everything in a `Vec` (use `MemoryStore` for real).
/// #[derive(Default)]
/// struct VecStore(Mutex<Vec<Record>>);
///
/// #[async_trait]
/// impl Store for VecStore {
///     async fn save(&self, records: &[Record]) -> Result<(), StoreError> {
///         self.0.lock().unwrap().extend_from_slice(records);
///         Ok(())
///     }
///     async fn last_seq(&self) -> Result<u64, StoreError> {
///         Ok(self.0.lock().unwrap().last().map_or(0, |record| record.seq))
///     }
///     async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
///         let records = self.0.lock().unwrap();
///         Ok(records.iter().rev().find(|record| record.id() == id).map(|record| record.seq))
///     }
///     async fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError> {
///         let records = self.0.lock().unwrap();
///         Ok(Page::collect(query, records.iter().filter(|record| record.seq > query.after)))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = VecStore::default();
/// store.save(&[Record::new(1, ssehub_store::Event::new("x").with_id("a"), ssehub_store::Recipients::All)]).await.unwrap();
/// assert_eq!(store.seq_of("a").await.unwrap(), Some(1));
/// # }
/// ```
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Saves a batch of records, all or none, in the order given.
    async fn save(&self, records: &[Record]) -> Result<(), StoreError>;

    /// The highest `seq` saved, 0 when the store is empty.
    async fn last_seq(&self) -> Result<u64, StoreError>;

    /// The `seq` of the newest record with this event id; `None` if there is none (never
    /// stored, or dropped by retention).
    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError>;

    /// Up to `query.limit` records after `query.after` that `query.uid` may see, in `seq` order.
    async fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError>;
}

/// A shared store is a store: keep a handle on the one you give the hub.
///
/// ```
/// use std::sync::Arc;
/// use ssehub_store::MemoryStore;
///
/// let store = Arc::new(MemoryStore::new(100));
/// fn takes_a_store(_: impl ssehub_store::Store) {}
/// takes_a_store(Arc::clone(&store)); // as `Hub::builder().store(..)` does
/// assert!(store.is_empty());
/// ```
#[async_trait]
impl<S: Store + ?Sized> Store for Arc<S> {
    async fn save(&self, records: &[Record]) -> Result<(), StoreError> {
        (**self).save(records).await
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        (**self).last_seq().await
    }

    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        (**self).seq_of(id).await
    }

    async fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError> {
        (**self).list_after(query).await
    }
}

/// Who a stored event was pushed to.
///
/// ```
/// use ssehub_store::Recipients;
///
/// let recipients = Recipients::uids(["bob", "alice", "bob"]);
/// assert_eq!(recipients, Recipients::Uids(vec!["alice".into(), "bob".into()].into()));
/// assert!(recipients.includes("alice"));
/// assert!(Recipients::All.includes("anyone"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// A broadcast: everyone may see it.
    All,
    /// A uni-cast: these uids, sorted and without duplicates.
    Uids(Arc<[Arc<str>]>),
}

impl Recipients {
    /// Recipients for these uids (sorted and deduplicated); [`Recipients::All`] if there are none.
    ///
    /// ```
    /// use ssehub_store::Recipients;
    /// assert_eq!(Recipients::uids(Vec::<String>::new()), Recipients::All);
    /// ```
    pub fn uids<I, S>(uids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut uids: Vec<Arc<str>> = uids.into_iter().map(|uid| uid.as_ref().into()).collect();
        if uids.is_empty() {
            return Self::All;
        }
        uids.sort_unstable();
        uids.dedup();
        Self::Uids(uids.into())
    }

    /// Whether `uid` is one of the recipients.
    ///
    /// ```
    /// use ssehub_store::Recipients;
    /// assert!(!Recipients::uids(["alice"]).includes("bob"));
    /// ```
    pub fn includes(&self, uid: &str) -> bool {
        match self {
            Self::All => true,
            Self::Uids(uids) => uids.binary_search_by(|probe| (**probe).cmp(uid)).is_ok(),
        }
    }
}

/// One saved event: its place in the history, the event as pushed (with its id assigned), who it
/// was for and when it was saved.
///
/// ```
/// use ssehub_store::{Record, Recipients};
/// use ssehub_store::Event;
///
/// let record = Record::new(1, Event::new("hi").with_id("a1"), Recipients::uids(["alice"]));
/// assert_eq!(record.id(), "a1");
/// assert!(record.visible_to("alice", None));
/// assert!(!record.visible_to("bob", None));
/// assert!(record.visible_to("alice", Some("message")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the history: increasing, 1 for the first event ever saved.
    pub seq: u64,
    /// The event, with the id the hub sent it with.
    pub event: Event,
    /// Who it was pushed to.
    pub recipients: Recipients,
    /// When it was saved (for retention by age).
    pub saved_at: SystemTime,
}

impl Record {
    /// A record saved now.
    ///
    /// ```
    /// let record = ssehub_store::Record::new(
    ///     7,
    ///     ssehub_store::Event::new("x"),
    ///     ssehub_store::Recipients::All,
    /// );
    /// assert_eq!(record.seq, 7);
    /// ```
    pub fn new(seq: u64, event: Event, recipients: Recipients) -> Self {
        Self {
            seq,
            event,
            recipients,
            saved_at: SystemTime::now(),
        }
    }

    /// The event's id ("" if it has none; the hub always assigns one before saving).
    ///
    /// ```
    /// let record = ssehub_store::Record::new(
    ///     1,
    ///     ssehub_store::Event::new("x").with_id("7"),
    ///     ssehub_store::Recipients::All,
    /// );
    /// assert_eq!(record.id(), "7");
    /// ```
    pub fn id(&self) -> &str {
        self.event.id.as_deref().unwrap_or_default()
    }

    /// The event's type, `message` when it has none (as clients see it).
    ///
    /// ```
    /// let record = ssehub_store::Record::new(
    ///     1,
    ///     ssehub_store::Event::new("x"),
    ///     ssehub_store::Recipients::All,
    /// );
    /// assert_eq!(record.event_type(), "message");
    /// ```
    pub fn event_type(&self) -> &str {
        self.event.event_type()
    }

    /// Whether a client of `uid`, asking only for `event_type` if given, may be resent this.
    ///
    /// ```
    /// use ssehub_store::{Record, Recipients};
    /// let record = Record::new(1, ssehub_store::Event::new("x").with_event("order"), Recipients::All);
    /// assert!(record.visible_to("anyone", Some("order")));
    /// assert!(!record.visible_to("anyone", Some("chat")));
    /// ```
    pub fn visible_to(&self, uid: &str, event_type: Option<&str>) -> bool {
        self.recipients.includes(uid) && event_type.is_none_or(|wanted| wanted == self.event_type())
    }
}

/// What [`Store::list_after`] is asked for.
///
/// ```
/// let query = ssehub_store::ListQuery::new("alice", 41, 100);
/// assert_eq!((query.after, query.limit), (41, 100));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListQuery {
    /// The uid asking: only records it may see.
    pub uid: String,
    /// Only records with a greater `seq`.
    pub after: u64,
    /// Only records of this event type (`message` for events without a type), if set.
    pub event_type: Option<String>,
    /// At most this many records (at least 1).
    pub limit: usize,
}

impl ListQuery {
    /// A query for `uid`'s records after `after`, `limit` at a time, of any type.
    ///
    /// ```
    /// let query = ssehub_store::ListQuery::new("alice", 0, 10);
    /// assert_eq!(query.event_type, None);
    /// ```
    pub fn new(uid: impl Into<String>, after: u64, limit: usize) -> Self {
        Self {
            uid: uid.into(),
            after,
            event_type: None,
            limit: limit.max(1),
        }
    }

    /// Only records of this event type.
    ///
    /// ```
    /// let query = ssehub_store::ListQuery::new("alice", 0, 10).event_type("order");
    /// assert_eq!(query.event_type.as_deref(), Some("order"));
    /// ```
    #[must_use]
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Whether `record` answers this query (apart from `after` and `limit`).
    ///
    /// ```
    /// use ssehub_store::{ListQuery, Record, Recipients};
    /// let record = Record::new(3, ssehub_store::Event::new("x"), Recipients::uids(["bob"]));
    /// assert!(!ListQuery::new("alice", 0, 10).matches(&record));
    /// ```
    pub fn matches(&self, record: &Record) -> bool {
        record.visible_to(&self.uid, self.event_type.as_deref())
    }
}

/// One page of [`Store::list_after`]: the records found and where the listing got to.
///
/// ```
/// use ssehub_store::{ListQuery, Page, Record, Recipients};
/// use ssehub_store::Event;
///
/// let history: Vec<Record> = (1..=5)
///     .map(|seq| Record::new(seq, Event::new("x"), Recipients::uids([if seq % 2 == 0 { "bob" } else { "alice" }])))
///     .collect();
/// let page = Page::collect(&ListQuery::new("alice", 0, 2), history.iter());
/// assert_eq!(page.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 3]);
/// assert_eq!(page.scanned_through, 3);
/// assert!(!page.end);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page {
    /// The records, in `seq` order.
    pub records: Vec<Record>,
    /// The highest `seq` this listing looked at (records it skipped as not visible included);
    /// the next page starts after it. Equal to the query's `after` if it looked at nothing.
    pub scanned_through: u64,
    /// There was nothing more to look at: the listing reached the newest record.
    pub end: bool,
}

impl Page {
    /// How many records a store looks at for one page, per record asked for, before it returns
    /// a shorter page (so that a user who was sent little does not make one call scan the whole
    /// history). The hub keeps asking until [`Page::end`].
    pub const SCAN_FACTOR: usize = 16;

    /// A page from `records` (in `seq` order, all after `query.after`): the matching ones up to
    /// the limit, looking at no more than `limit ×` [`Page::SCAN_FACTOR`] records.
    ///
    /// ```
    /// use ssehub_store::{ListQuery, Page, Record};
    /// let page = Page::collect(&ListQuery::new("alice", 9, 10), std::iter::empty::<Record>());
    /// assert!(page.end);
    /// assert_eq!(page.scanned_through, 9);
    /// ```
    pub fn collect<R: Borrow<Record>>(
        query: &ListQuery,
        records: impl IntoIterator<Item = R>,
    ) -> Self {
        let page = Self::try_collect(query, records.into_iter().map(Ok::<R, Infallible>));
        match page {
            Ok(page) => page,
            Err(never) => match never {},
        }
    }

    /// [`Page::collect`] from records that may fail to load (decoded from disk, say): stops at
    /// the first error, having loaded no more records than the page needs.
    ///
    /// ```
    /// use ssehub_store::{ListQuery, Page, Record, StoreError};
    /// let failing = [Err::<Record, _>(StoreError::Corrupt { seq: 1, reason: "bad".into() })];
    /// assert!(Page::try_collect(&ListQuery::new("alice", 0, 10), failing).is_err());
    /// ```
    pub fn try_collect<R: Borrow<Record>, E>(
        query: &ListQuery,
        records: impl IntoIterator<Item = Result<R, E>>,
    ) -> Result<Self, E> {
        let mut page = Self {
            records: Vec::new(),
            scanned_through: query.after,
            end: false,
        };
        let budget = query.limit.saturating_mul(Self::SCAN_FACTOR);
        let mut records = records.into_iter();
        for _ in 0..budget {
            let Some(record) = records.next() else {
                page.end = true;
                return Ok(page);
            };
            let record = record?;
            let record = record.borrow();
            page.scanned_through = record.seq;
            if query.matches(record) {
                page.records.push(record.clone());
                if page.records.len() >= query.limit {
                    break;
                }
            }
        }
        Ok(page)
    }
}

/// How much history a store keeps: the newest `max_events`, none older than `max_age`, and no
/// more than `max_bytes` in all. A store drops its oldest records until every limit holds.
///
/// ```
/// use std::time::Duration;
/// let retention = ssehub_store::Retention::events(100_000)
///     .max_age(Duration::from_secs(3600))
///     .max_bytes(256 << 20);
/// assert_eq!(retention.max_events, 100_000);
/// assert_eq!(retention.max_bytes, Some(256 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Keep at most this many events (at least 1).
    pub max_events: u64,
    /// Drop events older than this, if set.
    pub max_age: Option<Duration>,
    /// Keep at most this many bytes of records, if set (see [`Retention::max_bytes`] for what
    /// counts).
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// Keep the newest `max_events` events, of any age and size.
    ///
    /// ```
    /// let retention = ssehub_store::Retention::events(10);
    /// assert_eq!((retention.max_age, retention.max_bytes), (None, None));
    /// ```
    pub fn events(max_events: u64) -> Self {
        Self {
            max_events: max_events.max(1),
            max_age: None,
            max_bytes: None,
        }
    }

    /// Also drop events older than `age`.
    ///
    /// ```
    /// let retention = ssehub_store::Retention::events(10)
    ///     .max_age(std::time::Duration::from_secs(60));
    /// ```
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Also drop the oldest events while the records kept take more than `bytes`.
    ///
    /// What counts is each store's measure of what it holds, documented on the store:
    /// - `MemoryStore`: an estimate of the heap a record holds ([`MemoryStore::record_bytes`]:
    ///   its fixed fields, its id, type and data, its entry in the id index) plus, once per
    ///   recipient set shared by consecutive records, the set's uids
    ///   ([`MemoryStore::recipients_bytes`]). Allocator slack is not counted.
    /// - `RedbStore` (`ssehub-store-redb`): a record's encoded size in the file (its value in the
    ///   events table: about 20 bytes plus its id, type and data) plus, once per recipient set
    ///   shared by consecutive records, the set's encoded size (4 bytes plus 4 and the length of
    ///   each uid). redb's own page overhead and the id index are not counted, so the file is
    ///   larger than this.
    ///
    /// The newest event is kept even when it alone is over the limit (`max_events` is at least
    /// 1 too).
    ///
    /// ```
    /// use ssehub_store::{Event, MemoryStore, Recipients, Record, Retention, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), ssehub_store::StoreError> {
    /// let store = MemoryStore::with_retention(Retention::events(1_000_000).max_bytes(64 << 10));
    /// let kilobyte = "x".repeat(1024);
    /// for seq in 1..=1_000 {
    ///     store.save(&[Record::new(seq, Event::new(kilobyte.clone()), Recipients::All)]).await?;
    /// }
    /// assert!(store.bytes() <= 64 << 10);
    /// assert!(store.len() > 32 && store.len() < 64); // each record is 1 KiB of data and more
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Whether records holding `bytes` in all are over [`Retention::max_bytes`] (for a
    /// backend's pruning).
    ///
    /// ```
    /// let retention = ssehub_store::Retention::events(10).max_bytes(100);
    /// assert!(retention.over_bytes(101));
    /// assert!(!retention.over_bytes(100));
    /// assert!(!ssehub_store::Retention::events(10).over_bytes(u64::MAX));
    /// ```
    pub fn over_bytes(&self, bytes: u64) -> bool {
        self.max_bytes.is_some_and(|max| bytes > max)
    }

    /// Whether a record saved at `saved_at` is too old at `now` (for a backend's pruning).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// let retention = ssehub_store::Retention::events(10).max_age(Duration::from_secs(60));
    /// let now = SystemTime::now();
    /// assert!(retention.expired(now - Duration::from_secs(61), now));
    /// assert!(!retention.expired(now - Duration::from_secs(59), now));
    /// ```
    pub fn expired(&self, saved_at: SystemTime, now: SystemTime) -> bool {
        self.max_age.is_some_and(|age| {
            now.duration_since(saved_at)
                .is_ok_and(|elapsed| elapsed > age)
        })
    }
}

/// A store failed. Pushes that could not be saved are refused and sent to no one.
///
/// ```
/// use ssehub_store::StoreError;
///
/// let error = StoreError::backend(std::io::Error::other("disk full"));
/// assert_eq!(error.to_string(), "the event store failed: disk full");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed: I/O, the database, the network.
    Backend(Arc<dyn StdError + Send + Sync>),
    /// A stored record could not be read back.
    Corrupt {
        /// The record's `seq`.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    /// Wraps a backend's error.
    ///
    /// ```
    /// let error = ssehub_store::StoreError::backend(std::io::Error::other("timeout"));
    /// ```
    pub fn backend(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Backend(Arc::from(error.into()))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Backend(error) => write!(f, "the event store failed: {error}"),
            Self::Corrupt { seq, reason } => {
                write!(
                    f,
                    "the event store holds a damaged record (seq {seq}): {reason}"
                )
            }
        }
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Backend(error) => Some(&**error),
            Self::Corrupt { .. } => None,
        }
    }
}

/// Errors are equal when they are of the same kind and say the same (a backend's error has no
/// equality of its own).
impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Backend(a), Self::Backend(b)) => a.to_string() == b.to_string(),
            (
                Self::Corrupt { seq, reason },
                Self::Corrupt {
                    seq: other_seq,
                    reason: other_reason,
                },
            ) => seq == other_seq && reason == other_reason,
            _ => false,
        }
    }
}

impl Eq for StoreError {}
