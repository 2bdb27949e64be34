//! Topics: what makes a topic name valid, and which topics a subscriber may ask for.
//!
//! A connection receives what is pushed to its uid, to any of its topics, and broadcasts. The
//! names are the application's (`orders/42`, `prices`); the hub only checks that they are
//! short, printable and not empty, the same rules for subscribing and pushing.

use std::fmt;

/// The default of [`HubBuilder::max_topic_len`](crate::HubBuilder::max_topic_len), in bytes.
pub const DEFAULT_MAX_TOPIC_LEN: usize = 256;
/// The default of
/// [`HubBuilder::max_topics_per_connection`](crate::HubBuilder::max_topics_per_connection).
pub const DEFAULT_MAX_TOPICS_PER_CONNECTION: usize = 64;
/// The default of [`HubBuilder::max_topics_per_push`](crate::HubBuilder::max_topics_per_push).
pub const DEFAULT_MAX_TOPICS_PER_PUSH: usize = 10_000;

/// Why a topic name was refused.
///
/// ```
/// use ssehub_hub::TopicError;
///
/// assert_eq!(ssehub_hub::check_topic("orders/42", 256), Ok(()));
/// assert_eq!(ssehub_hub::check_topic("", 256), Err(TopicError::Empty));
/// assert_eq!(
///     ssehub_hub::check_topic("a\nb", 256),
///     Err(TopicError::ControlCharacter { at: 1 })
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// The empty string.
    Empty,
    /// Longer than the hub's limit.
    TooLong {
        /// The limit, in bytes.
        limit: usize,
        /// The topic's length, in bytes.
        actual: usize,
    },
    /// A control character (U+0000–U+001F, U+007F–U+009F): it would end a header line or a log
    /// line, or hide in one.
    ControlCharacter {
        /// Its byte offset.
        at: usize,
    },
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("a topic must not be empty"),
            Self::TooLong { limit, actual } => {
                write!(f, "{actual} bytes, over the limit of {limit} per topic")
            }
            Self::ControlCharacter { at } => {
                write!(
                    f,
                    "a control character at byte {at}; topics are printable text"
                )
            }
        }
    }
}

impl std::error::Error for TopicError {}

/// Checks a topic name: not empty, at most `max_len` bytes, no control characters.
///
/// ```
/// assert!(ssehub_hub::check_topic("prices", 256).is_ok());
/// assert!(ssehub_hub::check_topic("prices", 3).is_err());
/// ```
///
/// # Errors
///
/// [`TopicError`] saying what is wrong.
pub fn check_topic(topic: &str, max_len: usize) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > max_len {
        return Err(TopicError::TooLong {
            limit: max_len,
            actual: topic.len(),
        });
    }
    match topic.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, _)) => Err(TopicError::ControlCharacter { at }),
        None => Ok(()),
    }
}

/// Which topics a subscriber may subscribe to: exact names, and prefix patterns that end in `*`
/// (`orders/*` allows `orders/42` and `orders/42/lines`, not `orders`; `*` alone allows every
/// topic). None by default: a subscriber known only by its uid gets no topic.
///
/// ```
/// use ssehub_hub::AllowedTopics;
///
/// let allowed = AllowedTopics::new(["prices", "orders/*"]);
/// assert!(allowed.allows("prices"));
/// assert!(allowed.allows("orders/42"));
/// assert!(!allowed.allows("orders"));
/// assert!(!allowed.allows("prices/eu"));
/// assert!(!AllowedTopics::none().allows("prices"));
/// assert!(AllowedTopics::any().allows("anything"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedTopics {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl AllowedTopics {
    /// These patterns: a pattern ending in `*` allows every topic that starts with what comes
    /// before the `*`; any other pattern allows that one topic.
    ///
    /// ```
    /// let allowed = ssehub_hub::AllowedTopics::new(["users/alice/*"]);
    /// assert!(allowed.allows("users/alice/inbox"));
    /// assert!(!allowed.allows("users/bob/inbox"));
    /// ```
    pub fn new<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut allowed = Self::default();
        for pattern in patterns {
            let mut pattern = pattern.into();
            if pattern.ends_with('*') {
                pattern.pop();
                allowed.prefixes.push(pattern);
            } else {
                allowed.exact.push(pattern);
            }
        }
        allowed.exact.sort_unstable();
        allowed.exact.dedup();
        allowed
    }

    /// No topic at all.
    ///
    /// ```
    /// assert!(!ssehub_hub::AllowedTopics::none().allows("prices"));
    /// ```
    pub fn none() -> Self {
        Self::default()
    }

    /// Every topic (the pattern `*`).
    ///
    /// ```
    /// assert!(ssehub_hub::AllowedTopics::any().allows("orders/42"));
    /// ```
    pub fn any() -> Self {
        Self::new(["*"])
    }

    /// Whether `topic` is allowed.
    ///
    /// ```
    /// assert!(ssehub_hub::AllowedTopics::new(["a"]).allows("a"));
    /// ```
    pub fn allows(&self, topic: &str) -> bool {
        self.exact
            .binary_search_by(|probe| probe.as_str().cmp(topic))
            .is_ok()
            || self
                .prefixes
                .iter()
                .any(|prefix| topic.starts_with(prefix.as_str()))
    }

    /// The first of `topics` that is not allowed, if any.
    ///
    /// ```
    /// let allowed = ssehub_hub::AllowedTopics::new(["orders/*"]);
    /// assert_eq!(allowed.first_refused(["orders/1", "prices"]), Some("prices"));
    /// assert_eq!(allowed.first_refused(["orders/1"]), None);
    /// ```
    pub fn first_refused<'a, I>(&self, topics: I) -> Option<&'a str>
    where
        I: IntoIterator<Item = &'a str>,
    {
        topics.into_iter().find(|topic| !self.allows(topic))
    }
}

/// Who is subscribing, as the application's authentication says: a uid, and the topics it may
/// subscribe to. A plain uid (`String` or `&str`) converts into a subscriber with no topic.
///
/// ```
/// use ssehub_hub::{AllowedTopics, SubscribeOptions, Subscriber};
///
/// let subscriber = Subscriber::new("alice").allow_topics(AllowedTopics::new(["orders/*"]));
/// assert!(subscriber.authorize(&SubscribeOptions::default().topic("orders/42")).is_ok());
/// let refused = subscriber.authorize(&SubscribeOptions::default().topic("prices"));
/// assert_eq!(refused.unwrap_err().to_string(), "topic \"prices\": not allowed for this subscriber");
///
/// let plain: Subscriber = "bob".into();
/// assert!(plain.authorize(&SubscribeOptions::default().topic("prices")).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// The uid the stream is opened for.
    pub uid: String,
    /// The topics it may ask for with `?topic=` (or [`SubscribeOptions::topics`]).
    ///
    /// [`SubscribeOptions::topics`]: crate::SubscribeOptions::topics
    pub allowed_topics: AllowedTopics,
    /// When the credential the subscriber was recognised by expires (a token's `exp`): the HTTP
    /// front ends end its stream then ([`SubscribeOptions::ends_at`]). `None`: never.
    ///
    /// [`SubscribeOptions::ends_at`]: crate::SubscribeOptions::ends_at
    pub expires_at: Option<std::time::SystemTime>,
}

impl Subscriber {
    /// A subscriber of `uid`, allowed no topic.
    ///
    /// ```
    /// assert_eq!(ssehub_hub::Subscriber::new("alice").uid, "alice");
    /// ```
    pub fn new(uid: impl Into<String>) -> Self {
        Self {
            uid: uid.into(),
            allowed_topics: AllowedTopics::none(),
            expires_at: None,
        }
    }

    /// Ends the subscriber's streams at `at`, the expiry of its credential.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    ///
    /// let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    /// let subscriber = ssehub_hub::Subscriber::new("alice").expires_at(exp);
    /// assert_eq!(subscriber.expires_at, Some(exp));
    /// ```
    #[must_use]
    pub fn expires_at(mut self, at: std::time::SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Allows these topics.
    ///
    /// ```
    /// use ssehub_hub::{AllowedTopics, Subscriber};
    /// let subscriber = Subscriber::new("alice").allow_topics(AllowedTopics::any());
    /// assert!(subscriber.allowed_topics.allows("prices"));
    /// ```
    #[must_use]
    pub fn allow_topics(mut self, allowed: AllowedTopics) -> Self {
        self.allowed_topics = allowed;
        self
    }

    /// Checks the topics `options` ask for against the allowed ones.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::TopicForbidden`](crate::SubscribeError::TopicForbidden) naming the
    /// first topic not allowed (the HTTP front ends answer `403`).
    ///
    /// ```
    /// use ssehub_hub::{SubscribeOptions, Subscriber};
    /// assert!(Subscriber::new("alice").authorize(&SubscribeOptions::default()).is_ok());
    /// ```
    pub fn authorize(
        &self,
        options: &crate::SubscribeOptions,
    ) -> Result<(), crate::SubscribeError> {
        match self
            .allowed_topics
            .first_refused(options.topics.iter().map(String::as_str))
        {
            Some(topic) => Err(crate::SubscribeError::TopicForbidden {
                topic: topic.to_owned(),
            }),
            None => Ok(()),
        }
    }
}

impl Subscriber {
    /// [`authorize`](Self::authorize)s `options` and carries the subscriber's expiry into them:
    /// what the HTTP front ends do before subscribing.
    ///
    /// # Errors
    ///
    /// As [`authorize`](Self::authorize).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use ssehub_hub::{AllowedTopics, SubscribeOptions, Subscriber};
    ///
    /// let exp = SystemTime::now() + Duration::from_secs(60);
    /// let subscriber = Subscriber::new("alice").allow_topics(AllowedTopics::any()).expires_at(exp);
    /// let options = subscriber.admit(SubscribeOptions::default().topic("prices")).unwrap();
    /// assert_eq!(options.ends_at, Some(exp));
    /// ```
    pub fn admit(
        &self,
        mut options: crate::SubscribeOptions,
    ) -> Result<crate::SubscribeOptions, crate::SubscribeError> {
        self.authorize(&options)?;
        if let Some(at) = self.expires_at {
            options.ends_at = Some(options.ends_at.map_or(at, |ends| ends.min(at)));
        }
        Ok(options)
    }
}

impl From<String> for Subscriber {
    fn from(uid: String) -> Self {
        Self::new(uid)
    }
}

impl From<&str> for Subscriber {
    fn from(uid: &str) -> Self {
        Self::new(uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_checked_for_emptiness_length_and_control_characters() {
        assert_eq!(check_topic("orders/42", 9), Ok(()));
        assert_eq!(
            check_topic("orders/420", 9),
            Err(TopicError::TooLong {
                limit: 9,
                actual: 10
            })
        );
        assert_eq!(
            check_topic("a\u{7f}", 9),
            Err(TopicError::ControlCharacter { at: 1 })
        );
        assert_eq!(
            check_topic("é\u{85}", 9),
            Err(TopicError::ControlCharacter { at: 2 }),
            "C1 controls too (NEL ends a line for some parsers)"
        );
        assert_eq!(check_topic("prix/é", 9), Ok(()), "non-ASCII text is fine");
    }

    #[test]
    fn a_prefix_pattern_allows_what_starts_with_it_and_nothing_else() {
        let allowed = AllowedTopics::new(["orders/*", "prices", "users/alice"]);
        for topic in [
            "orders/",
            "orders/42",
            "orders/42/lines",
            "prices",
            "users/alice",
        ] {
            assert!(allowed.allows(topic), "{topic}");
        }
        for topic in [
            "orders",
            "order",
            "prices/eu",
            "price",
            "users/alice/x",
            "users/bob",
        ] {
            assert!(!allowed.allows(topic), "{topic}");
        }
        assert!(AllowedTopics::any().allows("x"));
        assert!(!AllowedTopics::none().allows("x"));
    }
}
