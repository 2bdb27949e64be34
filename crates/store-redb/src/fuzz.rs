//! The record format's functions for `crates/store-redb/fuzz`, behind the `fuzzing` feature.
//! Not an API: it changes with the format.

use std::time::SystemTime;

use ssehub_store::{Listed, Record, StoreError};

use crate::format;

/// Appends `record` in format 3, its recipients being the set `set` (`None`: a broadcast).
pub fn encode(record: &Record, set: Option<u64>, buf: &mut Vec<u8>) {
    format::encode(record, set, buf);
}

/// Appends a recipient set (format 3; one without topics is laid out as in format 2).
pub fn encode_set(set: &Listed, buf: &mut Vec<u8>) {
    format::encode_set(set, buf);
}

/// Appends `record` in format 1 (its topics left out: format 1 had none).
pub fn encode_v1(record: &Record, buf: &mut Vec<u8>) {
    format::v1::encode(record, buf);
}

/// A record's `saved_at` and recipient set key.
pub fn header(seq: u64, bytes: &[u8]) -> Result<(SystemTime, Option<u64>), StoreError> {
    format::header(seq, bytes).map(|header| (header.saved_at, header.set))
}

/// A record's event id.
pub fn id(seq: u64, bytes: &[u8]) -> Option<String> {
    format::id(seq, bytes)
}

/// Decodes a record; `set` loads the recipient set with the given key.
pub fn decode(
    seq: u64,
    bytes: &[u8],
    set: impl FnOnce(u64) -> Result<Listed, StoreError>,
) -> Result<Record, StoreError> {
    format::decode(seq, bytes, set)
}

/// Decodes a recipient set (format 2 or 3).
pub fn decode_set(seq: u64, key: u64, bytes: &[u8]) -> Result<Listed, StoreError> {
    format::decode_set(seq, key, bytes)
}

/// Decodes a format-1 record.
pub fn decode_v1(seq: u64, bytes: &[u8]) -> Result<Record, StoreError> {
    format::v1::decode(seq, bytes)
}
