//! Admission: how many streams (and, on the lean server, connections) a process takes before it
//! refuses more, and what a refused client is told.
//!
//! Every event stream holds a socket, so the number a process can serve is bounded by its
//! open-file limit (`RLIMIT_NOFILE`, the soft value). Past it `accept` fails with `EMFILE` and
//! every client, including a publisher's `POST /push`, goes unanswered. The defaults here keep
//! streams below that limit with a reserve for everything else:
//!
//! ```text
//! limit    = the soft RLIMIT_NOFILE when the hub is built (no limit or not Unix: no default cap)
//! reserve  = clamp(limit / 8, 32, 1024), at most limit / 2
//! streams  = limit - reserve          (HubBuilder::max_streams, both front ends)
//! connections = limit - reserve / 2   (ServerBuilder::max_connections, the lean server)
//! ```
//!
//! So half the reserve is left for connections that are not streams (publishers, health checks)
//! when streams hold every slot, and the other half for the store, logs, the listener and the
//! runtime. At 1,024 that is 896 streams and 960 connections; at 65,536, 64,512 and 65,024.
//!
//! ```
//! use ssehub_hub::admission;
//!
//! assert_eq!(admission::max_streams_for(1024), 896);
//! assert_eq!(admission::max_connections_for(1024), 960);
//! // What this process gets by default (its own open-file limit):
//! let streams = admission::default_max_streams();
//! assert!(streams < usize::MAX || admission::open_file_limit().is_none());
//! ```

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// The default base of the time a client over capacity is told to wait before trying again
/// (`Retry-After`, and `retry:` on a refused stream); each answer adds up to as much again at
/// random, so that a crowd refused together does not return together.
pub const DEFAULT_OVER_CAPACITY_RETRY: Duration = Duration::from_secs(5);

/// The process's soft open-file limit (`RLIMIT_NOFILE`), or `None` when it is unlimited or
/// unknown (not Unix).
///
/// ```
/// if let Some(limit) = ssehub_hub::admission::open_file_limit() {
///     assert!(limit > 0);
/// }
/// ```
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The descriptors kept back from streams for everything else (see the [module](self)).
fn reserve(limit: u64) -> u64 {
    (limit / 8).clamp(32, 1024).min(limit / 2)
}

/// The stream cap for an open-file limit of `limit`: `limit - clamp(limit / 8, 32, 1024)`
/// (the reserve at most `limit / 2`).
///
/// ```
/// use ssehub_hub::admission::max_streams_for;
///
/// assert_eq!(max_streams_for(256), 224);
/// assert_eq!(max_streams_for(1_048_576), 1_047_552);
/// ```
pub fn max_streams_for(limit: u64) -> usize {
    usize::try_from(limit - reserve(limit)).unwrap_or(usize::MAX)
}

/// The lean server's connection cap for an open-file limit of `limit`: `limit - reserve / 2`,
/// above [`max_streams_for`] so that a publisher still gets in when streams hold every slot.
///
/// ```
/// use ssehub_hub::admission::{max_connections_for, max_streams_for};
///
/// assert_eq!(max_connections_for(256), 240);
/// assert!(max_connections_for(100_000) > max_streams_for(100_000));
/// ```
pub fn max_connections_for(limit: u64) -> usize {
    usize::try_from(limit - reserve(limit) / 2).unwrap_or(usize::MAX)
}

/// [`max_streams_for`] this process's [`open_file_limit`]; `usize::MAX` (no cap) without one.
///
/// ```
/// let cap = ssehub_hub::admission::default_max_streams();
/// assert!(cap > 0);
/// ```
pub fn default_max_streams() -> usize {
    open_file_limit().map_or(usize::MAX, max_streams_for)
}

/// [`max_connections_for`] this process's [`open_file_limit`]; `usize::MAX` (no cap) without
/// one.
///
/// ```
/// use ssehub_hub::admission::{default_max_connections, default_max_streams};
///
/// assert!(default_max_connections() >= default_max_streams());
/// ```
pub fn default_max_connections() -> usize {
    open_file_limit().map_or(usize::MAX, max_connections_for)
}

// Used by the HTTP front ends only.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
/// `base` plus up to as much again, at random: the wait given to one refused client.
pub(crate) fn jittered(base: Duration) -> Duration {
    // A fresh `RandomState` is randomly keyed: hashing anything gives an unpredictable number,
    // without a dependency for one random value per refusal.
    let random = RandomState::new().hash_one(0u8);
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    base + base.mul_f64(fraction)
}

// Used by the HTTP front ends only.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
/// The body of the stream that refuses a client over a cap (a comment and a `retry:` of the
/// jittered wait, then the end), and the same wait in whole seconds for `Retry-After`.
pub(crate) fn over_capacity_body(base: Duration) -> (bytes::Bytes, u64) {
    let wait = jittered(base);
    let mut body = bytes::BytesMut::from(&b":over capacity\n"[..]);
    body.extend_from_slice(&ssehub_wire::encode_retry(wait));
    (body.freeze(), retry_after_secs(wait))
}

// Used by the HTTP front ends only.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
/// Whole seconds for a `Retry-After` header, rounded up (a client must not come back early).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{jittered, max_connections_for, max_streams_for, retry_after_secs};

    #[test]
    fn caps_leave_room_below_the_limit() {
        for limit in [16, 64, 100, 256, 1024, 4096, 20_000, 65_536, 1 << 20] {
            let (streams, connections) = (max_streams_for(limit), max_connections_for(limit));
            assert!(streams > 0, "{limit}");
            assert!(streams < connections, "{limit}: {streams} < {connections}");
            assert!((connections as u64) < limit, "{limit}: {connections}");
        }
        assert_eq!(max_streams_for(20_000), 18_976);
        assert_eq!(max_streams_for(64), 32);
    }

    #[test]
    fn waits_are_spread_and_rounded_up() {
        let base = Duration::from_secs(5);
        let waits: Vec<_> = (0..32).map(|_| jittered(base)).collect();
        assert!(waits.iter().all(|wait| *wait >= base && *wait < base * 2));
        assert!(waits.iter().any(|wait| *wait != waits[0]), "{waits:?}");
        assert_eq!(retry_after_secs(Duration::from_millis(5001)), 6);
        assert_eq!(retry_after_secs(Duration::from_secs(5)), 5);
    }
}
