//! The encoder: [`Event`]s, comments and `retry:` to SSE bytes.
//!
//! Encoding validates first and writes nothing on error, so a caller can encode a whole batch and
//! send none of it if one event is refused.

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::Event;

/// Why an event was refused by the encoder.
///
/// Each variant would let a value break out of its field and inject fields or whole events of the
/// sender's choosing into the stream, so it is refused rather than escaped.
///
/// ```
/// use ssehub_wire::{EncodeError, Event};
///
/// let err = Event::new("x").with_id("1\nevent: admin").encode().unwrap_err();
/// assert_eq!(err, EncodeError::IdHasLineBreak);
/// assert_eq!(err.field(), "id");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EncodeError {
    /// The event type (`event`) contains CR or LF.
    EventTypeHasLineBreak,
    /// The id contains CR or LF.
    IdHasLineBreak,
    /// The id contains NUL, which clients are required to ignore.
    IdHasNul,
}

impl EncodeError {
    /// The name of the offending field, as it appears on the wire and in the push API (`event`, `id`).
    ///
    /// ```
    /// assert_eq!(ssehub_wire::EncodeError::EventTypeHasLineBreak.field(), "event");
    /// ```
    pub fn field(&self) -> &'static str {
        match self {
            Self::EventTypeHasLineBreak => "event",
            Self::IdHasLineBreak | Self::IdHasNul => "id",
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EventTypeHasLineBreak => {
                "event type contains a line break (CR or LF); remove it, an event type is one line"
            }
            Self::IdHasLineBreak => {
                "id contains a line break (CR or LF); remove it, an id is one line"
            }
            Self::IdHasNul => "id contains a NUL character, which clients ignore; remove it",
        })
    }
}

impl std::error::Error for EncodeError {}

impl Event {
    /// Checks the event can be encoded without changing its meaning.
    ///
    /// # Errors
    ///
    /// [`EncodeError`] names the field holding a character that could inject SSE fields.
    ///
    /// ```
    /// use ssehub_wire::{EncodeError, Event};
    ///
    /// assert!(Event::new("any\r\ndata\ris fine").validate().is_ok());
    /// assert_eq!(
    ///     Event::new("x").with_event("a\rb").validate(),
    ///     Err(EncodeError::EventTypeHasLineBreak),
    /// );
    /// assert_eq!(Event::new("x").with_id("a\0b").validate(), Err(EncodeError::IdHasNul));
    /// ```
    pub fn validate(&self) -> Result<(), EncodeError> {
        if let Some(event_type) = &self.event
            && has_line_break(event_type.as_bytes())
        {
            return Err(EncodeError::EventTypeHasLineBreak);
        }
        if let Some(id) = &self.id {
            if has_line_break(id.as_bytes()) {
                return Err(EncodeError::IdHasLineBreak);
            }
            if memchr::memchr(0, id.as_bytes()).is_some() {
                return Err(EncodeError::IdHasNul);
            }
        }
        Ok(())
    }

    /// Encodes the event to the bytes of one SSE message, ending with the blank line that dispatches
    /// it.
    ///
    /// # Errors
    ///
    /// The same as [`Event::validate`].
    ///
    /// ```
    /// let bytes = ssehub_wire::Event::new("a\r\nb").with_event("t").encode()?;
    /// assert_eq!(&bytes[..], b"event: t\ndata: a\ndata: b\n\n");
    /// # Ok::<(), ssehub_wire::EncodeError>(())
    /// ```
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        self.validate()?;
        // Exactly sized, so freezing needs no second allocation: one allocation per event.
        let mut dst = BytesMut::with_capacity(self.encoded_len());
        self.write_fields(&mut dst);
        Ok(dst.freeze())
    }

    /// Appends the encoded event to `dst`; on error `dst` is left untouched.
    ///
    /// # Errors
    ///
    /// The same as [`Event::validate`].
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use ssehub_wire::Event;
    ///
    /// let mut batch = BytesMut::new();
    /// Event::new("1").encode_into(&mut batch)?;
    /// Event::new("2").encode_into(&mut batch)?;
    /// assert_eq!(&batch[..], b"data: 1\n\ndata: 2\n\n");
    /// # Ok::<(), ssehub_wire::EncodeError>(())
    /// ```
    pub fn encode_into(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.validate()?;
        dst.reserve(self.encoded_len());
        self.write_fields(dst);
        Ok(())
    }

    /// The exact size of the encoded event.
    fn encoded_len(&self) -> usize {
        let mut len = FieldLen(0);
        self.write_fields(&mut len);
        len.0
    }

    /// Writes every field and the closing blank line; the caller validated the event.
    fn write_fields(&self, out: &mut impl FieldSink) {
        if let Some(id) = &self.id {
            out.field(b"id", id.as_bytes());
        }
        if let Some(event_type) = self.event.as_ref().filter(|t| !t.is_empty()) {
            out.field(b"event", event_type.as_bytes());
        }
        if let Some(retry) = self.retry {
            out.field(b"retry", retry_millis(retry, &mut [0; 20]));
        }
        for line in lines(self.data.as_bytes()) {
            out.field(b"data", line);
        }
        out.blank_line();
    }
}

/// Where encoded fields go: a buffer, or a counter that sizes the buffer first.
trait FieldSink {
    fn field(&mut self, name: &[u8], value: &[u8]);
    fn blank_line(&mut self);
}

impl FieldSink for BytesMut {
    fn field(&mut self, name: &[u8], value: &[u8]) {
        self.put_slice(name);
        self.put_u8(b':');
        // One space after the colon is what readers strip; an empty value needs none.
        if !value.is_empty() {
            self.put_u8(b' ');
            self.put_slice(value);
        }
        self.put_u8(b'\n');
    }

    fn blank_line(&mut self) {
        self.put_u8(b'\n');
    }
}

struct FieldLen(usize);

impl FieldSink for FieldLen {
    fn field(&mut self, name: &[u8], value: &[u8]) {
        self.0 += name.len() + 2 + if value.is_empty() { 0 } else { 1 + value.len() };
    }

    fn blank_line(&mut self) {
        self.0 += 1;
    }
}

/// Encodes a comment: one `:` line per line of `text`. Clients ignore comments; servers send them
/// as heartbeats to keep connections and proxies from timing out.
///
/// ```
/// assert_eq!(&ssehub_wire::encode_comment("keep-alive")[..], b": keep-alive\n");
/// assert_eq!(&ssehub_wire::encode_comment("a\nb")[..], b": a\n: b\n");
/// ```
pub fn encode_comment(text: &str) -> Bytes {
    let mut dst = BytesMut::with_capacity(text.len() + 3);
    for line in lines(text.as_bytes()) {
        // A comment line is a field with an empty name.
        dst.field(b"", line);
    }
    dst.freeze()
}

/// The smallest heartbeat: an empty comment line. Shared, never allocated.
///
/// ```
/// assert_eq!(&ssehub_wire::heartbeat()[..], b":\n");
/// ```
pub fn heartbeat() -> Bytes {
    Bytes::from_static(b":\n")
}

/// Encodes a standalone `retry:` line, which sets the client's reconnection time without
/// dispatching an event.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(&ssehub_wire::encode_retry(Duration::from_secs(2))[..], b"retry: 2000\n");
/// ```
pub fn encode_retry(retry: Duration) -> Bytes {
    let mut dst = BytesMut::with_capacity(28);
    dst.field(b"retry", retry_millis(retry, &mut [0; 20]));
    dst.freeze()
}

/// The reconnection time in whole milliseconds, in base ten, saturating at `u64::MAX`.
fn retry_millis(retry: Duration, digits: &mut [u8; 20]) -> &[u8] {
    decimal(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX), digits)
}

/// Formats `value` in base ten into `digits` without allocating.
fn decimal(mut value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &digits[start..];
        }
    }
}

fn has_line_break(value: &[u8]) -> bool {
    memchr::memchr2(b'\r', b'\n', value).is_some()
}

/// Splits on CRLF, CR and LF, as a reader would; always yields at least one (maybe empty) line.
fn lines(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match memchr::memchr2(b'\r', b'\n', rest) {
            Some(at) => {
                let line = &rest[..at];
                let ending = if rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[at + ending..];
                Some(line)
            }
            None => {
                done = true;
                Some(rest)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(data: &str) -> Vec<&str> {
        lines(data.as_bytes())
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect()
    }

    #[test]
    fn every_line_ending_splits_once() {
        assert_eq!(split(""), [""]);
        assert_eq!(split("a"), ["a"]);
        assert_eq!(split("a\nb\rc\r\nd"), ["a", "b", "c", "d"]);
        assert_eq!(split("\r\n"), ["", ""]);
        assert_eq!(split("\n\r"), ["", "", ""]);
        assert_eq!(split("a\r\r\n"), ["a", "", ""]);
    }

    #[test]
    fn failed_encode_writes_nothing() {
        let mut dst = BytesMut::from(&b"before"[..]);
        let err = Event::new("x").with_id("1\r").encode_into(&mut dst);
        assert_eq!(err, Err(EncodeError::IdHasLineBreak));
        assert_eq!(&dst[..], b"before");
    }

    #[test]
    fn empty_values_and_empty_type() {
        let bytes = Event::new("").with_id("").with_event("").encode().unwrap();
        assert_eq!(&bytes[..], b"id:\ndata:\n\n");
    }

    #[test]
    fn leading_space_in_values_survives_the_reader_strip() {
        let bytes = Event::new(" x").with_event(" t").encode().unwrap();
        assert_eq!(&bytes[..], b"event:  t\ndata:  x\n\n");
    }

    #[test]
    fn encoded_len_is_exact() {
        let events = [
            Event::new(""),
            Event::new("a\r\nb\rc\n").with_id("").with_event(""),
            Event::new("x")
                .with_id("id-1")
                .with_event("update")
                .with_retry(Duration::ZERO),
            Event::new("\n\n\n").with_retry(Duration::MAX),
        ];
        for event in events {
            let mut dst = BytesMut::new();
            event.encode_into(&mut dst).unwrap();
            assert_eq!(event.encoded_len(), dst.len(), "{event:?}");
            assert_eq!(event.encode().unwrap(), dst);
        }
    }

    #[test]
    fn decimal_formats_every_magnitude() {
        for value in [0, 7, 10, 999, 1_000, 123_456_789, u64::MAX] {
            assert_eq!(decimal(value, &mut [0; 20]), value.to_string().as_bytes());
        }
    }

    #[test]
    fn huge_retry_saturates() {
        assert_eq!(
            &encode_retry(Duration::MAX)[..],
            b"retry: 18446744073709551615\n"
        );
    }
}
