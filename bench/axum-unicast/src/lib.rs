//! A hand-written baseline of the comparison benchmark (`bench/run.py`): the uni-cast SSE hub a
//! competent Rust user writes in an afternoon from axum's documentation, to send each user's
//! events to that user's open connections.
//!
//! - `GET /events?uid=U` gives the connection its own bounded [`tokio::sync::mpsc`] channel
//!   (capacity [`CAPACITY`]), adds its sender to a map from uid to the senders of that uid's
//!   connections (one [`std::sync::Mutex`] around a [`HashMap`]), and streams what arrives as
//!   events through axum's [`Sse`], keep-alive comments on ([`KeepAlive::default`], every 15 s).
//!   When axum drops the stream (the client went away), a guard in it removes the sender from the
//!   map. A request without `uid` is refused (400).
//! - `POST /push` takes the ssehub push API's JSON, `{"uids":["c1","c2"],"events":[{"data":"..."}]}`
//!   (an event may also have `event` and `id`), and sends each event to every connection of each
//!   uid with [`Sender::try_send`]. It answers 200 with an empty body, whoever was connected.
//!
//! A connection whose channel is full (its client reads slower than events come) **loses that
//! event**: nothing counts or reports it, and the client is not told, as in a typical hand-written
//! hub. A push never waits for a slow client. The lock is held while the senders of the push's
//! uids are tried, never across an `.await`.
//!
//! Nothing here is tuned: it is the yardstick, not a competitor to improve.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use futures_util::Stream;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc::{self, Sender};

/// The capacity of each connection's channel, in events.
pub const CAPACITY: usize = 256;

/// One event of a push, as the ssehub push API spells it.
#[derive(Debug, Clone, Deserialize)]
pub struct PushEvent {
    /// The event's `data`.
    pub data: String,
    /// Its `event:` field, if any.
    #[serde(default)]
    pub event: Option<String>,
    /// Its `id:` field, if any.
    #[serde(default)]
    pub id: Option<String>,
}

/// The body of `POST /push`.
#[derive(Debug, Deserialize)]
pub struct Push {
    /// The users the events are for.
    pub uids: Vec<String>,
    /// The events, in order.
    pub events: Vec<PushEvent>,
}

/// The query of `GET /events`.
#[derive(Debug, Deserialize)]
struct Subscribe {
    uid: String,
}

/// Each uid's open connections: an id (to remove the right one) and the sender of its channel.
#[derive(Debug, Default)]
struct Hub {
    next_id: u64,
    connections: HashMap<String, Vec<(u64, Sender<PushEvent>)>>,
}

type Shared = Arc<Mutex<Hub>>;

/// The router: `GET /events?uid=U` and `POST /push` over a new, empty map.
pub fn app() -> Router {
    app_with(Shared::default())
}

fn app_with(hub: Shared) -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/push", post(push))
        .with_state(hub)
}

/// Serves [`app`] on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, app()).await
}

/// Removes its connection from the map when the stream that owns it is dropped.
struct Registration {
    hub: Shared,
    uid: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut hub = self.hub.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(senders) = hub.connections.get_mut(&self.uid) {
            senders.retain(|(id, _)| *id != self.id);
            if senders.is_empty() {
                hub.connections.remove(&self.uid);
            }
        }
    }
}

/// `GET /events?uid=U`: a stream of the events pushed to `U` from now on.
async fn events(
    State(hub): State<Shared>,
    Query(Subscribe { uid }): Query<Subscribe>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, StatusCode> {
    if uid.is_empty() {
        return Err(StatusCode::BAD_REQUEST);
    }
    let (sender, receiver) = mpsc::channel(CAPACITY);
    let id = {
        let mut guard = hub.lock().unwrap_or_else(PoisonError::into_inner);
        let id = guard.next_id;
        guard.next_id += 1;
        guard
            .connections
            .entry(uid.clone())
            .or_default()
            .push((id, sender));
        id
    };
    let registration = Registration { hub, uid, id };
    let stream = futures_util::stream::unfold(
        (receiver, registration),
        |(mut receiver, registration)| async move {
            let pushed = receiver.recv().await?;
            let mut event = Event::default().data(pushed.data);
            if let Some(name) = pushed.event {
                event = event.event(name);
            }
            if let Some(id) = pushed.id {
                event = event.id(id);
            }
            Some((Ok(event), (receiver, registration)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `POST /push`: each event to every connection of each uid; a full channel drops it.
async fn push(State(hub): State<Shared>, Json(push): Json<Push>) {
    let hub = hub.lock().unwrap_or_else(PoisonError::into_inner);
    for uid in &push.uids {
        let Some(senders) = hub.connections.get(uid) else {
            continue;
        };
        for (_, sender) in senders {
            for event in &push.events {
                // Full (a slow client) or closed (going away): this event is lost for it.
                let _ = sender.try_send(event.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    fn open(hub: &Shared) -> usize {
        let hub = hub.lock().unwrap_or_else(PoisonError::into_inner);
        hub.connections.values().map(Vec::len).sum()
    }

    #[tokio::test]
    async fn a_closed_connection_leaves_the_map() {
        let hub = Shared::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(axum::serve(listener, app_with(hub.clone())).into_future());

        let mut streams = Vec::new();
        for uid in ["c1", "c1", "c2"] {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let request = format!("GET /events?uid={uid} HTTP/1.1\r\nHost: test\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            // The response head: the connection is in the map.
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            streams.push(stream);
        }
        assert_eq!(open(&hub), 3);
        drop(streams.remove(0));
        drop(streams.remove(1));
        // The server notices each close and drops its stream, and with it the registration.
        for _ in 0..500 {
            if open(&hub) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let hub = hub.lock().unwrap();
        assert_eq!(hub.connections.len(), 1, "c2 left, its entry too");
        assert_eq!(hub.connections.get("c1").map(Vec::len), Some(1));
    }
}
