//! The hub's metrics through the [`metrics`](https://docs.rs/metrics/0.24) facade (feature
//! `metrics`), for any exporter: metrics-exporter-prometheus, statsd, ...
//!
//! Turn them on with [`HubBuilder::metrics`](crate::HubBuilder::metrics), install an exporter's
//! recorder, call [`describe`] once, and [`Hub::publish_metrics`](crate::Hub::publish_metrics)
//! before each scrape (or every few seconds, for an exporter that pushes).
//!
//! | series | type | what |
//! | --- | --- | --- |
//! | `ssehub_connections` | gauge | live event streams |
//! | `ssehub_users` | gauge | distinct uids with at least one stream |
//! | `ssehub_topics` | gauge | distinct topics with at least one stream |
//! | `ssehub_queued_bytes` | gauge, bytes | bytes waiting in all streams' outboxes (queue + waiting area) |
//! | `ssehub_pushes_total{outcome}` | counter | push calls by outcome: `ok`, `invalid`, `too_large`, `duplicate_id`, `store_timeout`, `store_error`, `closed` |
//! | `ssehub_deliveries_total{outcome}` | counter | deliveries (event × stream): `queued`, `failed` |
//! | `ssehub_delivery_timeouts_total` | counter | waits for room in a full queue that ran out |
//! | `ssehub_cutoffs_total` | counter | streams the hub cut off (slow client) |
//! | `ssehub_stalled_resets_total` | counter | streams the lean server reset: the client took nothing for the write timeout |
//! | `ssehub_push_to_write_seconds` | histogram, seconds | from a push call to its bytes handed to the stream's writer; one sample per chunk (its oldest event) |
//! | `ssehub_store_commit_seconds` | histogram, seconds | each batch's save to the store |
//! | `ssehub_store_commit_events` | histogram, count | events per batch saved |
//!
//! What it costs: with metrics off, nothing on the push or write path (a flag read per push, a
//! branch per chunk). On: per push, one clock read and one counter increment; per chunk written,
//! one clock read and one histogram sample (through a handle kept from the first
//! `publish_metrics`); per store batch, two clock reads and two samples. In the broadcast bench
//! (one event per write) that is about 1 % of the server thread's CPU. The exporter then does its
//! own work per sample: metrics-exporter-prometheus's default summaries cost about 2.5 % more
//! (on the thread that renders or runs its upkeep), histograms with buckets
//! (`PrometheusBuilder::set_buckets`) a tenth of that: prefer buckets. Figures in
//! `docs/benchmarks.md`, "Metrics cost". The gauges and the delivery counters are read from the
//! hub's state by `publish_metrics`, which walks every stream's outbox (one short lock each) for
//! `ssehub_queued_bytes`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
//! let handle = recorder.handle();
//! metrics::set_global_recorder(recorder).unwrap();
//! ssehub_hub::metrics::describe();
//!
//! let hub = ssehub_hub::Hub::builder().metrics(true).build().unwrap();
//! hub.broadcast([ssehub_hub::Event::new("hi")]).await.unwrap();
//! hub.publish_metrics(); // before each scrape
//! let text = handle.render();
//! assert!(text.contains(r#"ssehub_pushes_total{outcome="ok"} 1"#));
//! assert!(text.contains("ssehub_connections 0"));
//! # }
//! ```

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{
    Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use tokio::time::{Duration, Instant};

use crate::hub::Shared;
use crate::{PushError, PushReceipt};

/// Describes every series the hub writes, with its unit and what to do about it. Call it once,
/// after installing the recorder (describing again is harmless).
///
/// ```
/// ssehub_hub::metrics::describe(); // without a recorder: does nothing
/// ```
pub fn describe() {
    describe_gauge!(
        "ssehub_connections",
        Unit::Count,
        "Live event streams. Near the cap (HubBuilder::max_streams, derived from the open-file \
         limit), new clients are told to come back later: raise the limit or add nodes."
    );
    describe_gauge!(
        "ssehub_users",
        Unit::Count,
        "Distinct uids with at least one live stream."
    );
    describe_gauge!(
        "ssehub_topics",
        Unit::Count,
        "Distinct topics with at least one live stream."
    );
    describe_gauge!(
        "ssehub_queued_bytes",
        Unit::Bytes,
        "Bytes waiting in all streams' outboxes (queue and waiting area). Growing while \
         connections stay flat: clients read slower than you push; see \
         ssehub_cutoffs_total and ssehub_deliveries_total{outcome=\"failed\"}."
    );
    describe_counter!(
        "ssehub_pushes_total",
        Unit::Count,
        "Push calls by outcome: ok; invalid (bad event, id, type or topic, no recipients, over \
         a limit: fix the publisher); too_large (data over max_data_len); duplicate_id (an id \
         already stored); store_timeout and store_error (the store is slow or failing: check \
         it); closed (pushed after the hub closed)."
    );
    describe_counter!(
        "ssehub_deliveries_total",
        Unit::Count,
        "Deliveries (one event to one stream): queued, or failed because the client was too \
         slow for the slow-client policy. Failures rising: raise connection_buffer or \
         max_queued_bytes, or find the slow clients."
    );
    describe_counter!(
        "ssehub_delivery_timeouts_total",
        Unit::Count,
        "Waits for room in a full stream queue that ran out (SlowClientPolicy::Wait)."
    );
    describe_counter!(
        "ssehub_cutoffs_total",
        Unit::Count,
        "Streams the hub cut off because their client fell behind (SlowClientPolicy::Disconnect, \
         or a failed delivery with store and resend). The clients reconnect and resume; many \
         of them: raise connection_buffer or max_queued_bytes."
    );
    describe_counter!(
        "ssehub_stalled_resets_total",
        Unit::Count,
        "Streams the lean server reset because the client took no byte for the write timeout \
         (a stalled or vanished peer). Many of them: look at the clients' network, or raise \
         ServerBuilder::write_timeout."
    );
    describe_histogram!(
        "ssehub_push_to_write_seconds",
        Unit::Seconds,
        "From a push call to its bytes handed to the stream's writer, once per chunk written \
         (its oldest event). High while the store commit is fast: the server is short of CPU \
         or clients read slowly."
    );
    describe_histogram!(
        "ssehub_store_commit_seconds",
        Unit::Seconds,
        "Each batch's save to the event store (one transaction). High: the store's disk or \
         server is slow, and every push waits for it."
    );
    describe_histogram!(
        "ssehub_store_commit_events",
        Unit::Count,
        "Events per batch saved to the store. Pushes that arrive during a save share the next \
         one."
    );
}

/// Counts a push call under its outcome.
pub(crate) fn count_push(result: &Result<PushReceipt, PushError>) {
    // Literal labels: the facade keeps a static key for each, so a push allocates nothing here.
    let counter = match result {
        Ok(_) => counter!("ssehub_pushes_total", "outcome" => "ok"),
        Err(error) => match error {
            PushError::NoEvents
            | PushError::NoRecipients
            | PushError::EmptyUid { .. }
            | PushError::InvalidEvent { .. }
            | PushError::LimitExceeded { .. }
            | PushError::InvalidTopic { .. } => {
                counter!("ssehub_pushes_total", "outcome" => "invalid")
            }
            PushError::TooLarge { .. } => counter!("ssehub_pushes_total", "outcome" => "too_large"),
            PushError::DuplicateId { .. } => {
                counter!("ssehub_pushes_total", "outcome" => "duplicate_id")
            }
            PushError::StoreTimeout { .. } => {
                counter!("ssehub_pushes_total", "outcome" => "store_timeout")
            }
            PushError::Store(_) => counter!("ssehub_pushes_total", "outcome" => "store_error"),
            PushError::Closed => counter!("ssehub_pushes_total", "outcome" => "closed"),
        },
    };
    counter.increment(1);
}

/// A chunk of events was handed to the writer; the oldest was pushed at `pushed`.
pub(crate) fn record_push_to_write(published: &Published, pushed: Instant) {
    let waited = pushed.elapsed();
    match published.push_to_write.get() {
        Some(histogram) => histogram.record(waited),
        // Before the first publish: looked up each time, so a recorder installed after the hub
        // was built still gets every sample.
        None => histogram!("ssehub_push_to_write_seconds").record(waited),
    }
}

/// One committer batch was saved (or failed to be), taking `took`.
pub(crate) fn record_store_commit(took: Duration, events: usize) {
    histogram!("ssehub_store_commit_seconds").record(took);
    histogram!("ssehub_store_commit_events").record(events as f64);
}

/// What this hub last added to each counter the facade gets from its state, so that each
/// publish adds only what is new: two hubs in one process add up, and any exporter (also one
/// that pushes deltas) sees a counter that only grows.
///
/// It also keeps the handle of the one series written per chunk, taken at the first publish
/// (the recorder is installed by then): looking the series up in the recorder was more than half
/// of what a sample cost (`docs/benchmarks.md`, "Metrics cost").
#[derive(Debug, Default)]
pub(crate) struct Published {
    push_to_write: OnceLock<Histogram>,
    queued: AtomicU64,
    failed: AtomicU64,
    timeouts: AtomicU64,
    cut_off: AtomicU64,
    stalled_resets: AtomicU64,
}

/// Adds to `counter` what `now` has over what was published; concurrent publishes add each
/// part once (the highest value wins).
fn add_new(published: &AtomicU64, now: u64, counter: metrics::Counter) {
    let before = published.fetch_max(now, Ordering::Relaxed);
    counter.increment(now.saturating_sub(before));
}

/// Sets the gauges and brings the counters up to the hub's state.
pub(crate) fn publish(shared: &Shared) {
    let registry = &shared.registry;
    let stats =
        shared
            .counters
            .snapshot(registry.users(), registry.connections(), registry.topics());
    gauge!("ssehub_connections").set(stats.connections as f64);
    gauge!("ssehub_users").set(stats.online_users as f64);
    gauge!("ssehub_topics").set(stats.topics as f64);
    gauge!("ssehub_queued_bytes").set(registry.queued_bytes() as f64);
    let published = &shared.published;
    published
        .push_to_write
        .get_or_init(|| histogram!("ssehub_push_to_write_seconds"));
    add_new(
        &published.queued,
        stats.success,
        counter!("ssehub_deliveries_total", "outcome" => "queued"),
    );
    add_new(
        &published.failed,
        stats.failed,
        counter!("ssehub_deliveries_total", "outcome" => "failed"),
    );
    add_new(
        &published.timeouts,
        stats.timeout,
        counter!("ssehub_delivery_timeouts_total"),
    );
    add_new(
        &published.cut_off,
        stats.cut_off,
        counter!("ssehub_cutoffs_total"),
    );
    add_new(
        &published.stalled_resets,
        stats.stalled_resets,
        counter!("ssehub_stalled_resets_total"),
    );
}
