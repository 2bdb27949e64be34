//! `GET /stats/stream`: the hub's numbers as an event stream, one `stats` event a second, for
//! the live page's charts (or any dashboard).
//!
//! Each event's data is `/stats`'s JSON plus what rates need: `pushes` (the `POST /push`
//! requests accepted since the hub started) and `uptime_ms` (when the numbers were read), so a
//! reader divides the difference of two events by the time between them.
//!
//! Open to whoever may read `/stats` (anyone who can reach the hub: the numbers say how busy it
//! is, never who is online or what was pushed). Bounded: each stream is a connection of the
//! server (under `--max-connections`), at most [`MAX_STATS_STREAMS`] are open at once (past
//! them `503` with `Retry-After`), an event is made only when the connection can take it (a
//! reader that stops reading holds one small event, not a queue), and every stream ends when
//! the server shuts down, so it never holds a graceful shutdown open.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use ssehub_hub::Hub;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Stats streams open at once at most: a handful of dashboards, not one per visitor.
pub const MAX_STATS_STREAMS: usize = 32;

/// The time between two events.
const PERIOD: Duration = Duration::from_secs(1);

/// What a browser waits before reconnecting after the stream ends (a restart, say).
const RETRY_MS: u64 = 2_000;

/// What the stats streams share: the hub they read, the push counter, their slots and the
/// server's shutdown.
#[derive(Clone)]
pub(crate) struct StatsStreams {
    hub: Hub,
    pushes: Arc<AtomicU64>,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
    started: Instant,
}

impl StatsStreams {
    /// Streams of `hub`'s numbers (and of `pushes`, counted by the push route) that end when
    /// `shutdown` is cancelled.
    pub(crate) fn new(hub: Hub, pushes: Arc<AtomicU64>, shutdown: CancellationToken) -> Self {
        Self {
            hub,
            pushes,
            slots: Arc::new(Semaphore::new(MAX_STATS_STREAMS)),
            shutdown,
            started: Instant::now(),
        }
    }

    /// The numbers now, as one event's JSON.
    fn snapshot(&self) -> String {
        #[derive(serde::Serialize)]
        struct Snapshot {
            #[serde(flatten)]
            stats: crate::routes::Stats,
            pushes: u64,
            uptime_ms: u64,
        }
        let snapshot = Snapshot {
            stats: crate::routes::Stats::of(&self.hub),
            pushes: self.pushes.load(Ordering::Relaxed),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        serde_json::to_string(&snapshot).unwrap_or_default()
    }
}

/// The route: `GET /stats/stream`.
pub(crate) fn router(streams: StatsStreams) -> axum::Router {
    axum::Router::new()
        .route("/stats/stream", axum::routing::get(stream))
        .with_state(streams)
}

async fn stream(State(streams): State<StatsStreams>) -> Response {
    if streams.shutdown.is_cancelled() {
        return crate::routes::envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub is shutting down",
        );
    }
    let Ok(permit) = Arc::clone(&streams.slots).try_acquire_owned() else {
        let mut response = crate::routes::envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "{MAX_STATS_STREAMS} stats streams are open, the most this hub serves; try again later"
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        return response;
    };
    let mut tick = tokio::time::interval(PERIOD);
    // A reader that fell behind gets the numbers of now, not a burst of missed seconds.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let body = StatsBody {
        shutdown: Box::pin(streams.shutdown.clone().cancelled_owned()),
        streams,
        tick,
        opened: false,
        _permit: permit,
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::new(body),
    )
        .into_response()
}

/// One stats stream: an event each tick, made when polled (so when the connection can take
/// it), until shutdown.
struct StatsBody {
    streams: StatsStreams,
    tick: Interval,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    opened: bool,
    /// Its place among the [`MAX_STATS_STREAMS`], given back when the body is dropped.
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for StatsBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        if !this.opened {
            this.opened = true;
            let open = format!(":ok\nretry: {RETRY_MS}\n\n");
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(open)))));
        }
        ready!(this.tick.poll_tick(cx));
        let event = format!("event: stats\ndata: {}\n\n", this.streams.snapshot());
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
    }
}
