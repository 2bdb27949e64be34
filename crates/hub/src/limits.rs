//! The push limits: how long an id or event type, how many events or uids, how much data.
//!
//! One checker, [`PushLimits::check`], runs at the top of [`Hub::push`](crate::Hub::push) and
//! [`Hub::broadcast`](crate::Hub::broadcast), before anything is encoded, saved or sent, so Rust
//! callers and the HTTP push API (which calls them) are refused the same way, with the same
//! [`PushError`].

use std::fmt;

use ssehub_wire::Event;

use crate::PushError;
use crate::store::Recipients;

/// The default longest event id, in bytes. A client sends its last event id back in the
/// `Last-Event-ID` header on every reconnection, so a long id makes every reconnection of every
/// client carry it (a 20 KiB id is refused by most servers' header limits, the lean server's 16 KiB
/// included, and the client never reconnects). ULIDs (the ids the hub assigns) are 26 bytes,
/// UUIDs 36; 256 leaves room for composite ids.
pub const DEFAULT_MAX_ID_LEN: usize = 256;
/// The default longest event type, in bytes. Types are names (`order.created`) a client listens
/// for, written with every event to every connection; 64 bytes is ample for a name.
pub const DEFAULT_MAX_EVENT_TYPE_LEN: usize = 64;
/// The default most events in one push. A push is encoded, saved (one store transaction) and
/// offered to each connection as a whole, so its size bounds one push's work and latency for
/// everyone else; 1,000 small events still fit axum's default 2 MiB body. A connection takes at
/// most its buffer plus as many waiting (256 + 256 by default), so pushes much larger than the
/// connection buffer fail in part for every connection anyway.
pub const DEFAULT_MAX_EVENTS_PER_PUSH: usize = 1_000;
/// The default most uids in one push. A uni-cast push takes one registry lock per uid and, with a
/// store, every event's record keeps its recipient list (10,000 uids of 16 bytes: 160 KB per
/// event saved); to reach more users, broadcast or push in several parts.
pub const DEFAULT_MAX_UIDS_PER_PUSH: usize = 10_000;
/// The default most bytes of one event's data (1 MiB). Every connection's queue may hold it, and
/// ssehub clients refuse events over 4 MiB (`Decoder::max_event_len`), reconnecting for ever; 1 MiB
/// stays well under both that and axum's 2 MiB default body limit. Send bigger payloads as a
/// reference the client fetches.
pub const DEFAULT_MAX_DATA_LEN: usize = 1 << 20;

/// The field of a push a [`PushError`] is about, shown as its path in the push API
/// (`uids`, `events`, `events[3].id`, ...).
///
/// ```
/// use ssehub_hub::PushField;
///
/// assert_eq!(PushField::Uids.to_string(), "uids");
/// assert_eq!(PushField::Id(3).to_string(), "events[3].id");
/// assert_eq!(PushField::EventType(0).to_string(), "events[0].event");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PushField {
    /// The uid list.
    Uids,
    /// The topic list.
    Topics,
    /// The event list.
    Events,
    /// The id of the event at this position.
    Id(usize),
    /// The type of the event at this position.
    EventType(usize),
    /// The data of the event at this position.
    Data(usize),
}

impl fmt::Display for PushField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uids => f.write_str("uids"),
            Self::Topics => f.write_str("topics"),
            Self::Events => f.write_str("events"),
            Self::Id(index) => write!(f, "events[{index}].id"),
            Self::EventType(index) => write!(f, "events[{index}].event"),
            Self::Data(index) => write!(f, "events[{index}].data"),
        }
    }
}

/// The hub's push limits, set with the `HubBuilder::max_*` methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PushLimits {
    pub(crate) max_id_len: usize,
    pub(crate) max_event_type_len: usize,
    pub(crate) max_events: usize,
    pub(crate) max_uids: usize,
    pub(crate) max_topics: usize,
    pub(crate) max_topic_len: usize,
    pub(crate) max_data_len: usize,
}

impl Default for PushLimits {
    fn default() -> Self {
        Self {
            max_id_len: DEFAULT_MAX_ID_LEN,
            max_event_type_len: DEFAULT_MAX_EVENT_TYPE_LEN,
            max_events: DEFAULT_MAX_EVENTS_PER_PUSH,
            max_uids: DEFAULT_MAX_UIDS_PER_PUSH,
            max_topics: crate::topic::DEFAULT_MAX_TOPICS_PER_PUSH,
            max_topic_len: crate::topic::DEFAULT_MAX_TOPIC_LEN,
            max_data_len: DEFAULT_MAX_DATA_LEN,
        }
    }
}

impl PushLimits {
    /// Refuses a push over any limit: the counts first, then each event in order, so the error
    /// names the first offending field. `uids` is the list as given (before duplicates are
    /// removed); a broadcast passes zero.
    /// Checks a push: its recipients (counts, an empty uid, each topic's name) and events.
    pub(crate) fn check(&self, recipients: &Recipients, events: &[Event]) -> Result<(), PushError> {
        if let Recipients::Listed(listed) = recipients {
            self.check_counts(listed.uids().len(), listed.topics().len(), events.len())?;
            // Sorted: an empty uid comes first.
            if listed.uids().first().is_some_and(|uid| uid.is_empty()) {
                return Err(PushError::EmptyUid { index: 0 });
            }
            self.check_topics(listed.topics())?;
        } else {
            self.check_counts(0, 0, events.len())?;
        }
        for (index, event) in events.iter().enumerate() {
            let id_len = event.id.as_ref().map_or(0, |id| id.len());
            let type_len = event
                .event
                .as_ref()
                .map_or(0, |event_type| event_type.len());
            if let Some(error) = over(PushField::Id(index), self.max_id_len, id_len).or_else(|| {
                over(
                    PushField::EventType(index),
                    self.max_event_type_len,
                    type_len,
                )
            }) {
                return Err(error);
            }
            if event.data.len() > self.max_data_len {
                return Err(PushError::TooLarge {
                    field: PushField::Data(index),
                    limit: self.max_data_len,
                    actual: event.data.len(),
                });
            }
        }
        Ok(())
    }

    /// The count limits alone, which the push API also checks before building any event.
    /// Each topic's name, naming the first bad one by its index.
    pub(crate) fn check_topics<S: AsRef<str>>(&self, topics: &[S]) -> Result<(), PushError> {
        for (index, topic) in topics.iter().enumerate() {
            crate::topic::check_topic(topic.as_ref(), self.max_topic_len)
                .map_err(|error| PushError::InvalidTopic { index, error })?;
        }
        Ok(())
    }

    pub(crate) fn check_counts(
        &self,
        uids: usize,
        topics: usize,
        events: usize,
    ) -> Result<(), PushError> {
        match over(PushField::Uids, self.max_uids, uids)
            .or_else(|| over(PushField::Topics, self.max_topics, topics))
            .or_else(|| over(PushField::Events, self.max_events, events))
        {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// `LimitExceeded` if `actual` is over `limit`.
fn over(field: PushField, limit: usize, actual: usize) -> Option<PushError> {
    (actual > limit).then_some(PushError::LimitExceeded {
        field,
        limit,
        actual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PushLimits {
        PushLimits {
            max_id_len: 4,
            max_event_type_len: 3,
            max_events: 2,
            max_uids: 1,
            max_topics: 2,
            max_topic_len: 3,
            max_data_len: 5,
        }
    }

    fn uids(n: usize) -> Recipients {
        Recipients::uids((0..n).map(|i| format!("u{i}")))
    }

    #[test]
    fn topics_are_counted_and_each_name_checked() {
        let event = [Event::new("x")];
        assert_eq!(
            limits().check(&Recipients::topics(["a", "b"]), &event),
            Ok(())
        );
        assert_eq!(
            limits().check(&Recipients::topics(["a", "b", "c"]), &event),
            Err(PushError::LimitExceeded {
                field: PushField::Topics,
                limit: 2,
                actual: 3
            })
        );
        assert_eq!(
            limits().check(&Recipients::topics(["abcd"]), &event),
            Err(PushError::InvalidTopic {
                index: 0,
                error: crate::TopicError::TooLong {
                    limit: 3,
                    actual: 4
                }
            })
        );
        assert_eq!(
            limits().check(&Recipients::topics(["a", "b\r"]), &event),
            Err(PushError::InvalidTopic {
                index: 1,
                error: crate::TopicError::ControlCharacter { at: 1 }
            })
        );
        assert_eq!(
            limits().check(&Recipients::uids([""]), &event),
            Err(PushError::EmptyUid { index: 0 })
        );
    }

    #[test]
    fn at_the_limit_passes_one_over_is_refused_naming_the_field() {
        let at = Event::new("12345").with_id("1234").with_event("abc");
        assert_eq!(limits().check(&uids(1), &[at.clone(), at.clone()]), Ok(()));
        let over = |field, limit, actual| {
            Err(PushError::LimitExceeded {
                field,
                limit,
                actual,
            })
        };
        assert_eq!(
            limits().check(&uids(2), std::slice::from_ref(&at)),
            over(PushField::Uids, 1, 2)
        );
        assert_eq!(
            limits().check(&Recipients::All, &[at.clone(), at.clone(), at.clone()]),
            over(PushField::Events, 2, 3)
        );
        assert_eq!(
            limits().check(&Recipients::All, &[at.clone(), at.clone().with_id("12345")]),
            over(PushField::Id(1), 4, 5)
        );
        assert_eq!(
            limits().check(&Recipients::All, &[at.clone().with_event("abcd")]),
            over(PushField::EventType(0), 3, 4)
        );
        assert_eq!(
            limits().check(&Recipients::All, &[at, Event::new("123456")]),
            Err(PushError::TooLarge {
                field: PushField::Data(1),
                limit: 5,
                actual: 6
            })
        );
    }

    #[test]
    fn lengths_are_bytes_not_characters() {
        // "é" is two bytes in UTF-8.
        assert!(
            limits()
                .check(&Recipients::All, &[Event::new("ééé")])
                .is_err()
        );
        assert!(
            limits()
                .check(&Recipients::All, &[Event::new("x").with_id("éé")])
                .is_ok()
        );
        assert!(
            limits()
                .check(&Recipients::All, &[Event::new("x").with_id("ééé")])
                .is_err()
        );
    }
}
