//! The decoder: SSE bytes, in chunks of any size, to [`Frame`]s.
//!
//! A resumable state machine over the caller's [`BytesMut`], following the WHATWG HTML Living
//! Standard, "Server-sent events", section "Interpreting an event stream". Data values are sliced
//! out of the read buffer rather than copied, so a large `data:` line costs one scan for the line
//! end and one UTF-8 check.

use std::fmt;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{Event, Utf8Bytes};

/// What the decoder reports, in stream order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Frame {
    /// A dispatched event: a blank line ended a block holding at least one `data` field.
    Event(Event),
    /// A valid `retry:` field: the stream's reconnection time is now this long. Reported as soon as
    /// it is read, whether or not an event follows.
    Retry(Duration),
    /// A comment line (starting with `:`), without the colon and one following space. Clients
    /// ignore comments; servers send them as heartbeats.
    Comment(Utf8Bytes),
}

/// Why decoding stopped. Both errors guard memory: the stream cannot go on (the bytes in the buffer
/// are mid-line), so drop the connection, [`reset`](Decoder::reset) the decoder and clear the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeError {
    /// A line grew past the limit set with [`Decoder::max_line_len`] before it ended.
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The data of one event grew past the limit set with [`Decoder::max_event_len`].
    EventTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong { limit } => write!(
                f,
                "SSE line longer than the limit of {limit} bytes; raise the decoder's max_line_len if the server really sends such lines"
            ),
            Self::EventTooLarge { limit } => write!(
                f,
                "SSE event data larger than the limit of {limit} bytes; raise the decoder's max_event_len if the server really sends such events"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Default limit on one line, in bytes: 4 MiB.
pub const DEFAULT_MAX_LINE_LEN: usize = 4 << 20;
/// Default limit on one event's data, in bytes: 4 MiB.
pub const DEFAULT_MAX_EVENT_LEN: usize = 4 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An incremental SSE decoder.
///
/// Append each chunk read from the connection to a [`BytesMut`] and call [`decode`](Self::decode)
/// until it returns `Ok(None)`; call [`decode_eof`](Self::decode_eof) once the stream ends. Chunks
/// may split the stream anywhere: inside a CRLF, a UTF-8 character or the byte order mark. Between
/// calls, only append to the buffer.
///
/// The decoder keeps the stream's last event id (what a client sends as `Last-Event-ID` when it
/// reconnects) across events and across streams; [`reset`](Self::reset) starts a new stream.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use ssehub_wire::{Decoder, Event, Frame};
///
/// let mut decoder = Decoder::new();
/// let mut buf = BytesMut::new();
/// let mut frames = Vec::new();
/// for chunk in [&b"id: 1\r"[..], b"\ndata: hel", b"lo\r\n\r\n: ping\n"] {
///     buf.extend_from_slice(chunk);
///     while let Some(frame) = decoder.decode(&mut buf)? {
///         frames.push(frame);
///     }
/// }
/// assert_eq!(
///     frames,
///     [
///         Frame::Event(Event::new("hello").with_id("1")),
///         Frame::Comment("ping".into()),
///     ]
/// );
/// assert_eq!(decoder.last_event_id(), "1");
/// # Ok::<(), ssehub_wire::DecodeError>(())
/// ```
#[derive(Debug)]
pub struct Decoder {
    max_line_len: usize,
    max_event_len: usize,
    /// No byte of the current stream has been read yet, so a BOM may still come.
    at_stream_start: bool,
    /// The last line ended with a CR at the very end of the buffer; an LF next is part of it.
    skip_lf: bool,
    /// Bytes at the front of the buffer already searched for a line end.
    scanned: usize,
    data: DataBuffer,
    event_type: Option<Utf8Bytes>,
    /// The spec's "last event ID buffer": set by `id:`, committed when a blank line dispatches.
    id_buffer: Utf8Bytes,
    /// The spec's "last event ID string" of the event source.
    last_event_id: Utf8Bytes,
    /// The type of the previous event, reused so a stream of one type allocates it once.
    recent_type: Utf8Bytes,
}

/// The spec's data buffer, without copying the common single-line case.
#[derive(Debug, Default)]
enum DataBuffer {
    /// No `data` field yet: a blank line dispatches nothing.
    #[default]
    Empty,
    /// One `data` field, still a slice of the read buffer.
    One(Bytes),
    /// Several fields joined with LF.
    Many(BytesMut),
}

impl DataBuffer {
    fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(line) => line.len(),
            Self::Many(lines) => lines.len(),
        }
    }

    fn push(&mut self, value: Bytes) {
        *self = match std::mem::take(self) {
            Self::Empty => Self::One(value),
            Self::One(first) => {
                let mut lines = BytesMut::with_capacity(first.len() + 1 + value.len());
                lines.put_slice(&first);
                lines.put_u8(b'\n');
                lines.put_slice(&value);
                Self::Many(lines)
            }
            Self::Many(mut lines) => {
                lines.reserve(1 + value.len());
                lines.put_u8(b'\n');
                lines.put_slice(&value);
                Self::Many(lines)
            }
        }
    }
}

/// The fields the spec gives meaning to; all others are ignored.
#[derive(Clone, Copy)]
enum Field {
    Data,
    Event,
    Id,
    Retry,
    Unknown,
}

impl Field {
    fn from_name(name: &[u8]) -> Self {
        match name {
            b"data" => Self::Data,
            b"event" => Self::Event,
            b"id" => Self::Id,
            b"retry" => Self::Retry,
            _ => Self::Unknown,
        }
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with the default limits ([`DEFAULT_MAX_LINE_LEN`], [`DEFAULT_MAX_EVENT_LEN`]).
    ///
    /// ```
    /// let decoder = ssehub_wire::Decoder::new();
    /// assert_eq!(decoder.last_event_id(), "");
    /// ```
    pub fn new() -> Self {
        Self {
            max_line_len: DEFAULT_MAX_LINE_LEN,
            max_event_len: DEFAULT_MAX_EVENT_LEN,
            at_stream_start: true,
            skip_lf: false,
            scanned: 0,
            data: DataBuffer::Empty,
            event_type: None,
            id_buffer: Utf8Bytes::new(),
            last_event_id: Utf8Bytes::new(),
            recent_type: Utf8Bytes::new(),
        }
    }

    /// Limits one line, in bytes without its line ending; a longer line is
    /// [`DecodeError::LineTooLong`]. This bounds the read buffer: without it a server that never
    /// ends a line could grow it without end.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use ssehub_wire::{DecodeError, Decoder};
    ///
    /// let mut decoder = Decoder::new().max_line_len(8);
    /// let mut buf = BytesMut::from(&b"data: 123456789"[..]);
    /// assert_eq!(decoder.decode(&mut buf), Err(DecodeError::LineTooLong { limit: 8 }));
    /// ```
    #[must_use]
    pub fn max_line_len(mut self, limit: usize) -> Self {
        self.max_line_len = limit;
        self
    }

    /// Limits one event's data, in bytes (its `data` values joined with LF); more is
    /// [`DecodeError::EventTooLarge`]. This bounds the memory of a block of many short `data` lines.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use ssehub_wire::{DecodeError, Decoder};
    ///
    /// let mut decoder = Decoder::new().max_event_len(4);
    /// let mut buf = BytesMut::from(&b"data: ab\ndata: cd\n"[..]);
    /// assert_eq!(decoder.decode(&mut buf), Err(DecodeError::EventTooLarge { limit: 4 }));
    /// ```
    #[must_use]
    pub fn max_event_len(mut self, limit: usize) -> Self {
        self.max_event_len = limit;
        self
    }

    /// The stream's last event id: the `id` in force when the last blank line was read, including
    /// the blank line of a block that had no data. A reconnecting client sends it as
    /// `Last-Event-ID` (none when empty).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// let mut decoder = ssehub_wire::Decoder::new();
    /// let mut buf = BytesMut::from(&b"id: 7\n\n"[..]);
    /// assert_eq!(decoder.decode(&mut buf), Ok(None)); // no data: nothing dispatched
    /// assert_eq!(decoder.last_event_id(), "7");
    /// ```
    pub fn last_event_id(&self) -> &Utf8Bytes {
        &self.last_event_id
    }

    /// Sets the last event id, for a client that resumes from an id it saved earlier.
    ///
    /// ```
    /// let mut decoder = ssehub_wire::Decoder::new();
    /// decoder.set_last_event_id("41".into());
    /// assert_eq!(decoder.last_event_id(), "41");
    /// ```
    pub fn set_last_event_id(&mut self, id: Utf8Bytes) {
        self.id_buffer = id.clone();
        self.last_event_id = id;
    }

    /// Readies the decoder for a new stream (a reconnection): a BOM may come again and a
    /// half-read event is dropped. The last event id is kept. Clear your buffer too.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use ssehub_wire::Decoder;
    ///
    /// let mut decoder = Decoder::new();
    /// let mut buf = BytesMut::from(&b"id: 1\n\ndata: cut off"[..]);
    /// while decoder.decode(&mut buf)?.is_some() {}
    /// decoder.reset();
    /// buf.clear();
    /// assert_eq!(decoder.last_event_id(), "1");
    /// # Ok::<(), ssehub_wire::DecodeError>(())
    /// ```
    pub fn reset(&mut self) {
        self.at_stream_start = true;
        self.skip_lf = false;
        self.scanned = 0;
        self.data = DataBuffer::Empty;
        self.event_type = None;
        self.id_buffer = self.last_event_id.clone();
    }

    /// Decodes the next frame from the front of `buf`, consuming what it read. `Ok(None)` means more
    /// bytes are needed; the incomplete rest stays in `buf`.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when a limit is passed; see there.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use ssehub_wire::{Decoder, Frame};
    ///
    /// let mut decoder = Decoder::new();
    /// let mut buf = BytesMut::from(&b"retry: 500\ndata: x"[..]);
    /// assert_eq!(
    ///     decoder.decode(&mut buf)?,
    ///     Some(Frame::Retry(std::time::Duration::from_millis(500)))
    /// );
    /// assert_eq!(decoder.decode(&mut buf)?, None);
    /// assert_eq!(&buf[..], b"data: x");
    /// # Ok::<(), ssehub_wire::DecodeError>(())
    /// ```
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        loop {
            if self.at_stream_start {
                let seen = buf.len().min(BOM.len());
                if buf[..seen] != BOM[..seen] {
                    self.at_stream_start = false;
                } else if seen < BOM.len() {
                    return Ok(None);
                } else {
                    buf.advance(BOM.len());
                    self.at_stream_start = false;
                }
            }
            if self.skip_lf {
                match buf.first() {
                    None => return Ok(None),
                    Some(&b'\n') => buf.advance(1),
                    Some(_) => {}
                }
                self.skip_lf = false;
            }

            // A caller that shrank the buffer without `reset` gets a rescan, not a panic.
            let from = if self.scanned <= buf.len() {
                self.scanned
            } else {
                0
            };
            let Some(end) = memchr::memchr2(b'\r', b'\n', &buf[from..]).map(|at| at + from) else {
                self.scanned = buf.len();
                if buf.len() > self.max_line_len {
                    return Err(DecodeError::LineTooLong {
                        limit: self.max_line_len,
                    });
                }
                return Ok(None);
            };
            if end > self.max_line_len {
                return Err(DecodeError::LineTooLong {
                    limit: self.max_line_len,
                });
            }
            self.scanned = 0;
            let ending = if buf[end] == b'\n' {
                1
            } else {
                match buf.get(end + 1) {
                    Some(&b'\n') => 2,
                    Some(_) => 1,
                    None => {
                        self.skip_lf = true;
                        1
                    }
                }
            };
            if let Some(frame) = self.process_line(buf, end, ending)? {
                return Ok(Some(frame));
            }
        }
    }

    /// Like [`decode`](Self::decode), for when the stream has ended: once every complete line is
    /// read it returns `Ok(None)`, dropping an unterminated last line and an event with no closing
    /// blank line (as the spec requires), clearing `buf` and [resetting](Self::reset) for the next
    /// stream.
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use ssehub_wire::Decoder;
    ///
    /// let mut decoder = Decoder::new();
    /// let mut buf = BytesMut::from(&b"data: never finished\n"[..]);
    /// assert_eq!(decoder.decode_eof(&mut buf)?, None);
    /// assert!(buf.is_empty());
    /// # Ok::<(), ssehub_wire::DecodeError>(())
    /// ```
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let frame = self.decode(buf)?;
        if frame.is_none() {
            buf.clear();
            self.reset();
        }
        Ok(frame)
    }

    /// Interprets the line `buf[..end]`, then consumes it and its `ending` bytes of line end.
    fn process_line(
        &mut self,
        buf: &mut BytesMut,
        end: usize,
        ending: usize,
    ) -> Result<Option<Frame>, DecodeError> {
        let line = &buf[..end];
        if line.is_empty() {
            buf.advance(ending);
            return Ok(self.dispatch().map(Frame::Event));
        }
        if line[0] == b':' {
            let text_start = 1 + usize::from(line.get(1) == Some(&b' '));
            let text = split_value(buf, text_start, end, ending);
            return Ok(Some(Frame::Comment(Utf8Bytes::from_bytes_lossy(text))));
        }
        let (field, value_start) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let after_space = usize::from(line.get(colon + 1) == Some(&b' '));
                (Field::from_name(&line[..colon]), colon + 1 + after_space)
            }
            None => (Field::from_name(line), end),
        };
        match field {
            Field::Data => {
                let separator = usize::from(!matches!(self.data, DataBuffer::Empty));
                if self.data.len() + separator + (end - value_start) > self.max_event_len {
                    return Err(DecodeError::EventTooLarge {
                        limit: self.max_event_len,
                    });
                }
                let value = split_value(buf, value_start, end, ending);
                self.data.push(value);
            }
            Field::Id => {
                let value = split_value(buf, value_start, end, ending);
                // The spec ignores an id holding NUL, so a stream cannot make a client resend one.
                if memchr::memchr(0, &value).is_none() {
                    self.id_buffer = Utf8Bytes::from_bytes_lossy(value);
                }
            }
            // Read in place: neither keeps a slice of the buffer.
            Field::Event => {
                self.event_type = Some(self.intern_type(&buf[value_start..end]));
                buf.advance(end + ending);
            }
            Field::Retry => {
                let millis = parse_retry(&buf[value_start..end]);
                buf.advance(end + ending);
                if let Some(millis) = millis {
                    return Ok(Some(Frame::Retry(Duration::from_millis(millis))));
                }
            }
            Field::Unknown => buf.advance(end + ending),
        }
        Ok(None)
    }

    /// The spec's "dispatch the event" steps.
    fn dispatch(&mut self) -> Option<Event> {
        self.last_event_id = self.id_buffer.clone();
        let event_type = self.event_type.take();
        let data = match std::mem::take(&mut self.data) {
            DataBuffer::Empty => return None,
            DataBuffer::One(line) => line,
            DataBuffer::Many(lines) => lines.freeze(),
        };
        Some(Event {
            id: (!self.last_event_id.is_empty()).then(|| self.last_event_id.clone()),
            event: event_type.filter(|t| !t.is_empty()),
            data: Utf8Bytes::from_bytes_lossy(data),
            retry: None,
        })
    }

    fn intern_type(&mut self, value: &[u8]) -> Utf8Bytes {
        if self.recent_type.as_bytes() != value {
            // Copied, not sliced: the type outlives the read buffer it came from.
            self.recent_type = Utf8Bytes::from_bytes_lossy(Bytes::copy_from_slice(value));
        }
        self.recent_type.clone()
    }
}

/// Consumes the line and its ending from `buf` and returns `buf[start..end]` without copying.
fn split_value(buf: &mut BytesMut, start: usize, end: usize, ending: usize) -> Bytes {
    let mut line = buf.split_to(end + ending).freeze();
    line.truncate(end);
    line.advance(start);
    line
}

/// A `retry` value counts only when it is all ASCII digits; one too large for `u64` is ignored too.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &digit| {
        acc.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_cleared_without_reset_does_not_panic() {
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::from(&b"data: a long unfinished line"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.clear();
        buf.extend_from_slice(b"data: x\n\n");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(Frame::Event(Event::new("x"))))
        );
    }
}
