use std::time::UNIX_EPOCH;

use ssehub_store::MemoryStore;
use ssehub_wire::Event;

use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ssehub-redb-{name}-{}-{}",
        std::process::id(),
        ulid::Ulid::generate()
    ));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

fn record(seq: u64, recipients: &Recipients) -> Record {
    Record::new(
        seq,
        Event::new(format!("e{seq}")).with_id(format!("id{seq}")),
        recipients.clone(),
    )
}

/// The bytes the file says it holds, the bytes its records and sets really take, and how many
/// sets it holds.
fn totals(store: &RedbStore) -> (u64, u64, u64) {
    let db = store.inner.db();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let events = txn.open_table(EVENTS).unwrap();
    let sets = txn.open_table(SETS).unwrap();
    let counted = meta.get(BYTES).unwrap().map_or(0, |v| v.value());
    let actual = events
        .iter()
        .unwrap()
        .chain(sets.iter().unwrap())
        .map(|entry| entry.unwrap().1.value().len() as u64)
        .sum();
    (counted, actual, sets.len().unwrap())
}

fn meta_value(store: &RedbStore, key: &str) -> Option<u64> {
    let db = store.inner.db();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    meta.get(key).unwrap().map(|v| v.value())
}

/// Replaces record `seq` by `bytes`, straight through redb, as damage would.
fn overwrite(store: &RedbStore, seq: u64, bytes: &[u8]) {
    let db = store.inner.db();
    let txn = db.begin_write().unwrap();
    txn.open_table(EVENTS).unwrap().insert(seq, bytes).unwrap();
    txn.commit().unwrap();
}

/// Every seq `uid` is resent, page by page from the start.
async fn resent_to(store: &RedbStore, uid: &str) -> Vec<u64> {
    seqs(&listed(store, ListQuery::new(uid, 0, 3)).await)
}

/// Every record `query` lists, page by page from its `after` (of at most its `limit`).
async fn listed(store: &dyn Store, mut query: ListQuery) -> Vec<Record> {
    let mut records = Vec::new();
    loop {
        let page = store.list_after(&query).await.unwrap();
        records.extend(page.records);
        query.after = page.scanned_through;
        if page.end {
            return records;
        }
    }
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|record| record.seq).collect()
}

/// A record whose `saved_at` the file keeps exactly (it keeps milliseconds).
fn exact(seq: u64, recipients: &Recipients) -> Record {
    let mut record = record(seq, recipients);
    record.saved_at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + seq);
    record
}

/// The stored bytes of every record and set, by table and key.
fn stored(store: &RedbStore) -> Vec<(&'static str, u64, Vec<u8>)> {
    let db = store.inner.db();
    let txn = db.begin_read().unwrap();
    let mut all = Vec::new();
    for (name, table) in [("events", EVENTS), ("recipients", SETS)] {
        for entry in txn.open_table(table).unwrap().iter().unwrap() {
            let (key, value) = entry.unwrap();
            all.push((name, key.value(), value.value().to_vec()));
        }
    }
    all
}

/// Replaces recipient set `key` by `bytes`, straight through redb, as damage would.
fn overwrite_set(store: &RedbStore, key: u64, bytes: &[u8]) {
    let db = store.inner.db();
    let txn = db.begin_write().unwrap();
    txn.open_table(SETS).unwrap().insert(key, bytes).unwrap();
    txn.commit().unwrap();
}

/// A string as formats 1 to 3 lay it out, written by hand: its u32 length, its bytes.
fn str_bytes(text: &str) -> Vec<u8> {
    [&(text.len() as u32).to_le_bytes(), text.as_bytes()].concat()
}

/// A list as formats 2 and 3 lay it out, written by hand: a u32 count, then each string.
fn list_bytes(names: &[&str]) -> Vec<u8> {
    let mut bytes = (names.len() as u32).to_le_bytes().to_vec();
    for name in names {
        bytes.extend_from_slice(&str_bytes(name));
    }
    bytes
}

/// A format-2 record, written by hand: tag 2, saved_at, flags (id, and set if any), the set's
/// key, the id, the data.
fn v2_record(record: &Record, set: Option<u64>) -> Vec<u8> {
    let saved_at = record.saved_at.duration_since(UNIX_EPOCH).unwrap();
    let mut bytes = vec![2];
    bytes.extend_from_slice(&(saved_at.as_millis() as u64).to_le_bytes());
    bytes.push(if set.is_some() { 1 | 8 } else { 1 });
    if let Some(set) = set {
        bytes.extend_from_slice(&set.to_le_bytes());
    }
    bytes.extend_from_slice(&str_bytes(record.id()));
    bytes.extend_from_slice(&str_bytes(&record.event.data));
    bytes
}

fn file_len(store: &RedbStore) -> u64 {
    std::fs::metadata(store.path()).unwrap().len()
}

#[test]
fn records_round_trip_through_both_formats() {
    let mut full = Record::new(
        9,
        Event::new("line one\nline two")
            .with_id("01ABC")
            .with_event("order")
            .with_retry(Duration::from_millis(1500)),
        Recipients::uids(["bob", "alice"]).and_topics(["orders/42"]),
    );
    full.saved_at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let mut bare = Record::new(10, Event::new(""), Recipients::All);
    bare.saved_at = UNIX_EPOCH;
    for (record, set) in [(full, Some(9)), (bare, None)] {
        let listed = match &record.recipients {
            Recipients::Listed(listed) => Some(listed.clone()),
            Recipients::All => None,
        };
        let load = |key| {
            assert_eq!(Some(key), set);
            Ok(listed.clone().unwrap())
        };
        let mut buf = Vec::new();
        format::encode(&record, set, &mut buf);
        assert_eq!(format::decode(record.seq, &buf, load).unwrap(), record);
        let header = format::header(record.seq, &buf).unwrap();
        assert_eq!((header.saved_at, header.set), (record.saved_at, set));
        assert_eq!(
            format::id(record.seq, &buf).as_deref(),
            record.event.id.as_deref()
        );
        // Every truncation is an error naming the record, never a panic.
        for len in 0..buf.len() {
            assert!(matches!(
                format::decode(record.seq, &buf[..len], load),
                Err(StoreError::Corrupt { seq, .. }) if seq == record.seq
            ));
        }
        // Format 1 had no topics: its encoder leaves them out.
        let mut uids_only = record.clone();
        if let Some(listed) = &listed {
            uids_only.recipients = Recipients::uids(listed.uids());
        }
        let mut v1 = Vec::new();
        format::v1::encode(&record, &mut v1);
        assert_eq!(format::v1::decode(record.seq, &v1).unwrap(), uids_only);
        for len in 0..v1.len() {
            assert!(format::v1::decode(record.seq, &v1[..len]).is_err());
        }
    }
    for recipients in [
        Recipients::uids(["bob", "alice"]),
        Recipients::topics(["prices", "orders/42"]),
        Recipients::new(["alice"], ["prices"]),
        Recipients::uids(Vec::<String>::new()),
    ] {
        let Recipients::Listed(set) = recipients else {
            unreachable!()
        };
        let mut buf = Vec::new();
        format::encode_set(&set, &mut buf);
        assert_eq!(format::decode_set(1, 1, &buf).unwrap(), set);
        // A damaged count is an error, not a huge allocation.
        buf[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(format::decode_set(1, 1, &buf).is_err());
    }
}

/// Found by the `record` fuzz target: the decoders ignored bytes after the last field, so a
/// length damaged to less than it was decoded as a shorter record rather than a damaged one.
#[test]
fn bytes_after_the_last_field_or_unknown_flags_are_damage() {
    let record = Record::new(3, Event::new("abcdef").with_id("id3"), Recipients::All);
    let mut buf = Vec::new();
    format::encode(&record, None, &mut buf);
    // The data's length, the last 4 + 6 bytes' first four, damaged from 6 to 2.
    let at = buf.len() - 10;
    buf[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
    assert!(matches!(
        format::decode(3, &buf, |_| unreachable!()),
        Err(StoreError::Corrupt { seq: 3, reason }) if reason == "4 bytes follow its last field"
    ));

    let mut v1 = Vec::new();
    format::v1::encode(&record, &mut v1);
    v1.push(0);
    assert!(format::v1::decode(3, &v1).is_err());

    // The fuzzer's own: a set of one empty uid, and two bytes more (too few for a topic list).
    let set = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(format::decode_set(3, 1, &set[..8]).is_ok());
    assert!(matches!(
        format::decode_set(3, 1, &set),
        Err(StoreError::Corrupt { seq: 3, .. })
    ));
    // Its earlier form, two empty uids, is damage too now: a list is sorted and distinct, or it
    // would decode to one that encodes otherwise.
    let twice = [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(matches!(
        format::decode_set(3, 1, &twice),
        Err(StoreError::Corrupt { seq: 3, reason }) if reason.contains("not sorted and distinct")
    ));

    // A flag no format defines.
    let mut buf = Vec::new();
    format::encode(&record, None, &mut buf);
    buf[9] |= 16;
    assert!(format::header(3, &buf).is_err());
    assert!(format::decode(3, &buf, |_| unreachable!()).is_err());
    let mut v1 = Vec::new();
    format::v1::encode(&record, &mut v1);
    v1[12] |= 8; // format 1 had no recipient set flag
    assert!(format::v1::decode(3, &v1).is_err());
}

#[tokio::test]
async fn keeps_history_across_reopening_and_applies_retention() {
    let dir = temp_dir("reopen");
    {
        let store = RedbStore::open(&dir, Retention::events(3)).unwrap();
        let records: Vec<_> = (1..=5).map(|seq| record(seq, &Recipients::All)).collect();
        store.save(&records[..2]).await.unwrap();
        store.save(&records[2..]).await.unwrap();
    }
    let store = RedbStore::open(&dir, Retention::events(3)).unwrap();
    assert_eq!(store.last_seq().await.unwrap(), 5);
    assert_eq!(store.seq_of("id2").await.unwrap(), None);
    assert_eq!(store.seq_of("id3").await.unwrap(), Some(3));
    let page = store
        .list_after(&ListQuery::new("anyone", 3, 10))
        .await
        .unwrap();
    assert_eq!(
        page.records
            .iter()
            .map(|record| record.event.data.as_str())
            .collect::<Vec<_>>(),
        ["e4", "e5"]
    );
    assert!(page.end);
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn an_id_older_than_the_max_age_is_unknown() {
    let dir = temp_dir("age");
    let store = RedbStore::open(
        &dir,
        Retention::events(100).max_age(Duration::from_secs(60)),
    )
    .unwrap();
    let mut old = Record::new(1, Event::new("old").with_id("old"), Recipients::All);
    old.saved_at = SystemTime::now() - Duration::from_secs(120);
    let new = Record::new(2, Event::new("new").with_id("new"), Recipients::All);
    store.save(&[old, new]).await.unwrap();
    assert_eq!(store.seq_of("old").await.unwrap(), None);
    assert_eq!(store.seq_of("new").await.unwrap(), Some(2));
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_second_process_opening_the_directory_gets_a_clear_error() {
    let dir = temp_dir("locked");
    let first = RedbStore::open(&dir, Retention::events(10)).unwrap();
    let error = RedbStore::open(&dir, Retention::events(10)).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("cannot open"), "{message}");
    assert!(message.contains("events.redb"), "{message}");
    drop(first);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_file_in_a_newer_format_is_refused_naming_the_file_and_both_versions() {
    let dir = temp_dir("newer");
    let store = RedbStore::open(&dir, Retention::events(10)).unwrap();
    assert_eq!(meta_value(&store, FORMAT), Some(format::VERSION));
    let path = store.path().to_owned();
    drop(store);
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let newer = format::VERSION + 1;
        txn.open_table(META).unwrap().insert(FORMAT, newer).unwrap();
        txn.commit().unwrap();
    }
    let message = RedbStore::open(&dir, Retention::events(10))
        .unwrap_err()
        .to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    let newer = format!("store format {}", format::VERSION + 1);
    assert!(message.contains(&newer), "{message}");
    let reads = format!("reads format {}", format::VERSION);
    assert!(message.contains(&reads), "{message}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_format_1_file_is_migrated_in_place_on_open() {
    let dir = temp_dir("v1");
    std::fs::create_dir_all(&dir).unwrap();
    let both = || Recipients::uids(["alice", "bob"]); // equal sets, apart, as decoding gives
    let mut records = [
        record(1, &both()),
        record(2, &both()),
        record(3, &both()),
        record(4, &Recipients::All),
        record(5, &Recipients::uids(["carol"])),
        record(6, &Recipients::uids(["carol"])),
        // Never written by a format-1 build (its `Recipients::uids([])` was a broadcast, written
        // as everyone), but read by it as reaching nobody: it still does.
        record(7, &Recipients::uids(Vec::<String>::new())),
    ];
    for record in &mut records {
        record.saved_at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + record.seq);
    }
    {
        // The file as builds before the format version wrote it.
        let db = Database::create(dir.join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut events = txn.open_table(EVENTS).unwrap();
            let mut ids = txn.open_table(IDS).unwrap();
            let mut buf = Vec::new();
            for record in &records {
                buf.clear();
                format::v1::encode(record, &mut buf);
                if record.seq == 6 {
                    buf.truncate(buf.len() - 1); // one damaged record
                }
                events.insert(record.seq, buf.as_slice()).unwrap();
                ids.insert(record.id(), record.seq).unwrap();
            }
            txn.open_table(META).unwrap().insert(LAST_SEQ, 7).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&dir, Retention::events(100)).unwrap();
    assert_eq!(meta_value(&store, FORMAT), Some(format::VERSION));
    let (counted, actual, sets) = totals(&store);
    assert_eq!(counted, actual);
    assert_eq!(sets, 3, "1-3 share one set, 5 and 7 have their own");
    assert_eq!(resent_to(&store, "alice").await, [1, 2, 3, 4]);
    assert_eq!(resent_to(&store, "carol").await, [4, 5]);
    assert_eq!(resent_to(&store, "").await, [4]);
    assert_eq!(store.seq_of("id3").await.unwrap(), Some(3));
    assert_eq!(
        store.seq_of("id6").await.unwrap(),
        None,
        "dropped as damaged"
    );
    assert_eq!(store.last_seq().await.unwrap(), 7);
    let listed = store
        .list_after(&ListQuery::new("bob", 0, 10))
        .await
        .unwrap();
    assert_eq!(listed.records[..3], records[..3]);
    let nobody = store
        .list_after(&ListQuery::new("bob", 6, 10).topics(["x"]))
        .await
        .unwrap();
    assert!(nobody.records.is_empty() && nobody.end);
    // Saved to in format 3, it opens as format 3: no second migration.
    store.save(&[record(8, &both())]).await.unwrap();
    drop(store);
    let store = RedbStore::open(&dir, Retention::events(100)).unwrap();
    assert_eq!(resent_to(&store, "alice").await, [1, 2, 3, 4, 8]);
    assert_eq!(store.report().corrupt_skipped, 0);
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn one_push_to_100_000_uids_stores_the_uids_once() {
    let dir = temp_dir("fanout");
    let store = RedbStore::open(&dir, Retention::events(1_000)).unwrap();
    let uids: Vec<String> = (0..100_000).map(|n| format!("user-{n:06}")).collect();
    let set = Recipients::uids(&uids);
    // One copy in the file: a count, then each uid's length and its 11 bytes.
    let one_copy = 4 + 100_000 * (4 + 11);
    store.save(&[record(1, &Recipients::All)]).await.unwrap();
    let before = file_len(&store);
    let push: Vec<_> = (2..=101).map(|seq| record(seq, &set)).collect();
    store.save(&push).await.unwrap();
    let grown = file_len(&store) - before;
    // 100 copies would be 150 MB. redb grows the file in steps (here one of 4 MiB), so the
    // bound is three copies: 4.5 MB.
    assert!(grown <= 3 * one_copy, "the file grew by {grown} bytes");
    let (counted, actual, sets) = totals(&store);
    assert_eq!((counted, sets), (actual, 1));
    assert!(counted < one_copy + 101 * 64, "{counted} bytes counted");
    // Resend still filters on the set.
    assert_eq!(
        resent_to(&store, "user-050000").await,
        (1..=101).collect::<Vec<_>>()
    );
    assert_eq!(resent_to(&store, "user-099999").await.len(), 101);
    assert_eq!(resent_to(&store, "user-100000").await, [1]);
    assert_eq!(resent_to(&store, "stranger").await, [1]);
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn retention_drops_a_recipient_set_with_the_last_record_that_refers_to_it() {
    let dir = temp_dir("sets");
    let store = RedbStore::open(&dir, Retention::events(4)).unwrap();
    let a = Recipients::uids(["alice"]);
    let b = Recipients::uids(["bob"]);
    let batch = [
        record(1, &a),
        record(2, &a),
        record(3, &Recipients::uids(["alice"])), // equal to 1-2's set: shared too
        record(4, &Recipients::All),
        record(5, &b),
        record(6, &b),
    ];
    store.save(&batch).await.unwrap();
    // 1 and 2 are dropped; 3 still refers to their set.
    assert_eq!(totals(&store).2, 2);
    assert_eq!(resent_to(&store, "alice").await, [3, 4]);
    store.save(&[record(7, &a)]).await.unwrap();
    // 3 went, and with it the first set; 7 has a set of its own (a broadcast came between).
    let (counted, actual, sets) = totals(&store);
    assert_eq!((counted, sets), (actual, 2));
    assert_eq!(resent_to(&store, "alice").await, [4, 7]);
    assert_eq!(resent_to(&store, "bob").await, [4, 5, 6]);
    store
        .save(&[record(8, &Recipients::All), record(9, &Recipients::All)])
        .await
        .unwrap();
    // 4 and 5 went; 6 keeps bob's set.
    assert_eq!(totals(&store).2, 2);
    assert_eq!(resent_to(&store, "bob").await, [6, 8, 9]);
    store
        .save(&[record(10, &Recipients::All), record(11, &Recipients::All)])
        .await
        .unwrap();
    let (counted, actual, sets) = totals(&store);
    assert_eq!((counted, sets), (actual, 0));
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn max_bytes_bounds_the_store_and_its_running_total_survives_reopening() {
    let dir = temp_dir("bytes");
    let retention = Retention::events(1_000_000).max_bytes(20_000);
    {
        let store = RedbStore::open(&dir, retention).unwrap();
        for batch in 0..20u64 {
            let records: Vec<_> = (1..=10)
                .map(|n| {
                    let seq = batch * 10 + n;
                    let recipients = match seq % 3 {
                        0 => Recipients::All,
                        _ => Recipients::uids([format!("user{}", batch % 4)]),
                    };
                    let data = "d".repeat(500);
                    Record::new(
                        seq,
                        Event::new(data).with_id(format!("id{seq}")),
                        recipients,
                    )
                })
                .collect();
            store.save(&records).await.unwrap();
            let (counted, actual, _) = totals(&store);
            assert_eq!(counted, actual);
            assert!(counted <= 20_000, "{counted} bytes after batch {batch}");
        }
    }
    let store = RedbStore::open(&dir, retention).unwrap();
    let (counted, actual, _) = totals(&store);
    assert_eq!(counted, actual);
    assert!(
        counted > 20_000 - 600,
        "{counted}: no more dropped than needed"
    );
    let kept = resent_to(&store, "user3").await;
    assert!(kept[0] > 150 && kept.ends_with(&[199, 200]), "{kept:?}");
    assert_eq!(store.seq_of("id100").await.unwrap(), None);
    assert_eq!(store.seq_of("id200").await.unwrap(), Some(200));
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

/// Fills a store in `dir` with about 8 MB, then reopens it keeping 10 records, with compaction
/// every `interval`.
async fn shrunk_store(dir: &Path, interval: Option<Duration>) -> (RedbStore, u64) {
    {
        let store = RedbStore::open(dir, Retention::events(100_000)).unwrap();
        let data = "x".repeat(4_000);
        for batch in 0..20u64 {
            let records: Vec<_> = (1..=100)
                .map(|n| {
                    let seq = batch * 100 + n;
                    Record::new(seq, Event::new(data.clone()), Recipients::All)
                })
                .collect();
            store.save(&records).await.unwrap();
        }
    }
    let store = RedbStore::open(dir, Retention::events(10))
        .unwrap()
        .compact_interval(interval);
    let full = file_len(&store);
    assert!(full > 8_000_000, "{full}");
    store
        .save(&[record(2_001, &Recipients::All)])
        .await
        .unwrap();
    (store, full)
}

#[tokio::test]
async fn compacting_after_dropping_most_records_shrinks_the_file() {
    let dir = temp_dir("compact");
    let (store, full) = shrunk_store(&dir, None).await;
    assert_eq!(store.report().compactions, 0, "no schedule, no compaction");
    assert!(
        file_len(&store) > full / 2,
        "dropping alone gives nothing back"
    );
    assert!(store.compact().await.unwrap());
    let compacted = file_len(&store);
    assert!(compacted < full / 4, "{full} -> {compacted} bytes");
    assert_eq!(
        resent_to(&store, "anyone").await,
        (1_992..=2_001).collect::<Vec<_>>()
    );
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_save_compacts_when_the_interval_has_passed_and_enough_was_dropped() {
    let dir = temp_dir("scheduled");
    let (store, full) = shrunk_store(&dir, Some(Duration::ZERO)).await;
    let report = store.report();
    assert_eq!((report.compactions, report.compaction_error), (1, None));
    let compacted = file_len(&store);
    assert!(compacted < full / 4, "{full} -> {compacted} bytes");
    // Little dropped since: the next saves do not compact again.
    for seq in 2_002..=2_011 {
        store.save(&[record(seq, &Recipients::All)]).await.unwrap();
    }
    assert_eq!(store.report().compactions, 1);
    drop(store);
    let default_dir = temp_dir("unscheduled");
    let (store, _) = shrunk_store(&default_dir, Some(COMPACT_INTERVAL)).await;
    assert_eq!(store.report().compactions, 0, "the hour has not passed");
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&default_dir).ok();
}

#[tokio::test]
async fn a_damaged_record_does_not_break_saves_retention_or_resend() {
    let dir = temp_dir("damaged");
    let store = RedbStore::open(&dir, Retention::events(6)).unwrap();
    let alice = Recipients::uids(["alice"]);
    store
        .save(&[
            record(1, &alice),
            record(2, &alice),
            record(3, &alice),
            record(4, &Recipients::All),
            record(5, &alice),
        ])
        .await
        .unwrap();
    // 2: garbage, not even a header. 4: a good header, data that is not UTF-8.
    overwrite(&store, 2, b"\xff\xff\xff");
    let mut four = Vec::new();
    format::encode(&record(4, &Recipients::All), None, &mut four);
    *four.last_mut().unwrap() = 0xff;
    overwrite(&store, 4, &four);

    // Listing skips both, reports them, and serves the rest.
    assert_eq!(resent_to(&store, "alice").await, [1, 3, 5]);
    let report = store.report();
    assert_eq!(report.corrupt_skipped, 2);
    assert!(matches!(
        report.last_corrupt,
        Some(StoreError::Corrupt { seq: 4, .. })
    ));
    // An id whose record has no readable header is unknown (a history gap); one whose header
    // is readable resumes after it.
    assert_eq!(store.seq_of("id2").await.unwrap(), None);
    assert_eq!(store.seq_of("id4").await.unwrap(), Some(4));
    let after_four = store
        .list_after(&ListQuery::new("alice", 4, 10))
        .await
        .unwrap();
    assert_eq!(
        after_four.records,
        [record(5, &alice)].map(|mut r| {
            r.saved_at = after_four.records[0].saved_at;
            r
        })
    );

    // Saves go on; retention drops 1, then 2 without decoding it, keeping 3's set.
    store.save(&[record(6, &alice)]).await.unwrap();
    store.save(&[record(7, &alice)]).await.unwrap();
    assert_eq!(resent_to(&store, "alice").await, [3, 5, 6, 7]);
    // Sets: 1-3's (3 still refers to it), and one per save since.
    assert_eq!(totals(&store).2, 4);
    // Then 3 goes with its set; then 4 (by count: its header is fine).
    store
        .save(&[record(8, &alice), record(9, &alice)])
        .await
        .unwrap();
    assert_eq!(totals(&store).2, 4, "1-3's set went, 8-9's came");
    store.save(&[record(10, &alice)]).await.unwrap();
    let skipped = store.report().corrupt_skipped;
    assert_eq!(resent_to(&store, "alice").await, [5, 6, 7, 8, 9, 10]);
    assert_eq!(
        store.report().corrupt_skipped,
        skipped,
        "nothing damaged is left"
    );
    assert_eq!(store.seq_of("id4").await.unwrap(), None);
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_set_without_topics_is_laid_out_as_in_format_2_and_one_with_topics_adds_them() {
    let Recipients::Listed(uids) = Recipients::uids(["bob", "alice"]) else {
        unreachable!()
    };
    let mut buf = Vec::new();
    format::encode_set(&uids, &mut buf);
    assert_eq!(buf, list_bytes(&["alice", "bob"]));

    let Recipients::Listed(both) = Recipients::new(["alice"], ["prices", "orders/42"]) else {
        unreachable!()
    };
    buf.clear();
    format::encode_set(&both, &mut buf);
    let expected = [list_bytes(&["alice"]), list_bytes(&["orders/42", "prices"])].concat();
    assert_eq!(buf, expected);

    let Recipients::Listed(topics) = Recipients::topics(["prices"]) else {
        unreachable!()
    };
    buf.clear();
    format::encode_set(&topics, &mut buf);
    assert_eq!(buf, [list_bytes(&[]), list_bytes(&["prices"])].concat());
    assert_eq!(format::decode_set(1, 1, &buf).unwrap(), topics);
}

#[test]
fn a_damaged_topic_list_is_an_error_not_a_huge_allocation() {
    let corrupt = |bytes: &[u8]| match format::decode_set(7, 5, bytes) {
        Err(StoreError::Corrupt { seq: 7, reason }) => reason,
        other => panic!("{other:?}"),
    };
    let uids = list_bytes(&["alice"]);
    // A topic count past what the bytes could hold.
    let mut huge = uids.clone();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend_from_slice(&str_bytes("prices"));
    let reason = corrupt(&huge);
    assert!(reason.contains("recipient set 5 is damaged"), "{reason}");
    assert!(reason.contains("count of 4294967295"), "{reason}");
    // One more than there are.
    let mut one_more = uids.clone();
    one_more.extend_from_slice(&list_bytes(&["prices"]));
    one_more[uids.len()] = 2;
    assert!(corrupt(&one_more).contains("ends early"));
    // An empty topic part: a set without topics has none.
    let mut empty = uids.clone();
    empty.extend_from_slice(&list_bytes(&[]));
    assert!(corrupt(&empty).contains("topic list is empty"));
    // Topics out of order or twice.
    for topics in [["prices", "orders"], ["prices", "prices"]] {
        let unsorted = [uids.clone(), list_bytes(&topics)].concat();
        assert!(corrupt(&unsorted).contains("not sorted"));
    }
    // Fewer than four bytes after the uids.
    assert!(corrupt(&[uids.as_slice(), &[1, 0]].concat()).contains("ends early"));
}

#[tokio::test]
async fn records_to_topics_round_trip_through_saving_and_reopening() {
    let dir = temp_dir("topics");
    let records = [
        exact(1, &Recipients::topics(["prices"])),
        exact(
            2,
            &Recipients::new(["alice", "bob"], ["orders/42", "prices"]),
        ),
        exact(3, &Recipients::All),
        exact(4, &Recipients::uids(["alice"])),
        exact(5, &Recipients::topics(["orders/7"])),
    ];
    {
        let store = RedbStore::open(&dir, Retention::events(100)).unwrap();
        store.save(&records[..2]).await.unwrap();
        store.save(&records[2..]).await.unwrap();
    }
    let store = RedbStore::open(&dir, Retention::events(100)).unwrap();
    let everything = ListQuery::new("alice", 0, 2).topics(["prices", "orders/7"]);
    assert_eq!(listed(&store, everything).await, records);
    let (counted, actual, sets) = totals(&store);
    assert_eq!((counted, sets), (actual, 4));
    assert_eq!(store.report().corrupt_skipped, 0);
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_query_lists_the_records_to_its_uid_its_topics_or_everyone_after_a_restart() {
    let dir = temp_dir("topic-query");
    let a = Recipients::topics(["a"]);
    let records = [
        exact(1, &a),
        exact(2, &a),
        exact(3, &Recipients::All),
        exact(4, &Recipients::uids(["alice"])),
        exact(5, &Recipients::topics(["b"])),
        exact(6, &Recipients::uids(["bob"]).and_topics(["a"])),
        exact(7, &Recipients::topics(["a", "c"])),
        exact(8, &Recipients::uids(["carol"])),
        exact(9, &Recipients::uids(Vec::<String>::new())),
        exact(10, &Recipients::All),
    ];
    {
        let store = RedbStore::open(&dir, Retention::events(100)).unwrap();
        store.save(&records[..5]).await.unwrap();
        store.save(&records[5..]).await.unwrap();
    }
    let store = RedbStore::open(&dir, Retention::events(100)).unwrap();
    let memory = MemoryStore::new(100);
    memory.save(&records).await.unwrap();
    let cases: [(&str, &[&str], u64, &[u64]); 10] = [
        ("alice", &[], 0, &[3, 4, 10]),
        ("alice", &["a"], 0, &[1, 2, 3, 4, 6, 7, 10]),
        // Topic a's records are not for a connection only to b.
        ("alice", &["b"], 0, &[3, 4, 5, 10]),
        // Nor for a uid no record names, without topics.
        ("dave", &[], 0, &[3, 10]),
        ("dave", &["b"], 0, &[3, 5, 10]),
        ("dave", &["a"], 2, &[3, 6, 7, 10]),
        ("bob", &[], 0, &[3, 6, 10]),
        ("bob", &["c", "b"], 0, &[3, 5, 6, 7, 10]),
        ("carol", &["z"], 0, &[3, 8, 10]),
        ("", &["", "a/"], 0, &[3, 10]),
    ];
    for (uid, topics, after, expected) in cases {
        let query = ListQuery::new(uid, after, 2).topics(topics.iter().copied());
        let from_file = listed(&store, query.clone()).await;
        assert_eq!(seqs(&from_file), expected, "{query:?}");
        assert_eq!(from_file, listed(&memory, query).await);
    }
    assert_eq!(store.report().corrupt_skipped, 0);
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn the_records_of_one_push_to_uids_and_topics_share_one_set() {
    let dir = temp_dir("topic-sets");
    let store = RedbStore::open(&dir, Retention::events(100)).unwrap();
    let push = Recipients::uids(["alice", "bob"]).and_topics(["prices", "orders/42"]);
    let news = Recipients::topics(["news"]);
    let batch = [
        record(1, &push),
        record(2, &push),
        record(3, &push),
        // Equal, apart: shared too.
        record(
            4,
            &Recipients::new(["bob", "alice"], ["orders/42", "prices"]),
        ),
        record(5, &news),
        record(6, &Recipients::All),
        // A broadcast came between: a set of its own.
        record(7, &push),
    ];
    store.save(&batch).await.unwrap();
    let sets: Vec<_> = stored(&store)
        .into_iter()
        .filter(|&(table, ..)| table == "recipients")
        .map(|(_, key, bytes)| (key, bytes))
        .collect();
    let push_bytes = [
        list_bytes(&["alice", "bob"]),
        list_bytes(&["orders/42", "prices"]),
    ]
    .concat();
    let news_bytes = [list_bytes(&[]), list_bytes(&["news"])].concat();
    assert_eq!(
        sets,
        [(1, push_bytes.clone()), (5, news_bytes), (7, push_bytes)]
    );
    let keys: Vec<_> = {
        let db = store.inner.db();
        let txn = db.begin_read().unwrap();
        let events = txn.open_table(EVENTS).unwrap();
        (1..=7)
            .map(|seq| {
                let bytes = events.get(seq).unwrap().unwrap();
                format::header(seq, bytes.value()).unwrap().set
            })
            .collect()
    };
    assert_eq!(
        keys,
        [Some(1), Some(1), Some(1), Some(1), Some(5), None, Some(7)]
    );
    let (counted, actual, _) = totals(&store);
    assert_eq!(counted, actual);
    let carol = ListQuery::new("carol", 0, 10).topics(["prices"]);
    assert_eq!(seqs(&listed(&store, carol).await), [1, 2, 3, 4, 6, 7]);
    assert_eq!(resent_to(&store, "bob").await, [1, 2, 3, 4, 6, 7]);
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_list_of_no_one_is_stored_as_a_set_reaching_nobody_not_as_a_broadcast() {
    let dir = temp_dir("nobody");
    let nobody = Recipients::uids(Vec::<String>::new());
    {
        let store = RedbStore::open(&dir, Retention::events(100)).unwrap();
        store
            .save(&[exact(1, &nobody), exact(2, &Recipients::All)])
            .await
            .unwrap();
    }
    let store = RedbStore::open(&dir, Retention::events(100)).unwrap();
    let anyone = ListQuery::new("", 0, 10).topics(["", "prices"]);
    assert_eq!(seqs(&listed(&store, anyone).await), [2]);
    let sets: Vec<_> = stored(&store)
        .into_iter()
        .filter(|&(table, ..)| table == "recipients")
        .collect();
    assert_eq!(sets, [("recipients", 1, list_bytes(&[]))]);
    // Decoded, it is the list it was.
    let decoded = {
        let db = store.inner.db();
        let txn = db.begin_read().unwrap();
        let bytes = txn.open_table(EVENTS).unwrap().get(1).unwrap().unwrap();
        format::decode(1, bytes.value(), |key| {
            format::decode_set(1, key, &list_bytes(&[]))
        })
    };
    assert_eq!(decoded.unwrap(), exact(1, &nobody));
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_format_2_file_opens_unchanged_lists_its_records_and_is_marked_format_3() {
    let dir = temp_dir("v2");
    std::fs::create_dir_all(&dir).unwrap();
    let both = Recipients::uids(["alice", "bob"]);
    let records = [
        (exact(1, &both), Some(1)),
        (exact(2, &both), Some(1)),
        (exact(3, &Recipients::All), None),
        (exact(4, &Recipients::uids(["carol"])), Some(4)),
        // Never written by the hub (its empty list was a broadcast), but read by format-2
        // builds as reaching nobody: it still does.
        (exact(5, &Recipients::uids(Vec::<String>::new())), Some(5)),
    ];
    let sets = [
        (1, list_bytes(&["alice", "bob"])),
        (4, list_bytes(&["carol"])),
        (5, list_bytes(&[])),
    ];
    {
        // The file as format-2 builds wrote it.
        let db = Database::create(dir.join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut events = txn.open_table(EVENTS).unwrap();
            let mut ids = txn.open_table(IDS).unwrap();
            let mut recipients = txn.open_table(SETS).unwrap();
            let mut bytes = 0;
            for (record, set) in &records {
                let value = v2_record(record, *set);
                bytes += value.len() as u64;
                events.insert(record.seq, value.as_slice()).unwrap();
                ids.insert(record.id(), record.seq).unwrap();
            }
            for (key, set) in &sets {
                bytes += set.len() as u64;
                recipients.insert(key, set.as_slice()).unwrap();
            }
            let mut meta = txn.open_table(META).unwrap();
            meta.insert(FORMAT, 2).unwrap();
            meta.insert(LAST_SEQ, 5).unwrap();
            meta.insert(BYTES, bytes).unwrap();
        }
        txn.commit().unwrap();
    }
    let before = {
        let store = RedbStore::open(&dir, Retention::events(100)).unwrap();
        assert_eq!(meta_value(&store, FORMAT), Some(3));
        stored(&store)
    };
    let store = RedbStore::open(&dir, Retention::events(100)).unwrap();
    // Nothing rewritten: every value is as format 2 wrote it.
    let expected: Vec<_> = records
        .iter()
        .map(|(record, set)| ("events", record.seq, v2_record(record, *set)))
        .chain(
            sets.iter()
                .map(|(key, set)| ("recipients", *key, set.clone())),
        )
        .collect();
    assert_eq!(before, expected);
    assert_eq!(stored(&store), expected);
    let (counted, actual, _) = totals(&store);
    assert_eq!(counted, actual);
    let alice = listed(&store, ListQuery::new("alice", 0, 2).topics(["x"])).await;
    assert_eq!(alice, [0, 1, 2].map(|at| records[at].0.clone()));
    assert_eq!(resent_to(&store, "carol").await, [3, 4]);
    assert_eq!(resent_to(&store, "").await, [3]);
    assert_eq!(store.seq_of("id2").await.unwrap(), Some(2));
    assert_eq!(store.last_seq().await.unwrap(), 5);
    // Saves go on in format 3, topics too, and retention drops format-2 records and sets.
    store
        .save(&[exact(6, &Recipients::topics(["prices"]))])
        .await
        .unwrap();
    drop(store);
    let store = RedbStore::open(&dir, Retention::events(3)).unwrap();
    store.save(&[exact(7, &both)]).await.unwrap();
    let dave = ListQuery::new("dave", 0, 10).topics(["prices"]);
    assert_eq!(seqs(&listed(&store, dave).await), [6]);
    assert_eq!(resent_to(&store, "alice").await, [7]);
    let (counted, actual, sets) = totals(&store);
    assert_eq!((counted, sets), (actual, 3));
    assert_eq!(store.report().corrupt_skipped, 0);
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_damaged_topic_count_is_reported_and_its_records_skipped() {
    let dir = temp_dir("topic-damage");
    let store = RedbStore::open(&dir, Retention::events(4)).unwrap();
    let a = Recipients::topics(["a"]);
    store
        .save(&[
            record(1, &a),
            record(2, &a),
            record(3, &Recipients::All),
            record(4, &a),
        ])
        .await
        .unwrap();
    // Set 1 is no uids, then the topics: its topic count is bytes 4 to 8.
    let mut set = [list_bytes(&[]), list_bytes(&["a"])].concat();
    set[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    overwrite_set(&store, 1, &set);
    let query = ListQuery::new("bob", 0, 10).topics(["a"]);
    assert_eq!(seqs(&listed(&store, query.clone()).await), [3, 4]);
    let report = store.report();
    assert_eq!(report.corrupt_skipped, 2);
    assert!(
        matches!(
            &report.last_corrupt,
            Some(StoreError::Corrupt { seq: 2, reason }) if reason.contains("recipient set 1")
        ),
        "{report:?}"
    );
    // Saves go on; retention drops 1 and 2 and their set (their headers are fine).
    store.save(&[record(5, &a), record(6, &a)]).await.unwrap();
    assert_eq!(seqs(&listed(&store, query).await), [3, 4, 5, 6]);
    assert_eq!(store.report().corrupt_skipped, 2, "nothing damaged is left");
    let (counted, actual, sets) = totals(&store);
    assert_eq!((counted, sets), (actual, 2));
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}
