//! Who is connected: connections by uid, and by topic, in shards so that no lock is global.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::SubscribeError;
use crate::outbox::Connection;

type Shard = HashMap<Arc<str>, Vec<Arc<Connection>>>;

/// How many connections the registry takes: in all, and per uid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub(crate) streams: usize,
    pub(crate) per_uid: usize,
}

/// Connections by uid. A uid's connections live in one shard picked by hashing the uid, so a
/// uni-cast locks one shard and a broadcast locks each shard in turn; connects and disconnects
/// on other shards never wait. Locks are never held across an `.await`.
#[derive(Debug)]
pub(crate) struct Registry {
    shards: Box<[Mutex<Shard>]>,
    /// The topic index, sharded the same way: topic -> its connections.
    topic_shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    topics: AtomicUsize,
    connections: AtomicUsize,
    users: AtomicUsize,
    next_id: AtomicU64,
    /// Notified whenever the last connection leaves.
    emptied: Notify,
}

impl Registry {
    pub(crate) fn new(workers: usize) -> Self {
        // Enough shards that workers rarely meet on one, a power of two for cheap indexing.
        let shards = (workers * 8).clamp(16, 256).next_power_of_two();
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::new())).collect(),
            topic_shards: (0..shards).map(|_| Mutex::new(Shard::new())).collect(),
            hasher: RandomState::new(),
            topics: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            users: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            emptied: Notify::new(),
        }
    }

    fn shard_of(&self, uid: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(uid) as usize & (self.shards.len() - 1);
        self.lock(index)
    }

    fn topic_shard_of(&self, topic: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(topic) as usize & (self.topic_shards.len() - 1);
        self.topic_shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        // Shard operations finish or don't start; a panic elsewhere can't leave one half-done.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Registers a new connection for `uid`, unless the hub holds `caps.streams` connections
    /// or `uid` holds `caps.per_uid`.
    /// Registers a connection of `uid` subscribed to `topics` (checked, sorted, without
    /// duplicates).
    pub(crate) fn insert(
        &self,
        uid: &str,
        topics: &[String],
        caps: Caps,
    ) -> Result<Arc<Connection>, SubscribeError> {
        // Before the uid's lock: never a topic shard's lock inside a uid shard's.
        let topics = self.topic_names(topics);
        let mut shard = self.shard_of(uid);
        // The uid's count is exact under its shard's lock; the global one is reserved with a
        // compare-and-swap, so concurrent subscribes on other shards never overshoot it.
        if shard
            .get(uid)
            .is_some_and(|list| list.len() >= caps.per_uid)
        {
            return Err(SubscribeError::UidAtCapacity {
                limit: caps.per_uid,
            });
        }
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < caps.streams).then_some(n + 1)
            })
            .map_err(|_| SubscribeError::AtCapacity {
                limit: caps.streams,
            })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = match shard.get_key_value(uid) {
            // Share the uid's allocation between its connections.
            Some((key, _)) => Arc::new(Connection::new(id, Arc::clone(key), topics)),
            None => {
                self.users.fetch_add(1, Ordering::Relaxed);
                Arc::new(Connection::new(id, Arc::from(uid), topics))
            }
        };
        shard
            .entry(Arc::clone(&connection.uid))
            .or_default()
            .push(Arc::clone(&connection));
        drop(shard);
        // One lock at a time: a push that runs meanwhile may find the connection by its uid and
        // not yet by a topic, as if it had come a moment earlier.
        for topic in &connection.topics {
            let mut shard = self.topic_shard_of(topic);
            let list = shard.entry(Arc::clone(topic)).or_insert_with(|| {
                self.topics.fetch_add(1, Ordering::Relaxed);
                Vec::new()
            });
            list.push(Arc::clone(&connection));
        }
        Ok(connection)
    }

    /// The topic names for a new connection, sharing the index's allocation where the topic is
    /// already there.
    fn topic_names(&self, topics: &[String]) -> Box<[Arc<str>]> {
        topics
            .iter()
            .map(|topic| {
                self.topic_shard_of(topic)
                    .get_key_value(topic.as_str())
                    .map_or_else(|| Arc::from(topic.as_str()), |(key, _)| Arc::clone(key))
            })
            .collect()
    }

    /// Removes a connection; removing it twice is harmless.
    pub(crate) fn remove(&self, connection: &Connection) {
        let mut shard = self.shard_of(&connection.uid);
        let Entry::Occupied(mut entry) = shard.entry(Arc::clone(&connection.uid)) else {
            return;
        };
        let list = entry.get_mut();
        let Some(position) = list.iter().position(|c| c.id == connection.id) else {
            return;
        };
        list.swap_remove(position);
        if list.is_empty() {
            entry.remove();
            self.users.fetch_sub(1, Ordering::Relaxed);
        }
        drop(shard);
        for topic in &connection.topics {
            let mut shard = self.topic_shard_of(topic);
            let Entry::Occupied(mut entry) = shard.entry(Arc::clone(topic)) else {
                continue;
            };
            let list = entry.get_mut();
            if let Some(position) = list.iter().position(|c| c.id == connection.id) {
                list.swap_remove(position);
            }
            if list.is_empty() {
                entry.remove();
                self.topics.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if self.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.emptied.notify_waiters();
        }
    }

    /// Calls `f` with each connection of `uid`, holding that uid's shard.
    pub(crate) fn for_uid(&self, uid: &str, mut f: impl FnMut(&Arc<Connection>)) {
        if let Some(list) = self.shard_of(uid).get(uid) {
            list.iter().for_each(&mut f);
        }
    }

    /// Calls `f` with each connection in shard `index`, holding that shard.
    /// Calls `f` with each connection subscribed to `topic`.
    pub(crate) fn for_topic(&self, topic: &str, mut f: impl FnMut(&Arc<Connection>)) {
        if let Some(list) = self.topic_shard_of(topic).get(topic) {
            list.iter().for_each(&mut f);
        }
    }

    pub(crate) fn for_shard(&self, index: usize, mut f: impl FnMut(&Arc<Connection>)) {
        for list in self.lock(index).values() {
            list.iter().for_each(&mut f);
        }
    }

    /// Every connection, collected so the caller can act without holding shard locks.
    pub(crate) fn all(&self) -> Vec<Arc<Connection>> {
        let mut all = Vec::with_capacity(self.connections());
        for index in 0..self.shards.len() {
            self.for_shard(index, |connection| all.push(Arc::clone(connection)));
        }
        all
    }

    /// The bytes waiting in every connection's outbox: each shard locked in turn, and each
    /// outbox under it (the order pushes take them in), briefly.
    #[cfg(feature = "metrics")]
    pub(crate) fn queued_bytes(&self) -> usize {
        let mut bytes = 0;
        for index in 0..self.shards.len() {
            self.for_shard(index, |connection| bytes += connection.queued_bytes());
        }
        bytes
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub(crate) fn users(&self) -> usize {
        self.users.load(Ordering::Relaxed)
    }

    /// How many distinct topics have at least one connection.
    pub(crate) fn topics(&self) -> usize {
        self.topics.load(Ordering::Relaxed)
    }

    /// Resolves once no connection is left.
    pub(crate) async fn until_empty(&self) {
        loop {
            // Created before the check so a removal in between still wakes it.
            let emptied = self.emptied.notified();
            if self.connections() == 0 {
                return;
            }
            emptied.await;
        }
    }
}
