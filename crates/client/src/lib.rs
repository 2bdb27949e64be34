//! A reconnecting Server-Sent Events client that follows the WHATWG HTML Living Standard
//! ("Server-sent events"), built on hyper. Two ways to consume a stream, over one engine:
//!
//! - [`Client`]: callbacks per event type ([`Client::on_event`]), [`Client::on_open`],
//!   [`Client::on_error`], then [`Client::connect`], [`Client::disconnect`] and
//!   [`Client::wait`], like the Go client ssehub succeeds;
//! - [`EventStream`]: a [`Stream`](futures_core::Stream) of events for async code.
//!
//! Both are configured by [`ClientBuilder`]. What they do, as the spec says and a little more:
//!
//! - Requests carry `Accept: text/event-stream`, `Cache-Control: no-cache`, your headers, and
//!   `Last-Event-ID` once there is a non-empty last event id (never an empty one).
//! - When a stream ends or breaks (end of body, network error, idle timeout), a half-read event is
//!   dropped and the client reconnects after the reconnection time: 2 s unless configured, and a
//!   server's `retry:` replaces it for good. Attempts that fail in a row double the wait up to a
//!   cap (30 s), with jitter. The count starts over only after a connection that dispatched an
//!   event or stayed open at least the cap: a stream that opens with a comment (as ssehub's hub
//!   does) or a `retry:` and then ends is a failure, so clients of a server that ends every
//!   stream at once back off instead of all coming back every 2 s.
//! - No byte for the idle timeout (60 s by default) and the connection is taken for dead.
//! - HTTP 204 stops the client for good, as does an event of type `close` (sent by ssehub's hub
//!   when it shuts down; can be turned off). Any other status but 200 (an error, or another 2xx
//!   such as 201 or 206: the spec opens a stream on 200 only), and a `Content-Type` that is not
//!   `text/event-stream`, are errors that stop the client unless
//!   [`ClientBuilder::reconnect_on_http_error`] is on.
//! - Redirects are followed (10 in a row at most); later reconnections go to where they led, as
//!   the spec says, and back to the configured URL if that fails. `Authorization`, `Cookie` and
//!   `Proxy-Authorization` are not sent to another origin.
//! - `https` works with the default `rustls` feature: rustls with the aws-lc-rs provider and the
//!   bundled Mozilla roots (webpki-roots), so it works alike on every machine;
//!   [`ClientBuilder::tls_config`] takes your own configuration. HTTP/2 is used when the server
//!   offers it over TLS.
//!
//! Events are [`Event`]s from `ssehub-wire`: `event.event_type()`, `event.data`, and `event.id`,
//! the last event id at dispatch (what a reconnection would send).
//!
//! # Examples
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use ssehub_client::{Client, ClientBuilder};
//!
//! # async fn run() -> Result<(), ssehub_client::Error> {
//! // Callbacks.
//! let client = Client::new("http://127.0.0.1:8080/events")?;
//! client.on_event("message", |event| println!("Received: {}", event.data));
//! client.connect().await?;
//! client.wait().await?;
//!
//! // A stream.
//! let mut events = ClientBuilder::new("http://127.0.0.1:8080/events")
//!     .header("Authorization", "Bearer secret")
//!     .build_stream()?;
//! while let Some(event) = events.next().await {
//!     let event = event?;
//!     println!("[{}] {}", event.event_type(), event.data);
//! }
//! # Ok(())
//! # }
//! ```

mod builder;
mod client;
mod connection;
mod engine;
mod error;
mod reconnect;
mod stream;

pub use builder::{
    ClientBuilder, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_RECONNECT_DELAY, DEFAULT_MAX_REDIRECTS,
    DEFAULT_RECONNECTION_TIME,
};
pub use client::{Client, StopReason};
pub use error::{BoxError, Error};
pub use ssehub_wire::{Event, Utf8Bytes};
pub use stream::EventStream;
