//! The seed's server example in Rust: an event stream at `GET /events`, the push API at
//! `POST /push`, and a broadcast every 5 seconds (`DEMO_BROADCAST=0` switches it off, as
//! benchmarks do: its events are not theirs). With `DATA_DIR` set, events are kept on disk there
//! and a reconnecting client gets what it missed, across restarts of the server too.
//!
//! Served by `ssehub_hub::server::Server`: event streams and plain pushes on its lean paths, any
//! other push request through an axum router on the same port.
//!
//! ```sh
//! cargo run -p ssehub-hub --example server            # PORT=8080 by default
//! DATA_DIR=/tmp/ssehub cargo run -p ssehub-hub --example server   # keeps history
//! BATCH_DELAY_MS=5 cargo run -p ssehub-hub --example server       # batches writes (5 ms at most)
//! DEMO_BROADCAST=0 cargo run -p ssehub-hub --example server       # no hello_world_N broadcasts
//! DATA_DIR=/tmp/ssehub SAVE_INTERVAL_MS=0 cargo run -p ssehub-hub --example server  # a save per batch
//! curl -N 'http://127.0.0.1:8080/events?uid=u001'
//! curl -X POST -H 'Content-Type: application/json' \
//!   -d '{"uids":["u001"],"events":[{"event":"message","data":"hello_world"}]}' \
//!   http://127.0.0.1:8080/push
//! # topics: a stream on orders/42 (repeat topic= for more), and a push to it
//! curl -N 'http://127.0.0.1:8080/events?uid=u002&topic=orders/42'
//! curl -X POST -H 'Content-Type: application/json' \
//!   -d '{"topics":["orders/42"],"events":[{"event":"order","data":"shipped"}]}' \
//!   http://127.0.0.1:8080/push
//! ```

use std::time::Duration;

use axum::Router;
use http::StatusCode;
use http::request::Parts;
use ssehub_hub::server::{PushRoute, Server};
use ssehub_hub::store::{RedbStore, Retention};
use ssehub_hub::{AllowedTopics, Event, Hub, Subscriber};

/// How much history the example keeps with `DATA_DIR`: a day, at most a million events
/// (`HISTORY_EVENTS` to change the count).
const RETENTION_EVENTS: u64 = 1_000_000;
const RETENTION_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Stands in for authentication. A real application takes the uid, and the topics it may
/// subscribe to, from a verified token or session cookie here (or answers
/// `Err(StatusCode::UNAUTHORIZED)`); trusting a query parameter and allowing every topic lets
/// anyone read anyone's events.
fn demo_auth(parts: &Parts) -> std::future::Ready<Result<Subscriber, StatusCode>> {
    let uid = parts
        .uri
        .query()
        .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("uid=")))
        .filter(|uid| !uid.is_empty())
        .map(str::to_owned)
        // The seed's demo picks a random uid between 100 and 198.
        .unwrap_or_else(|| (100 + ulid::Ulid::generate().random() % 99).to_string());
    // Nothing to await here; an application that looks a session up returns its future.
    std::future::ready(Ok(Subscriber::new(uid).allow_topics(AllowedTopics::any())))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ssehub_hub=debug".into()),
        )
        .init();

    let mut builder = Hub::builder();
    let data_dir = std::env::var_os("DATA_DIR");
    if let Some(dir) = &data_dir {
        let events = std::env::var("HISTORY_EVENTS")
            .ok()
            .and_then(|events| events.parse().ok())
            .unwrap_or(RETENTION_EVENTS);
        let retention = Retention::events(events).max_age(RETENTION_AGE);
        let store = RedbStore::open(dir, retention).map_err(std::io::Error::other)?;
        tracing::info!(path = %store.path().display(), "history on disk; resend on reconnect");
        builder = builder.store(store).resend(true);
        // A tuning knob: the least time between two saves (see `HubBuilder::save_interval`;
        // 0 saves each batch as soon as the one before is saved).
        if let Some(ms) = std::env::var("SAVE_INTERVAL_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
        {
            builder = builder.save_interval(Some(Duration::from_millis(ms)));
        }
    }
    // A tuning knob: hold each stream's write up to this long to batch events (see
    // `HubBuilder::batch_delay`); off unless set.
    if let Some(ms) = std::env::var("BATCH_DELAY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        builder = builder.batch_delay(Some(Duration::from_millis(ms)));
    }
    // Or batch only while a stream is busy (see `HubBuilder::batch_when_busy`).
    if let Some(ms) = std::env::var("BATCH_BUSY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        builder = builder.batch_when_busy(Some(Duration::from_millis(ms)));
    }
    let hub = builder.build().map_err(std::io::Error::other)?;
    let server = Server::builder(hub.clone(), demo_auth)
        .events_path("/events")
        // Open to anyone who can reach the port: fine for a demo on localhost, not beyond.
        // Plain pushes take the lean path; the router's route answers the others (chunked
        // bodies, CORS requests), the same way.
        .push_route(PushRoute::new("/push"))
        .fallback(Router::new().route("/push", ssehub_hub::axum::push(hub.clone())))
        .build()
        .map_err(std::io::Error::other)?;

    // The seed's simulated events: a broadcast every 5 seconds, unless switched off (a benchmark
    // counts every event it did not push as noise).
    let demo_broadcast = std::env::var("DEMO_BROADCAST").map_or(true, |value| {
        !matches!(value.trim(), "0" | "false" | "off" | "no")
    });
    if demo_broadcast {
        let ticker = hub.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(5));
            interval.tick().await;
            for i in 1.. {
                interval.tick().await;
                let event = Event::new(format!("hello_world_{i}")).with_event("message");
                if ticker.broadcast([event]).await.is_err() {
                    break; // the hub closed
                }
            }
        });
    }

    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    tracing::info!("listening on http://{}/events", listener.local_addr()?);

    let closing = hub.clone();
    server
        .serve(listener)
        .with_graceful_shutdown(async move {
            tokio::signal::ctrl_c().await.ok();
            if data_dir.is_some() {
                // Ends every stream without the `close` event: clients come back to the next
                // run and resume from the history.
                closing.close_for_restart().await;
            } else {
                // Ends every stream with the `close` event, so the server can finish.
                closing.close().await;
            }
        })
        .await;
    hub.print_push_stats();
    Ok(())
}
