//! A Redis Streams event log for ssehub: several hub nodes behind a load balancer behave as one
//! hub.
//!
//! [`RedisLog`] implements ssehub's [`Log`] (and [`Store`], for resend). Give it to a hub with
//! `HubBuilder::log`: the hub then appends its pushes to one Redis stream, numbered there, and
//! every node, the pushing one included, delivers what it reads back from the stream. Every
//! node sees one order; an event's seq is its place in the stream, so a client that reconnects
//! to another node with `Last-Event-ID` gets exactly what it missed.
//!
//! What lives in Redis, under a key prefix (`ssehub` by default; several hubs can share one
//! Redis with different prefixes), all in one hash slot (`{prefix}`):
//! - `{prefix}:log`, the stream: one entry per event, with the id `<seq>-0`;
//! - `{prefix}:ids`, event id → seq (for `Last-Event-ID`, and refusing reused ids);
//! - `{prefix}:sets`, the recipient lists shared by the events of one push;
//! - `{prefix}:meta`, the last seq, the last time used and the bytes held.
//!
//! An append is one Lua script (`EVALSHA`): it numbers the events (`seq`, dense across nodes),
//! refuses reused ids, assigns missing ids (ULIDs made from Redis's clock and the seq, so they
//! increase in log order whichever node pushed), adds the entries and trims the oldest past
//! the [`Retention`] (count, age, bytes), all atomically.
//!
//! ```no_run
//! use ssehub_store::{Retention, Store};
//! use ssehub_store_redis::RedisLog;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let log = RedisLog::builder("redis://127.0.0.1:6379/0")
//!     .prefix("myapp")
//!     .retention(Retention::events(100_000))
//!     .connect()
//!     .await?;
//! println!("the log holds events up to {}", log.last_seq().await?);
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};
use ssehub_store::{
    Append, Appended, ListQuery, Log, Page, Recipients, Record, Retention, Store, StoreError,
    async_trait,
};

mod entry;
mod scripts;
#[cfg(test)]
mod tests;

use entry::{Entry, To};

pub use scripts::LOSS_JUMP;

/// How long a blocking read waits for new entries before asking again.
const BLOCK: Duration = Duration::from_secs(2);
/// The most entries a resend page reads at once.
const MAX_RANGE: usize = 4096;
/// Recipient sets kept decoded (a large push's set is read once, not per page).
const SET_CACHE: usize = 32;

/// Options for a [`RedisLog`], then [`RedisLogBuilder::connect`]; see [`RedisLog::builder`].
///
/// ```
/// let builder = ssehub_store_redis::RedisLog::builder("redis://127.0.0.1:6379")
///     .prefix("tenant-a")
///     .timeout(std::time::Duration::from_secs(1));
/// ```
#[derive(Debug, Clone)]
pub struct RedisLogBuilder {
    url: String,
    prefix: String,
    retention: Retention,
    timeout: Duration,
}

impl RedisLogBuilder {
    /// The key prefix (default `ssehub`): hubs with different prefixes share a Redis without
    /// seeing each other's events.
    ///
    /// ```
    /// let builder = ssehub_store_redis::RedisLog::builder("redis://127.0.0.1").prefix("chat");
    /// ```
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How much history the stream keeps (default: 1,000,000 events, 24 hours). Applied on
    /// every append, oldest first, at most twice as many entries a call as it adds (and 256), so
    /// the work of one push stays bounded. `max_bytes` counts each entry's fields (id, type,
    /// data, recipients or their set's key) plus 32 bytes; Redis's own overhead and the id
    /// index come on top.
    ///
    /// ```
    /// use ssehub_store::Retention;
    /// let builder = ssehub_store_redis::RedisLog::builder("redis://127.0.0.1")
    ///     .retention(Retention::events(10_000).max_age(std::time::Duration::from_secs(600)));
    /// ```
    #[must_use]
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How long to wait for Redis to connect or answer a command (default 2 s): with Redis
    /// down, a push fails after at most this, and the hub answers `503`.
    ///
    /// ```
    /// let builder = ssehub_store_redis::RedisLog::builder("redis://127.0.0.1")
    ///     .timeout(std::time::Duration::from_millis(500));
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Connects (Redis must answer) and reads where the log is.
    ///
    /// # Errors
    ///
    /// [`RedisLogError::Url`] for a URL Redis's client cannot read, [`RedisLogError::Redis`]
    /// when Redis cannot be reached or answers with an error.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let log = ssehub_store_redis::RedisLog::builder("redis://127.0.0.1:6379/2")
    ///     .connect()
    ///     .await
    ///     .expect("Redis answers");
    /// # }
    /// ```
    pub async fn connect(self) -> Result<RedisLog, RedisLogError> {
        let client = Client::open(self.url.as_str()).map_err(|error| RedisLogError::Url {
            url: self.url.clone(),
            reason: error.to_string(),
        })?;
        let address = client.get_connection_info().addr().to_string();
        let keys = Keys::new(&self.prefix);
        let inner = Inner {
            client,
            address,
            keys,
            retention: self.retention,
            timeout: self.timeout,
            commands: Mutex::new(None),
            blocking: Mutex::new(None),
            sets: Mutex::new(Vec::new()),
        };
        let opened_at = async {
            let mut connection = inner.commands().await?;
            let seq: Option<u64> = redis::cmd("HGET")
                .arg(&inner.keys.meta)
                .arg("seq")
                .query_async(&mut connection)
                .await
                .map_err(|error| inner.failed(error))?;
            Ok::<_, StoreError>(seq.unwrap_or(0))
        }
        .await
        .map_err(|error| RedisLogError::Redis {
            address: inner.address.clone(),
            reason: error.to_string(),
        })?;
        Ok(RedisLog {
            inner: Arc::new(inner),
            opened_at,
        })
    }
}

/// The event log in Redis Streams, shared by every hub node that uses the same Redis and
/// prefix. Cheap to clone; clones share the connections.
///
/// Two connections: one multiplexed for appends, listing and lookups, and one of its own for
/// the blocking read (`XREAD BLOCK` holds its connection). A connection that fails is dropped
/// and made again on the next call, so a Redis that comes back is used again without anything
/// to do; the hub's tail retries its reads with back-off.
///
/// ```no_run
/// use ssehub_store::{Append, Appended, Event, Log, Recipients};
/// use ssehub_store_redis::RedisLog;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let log = RedisLog::builder("redis://127.0.0.1:6379").prefix("example").connect().await?;
/// let events = [Event::new("hello")];
/// let to = Recipients::uids(["alice"]);
/// let answers = log.append(&[Append { recipients: &to, events: &events }], 0).await?;
/// let Appended::Accepted { first_seq, .. } = &answers[0] else { unreachable!() };
/// let read = log.read(first_seq - 1, 10).await?;
/// assert_eq!(read[0].event.data, "hello");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisLog {
    inner: Arc<Inner>,
    opened_at: u64,
}

struct Inner {
    client: Client,
    /// For messages: `host:port`.
    address: String,
    keys: Keys,
    retention: Retention,
    timeout: Duration,
    commands: Mutex<Option<MultiplexedConnection>>,
    blocking: Mutex<Option<MultiplexedConnection>>,
    /// Recipient sets recently read: (key, recipients), newest last.
    sets: Mutex<Vec<(u64, Recipients)>>,
}

#[derive(Debug, Clone)]
struct Keys {
    log: String,
    ids: String,
    meta: String,
    sets: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        // One hash slot for all (a script's keys must share one on a cluster).
        let key = |name: &str| format!("{{{prefix}}}:{name}");
        Self {
            log: key("log"),
            ids: key("ids"),
            meta: key("meta"),
            sets: key("sets"),
        }
    }
}

impl RedisLog {
    /// Starts the options for a Redis at `url`: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.
    ///
    /// ```
    /// let builder = ssehub_store_redis::RedisLog::builder("redis://127.0.0.1:6379/3");
    /// ```
    pub fn builder(url: impl Into<String>) -> RedisLogBuilder {
        RedisLogBuilder {
            url: url.into(),
            prefix: "ssehub".to_owned(),
            retention: Retention::events(1_000_000).max_age(Duration::from_secs(24 * 3600)),
            timeout: Duration::from_secs(2),
        }
    }

    /// The Redis keys this log uses (the stream, the id index, the sets, the meta hash): what
    /// to delete to drop its history.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let log = ssehub_store_redis::RedisLog::builder("redis://127.0.0.1").prefix("x").connect().await?;
    /// assert_eq!(log.keys()[0], "{x}:log");
    /// # Ok(()) }
    /// ```
    pub fn keys(&self) -> [&str; 4] {
        let keys = &self.inner.keys;
        [&keys.log, &keys.ids, &keys.sets, &keys.meta]
    }

    /// `host:port` of the Redis, for messages.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let log = ssehub_store_redis::RedisLog::builder("redis://127.0.0.1:6379").connect().await?;
    /// assert_eq!(log.address(), "127.0.0.1:6379");
    /// # Ok(()) }
    /// ```
    pub fn address(&self) -> &str {
        &self.inner.address
    }
}

impl Inner {
    fn config(&self, response: Duration) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(response))
    }

    /// The shared connection, made if there is none.
    async fn commands(&self) -> Result<MultiplexedConnection, StoreError> {
        let existing = self
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(connection) = existing {
            return Ok(connection);
        }
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config(self.timeout))
            .await
            .map_err(|error| self.unreachable(error))?;
        *self.commands.lock().unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
        Ok(connection)
    }

    /// A failed command: its connection is dropped (the next call makes a new one).
    fn failed(&self, error: redis::RedisError) -> StoreError {
        if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error()
        {
            *self.commands.lock().unwrap_or_else(PoisonError::into_inner) = None;
            return self.unreachable(error);
        }
        StoreError::backend(format!("Redis at {} refused: {error}", self.address))
    }

    fn unreachable(&self, error: redis::RedisError) -> StoreError {
        StoreError::backend(format!(
            "Redis at {} is unreachable ({error}); the hub keeps its streams open and resumes when it is back",
            self.address
        ))
    }

    /// Resolves the shared sets among `entries` (cached, else one `HMGET`). A set that is gone
    /// (trimmed between the read and now) reaches nobody: never more than it was for.
    async fn records(&self, entries: Vec<Entry>) -> Result<Vec<Record>, StoreError> {
        let mut wanted: Vec<u64> = Vec::new();
        {
            let cache = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
            for entry in &entries {
                if let To::Set(key) = entry.to
                    && !cache.iter().any(|(cached, _)| *cached == key)
                    && !wanted.contains(&key)
                {
                    wanted.push(key);
                }
            }
        }
        if !wanted.is_empty() {
            let mut connection = self.commands().await?;
            let lists: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(&self.keys.sets)
                .arg(&wanted)
                .query_async(&mut connection)
                .await
                .map_err(|error| self.failed(error))?;
            let mut cache = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, list) in wanted.into_iter().zip(lists) {
                let recipients = match list.as_deref().map(entry::decode_list) {
                    Some(Ok(recipients)) => recipients,
                    Some(Err(reason)) => {
                        return Err(StoreError::Corrupt { seq: key, reason });
                    }
                    None => Recipients::uids(Vec::<String>::new()),
                };
                cache.push((key, recipients));
            }
            let excess = cache.len().saturating_sub(SET_CACHE);
            cache.drain(..excess);
        }
        let cache = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(entries
            .into_iter()
            .map(|entry| {
                let recipients = match &entry.to {
                    To::Resolved(recipients) => recipients.clone(),
                    To::Set(key) => cache
                        .iter()
                        .rev()
                        .find(|(cached, _)| cached == key)
                        .map(|(_, recipients)| recipients.clone())
                        .unwrap_or_else(|| Recipients::uids(Vec::<String>::new())),
                };
                entry.into_record(recipients)
            })
            .collect())
    }

    /// Numbering continues above `known` if the log is below it. Run on each new blocking
    /// connection: a Redis that came back empty is found before anything is read from it.
    async fn floor(&self, known: u64) -> Result<(), StoreError> {
        if known == 0 {
            return Ok(());
        }
        let mut connection = self.commands().await?;
        let moved: i64 = scripts::floor()
            .key(&self.keys.meta)
            .arg(known)
            .invoke_async(&mut connection)
            .await
            .map_err(|error| self.failed(error))?;
        if moved == 1 {
            lost_data(&self.address, known);
        }
        Ok(())
    }
}

fn lost_data(address: &str, known: u64) {
    eprintln!(
        "ssehub: Redis at {address} holds no events up to seq {known}, which this node saw: it lost \
         its data. Numbering continues at {}; clients resuming from an event before that get a \
         history-gap event.",
        known + LOSS_JUMP
    );
}

#[async_trait]
impl Store for RedisLog {
    /// Not used: a log numbers events itself. Give a `RedisLog` to `HubBuilder::log`, not to
    /// `HubBuilder::store`.
    async fn save(&self, _records: &[Record]) -> Result<(), StoreError> {
        Err(StoreError::backend(
            "RedisLog numbers the events itself: give it to HubBuilder::log, not HubBuilder::store",
        ))
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let mut connection = inner.commands().await?;
        let seq: Option<u64> = redis::cmd("HGET")
            .arg(&inner.keys.meta)
            .arg("seq")
            .query_async(&mut connection)
            .await
            .map_err(|error| inner.failed(error))?;
        Ok(seq.unwrap_or(0))
    }

    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let inner = &self.inner;
        let mut connection = inner.commands().await?;
        redis::cmd("HGET")
            .arg(&inner.keys.ids)
            .arg(id)
            .query_async(&mut connection)
            .await
            .map_err(|error| inner.failed(error))
    }

    async fn list_after(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let inner = &self.inner;
        let count = query
            .limit
            .saturating_mul(Page::SCAN_FACTOR)
            .clamp(1, MAX_RANGE);
        let mut connection = inner.commands().await?;
        let value: Value = redis::cmd("XRANGE")
            .arg(&inner.keys.log)
            .arg(format!("{}-0", query.after.saturating_add(1)))
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut connection)
            .await
            .map_err(|error| inner.failed(error))?;
        let entries = entry::entries(value)?;
        let full = entries.len() >= count;
        let records = inner.records(entries).await?;
        let mut page = Page::collect(query, records.iter());
        // A full range may have more behind it, even if the page looked at all of it.
        if full && page.end {
            page.end = false;
        }
        Ok(page)
    }
}

#[async_trait]
impl Log for RedisLog {
    fn opened_at(&self) -> u64 {
        self.opened_at
    }

    async fn append(&self, pushes: &[Append<'_>], known: u64) -> Result<Vec<Appended>, StoreError> {
        let inner = &self.inner;
        let retention = inner.retention;
        let mut invocation = scripts::append().prepare_invoke();
        invocation
            .key(&inner.keys.log)
            .key(&inner.keys.ids)
            .key(&inner.keys.meta)
            .key(&inner.keys.sets)
            .arg(known)
            .arg(retention.max_events)
            .arg(
                retention
                    .max_age
                    .map_or(0, |age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            )
            .arg(retention.max_bytes.unwrap_or(0))
            .arg(pushes.len());
        for push in pushes {
            invocation
                .arg(entry::encode_recipients(push.recipients, push.events.len()))
                .arg(push.events.len());
            for event in push.events {
                invocation
                    .arg(event.id.as_deref().unwrap_or(""))
                    .arg(event.event.as_deref().unwrap_or(""))
                    .arg(
                        event
                            .retry
                            .map(|retry| retry.as_millis().to_string())
                            .unwrap_or_default(),
                    )
                    .arg(event.data.as_str());
            }
        }
        let mut connection = inner.commands().await?;
        let (lost, answers): (i64, Vec<Vec<Value>>) = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|error| inner.failed(error))?;
        if lost == 1 {
            lost_data(&inner.address, known);
        }
        answers.into_iter().map(appended).collect()
    }

    async fn read(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        let inner = &self.inner;
        // Taken out while in use: a read dropped half-way leaves no connection with an answer
        // still coming.
        let existing = inner
            .blocking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut connection = match existing {
            Some(connection) => connection,
            None => {
                let connection = inner
                    .client
                    .get_multiplexed_async_connection_with_config(
                        &inner.config(BLOCK + inner.timeout),
                    )
                    .await
                    .map_err(|error| inner.unreachable(error))?;
                inner.floor(after).await?;
                connection
            }
        };
        let value: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(limit.max(1))
            .arg("BLOCK")
            .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(2000))
            .arg("STREAMS")
            .arg(&inner.keys.log)
            .arg(format!("{after}-0"))
            .query_async(&mut connection)
            .await
            .map_err(|error| inner.unreachable(error))?;
        *inner
            .blocking
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(connection);
        let entries = entry::read_reply(value)?;
        inner.records(entries).await
    }
}

/// One push's answer from the append script.
fn appended(answer: Vec<Value>) -> Result<Appended, StoreError> {
    let odd = || StoreError::backend("the append script answered oddly");
    let mut fields = answer.into_iter();
    let kind = match fields.next() {
        Some(Value::Int(kind)) => kind,
        _ => return Err(odd()),
    };
    let number = match fields.next() {
        Some(Value::Int(number)) => u64::try_from(number).map_err(|_| odd())?,
        _ => return Err(odd()),
    };
    let mut ids = Vec::new();
    for field in fields {
        match field {
            Value::BulkString(bytes) => ids.push(String::from_utf8(bytes).map_err(|_| odd())?),
            _ => return Err(odd()),
        }
    }
    if kind == 1 {
        let id = ids.pop().ok_or_else(odd)?;
        let index = usize::try_from(number).map_err(|_| odd())?;
        return Ok(Appended::DuplicateId { index, id });
    }
    Ok(Appended::Accepted {
        first_seq: number,
        ids,
    })
}

impl fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLog")
            .field("address", &self.inner.address)
            .field("keys", &self.inner.keys)
            .field("retention", &self.inner.retention)
            .field("opened_at", &self.opened_at)
            .finish_non_exhaustive()
    }
}

/// [`RedisLogBuilder::connect`] failed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let error = ssehub_store_redis::RedisLog::builder("http://nope").connect().await.unwrap_err();
/// assert!(error.to_string().contains("http://nope"));
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RedisLogError {
    /// The URL is not one Redis's client reads.
    Url {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// Redis could not be reached, or answered with an error.
    Redis {
        /// `host:port`.
        address: String,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for RedisLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url { url, reason } => write!(
                f,
                "{url} is not a Redis URL (redis://HOST[:PORT][/DB]): {reason}"
            ),
            Self::Redis { reason, .. } => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for RedisLogError {}
