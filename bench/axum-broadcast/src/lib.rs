//! The hand-written baseline of the comparison benchmark (`bench/run.py`): the SSE hub every Rust
//! user would write first, from axum's documentation and examples.
//!
//! - `GET /events` subscribes a new receiver to one [`tokio::sync::broadcast`] channel (capacity
//!   [`CAPACITY`]) and streams each message as an event through axum's [`Sse`], keep-alive comments
//!   on ([`KeepAlive::default`], every 15 s).
//! - `POST /push` sends the raw request body, as is, to the channel: it becomes the `data` of one
//!   event for every subscriber. It answers 200 with an empty body (even with no subscriber).
//!
//! A receiver that falls more than [`CAPACITY`] messages behind skips the ones it lost and carries
//! on, as typical code does; nothing reports the loss to the client.
//!
//! Nothing here is tuned: it is the yardstick, not a competitor to improve.

use std::convert::Infallible;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use futures_util::Stream;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

/// The capacity of the broadcast channel, in messages.
pub const CAPACITY: usize = 1024;

/// The router: `GET /events` and `POST /push` over one new broadcast channel.
pub fn app() -> Router {
    let (sender, _) = broadcast::channel::<String>(CAPACITY);
    Router::new()
        .route("/events", get(events))
        .route("/push", post(push))
        .with_state(sender)
}

/// Serves [`app`] on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, app()).await
}

/// `GET /events`: a stream of every message pushed from now on.
async fn events(
    State(sender): State<broadcast::Sender<String>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = sender.subscribe();
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(data) => return Some((Ok(Event::default().data(data)), receiver)),
                // Fell behind: skip what was lost and carry on.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `POST /push`: the body becomes one event's data for every subscriber.
async fn push(State(sender): State<broadcast::Sender<String>>, body: String) {
    // An error only means that nobody is subscribed.
    let _ = sender.send(body);
}
