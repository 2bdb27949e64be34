//! What can go wrong when pushing or subscribing.

use std::fmt;

use ssehub_wire::EncodeError;

use crate::store::StoreError;

/// Why a push was refused. A refused push sent nothing to anyone.
///
/// ```
/// use ssehub_hub::{Event, Hub, PushError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let hub = Hub::new();
/// let err = hub.broadcast([Event::new("x").with_event("a\nb")]).await.unwrap_err();
/// assert!(matches!(err, PushError::InvalidEvent { index: 0, .. }));
/// assert_eq!(err.to_string(), "events[0].event: event type contains a line break (CR or LF); remove it, an event type is one line");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushError {
    /// The push had no events.
    NoEvents,
    /// A uid was the empty string (an empty uid list is the way to broadcast).
    EmptyUid {
        /// Its position in the uid list.
        index: usize,
    },
    /// An event cannot be sent without changing its meaning (a CR or LF in its type or id, or a
    /// NUL in its id).
    InvalidEvent {
        /// Its position in the event list.
        index: usize,
        /// What is wrong with it, including the field's name.
        source: EncodeError,
    },
    /// The hub is closed or closing.
    Closed,
    /// The hub has a store and saving the push failed.
    Store(StoreError),
    /// The hub has a store and it did not answer within the store timeout. The push was not
    /// sent, unless its batch was already being saved: then it is delivered once the store
    /// answers (retrying with the same explicit ids is safe: a reused id is refused).
    StoreTimeout {
        /// The configured store timeout.
        after: std::time::Duration,
    },
    /// The hub has a store and an event's id is already in it (or twice in one batch). Ids are
    /// where clients resume from, so each must be unique while the store holds it.
    DuplicateId {
        /// The event's position in the push.
        index: usize,
        /// The reused id.
        id: String,
    },
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoEvents => f.write_str("events: a push needs at least one event"),
            Self::EmptyUid { index } => write!(
                f,
                "uids[{index}]: a uid must not be empty; leave the uid list empty to broadcast"
            ),
            Self::InvalidEvent { index, source } => {
                write!(f, "events[{index}].{}: {source}", source.field())
            }
            Self::Closed => f.write_str("the hub is closed; no more pushes are accepted"),
            Self::Store(error) => write!(f, "nothing was sent: saving the push failed: {error}"),
            Self::StoreTimeout { after } => write!(
                f,
                "the event store did not answer within {after:?}; the push was not sent (retry later)"
            ),
            Self::DuplicateId { index, id } => write!(
                f,
                "events[{index}].id: {id:?} is already used by a stored event (or twice in one push); \
                 nothing was sent: give each event its own id, or none to have one assigned"
            ),
        }
    }
}

impl std::error::Error for PushError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidEvent { source, .. } => Some(source),
            Self::Store(source) => Some(source),
            _ => None,
        }
    }
}

/// Why a subscription was refused.
///
/// ```
/// use ssehub_hub::{Hub, SubscribeError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let hub = Hub::new();
/// hub.close().await;
/// let err = hub.subscribe("alice", Default::default()).unwrap_err();
/// assert_eq!(err, SubscribeError::Closed);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The uid was the empty string.
    EmptyUid,
    /// The hub was closed with [`Hub::close`](crate::Hub::close): clients should stop (the axum
    /// handler answers `204 No Content`, which stops spec-conformant clients).
    Closed,
    /// The hub was closed with [`Hub::close_for_restart`](crate::Hub::close_for_restart):
    /// clients should try again, possibly on another node (the axum handler answers with a stream
    /// that ends at once, so that clients reconnect after their reconnection time).
    Restarting,
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EmptyUid => "a subscriber's uid must not be empty",
            Self::Closed => "the hub is closed",
            Self::Restarting => "the hub is restarting; reconnect shortly",
        })
    }
}

impl std::error::Error for SubscribeError {}
