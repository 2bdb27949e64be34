//! The hub: who is connected, and pushing events to them.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use ssehub_wire::{Event, Utf8Bytes};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::delivery::FailureLog;
use crate::outbox::Rules;
use crate::registry::Registry;
use crate::sequencer::Sequencer;
use crate::stats::Counters;
use crate::store::Recipients;
use crate::{HubBuilder, HubStats, PushError, SubscribeError, SubscribeOptions, Subscription};

/// The type of the event [`Hub::close`] sends so that clients stop (the seed's `close` event).
pub const CLOSE_EVENT_TYPE: &str = "close";

const OPEN: u8 = 0;
const CLOSED: u8 = 1;
const RESTARTING: u8 = 2;

/// The event hub: holds every live connection, pushes events to some uids or to everyone.
///
/// Cloning is cheap and every clone is the same hub. There is no hub task: a push encodes each
/// event once and places the shared bytes straight into each addressed connection's bounded
/// queue, spreading large broadcasts over several tasks. Each connection's stream (a
/// [`Subscription`]) writes everything it finds queued in one go.
///
/// ```
/// use futures_util::StreamExt;
/// use ssehub_hub::{Event, Hub};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let hub = Hub::new();
/// let mut alice = hub.subscribe("alice", Default::default()).unwrap();
/// let mut bob = hub.subscribe("bob", Default::default()).unwrap();
/// alice.next().await; // each stream opens with a comment
/// bob.next().await;
///
/// let receipt = hub.push(["alice"], [Event::new("for alice")]).await.unwrap();
/// assert_eq!(receipt.connections, 1);
/// hub.broadcast([Event::new("for all").with_id("b1")]).await.unwrap();
///
/// let first = alice.next().await.unwrap();
/// assert!(first.starts_with(b"id: "));  // a missing id is assigned
/// assert_eq!(bob.next().await.unwrap(), "id: b1\ndata: for all\n\n");
/// # }
/// ```
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

/// The hub's state, shared by its clones, its streams and its worker tasks.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    pub(crate) counters: Counters,
    /// What each connection may hold, and what happens past it.
    pub(crate) rules: Rules,
    pub(crate) failure_log: FailureLog,
    ids: Mutex<ulid::Generator>,
    lifecycle: AtomicU8,
    /// Pushes in progress, so that closing waits for them.
    pushes: TaskTracker,
    close_event: Bytes,
    /// Saves and orders pushes when the hub has a store.
    pub(crate) sequencer: Option<Sequencer>,
    /// Turns for replays to read the store (`HubBuilder::max_concurrent_replays`).
    pub(crate) replay_turns: Arc<tokio::sync::Semaphore>,
    /// What `publish_metrics` already gave the facade's counters.
    #[cfg(feature = "metrics")]
    pub(crate) published: crate::metrics::Published,
}

/// What a successful push did.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let hub = ssehub_hub::Hub::new();
/// let receipt = hub.broadcast([ssehub_hub::Event::new("hi")]).await.unwrap();
/// assert_eq!(receipt.ids.len(), 1);
/// assert_eq!(receipt.connections, 0); // nobody is connected
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushReceipt {
    /// Each event's id, in order: the one it was given, or the one the hub assigned.
    pub ids: Vec<String>,
    /// Connections that accepted the push (queued, or waiting for room).
    pub connections: usize,
    /// Deliveries the slow-client policy refused at once (full queue and waiting area, or a
    /// connection cut off under [`SlowClientPolicy::Disconnect`](crate::SlowClientPolicy::Disconnect)).
    pub failed: usize,
}

/// A validated push, ready to save (with a store) or send (without).
#[derive(Default)]
struct Prepared {
    /// Without a store: each event's id, as the receipt reports them.
    ids: Vec<String>,
    /// With a store: the events, ids assigned only where the publisher gave one.
    events: Vec<Event>,
    /// Without a store: the events as sent, encoded once.
    encoded: Arc<[Bytes]>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A hub with the default options (see [`HubBuilder`]).
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::new();
    /// ```
    pub fn new() -> Self {
        Self::from_config(crate::config::Config::default())
    }

    /// Starts building a hub with options.
    ///
    /// ```
    /// let hub = ssehub_hub::Hub::builder().connection_buffer(64).build().unwrap();
    /// ```
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        let close_event = Event::new("closed")
            .with_event(CLOSE_EVENT_TYPE)
            .encode()
            .unwrap_or_default();
        let sequencer = config.store.clone().map(|store| {
            Sequencer::new(
                store,
                config.log.clone(),
                config.store_timeout,
                config.save_interval,
            )
        });
        let replay_turns = config
            .max_concurrent_replays
            .unwrap_or_else(|| crate::config::default_concurrent_replays(config.workers))
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let hub = Self {
            shared: Arc::new(Shared {
                replay_turns: Arc::new(tokio::sync::Semaphore::new(replay_turns)),
                registry: Registry::new(config.workers),
                rules: Rules {
                    events: config.connection_buffer,
                    bytes: config.max_queued_bytes,
                    policy: config.slow_client,
                    cut_off_on_failure: config.store.is_some() && config.resend,
                },
                failure_log: FailureLog::default(),
                sequencer,
                config,
                counters: Counters::default(),
                ids: Mutex::new(ulid::Generator::new()),
                lifecycle: AtomicU8::new(OPEN),
                pushes: TaskTracker::new(),
                close_event,
                #[cfg(feature = "metrics")]
                published: crate::metrics::Published::default(),
            }),
        };
        // A node on a shared log reads it from now on (else from its first push or stream).
        if tokio::runtime::Handle::try_current().is_ok() {
            hub.start_shared_log();
        }
        hub
    }

    /// With a shared log: starts its appender and tail, once.
    fn start_shared_log(&self) {
        if let Some(sequencer) = &self.shared.sequencer
            && sequencer.is_shared()
        {
            sequencer.start(&self.shared);
        }
    }

    /// For the HTTP front ends (the `axum` handlers and the lean server).
    #[cfg(feature = "axum")]
    pub(crate) fn config(&self) -> &Config {
        &self.shared.config
    }

    /// For the lean server's streams, which count their resets here.
    #[cfg(feature = "server")]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Pushes `events` to every connection of each uid in `uids`. Duplicate uids are delivered
    /// once. An empty `uids` is refused ([`PushError::NoRecipients`]): [`Hub::broadcast`] is the
    /// one way to reach everyone, so a uid list that came out empty by mistake reaches nobody.
    ///
    /// Every event is checked before anything is sent, so a refused push reached nobody: against
    /// the hub's limits (see [`HubBuilder::max_id_len`] and the other `max_*` options), and for
    /// what cannot be encoded safely. A missing (or empty) id is assigned: a ULID, unique and
    /// increasing. A missing type means `message`. Each event is encoded once; every connection
    /// gets the same bytes, in order. The push never waits for a slow client: its
    /// [`SlowClientPolicy`] decides.
    ///
    /// Two event types mean something to clients: [`CLOSE_EVENT_TYPE`] (`close`) makes ssehub
    /// (and seed) clients stop for good, without reconnecting; [`HISTORY_GAP_EVENT_TYPE`]
    /// (`history-gap`) tells a client that it missed events and should reload its state. Push them
    /// only with that meaning. The HTTP push API refuses both unless
    /// [`HubBuilder::allow_reserved_event_types_over_http`] is set.
    ///
    /// [`SlowClientPolicy`]: crate::SlowClientPolicy
    /// [`HISTORY_GAP_EVENT_TYPE`]: crate::HISTORY_GAP_EVENT_TYPE
    ///
    /// # Errors
    ///
    /// [`PushError`] for no uids, no events, an empty uid, a push over a limit, an event that
    /// cannot be encoded safely, or a closed hub.
    ///
    /// ```
    /// use ssehub_hub::{Event, Hub, PushError};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = Hub::new();
    /// let _tab1 = hub.subscribe("u001", Default::default()).unwrap();
    /// let _tab2 = hub.subscribe("u001", Default::default()).unwrap();
    /// let receipt = hub
    ///     .push(["u001", "u002"], [Event::new("hello_world").with_event("message")])
    ///     .await
    ///     .unwrap();
    /// assert_eq!(receipt.connections, 2); // both tabs of u001; u002 is offline
    ///
    /// let nobody: Vec<String> = Vec::new();
    /// let err = hub.push(nobody, [Event::new("for whom?")]).await.unwrap_err();
    /// assert_eq!(err, PushError::NoRecipients);
    /// # }
    /// ```
    pub async fn push<U, S, E>(&self, uids: U, events: E) -> Result<PushReceipt, PushError>
    where
        U: IntoIterator<Item = S>,
        S: AsRef<str>,
        E: IntoIterator<Item = Event>,
    {
        let uids: Vec<S> = uids.into_iter().collect();
        let checked = if uids.is_empty() {
            Err(PushError::NoRecipients)
        } else if let Some(index) = uids.iter().position(|uid| uid.as_ref().is_empty()) {
            // Here, where the caller's order is known, so the error names the right index.
            Err(PushError::EmptyUid { index })
        } else {
            self.shared.config.limits.check_counts(uids.len(), 0, 0)
        };
        if let Err(error) = checked {
            let refused = Err(error);
            self.shared.count_push(&refused);
            return refused;
        }
        self.push_to(Recipients::uids(uids), events).await
    }

    /// Pushes `events` to every connection: the one way to reach everyone. Checked as
    /// [`Hub::push`] checks, including what it says of the reserved event types.
    ///
    /// # Errors
    ///
    /// As [`Hub::push`], except that there are no uids to refuse.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = ssehub_hub::Hub::new();
    /// hub.broadcast([ssehub_hub::Event::new("to everyone")]).await.unwrap();
    /// # }
    /// ```
    pub async fn broadcast<E>(&self, events: E) -> Result<PushReceipt, PushError>
    where
        E: IntoIterator<Item = Event>,
    {
        self.push_to(Recipients::All, events).await
    }

    /// Pushes `events` to `recipients`: [`Recipients::All`], or uids and topics together (a
    /// connection of one of the uids, or subscribed to one of the topics, gets each event once,
    /// however many ways it matches). [`Hub::push`] and [`Hub::broadcast`] are its shorthands;
    /// everything they say of checks, ids and slow clients holds here. With a store, each event
    /// keeps its recipients, so a resuming connection is resent what was pushed to its uid, to
    /// the topics it has now, or to everyone.
    ///
    /// # Errors
    ///
    /// As [`Hub::push`]; a list with no uid and no topic is [`PushError::NoRecipients`]; a bad
    /// topic name is [`PushError::InvalidTopic`]; more topics than
    /// [`HubBuilder::max_topics_per_push`] is [`PushError::LimitExceeded`].
    ///
    /// ```
    /// use ssehub_hub::{Event, Hub, Recipients, SubscribeOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = Hub::new();
    /// let _watcher = hub.subscribe("bob", SubscribeOptions::default().topic("orders/42")).unwrap();
    /// let _owner = hub.subscribe("alice", SubscribeOptions::default().topic("orders/42")).unwrap();
    /// let _other = hub.subscribe("carol", SubscribeOptions::default().topic("orders/7")).unwrap();
    /// let to = Recipients::topics(["orders/42"]).and_uids(["alice"]);
    /// let receipt = hub.push_to(to, [Event::new("shipped")]).await.unwrap();
    /// assert_eq!(receipt.connections, 2); // bob's and alice's, alice's once
    /// # }
    /// ```
    pub async fn push_to<E>(
        &self,
        recipients: Recipients,
        events: E,
    ) -> Result<PushReceipt, PushError>
    where
        E: IntoIterator<Item = Event>,
    {
        let pushed = self.shared.metrics_now();
        let result = self.push_uncounted(recipients, events, pushed).await;
        self.shared.count_push(&result);
        result
    }

    /// [`Hub::push_to`] but for counting its outcome. `pushed`: when it was called, with
    /// metrics on.
    async fn push_uncounted<E>(
        &self,
        recipients: Recipients,
        events: E,
        pushed: Option<Instant>,
    ) -> Result<PushReceipt, PushError>
    where
        E: IntoIterator<Item = Event>,
    {
        let shared = &self.shared;
        // Taken before the state check, so that `close` waits for this push if it got in.
        let _in_flight = shared.pushes.token();
        if shared.lifecycle.load(Ordering::Acquire) != OPEN {
            return Err(PushError::Closed);
        }
        if recipients.is_empty() {
            return Err(PushError::NoRecipients);
        }
        let events: Vec<Event> = events.into_iter().collect();
        shared.config.limits.check(&recipients, &events)?;
        let prepared = self.prepare(events)?;
        let (ids, tally) = if let Some(sequencer) = &shared.sequencer {
            let committed = sequencer
                .push(shared, recipients, prepared.events, pushed)
                .await?;
            (committed.ids, committed.tally)
        } else {
            let tally = shared
                .fan_out(&recipients, &prepared.encoded, 0, pushed, false)
                .await;
            (prepared.ids, tally)
        };
        let failed = tally.failed.len();
        let connections = tally.connections;
        shared.settle(tally);
        Ok(PushReceipt {
            ids,
            connections,
            failed,
        })
    }

    /// Checks every event, refusing the whole push on the first bad one, and drops
    /// `event: message` (what clients assume without an `event:` line). Without a store it also
    /// assigns the missing ids and encodes each event once: from here on an event travels only as
    /// its bytes, so a queued event costs its wire size once, whatever the number of connections.
    /// With a store, the committer assigns ids and encodes, in the order it saves.
    fn prepare(&self, events: impl IntoIterator<Item = Event>) -> Result<Prepared, PushError> {
        let for_store = self.shared.sequencer.is_some();
        let mut generator = None;
        let mut prepared = Prepared::default();
        let mut encoded = Vec::new();
        for (index, mut event) in events.into_iter().enumerate() {
            if event.id.as_ref().is_some_and(|id| id.is_empty()) {
                event.id = None;
            }
            if event
                .event
                .as_ref()
                .is_some_and(|event_type| event_type == ssehub_wire::DEFAULT_EVENT_TYPE)
            {
                event.event = None;
            }
            if for_store {
                event
                    .validate()
                    .map_err(|source| PushError::InvalidEvent { index, source })?;
                prepared.events.push(event);
                continue;
            }
            if event.id.is_none() {
                let id = generator.get_or_insert_with(|| self.shared.ids()).next();
                event.id = Some(Utf8Bytes::from(id));
            }
            let bytes = event
                .encode()
                .map_err(|source| PushError::InvalidEvent { index, source })?;
            prepared
                .ids
                .push(event.id.as_deref().map(String::from).unwrap_or_default());
            encoded.push(bytes);
        }
        if prepared.ids.is_empty() && prepared.events.is_empty() {
            return Err(PushError::NoEvents);
        }
        prepared.encoded = encoded.into();
        Ok(prepared)
    }

    /// Opens a stream for a client of `uid`. Serve the returned [`Subscription`] as the body of a
    /// `text/event-stream` response (the `axum` module does this for you); drop it when the
    /// client goes away.
    ///
    /// # Errors
    ///
    /// [`SubscribeError`] for an empty uid, a closed hub, or a hub at one of its stream caps
    /// ([`HubBuilder::max_streams`], [`HubBuilder::max_streams_per_uid`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = ssehub_hub::Hub::new();
    /// let stream = hub.subscribe("alice", Default::default()).unwrap();
    /// assert_eq!(hub.online_clients_num(), 1);
    /// drop(stream);
    /// assert_eq!(hub.online_clients_num(), 0);
    /// # }
    /// ```
    pub fn subscribe(
        &self,
        uid: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, SubscribeError> {
        if uid.is_empty() {
            return Err(SubscribeError::EmptyUid);
        }
        self.check_open()?;
        self.start_shared_log();
        let topics = self.check_topics(&options.topics)?;
        let connection = self
            .shared
            .registry
            .insert(uid, &topics, self.shared.config.caps)?;
        let subscription = Subscription::new(Arc::clone(&self.shared), connection, options);
        // Closing may have snapshotted the registry just before the insert: look again.
        self.check_open()?;
        tracing::debug!(uid, connection = subscription.connection_id(), "connected");
        Ok(subscription)
    }

    /// What [`subscribe`](Self::subscribe) would answer, without subscribing: the lean server
    /// answers a `HEAD` of the events path with it (a probe leaves no connection behind).
    #[cfg(feature = "server")]
    pub(crate) fn check_subscribe(
        &self,
        uid: &str,
        options: &SubscribeOptions,
    ) -> Result<(), SubscribeError> {
        if uid.is_empty() {
            return Err(SubscribeError::EmptyUid);
        }
        self.check_topics(&options.topics)?;
        self.check_open()
    }

    /// A subscription's topics, checked, sorted and without duplicates.
    fn check_topics(&self, topics: &[String]) -> Result<Vec<String>, SubscribeError> {
        let config = &self.shared.config;
        for topic in topics {
            crate::topic::check_topic(topic, config.limits.max_topic_len).map_err(|error| {
                SubscribeError::InvalidTopic {
                    topic: topic.clone(),
                    error,
                }
            })?;
        }
        let mut topics = topics.to_vec();
        topics.sort_unstable();
        topics.dedup();
        if topics.len() > config.max_topics_per_connection {
            return Err(SubscribeError::TooManyTopics {
                limit: config.max_topics_per_connection,
                actual: topics.len(),
            });
        }
        Ok(topics)
    }

    fn check_open(&self) -> Result<(), SubscribeError> {
        match self.shared.lifecycle.load(Ordering::Acquire) {
            OPEN => Ok(()),
            RESTARTING => Err(SubscribeError::Restarting),
            _ => Err(SubscribeError::Closed),
        }
    }

    /// How many distinct uids have at least one live connection (the seed's `OnlineClientsNum`).
    /// [`Hub::stats`] also counts connections.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = ssehub_hub::Hub::new();
    /// let _a = hub.subscribe("alice", Default::default()).unwrap();
    /// let _b = hub.subscribe("alice", Default::default()).unwrap();
    /// assert_eq!(hub.online_clients_num(), 1);
    /// assert_eq!(hub.stats().connections, 2);
    /// # }
    /// ```
    pub fn online_clients_num(&self) -> usize {
        self.shared.registry.users()
    }

    /// A snapshot of the push statistics and who is online.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = ssehub_hub::Hub::new();
    /// let _a = hub.subscribe("alice", Default::default()).unwrap();
    /// hub.broadcast([ssehub_hub::Event::new("hi")]).await.unwrap();
    /// let stats = hub.stats();
    /// assert_eq!((stats.total, stats.success, stats.failed), (1, 1, 0));
    /// # }
    /// ```
    pub fn stats(&self) -> HubStats {
        let registry = &self.shared.registry;
        self.shared
            .counters
            .snapshot(registry.users(), registry.connections(), registry.topics())
    }

    /// Writes the hub's state to the [`metrics`](https://docs.rs/metrics/0.24) facade: sets the
    /// gauges (connections, users, topics, queued bytes) and brings the counters kept in
    /// [`Hub::stats`] (deliveries, timeouts, cut-offs, stalled resets) up to date. Call it right
    /// before rendering a scrape (feature `metrics`; does nothing unless the hub was built with
    /// [`HubBuilder::metrics`]`(true)`). The series are listed in [`crate::metrics`].
    ///
    /// Counters grow by what happened since this hub last published, so two hubs in one process
    /// add up; the gauges are the last publisher's.
    ///
    /// It costs one short lock per connection (the queued bytes are summed from every outbox;
    /// nothing on the push path keeps them): 0.6–1.3 ms for 9,000 connections, so a few
    /// milliseconds for 20,000. Publish per scrape, not per push.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let recorder = metrics_util::debugging::DebuggingRecorder::new();
    /// let snapshotter = recorder.snapshotter();
    /// metrics::set_global_recorder(recorder).unwrap();
    ///
    /// let hub = ssehub_hub::Hub::builder().metrics(true).build().unwrap();
    /// let _alice = hub.subscribe("alice", Default::default()).unwrap();
    /// hub.publish_metrics();
    /// let connections = snapshotter.snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
    ///     (key.key().name() == "ssehub_connections").then_some(value)
    /// });
    /// assert_eq!(
    ///     connections,
    ///     Some(metrics_util::debugging::DebugValue::Gauge(1.0.into()))
    /// );
    /// # }
    /// ```
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&self) {
        if self.shared.config.metrics {
            crate::metrics::publish(&self.shared);
        }
    }

    /// Logs [`Hub::stats`] at `info` level through `tracing` (the seed's `PrintPushStats`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// ssehub_hub::Hub::new().print_push_stats();
    /// # }
    /// ```
    pub fn print_push_stats(&self) {
        tracing::info!(target: "ssehub", "{}", self.stats());
    }

    /// Whether the hub has begun closing ([`Hub::close`] or [`Hub::close_for_restart`]): new
    /// streams and pushes are refused from then on. A readiness probe answers "not ready".
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = ssehub_hub::Hub::new();
    /// assert!(!hub.is_closed());
    /// hub.close().await;
    /// assert!(hub.is_closed());
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.lifecycle.load(Ordering::Acquire) != OPEN
    }

    /// Closes the hub for good: new pushes and subscriptions are refused, pushes in progress
    /// finish, then every stream writes what it has queued, then a `close` event (the seed's,
    /// which makes ssehub and seed clients stop), and ends. Returns once every stream has ended
    /// or the close timeout has passed. Calling it again waits again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = ssehub_hub::Hub::new();
    /// hub.close().await;
    /// assert!(hub.broadcast([ssehub_hub::Event::new("late")]).await.is_err());
    /// # }
    /// ```
    pub async fn close(&self) {
        self.shutdown(CLOSED).await;
    }

    /// Closes the hub for a restart: like [`Hub::close`], but without the `close` event, so
    /// clients reconnect (to this node once it is back, or to another one) and, with a store,
    /// resume where they were.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = ssehub_hub::Hub::new();
    /// hub.close_for_restart().await;
    /// # }
    /// ```
    pub async fn close_for_restart(&self) {
        self.shutdown(RESTARTING).await;
    }

    async fn shutdown(&self, mode: u8) {
        let shared = &self.shared;
        // One deadline for all of it: pushes in progress (which may be waiting for a store)
        // and the streams' flush.
        let deadline = tokio::time::Instant::now() + shared.config.close_timeout;
        let first = shared
            .lifecycle
            .compare_exchange(OPEN, mode, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        shared.pushes.close();
        if tokio::time::timeout_at(deadline, shared.pushes.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                target: "ssehub",
                pushes = shared.pushes.len(),
                "close timeout: closing with pushes still in progress"
            );
        }
        if first {
            let last = (mode == CLOSED).then(|| shared.close_event.clone());
            let connections = shared.registry.all();
            tracing::info!(
                target: "ssehub",
                connections = connections.len(),
                restart = mode == RESTARTING,
                "hub closing"
            );
            for connection in connections {
                connection.close(last.clone());
            }
        }
        let flushed = tokio::time::timeout_at(deadline, shared.registry.until_empty()).await;
        if let Some(sequencer) = &shared.sequencer {
            sequencer.stop();
        }
        if flushed.is_err() {
            tracing::warn!(
                target: "ssehub",
                connections = shared.registry.connections(),
                "close timeout: some streams did not flush in time"
            );
        }
    }
}

impl Shared {
    /// With metrics on, the clock now (what a push or a store commit is timed from); otherwise
    /// `None`, and no clock is read.
    #[inline]
    pub(crate) fn metrics_now(&self) -> Option<Instant> {
        #[cfg(feature = "metrics")]
        if self.config.metrics {
            return Some(Instant::now());
        }
        None
    }

    /// Counts a push call under its outcome, with metrics on.
    #[inline]
    fn count_push(&self, result: &Result<PushReceipt, PushError>) {
        #[cfg(feature = "metrics")]
        if self.config.metrics {
            crate::metrics::count_push(result);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = result;
    }

    /// The id generator, locked: take it once for all the events of a push (or a batch).
    pub(crate) fn ids(&self) -> Ids<'_> {
        Ids(self.ids.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Assigns event ids: ULIDs, unique and increasing (monotonic within one millisecond).
pub(crate) struct Ids<'a>(std::sync::MutexGuard<'a, ulid::Generator>);

impl Ids<'_> {
    pub(crate) fn next(&mut self) -> String {
        self.0
            .generate()
            .unwrap_or_else(|overflow| overflow.commit_overflow_increment())
            .to_string()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish()
    }
}
