//! The record format: how a record and a recipient set are laid out in the file.
//!
//! Fixed-width numbers are little-endian; a string is a u32 length and UTF-8.
//!
//! Format 2 (this build), a record (a value of the `events` table):
//!
//! ```text
//!   tag (u8, 2)  saved_at (u64 ms since the UNIX epoch)  flags (u8)    <- the header
//!   [set (u64): key of its recipient set, if flags & 8; none: a broadcast]
//!   [id, if flags & 1]  [event type, if flags & 2]  [retry (u64 ms), if flags & 4]  data
//! ```
//!
//! A recipient set (a value of the `recipients` table, keyed by the seq of the first record that
//! used it): a u32 count, then each uid.
//!
//! Format 1 (files written before the format had a version) kept the recipients inside each
//! record: `saved_at, recipients (u32 count or u32::MAX for everyone, then each uid), flags, id,
//! type, retry, data`. It is only read, to migrate.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ssehub_store::{Recipients, Record, StoreError};
use ssehub_wire::{Event, Utf8Bytes};

/// The format this build writes (and the newest it reads).
pub(crate) const VERSION: u64 = 2;
/// The first byte of every format-2 record: a record that does not start with it is damaged.
const TAG: u8 = 2;

const HAS_ID: u8 = 1;
const HAS_TYPE: u8 = 2;
const HAS_RETRY: u8 = 4;
const HAS_SET: u8 = 8;
/// Every flag format 2 defines: a record with another one set is damaged.
const FLAGS: u8 = HAS_ID | HAS_TYPE | HAS_RETRY | HAS_SET;

/// A uid list shared by records.
pub(crate) type Uids = Arc<[Arc<str>]>;

/// What retention and `seq_of` need of a record, readable without decoding the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) saved_at: SystemTime,
    /// The key of its recipient set; `None` for a broadcast.
    pub(crate) set: Option<u64>,
}

/// Appends `record` in format 2, its recipients being the set `set` (`None`: a broadcast).
pub(crate) fn encode(record: &Record, set: Option<u64>, buf: &mut Vec<u8>) {
    let event = &record.event;
    let flag = |set: bool, bit: u8| if set { bit } else { 0 };
    let flags = flag(event.id.is_some(), HAS_ID)
        | flag(event.event.is_some(), HAS_TYPE)
        | flag(event.retry.is_some(), HAS_RETRY)
        | flag(set.is_some(), HAS_SET);
    buf.push(TAG);
    buf.extend_from_slice(&millis(record.saved_at).to_le_bytes());
    buf.push(flags);
    if let Some(set) = set {
        buf.extend_from_slice(&set.to_le_bytes());
    }
    put_event_fields(event, buf);
}

/// Appends a recipient set.
pub(crate) fn encode_set(uids: &[Arc<str>], buf: &mut Vec<u8>) {
    put_len(buf, uids.len());
    for uid in uids {
        put_str(buf, uid);
    }
}

/// The header of a format-2 record.
pub(crate) fn header(seq: u64, bytes: &[u8]) -> Result<Header, StoreError> {
    Reader { seq, bytes }.header()
}

/// The event id of a format-2 record, if it has one and it can be read.
pub(crate) fn id(seq: u64, bytes: &[u8]) -> Option<String> {
    let mut reader = Reader { seq, bytes };
    let (_, flags) = reader.header_flags().ok()?;
    if flags & HAS_SET != 0 {
        reader.u64().ok()?;
    }
    (flags & HAS_ID != 0)
        .then(|| reader.text().ok().map(String::from))
        .flatten()
}

/// Decodes a format-2 record; `set` loads the recipient set with the given key.
pub(crate) fn decode(
    seq: u64,
    bytes: &[u8],
    set: impl FnOnce(u64) -> Result<Uids, StoreError>,
) -> Result<Record, StoreError> {
    let mut reader = Reader { seq, bytes };
    let (saved_at, flags) = reader.header_flags()?;
    let recipients = if flags & HAS_SET != 0 {
        Recipients::Uids(set(reader.u64()?)?)
    } else {
        Recipients::All
    };
    let event = reader.event_fields(flags)?;
    reader.finish()?;
    Ok(Record {
        seq,
        event,
        recipients,
        saved_at,
    })
}

/// Decodes a recipient set, naming in errors the record `seq` that refers to it.
pub(crate) fn decode_set(seq: u64, key: u64, bytes: &[u8]) -> Result<Uids, StoreError> {
    let mut reader = Reader { seq, bytes };
    let count = reader.u32()?;
    // A damaged count must not reserve gigabytes: each uid takes at least its 4-byte length.
    if count as usize > bytes.len() / 4 {
        return Err(reader.corrupt(format!("its recipient set {key} is damaged")));
    }
    let uids = (0..count)
        .map(|_| reader.text().map(|uid| Arc::from(uid.as_str())))
        .collect::<Result<Vec<_>, _>>()?;
    reader.finish()?;
    Ok(uids.into())
}

/// Format 1, read only to migrate a file to format 2.
pub(crate) mod v1 {
    use super::{
        ALL, Duration, HAS_ID, HAS_RETRY, HAS_TYPE, Recipients, Record, StoreError, UNIX_EPOCH,
    };

    /// Every flag format 1 defined.
    const FLAGS: u8 = HAS_ID | HAS_TYPE | HAS_RETRY;

    /// Decodes a format-1 record.
    pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<Record, StoreError> {
        let mut reader = super::Reader { seq, bytes };
        let saved_at = UNIX_EPOCH + Duration::from_millis(reader.u64()?);
        let recipients = match reader.u32()? {
            ALL => Recipients::All,
            count if count as usize > bytes.len() / 4 => {
                return Err(reader.corrupt("its recipient count is damaged".to_owned()));
            }
            count => {
                let uids = (0..count)
                    .map(|_| reader.text().map(|uid| uid.as_str().into()))
                    .collect::<Result<Vec<_>, _>>()?;
                Recipients::Uids(uids.into())
            }
        };
        let flags = reader.u8()?;
        if flags & !FLAGS != 0 {
            return Err(reader.corrupt(format!("unknown flags {flags:#x}")));
        }
        let event = reader.event_fields(flags)?;
        reader.finish()?;
        Ok(Record {
            seq,
            event,
            recipients,
            saved_at,
        })
    }

    /// Encodes a record in format 1, as builds before the format version wrote it.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn encode(record: &Record, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&super::millis(record.saved_at).to_le_bytes());
        match &record.recipients {
            Recipients::All => buf.extend_from_slice(&ALL.to_le_bytes()),
            Recipients::Uids(uids) => super::encode_set(uids, buf),
        }
        let event = &record.event;
        let flag = |set: bool, bit: u8| if set { bit } else { 0 };
        buf.push(
            flag(event.id.is_some(), super::HAS_ID)
                | flag(event.event.is_some(), super::HAS_TYPE)
                | flag(event.retry.is_some(), super::HAS_RETRY),
        );
        super::put_event_fields(event, buf);
    }
}

/// Format 1's recipient count for a broadcast.
const ALL: u32 = u32::MAX;

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// id, event type, retry (as the flags say), data.
fn put_event_fields(event: &Event, buf: &mut Vec<u8>) {
    if let Some(id) = &event.id {
        put_str(buf, id);
    }
    if let Some(event_type) = &event.event {
        put_str(buf, event_type);
    }
    if let Some(retry) = event.retry {
        let millis = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
        buf.extend_from_slice(&millis.to_le_bytes());
    }
    put_str(buf, &event.data);
}

fn put_len(buf: &mut Vec<u8>, len: usize) {
    // Events are bounded far below 4 GiB by the push API's body limit.
    let len = u32::try_from(len).unwrap_or(u32::MAX - 1);
    buf.extend_from_slice(&len.to_le_bytes());
}

fn put_str(buf: &mut Vec<u8>, text: &str) {
    put_len(buf, text.len());
    buf.extend_from_slice(text.as_bytes());
}

/// Reads the record format, naming the record in every error.
struct Reader<'a> {
    seq: u64,
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            seq: self.seq,
            reason,
        }
    }

    fn header(&mut self) -> Result<Header, StoreError> {
        let (saved_at, flags) = self.header_flags()?;
        let set = (flags & HAS_SET != 0).then(|| self.u64()).transpose()?;
        Ok(Header { saved_at, set })
    }

    /// Reads the tag, `saved_at` and the flags.
    fn header_flags(&mut self) -> Result<(SystemTime, u8), StoreError> {
        let tag = self.u8()?;
        if tag != TAG {
            return Err(self.corrupt(format!("it starts with {tag}, not the record tag {TAG}")));
        }
        let saved_at = UNIX_EPOCH + Duration::from_millis(self.u64()?);
        let flags = self.u8()?;
        if flags & !FLAGS != 0 {
            return Err(self.corrupt(format!("unknown flags {flags:#x}")));
        }
        Ok((saved_at, flags))
    }

    /// Refuses bytes after the last field: a length damaged to less than it was leaves them, and
    /// the record must not pass for a shorter one.
    fn finish(&self) -> Result<(), StoreError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt(format!("{} bytes follow its last field", self.bytes.len())))
        }
    }

    fn event_fields(&mut self, flags: u8) -> Result<Event, StoreError> {
        let id = (flags & HAS_ID != 0).then(|| self.text()).transpose()?;
        let event_type = (flags & HAS_TYPE != 0).then(|| self.text()).transpose()?;
        let retry = (flags & HAS_RETRY != 0)
            .then(|| self.u64().map(Duration::from_millis))
            .transpose()?;
        let data = self.text()?;
        let mut event = Event::new(data);
        event.id = id;
        event.event = event_type;
        event.retry = retry;
        Ok(event)
    }

    fn take(&mut self, len: usize) -> Result<&[u8], StoreError> {
        if self.bytes.len() < len {
            return Err(self.corrupt("the record ends early".to_owned()));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let mut raw = [0; 4];
        raw.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(raw))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let mut raw = [0; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }

    fn text(&mut self) -> Result<Utf8Bytes, StoreError> {
        let len = self.u32()? as usize;
        let seq = self.seq;
        let raw = Bytes::copy_from_slice(self.take(len)?);
        Utf8Bytes::try_from_bytes(raw).map_err(|error| StoreError::Corrupt {
            seq,
            reason: format!("a text field is not UTF-8: {error}"),
        })
    }
}
