//! The hub's options and their builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use ssehub_wire::Event;

use crate::limits::PushLimits;
use crate::registry::Caps;
use crate::store::{Log, Store};
use crate::{Hub, SlowClientPolicy};

/// Called with the uid and the event for every delivery the slow-client policy gave up on.
pub(crate) type PushFailedHandler = Arc<dyn Fn(&str, &Event) + Send + Sync>;

/// The default number of events a connection's queue holds.
pub const DEFAULT_CONNECTION_BUFFER: usize = 256;
/// The default number of bytes a connection's queue holds (its waiting area as many more).
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 1024 * 1024;
/// The default heartbeat interval (the seed's): a comment after this long without a write.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// The default time [`Hub::close`] may take: pushes in progress finish, streams flush.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The default time a push waits for the store (and a resend for each read) before failing.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default least time between the starts of two saves of the store (see
/// [`HubBuilder::save_interval`]).
pub const DEFAULT_SAVE_INTERVAL: Duration = Duration::from_millis(2);
/// How many events a resend reads from the store at a time (and writes as one chunk).
pub const DEFAULT_RESEND_PAGE_SIZE: usize = 256;

/// The default number of replays that read the store at once: twice the workers, at least 4
/// (see [`HubBuilder::max_concurrent_replays`]).
pub(crate) fn default_concurrent_replays(workers: usize) -> usize {
    (workers * 2).max(4)
}

/// How a stream batches its events into writes (`HubBuilder::batch_delay`,
/// `HubBuilder::batch_when_busy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batching {
    /// Every batch waits this long after its first event.
    Fixed(Duration),
    /// Only an event within this long of the stream's last write waits, until this long after it.
    WhenBusy(Duration),
}

/// Everything the hub needs to know, fixed when it is built.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) connection_buffer: usize,
    pub(crate) max_queued_bytes: usize,
    pub(crate) slow_client: SlowClientPolicy,
    pub(crate) workers: usize,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) client_retry: Option<Duration>,
    pub(crate) close_timeout: Duration,
    pub(crate) stream_headers: HeaderMap,
    pub(crate) push_failed: Option<PushFailedHandler>,
    pub(crate) store: Option<Arc<dyn Store>>,
    /// With a shared log (`HubBuilder::log`): the same object as `store`.
    pub(crate) log: Option<Arc<dyn Log>>,
    pub(crate) resend: bool,
    pub(crate) store_timeout: Duration,
    pub(crate) save_interval: Option<Duration>,
    pub(crate) resend_page_size: usize,
    pub(crate) batching: Option<Batching>,
    // What a push may carry (see `limits.rs`).
    pub(crate) limits: PushLimits,
    pub(crate) reserved_over_http: bool,
    // Admission (see `admission.rs`).
    pub(crate) caps: Caps,
    pub(crate) over_capacity_retry: Duration,
    /// `None`: derived from the workers when built.
    pub(crate) max_concurrent_replays: Option<usize>,
    pub(crate) max_topics_per_connection: usize,
    /// Write to the `metrics` facade (`HubBuilder::metrics`).
    #[cfg(feature = "metrics")]
    pub(crate) metrics: bool,
}

impl Default for Config {
    fn default() -> Self {
        let mut stream_headers = HeaderMap::new();
        // Tells nginx-style reverse proxies not to buffer the stream.
        stream_headers.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
        Self {
            connection_buffer: DEFAULT_CONNECTION_BUFFER,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            slow_client: SlowClientPolicy::default(),
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            heartbeat: Some(DEFAULT_HEARTBEAT),
            client_retry: None,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            stream_headers,
            push_failed: None,
            store: None,
            log: None,
            resend: false,
            store_timeout: DEFAULT_STORE_TIMEOUT,
            save_interval: Some(DEFAULT_SAVE_INTERVAL),
            resend_page_size: DEFAULT_RESEND_PAGE_SIZE,
            batching: None,
            limits: PushLimits::default(),
            reserved_over_http: false,
            caps: Caps {
                streams: crate::admission::default_max_streams(),
                per_uid: usize::MAX,
            },
            over_capacity_retry: crate::admission::DEFAULT_OVER_CAPACITY_RETRY,
            max_concurrent_replays: None,
            max_topics_per_connection: crate::topic::DEFAULT_MAX_TOPICS_PER_CONNECTION,
            #[cfg(feature = "metrics")]
            metrics: false,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Config");
        debug
            .field("connection_buffer", &self.connection_buffer)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("slow_client", &self.slow_client)
            .field("workers", &self.workers)
            .field("heartbeat", &self.heartbeat)
            .field("client_retry", &self.client_retry)
            .field("close_timeout", &self.close_timeout)
            .field("stream_headers", &self.stream_headers)
            .field("push_failed", &self.push_failed.is_some())
            .field("store", &self.store.is_some())
            .field("log", &self.log.is_some())
            .field("resend", &self.resend)
            .field("store_timeout", &self.store_timeout)
            .field("save_interval", &self.save_interval)
            .field("resend_page_size", &self.resend_page_size)
            .field("batching", &self.batching)
            .field("limits", &self.limits)
            .field("reserved_over_http", &self.reserved_over_http)
            .field("caps", &self.caps)
            .field("over_capacity_retry", &self.over_capacity_retry)
            .field("max_concurrent_replays", &self.max_concurrent_replays);
        #[cfg(feature = "metrics")]
        debug.field("metrics", &self.metrics);
        debug.finish()
    }
}

/// Builds a [`Hub`]. Every option has a default; `Hub::builder().build().unwrap()` equals `Hub::new()`.
///
/// ```
/// use std::time::Duration;
/// use ssehub_hub::{Hub, SlowClientPolicy};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let hub = Hub::builder()
///     .connection_buffer(1024)
///     .heartbeat(Some(Duration::from_secs(15)))
///     .client_retry(Duration::from_secs(3))
///     .slow_client(SlowClientPolicy::Disconnect)
///     .on_push_failed(|uid, event| tracing::warn!(uid, id = ?event.id, "push failed"))
///     .build().unwrap();
/// # }
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct HubBuilder {
    config: Config,
}

impl HubBuilder {
    /// How many events each connection's queue holds before the slow-client policy applies
    /// (the seed's `WithChanBufferSize`). Default [`DEFAULT_CONNECTION_BUFFER`]; at least 1.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder().connection_buffer(64).build().unwrap();
    /// ```
    pub fn connection_buffer(mut self, events: usize) -> Self {
        self.config.connection_buffer = events.max(1);
        self
    }

    /// How many bytes of events each connection's queue holds before the slow-client policy
    /// applies, beside the [event count](HubBuilder::connection_buffer); the waiting area of
    /// [`SlowClientPolicy::Wait`] holds as many more. Events are shared between connections, so
    /// this bounds what one slow client can pin, not a copy. An event larger than the budget
    /// still goes into an empty queue. Default [`DEFAULT_MAX_QUEUED_BYTES`]; at least 1.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder().max_queued_bytes(256 * 1024).build().unwrap();
    /// ```
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.config.max_queued_bytes = bytes.max(1);
        self
    }

    /// What to do when a connection's queue is full. Default: the seed's timeout retries.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder()
    ///     .slow_client(ssehub_hub::SlowClientPolicy::Disconnect)
    ///     .build().unwrap();
    /// ```
    pub fn slow_client(mut self, policy: SlowClientPolicy) -> Self {
        self.config.slow_client = policy;
        self
    }

    /// How many tasks share a large broadcast (the seed's `WithWorkerNum`). Default: the number
    /// of CPUs. Broadcasts to fewer than a few thousand connections run on the pushing task.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder().workers(4).build().unwrap();
    /// ```
    pub fn workers(mut self, workers: usize) -> Self {
        self.config.workers = workers.max(1);
        self
    }

    /// Send a heartbeat comment after this long without a write; `None` turns heartbeats off.
    /// A comment is always sent when a stream opens, so clients see it open at once.
    /// Default [`DEFAULT_HEARTBEAT`].
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder()
    ///     .heartbeat(Some(std::time::Duration::from_secs(10)))
    ///     .build().unwrap();
    /// ```
    pub fn heartbeat(mut self, interval: Option<Duration>) -> Self {
        self.config.heartbeat = interval.filter(|interval| !interval.is_zero());
        self
    }

    /// Send `retry: <ms>` when a stream opens, setting how long clients wait before reconnecting.
    /// Default: not sent (browsers then wait about 3 s).
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder()
    ///     .client_retry(std::time::Duration::from_millis(1500))
    ///     .build().unwrap();
    /// ```
    pub fn client_retry(mut self, retry: Duration) -> Self {
        self.config.client_retry = Some(retry);
        self
    }

    /// How long [`Hub::close`] may take in all: waiting for pushes in progress (one may be
    /// waiting for a store), then for open streams to flush their queued events and end.
    /// Default [`DEFAULT_CLOSE_TIMEOUT`].
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder()
    ///     .close_timeout(std::time::Duration::from_secs(1))
    ///     .build().unwrap();
    /// ```
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// Adds a header to every event-stream response (the seed's extra serve headers).
    /// `X-Accel-Buffering: no` is set by default so proxies don't hold events back; CORS belongs
    /// to `tower-http`'s `CorsLayer`, not here.
    ///
    /// ```
    /// use http::{HeaderName, HeaderValue};
    ///
    /// let hub = ssehub_hub::Hub::builder()
    ///     .stream_header(HeaderName::from_static("x-served-by"), HeaderValue::from_static("hub-1"))
    ///     .build().unwrap();
    /// ```
    pub fn stream_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.config.stream_headers.insert(name, value);
        self
    }

    /// Called for every delivery the slow-client policy gives up on, with the connection's uid
    /// and the event (the seed's `WithPushFailedHandleFn`). It runs on the task that noticed the
    /// failure, after the hub's locks are released, so it may push; keep it quick.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder()
    ///     .on_push_failed(|uid, event| eprintln!("push to {uid} failed: {:?}", event.id))
    ///     .build().unwrap();
    /// ```
    pub fn on_push_failed<F>(mut self, handler: F) -> Self
    where
        F: Fn(&str, &Event) + Send + Sync + 'static,
    {
        self.config.push_failed = Some(Arc::new(handler));
        self
    }

    /// Saves every pushed event to `store` before sending it (the seed's `WithStore`): a push
    /// returns once its events are saved and delivered, and fails, sending nothing, if saving
    /// fails. Pushes are saved in batches and delivered in the order saved. See [`resend`] for
    /// what the history is for.
    ///
    /// [`resend`]: HubBuilder::resend
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder()
    ///     .store(ssehub_hub::store::MemoryStore::new(10_000))
    ///     .build().unwrap();
    /// ```
    pub fn store(mut self, store: impl Store) -> Self {
        self.config.store = Some(Arc::new(store));
        self.config.log = None;
        self
    }

    /// Makes this hub one node of several sharing `log` (`ssehub_store_redis::RedisLog`, or
    /// your own [`Log`]), instead of a [`store`](HubBuilder::store) of its own: many nodes behind
    /// a load balancer then behave as one hub.
    ///
    /// A push is appended to the log, which numbers it (one order across nodes) and assigns the
    /// missing ids; the push returns once it is appended. Every node, this one included, reads
    /// the log from a task of its own and delivers what it reads to its own connections, in log
    /// order, each event encoded once per node. So the [`PushReceipt`](crate::PushReceipt) of a
    /// push has its ids, but `connections` and `failed` are 0: delivery happens afterwards, on
    /// every node ([`Hub::stats`](crate::Hub::stats) counts each node's deliveries).
    /// Resend reads the log: `Last-Event-ID` works on any node.
    ///
    /// With the log unreachable, pushes fail (`PushError::Store`, `503` over HTTP), streams stay
    /// open, and the reading task retries with back-off (0.1 s doubling to 5 s, with jitter),
    /// resuming after the last event it delivered.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use futures_util::StreamExt;
    /// use ssehub_hub::{Event, Hub};
    /// use ssehub_hub::store::MemoryLog;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two nodes on one log (in production: `ssehub_store_redis::RedisLog`, one per process).
    /// let log = Arc::new(MemoryLog::new(10_000));
    /// let a = Hub::builder().log(Arc::clone(&log)).resend(true).build()?;
    /// let b = Hub::builder().log(log).resend(true).build()?;
    /// let mut on_b = b.subscribe("alice", Default::default())?;
    /// on_b.next().await; // the opening comment
    /// a.push(["alice"], [Event::new("hi").with_id("1")]).await?;
    /// assert_eq!(on_b.next().await.unwrap(), "id: 1\ndata: hi\n\n");
    /// # Ok(()) }
    /// ```
    pub fn log(mut self, log: impl Log) -> Self {
        let log = Arc::new(log);
        self.config.store = Some(Arc::clone(&log) as Arc<dyn Store>);
        self.config.log = Some(log);
        self
    }

    /// Resend missed events when a client reconnects with a `Last-Event-ID` (the seed's
    /// `WithEnableResendEvents`; needs a [`store`](HubBuilder::store)). The client gets exactly
    /// the events after that id that were addressed to its uid or broadcast (only of its
    /// `event_type` if it gave one), then its live events, with no gap and no duplicate. If the
    /// id is unknown or older than the store's retention, it gets a
    /// [`HISTORY_GAP_EVENT_TYPE`](crate::HISTORY_GAP_EVENT_TYPE) event instead. Default: off.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder()
    ///     .store(ssehub_hub::store::MemoryStore::new(10_000))
    ///     .resend(true)
    ///     .build().unwrap();
    /// ```
    pub fn resend(mut self, enabled: bool) -> Self {
        self.config.resend = enabled;
        self
    }

    /// How long a push waits for the store before it fails with
    /// [`PushError::StoreTimeout`](crate::PushError::StoreTimeout) (`503` over HTTP), and how long
    /// a resend waits for each read before it ends the stream (the client then retries). A push
    /// that times out before its batch is saved is never sent; one whose batch was already being
    /// saved is delivered once the store answers (give events ids to make retrying safe: a reused
    /// id is refused). Default [`DEFAULT_STORE_TIMEOUT`].
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder()
    ///     .store(ssehub_hub::store::MemoryStore::new(1_000))
    ///     .store_timeout(std::time::Duration::from_secs(2))
    ///     .build().unwrap();
    /// ```
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.config.store_timeout = timeout;
        self
    }

    /// With a store, the least time between the starts of two saves; `None` saves each batch as
    /// soon as the one before is saved. A push that comes less than this long after a save began
    /// waits for the rest of the interval, and every push that comes meanwhile shares its save
    /// and the one sync of the disk that ends it: under a steady stream of pushes, fewer saves
    /// cost less CPU (most of a save is the kernel's sync), for at most this much more latency.
    /// A push that finds the store idle longer than this is saved at once. Default
    /// [`DEFAULT_SAVE_INTERVAL`] (tokio's timers have a 1 ms resolution: the wait is up to 3
    /// ms). With the on-disk store at 2,000 uni-cast pushes/s it about doubles the deliveries
    /// per CPU-second, for about 2.4 ms more median latency (`docs/benchmarks.md`).
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder()
    ///     .store(ssehub_hub::store::MemoryStore::new(1_000))
    ///     .save_interval(Some(std::time::Duration::from_millis(2)))
    ///     .build().unwrap();
    /// ```
    pub fn save_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.save_interval = interval.filter(|interval| !interval.is_zero());
        self
    }

    /// How many events a resend reads from the store at a time. Default
    /// [`DEFAULT_RESEND_PAGE_SIZE`]; at least 1.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder().resend_page_size(64).build().unwrap();
    /// ```
    pub fn resend_page_size(mut self, events: usize) -> Self {
        self.config.resend_page_size = events.max(1);
        self
    }

    /// How many replays (resends from the store to reconnecting clients) read the store at
    /// once; the others wait their turn. Default: twice the [workers](HubBuilder::workers), at
    /// least 4; at least 1.
    ///
    /// After a restart every client reconnects at once with a `Last-Event-ID`. Unlimited, their
    /// reads would queue by the thousand on the store (and on the blocking threads the embedded
    /// store reads on), and the committer's saves, so every push, would wait behind them. The
    /// limit applies to each store read (locating the client's id, each page), and a replay
    /// waiting for its turn holds no page; a read's [store timeout](HubBuilder::store_timeout)
    /// starts once it has its turn.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder()
    ///     .store(ssehub_hub::store::MemoryStore::new(1_000))
    ///     .resend(true)
    ///     .max_concurrent_replays(16)
    ///     .build().unwrap();
    /// ```
    pub fn max_concurrent_replays(mut self, replays: usize) -> Self {
        self.config.max_concurrent_replays = Some(replays.max(1));
        self
    }

    /// How many event streams the hub serves at once, on any front end; past it
    /// [`Hub::subscribe`] fails with [`SubscribeError::AtCapacity`](crate::SubscribeError::AtCapacity)
    /// and the HTTP front ends tell the client to come back later (see
    /// [`over_capacity_retry`](HubBuilder::over_capacity_retry)). Default
    /// [`admission::default_max_streams`](crate::admission::default_max_streams): the process's
    /// open-file limit less a reserve for publishers, the store and logs, read when the builder
    /// is made (no cap without an open-file limit). `usize::MAX` turns the cap off, for hubs
    /// whose subscriptions hold no socket.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder().max_streams(2).build().unwrap();
    /// let _a = hub.subscribe("alice", Default::default()).unwrap();
    /// let _b = hub.subscribe("bob", Default::default()).unwrap();
    /// assert_eq!(
    ///     hub.subscribe("carol", Default::default()).unwrap_err(),
    ///     ssehub_hub::SubscribeError::AtCapacity { limit: 2 }
    /// );
    /// ```
    pub fn max_streams(mut self, streams: usize) -> Self {
        self.config.caps.streams = streams;
        self
    }

    /// How many event streams one uid may hold at once; past it [`Hub::subscribe`] fails with
    /// [`SubscribeError::UidAtCapacity`](crate::SubscribeError::UidAtCapacity). Default: no
    /// cap, since some applications subscribe every anonymous visitor under one uid. Where a
    /// uid is a user, a cap (a browser opens at most 6 HTTP/1.1 connections per host, so 16 or
    /// 32 leaves room for several devices) keeps one account from taking every stream slot.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder().max_streams_per_uid(1).build().unwrap();
    /// let _a = hub.subscribe("alice", Default::default()).unwrap();
    /// assert!(hub.subscribe("alice", Default::default()).is_err());
    /// assert!(hub.subscribe("bob", Default::default()).is_ok());
    /// ```
    pub fn max_streams_per_uid(mut self, streams: usize) -> Self {
        self.config.caps.per_uid = streams;
        self
    }

    /// How long a client refused for capacity is told to wait: the HTTP front ends answer an
    /// event-stream request over a cap with a stream that sets `retry:` to this wait plus up to
    /// as much again at random (so a refused crowd comes back spread out) and ends at once, with
    /// the same wait in `Retry-After`. Default
    /// [`admission::DEFAULT_OVER_CAPACITY_RETRY`](crate::admission::DEFAULT_OVER_CAPACITY_RETRY).
    ///
    /// A stream rather than `503`: a browser's `EventSource` (and the ssehub client, unless
    /// told to retry HTTP errors) gives up for good on any status but `200`, while an ended
    /// stream makes it reconnect after its reconnection time. The lean server's connection cap,
    /// which answers before reading a request, does send `503` with `Retry-After`.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder()
    ///     .over_capacity_retry(std::time::Duration::from_secs(10))
    ///     .build().unwrap();
    /// ```
    pub fn over_capacity_retry(mut self, wait: Duration) -> Self {
        self.config.over_capacity_retry = wait;
        self
    }

    /// Holds each stream's first queued event up to `delay` before writing, so that events
    /// pushed meanwhile go out in the same write. Off by default: every event is written as soon
    /// as its stream runs.
    ///
    /// Each write to a socket costs about the same whatever it carries, and on a busy server that
    /// cost is most of a delivery's (mostly the kernel's). With pushes a few milliseconds apart,
    /// a delay of that order puts several events in each write: more deliveries per CPU-second,
    /// for at most `delay` more latency. `None` or zero turns it off.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder()
    ///     .batch_delay(Some(std::time::Duration::from_millis(5)))
    ///     .build().unwrap();
    /// ```
    pub fn batch_delay(mut self, delay: Option<Duration>) -> Self {
        self.config.batching = delay.filter(|delay| !delay.is_zero()).map(Batching::Fixed);
        self
    }

    /// Batches a stream's events only while they come close together: an event that finds its
    /// stream quiet (nothing written for `window`) is written at once; one that comes within
    /// `window` of the stream's last write waits until `window` after it, and goes out with
    /// whatever else came meanwhile. Off by default. Replaces [`batch_delay`](Self::batch_delay)
    /// (the last of the two called wins).
    ///
    /// So a quiet stream (a user's own notifications, a broadcast every few seconds) gets each
    /// event without delay, and a busy one (many events a second) gets at most one write per
    /// `window`, each carrying several events: fewer writes, which are most of a delivery's
    /// cost, for at most `window` more latency, and only while busy. A backlog (more than one
    /// write's worth queued) is written without waiting. `None` or zero turns it off.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder()
    ///     .batch_when_busy(Some(std::time::Duration::from_millis(5)))
    ///     .build().unwrap();
    /// ```
    pub fn batch_when_busy(mut self, window: Option<Duration>) -> Self {
        self.config.batching = window
            .filter(|window| !window.is_zero())
            .map(Batching::WhenBusy);
        self
    }

    // What a push may carry. Each limit is checked by `Hub::push` and `Hub::broadcast` before
    // anything is sent; a push over one is refused whole.

    /// The longest event id a push may carry, in bytes. Default [`DEFAULT_MAX_ID_LEN`](crate::DEFAULT_MAX_ID_LEN) (256):
    /// clients send the id back as `Last-Event-ID` on every reconnection, where a long one fails
    /// header limits. Over it, [`PushError::LimitExceeded`](crate::PushError::LimitExceeded)
    /// (`400` from the push API).
    ///
    /// ```
    /// use ssehub_hub::{Event, Hub, PushError, PushField};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = Hub::builder().max_id_len(8).build().unwrap();
    /// let err = hub.broadcast([Event::new("x").with_id("123456789")]).await.unwrap_err();
    /// assert!(matches!(err, PushError::LimitExceeded { field: PushField::Id(0), limit: 8, actual: 9 }));
    /// # }
    /// ```
    pub fn max_id_len(mut self, bytes: usize) -> Self {
        self.config.limits.max_id_len = bytes;
        self
    }

    /// The longest event type a push may carry, in bytes. Default
    /// [`DEFAULT_MAX_EVENT_TYPE_LEN`](crate::DEFAULT_MAX_EVENT_TYPE_LEN) (64). Over it,
    /// [`PushError::LimitExceeded`](crate::PushError::LimitExceeded) (`400` from the push API).
    ///
    /// ```
    /// use ssehub_hub::{Event, Hub};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = Hub::builder().max_event_type_len(5).build().unwrap();
    /// let err = hub.broadcast([Event::new("x").with_event("too-long")]).await.unwrap_err();
    /// assert!(err.to_string().starts_with("events[0].event: 8 bytes, over the limit of 5"));
    /// # }
    /// ```
    pub fn max_event_type_len(mut self, bytes: usize) -> Self {
        self.config.limits.max_event_type_len = bytes;
        self
    }

    /// The most events one push may carry. Default [`DEFAULT_MAX_EVENTS_PER_PUSH`](crate::DEFAULT_MAX_EVENTS_PER_PUSH) (1,000).
    /// Over it, [`PushError::LimitExceeded`](crate::PushError::LimitExceeded) (`400` from the
    /// push API). A connection takes at most its [`connection_buffer`](Self::connection_buffer)
    /// plus as many waiting, so keep pushes well under that.
    ///
    /// ```
    /// use ssehub_hub::{Event, Hub};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = Hub::builder().max_events_per_push(2).build().unwrap();
    /// assert!(hub.broadcast([Event::new("1"), Event::new("2")]).await.is_ok());
    /// assert!(hub.broadcast([Event::new("1"), Event::new("2"), Event::new("3")]).await.is_err());
    /// # }
    /// ```
    pub fn max_events_per_push(mut self, events: usize) -> Self {
        self.config.limits.max_events = events;
        self
    }

    /// The most uids one [`Hub::push`] may name (duplicates count). Default
    /// [`DEFAULT_MAX_UIDS_PER_PUSH`](crate::DEFAULT_MAX_UIDS_PER_PUSH) (10,000): each uid is a registry lock, and with a store each
    /// saved event keeps the list. Over it,
    /// [`PushError::LimitExceeded`](crate::PushError::LimitExceeded) (`400` from the push API).
    ///
    /// ```
    /// use ssehub_hub::{Event, Hub};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = Hub::builder().max_uids_per_push(2).build().unwrap();
    /// let err = hub.push(["a", "b", "c"], [Event::new("x")]).await.unwrap_err();
    /// assert!(err.to_string().starts_with("uids: 3 uids, over the limit of 2 per push"));
    /// # }
    /// ```
    pub fn max_uids_per_push(mut self, uids: usize) -> Self {
        self.config.limits.max_uids = uids;
        self
    }

    /// The most topics one push may name (duplicates count once). Default
    /// [`DEFAULT_MAX_TOPICS_PER_PUSH`](crate::DEFAULT_MAX_TOPICS_PER_PUSH) (10,000): each topic
    /// is a registry lock, and with a store each saved push keeps the list. Over it,
    /// [`PushError::LimitExceeded`](crate::PushError::LimitExceeded) (`400` from the push API).
    ///
    /// ```
    /// use ssehub_hub::{Event, Hub, Recipients};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = Hub::builder().max_topics_per_push(1).build().unwrap();
    /// let err = hub.push_to(Recipients::topics(["a", "b"]), [Event::new("x")]).await.unwrap_err();
    /// assert!(err.to_string().starts_with("topics: 2 topics, over the limit of 1 per push"));
    /// # }
    /// ```
    pub fn max_topics_per_push(mut self, topics: usize) -> Self {
        self.config.limits.max_topics = topics;
        self
    }

    /// The longest topic name, in bytes, for pushes and subscriptions alike. Default
    /// [`DEFAULT_MAX_TOPIC_LEN`](crate::DEFAULT_MAX_TOPIC_LEN) (256). A longer one is refused:
    /// [`PushError::InvalidTopic`](crate::PushError::InvalidTopic) or
    /// [`SubscribeError::InvalidTopic`](crate::SubscribeError::InvalidTopic) (`400` over HTTP).
    ///
    /// ```
    /// use ssehub_hub::{Hub, SubscribeOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = Hub::builder().max_topic_len(3).build().unwrap();
    /// let err = hub.subscribe("alice", SubscribeOptions::default().topic("abcd")).unwrap_err();
    /// assert_eq!(err.to_string(), "topic \"abcd\": 4 bytes, over the limit of 3 per topic");
    /// # }
    /// ```
    pub fn max_topic_len(mut self, bytes: usize) -> Self {
        self.config.limits.max_topic_len = bytes;
        self
    }

    /// The most topics one connection may subscribe to. Default
    /// [`DEFAULT_MAX_TOPICS_PER_CONNECTION`](crate::DEFAULT_MAX_TOPICS_PER_CONNECTION) (64):
    /// each is an entry in the registry for as long as the connection lives. Over it,
    /// [`SubscribeError::TooManyTopics`](crate::SubscribeError::TooManyTopics) (`400` over HTTP).
    ///
    /// ```
    /// use ssehub_hub::{Hub, SubscribeError, SubscribeOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = Hub::builder().max_topics_per_connection(1).build().unwrap();
    /// let options = SubscribeOptions::default().topics(["a", "b"]);
    /// let err = hub.subscribe("alice", options).unwrap_err();
    /// assert_eq!(err, SubscribeError::TooManyTopics { limit: 1, actual: 2 });
    /// # }
    /// ```
    pub fn max_topics_per_connection(mut self, topics: usize) -> Self {
        self.config.max_topics_per_connection = topics;
        self
    }

    /// The most bytes of data one event may carry. Default [`DEFAULT_MAX_DATA_LEN`](crate::DEFAULT_MAX_DATA_LEN) (1 MiB),
    /// under the 4 MiB ssehub clients accept. Over it,
    /// [`PushError::TooLarge`](crate::PushError::TooLarge) (`413` from the push API).
    ///
    /// ```
    /// use ssehub_hub::{Event, Hub, PushError};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = Hub::builder().max_data_len(4).build().unwrap();
    /// let err = hub.broadcast([Event::new("12345")]).await.unwrap_err();
    /// assert!(matches!(err, PushError::TooLarge { limit: 4, actual: 5, .. }));
    /// # }
    /// ```
    pub fn max_data_len(mut self, bytes: usize) -> Self {
        self.config.limits.max_data_len = bytes;
        self
    }

    /// Whether the HTTP push API accepts the reserved event types
    /// [`CLOSE_EVENT_TYPE`](crate::CLOSE_EVENT_TYPE) (`close`: ssehub and seed clients stop for
    /// good) and [`HISTORY_GAP_EVENT_TYPE`](crate::HISTORY_GAP_EVENT_TYPE) (`history-gap`:
    /// clients reload their state). Default `false`: a push of either is a `400` naming
    /// `events[i].event`, so one request cannot stop every client. [`Hub::push`] and
    /// [`Hub::broadcast`] always accept them; this only guards the HTTP front ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = ssehub_hub::Hub::builder().allow_reserved_event_types_over_http(true).build().unwrap();
    /// # #[cfg(feature = "axum")] {
    /// let body = br#"{"events":[{"event":"close","data":"maintenance"}]}"#;
    /// assert_eq!(ssehub_hub::axum::push_response(&hub, body).await.status(), 200);
    /// # }
    /// # }
    /// ```
    pub fn allow_reserved_event_types_over_http(mut self, allow: bool) -> Self {
        self.config.reserved_over_http = allow;
        self
    }

    /// Writes the hub's metrics to the [`metrics`](https://docs.rs/metrics/0.24) facade, for
    /// whatever recorder the application installs (feature `metrics`; off by default). The
    /// series and their cost are listed in [`crate::metrics`]; call
    /// [`Hub::publish_metrics`] before each scrape.
    ///
    /// Off, the hub never calls the facade and reads no clock for it: pushes and writes cost
    /// what they cost without the feature.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder().metrics(true).build().unwrap();
    /// hub.publish_metrics(); // without a recorder: goes nowhere
    /// ```
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, on: bool) -> Self {
        self.config.metrics = on;
        self
    }

    /// Builds the hub, checking that the options make sense together.
    ///
    /// # Errors
    ///
    /// [`BuildError`]: [`resend`](HubBuilder::resend) without a [`store`](HubBuilder::store)
    /// (there would be nothing to resend from).
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder().build().unwrap();
    /// assert_eq!(hub.online_clients_num(), 0);
    ///
    /// let error = ssehub_hub::Hub::builder().resend(true).build().unwrap_err();
    /// assert_eq!(error, ssehub_hub::BuildError::ResendWithoutStore);
    /// ```
    pub fn build(self) -> Result<Hub, BuildError> {
        if self.config.resend && self.config.store.is_none() {
            return Err(BuildError::ResendWithoutStore);
        }
        Ok(Hub::from_config(self.config))
    }
}

/// Why [`HubBuilder::build`] refused its options.
///
/// ```
/// let error = ssehub_hub::Hub::builder().resend(true).build().unwrap_err();
/// assert!(error.to_string().contains("store"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// `resend(true)` without a store: clients would never get what they missed.
    ResendWithoutStore,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ResendWithoutStore => f.write_str(
                "resend is on but the hub has no store to resend from: add .store(..) \
                 (MemoryStore, RedbStore, ...) or leave resend off",
            ),
        }
    }
}

impl std::error::Error for BuildError {}
