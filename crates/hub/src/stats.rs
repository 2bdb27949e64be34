//! Push statistics: the seed's four counters plus who is online.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The hub's live counters. Relaxed atomics: each counter is exact, a snapshot across them is not.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    total: AtomicU64,
    success: AtomicU64,
    failed: AtomicU64,
    timeout: AtomicU64,
    cut_off: AtomicU64,
    stalled_resets: AtomicU64,
}

impl Counters {
    pub(crate) fn add_total(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_success(&self, n: u64) {
        self.success.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_failed(&self, n: u64) {
        self.failed.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_timeout(&self, n: u64) {
        self.timeout.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_cut_off(&self, n: u64) {
        self.cut_off.fetch_add(n, Ordering::Relaxed);
    }

    /// The lean server reset a stream whose client stopped reading.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn add_stalled_reset(&self) {
        self.stalled_resets.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(
        &self,
        online_users: usize,
        connections: usize,
        topics: usize,
    ) -> HubStats {
        HubStats {
            total: self.total.load(Ordering::Relaxed),
            success: self.success.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            timeout: self.timeout.load(Ordering::Relaxed),
            cut_off: self.cut_off.load(Ordering::Relaxed),
            stalled_resets: self.stalled_resets.load(Ordering::Relaxed),
            online_users,
            connections,
            topics,
        }
    }
}

/// A snapshot of the hub's push statistics, from [`Hub::stats`](crate::Hub::stats).
///
/// Counts are per delivery: one event pushed to three connections counts three. A delivery is
/// `success` once it is in the connection's queue, `failed` when the slow-client policy gives up
/// on it (or cuts the connection), and each full wait for room in a full queue adds one `timeout`.
/// `total - success - failed` deliveries are still waiting for room. `cut_off` and
/// `stalled_resets` count connections, not deliveries.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let hub = ssehub_hub::Hub::new();
/// let stats = hub.stats();
/// assert_eq!((stats.total, stats.connections), (0, 0));
/// println!("{stats}");
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HubStats {
    /// Deliveries attempted: events × connections they were addressed to.
    pub total: u64,
    /// Deliveries accepted into a connection's queue.
    pub success: u64,
    /// Deliveries given up on by the slow-client policy.
    pub failed: u64,
    /// Waits for room in a full queue that ran out.
    pub timeout: u64,
    /// Connections the hub cut off: under
    /// [`SlowClientPolicy::Disconnect`](crate::SlowClientPolicy::Disconnect), or, with a store
    /// and resend, where a delivery failed (a hole is never left; the client resumes).
    pub cut_off: u64,
    /// Streams the lean server ([`server::Server`](crate::server)) reset because the client
    /// took nothing for its write timeout.
    pub stalled_resets: u64,
    /// Distinct uids with at least one live connection.
    pub online_users: usize,
    /// Live connections.
    pub connections: usize,
    /// Distinct topics with at least one live connection.
    pub topics: usize,
}

impl fmt::Display for HubStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pushes: total={} success={} failed={} timeout={}; cut off={} stalled resets={}; online: users={} connections={} topics={}",
            self.total,
            self.success,
            self.failed,
            self.timeout,
            self.cut_off,
            self.stalled_resets,
            self.online_users,
            self.connections,
            self.topics
        )
    }
}
