//! The Server-Sent Events wire format, as the WHATWG HTML Living Standard defines it (section
//! "Server-sent events"): no I/O, no async runtime.
//!
//! - [`Event`] and its encoder ([`Event::encode`]), which refuses field injection: an event type or
//!   id holding CR or LF, or an id holding NUL, is an [`EncodeError`]; data with any line endings
//!   becomes one `data:` line per line. [`encode_comment`], [`heartbeat`] and [`encode_retry`]
//!   write the other things a server sends.
//! - [`Decoder`], an incremental decoder fed chunks of any size, with limits against memory abuse.
//! - [`Utf8Bytes`], the cheaply cloned text both sides use, so an event encoded once can be shared
//!   by every connection and a decoded value is a slice of the read buffer.
//!
//! # Examples
//!
//! ```
//! use bytes::BytesMut;
//! use ssehub_wire::{Decoder, Event, Frame};
//!
//! let sent = Event::new("line one\nline two").with_id("1").with_event("update");
//! let mut buf = BytesMut::from(&sent.encode()?[..]);
//!
//! let mut decoder = Decoder::new();
//! assert_eq!(decoder.decode(&mut buf)?, Some(Frame::Event(sent)));
//! assert_eq!(decoder.last_event_id(), "1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decode;
mod encode;
mod event;
mod utf8_bytes;

pub use decode::{DEFAULT_MAX_EVENT_LEN, DEFAULT_MAX_LINE_LEN, DecodeError, Decoder, Frame};
pub use encode::{EncodeError, encode_comment, encode_retry, heartbeat};
pub use event::{DEFAULT_EVENT_TYPE, Event};
pub use utf8_bytes::Utf8Bytes;
