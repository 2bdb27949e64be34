//! What the hub does when a connection's queue is full.

use std::time::Duration;

/// What happens to an event pushed to a connection whose queue is full (the client reads slower
/// than events arrive). Memory stays bounded under both policies.
///
/// ```
/// use std::time::Duration;
/// use ssehub_hub::{Hub, SlowClientPolicy};
///
/// // The seed's behaviour: wait up to 3 × 5 s for room, then count a failure.
/// let seed_like = SlowClientPolicy::default();
/// assert_eq!(seed_like, SlowClientPolicy::Wait { timeout: Duration::from_secs(5), retries: 3 });
///
/// // Cut the client off; it reconnects and, with a store, catches up from history.
/// let hub = Hub::builder().slow_client(SlowClientPolicy::Disconnect).build().unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowClientPolicy {
    /// Hold the event in a second, equally bounded waiting area for up to `retries` waits of
    /// `timeout` each (each expired wait counts one `timeout` in the stats). If the client drains
    /// its queue in time the event is delivered in order; otherwise it counts as `failed` and the
    /// push-failed handler is called. When the waiting area is full too, the event fails at once.
    /// Pushes never block on a slow client: other connections are served immediately.
    Wait {
        /// How long one wait for room lasts.
        timeout: Duration,
        /// How many waits before the event is given up. `0` fails it at once.
        retries: u32,
    },
    /// Close the connection. The events that did not fit count as `failed` and go to the
    /// push-failed handler; the client reconnects with its `Last-Event-ID`.
    Disconnect,
}

impl Default for SlowClientPolicy {
    /// The seed's policy: `Wait { timeout: 5 s, retries: 3 }`.
    fn default() -> Self {
        Self::Wait {
            timeout: Duration::from_secs(5),
            retries: 3,
        }
    }
}
