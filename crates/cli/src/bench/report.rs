//! What the clients counted, and the one JSON line that reports a run.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in ns from 1 µs (finer is noise here) up to one hour, with three
/// significant digits: about 190 KB per histogram, so there is one per shard of clients, not one
/// per client.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3)
        .expect("hdrhistogram accepts these constant bounds")
}

/// The counts of a group of clients, behind one lock taken once per read, not per event.
#[derive(Debug)]
pub struct Tally {
    /// Latency of each first delivery, in ns.
    pub latency: Histogram<u64>,
    /// First deliveries of a push to a client.
    pub received: u64,
    /// Deliveries of a push a client had already received.
    pub duplicates: u64,
    /// Events that are not this run's pushes.
    pub other: u64,
    /// In a uni-cast run: this run's pushes that reached a client they were not for.
    pub misdelivered: u64,
    /// Receive time of the last first delivery, ns since the UNIX epoch.
    pub last_receive_ns: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            latency: new_histogram(),
            received: 0,
            duplicates: 0,
            other: 0,
            misdelivered: 0,
            last_receive_ns: 0,
        }
    }
}

impl Tally {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Self) {
        // Same bounds on both sides: adding cannot fail; saturate rather than lose a run if it did.
        if self.latency.add(&other.latency).is_err() {
            for value in other.latency.iter_recorded() {
                self.latency
                    .saturating_record_n(value.value_iterated_to(), value.count_at_value());
            }
        }
        self.received += other.received;
        self.duplicates += other.duplicates;
        self.other += other.other;
        self.misdelivered += other.misdelivered;
        self.last_receive_ns = self.last_receive_ns.max(other.last_receive_ns);
    }
}

/// The run, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `broadcast` (every push is for every client) or `unicast` (`{client}` in the stream URL:
    /// each push is for K clients).
    pub mode: &'static str,
    /// `--clients`.
    pub clients_requested: u64,
    /// Clients whose stream opened (a 2xx response head).
    pub clients_connected: u64,
    /// Seconds from the first connection attempt until every client connected or failed.
    pub connect_secs: f64,
    /// Clients that could not connect (refused, timed out, non-2xx status).
    pub connect_errors: u64,
    /// Connected clients whose stream ended or failed before the end of the run.
    pub clients_dropped: u64,
    /// Pushes the schedule holds: `rate × duration`.
    pub pushes_planned: u64,
    /// Push requests written to a socket.
    pub pushes_sent: u64,
    /// Pushes answered with a 2xx status.
    pub pushes_acked: u64,
    /// Pushes sent but not acknowledged: a non-2xx status, or no answer before the deadline.
    pub push_errors: u64,
    /// `--rate`, pushes per second.
    pub rate: f64,
    /// `--duration`, seconds of publishing (or of holding the connections idle).
    pub duration_secs: f64,
    /// `pushes_acked × clients_connected`; uni-cast: the connected clients of each acknowledged
    /// push, summed.
    pub deliveries_expected: u64,
    /// First deliveries of this run's pushes, over all clients (uni-cast: to clients they were
    /// for).
    pub deliveries_received: u64,
    /// `deliveries_expected − deliveries_received` (0 if negative); uni-cast: the same, push by
    /// push, over acknowledged pushes only.
    pub lost: u64,
    /// Repeated deliveries of a push to the same client.
    pub duplicates: u64,
    /// Uni-cast: deliveries of this run's pushes to a client they were not for (0 in a broadcast
    /// run).
    pub misdelivered: u64,
    /// Events without two runs of digits in their data, or not from this run's pushes.
    pub other_events: u64,
    /// Latency of first deliveries, from the push's `{ts}` to the read that completed the event;
    /// `null` when nothing was delivered.
    pub latency_ms: Option<Latency>,
    /// `deliveries_received` per second, from the first push to the last delivery.
    pub deliveries_per_sec: f64,
    /// Seconds from the first push until the last delivery or the deadline: the window of the
    /// CPU figures.
    pub window_secs: f64,
    /// CPU seconds the generator itself used in the window.
    pub generator_cpu_secs: f64,
    /// The server's figures, with `--server-pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerReport>,
    /// How a uni-cast run addressed its pushes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unicast: Option<UnicastReport>,
}

impl Report {
    /// What makes a uni-cast or an observing run fail (exit 1): a broken promise of the
    /// server's. A broadcast run reports its loss as a result and passes, as it always has.
    pub fn failures(&self) -> Vec<String> {
        if self.unicast.is_none() && self.mode != "observe" {
            return Vec::new();
        }
        [
            ("misdelivered", self.misdelivered),
            ("lost", self.lost),
            ("duplicates", self.duplicates),
        ]
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(what, count)| format!("{count} {what}"))
        .collect()
    }
}

/// The addressing of a uni-cast run, as given.
#[derive(Debug, Clone, Serialize)]
pub struct UnicastReport {
    /// `--recipients`: `round-robin` or `random`.
    pub recipients: &'static str,
    /// `--uids-per-push`.
    pub uids_per_push: u64,
    /// `--seed` (of `random`).
    pub seed: u64,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Latency {
    /// The percentiles of `histogram` (ns), or `None` if it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |ns: u64| (ns as f64 / 1e3).round() / 1e3;
        Some(Self {
            p50: ms(histogram.value_at_quantile(0.5)),
            p90: ms(histogram.value_at_quantile(0.9)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        })
    }
}

/// The server's CPU and memory, from `/proc/PID`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    /// `--server-pid`.
    pub pid: u32,
    /// The server's user + system CPU seconds in the window.
    pub cpu_secs: Option<f64>,
    /// `deliveries_received / cpu_secs`: deliveries per server CPU-second.
    pub efficiency: Option<f64>,
    /// The server's PSS before the clients connected, bytes.
    pub pss_bytes_before: Option<u64>,
    /// The server's PSS once they all connected and the warm-up passed, bytes.
    pub pss_bytes_after: Option<u64>,
    /// `(pss_bytes_after − pss_bytes_before) / clients_connected`.
    pub bytes_per_connection: Option<f64>,
    /// The server's RSS before the clients connected, bytes.
    pub rss_bytes_before: Option<u64>,
    /// The server's RSS after, bytes.
    pub rss_bytes_after: Option<u64>,
    /// `(rss_bytes_after − rss_bytes_before) / clients_connected`.
    pub rss_bytes_per_connection: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_ms() {
        let mut tally = Tally::default();
        assert!(Latency::of(&tally.latency).is_none());
        for ms in 1..=1000u64 {
            tally.latency.saturating_record(ms * 1_000_000);
        }
        let mut merged = Tally::default();
        merged.merge(&tally);
        let latency = Latency::of(&merged.latency).unwrap();
        assert!((latency.p50 - 500.0).abs() < 1.0, "{latency:?}");
        assert!((latency.p99 - 990.0).abs() < 1.0, "{latency:?}");
        assert!((latency.max - 1000.0).abs() < 1.0, "{latency:?}");
        assert!(latency.p50 <= latency.p90 && latency.p90 <= latency.p99);
        assert!(latency.p99 <= latency.p999 && latency.p999 <= latency.max);
    }
}
