//! A record as a stream entry, and back.
//!
//! An entry's id is `<seq>-0`; its fields: `i` the event id, `d` data, `t` the time it was
//! appended (ms since the epoch, Redis's clock), `w` who it is for (`*` everyone, `=` + the
//! list, or `@` + the key of a list shared by the push's events in the sets hash), and when set
//! `e` the event type and `r` the retry in ms. A list is JSON: `[[uids...], [topics...]]`.

use std::time::{Duration, SystemTime};

use redis::Value;
use ssehub_store::{Event, Listed, Recipients, Record, StoreError};

/// An entry as read, its recipients not yet resolved when they are a shared set.
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) event: Event,
    pub(crate) saved_at: SystemTime,
    pub(crate) to: To,
}

pub(crate) enum To {
    Resolved(Recipients),
    /// The key of a set in the sets hash.
    Set(u64),
}

/// The recipients field of a push: `*`, `=list` (one event) or `@list` (shared by several).
pub(crate) fn encode_recipients(recipients: &Recipients, events: usize) -> String {
    match recipients {
        Recipients::All => "*".to_owned(),
        Recipients::Listed(listed) => {
            let list = encode_list(listed);
            if events > 1 {
                format!("@{list}")
            } else {
                format!("={list}")
            }
        }
    }
}

fn encode_list(listed: &Listed) -> String {
    let uids: Vec<&str> = listed.uids().iter().map(|uid| &**uid).collect();
    let topics: Vec<&str> = listed.topics().iter().map(|topic| &**topic).collect();
    serde_json::json!([uids, topics]).to_string()
}

/// A list as the sets hash or an `=` field holds it.
pub(crate) fn decode_list(text: &[u8]) -> Result<Recipients, String> {
    let (uids, topics): (Vec<String>, Vec<String>) =
        serde_json::from_slice(text).map_err(|error| format!("bad recipient list: {error}"))?;
    Ok(Recipients::new(uids, topics))
}

fn corrupt(seq: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        seq,
        reason: reason.into(),
    }
}

/// The entries of an `XRANGE` answer (or of one stream of an `XREAD` answer).
pub(crate) fn entries(value: Value) -> Result<Vec<Entry>, StoreError> {
    let Value::Array(items) = value else {
        return match value {
            Value::Nil => Ok(Vec::new()),
            other => Err(StoreError::backend(format!(
                "Redis answered a range read with {other:?}"
            ))),
        };
    };
    items.into_iter().map(entry).collect()
}

/// The entries of an `XREAD` answer for one stream (nil when the block timed out).
pub(crate) fn read_reply(value: Value) -> Result<Vec<Entry>, StoreError> {
    match value {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => {
            let mut out = Vec::new();
            for stream in streams {
                let Value::Array(mut pair) = stream else {
                    return Err(StoreError::backend("Redis answered XREAD oddly"));
                };
                if pair.len() != 2 {
                    return Err(StoreError::backend("Redis answered XREAD oddly"));
                }
                out.extend(entries(pair.pop().unwrap_or(Value::Nil))?);
            }
            Ok(out)
        }
        Value::Map(streams) => {
            let mut out = Vec::new();
            for (_, entries_value) in streams {
                out.extend(entries(entries_value)?);
            }
            Ok(out)
        }
        other => Err(StoreError::backend(format!(
            "Redis answered XREAD with {other:?}"
        ))),
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        _ => None,
    }
}

fn entry(value: Value) -> Result<Entry, StoreError> {
    let Value::Array(mut pair) = value else {
        return Err(StoreError::backend("Redis answered a stream entry oddly"));
    };
    if pair.len() != 2 {
        return Err(StoreError::backend("Redis answered a stream entry oddly"));
    }
    let fields = pair.pop().unwrap_or(Value::Nil);
    let id = pair
        .pop()
        .and_then(bytes)
        .ok_or_else(|| StoreError::backend("a stream entry without an id"))?;
    let seq = parse_seq(&id).ok_or_else(|| {
        StoreError::backend(format!(
            "a stream entry whose id {:?} is not <seq>-0: is another program writing to this key?",
            String::from_utf8_lossy(&id)
        ))
    })?;
    let Value::Array(fields) = fields else {
        return Err(corrupt(seq, "fields are not a list"));
    };
    let (mut id, mut data, mut at, mut to, mut kind, mut retry) =
        (None, None, None, None, None, None);
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let (Some(name), Some(value)) = (bytes(name), bytes(value)) else {
            return Err(corrupt(seq, "a field is not a string"));
        };
        let slot = match name.as_slice() {
            b"i" => &mut id,
            b"d" => &mut data,
            b"t" => &mut at,
            b"w" => &mut to,
            b"e" => &mut kind,
            b"r" => &mut retry,
            _ => continue,
        };
        *slot = Some(value);
    }
    let text = |field: Option<Vec<u8>>, name: &str| {
        String::from_utf8(field.ok_or_else(|| corrupt(seq, format!("no {name}")))?)
            .map_err(|_| corrupt(seq, format!("{name} is not UTF-8")))
    };
    let number = |field: Option<Vec<u8>>, name: &str| {
        text(field, name)?
            .parse::<u64>()
            .map_err(|_| corrupt(seq, format!("{name} is not a number")))
    };
    let mut event = Event::new(text(data, "data")?).with_id(text(id, "id")?);
    if kind.is_some() {
        event = event.with_event(text(kind, "type")?);
    }
    if retry.is_some() {
        event = event.with_retry(Duration::from_millis(number(retry, "retry")?));
    }
    let saved_at = SystemTime::UNIX_EPOCH + Duration::from_millis(number(at, "time")?);
    let to = to.ok_or_else(|| corrupt(seq, "no recipients"))?;
    let to = match to.first() {
        Some(b'*') if to.len() == 1 => To::Resolved(Recipients::All),
        Some(b'=') => To::Resolved(decode_list(&to[1..]).map_err(|reason| corrupt(seq, reason))?),
        Some(b'@') => To::Set(
            std::str::from_utf8(&to[1..])
                .ok()
                .and_then(|key| key.parse().ok())
                .ok_or_else(|| corrupt(seq, "bad recipient set key"))?,
        ),
        _ => return Err(corrupt(seq, "bad recipients")),
    };
    Ok(Entry {
        seq,
        event,
        saved_at,
        to,
    })
}

/// `<seq>-0` to seq.
pub(crate) fn parse_seq(id: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(id).ok()?;
    let (seq, sub) = text.split_once('-')?;
    (sub == "0").then_some(())?;
    seq.parse().ok()
}

impl Entry {
    pub(crate) fn into_record(self, recipients: Recipients) -> Record {
        Record {
            seq: self.seq,
            event: self.event,
            recipients,
            saved_at: self.saved_at,
        }
    }
}
