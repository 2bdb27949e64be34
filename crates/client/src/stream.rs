//! [`EventStream`]: the `Stream` API, for async code.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::StreamExt;
use ssehub_wire::{Event, Utf8Bytes};

use crate::builder::Config;
use crate::connection::HttpClient;
use crate::engine::{Engine, LastEventId, Step};
use crate::{ClientBuilder, Error};

/// A reconnecting stream of events: `Ok(event)` for each dispatched event, reconnecting
/// underneath as the WHATWG spec says; a single `Err` when the client gives up (a non-retried
/// error or the retries running out), then the end. It also ends, without an error, on HTTP 204,
/// after a `close` event (which it yields first), or when the server ends a stream that is not to
/// be reconnected ([`ClientBuilder::max_retries`]`(0)`).
///
/// Errors it recovers from are not yielded; they are logged through `tracing` (use a
/// [`Client`](crate::Client) and its `on_error` to see them). Unlike `Client::connect`, a failed
/// first connection is retried too. Nothing runs in the background: the stream connects when
/// first polled, and dropping it closes the connection.
///
/// ```no_run
/// use futures_util::StreamExt;
///
/// # async fn run() -> Result<(), ssehub_client::Error> {
/// let mut events = ssehub_client::EventStream::new("http://127.0.0.1:8080/events")?;
/// while let Some(event) = events.next().await {
///     let event = event?;
///     println!("[{}] {}", event.event_type(), event.data);
/// }
/// # Ok(())
/// # }
/// ```
pub struct EventStream {
    inner: Pin<Box<dyn Stream<Item = Result<Event, Error>> + Send>>,
    last_event_id: Arc<LastEventId>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl EventStream {
    /// A stream from `url` with every option at its default; see [`ClientBuilder::build_stream`]
    /// for the rest.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] when `url` is not an absolute http(s) URL.
    ///
    /// ```
    /// let events = ssehub_client::EventStream::new("http://127.0.0.1:8080/events")?;
    /// # Ok::<(), ssehub_client::Error>(())
    /// ```
    pub fn new(url: impl Into<String>) -> Result<Self, Error> {
        ClientBuilder::new(url).build_stream()
    }

    /// The stream's last event id: what the next reconnection sends as `Last-Event-ID` (empty
    /// before any). It moves with every event, and with id-only blocks that dispatch nothing;
    /// save it to resume in a later process with [`ClientBuilder::last_event_id`].
    ///
    /// ```
    /// let events = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events")
    ///     .last_event_id("41")
    ///     .build_stream()?;
    /// assert_eq!(events.last_event_id(), "41");
    /// # Ok::<(), ssehub_client::Error>(())
    /// ```
    pub fn last_event_id(&self) -> Utf8Bytes {
        self.last_event_id.get()
    }

    pub(crate) fn from_parts(config: Arc<Config>, http: HttpClient) -> Self {
        let last_event_id = Arc::new(LastEventId::new(config.last_event_id.clone()));
        let engine = Engine::new(config, http, false, Arc::clone(&last_event_id));
        let inner = futures_util::stream::unfold(engine, |mut engine| async move {
            loop {
                match engine.next().await? {
                    Step::Event(event) => return Some((Ok(event), engine)),
                    Step::Open | Step::Retrying(_) | Step::Stop(Ok(_)) => {}
                    Step::Stop(Err(error)) => return Some((Err(error), engine)),
                }
            }
        });
        Self {
            // Fused: polling again after the end returns the end again instead of panicking.
            inner: Box::pin(inner.fuse()),
            last_event_id,
        }
    }
}

impl Stream for EventStream {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
