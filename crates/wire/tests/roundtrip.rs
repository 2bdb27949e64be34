//! Property tests: whatever is encoded comes back equal after decoding, under any chunking, and no
//! value can smuggle fields past the encoder.

use std::time::Duration;

use bytes::BytesMut;
use proptest::prelude::*;
use ssehub_wire::{Decoder, EncodeError, Event, Frame, Utf8Bytes};

/// Text that often holds the characters the wire format cares about.
fn tricky_text(max_len: usize) -> impl Strategy<Value = String> {
    let tricky = prop_oneof![
        Just('\r'),
        Just('\n'),
        Just(' '),
        Just(':'),
        Just('\0'),
        Just('\u{FEFF}'),
        Just('é'),
        Just('😀'),
    ];
    prop::collection::vec(prop_oneof![2 => tricky, 3 => any::<char>()], 0..max_len)
        .prop_map(|chars| chars.into_iter().collect())
}

prop_compose! {
    fn any_event()(
        id in prop::option::of(tricky_text(12)),
        event in prop::option::of(tricky_text(12)),
        data in tricky_text(48),
        retry in prop::option::of(0u64..100_000_000),
    ) -> Event {
        Event {
            id: id.map(Utf8Bytes::from),
            event: event.map(Utf8Bytes::from),
            data: data.into(),
            retry: retry.map(Duration::from_millis),
        }
    }
}

/// Events the encoder accepts: no CR/LF in id or type, no NUL in id.
fn valid_event() -> impl Strategy<Value = Event> {
    any_event().prop_map(|mut event| {
        let strip =
            |value: Utf8Bytes, banned: &[char]| -> Utf8Bytes { value.replace(banned, "").into() };
        event.id = event.id.map(|id| strip(id, &['\r', '\n', '\0']));
        event.event = event.event.map(|t| strip(t, &['\r', '\n']));
        event
    })
}

/// Feeds `input` in pieces cut at `cuts` (positions taken modulo the length) and collects frames.
fn decode_in_chunks(input: &[u8], cuts: &[usize]) -> Vec<Frame> {
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (input.len() + 1)).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut start = 0;
    for cut in cuts {
        buf.extend_from_slice(&input[start..cut]);
        start = cut;
        while let Some(frame) = decoder.decode(&mut buf).expect("within default limits") {
            frames.push(frame);
        }
    }
    while let Some(frame) = decoder.decode_eof(&mut buf).expect("within default limits") {
        frames.push(frame);
    }
    frames
}

/// What a spec-conformant reader reports for `events`, sent in order on one stream.
fn expected_frames(events: &[Event]) -> Vec<Frame> {
    let mut last_event_id = String::new();
    let mut frames = Vec::new();
    for event in events {
        if let Some(retry) = event.retry {
            frames.push(Frame::Retry(retry));
        }
        if let Some(id) = &event.id {
            last_event_id = id.to_string();
        }
        frames.push(Frame::Event(Event {
            id: (!last_event_id.is_empty()).then(|| last_event_id.as_str().into()),
            event: event.event.clone().filter(|t| !t.is_empty()),
            data: event.data.replace("\r\n", "\n").replace('\r', "\n").into(),
            retry: None,
        }));
    }
    frames
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn encoded_events_decode_equal_under_any_chunking(
        events in prop::collection::vec(valid_event(), 1..8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire = BytesMut::new();
        for event in &events {
            event.encode_into(&mut wire).expect("valid_event only makes valid events");
        }
        prop_assert_eq!(decode_in_chunks(&wire, &cuts), expected_frames(&events));
    }

    /// The security boundary: either the encoder refuses the event, naming the field, or a reader
    /// sees exactly that one event, with no field or event injected by its values.
    #[test]
    fn no_value_injects_fields(event in any_event(), cuts in prop::collection::vec(any::<usize>(), 0..4)) {
        let has = |value: &Option<Utf8Bytes>, banned: &[char]| value.as_ref().is_some_and(|v| v.contains(banned));
        match event.encode() {
            Ok(wire) => {
                prop_assert!(!has(&event.event, &['\r', '\n']));
                prop_assert!(!has(&event.id, &['\r', '\n', '\0']));
                prop_assert_eq!(decode_in_chunks(&wire, &cuts), expected_frames(std::slice::from_ref(&event)));
            }
            Err(err @ EncodeError::EventTypeHasLineBreak) => {
                prop_assert!(has(&event.event, &['\r', '\n']), "{err}");
            }
            Err(err) => {
                prop_assert_eq!(err.field(), "id");
                prop_assert!(has(&event.id, &['\r', '\n', '\0']), "{err}");
            }
        }
    }

    /// Arbitrary bytes, not only what our encoder writes, decode the same however they are cut.
    #[test]
    fn any_bytes_decode_the_same_under_any_chunking(
        input in stream_soup(),
        cuts in prop::collection::vec(any::<usize>(), 1..12),
    ) {
        prop_assert_eq!(decode_in_chunks(&input, &cuts), decode_in_chunks(&input, &[]));
    }
}

/// Bytes assembled from the pieces of real streams (field names, line ends, BOM, split UTF-8) and
/// random bytes, so that most inputs hold events and line ends cut by chunk boundaries.
fn stream_soup() -> impl Strategy<Value = Vec<u8>> {
    const PIECES: &[&[u8]] = &[
        b"data:",
        b"data: x",
        b"data",
        b"event: t",
        b"event:",
        b"id: 1",
        b"id:",
        b"id: \0",
        b"retry: 15",
        b"retry: x",
        b":",
        b": ping",
        b"\r",
        b"\n",
        b"\r\n",
        b"\r\n",
        b"\n\n",
        b"\xEF\xBB\xBF",
        b"\xC3",
        b"\xA9",
        b"\xF0\x9F\x98\x80",
        b" ",
    ];
    let piece = prop_oneof![
        4 => prop::sample::select(PIECES).prop_map(<[u8]>::to_vec),
        1 => any::<u8>().prop_map(|byte| vec![byte]),
    ];
    prop::collection::vec(piece, 0..80).prop_map(|pieces| pieces.concat())
}
