//! The seed's JSON push API, independent of any server framework.
//!
//! Request: `{"uids":["u001"],"topics":["orders/42"],"events":[{"id":"1","event":"message","data":"hello"}]}`;
//! `id` and `event` are optional. `uids` and `topics` together address the union (a connection
//! of one of the uids or subscribed to one of the topics gets each event once). **Omitting both
//! broadcasts** (the seed's contract); `"uids": []`, `"topics": []` and `null` for either are
//! refused, as is any field not listed here (top level or in an event), so a typo such as `"uid"`
//! is a `400`, never a broadcast. Response envelope:
//! `{"code":0,"msg":"ok","data":{"ids":[...],"connections":N,"failed":N}}`, or on error
//! `{"code":<HTTP status>,"msg":"<what is wrong, naming the field>","data":{}}`.
//!
//! `data` that is a JSON string is sent as that text (multi-line text becomes several `data:`
//! lines; a string whose escapes are not text, such as a lone surrogate `"\ud800"`, is refused);
//! any other JSON value is sent as compact JSON. The seed JSON-encoded strings too, so
//! `"hello"` arrived with quotes; here it arrives as `hello`.
//!
//! ```
//! use ssehub_hub::push_api::PushRequest;
//!
//! let request = PushRequest::from_json(br#"{"uids":["u1"],"events":[{"data":{"n": 1}}]}"#)?;
//! assert_eq!(request.uids, Some(vec!["u1".to_owned()]));
//! assert_eq!(request.events[0].data, r#"{"n":1}"#);
//! # Ok::<(), ssehub_hub::push_api::PushRequestError>(())
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use ssehub_wire::{Event, Utf8Bytes};

use crate::limits::PushLimits;
use crate::{CLOSE_EVENT_TYPE, HISTORY_GAP_EVENT_TYPE, PushError, PushReceipt, Recipients};

/// The event types the HTTP push API refuses unless the hub allows them with
/// [`HubBuilder::allow_reserved_event_types_over_http`](crate::HubBuilder::allow_reserved_event_types_over_http):
/// [`CLOSE_EVENT_TYPE`] (clients stop for good) and [`HISTORY_GAP_EVENT_TYPE`] (clients reload).
///
/// ```
/// assert_eq!(ssehub_hub::push_api::RESERVED_EVENT_TYPES, ["close", "history-gap"]);
/// ```
pub const RESERVED_EVENT_TYPES: [&str; 2] = [CLOSE_EVENT_TYPE, HISTORY_GAP_EVENT_TYPE];

/// A parsed and checked push request.
///
/// Its recipients are explicit: `uids` is `None` only when the body had no `uids` field, which
/// the seed defined as a broadcast; a body with an empty (or `null`) `uids` never parses.
///
/// ```
/// use ssehub_hub::push_api::PushRequest;
///
/// let request = PushRequest::from_json(br#"{"events":[{"data":"hi"}]}"#)?;
/// assert_eq!(request.uids, None); // a broadcast
/// let err = PushRequest::from_json(br#"{"uids":[],"events":[{"data":"hi"}]}"#).unwrap_err();
/// assert_eq!(err.to_string(), "uids: empty; name at least one uid, or omit uids (and topics) to broadcast");
/// # Ok::<(), ssehub_hub::push_api::PushRequestError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushRequest {
    /// The uids to push to, never empty; `None`: the body has no `uids`.
    pub uids: Option<Vec<String>>,
    /// The topics to push to, never empty; `None`: the body has no `topics`. With neither, the
    /// push is a broadcast ([`PushRequest::recipients`]).
    pub topics: Option<Vec<String>>,
    /// What to push, in order.
    pub events: Vec<Event>,
}

/// Why a push request body was refused. The message names the offending field as a path
/// (`events[1].event`), so a publisher can fix its request.
///
/// ```
/// use ssehub_hub::push_api::PushRequest;
///
/// let err = PushRequest::from_json(br#"{"events":[{"data":"x","id":"1\n"}]}"#).unwrap_err();
/// assert!(err.to_string().starts_with("events[0].id: "));
/// let err = PushRequest::from_json(br#"{"events":[]}"#).unwrap_err();
/// assert_eq!(err.to_string(), "events: a push needs at least one event");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushRequestError {
    /// Not JSON, or a field of the wrong type.
    Json {
        /// Where in the document (`events[0].id`, or `.` for the whole body).
        path: String,
        /// What the JSON parser said.
        message: String,
    },
    /// An event without `data` (or with `data: null`).
    MissingData {
        /// The event's position.
        index: usize,
    },
    /// `"uids": []` or `"uids": null`. Only a body without `uids` broadcasts, so that a list that
    /// came out empty reaches nobody rather than everybody.
    EmptyUids,
    /// `"topics": []` or `"topics": null`, for the same reason.
    EmptyTopics,
    /// An event of a type clients give a meaning to ([`RESERVED_EVENT_TYPES`]), which the hub
    /// does not accept over HTTP.
    ReservedEventType {
        /// The event's position.
        index: usize,
        /// Its type.
        event_type: &'static str,
    },
    /// The request parsed but cannot be pushed: no events, an empty uid, a line break in an id or
    /// type, more uids or events than the hub's limits allow.
    Invalid(PushError),
}

impl fmt::Display for PushRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json { path, message } if path == "." => {
                write!(f, "the body is not a valid push request: {message}")
            }
            Self::Json { path, message } => write!(f, "{path}: {message}"),
            Self::MissingData { index } => write!(
                f,
                "events[{index}].data: missing; send a string, or any other JSON value"
            ),
            Self::EmptyUids => f.write_str(
                "uids: empty; name at least one uid, or omit uids (and topics) to broadcast",
            ),
            Self::EmptyTopics => f.write_str(
                "topics: empty; name at least one topic, or omit topics (and uids) to broadcast",
            ),
            Self::ReservedEventType { index, event_type } => write!(
                f,
                "events[{index}].event: `{event_type}` is reserved ({}) and not accepted over HTTP; \
                 use another event type",
                match *event_type {
                    CLOSE_EVENT_TYPE => "it makes clients stop for good",
                    _ => "it makes clients reload their state",
                }
            ),
            Self::Invalid(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for PushRequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Invalid(error) => Some(error),
            _ => None,
        }
    }
}

impl From<PushError> for PushRequestError {
    fn from(error: PushError) -> Self {
        Self::Invalid(error)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest<'a> {
    /// `None` without the field, `Some(None)` for `null`.
    #[serde(default, deserialize_with = "present")]
    uids: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    topics: Option<Option<Vec<String>>>,
    #[serde(default, borrow)]
    events: Option<Vec<RawEvent<'a>>>,
}

/// The error for a body the plain parse refused, with the path to where it went wrong (a
/// second parse that tracks it).
fn json_error(body: &[u8]) -> PushRequestError {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: Result<RawRequest<'_>, _> = serde_path_to_error::deserialize(&mut deserializer);
    match parsed {
        Err(error) => {
            let path = error.path().to_string();
            PushRequestError::Json {
                // `?` is where the parser lost its place (cut-off JSON): the body as a whole.
                path: if path == "?" { ".".to_owned() } else { path },
                message: error.inner().to_string(),
            }
        }
        Ok(_) => PushRequestError::Json {
            path: ".".to_owned(),
            message: match deserializer.end() {
                Err(error) => error.to_string(),
                // Cannot be: the plain parse refused this body. Say so rather than panic.
                Ok(()) => "the body is not valid JSON".to_owned(),
            },
        },
    }
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`, by `default`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

impl PushRequest {
    /// Parses and checks a push request body. Every event's format is checked; the hub's limits
    /// (id and type lengths, counts, data size) are checked by the push itself.
    ///
    /// # Errors
    ///
    /// [`PushRequestError`], naming the field.
    ///
    /// ```
    /// use ssehub_hub::push_api::PushRequest;
    ///
    /// let request = PushRequest::from_json(br#"{"events":[{"event":"note","data":"a\nb"}]}"#)?;
    /// assert_eq!(request.events[0].data, "a\nb");
    /// assert_eq!(request.events[0].event_type(), "note");
    /// # Ok::<(), ssehub_hub::push_api::PushRequestError>(())
    /// ```
    pub fn from_json(body: &[u8]) -> Result<Self, PushRequestError> {
        Self::parse(body, None)
    }

    /// [`PushRequest::from_json`], refusing too many uids or events before building any event
    /// when given the hub's limits (the push handlers do; the hub checks every limit again).
    pub(crate) fn parse(
        body: &[u8],
        limits: Option<&PushLimits>,
    ) -> Result<Self, PushRequestError> {
        // serde would also read a struct from a JSON array; the API is an object.
        if let Some(&first) = body.iter().find(|b| !b.is_ascii_whitespace())
            && first != b'{'
        {
            {
                return Err(PushRequestError::Json {
                    path: ".".to_owned(),
                    message: "expected a JSON object: {\"uids\":[...],\"events\":[...]}".to_owned(),
                });
            }
        }
        // The plain parse first: tracking the path costs a third of a push's parsing, and only
        // a refused body needs it. Both accept exactly the same bodies.
        let raw: RawRequest<'_> = match serde_json::from_slice(body) {
            Ok(raw) => raw,
            Err(_) => return Err(json_error(body)),
        };

        let uids = match raw.uids {
            None => None,
            Some(None) => return Err(PushRequestError::EmptyUids),
            Some(Some(uids)) if uids.is_empty() => return Err(PushRequestError::EmptyUids),
            Some(Some(uids)) => Some(uids),
        };
        if let Some(index) = uids.iter().flatten().position(String::is_empty) {
            return Err(PushError::EmptyUid { index }.into());
        }
        let topics = match raw.topics {
            None => None,
            Some(None) => return Err(PushRequestError::EmptyTopics),
            Some(Some(topics)) if topics.is_empty() => return Err(PushRequestError::EmptyTopics),
            Some(Some(topics)) => Some(topics),
        };
        let raw_events = raw.events.unwrap_or_default();
        if let Some(limits) = limits {
            limits.check_counts(
                uids.as_ref().map_or(0, Vec::len),
                topics.as_ref().map_or(0, Vec::len),
                raw_events.len(),
            )?;
            // Here, in the order sent, so that the error's index is the request's.
            limits.check_topics(topics.as_deref().unwrap_or_default())?;
        }
        if raw_events.is_empty() {
            return Err(PushError::NoEvents.into());
        }
        let mut events = Vec::with_capacity(raw_events.len());
        for (index, raw) in raw_events.into_iter().enumerate() {
            let data = raw.data.ok_or(PushRequestError::MissingData { index })?;
            let data = event_data(data).map_err(|message| PushRequestError::Json {
                path: format!("events[{index}].data"),
                message,
            })?;
            let mut event = Event::new(data);
            // An empty id or type means "not given": the hub assigns an id, the type is `message`.
            event.id = raw.id.filter(|id| !id.is_empty()).map(Utf8Bytes::from);
            event.event = raw
                .event
                .filter(|event| !event.is_empty())
                .map(Utf8Bytes::from);
            event
                .validate()
                .map_err(|source| PushError::InvalidEvent { index, source })?;
            events.push(event);
        }
        Ok(Self {
            uids,
            topics,
            events,
        })
    }

    /// Who the request addresses: its uids and topics, or everyone when it names neither.
    ///
    /// ```
    /// use ssehub_hub::Recipients;
    /// use ssehub_hub::push_api::PushRequest;
    ///
    /// let both = PushRequest::from_json(br#"{"uids":["a"],"topics":["t"],"events":[{"data":1}]}"#)?;
    /// assert_eq!(both.recipients(), Recipients::new(["a"], ["t"]));
    /// let everyone = PushRequest::from_json(br#"{"events":[{"data":1}]}"#)?;
    /// assert_eq!(everyone.recipients(), Recipients::All);
    /// # Ok::<(), ssehub_hub::push_api::PushRequestError>(())
    /// ```
    pub fn recipients(&self) -> Recipients {
        match (&self.uids, &self.topics) {
            (None, None) => Recipients::All,
            (uids, topics) => Recipients::new(uids.iter().flatten(), topics.iter().flatten()),
        }
    }

    /// Refuses an event of a reserved type ([`RESERVED_EVENT_TYPES`]), naming the first one.
    /// The push handlers call it unless the hub was built with
    /// [`allow_reserved_event_types_over_http`](crate::HubBuilder::allow_reserved_event_types_over_http).
    ///
    /// # Errors
    ///
    /// [`PushRequestError::ReservedEventType`].
    ///
    /// ```
    /// use ssehub_hub::push_api::PushRequest;
    ///
    /// let request = PushRequest::from_json(br#"{"events":[{"data":"x"},{"event":"close","data":"bye"}]}"#)?;
    /// let err = request.refuse_reserved_event_types().unwrap_err();
    /// assert!(err.to_string().starts_with("events[1].event: `close` is reserved"));
    /// # Ok::<(), ssehub_hub::push_api::PushRequestError>(())
    /// ```
    pub fn refuse_reserved_event_types(&self) -> Result<(), PushRequestError> {
        for (index, event) in self.events.iter().enumerate() {
            let event_type = event.event_type();
            if let Some(&reserved) = RESERVED_EVENT_TYPES.iter().find(|&&r| r == event_type) {
                return Err(PushRequestError::ReservedEventType {
                    index,
                    event_type: reserved,
                });
            }
        }
        Ok(())
    }
}

/// A JSON string's text, or any other value as compact JSON.
///
/// A string whose escapes are not text (a lone surrogate such as `"\ud800"`) is refused, as it is
/// in an id or a type: the parser let it through unread inside the raw value.
fn event_data(data: &RawValue) -> Result<String, String> {
    let raw = data.get();
    if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).map_err(|error| {
            // Its position is within the value, not the body: leave it out.
            let position = format!(" at line {} column {}", error.line(), error.column());
            let message = error.to_string();
            message
                .strip_suffix(&position)
                .map_or_else(|| message.clone(), str::to_owned)
        })
    } else {
        Ok(compact(raw))
    }
}

/// Removes the whitespace between JSON tokens, leaving strings and numbers exactly as sent
/// (re-serialising through `serde_json::Value` would round large numbers).
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        }
        out.push(c);
    }
    out
}

/// The success envelope: `{"code":0,"msg":"ok","data":{"ids":[...],"connections":N,"failed":N}}`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let hub = ssehub_hub::Hub::new();
/// let receipt = hub.broadcast([ssehub_hub::Event::new("x").with_id("1")]).await.unwrap();
/// assert_eq!(
///     ssehub_hub::push_api::ok_envelope(&receipt),
///     r#"{"code":0,"msg":"ok","data":{"ids":["1"],"connections":0,"failed":0}}"#
/// );
/// # }
/// ```
pub fn ok_envelope(receipt: &PushReceipt) -> String {
    // Written by hand: this is every push's answer, and serde's struct serialiser costs more
    // than the rest of the envelope. Ids are escaped as JSON strings.
    let mut out =
        String::with_capacity(64 + receipt.ids.iter().map(|id| id.len() + 3).sum::<usize>());
    out.push_str(r#"{"code":0,"msg":"ok","data":{"ids":["#);
    for (index, id) in receipt.ids.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_json_string(&mut out, id);
    }
    out.push_str(r#"],"connections":"#);
    push_decimal(&mut out, receipt.connections);
    out.push_str(r#","failed":"#);
    push_decimal(&mut out, receipt.failed);
    out.push_str("}}");
    out
}

/// Appends `n` in decimal (`fmt`'s machinery costs more than the rest of the envelope).
fn push_decimal(out: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &digit in &digits[at..] {
        out.push(char::from(digit));
    }
}

/// Appends `text` as a JSON string: as is when nothing in it needs escaping (ids usually),
/// else through serde_json.
fn push_json_string(out: &mut String, text: &str) {
    if text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        // Serialising a string cannot fail.
        out.push_str(&serde_json::to_string(text).unwrap_or_default());
    }
}

/// The error envelope: `{"code":<status>,"msg":<message>,"data":{}}`.
///
/// ```
/// assert_eq!(
///     ssehub_hub::push_api::error_envelope(400, "events: a push needs at least one event"),
///     r#"{"code":400,"msg":"events: a push needs at least one event","data":{}}"#
/// );
/// ```
pub fn error_envelope(code: u16, message: &str) -> String {
    #[derive(Serialize)]
    struct Empty {}
    envelope_json(code, message, Empty {})
}

/// Serialises the envelope with its fields in the seed's order.
fn envelope_json(code: u16, msg: &str, data: impl Serialize) -> String {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        code: u16,
        msg: &'a str,
        data: T,
    }
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_string(&Envelope { code, msg, data }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ok_envelope_is_json_that_reads_back_to_the_receipt() {
        let receipt = PushReceipt {
            ids: vec![
                "01M8VN3TAJ64SNWGMR434CT15K".to_owned(),
                "quote\" back\\ é \u{1} tab\t".to_owned(),
            ],
            connections: 3,
            failed: 1,
        };
        let text = ok_envelope(&receipt);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"code": 0, "msg": "ok", "data": {"ids": receipt.ids, "connections": 3, "failed": 1}})
        );
        let large = PushReceipt {
            ids: vec!["1".to_owned()],
            connections: usize::MAX,
            failed: 10,
        };
        let value: serde_json::Value = serde_json::from_str(&ok_envelope(&large)).unwrap();
        assert_eq!(value["data"]["connections"], usize::MAX as u64);
        assert_eq!(value["data"]["failed"], 10);
        let empty = PushReceipt {
            ids: Vec::new(),
            connections: 0,
            failed: 0,
        };
        assert_eq!(
            ok_envelope(&empty),
            r#"{"code":0,"msg":"ok","data":{"ids":[],"connections":0,"failed":0}}"#
        );
    }

    #[test]
    fn compact_keeps_strings_and_numbers() {
        assert_eq!(
            compact(
                "{ \"a b\" : [1, 2.50, 123456789012345678901234567890],\n \"c\":\"x \\\" y\" }"
            ),
            "{\"a b\":[1,2.50,123456789012345678901234567890],\"c\":\"x \\\" y\"}"
        );
    }

    #[test]
    fn data_string_is_sent_verbatim_other_values_compact() {
        let request = PushRequest::from_json(
            br#"{"events":[{"data":"he said \"hi\"\nbye"},{"data":[1, {"k": true}]},{"data":17},{"data":""}]}"#,
        )
        .unwrap();
        let data: Vec<&str> = request.events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["he said \"hi\"\nbye", r#"[1,{"k":true}]"#, "17", ""]);
    }

    #[test]
    fn recipients_are_explicit() {
        let broadcast = PushRequest::from_json(br#"{"events":[{"data":"x"}]}"#).unwrap();
        assert_eq!(broadcast.uids, None);
        let unicast =
            PushRequest::from_json(br#"{"uids":["a","b"],"events":[{"data":"x"}]}"#).unwrap();
        assert_eq!(unicast.uids, Some(vec!["a".to_owned(), "b".to_owned()]));
    }

    #[test]
    fn counts_are_checked_before_any_event_is_built() {
        let limits = PushLimits {
            max_events: 2,
            max_uids: 1,
            ..PushLimits::default()
        };
        // The events are bad too, but the count is refused first: no event was looked at.
        let body = br#"{"events":[{"id":"a\nb","data":"x"},{"data":"y"},{"data":"z"}]}"#;
        assert_eq!(
            PushRequest::parse(body, Some(&limits)),
            Err(PushRequestError::Invalid(PushError::LimitExceeded {
                field: crate::PushField::Events,
                limit: 2,
                actual: 3
            }))
        );
        let body = br#"{"uids":["a","b"],"events":[{"data":"x"}]}"#;
        assert!(matches!(
            PushRequest::parse(body, Some(&limits)),
            Err(PushRequestError::Invalid(PushError::LimitExceeded {
                field: crate::PushField::Uids,
                ..
            }))
        ));
        // Without limits (the public parser), only the format is checked.
        assert!(PushRequest::from_json(body).is_ok());
    }

    #[test]
    fn reserved_event_types_are_named() {
        let request = PushRequest::from_json(
            br#"{"events":[{"event":"message","data":"x"},{"event":"history-gap","data":"{}"}]}"#,
        )
        .unwrap();
        assert_eq!(
            request.refuse_reserved_event_types(),
            Err(PushRequestError::ReservedEventType {
                index: 1,
                event_type: HISTORY_GAP_EVENT_TYPE
            })
        );
        // Event types are case-sensitive: `Close` is an ordinary type.
        let request =
            PushRequest::from_json(br#"{"events":[{"event":"Close","data":"x"}]}"#).unwrap();
        assert_eq!(request.refuse_reserved_event_types(), Ok(()));
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "the body is not a valid push request"),
            (b"{", "the body is not a valid push request"),
            (b"[]", "the body is not a valid push request"),
            (
                br#"{"events":[{"data":"x"}]} trailing"#,
                "the body is not a valid push request",
            ),
            (
                br#"{"uids":"u1","events":[{"data":"x"}]}"#,
                "uids: invalid type",
            ),
            (
                br#"{"uids":[1],"events":[{"data":"x"}]}"#,
                "uids[0]: invalid type",
            ),
            (
                br#"{"uids":[""],"events":[{"data":"x"}]}"#,
                "uids[0]: a uid must not be empty",
            ),
            (
                br#"{"events":[{"data":"x"},{"data":"y","id":5}]}"#,
                "events[1].id: invalid type",
            ),
            (
                br#"{"events":[{"data":"x","event":"a\rb"}]}"#,
                "events[0].event: event type contains a line break",
            ),
            (
                br#"{"events":[{"data":"x","id":"a\u0000b"}]}"#,
                "events[0].id: id contains a NUL",
            ),
            (br#"{"events":[{"event":"x"}]}"#, "events[0].data: missing"),
            (
                br#"{"uid":["a"],"events":[{"data":"x"}]}"#,
                "uid: unknown field `uid`, expected one of `uids`, `topics`, `events`",
            ),
            (
                br#"{"events":[{"data":"x","retry":5}]}"#,
                "events[0].retry: unknown field `retry`, expected one of `id`, `event`, `data`",
            ),
            (
                br#"{"uids":[],"events":[{"data":"x"}]}"#,
                "uids: empty; name at least one uid, or omit uids (and topics) to broadcast",
            ),
            (
                br#"{"uids":null,"events":[{"data":"x"}]}"#,
                "uids: empty; name at least one uid, or omit uids (and topics) to broadcast",
            ),
            (br#"{"events":[{"data":null}]}"#, "events[0].data: missing"),
            // Found by the push_request fuzz target: sent as its JSON text, quotes and all.
            (
                br#"{"events":[{"data":"x"},{"data":"a\ud800b"}]}"#,
                "events[1].data: unexpected end of hex escape",
            ),
            (
                br#"{"events":[{"data":"\udc00"}]}"#,
                "events[0].data: lone leading surrogate in hex escape",
            ),
            (
                br#"{"uids":["a"]}"#,
                "events: a push needs at least one event",
            ),
            (
                br#"{"events":[]}"#,
                "events: a push needs at least one event",
            ),
        ];
        // The position serde_json gives is within the value, not the body: left out.
        assert_eq!(
            PushRequest::from_json(br#"{"events":[{"data":"\udc00"}]}"#)
                .unwrap_err()
                .to_string(),
            "events[0].data: lone leading surrogate in hex escape"
        );
        for (body, expected) in cases {
            let message = PushRequest::from_json(body).unwrap_err().to_string();
            assert!(
                message.starts_with(expected),
                "{:?}: got {message:?}, expected it to start with {expected:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
