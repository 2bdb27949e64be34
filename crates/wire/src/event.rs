//! [`Event`]: one server-sent event, as written by a server or dispatched by a decoder.

use std::time::Duration;

use crate::Utf8Bytes;

/// The event type a client sees when an event names none.
pub const DEFAULT_EVENT_TYPE: &str = "message";

/// One server-sent event.
///
/// The same type is written by servers ([`Event::encode`]) and produced by the
/// [`Decoder`](crate::Decoder), so what goes in comes back out equal.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ssehub_wire::Event;
///
/// let event = Event::new("hello\nworld")
///     .with_id("42")
///     .with_event("greeting")
///     .with_retry(Duration::from_secs(3));
/// assert_eq!(event.event_type(), "greeting");
/// assert_eq!(
///     &event.encode()?[..],
///     b"id: 42\nevent: greeting\nretry: 3000\ndata: hello\ndata: world\n\n",
/// );
/// # Ok::<(), ssehub_wire::EncodeError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Event {
    /// The event id (`id:`), which a reconnecting client sends back as `Last-Event-ID`.
    ///
    /// When decoding, this is the stream's last event id at dispatch, which the spec carries over
    /// from earlier events; `None` when it is empty. When encoding, `Some("")` writes an empty `id:`
    /// that resets the client's last event id. Must not contain CR, LF or NUL.
    pub id: Option<Utf8Bytes>,
    /// The event type (`event:`); `None` means [`DEFAULT_EVENT_TYPE`]. Must not contain CR or LF.
    pub event: Option<Utf8Bytes>,
    /// The payload. Any line ending (CR, LF or CRLF) splits it into several `data:` lines; a decoder
    /// joins them back with LF.
    pub data: Utf8Bytes,
    /// The reconnection time to ask the client for (`retry:`), written in whole milliseconds.
    ///
    /// A decoder never sets this: it reports `retry:` as [`Frame::Retry`](crate::Frame::Retry) the
    /// moment it reads it, because the spec applies it even when no event follows.
    pub retry: Option<Duration>,
}

impl Event {
    /// An event of the default type carrying `data`.
    ///
    /// ```
    /// let event = ssehub_wire::Event::new("hello_world");
    /// assert_eq!(event.data, "hello_world");
    /// assert_eq!(event.event_type(), "message");
    /// ```
    pub fn new(data: impl Into<Utf8Bytes>) -> Self {
        Self {
            data: data.into(),
            ..Self::default()
        }
    }

    /// Sets the id.
    ///
    /// ```
    /// let event = ssehub_wire::Event::new("x").with_id("7");
    /// assert_eq!(event.id.as_deref(), Some("7"));
    /// ```
    #[must_use]
    pub fn with_id(mut self, id: impl Into<Utf8Bytes>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the event type.
    ///
    /// ```
    /// let event = ssehub_wire::Event::new("x").with_event("update");
    /// assert_eq!(event.event_type(), "update");
    /// ```
    #[must_use]
    pub fn with_event(mut self, event_type: impl Into<Utf8Bytes>) -> Self {
        self.event = Some(event_type.into());
        self
    }

    /// Sets the reconnection time to send with the event.
    ///
    /// ```
    /// use std::time::Duration;
    /// let event = ssehub_wire::Event::new("x").with_retry(Duration::from_millis(1500));
    /// assert_eq!(event.retry, Some(Duration::from_millis(1500)));
    /// ```
    #[must_use]
    pub fn with_retry(mut self, retry: Duration) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The event type a client dispatches this event as: the `event` field, or `"message"` when it
    /// is absent or empty.
    ///
    /// ```
    /// assert_eq!(ssehub_wire::Event::new("x").event_type(), "message");
    /// assert_eq!(ssehub_wire::Event::new("x").with_event("").event_type(), "message");
    /// ```
    pub fn event_type(&self) -> &str {
        match self.event.as_deref() {
            Some(event_type) if !event_type.is_empty() => event_type,
            _ => DEFAULT_EVENT_TYPE,
        }
    }
}
