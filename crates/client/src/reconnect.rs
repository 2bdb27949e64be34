//! The reconnection delay: the spec's reconnection time, grown on consecutive failures, capped,
//! with jitter.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The delay before each reconnection attempt.
///
/// The WHATWG spec waits the reconnection time (2 s here unless configured, replaced for good by
/// a server's `retry:`) and lets clients wait more after failures. Attempt `n` in a row (from 1)
/// waits `reconnection_time * 2^(n-1)`, capped at `max_delay`, plus jitter so that clients cut
/// off together do not come back together: an uncapped delay `d` becomes a random value in
/// `[d, 1.5 d]` (never above the cap); a capped one a random value in `[0.75 cap, cap]`. A delay
/// is never shorter than the reconnection time: the server asked for at least that.
///
/// The engine counts attempts in a row, and starts over only after a connection that made
/// progress: one that dispatched an event, or stayed open at least [`cap`](Self::cap).
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// The spec's reconnection time.
    pub(crate) reconnection_time: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) jitter: bool,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(reconnection_time: Duration, max_delay: Duration, jitter: bool) -> Self {
        // A per-process random seed from std, so jitter needs no extra dependency.
        let seed = RandomState::new().build_hasher().finish() | 1;
        Self {
            reconnection_time,
            max_delay,
            jitter,
            rng: seed,
        }
    }

    /// The delay before attempt `attempt` (1 for the first attempt after a connection that made
    /// progress, or after the first connection failed).
    pub(crate) fn delay(&mut self, attempt: u32) -> Duration {
        let base = self.reconnection_time;
        let cap = self.cap();
        let doublings = attempt.saturating_sub(1).min(31);
        let grown = base.saturating_mul(1u32 << doublings).min(cap);
        if !self.jitter {
            return grown;
        }
        let fraction = self.next_fraction();
        if grown < cap {
            // Only add: the spec's reconnection time is a minimum.
            (grown + grown.mul_f64(0.5 * fraction)).min(cap)
        } else {
            let low = cap.mul_f64(0.75).max(base);
            low + (cap - low).mul_f64(fraction)
        }
    }

    /// The longest delay: the configured cap, or the reconnection time when a server's `retry:`
    /// asked for more.
    pub(crate) fn cap(&self) -> Duration {
        self.max_delay.max(self.reconnection_time)
    }

    /// A uniform value in `[0, 1)` from xorshift64*.
    fn next_fraction(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let value = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (value >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn grows_doubling_up_to_the_cap_without_jitter() {
        let mut backoff = Backoff::new(20 * MS, 100 * MS, false);
        let delays: Vec<_> = (1..=6).map(|n| backoff.delay(n)).collect();
        assert_eq!(
            delays,
            [20 * MS, 40 * MS, 80 * MS, 100 * MS, 100 * MS, 100 * MS]
        );
    }

    #[test]
    fn jitter_stays_between_reconnection_time_and_cap() {
        let mut backoff = Backoff::new(20 * MS, 100 * MS, true);
        let mut distinct = std::collections::HashSet::new();
        for attempt in 1..200 {
            let delay = backoff.delay(attempt % 8 + 1);
            assert!(delay >= 20 * MS && delay <= 100 * MS, "{delay:?}");
            distinct.insert(delay);
        }
        assert!(distinct.len() > 10, "jitter should vary the delays");
        for _ in 0..100 {
            let first = backoff.delay(1);
            assert!(first >= 20 * MS && first <= 30 * MS, "{first:?}");
            let capped = backoff.delay(30);
            assert!(capped >= 75 * MS && capped <= 100 * MS, "{capped:?}");
        }
    }

    #[test]
    fn server_retry_above_cap_is_honoured() {
        let mut backoff = Backoff::new(5_000 * MS, 1_000 * MS, true);
        for attempt in 1..10 {
            assert_eq!(backoff.delay(attempt), 5_000 * MS);
        }
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(30), false);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(30));
    }
}
