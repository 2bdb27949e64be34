//! The ssehub server side: a Server-Sent Events hub.
//!
//! A [`Hub`] holds every live client connection under the uid your application gave it (any
//! number per uid: two browser tabs both receive). [`Hub::push`] sends events to some uids,
//! [`Hub::broadcast`] to everyone. Each event is validated and encoded once; every connection's
//! bounded queue shares the same bytes, and a [`SlowClientPolicy`] decides what happens when a
//! client cannot keep up, so memory stays bounded whatever clients do.
//!
//! Serve streams with [`server::Server`] (feature `server`, on by default: a lean HTTP/1.1 path
//! for the streams, an axum `Router` for everything else), with the [`axum`](mod@crate::axum)
//! handlers inside your own axum app (feature `axum`), or from any server: a [`Subscription`] is
//! both a `Stream` of byte chunks and an [`http_body::Body`].
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use ssehub_hub::{Event, Hub, axum::SubscriberId};
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let hub = Hub::new();
//! let app = Router::new()
//!     // Your auth middleware puts `SubscriberId` into the request's extensions.
//!     .route("/events", ssehub_hub::axum::events(hub.clone()))
//!     .route("/push", ssehub_hub::axum::push(hub.clone()));
//!
//! hub.push(["u001"], [Event::new("hello")]).await.ok();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

pub mod admission;
#[cfg(feature = "axum")]
pub mod axum;
mod config;
mod delivery;
mod error;
mod hub;
mod limits;
#[cfg(feature = "metrics")]
pub mod metrics;
mod outbox;
pub mod push_api;
mod registry;
mod resend;
mod sequencer;
#[cfg(feature = "server")]
pub mod server;
mod shared_log;
mod slow_client;
mod stats;
pub mod store;
mod subscription;
mod topic;

pub use config::{
    BuildError, DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECTION_BUFFER, DEFAULT_HEARTBEAT,
    DEFAULT_MAX_QUEUED_BYTES, DEFAULT_RESEND_PAGE_SIZE, DEFAULT_SAVE_INTERVAL,
    DEFAULT_STORE_TIMEOUT, HubBuilder,
};
pub use error::{PushError, SubscribeError};
pub use hub::{CLOSE_EVENT_TYPE, Hub, PushReceipt};
pub use limits::{
    DEFAULT_MAX_DATA_LEN, DEFAULT_MAX_EVENT_TYPE_LEN, DEFAULT_MAX_EVENTS_PER_PUSH,
    DEFAULT_MAX_ID_LEN, DEFAULT_MAX_UIDS_PER_PUSH, PushField,
};
pub use resend::HISTORY_GAP_EVENT_TYPE;
pub use slow_client::SlowClientPolicy;
pub use ssehub_wire::{Event, Utf8Bytes};
pub use stats::HubStats;
pub use store::Recipients;
pub use subscription::{SubscribeOptions, Subscription};
pub use topic::{
    AllowedTopics, DEFAULT_MAX_TOPIC_LEN, DEFAULT_MAX_TOPICS_PER_CONNECTION,
    DEFAULT_MAX_TOPICS_PER_PUSH, Subscriber, TopicError, check_topic,
};
