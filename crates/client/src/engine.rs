//! The reconnecting engine both APIs share: connect, read, decode, and decide what happens when a
//! connection ends, following the WHATWG spec's EventSource processing model.

use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use ssehub_wire::{Decoder, Event, Frame, Utf8Bytes};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::time::Instant;

use crate::builder::Config;
use crate::connection::{self, HttpClient, Opened, Target};
use crate::reconnect::Backoff;
use crate::{Error, StopReason};

/// What the engine reports to the API driving it.
#[derive(Debug)]
pub(crate) enum Step {
    /// A connection opened (the spec's "announce the connection").
    Open,
    /// An event was dispatched.
    Event(Event),
    /// A connection failed or broke; the engine reconnects after a delay.
    Retrying(Error),
    /// The engine stopped for good; every later call returns `None`.
    Stop(Result<StopReason, Error>),
}

enum State {
    Connect,
    Wait(Instant),
    Read {
        body: Incoming,
        url: String,
        progress: Progress,
    },
    /// The body ended: decode what complete lines remain, then end the connection.
    Drain {
        url: String,
        progress: Progress,
    },
    /// Report this, then stop.
    Stopping(Result<StopReason, Error>),
    Stopped,
}

/// What an open connection has done, which decides what its end means.
#[derive(Debug, Clone, Copy)]
struct Progress {
    opened_at: Instant,
    /// Anything arrived (an event, a comment, a `retry:`): the server at this URL answers with a
    /// stream, so a redirect that led here is kept.
    received: bool,
    /// An event was dispatched.
    dispatched: bool,
}

impl Progress {
    fn new() -> Self {
        Self {
            opened_at: Instant::now(),
            received: false,
            dispatched: false,
        }
    }

    fn saw(&mut self, frame: &Frame) {
        self.received = true;
        self.dispatched |= matches!(frame, Frame::Event(_));
    }
}

/// The stream's last event id, shared with the API that owns the engine so users can read it
/// (an id-only block moves it without dispatching anything).
#[derive(Debug, Default)]
pub(crate) struct LastEventId(Mutex<Utf8Bytes>);

impl LastEventId {
    pub(crate) fn new(id: Utf8Bytes) -> Self {
        Self(Mutex::new(id))
    }

    pub(crate) fn get(&self) -> Utf8Bytes {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_if_changed(&self, id: &Utf8Bytes) {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if *current != *id {
            *current = id.clone();
        }
    }
}

pub(crate) struct Engine {
    config: Arc<Config>,
    last_event_id: Arc<LastEventId>,
    http: HttpClient,
    decoder: Decoder,
    buf: BytesMut,
    backoff: Backoff,
    target: Target,
    /// Reconnection attempts in a row since a connection last made progress (see
    /// [`Engine::connection_ended`]).
    attempt: u32,
    /// Whether the first connection must succeed ([`Client::connect`](crate::Client::connect)'s
    /// contract) rather than be retried.
    first_must_open: bool,
    opened_once: bool,
    state: State,
}

impl Engine {
    /// An engine resuming from `last_event_id`, which it keeps up to date.
    pub(crate) fn new(
        config: Arc<Config>,
        http: HttpClient,
        first_must_open: bool,
        last_event_id: Arc<LastEventId>,
    ) -> Self {
        let mut decoder = Decoder::new()
            .max_line_len(config.max_line_len)
            .max_event_len(config.max_event_len);
        decoder.set_last_event_id(last_event_id.get());
        let backoff = Backoff::new(
            config.reconnection_time,
            config.max_reconnect_delay,
            config.jitter,
        );
        let target = Target::initial(&config);
        Self {
            config,
            last_event_id,
            http,
            decoder,
            buf: BytesMut::new(),
            backoff,
            target,
            attempt: 0,
            first_must_open,
            opened_once: false,
            state: State::Connect,
        }
    }

    /// The next step. Cancel-safe between steps: every await point leaves `self` consistent.
    pub(crate) async fn next(&mut self) -> Option<Step> {
        loop {
            match &mut self.state {
                State::Stopped => return None,
                State::Stopping(_) => {
                    let State::Stopping(outcome) =
                        std::mem::replace(&mut self.state, State::Stopped)
                    else {
                        unreachable!("matched above")
                    };
                    return Some(Step::Stop(outcome));
                }
                State::Wait(deadline) => {
                    tokio::time::sleep_until(*deadline).await;
                    self.state = State::Connect;
                }
                State::Connect => {
                    if let Some(step) = self.connect().await {
                        return Some(step);
                    }
                }
                State::Read {
                    body,
                    url,
                    progress,
                } => {
                    match self.decoder.decode(&mut self.buf) {
                        Ok(Some(frame)) => {
                            progress.saw(&frame);
                            if let Some(step) = self.frame(frame) {
                                return Some(step);
                            }
                            continue;
                        }
                        Ok(None) => self
                            .last_event_id
                            .set_if_changed(self.decoder.last_event_id()),
                        Err(source) => {
                            let url = url.clone();
                            return Some(self.stop(Err(Error::Decode { url, source })));
                        }
                    }
                    let read = match self.config.idle_timeout {
                        Some(idle) => tokio::time::timeout(idle, body.frame())
                            .await
                            .map_err(|_| idle),
                        None => Ok(body.frame().await),
                    };
                    match read {
                        Ok(Some(Ok(frame))) => {
                            if let Ok(data) = frame.into_data() {
                                self.buf.extend_from_slice(&data);
                            }
                        }
                        Ok(None) => {
                            let (url, progress) = (std::mem::take(url), *progress);
                            self.state = State::Drain { url, progress };
                        }
                        Ok(Some(Err(err))) => {
                            let (url, progress) = (url.clone(), *progress);
                            let error = Error::Body {
                                url,
                                source: Arc::new(err),
                            };
                            if let Some(step) = self.connection_ended(Some(progress), Some(error)) {
                                return Some(step);
                            }
                        }
                        Err(idle) => {
                            let (url, progress) = (url.clone(), *progress);
                            let error = Error::IdleTimeout { url, idle };
                            if let Some(step) = self.connection_ended(Some(progress), Some(error)) {
                                return Some(step);
                            }
                        }
                    }
                }
                State::Drain { url, progress } => match self.decoder.decode_eof(&mut self.buf) {
                    Ok(Some(frame)) => {
                        progress.saw(&frame);
                        if let Some(step) = self.frame(frame) {
                            return Some(step);
                        }
                    }
                    Ok(None) => {
                        let progress = *progress;
                        if let Some(step) = self.connection_ended(Some(progress), None) {
                            return Some(step);
                        }
                    }
                    Err(source) => {
                        let url = url.clone();
                        return Some(self.stop(Err(Error::Decode { url, source })));
                    }
                },
            }
        }
    }

    async fn connect(&mut self) -> Option<Step> {
        let last_event_id = self.decoder.last_event_id().clone();
        let url = self.target.url.to_string();
        tracing::debug!(%url, last_event_id = %last_event_id, "connecting");
        match connection::open(&self.http, &self.config, &self.target, &last_event_id).await {
            Ok(Opened::Stream { body, target }) => {
                let url = target.url.to_string();
                tracing::info!(%url, "connected");
                // The spec reconnects to where redirects led (whatwg/html#503).
                self.target = target;
                self.opened_once = true;
                self.state = State::Read {
                    body,
                    url,
                    progress: Progress::new(),
                };
                Some(Step::Open)
            }
            Ok(Opened::NoContent) => {
                tracing::info!(%url, "HTTP 204: the server asks the client to stop");
                Some(self.stop(Ok(StopReason::NoContent)))
            }
            Err(error) => {
                if self.first_must_open && !self.opened_once {
                    return Some(self.stop(Err(error)));
                }
                self.connection_ended(None, Some(error))
            }
        }
    }

    fn frame(&mut self, frame: Frame) -> Option<Step> {
        match frame {
            Frame::Event(event) => {
                self.last_event_id
                    .set_if_changed(self.decoder.last_event_id());
                if self.config.stop_on_close_event && event.event_type() == "close" {
                    tracing::info!("close event: the server asks the client to stop");
                    self.state = State::Stopping(Ok(StopReason::CloseEvent));
                }
                Some(Step::Event(event))
            }
            Frame::Retry(time) => {
                tracing::debug!(?time, "server set the reconnection time");
                self.backoff.reconnection_time = time;
                None
            }
            Frame::Comment(_) => None,
        }
    }

    /// The connection is over, cleanly (`error` is `None`) or not: stop, or schedule the next
    /// attempt. `progress` is `None` when no stream opened.
    ///
    /// The backoff starts over only after a connection that made progress: it dispatched an
    /// event, or it stayed open at least the backoff's cap. Anything less (the opening comment
    /// every ssehub stream starts with, a heartbeat, a `retry:`) does not count, or a server that
    /// opens and then ends every stream would have its clients back every reconnection time, all
    /// together. A connection open for the cap already spaced its attempts as far apart as the
    /// backoff would.
    fn connection_ended(
        &mut self,
        progress: Option<Progress>,
        error: Option<Error>,
    ) -> Option<Step> {
        // A half-read event is dropped; the last event id stays.
        self.decoder.reset();
        self.last_event_id
            .set_if_changed(self.decoder.last_event_id());
        self.buf.clear();
        let url = self.target.url.to_string();
        let cap = self.backoff.cap();
        if progress.is_some_and(|p| p.dispatched || p.opened_at.elapsed() >= cap) {
            self.attempt = 0;
        }
        if !progress.is_some_and(|p| p.received) {
            // A redirect target that fails is not tried forever: start over from the configured URL.
            self.target = Target::initial(&self.config);
        }
        let clean = error.is_none();
        let error = error.unwrap_or(Error::Closed { url });
        let retried = error.is_retried()
            || (self.config.reconnect_on_http_error
                && matches!(error, Error::Http { .. } | Error::ContentType { .. }));
        if !retried {
            return Some(self.stop(Err(error)));
        }
        if let Some(max) = self.config.max_retries
            && self.attempt >= max
        {
            let outcome = match (max, clean) {
                (0, true) => Ok(StopReason::Ended),
                (0, false) => Err(error),
                _ => Err(Error::RetriesExhausted {
                    attempts: max,
                    last: Box::new(error),
                }),
            };
            return Some(self.stop(outcome));
        }
        self.attempt += 1;
        let mut delay = self.backoff.delay(self.attempt);
        if let Error::Http {
            retry_after: Some(retry_after),
            ..
        } = &error
        {
            delay = delay.max(*retry_after);
        }
        self.state = State::Wait(Instant::now() + delay);
        if clean {
            tracing::info!(?delay, attempt = self.attempt, "stream ended; reconnecting");
            None
        } else {
            tracing::warn!(%error, ?delay, attempt = self.attempt, "reconnecting");
            Some(Step::Retrying(error))
        }
    }

    fn stop(&mut self, outcome: Result<StopReason, Error>) -> Step {
        match &outcome {
            Ok(reason) => tracing::debug!(?reason, "stopped"),
            Err(error) => tracing::debug!(%error, "stopped"),
        }
        self.state = State::Stopped;
        Step::Stop(outcome)
    }
}
