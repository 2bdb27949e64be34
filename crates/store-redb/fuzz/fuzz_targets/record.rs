//! The store's record format: format 3 records and recipient sets (format 2's are the same, sets
//! without topics), and format-1 records (read to migrate old files).
//!
//! Checks, on arbitrary bytes and on valid encodings with a byte damaged:
//! - no decoder panics, and each allocates at most a small multiple of its input (a damaged
//!   length must not reserve what the record does not hold);
//! - whatever decodes is the only encoding of what it decodes to: encoding it again gives the
//!   same bytes, so no damage goes unnoticed as a different record;
//! - `header` and `id` agree with `decode`.
//!
//! And for records built from the input: encode → decode gives the record back (format 1, without
//! topics, and format 3, recipient sets too), and no shorter prefix of an encoding decodes but,
//! for a set with topics, its uids alone (as format 2 wrote a set).
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run record --fuzz-dir crates/store-redb/fuzz`

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use ssehub_store::{Event, Listed, Recipients, Record, StoreError};
use ssehub_store_redb::__fuzz as format;

/// Counts the bytes allocated and their peak, so that a decoder's footprint can be bounded.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn add(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Both blocks may be live at once while the bytes move.
        add(new_size);
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f`, returning its result and the most it had allocated at once beyond what was live
/// before (what it returns included).
fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed) - base)
}

/// What a decoder may allocate for `len` bytes of input: each uid or topic takes at least 4 bytes
/// of input (its length) and costs a slot in the list read (16 bytes), an `Arc<str>` (16 bytes +
/// text) and a slot in the list kept (16 bytes); a record's other text fields are copied once
/// into `Bytes`.
fn budget(len: usize) -> usize {
    32 * len + 1024
}

#[derive(Arbitrary, Debug)]
struct Input {
    seq: u64,
    /// Bytes read as a record, as a recipient set and as a format-1 record.
    bytes: Vec<u8>,
    /// A record to encode.
    record: RecordSpec,
    /// A byte of the record's encodings to damage: position (modulo the length) and XOR mask.
    damage: (u16, u8),
}

#[derive(Arbitrary, Debug)]
struct RecordSpec {
    saved_at_ms: u64,
    id: Option<String>,
    event: Option<String>,
    retry_ms: Option<u64>,
    data: String,
    /// `None`: a broadcast; else the recipient set's key, uids and topics.
    listed: Option<(u64, Vec<String>, Vec<String>)>,
}

impl RecordSpec {
    fn record(&self, seq: u64) -> Record {
        let mut event = Event::new(self.data.as_str());
        event.id = self.id.as_deref().map(Into::into);
        event.event = self.event.as_deref().map(Into::into);
        event.retry = self.retry_ms.map(Duration::from_millis);
        let recipients = match &self.listed {
            None => Recipients::All,
            Some((_, uids, topics)) => Recipients::new(uids, topics),
        };
        Record {
            seq,
            event,
            recipients,
            saved_at: UNIX_EPOCH + Duration::from_millis(self.saved_at_ms),
        }
    }
}

fn assert_corrupt(seq: u64, error: &StoreError) {
    assert!(
        matches!(error, StoreError::Corrupt { seq: s, .. } if *s == seq),
        "{error:?}"
    );
}

/// Every reading of `bytes`: no panic, a bounded footprint, and whatever decodes re-encodes to
/// exactly `bytes`. `set` is the recipient set a format-2 record's key resolves to.
fn read_damaged(seq: u64, bytes: &[u8], set: &[u8]) {
    let (header, used) = peak(|| format::header(seq, bytes));
    assert!(used <= budget(bytes.len()), "header: {used} bytes");
    let (id, used) = peak(|| format::id(seq, bytes));
    assert!(used <= budget(bytes.len()), "id: {used} bytes");

    let mut key_asked = None;
    let (record, used) = peak(|| {
        format::decode(seq, bytes, |key| {
            key_asked = Some(key);
            format::decode_set(seq, key, set)
        })
    });
    assert!(
        used <= budget(bytes.len() + set.len()),
        "decode: {used} bytes"
    );
    match record {
        Ok(record) => {
            assert_eq!(record.seq, seq);
            let header = header.expect("a record that decodes has a header");
            assert_eq!(header, (record.saved_at, key_asked));
            assert_eq!(id.as_deref(), record.event.id.as_deref());
            let mut again = Vec::new();
            format::encode(&record, key_asked, &mut again);
            assert_eq!(again, bytes, "{record:?} has another encoding");
        }
        Err(error) => assert_corrupt(seq, &error),
    }

    let (listed, used) = peak(|| format::decode_set(seq, seq ^ 1, bytes));
    assert!(used <= budget(bytes.len()), "decode_set: {used} bytes");
    match listed {
        Ok(listed) => {
            let mut again = Vec::new();
            format::encode_set(&listed, &mut again);
            assert_eq!(again, bytes, "{listed:?} has another encoding");
        }
        Err(error) => assert_corrupt(seq, &error),
    }

    let (record, used) = peak(|| format::decode_v1(seq, bytes));
    assert!(used <= budget(bytes.len()), "v1::decode: {used} bytes");
    match record {
        Ok(record) => {
            assert_eq!(record.seq, seq);
            let mut again = Vec::new();
            format::encode_v1(&record, &mut again);
            assert_eq!(again, bytes, "{record:?} has another format-1 encoding");
        }
        Err(error) => assert_corrupt(seq, &error),
    }
}

/// `bytes` with one byte XORed by `mask` (nothing if empty).
fn damaged(bytes: &[u8], (at, mask): (u16, u8)) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    if !bytes.is_empty() {
        let at = usize::from(at) % bytes.len();
        bytes[at] ^= mask;
    }
    bytes
}

fuzz_target!(|input: Input| {
    let Input {
        seq,
        bytes,
        record: spec,
        damage,
    } = input;

    // Arbitrary bytes, as each of the three.
    read_damaged(seq, &bytes, &bytes);

    // A record built from the input round-trips in both formats, with its recipient set.
    let record = spec.record(seq);
    let key = spec.listed.as_ref().map(|&(key, ..)| key);
    let mut set = Vec::new();
    // The set's uids alone: a format-2 set, and the one prefix of `set` that decodes.
    let mut uids_only = None;
    if let Recipients::Listed(listed) = &record.recipients {
        format::encode_set(listed, &mut set);
        let decoded: Listed =
            format::decode_set(seq, key.unwrap_or_default(), &set).expect("an encoded set decodes");
        assert_eq!(&decoded, listed);
        if !listed.topics().is_empty() {
            let Recipients::Listed(uids) = Recipients::uids(listed.uids()) else {
                unreachable!("Recipients::uids makes a list")
            };
            let mut encoded = Vec::new();
            format::encode_set(&uids, &mut encoded);
            uids_only = Some((uids, encoded));
        }
    }
    let mut encoded = Vec::new();
    format::encode(&record, key, &mut encoded);
    let decoded = format::decode(seq, &encoded, |asked| {
        assert_eq!(Some(asked), key);
        format::decode_set(seq, asked, &set)
    })
    .expect("an encoded record decodes");
    assert_eq!(decoded, record);
    assert_eq!(
        format::header(seq, &encoded).expect("an encoded record has a header"),
        (record.saved_at, key)
    );
    assert_eq!(
        format::id(seq, &encoded).as_deref(),
        record.event.id.as_deref()
    );
    let mut encoded_v1 = Vec::new();
    format::encode_v1(&record, &mut encoded_v1);
    // Format 1 had no topics: they are left out.
    let mut without_topics = record.clone();
    if let Recipients::Listed(listed) = &record.recipients {
        without_topics.recipients = Recipients::uids(listed.uids());
    }
    assert_eq!(
        format::decode_v1(seq, &encoded_v1).expect("a format-1 record decodes"),
        without_topics
    );

    // No shorter prefix of an encoding decodes: each ends with a length-prefixed field.
    for (name, encoded) in [("record", &encoded), ("format 1", &encoded_v1)] {
        let cut = usize::from(damage.0) % encoded.len();
        let prefix = &encoded[..cut];
        let result = if name == "record" {
            format::decode(seq, prefix, |asked| format::decode_set(seq, asked, &set))
        } else {
            format::decode_v1(seq, prefix)
        };
        assert!(result.is_err(), "{name}: a prefix of {cut} bytes decodes");
    }
    if !set.is_empty() {
        let cut = usize::from(damage.0) % set.len();
        match (format::decode_set(seq, 0, &set[..cut]), &uids_only) {
            (Err(_), _) => {}
            (Ok(decoded), Some((uids, encoded))) if cut == encoded.len() => {
                assert_eq!(&decoded, uids);
            }
            (Ok(decoded), _) => panic!("a prefix of {cut} bytes of a set decodes: {decoded:?}"),
        }
    }

    // The same encodings with a byte damaged.
    read_damaged(seq, &damaged(&encoded, damage), &set);
    read_damaged(seq, &damaged(&encoded_v1, damage), &set);
    read_damaged(seq, &damaged(&set, damage), &set);
});
