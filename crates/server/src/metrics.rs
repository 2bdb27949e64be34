//! `GET /metrics`: the hub's series (named `ssehub_*`, emitted through the `metrics` facade)
//! rendered as Prometheus text by metrics-exporter-prometheus.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use ssehub_hub::Hub;

/// Latency buckets, in seconds: from half a millisecond to ten seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histograms are folded into their buckets between scrapes, so that memory stays
/// bounded however rarely Prometheus comes.
const UPKEEP: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder (the `metrics` facade has one per process).
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Why the recorder could not be installed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot serve /metrics: {0}")]
pub struct MetricsError(String);

static RECORDER: OnceLock<Result<PrometheusHandle, MetricsError>> = OnceLock::new();

impl Metrics {
    /// Installs the Prometheus recorder as the process's `metrics` recorder (once; later calls
    /// share it) and starts its upkeep (a thread that folds histograms every 5 s).
    ///
    /// # Errors
    ///
    /// [`MetricsError`] when the process already has another recorder.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let metrics = ssehub_server::metrics::Metrics::install().unwrap();
    /// // A hub reports its series when built with metrics on (`ssehub serve`'s are).
    /// let hub = ssehub_hub::Hub::builder().metrics(true).build().unwrap();
    /// assert!(metrics.render(&hub).contains("ssehub_connections"));
    /// # }
    /// ```
    pub fn install() -> Result<Self, MetricsError> {
        let handle = RECORDER
            .get_or_init(|| {
                let recorder = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                    .map_err(|e| MetricsError(e.to_string()))?
                    .build_recorder();
                let handle = recorder.handle();
                metrics::set_global_recorder(recorder).map_err(|_| {
                    MetricsError("another metrics recorder is installed in this process".to_owned())
                })?;
                ssehub_hub::metrics::describe();
                // A thread of its own, not a task: the recorder outlives whichever runtime
                // installed it (a test's, say), and its histograms must keep being folded.
                let upkeep = handle.clone();
                std::thread::Builder::new()
                    .name("ssehub-metrics".to_owned())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(UPKEEP);
                            upkeep.run_upkeep();
                        }
                    })
                    .map_err(|e| {
                        MetricsError(format!("cannot start the metrics upkeep thread: {e}"))
                    })?;
                Ok(handle)
            })
            .clone()?;
        Ok(Self { handle })
    }

    /// The Prometheus text of every series, the hub's current state included.
    pub fn render(&self, hub: &Hub) -> String {
        hub.publish_metrics();
        self.handle.render()
    }
}
