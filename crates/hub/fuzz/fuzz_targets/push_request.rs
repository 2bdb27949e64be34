//! The JSON push API's parser, `PushRequest::from_json`, on arbitrary bodies.
//!
//! Checks:
//! - no panic, and every refusal has a message;
//! - what parses is what the push API promises: recipients explicit (`None` or a non-empty list
//!   of non-empty uids; `None` or a non-empty list of topics; everyone only with neither), at
//!   least one event, ids and types given or `None` (never empty);
//! - each event's data is the JSON value's: a string's text (read by `serde_json` on its own),
//!   any other value as JSON that reads back as the same value (checked whenever `serde_json`
//!   reads the whole body as a `Value`);
//! - the request, serialised again, parses to the same request;
//! - every event encodes, and decodes back to itself (line ends in data coming back as LF);
//! - `refuse_reserved_event_types` refuses exactly the reserved types.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run push_request --fuzz-dir crates/hub/fuzz`

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use ssehub_hub::push_api::{PushRequest, RESERVED_EVENT_TYPES};
use ssehub_wire::{Decoder, Event, Frame};

/// The body's events as sent, their data unread.
#[derive(Deserialize)]
struct RawBody<'a> {
    #[serde(borrow)]
    events: Vec<RawEvent<'a>>,
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The request as JSON, data always as a string.
fn to_json(request: &PushRequest) -> Value {
    let events: Vec<Value> = request
        .events
        .iter()
        .map(|event| {
            let mut fields = Map::new();
            if let Some(id) = &event.id {
                fields.insert("id".into(), json!(id.as_str()));
            }
            if let Some(event_type) = &event.event {
                fields.insert("event".into(), json!(event_type.as_str()));
            }
            fields.insert("data".into(), json!(event.data.as_str()));
            Value::Object(fields)
        })
        .collect();
    let mut body = Map::new();
    if let Some(uids) = &request.uids {
        body.insert("uids".into(), json!(uids));
    }
    if let Some(topics) = &request.topics {
        body.insert("topics".into(), json!(topics));
    }
    body.insert("events".into(), Value::Array(events));
    Value::Object(body)
}

/// What a client decodes from `event`'s encoding.
fn round_trip(event: &Event) -> Event {
    let encoded = event.encode().expect("a parsed event encodes");
    let mut buf = BytesMut::from(&encoded[..]);
    let mut decoder = Decoder::new()
        .max_line_len(encoded.len() + 1)
        .max_event_len(encoded.len() + 1);
    match decoder.decode(&mut buf) {
        Ok(Some(Frame::Event(decoded))) => decoded,
        other => panic!("{event:?} encodes as {encoded:?}, which decodes as {other:?}"),
    }
}

fuzz_target!(|body: &[u8]| {
    let request = match PushRequest::from_json(body) {
        Ok(request) => request,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };

    if let Some(uids) = &request.uids {
        assert!(!uids.is_empty() && uids.iter().all(|uid| !uid.is_empty()));
    }
    // Topic names are checked against the hub's limits, which `from_json` has none of; the
    // list itself is never empty (only a body with neither list broadcasts).
    assert!(
        request
            .topics
            .as_ref()
            .is_none_or(|topics| !topics.is_empty())
    );
    assert_eq!(
        request.recipients() == ssehub_hub::Recipients::All,
        request.uids.is_none() && request.topics.is_none()
    );
    assert!(!request.events.is_empty());
    for event in &request.events {
        assert!(event.id.as_ref().is_none_or(|id| !id.is_empty()));
        assert!(event.event.as_ref().is_none_or(|t| !t.is_empty()));
        assert_eq!(event.retry, None);
    }

    // A string's text, as serde_json reads that string.
    let raw: RawBody<'_> = serde_json::from_slice(body).expect("a request that parses has events");
    for (event, raw) in request.events.iter().zip(&raw.events) {
        if raw.data.get().starts_with('"') {
            let text = serde_json::from_str::<String>(raw.data.get());
            assert_eq!(
                text.as_deref().map_err(ToString::to_string),
                Ok(event.data.as_str()),
                "data {} sent as {:?}",
                raw.data,
                event.data
            );
        }
    }

    // Against serde_json's own reading of the body. It refuses what the parser lets through
    // unread inside `data` (numbers out of f64's range), so only when it reads it.
    if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) {
        let uids = fields.get("uids").map(|uids| {
            uids.as_array()
                .expect("uids is a list")
                .iter()
                .map(|uid| uid.as_str().expect("a uid is a string").to_owned())
                .collect::<Vec<_>>()
        });
        assert_eq!(uids, request.uids);
        let topics = fields.get("topics").map(|topics| {
            topics
                .as_array()
                .expect("topics is a list")
                .iter()
                .map(|topic| topic.as_str().expect("a topic is a string").to_owned())
                .collect::<Vec<_>>()
        });
        assert_eq!(topics, request.topics);
        let events = fields["events"].as_array().expect("events is a list");
        assert_eq!(events.len(), request.events.len());
        for (event, raw) in request.events.iter().zip(events) {
            let text = |name| {
                raw.get(name)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            assert_eq!(event.id.as_deref(), text("id"));
            assert_eq!(event.event.as_deref(), text("event"));
            match &raw["data"] {
                Value::String(data) => assert_eq!(event.data.as_str(), data),
                data => assert_eq!(
                    serde_json::from_str::<Value>(&event.data).ok().as_ref(),
                    Some(data),
                    "data {:?} is not the JSON sent",
                    event.data
                ),
            }
        }
    }

    let again = serde_json::to_vec(&to_json(&request)).expect("a Value serialises");
    assert_eq!(
        PushRequest::from_json(&again).as_ref(),
        Ok(&request),
        "{}",
        String::from_utf8_lossy(&again)
    );

    for event in &request.events {
        let mut expected = event.clone();
        expected.data = event.data.replace("\r\n", "\n").replace('\r', "\n").into();
        assert_eq!(round_trip(event), expected);
    }

    let reserved = request
        .events
        .iter()
        .position(|event| RESERVED_EVENT_TYPES.contains(&event.event_type()));
    assert_eq!(
        request.refuse_reserved_event_types().is_err(),
        reserved.is_some()
    );
});
