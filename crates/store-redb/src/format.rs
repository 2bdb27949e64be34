//! The record format: how a record and a recipient set are laid out in the file.
//!
//! Fixed-width numbers are little-endian; a string is a u32 length and UTF-8; a list is a u32
//! count, then each string, sorted and distinct (as [`Recipients`] keeps them: any other order
//! is damage, so that a list has one encoding).
//!
//! Format 3 (this build), a record (a value of the `events` table), unchanged since format 2:
//!
//! ```text
//!   tag (u8, 2)  saved_at (u64 ms since the UNIX epoch)  flags (u8)    <- the header
//!   [set (u64): key of its recipient set, if flags & 8; none: a broadcast]
//!   [id, if flags & 1]  [event type, if flags & 2]  [retry (u64 ms), if flags & 4]  data
//! ```
//!
//! A recipient set (a value of the `recipients` table, keyed by the seq of the first record that
//! used it): the list of uids, then, only if there are topics, the list of topics (its count at
//! least 1). A set without topics is thus laid out as format 2 laid out every set (the uids
//! only), so a format-2 file needs no rewrite; and writing no topic part rather than an empty
//! one keeps a set to one encoding. Format 3 has its own version only so that older builds,
//! which would take a topic part for damage, refuse the file.
//!
//! Format 1 (files written before the format had a version) kept the recipients inside each
//! record: `saved_at, recipients (u32 count or u32::MAX for everyone, then each uid), flags, id,
//! type, retry, data`. It is only read, to migrate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ssehub_store::{Listed, Recipients, Record, StoreError};
use ssehub_wire::{Event, Utf8Bytes};

/// The format this build writes (and the newest it reads).
pub(crate) const VERSION: u64 = 3;
/// The first byte of every record since format 2: a record that does not start with it is
/// damaged. Format 3 changed only the sets, so its records keep format 2's tag.
const TAG: u8 = 2;

const HAS_ID: u8 = 1;
const HAS_TYPE: u8 = 2;
const HAS_RETRY: u8 = 4;
const HAS_SET: u8 = 8;
/// Every flag formats 2 and 3 define: a record with another one set is damaged.
const FLAGS: u8 = HAS_ID | HAS_TYPE | HAS_RETRY | HAS_SET;

/// What retention and `seq_of` need of a record, readable without decoding the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) saved_at: SystemTime,
    /// The key of its recipient set; `None` for a broadcast.
    pub(crate) set: Option<u64>,
}

/// Appends `record` in format 3, its recipients being the set `set` (`None`: a broadcast).
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
pub(crate) fn encode_set(set: &Listed, buf: &mut Vec<u8>) {
    put_list(buf, set.uids());
    // No topic part for no topics: one encoding per set, format 2's when it has none.
    if !set.topics().is_empty() {
        put_list(buf, set.topics());
    }
}

/// The header of a record.
pub(crate) fn header(seq: u64, bytes: &[u8]) -> Result<Header, StoreError> {
    Reader { seq, bytes }.header()
}

/// The event id of a record, if it has one and it can be read.
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

/// Decodes a record; `set` loads the recipient set with the given key.
pub(crate) fn decode(
    seq: u64,
    bytes: &[u8],
    set: impl FnOnce(u64) -> Result<Listed, StoreError>,
) -> Result<Record, StoreError> {
    let mut reader = Reader { seq, bytes };
    let (saved_at, flags) = reader.header_flags()?;
    let recipients = if flags & HAS_SET != 0 {
        Recipients::Listed(set(reader.u64()?)?)
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

/// Decodes a recipient set (of format 2 or 3), naming in errors the record `seq` that refers to
/// it and the set's `key`.
pub(crate) fn decode_set(seq: u64, key: u64, bytes: &[u8]) -> Result<Listed, StoreError> {
    let mut reader = Reader { seq, bytes };
    let (uids, topics) = reader.set().map_err(|error| match error {
        StoreError::Corrupt { seq, reason } => StoreError::Corrupt {
            seq,
            reason: format!("its recipient set {key} is damaged: {reason}"),
        },
        other => other,
    })?;
    Ok(listed(uids, topics))
}

/// The [`Listed`] of these uids and topics.
fn listed(uids: Vec<&str>, topics: Vec<&str>) -> Listed {
    Listed::new(uids, topics)
}

/// Format 1, read only to migrate a file to format 3.
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
            // Builds of format 1 wrote a broadcast as ALL, never as no uids; a list of none, which
            // they read as reaching nobody, still does. They wrote uids sorted and distinct
            // (`Recipients::uids`), as `names` requires.
            count => Recipients::uids(reader.names(count)?),
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

    /// Encodes a record in format 1, as builds before the format version wrote it. Format 1 had
    /// no topics: a record's are left out.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn encode(record: &Record, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&super::millis(record.saved_at).to_le_bytes());
        match &record.recipients {
            Recipients::All => buf.extend_from_slice(&ALL.to_le_bytes()),
            Recipients::Listed(listed) => super::put_list(buf, listed.uids()),
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

fn put_list(buf: &mut Vec<u8>, names: &[impl AsRef<str>]) {
    put_len(buf, names.len());
    for name in names {
        put_str(buf, name.as_ref());
    }
}

/// Reads the record format, naming the record in every error.
struct Reader<'a> {
    seq: u64,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
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

    /// A recipient set's uids and topics.
    fn set(&mut self) -> Result<(Vec<&'a str>, Vec<&'a str>), StoreError> {
        let uids = self.list()?;
        // Format 2's sets, and format 3's without topics, end here.
        let topics = if self.bytes.is_empty() {
            Vec::new()
        } else {
            let topics = self.list()?;
            if topics.is_empty() {
                // Written as no topic part: an empty one would be a second encoding.
                return Err(self.corrupt("its topic list is empty".to_owned()));
            }
            topics
        };
        self.finish()?;
        Ok((uids, topics))
    }

    fn list(&mut self) -> Result<Vec<&'a str>, StoreError> {
        let count = self.u32()?;
        self.names(count)
    }

    /// `count` strings, sorted and distinct.
    fn names(&mut self, count: u32) -> Result<Vec<&'a str>, StoreError> {
        let count = count as usize;
        // A damaged count must not reserve gigabytes: each string takes at least its 4-byte
        // length.
        if count > self.bytes.len() / 4 {
            return Err(self.corrupt(format!("a count of {count} is damaged")));
        }
        let mut names: Vec<&str> = Vec::with_capacity(count);
        for _ in 0..count {
            let name = self.str()?;
            // Written sorted and distinct: anything else would decode to a list that encodes
            // otherwise.
            if names.last().is_some_and(|&last| last >= name) {
                return Err(self.corrupt("a list is not sorted and distinct".to_owned()));
            }
            names.push(name);
        }
        Ok(names)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], StoreError> {
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

    /// A string, borrowed from the bytes read.
    fn str(&mut self) -> Result<&'a str, StoreError> {
        let len = self.u32()? as usize;
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map_err(|error| self.corrupt(format!("a text field is not UTF-8: {error}")))
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
