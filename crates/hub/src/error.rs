//! What can go wrong when pushing or subscribing.

use std::fmt;

use ssehub_wire::EncodeError;

use crate::store::StoreError;
use crate::{PushField, TopicError};

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
    /// [`Hub::push`](crate::Hub::push) was given no uids (or [`Hub::push_to`](crate::Hub::push_to)
    /// no uid and no topic). An empty list never means "everyone":
    /// [`Hub::broadcast`](crate::Hub::broadcast) is the one way to reach every connection, so a
    /// list that came out empty by mistake reaches nobody instead of everybody.
    NoRecipients,
    /// A uid was the empty string.
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
    /// A count or a length over one of the hub's limits (`HubBuilder::max_uids_per_push`,
    /// `max_events_per_push`, `max_id_len`, `max_event_type_len`). The push API answers `400`.
    LimitExceeded {
        /// What is over the limit.
        field: PushField,
        /// The limit: a count for [`PushField::Uids`] and [`PushField::Events`], else bytes.
        limit: usize,
        /// What the push had.
        actual: usize,
    },
    /// An event's data over the hub's limit (`HubBuilder::max_data_len`). The push API answers
    /// `413`.
    TooLarge {
        /// The event's data ([`PushField::Data`]).
        field: PushField,
        /// The limit, in bytes.
        limit: usize,
        /// The data's size, in bytes.
        actual: usize,
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
    /// A topic of the push is not a valid topic name ([`check_topic`](crate::check_topic));
    /// nothing was sent.
    InvalidTopic {
        /// Its position in the push's topics (sorted, without duplicates, for
        /// [`Hub::push_to`](crate::Hub::push_to); as sent, for the push API).
        index: usize,
        /// What is wrong with it.
        error: TopicError,
    },
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoEvents => f.write_str("events: a push needs at least one event"),
            Self::NoRecipients => f.write_str(
                "uids: empty, so the push would reach nobody; name at least one uid or topic, \
                 or call Hub::broadcast to reach everyone",
            ),
            Self::EmptyUid { index } => {
                write!(f, "uids[{index}]: a uid must not be empty; remove it")
            }
            Self::LimitExceeded {
                field,
                limit,
                actual,
            } => match field {
                PushField::Uids => write!(
                    f,
                    "uids: {actual} uids, over the limit of {limit} per push; \
                     push in several parts, or broadcast"
                ),
                PushField::Topics => write!(
                    f,
                    "topics: {actual} topics, over the limit of {limit} per push; \
                     push in several parts"
                ),
                PushField::Events => write!(
                    f,
                    "events: {actual} events, over the limit of {limit} per push; \
                     push them in several parts"
                ),
                PushField::Id(_) => write!(
                    f,
                    "{field}: {actual} bytes, over the limit of {limit}; use a shorter id \
                     (clients send it back in a header on every reconnection)"
                ),
                PushField::EventType(_) => write!(
                    f,
                    "{field}: {actual} bytes, over the limit of {limit}; use a shorter event type"
                ),
                PushField::Data(_) => {
                    write!(f, "{field}: {actual} bytes, over the limit of {limit}")
                }
            },
            Self::TooLarge {
                field,
                limit,
                actual,
            } => write!(
                f,
                "{field}: {actual} bytes, over the limit of {limit} bytes per event; \
                 send less, or a reference the client fetches"
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
            Self::InvalidTopic { index, error } => write!(f, "topics[{index}]: {error}"),
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The hub already serves [`HubBuilder::max_streams`](crate::HubBuilder::max_streams)
    /// streams. The HTTP front ends answer with a stream that ends at once after a `retry:` of
    /// the hub's over-capacity wait, so that clients come back later.
    AtCapacity {
        /// The configured cap.
        limit: usize,
    },
    /// This uid already has
    /// [`HubBuilder::max_streams_per_uid`](crate::HubBuilder::max_streams_per_uid) streams;
    /// answered as [`AtCapacity`](Self::AtCapacity).
    UidAtCapacity {
        /// The configured cap.
        limit: usize,
    },
    /// A topic asked for is not a valid name (the HTTP front ends answer `400`).
    InvalidTopic {
        /// The topic as asked for.
        topic: String,
        /// What is wrong with it.
        error: TopicError,
    },
    /// More topics than
    /// [`HubBuilder::max_topics_per_connection`](crate::HubBuilder::max_topics_per_connection)
    /// (the HTTP front ends answer `400`).
    TooManyTopics {
        /// The configured limit.
        limit: usize,
        /// How many distinct topics were asked for.
        actual: usize,
    },
    /// The subscriber may not subscribe to this topic ([`Subscriber::authorize`]; the HTTP front
    /// ends answer `403`).
    ///
    /// [`Subscriber::authorize`]: crate::Subscriber::authorize
    TopicForbidden {
        /// The first topic asked for that is not allowed.
        topic: String,
    },
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyUid => f.write_str("a subscriber's uid must not be empty"),
            Self::Closed => f.write_str("the hub is closed"),
            Self::Restarting => f.write_str("the hub is restarting; reconnect shortly"),
            Self::AtCapacity { limit } => write!(
                f,
                "the hub serves its maximum of {limit} streams; try again later \
                 (raise HubBuilder::max_streams, or the open-file limit it derives from)"
            ),
            Self::UidAtCapacity { limit } => write!(
                f,
                "this uid already has its maximum of {limit} streams; close one \
                 (or raise HubBuilder::max_streams_per_uid)"
            ),
            Self::InvalidTopic { topic, error } => write!(f, "topic {topic:?}: {error}"),
            Self::TooManyTopics { limit, actual } => write!(
                f,
                "topic: {actual} topics, over the limit of {limit} per connection; \
                 subscribe to fewer, or to a broader topic"
            ),
            Self::TopicForbidden { topic } => {
                write!(f, "topic {topic:?}: not allowed for this subscriber")
            }
        }
    }
}

impl std::error::Error for SubscribeError {}
