//! One client's event stream: the bytes to write to its socket, from any server framework.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use http_body::{Body, Frame};
use tokio::time::{Duration, Instant, Sleep};

use crate::config::Batching;
use crate::hub::Shared;
use crate::outbox::{Connection, Drained};
use crate::resend::{Replay, Step};
use crate::store::ListQuery;

/// What a (re)connecting client asks for: its topics, and where to resume, from the query string
/// or the headers.
///
/// The hub keeps the resume position for resending missed events from a store; with the `axum`
/// feature this is also an extractor (`?topic=` repeatable; headers win over the query for the
/// resume position, since a reconnecting browser sends the newer `Last-Event-ID` header but keeps
/// its original URL). Topics come from the request as asked: authorize them
/// ([`Subscriber::authorize`](crate::Subscriber::authorize)) before subscribing; the HTTP
/// front ends do.
///
/// ```
/// let options = ssehub_hub::SubscribeOptions::default()
///     .last_event_id("01J9Z3")
///     .topic("orders/42");
/// assert_eq!(options.last_event_id.as_deref(), Some("01J9Z3"));
/// assert_eq!(options.topics, ["orders/42"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// The id of the last event the client saw (`Last-Event-ID` header or `last_event_id` query).
    pub last_event_id: Option<String>,
    /// Only resend events of this type (`Event-Type` header or `event_type` query).
    pub event_type: Option<String>,
    /// The topics to receive, besides what is pushed to the uid and broadcasts (`topic` query,
    /// repeatable). Duplicates count once.
    pub topics: Vec<String>,
    /// When the stream ends by itself: the expiry of the credential it was opened with (a
    /// token's `exp`), so that a revoked or lapsed token stops receiving. The client reconnects
    /// and must then present a fresh credential. Set by the HTTP front ends from
    /// [`Subscriber::expires_at`](crate::Subscriber::expires_at).
    pub ends_at: Option<SystemTime>,
}

impl SubscribeOptions {
    /// Sets the last event id the client saw.
    ///
    /// ```
    /// let options = ssehub_hub::SubscribeOptions::default().last_event_id("42");
    /// ```
    #[must_use]
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = Some(id.into());
        self
    }

    /// Sets the event type to resend.
    ///
    /// ```
    /// let options = ssehub_hub::SubscribeOptions::default().event_type("order");
    /// ```
    #[must_use]
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Ends the stream at `at` (see [`SubscribeOptions::ends_at`]).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    ///
    /// let expiry = SystemTime::now() + Duration::from_secs(3600);
    /// let options = ssehub_hub::SubscribeOptions::default().end_at(expiry);
    /// assert_eq!(options.ends_at, Some(expiry));
    /// ```
    #[must_use]
    pub fn end_at(mut self, at: SystemTime) -> Self {
        self.ends_at = Some(at);
        self
    }

    /// Adds a topic to receive.
    ///
    /// ```
    /// let options = ssehub_hub::SubscribeOptions::default().topic("prices").topic("news");
    /// assert_eq!(options.topics, ["prices", "news"]);
    /// ```
    #[must_use]
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Adds these topics to receive.
    ///
    /// ```
    /// let options = ssehub_hub::SubscribeOptions::default().topics(["orders/1", "orders/2"]);
    /// assert_eq!(options.topics.len(), 2);
    /// ```
    #[must_use]
    pub fn topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.topics.extend(topics.into_iter().map(Into::into));
        self
    }
}

/// A live subscription: the SSE bytes for one client connection, as a [`Stream`] of chunks and
/// as an [`http_body::Body`], so any server can write it out. Dropping it disconnects the client
/// from the hub.
///
/// The first chunk is a comment (plus `retry:` if configured) so the client sees the stream open
/// at once; after that, every chunk holds all events queued since the last one, and a heartbeat
/// comment follows each idle interval. The stream ends when the hub closes or, under
/// [`SlowClientPolicy::Disconnect`](crate::SlowClientPolicy::Disconnect), when the client falls
/// behind.
///
/// ```
/// use futures_util::StreamExt;
/// use ssehub_hub::{Event, Hub, SubscribeOptions};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let hub = Hub::new();
/// let mut stream = hub.subscribe("alice", SubscribeOptions::default()).unwrap();
/// assert_eq!(stream.next().await.unwrap(), ":ok\n"); // the stream is open
///
/// hub.push(["alice"], [Event::new("hi").with_id("1")]).await.unwrap();
/// assert_eq!(stream.next().await.unwrap(), "id: 1\ndata: hi\n\n");
/// # }
/// ```
pub struct Subscription {
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    options: SubscribeOptions,
    opening: Option<Bytes>,
    /// Missed events being resent from the store, before anything live. Boxed: most streams
    /// never resend, and every idle connection would carry its size.
    replay: Option<Box<Replay>>,
    /// The heartbeat and the end of the stream, when either is set.
    clock: Option<Clock>,
    /// With batching: when a queued event is written.
    batch: Option<Box<Batch>>,
    ended: bool,
}

/// Holds a stream's write back for a moment, so that events close together share it.
struct Batch {
    batching: Batching,
    /// Set while an event waits; made on first use, reset for every batch.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    /// Under `WhenBusy`: when the stream last wrote with nothing left queued (`None` after a
    /// write that left a backlog: the rest goes at once).
    last_drain: Option<Instant>,
}

/// One timer for the heartbeat and the stream's end (a credential's expiry): an idle stream
/// holds one timer whichever it waits for.
struct Clock {
    heartbeat: Option<Duration>,
    ends_at: Option<Instant>,
    /// Made on the first poll, so that subscribing needs no runtime (only serving does).
    timer: Option<Pin<Box<Sleep>>>,
    last_write: Instant,
}

impl Clock {
    /// The next time the timer has something to do: the heartbeat or the end, whichever comes
    /// first. A clock has at least one of them.
    fn next(&self) -> Instant {
        let beat = self.heartbeat.map(|interval| self.last_write + interval);
        match (beat, self.ends_at) {
            (Some(beat), Some(end)) => beat.min(end),
            (Some(at), None) | (None, Some(at)) => at,
            (None, None) => self.last_write + Duration::from_secs(86_400),
        }
    }
}

impl Subscription {
    pub(crate) fn new(
        shared: Arc<Shared>,
        connection: Arc<Connection>,
        mut options: SubscribeOptions,
    ) -> Self {
        // The connection holds the names, shared with the topic index: no second copy.
        options.topics = Vec::new();
        let config = &shared.config;
        let replay = match (&shared.sequencer, options.last_event_id.as_deref()) {
            (Some(sequencer), Some(last_event_id))
                if config.resend && !last_event_id.is_empty() =>
            {
                // The topics the connection has now, whatever it had when it missed the events.
                let topics = connection.topics.iter().map(|topic| topic.to_string());
                let mut query =
                    ListQuery::new(&*connection.uid, 0, config.resend_page_size).topics(topics);
                query.event_type = options.event_type.clone().filter(|t| !t.is_empty());
                Some(Box::new(Replay::new(
                    Arc::clone(sequencer.store()),
                    query,
                    last_event_id.to_owned(),
                    config.store_timeout,
                    Arc::clone(&shared.replay_turns),
                )))
            }
            _ => None,
        };
        let mut opening = BytesMut::from(&b":ok\n"[..]);
        if let Some(retry) = config.client_retry {
            opening.extend_from_slice(&ssehub_wire::encode_retry(retry));
        }
        let batch = config.batching.map(|batching| {
            Box::new(Batch {
                batching,
                timer: None,
                waiting: false,
                last_drain: None,
            })
        });
        let now = Instant::now();
        let ends_at = options.ends_at.and_then(|at| {
            // A wall-clock expiry as a point on the runtime's clock; one already past ends
            // the stream at its first poll, one too far to represent ends nothing.
            now.checked_add(
                at.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
            )
        });
        let clock = (config.heartbeat.is_some() || ends_at.is_some()).then_some(Clock {
            heartbeat: config.heartbeat,
            ends_at,
            timer: None,
            last_write: now,
        });
        Self {
            shared,
            connection,
            options,
            opening: Some(opening.freeze()),
            replay,
            clock,
            batch,
            ended: false,
        }
    }

    /// The uid this stream belongs to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = ssehub_hub::Hub::new();
    /// let stream = hub.subscribe("alice", Default::default()).unwrap();
    /// assert_eq!(stream.uid(), "alice");
    /// # }
    /// ```
    pub fn uid(&self) -> &str {
        &self.connection.uid
    }

    /// Where the client asked to resume. Its topics are not kept here (their names live once,
    /// shared, in the hub's topic index): see [`Subscription::topics`].
    ///
    /// ```
    /// use ssehub_hub::SubscribeOptions;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = ssehub_hub::Hub::new();
    /// let stream = hub.subscribe("alice", SubscribeOptions::default().last_event_id("7")).unwrap();
    /// assert_eq!(stream.options().last_event_id.as_deref(), Some("7"));
    /// # }
    /// ```
    pub fn options(&self) -> &SubscribeOptions {
        &self.options
    }

    /// The topics this stream receives: sorted, without duplicates.
    ///
    /// ```
    /// use ssehub_hub::SubscribeOptions;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = ssehub_hub::Hub::new();
    /// let options = SubscribeOptions::default().topics(["prices", "news", "prices"]);
    /// let stream = hub.subscribe("alice", options).unwrap();
    /// assert_eq!(stream.topics().collect::<Vec<_>>(), ["news", "prices"]);
    /// # }
    /// ```
    pub fn topics(&self) -> impl ExactSizeIterator<Item = &str> {
        self.connection.topics.iter().map(|topic| &**topic)
    }

    /// The hub this stream belongs to.
    #[cfg(feature = "server")]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn connection_id(&self) -> u64 {
        self.connection.id
    }

    /// The next bytes to write, `None` once the stream has ended.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(opening) = self.opening.take() {
            return Poll::Ready(Some(opening));
        }
        if let Some(end) = self.clock.as_ref().and_then(|clock| clock.ends_at)
            && end <= Instant::now()
        {
            // Checked before draining too, so that a busy stream also ends on time.
            self.ended = true;
            return Poll::Ready(None);
        }
        if let Some(replay) = &mut self.replay {
            match ready!(replay.poll_step(cx)) {
                Step::Chunk(chunk) => {
                    self.wrote();
                    return Poll::Ready(Some(chunk));
                }
                Step::Done { cut } => {
                    self.replay = None;
                    if cut > 0 {
                        let event_type =
                            self.options.event_type.as_deref().filter(|t| !t.is_empty());
                        let delivered = self.connection.skip_through(cut, event_type);
                        self.shared.counters.add_success(delivered as u64);
                    }
                }
                Step::Failed(error) => {
                    // Ending makes the client come back with the same Last-Event-ID later.
                    tracing::warn!(uid = %self.connection.uid, %error, "resend failed; ending the stream");
                    self.ended = true;
                    return Poll::Ready(None);
                }
            }
        }
        let drained = match &mut self.batch {
            Some(batch) => batch.poll_drain(&self.connection, cx),
            None => self.connection.poll_drain(cx),
        };
        match drained {
            Poll::Ready(Some(drained)) => {
                // Set only with metrics on: off, this is the one branch it costs a chunk.
                #[cfg(feature = "metrics")]
                if let Some(pushed) = drained.pushed {
                    crate::metrics::record_push_to_write(&self.shared.published, pushed);
                }
                if drained.from_overflow > 0 {
                    self.shared
                        .counters
                        .add_success(drained.from_overflow as u64);
                }
                self.wrote();
                return Poll::Ready(Some(drained.chunk));
            }
            Poll::Ready(None) => {
                self.ended = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        let Some(clock) = &mut self.clock else {
            return Poll::Pending;
        };
        let next = clock.next();
        let mut timer = clock
            .timer
            .take()
            .unwrap_or_else(|| Box::pin(tokio::time::sleep_until(next)));
        let polled = clock.poll_timer(&mut timer, cx);
        clock.timer = Some(timer);
        match polled {
            Poll::Ready(Tick::End) => {
                // The credential lapsed: end cleanly; the client reconnects with a fresh one.
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Tick::Heartbeat) => Poll::Ready(Some(ssehub_wire::heartbeat())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What the clock's timer is due for.
enum Tick {
    Heartbeat,
    End,
}

impl Clock {
    /// Waits for the next heartbeat or the end, whichever is due first.
    fn poll_timer(&mut self, timer: &mut Pin<Box<Sleep>>, cx: &mut Context<'_>) -> Poll<Tick> {
        loop {
            ready!(timer.as_mut().poll(cx));
            let now = Instant::now();
            if self.ends_at.is_some_and(|end| end <= now) {
                return Poll::Ready(Tick::End);
            }
            let beat = self
                .heartbeat
                .is_some_and(|interval| self.last_write + interval <= now);
            if beat {
                self.last_write = now;
            }
            timer.as_mut().reset(self.next());
            if beat {
                return Poll::Ready(Tick::Heartbeat);
            }
            // Something was written since the timer was set: wait out the rest.
        }
    }
}

impl Batch {
    /// Drains the connection when its batching says: `Fixed`, once the delay since its first
    /// queued event has passed; `WhenBusy`, at once if the stream was quiet, else once the
    /// window since its last write has passed.
    fn poll_drain(
        &mut self,
        connection: &Connection,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Drained>> {
        if !self.waiting {
            ready!(connection.poll_ready(cx));
            let now = Instant::now();
            let deadline = match self.batching {
                Batching::Fixed(delay) => Some(now + delay),
                Batching::WhenBusy(window) => self
                    .last_drain
                    .map(|last| last + window)
                    .filter(|&until| until > now),
            };
            if let Some(deadline) = deadline {
                match &mut self.timer {
                    Some(timer) => timer.as_mut().reset(deadline),
                    None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
                self.waiting = true;
            }
        }
        if self.waiting
            && let Some(timer) = &mut self.timer
        {
            ready!(timer.as_mut().poll(cx));
        }
        self.waiting = false;
        let drained = ready!(connection.poll_drain(cx));
        if let Batching::WhenBusy(_) = self.batching {
            self.last_drain = match &drained {
                Some(drained) if !drained.more => Some(Instant::now()),
                _ => None,
            };
        }
        Poll::Ready(drained)
    }
}

impl Subscription {
    /// Notes a write, which postpones the next heartbeat.
    fn wrote(&mut self) {
        if let Some(clock) = &mut self.clock {
            // Moving a field instead of re-arming the timer keeps a busy stream cheap.
            clock.last_write = Instant::now();
        }
    }
}

impl Stream for Subscription {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.get_mut().poll_chunk(cx)
    }
}

impl Body for Subscription {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .poll_chunk(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.connection.abandon();
        self.shared.registry.remove(&self.connection);
        tracing::debug!(uid = %self.connection.uid, connection = self.connection.id, "disconnected");
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("uid", &self.connection.uid)
            .field("connection", &self.connection.id)
            .field("options", &self.options)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use crate::{Event, Hub};

    #[test]
    fn subscribing_needs_no_runtime_and_serving_starts_the_heartbeat() {
        let hub = Hub::builder()
            .heartbeat(Some(std::time::Duration::from_millis(10)))
            .build()
            .unwrap();
        let mut stream = hub.subscribe("alice", Default::default()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            assert_eq!(stream.next().await.unwrap(), ":ok\n");
            assert_eq!(stream.next().await.unwrap(), ":\n"); // after 10 ms of (paused) time
            hub.broadcast([Event::new("x").with_id("1")]).await.unwrap();
            assert_eq!(stream.next().await.unwrap(), "id: 1\ndata: x\n\n");
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_ends_at_its_credentials_expiry_idle_or_busy() {
        use std::time::{Duration, SystemTime};

        let hub = Hub::builder()
            .heartbeat(Some(Duration::from_secs(25)))
            .build()
            .unwrap();
        let start = tokio::time::Instant::now();
        let expiry = SystemTime::now() + Duration::from_secs(60);
        let options = crate::SubscribeOptions::default().end_at(expiry);
        let mut idle = hub.subscribe("alice", options.clone()).unwrap();
        assert_eq!(idle.next().await.unwrap(), ":ok\n");
        assert_eq!(idle.next().await.unwrap(), ":\n");
        assert_eq!(idle.next().await.unwrap(), ":\n");
        assert_eq!(idle.next().await, None, "ended at the expiry");
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(59) && elapsed <= Duration::from_secs(61),
            "{elapsed:?}"
        );
        drop(idle);
        assert_eq!(hub.stats().connections, 0);

        // A stream that always has something to write ends on time too.
        let start = tokio::time::Instant::now();
        let expiry = SystemTime::now() + Duration::from_secs(10);
        let mut busy = hub
            .subscribe("bob", crate::SubscribeOptions::default().end_at(expiry))
            .unwrap();
        assert_eq!(busy.next().await.unwrap(), ":ok\n");
        let mut received = 0;
        loop {
            assert!(received < 100, "still streaming long after the expiry");
            hub.push(["bob"], [Event::new("x")]).await.unwrap();
            tokio::time::advance(Duration::from_millis(500)).await;
            match busy.next().await {
                Some(_) => received += 1,
                None => break,
            }
        }
        assert!((19..=21).contains(&received), "{received}");
        assert!(start.elapsed() <= Duration::from_secs(11));

        // An end too far for the clock ends nothing (and does not panic).
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4_000_000_000);
        let mut forever = hub
            .subscribe("dave", crate::SubscribeOptions::default().end_at(far))
            .unwrap();
        assert_eq!(forever.next().await.unwrap(), ":ok\n");
        // Without an end, no clock is kept when there is no heartbeat either.
        let quiet = Hub::builder().heartbeat(None).build().unwrap();
        let stream = quiet.subscribe("carol", Default::default()).unwrap();
        assert!(stream.clock.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_delay_puts_the_events_of_the_delay_in_one_write() {
        use futures_util::FutureExt;
        use std::time::Duration;

        let hub = Hub::builder()
            .heartbeat(None)
            .batch_delay(Some(Duration::from_millis(5)))
            .build()
            .unwrap();
        let mut stream = hub.subscribe("alice", Default::default()).unwrap();
        assert_eq!(stream.next().await.unwrap(), ":ok\n");

        let start = tokio::time::Instant::now();
        hub.broadcast([Event::new("1").with_id("1")]).await.unwrap();
        assert!(stream.next().now_or_never().is_none(), "held back");
        tokio::time::sleep(Duration::from_millis(2)).await;
        hub.broadcast([Event::new("2").with_id("2")]).await.unwrap();
        assert!(stream.next().now_or_never().is_none(), "still held back");
        let chunk = stream.next().await.unwrap();
        assert_eq!(chunk, "id: 1\ndata: 1\n\nid: 2\ndata: 2\n\n");
        assert_eq!(start.elapsed(), Duration::from_millis(5));

        // The next event starts a new delay; closing does not wait for more than it.
        hub.broadcast([Event::new("3").with_id("3")]).await.unwrap();
        let closing = tokio::spawn({
            let hub = hub.clone();
            async move { hub.close().await }
        });
        let chunk = stream.next().await.unwrap();
        assert!(chunk.starts_with(b"id: 3\ndata: 3\n\n"), "{chunk:?}");
        let mut rest = chunk.slice(b"id: 3\ndata: 3\n\n".len()..).to_vec();
        while let Some(more) = stream.next().await {
            rest.extend_from_slice(&more);
        }
        assert_eq!(rest, b"event: close\ndata: closed\n\n");
        drop(stream);
        closing.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn batching_when_busy_writes_a_quiet_streams_event_at_once_and_a_busy_ones_together() {
        use futures_util::FutureExt;
        use std::time::Duration;

        let window = Duration::from_millis(5);
        let hub = Hub::builder()
            .heartbeat(None)
            .batch_when_busy(Some(window))
            .build()
            .unwrap();
        let mut stream = hub.subscribe("alice", Default::default()).unwrap();
        assert_eq!(stream.next().await.unwrap(), ":ok\n");
        let event = |n: usize| Event::new(n.to_string()).with_id(n.to_string());
        let frame = |n: usize| format!("id: {n}\ndata: {n}\n\n");

        // Quiet: written at once, no time passes.
        let start = tokio::time::Instant::now();
        hub.broadcast([event(1)]).await.unwrap();
        assert_eq!(stream.next().now_or_never().unwrap().unwrap(), frame(1));
        // Busy: within the window of that write, held until the window's end, with the next.
        hub.broadcast([event(2)]).await.unwrap();
        assert!(stream.next().now_or_never().is_none(), "held back");
        tokio::time::sleep(Duration::from_millis(3)).await;
        hub.broadcast([event(3)]).await.unwrap();
        assert!(stream.next().now_or_never().is_none(), "still held back");
        let chunk = stream.next().await.unwrap();
        assert_eq!(chunk, format!("{}{}", frame(2), frame(3)));
        assert_eq!(start.elapsed(), window);
        // Quiet again after a window without a write: at once.
        tokio::time::sleep(window).await;
        hub.broadcast([event(4)]).await.unwrap();
        assert_eq!(stream.next().now_or_never().unwrap().unwrap(), frame(4));

        // A backlog of more than one write's worth goes out without waiting between writes.
        tokio::time::sleep(window).await;
        let big = "x".repeat(40 * 1024);
        let backlog: Vec<Event> = (0..4).map(|_| Event::new(big.clone())).collect();
        hub.broadcast(backlog).await.unwrap();
        let before = tokio::time::Instant::now();
        let (mut events, mut writes) = (0, 0);
        while events < 4 {
            let chunk = stream.next().now_or_never().expect("no wait").unwrap();
            events += chunk.windows(6).filter(|w| w == b"data: ").count();
            writes += 1;
        }
        assert!(writes > 1, "more than one write's worth");
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}
