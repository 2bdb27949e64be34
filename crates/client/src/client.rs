//! [`Client`]: the callback API, like the Go client ssehub succeeds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use ssehub_wire::{DEFAULT_EVENT_TYPE, Event, Utf8Bytes};
use tokio::sync::{oneshot, watch};
use tokio::task::AbortHandle;

use crate::builder::Config;
use crate::connection::HttpClient;
use crate::engine::{Engine, LastEventId, Step};
use crate::{ClientBuilder, Error};

/// Why a client stopped for good without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// [`Client::disconnect`] was called, or the client was dropped.
    Disconnected,
    /// The server answered HTTP 204 No Content, which the spec defines as "stop reconnecting".
    NoContent,
    /// The server sent an event of type `close` (see
    /// [`ClientBuilder::stop_on_close_event`](crate::ClientBuilder::stop_on_close_event)).
    CloseEvent,
    /// The server ended the stream and reconnection is off
    /// ([`ClientBuilder::max_retries`](crate::ClientBuilder::max_retries)`(0)`).
    Ended,
}

type EventFn = Arc<dyn Fn(&Event) + Send + Sync>;
type OpenFn = Arc<dyn Fn() + Send + Sync>;
type ErrorFn = Arc<dyn Fn(&Error) + Send + Sync>;
type Outcome = Result<StopReason, Error>;

#[derive(Default)]
struct Handlers {
    events: HashMap<String, Vec<EventFn>>,
    open: Vec<OpenFn>,
    error: Vec<ErrorFn>,
}

struct Run {
    abort: AbortHandle,
    /// Set by `disconnect` so that events already read are not dispatched after it returns.
    stopping: Arc<AtomicBool>,
    done: watch::Receiver<Option<Outcome>>,
}

/// A reconnecting Server-Sent Events client driven by callbacks.
///
/// Register callbacks with [`on_event`](Self::on_event) and friends, then
/// [`connect`](Self::connect): a background task on the current tokio runtime reads the stream,
/// calls the callbacks, and reconnects as the WHATWG spec says, until
/// [`disconnect`](Self::disconnect), HTTP 204, a `close` event, a non-retried error, or the retries
/// running out; [`wait`](Self::wait) tells when and why. Dropping the client stops the task.
///
/// Callbacks run on that task, one at a time, in stream order: keep them short, or hand work to
/// another task.
///
/// ```no_run
/// use ssehub_client::Client;
///
/// #[tokio::main]
/// async fn main() -> Result<(), ssehub_client::Error> {
///     let client = Client::new("http://127.0.0.1:8080/events")?;
///     client.on_event("message", |event| println!("Received: {event:?}"));
///     client.connect().await?;
///     println!("SSE client started, press Ctrl+C to exit");
///     client.wait().await?;
///     Ok(())
/// }
/// ```
pub struct Client {
    config: Arc<Config>,
    last_event_id: Arc<LastEventId>,
    http: HttpClient,
    handlers: Arc<RwLock<Handlers>>,
    run: Mutex<Option<Run>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `url` with every option at its default; see [`ClientBuilder`] for the rest.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] when `url` is not an absolute http(s) URL.
    ///
    /// ```
    /// let client = ssehub_client::Client::new("http://127.0.0.1:8080/events")?;
    /// # Ok::<(), ssehub_client::Error>(())
    /// ```
    pub fn new(url: impl Into<String>) -> Result<Self, Error> {
        ClientBuilder::new(url).build()
    }

    pub(crate) fn from_parts(config: Arc<Config>, http: HttpClient) -> Self {
        Self {
            last_event_id: Arc::new(LastEventId::new(config.last_event_id.clone())),
            config,
            http,
            handlers: Arc::default(),
            run: Mutex::new(None),
        }
    }

    /// The last event id: what the next reconnection sends as `Last-Event-ID` (empty before
    /// any). It moves with every event, and with id-only blocks that dispatch nothing; it carries
    /// over to a later [`Client::connect`], and can be saved to resume in a later process with
    /// [`ClientBuilder::last_event_id`].
    ///
    /// ```
    /// let client = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events")
    ///     .last_event_id("41")
    ///     .build()?;
    /// assert_eq!(client.last_event_id(), "41");
    /// # Ok::<(), ssehub_client::Error>(())
    /// ```
    pub fn last_event_id(&self) -> Utf8Bytes {
        self.last_event_id.get()
    }

    /// Calls `callback` for every event of type `event_type` (`"message"` for events that name
    /// none). Several callbacks may share a type; they run in registration order. Takes effect
    /// at once, even while connected.
    ///
    /// ```
    /// let client = ssehub_client::Client::new("http://127.0.0.1:8080/events")?;
    /// client.on_event("update", |event| println!("{} (id {:?})", event.data, event.id));
    /// # Ok::<(), ssehub_client::Error>(())
    /// ```
    pub fn on_event(&self, event_type: &str, callback: impl Fn(&Event) + Send + Sync + 'static) {
        self.handlers()
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            .entry(event_type.to_owned())
            .or_default()
            .push(Arc::new(callback));
    }

    /// Shorthand for [`on_event`](Self::on_event)`("message", callback)`.
    ///
    /// ```
    /// let client = ssehub_client::Client::new("http://127.0.0.1:8080/events")?;
    /// client.on_message(|event| println!("{}", event.data));
    /// # Ok::<(), ssehub_client::Error>(())
    /// ```
    pub fn on_message(&self, callback: impl Fn(&Event) + Send + Sync + 'static) {
        self.on_event(DEFAULT_EVENT_TYPE, callback);
    }

    /// Calls `callback` every time a connection opens: the first one and each reconnection.
    ///
    /// ```
    /// let client = ssehub_client::Client::new("http://127.0.0.1:8080/events")?;
    /// client.on_open(|| eprintln!("connected"));
    /// # Ok::<(), ssehub_client::Error>(())
    /// ```
    pub fn on_open(&self, callback: impl Fn() + Send + Sync + 'static) {
        self.handlers()
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .push(Arc::new(callback));
    }

    /// Calls `callback` with every error: those the client recovers from by reconnecting, and
    /// the one it stops with (which [`wait`](Self::wait) also returns).
    ///
    /// ```
    /// let client = ssehub_client::Client::new("http://127.0.0.1:8080/events")?;
    /// client.on_error(|error| eprintln!("{error}"));
    /// # Ok::<(), ssehub_client::Error>(())
    /// ```
    pub fn on_error(&self, callback: impl Fn(&Error) + Send + Sync + 'static) {
        self.handlers()
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .error
            .push(Arc::new(callback));
    }

    fn handlers(&self) -> &RwLock<Handlers> {
        &self.handlers
    }

    /// Opens the stream and starts the background task that reads it and reconnects; must be
    /// called inside a tokio runtime. Returns once the first response arrived and was accepted.
    ///
    /// Like the Go client's `Connect`, a failed first connection is an error and nothing keeps
    /// running; later failures are retried. (An [`EventStream`](crate::EventStream) retries the
    /// first connection too.) An HTTP 204 answer is not an error: the client has stopped and
    /// [`wait`](Self::wait) returns [`StopReason::NoContent`]. A client that stopped can connect
    /// again; it resumes from its configured last event id.
    ///
    /// # Errors
    ///
    /// The first connection's error (see [`Error`]), or [`Error::AlreadyConnected`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ssehub_client::Error> {
    /// let client = ssehub_client::Client::new("http://127.0.0.1:8080/events")?;
    /// client.connect().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(&self) -> Result<(), Error> {
        let (opened_tx, opened_rx) = oneshot::channel();
        let mut done = {
            let mut run = self.run.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(current) = run.as_ref()
                && current.done.borrow().is_none()
            {
                return Err(Error::AlreadyConnected);
            }
            let (done_tx, done_rx) = watch::channel(None);
            let stopping = Arc::new(AtomicBool::new(false));
            let engine = Engine::new(
                self.config.clone(),
                self.http.clone(),
                true,
                Arc::clone(&self.last_event_id),
            );
            let task = Task {
                engine,
                opened: Some(opened_tx),
                handlers: self.handlers.clone(),
                stopping: stopping.clone(),
                publish: Publish {
                    tx: done_tx,
                    outcome: Some(Ok(StopReason::Disconnected)),
                },
            };
            let abort = tokio::spawn(task.run()).abort_handle();
            *run = Some(Run {
                abort,
                stopping,
                done: done_rx.clone(),
            });
            done_rx
        };
        if opened_rx.await.is_ok() {
            return Ok(());
        }
        // The task ended before a connection opened: its outcome says why.
        let outcome = finished(&mut done).await;
        match outcome {
            Some(Err(error)) => Err(error),
            Some(Ok(_)) | None => Ok(()),
        }
    }

    /// Stops the client: no callback starts after this returns, the connection is dropped and
    /// the background task ends at once (it is aborted, so this never blocks). Safe to call from
    /// a callback, more than once, or before `connect`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ssehub_client::Error> {
    /// let client = ssehub_client::Client::new("http://127.0.0.1:8080/events")?;
    /// client.connect().await?;
    /// client.disconnect();
    /// assert_eq!(client.wait().await?, ssehub_client::StopReason::Disconnected);
    /// # Ok(())
    /// # }
    /// ```
    pub fn disconnect(&self) {
        let run = self.run.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(run) = run.as_ref() {
            run.stopping.store(true, Ordering::SeqCst);
            run.abort.abort();
        }
    }

    /// Resolves when the client has stopped for good, after its task has ended and released the
    /// connection: `Ok` with the reason for a disconnect, HTTP 204, a `close` event or the end of
    /// a stream that is not to be reconnected; `Err` when it gave up. Resolves at once if the
    /// client never connected. Any number of tasks may wait.
    ///
    /// # Errors
    ///
    /// The error the client stopped with: a non-retried error, or [`Error::RetriesExhausted`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ssehub_client::Error> {
    /// let client = ssehub_client::Client::new("http://127.0.0.1:8080/events")?;
    /// client.connect().await?;
    /// let reason = client.wait().await?;
    /// println!("stopped: {reason:?}");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait(&self) -> Result<StopReason, Error> {
        let done = self
            .run
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|run| run.done.clone());
        let Some(mut done) = done else {
            return Ok(StopReason::Disconnected);
        };
        let outcome = finished(&mut done).await;
        outcome.unwrap_or(Ok(StopReason::Disconnected))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.disconnect();
    }
}

/// Publishes the task's outcome when dropped: at its normal end, or when the task is aborted
/// (then it is [`StopReason::Disconnected`]). Created first in the task so it is dropped last,
/// after the engine and its connection.
struct Publish {
    tx: watch::Sender<Option<Outcome>>,
    outcome: Option<Outcome>,
}

impl Drop for Publish {
    fn drop(&mut self) {
        self.tx.send_replace(self.outcome.take());
    }
}

/// The background task's state. Fields drop in declaration order, also when the task is aborted:
/// the engine (and its connection) and the callbacks first, the outcome last, so whoever `wait`
/// wakes finds them released.
struct Task {
    engine: Engine,
    opened: Option<oneshot::Sender<()>>,
    handlers: Arc<RwLock<Handlers>>,
    stopping: Arc<AtomicBool>,
    publish: Publish,
}

impl Task {
    async fn run(mut self) {
        while let Some(step) = self.engine.next().await {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            match step {
                Step::Open => {
                    if let Some(opened) = self.opened.take() {
                        let _ = opened.send(());
                    }
                    let callbacks = self
                        .handlers
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .open
                        .clone();
                    for callback in callbacks {
                        callback();
                    }
                }
                Step::Event(event) => {
                    // Cloned out of the lock so a callback may register more callbacks.
                    let callbacks = self
                        .handlers
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .events
                        .get(event.event_type())
                        .cloned()
                        .unwrap_or_default();
                    for callback in callbacks {
                        if self.stopping.load(Ordering::SeqCst) {
                            return;
                        }
                        callback(&event);
                    }
                }
                Step::Retrying(error) => report_error(&self.handlers, &error),
                Step::Stop(outcome) => {
                    if let Err(error) = &outcome {
                        report_error(&self.handlers, error);
                    }
                    self.publish.outcome = Some(outcome);
                    return;
                }
            }
        }
    }
}

fn report_error(handlers: &RwLock<Handlers>, error: &Error) {
    let callbacks = handlers
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .error
        .clone();
    for callback in callbacks {
        callback(error);
    }
}

/// Waits for the run's outcome; `None` if the run went away without one.
async fn finished(done: &mut watch::Receiver<Option<Outcome>>) -> Option<Outcome> {
    done.wait_for(Option::is_some)
        .await
        .map(|outcome| outcome.clone())
        .ok()
        .flatten()
}
