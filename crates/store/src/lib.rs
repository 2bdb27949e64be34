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
mod memory_log;

pub use async_trait::async_trait;
pub use memory::MemoryStore;
pub use memory_log::MemoryLog;

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
/// - [`list_after`](Store::list_after) returns, in `seq` order, only records the query's uid and
///   topics may see and of its event type if one is given ([`ListQuery::matches`]). A record
///   keeps its [`Recipients`] (uids and topics) for this.
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

/// A log shared by several hub nodes: it numbers the events itself, so that every node sees
/// one order (`ssehub-store-redis`'s `RedisLog` is one).
///
/// With a `Log` (`HubBuilder::log`), a hub never delivers its own pushes directly. Its
/// committer [`append`](Log::append)s them, getting their seqs (and the missing ids) from the
/// log, atomically across nodes; a tail task on every node [`read`](Log::read)s what was
/// appended, in log order, and fans it out locally, its own pushes included. Live delivery and
/// resend then come from one sequence, so `Last-Event-ID` works on any node, and a node that
/// loses the log resumes reading from the last seq it delivered.
///
/// The contract, beside [`Store`]'s (which a log answers for resend; its
/// [`save`](Store::save) is not used with a log):
/// - [`append`](Log::append) numbers the events of the pushes it accepts with consecutive seqs,
///   in the order given, with no holes between appends from any node; assigns an id to each
///   event without one (unique across nodes, increasing in log order); refuses, push by push, an
///   explicit id that the log holds or that the pushes before it in the call used
///   ([`Appended::DuplicateId`]), appending nothing of that push.
/// - `append` is given `known`, the highest seq the caller has seen: a log whose numbering is
///   below it (its data was lost) must continue above it, never reuse a seq a client may hold.
/// - [`read`](Log::read) returns the records after `after`, in seq order, at most `limit`,
///   waiting a bounded while for the first; an empty answer means "nothing yet, ask again".
///
/// ```
/// use ssehub_store::{Appended, Log};
///
/// // A hub's committer does this with each batch of pushes.
/// async fn append_one(log: &dyn Log, push: ssehub_store::Append<'_>) -> Option<u64> {
///     match log.append(&[push], 0).await.ok()?.pop()? {
///         Appended::Accepted { first_seq, .. } => Some(first_seq),
///         Appended::DuplicateId { .. } => None,
///     }
/// }
/// ```
#[async_trait]
pub trait Log: Store {
    /// The last seq of the log when this handle was opened: a hub's tail starts reading after
    /// it, so that a subscription that opens later, and whose replay lists the log up to its
    /// end, misses nothing between the two.
    fn opened_at(&self) -> u64;

    /// Appends pushes, each all or nothing, in the order given; one answer per push.
    async fn append(&self, pushes: &[Append<'_>], known: u64) -> Result<Vec<Appended>, StoreError>;

    /// Up to `limit` records after `after`, in seq order, waiting a bounded while (a blocking
    /// read) for the first; none if nothing came meanwhile.
    async fn read(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError>;
}

/// A shared log is a log: several hubs of one process can share one (`MemoryLog` in tests).
///
/// ```
/// use std::sync::Arc;
/// use ssehub_store::{Log, MemoryLog};
/// fn takes_a_log(_: impl Log) {}
/// takes_a_log(Arc::new(MemoryLog::new(10)));
/// ```
#[async_trait]
impl<L: Log + ?Sized> Log for Arc<L> {
    fn opened_at(&self) -> u64 {
        (**self).opened_at()
    }

    async fn append(&self, pushes: &[Append<'_>], known: u64) -> Result<Vec<Appended>, StoreError> {
        (**self).append(pushes, known).await
    }

    async fn read(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        (**self).read(after, limit).await
    }
}

/// One push for [`Log::append`]: who it is for and its events (ids only where the publisher
/// gave one).
///
/// ```
/// use ssehub_store::{Append, Event, Recipients};
/// let events = [Event::new("hi")];
/// let push = Append { recipients: &Recipients::uids(["alice"]), events: &events };
/// assert_eq!(push.events.len(), 1);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Append<'a> {
    /// Who the push is for.
    pub recipients: &'a Recipients,
    /// Its events, validated.
    pub events: &'a [Event],
}

/// What [`Log::append`] did with one push.
///
/// ```
/// use ssehub_store::Appended;
/// let refused = Appended::DuplicateId { index: 0, id: "a".into() };
/// assert!(matches!(refused, Appended::DuplicateId { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Appended: its events have seqs `first_seq`, `first_seq + 1`, ... and these ids.
    Accepted {
        /// The seq of its first event.
        first_seq: u64,
        /// Each event's id, in order: the publisher's, or the one the log assigned.
        ids: Vec<String>,
    },
    /// Not appended: event `index` reuses `id`.
    DuplicateId {
        /// The event's index in the push.
        index: usize,
        /// The id it reuses.
        id: String,
    },
}

/// Who an event is pushed to: everyone, or named uids and topics (the union: a connection of one
/// of the uids, or subscribed to one of the topics, receives it, once).
///
/// Build a list with [`Recipients::uids`] and [`Recipients::topics`], joined with
/// [`Recipients::and_uids`] / [`Recipients::and_topics`]. An empty list reaches nobody: only
/// [`Recipients::All`] reaches everyone.
///
/// ```
/// use ssehub_store::Recipients;
///
/// let recipients = Recipients::uids(["bob", "alice", "bob"]).and_topics(["orders/42"]);
/// assert!(recipients.reaches("alice", &[] as &[&str]));
/// assert!(recipients.reaches("carol", &["prices", "orders/42"]));
/// assert!(!recipients.reaches("carol", &["prices"]));
/// assert!(Recipients::All.reaches("anyone", &[] as &[&str]));
/// assert!(Recipients::uids(Vec::<String>::new()).is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// A broadcast: everyone may see it.
    All,
    /// These uids and topics.
    Listed(Listed),
}

/// The uids and topics of [`Recipients::Listed`]: each list sorted and without duplicates, shared
/// by reference count (the records of one push share one).
///
/// ```
/// use ssehub_store::Recipients;
/// let Recipients::Listed(listed) = Recipients::topics(["b", "a", "b"]) else { unreachable!() };
/// assert_eq!(listed.topics().len(), 2);
/// assert_eq!(&*listed.topics()[0], "a");
/// assert!(listed.uids().is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed(Arc<Lists>);

#[derive(Debug, PartialEq, Eq)]
struct Lists {
    uids: Box<[Arc<str>]>,
    topics: Box<[Arc<str>]>,
}

/// Sorted, without duplicates.
fn sorted_set<I, S>(items: I) -> Vec<Arc<str>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut items: Vec<Arc<str>> = items.into_iter().map(|item| item.as_ref().into()).collect();
    items.sort_unstable();
    items.dedup();
    items
}

fn contains(sorted: &[Arc<str>], item: &str) -> bool {
    sorted.binary_search_by(|probe| (**probe).cmp(item)).is_ok()
}

impl Recipients {
    /// These uids and topics (each sorted and deduplicated).
    ///
    /// ```
    /// use ssehub_store::Recipients;
    /// let recipients = Recipients::new(["alice"], ["prices"]);
    /// assert_eq!(recipients, Recipients::uids(["alice"]).and_topics(["prices"]));
    /// ```
    pub fn new<U, T, S1, S2>(uids: U, topics: T) -> Self
    where
        U: IntoIterator<Item = S1>,
        S1: AsRef<str>,
        T: IntoIterator<Item = S2>,
        S2: AsRef<str>,
    {
        Self::Listed(Listed::new(uids, topics))
    }

    /// These uids (sorted and deduplicated); none reaches nobody.
    ///
    /// ```
    /// use ssehub_store::Recipients;
    /// assert!(Recipients::uids(["alice"]).reaches("alice", &[] as &[&str]));
    /// assert!(!Recipients::uids(["alice"]).reaches("bob", &["alice"]));
    /// ```
    pub fn uids<I, S>(uids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::new(uids, std::iter::empty::<&str>())
    }

    /// These topics (sorted and deduplicated); none reaches nobody.
    ///
    /// ```
    /// use ssehub_store::Recipients;
    /// assert!(Recipients::topics(["prices"]).reaches("anyone", &["prices"]));
    /// assert!(!Recipients::topics(["prices"]).reaches("prices", &[] as &[&str]));
    /// ```
    pub fn topics<I, S>(topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::new(std::iter::empty::<&str>(), topics)
    }

    /// These recipients and `uids` too. [`Recipients::All`] stays everyone.
    ///
    /// ```
    /// use ssehub_store::Recipients;
    /// let both = Recipients::topics(["prices"]).and_uids(["alice"]);
    /// assert!(both.reaches("alice", &[] as &[&str]) && both.reaches("bob", &["prices"]));
    /// ```
    #[must_use]
    pub fn and_uids<I, S>(self, uids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match self {
            Self::All => Self::All,
            Self::Listed(listed) => {
                let mut all: Vec<Arc<str>> = listed.uids().to_vec();
                all.extend(uids.into_iter().map(|uid| Arc::from(uid.as_ref())));
                Self::new(all, listed.topics().iter().map(|topic| &**topic))
            }
        }
    }

    /// These recipients and `topics` too. [`Recipients::All`] stays everyone.
    ///
    /// ```
    /// use ssehub_store::Recipients;
    /// let both = Recipients::uids(["alice"]).and_topics(["prices"]);
    /// assert!(both.reaches("bob", &["prices"]));
    /// ```
    #[must_use]
    pub fn and_topics<I, S>(self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match self {
            Self::All => Self::All,
            Self::Listed(listed) => {
                let mut all: Vec<Arc<str>> = listed.topics().to_vec();
                all.extend(topics.into_iter().map(|topic| Arc::from(topic.as_ref())));
                Self::new(listed.uids().iter().map(|uid| &**uid), all)
            }
        }
    }

    /// Whether this reaches nobody: a list with no uid and no topic.
    ///
    /// ```
    /// use ssehub_store::Recipients;
    /// assert!(Recipients::topics(Vec::<String>::new()).is_empty());
    /// assert!(!Recipients::All.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        match self {
            Self::All => false,
            Self::Listed(listed) => listed.uids().is_empty() && listed.topics().is_empty(),
        }
    }

    /// Whether a connection of `uid` subscribed to `topics` (in any order) is one of the
    /// recipients.
    ///
    /// ```
    /// use ssehub_store::Recipients;
    /// let orders = Recipients::topics(["orders/42"]);
    /// assert!(orders.reaches("bob", &["prices", "orders/42"]));
    /// assert!(!orders.reaches("bob", &["orders/4"]));
    /// ```
    pub fn reaches<T: AsRef<str>>(&self, uid: &str, topics: &[T]) -> bool {
        match self {
            Self::All => true,
            Self::Listed(listed) => {
                contains(listed.uids(), uid)
                    || (!listed.topics().is_empty()
                        && topics
                            .iter()
                            .any(|topic| contains(listed.topics(), topic.as_ref())))
            }
        }
    }

    /// Whether `uid` is one of the named uids (or this is everyone); topics aside.
    ///
    /// ```
    /// use ssehub_store::Recipients;
    /// assert!(!Recipients::uids(["alice"]).includes("bob"));
    /// ```
    pub fn includes(&self, uid: &str) -> bool {
        self.reaches::<&str>(uid, &[])
    }
}

impl Listed {
    /// These uids and topics (each sorted and deduplicated); for stores that decode a list.
    ///
    /// ```
    /// let listed = ssehub_store::Listed::new(["b", "a"], ["t"]);
    /// assert_eq!(listed.uids().len(), 2);
    /// assert_eq!(ssehub_store::Recipients::Listed(listed), ssehub_store::Recipients::new(["a", "b"], ["t"]));
    /// ```
    pub fn new<U, T, S1, S2>(uids: U, topics: T) -> Self
    where
        U: IntoIterator<Item = S1>,
        S1: AsRef<str>,
        T: IntoIterator<Item = S2>,
        S2: AsRef<str>,
    {
        Self(Arc::new(Lists {
            uids: sorted_set(uids).into(),
            topics: sorted_set(topics).into(),
        }))
    }

    /// The uids, sorted, without duplicates.
    ///
    /// ```
    /// use ssehub_store::Recipients;
    /// let Recipients::Listed(listed) = Recipients::uids(["b", "a"]) else { unreachable!() };
    /// assert_eq!(listed.uids().iter().map(|u| &**u).collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn uids(&self) -> &[Arc<str>] {
        &self.0.uids
    }

    /// The topics, sorted, without duplicates.
    ///
    /// ```
    /// use ssehub_store::Recipients;
    /// let Recipients::Listed(listed) = Recipients::topics(["prices"]) else { unreachable!() };
    /// assert_eq!(&*listed.topics()[0], "prices");
    /// ```
    pub fn topics(&self) -> &[Arc<str>] {
        &self.0.topics
    }

    /// Whether `other` is this very list (a clone of it), not only an equal one: cheap, for
    /// stores that keep one copy of the list its records share.
    ///
    /// ```
    /// use ssehub_store::Recipients;
    /// let Recipients::Listed(a) = Recipients::uids(["x"]) else { unreachable!() };
    /// let Recipients::Listed(b) = Recipients::uids(["x"]) else { unreachable!() };
    /// assert!(a.same(&a.clone()));
    /// assert!(!a.same(&b) && a == b);
    /// ```
    pub fn same(&self, other: &Listed) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
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
/// assert!(record.visible_to("alice", &[] as &[&str], None));
/// assert!(!record.visible_to("bob", &[] as &[&str], None));
/// assert!(record.visible_to("alice", &[] as &[&str], Some("message")));
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

    /// Whether a connection of `uid`, subscribed to `topics` and asking only for `event_type`
    /// if given, may be resent this.
    ///
    /// ```
    /// use ssehub_store::{Record, Recipients};
    /// let order = ssehub_store::Event::new("x").with_event("order");
    /// let record = Record::new(1, order, Recipients::topics(["orders/42"]));
    /// assert!(record.visible_to("anyone", &["orders/42"], Some("order")));
    /// assert!(!record.visible_to("anyone", &["orders/42"], Some("chat")));
    /// assert!(!record.visible_to("anyone", &["orders/7"], None));
    /// ```
    pub fn visible_to<T: AsRef<str>>(
        &self,
        uid: &str,
        topics: &[T],
        event_type: Option<&str>,
    ) -> bool {
        self.recipients.reaches(uid, topics)
            && event_type.is_none_or(|wanted| wanted == self.event_type())
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
    /// The topics the asking connection is subscribed to: records pushed to any of them are
    /// visible too.
    pub topics: Vec<String>,
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
            topics: Vec::new(),
            after,
            event_type: None,
            limit: limit.max(1),
        }
    }

    /// Records pushed to these topics are visible too (the resuming connection's topics).
    ///
    /// ```
    /// use ssehub_store::{ListQuery, Record, Recipients};
    /// let record = Record::new(3, ssehub_store::Event::new("x"), Recipients::topics(["prices"]));
    /// assert!(!ListQuery::new("alice", 0, 10).matches(&record));
    /// assert!(ListQuery::new("alice", 0, 10).topics(["prices"]).matches(&record));
    /// ```
    #[must_use]
    pub fn topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
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
        record.visible_to(&self.uid, &self.topics, self.event_type.as_deref())
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
/// assert_eq!(page.first_scanned, Some(1));
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
    /// The `seq` of the first record this listing looked at, if any. Seqs have no holes, so a
    /// value past `after + 1` means retention dropped records the caller had not read yet: the
    /// hub then tells the client its history has a gap.
    pub first_scanned: Option<u64>,
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
            first_scanned: None,
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
            page.first_scanned.get_or_insert(record.seq);
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
