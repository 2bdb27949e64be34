//! Conformance tests for [`ssehub_wire::Decoder`] against the WHATWG HTML Living Standard,
//! "Server-sent events", section "Interpreting an event stream" and "dispatch the event".
//!
//! Most inputs are decoded whole, split in two at every byte, and fed one byte at a time; all three
//! must agree.

use std::time::Duration;

use bytes::BytesMut;
use ssehub_wire::{DecodeError, Decoder, Event, Frame};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Everything a whole stream decodes to.
#[derive(Debug, PartialEq)]
struct Decoded {
    frames: Vec<Frame>,
    last_event_id: String,
}

/// Feeds `chunks` to `decoder` one after another, draining frames after each, then ends the stream.
fn try_decode_with(mut decoder: Decoder, chunks: &[&[u8]]) -> Result<Decoded, DecodeError> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(frame) = decoder.decode(&mut buf)? {
            frames.push(frame);
        }
    }
    while let Some(frame) = decoder.decode_eof(&mut buf)? {
        frames.push(frame);
    }
    assert!(buf.is_empty(), "decode_eof leaves the buffer empty");
    Ok(Decoded {
        frames,
        last_event_id: decoder.last_event_id().to_string(),
    })
}

/// [`try_decode_with`] a default decoder, expecting success.
fn decode_chunks(chunks: &[&[u8]]) -> Decoded {
    try_decode_with(Decoder::new(), chunks).expect("stream decodes without error")
}

/// Decodes `input` whole, split in two at every position, and byte by byte; asserts they agree.
fn decode_every_split_with(make: impl Fn() -> Decoder, input: &[u8]) -> Decoded {
    let shown = input.escape_ascii();
    let whole = try_decode_with(make(), &[input]).expect("whole input decodes");
    for at in 0..=input.len() {
        let (head, tail) = input.split_at(at);
        let split = try_decode_with(make(), &[head, tail]).expect("split input decodes");
        assert_eq!(split, whole, "split at byte {at} of b\"{shown}\"");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let trickled = try_decode_with(make(), &bytes).expect("byte-at-a-time input decodes");
    assert_eq!(trickled, whole, "byte-at-a-time feeding of b\"{shown}\"");
    whole
}

/// [`decode_every_split_with`] a default decoder.
fn decode(input: &[u8]) -> Decoded {
    decode_every_split_with(Decoder::new, input)
}

/// The frames of `input`, checked under every split.
fn frames(input: &[u8]) -> Vec<Frame> {
    decode(input).frames
}

/// An event of type "message" with no id.
fn msg(data: &str) -> Frame {
    Frame::Event(Event::new(data))
}

fn comment(text: &str) -> Frame {
    Frame::Comment(text.into())
}

fn retry(millis: u64) -> Frame {
    Frame::Retry(Duration::from_millis(millis))
}

// ---------------------------------------------------------------------------------------------
// Byte order mark
// ---------------------------------------------------------------------------------------------

#[test]
fn leading_bom_is_stripped() {
    assert_eq!(frames(b"\xEF\xBB\xBFdata: x\n\n"), [msg("x")]);
}

#[test]
fn only_one_leading_bom_is_stripped() {
    // The second BOM starts the first field name ("\u{FEFF}data"), an unknown field.
    assert_eq!(frames(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n"), []);
    assert_eq!(
        frames(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\ndata: y\n\n"),
        [msg("y")]
    );
}

#[test]
fn bom_split_across_chunks_is_stripped() {
    let decoded = decode_chunks(&[b"\xEF", b"\xBB\xBFdata: x\n\n"]);
    assert_eq!(decoded.frames, [msg("x")]);
    let decoded = decode_chunks(&[b"\xEF\xBB", b"\xBF", b"data: x\n\n"]);
    assert_eq!(decoded.frames, [msg("x")]);
}

#[test]
fn bom_mid_stream_is_not_stripped() {
    assert_eq!(frames(b"data: a\n\n\xEF\xBB\xBFdata: b\n\n"), [msg("a")]);
    assert_eq!(frames(b"data: a\n\xEF\xBB\xBFdata: b\n\n"), [msg("a")]);
}

#[test]
fn bom_inside_a_value_is_kept() {
    assert_eq!(frames(b"data: \xEF\xBB\xBFx\n\n"), [msg("\u{FEFF}x")]);
}

#[test]
fn truncated_bom_is_invalid_utf8_not_a_bom() {
    // EF BB then LF: one U+FFFD, making a line "\u{FFFD}" (an unknown field).
    assert_eq!(frames(b"\xEF\xBB\ndata: x\n\n"), [msg("x")]);
    assert_eq!(frames(b"\xEF\xBBdata: x\n\n"), []);
}

// ---------------------------------------------------------------------------------------------
// Line endings
// ---------------------------------------------------------------------------------------------

#[test]
fn lf_line_endings() {
    assert_eq!(frames(b"data: a\ndata: b\n\n"), [msg("a\nb")]);
}

#[test]
fn cr_line_endings() {
    assert_eq!(frames(b"data: a\rdata: b\r\r"), [msg("a\nb")]);
}

#[test]
fn crlf_line_endings() {
    assert_eq!(frames(b"data: a\r\ndata: b\r\n\r\n"), [msg("a\nb")]);
}

#[test]
fn mixed_line_endings() {
    assert_eq!(
        frames(b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\n\rdata: e\r\n\n"),
        [msg("a\nb\nc"), msg("d"), msg("e")]
    );
}

#[test]
fn crlf_split_across_chunks_is_one_line_end() {
    // Were the LF taken as a blank line, "a" would be dispatched on its own.
    let decoded = decode_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
    assert_eq!(decoded.frames, [msg("a\nb")]);
}

#[test]
fn cr_cr_is_two_line_ends() {
    assert_eq!(frames(b"data: a\r\rdata: b\r\r"), [msg("a"), msg("b")]);
    let decoded = decode_chunks(&[b"data: a\r", b"\r"]);
    assert_eq!(decoded.frames, [msg("a")]);
}

#[test]
fn lf_cr_is_two_line_ends() {
    assert_eq!(frames(b"data: a\n\r"), [msg("a")]);
}

#[test]
fn final_cr_at_end_of_stream_ends_the_line() {
    assert_eq!(frames(b"data: a\n\r"), [msg("a")]);
    assert_eq!(frames(b"data: a\r\r"), [msg("a")]);
}

#[test]
fn blank_lines_alone_dispatch_nothing() {
    assert_eq!(frames(b""), []);
    assert_eq!(frames(b"\n\n\r\n\r\r"), []);
}

// ---------------------------------------------------------------------------------------------
// Comments
// ---------------------------------------------------------------------------------------------

#[test]
fn comment_lines_yield_comment_frames() {
    assert_eq!(
        frames(b": hello\n:world\n:  two\n:\n"),
        [
            comment("hello"),
            comment("world"),
            comment(" two"),
            comment("")
        ]
    );
}

#[test]
fn comments_do_not_dispatch_or_interrupt_an_event() {
    assert_eq!(
        frames(b"data: a\n: ping\ndata: b\n\n"),
        [comment("ping"), msg("a\nb")]
    );
    assert_eq!(frames(b"data: a\n:\n"), [comment("")]);
}

// ---------------------------------------------------------------------------------------------
// Field parsing
// ---------------------------------------------------------------------------------------------

#[test]
fn field_without_colon_has_empty_value() {
    assert_eq!(frames(b"data\n\n"), [msg("")]);
    assert_eq!(frames(b"data\ndata: x\n\n"), [msg("\nx")]);
}

#[test]
fn exactly_one_leading_space_is_removed() {
    assert_eq!(frames(b"data:x\n\n"), [msg("x")]);
    assert_eq!(frames(b"data: x\n\n"), [msg("x")]);
    assert_eq!(frames(b"data:  x\n\n"), [msg(" x")]);
    assert_eq!(frames(b"data: \n\n"), [msg("")]);
    assert_eq!(frames(b"data:  \n\n"), [msg(" ")]);
}

#[test]
fn only_a_space_is_removed_not_a_tab() {
    assert_eq!(frames(b"data:\tx\n\n"), [msg("\tx")]);
}

#[test]
fn value_is_everything_after_the_first_colon() {
    assert_eq!(frames(b"data: a:b: c\n\n"), [msg("a:b: c")]);
    assert_eq!(
        frames(b"event:a:b\ndata: x\n\n"),
        [Frame::Event(Event::new("x").with_event("a:b"))]
    );
}

#[test]
fn field_names_are_case_sensitive() {
    assert_eq!(frames(b"Data: x\n\n"), []);
    assert_eq!(frames(b"DATA: x\n\n"), []);
    assert_eq!(frames(b"Event: t\ndata: x\n\n"), [msg("x")]);
    assert_eq!(decode(b"ID: 3\ndata: x\n\n").last_event_id, "");
    assert_eq!(frames(b"Retry: 1000\n"), []);
}

#[test]
fn field_name_with_space_before_colon_is_unknown() {
    assert_eq!(frames(b"data : x\n\n"), []);
    assert_eq!(frames(b" data: x\n\n"), []);
}

#[test]
fn unknown_fields_are_ignored() {
    assert_eq!(frames(b"foo: bar\ndata: x\nbaz\nx-data: y\n\n"), [msg("x")]);
    assert_eq!(frames(b"foo: bar\n\n"), []);
}

// ---------------------------------------------------------------------------------------------
// The id field and the last event ID
// ---------------------------------------------------------------------------------------------

#[test]
fn id_is_reported_and_committed() {
    let decoded = decode(b"id: 1\ndata: a\n\n");
    assert_eq!(decoded.frames, [Frame::Event(Event::new("a").with_id("1"))]);
    assert_eq!(decoded.last_event_id, "1");
}

#[test]
fn id_after_data_in_the_same_block_applies() {
    let decoded = decode(b"data: a\nid: 7\n\n");
    assert_eq!(decoded.frames, [Frame::Event(Event::new("a").with_id("7"))]);
}

#[test]
fn id_keeps_spaces_after_the_first() {
    assert_eq!(decode(b"id:  7\n\n").last_event_id, " 7");
}

#[test]
fn id_persists_across_later_events_without_id() {
    let decoded = decode(b"id: 1\ndata: a\n\ndata: b\n\n");
    assert_eq!(
        decoded.frames,
        [
            Frame::Event(Event::new("a").with_id("1")),
            Frame::Event(Event::new("b").with_id("1")),
        ]
    );
    assert_eq!(decoded.last_event_id, "1");
}

#[test]
fn id_containing_nul_is_ignored() {
    let decoded = decode(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n");
    assert_eq!(
        decoded.frames,
        [
            Frame::Event(Event::new("a").with_id("1")),
            Frame::Event(Event::new("b").with_id("1")),
        ]
    );
    assert_eq!(decoded.last_event_id, "1");
    assert_eq!(decode(b"id: \x00\n\n").last_event_id, "");
}

#[test]
fn empty_id_resets_last_event_id() {
    let decoded = decode(b"id: 1\ndata: a\n\nid:\ndata: b\n\n");
    assert_eq!(
        decoded.frames,
        [
            Frame::Event(Event::new("a").with_id("1")),
            Frame::Event(Event::new("b")),
        ]
    );
    assert_eq!(decoded.last_event_id, "");
}

#[test]
fn id_without_colon_resets_last_event_id() {
    let decoded = decode(b"id: 1\n\nid\ndata: b\n\n");
    assert_eq!(decoded.frames, [msg("b")]);
    assert_eq!(decoded.last_event_id, "");
}

#[test]
fn id_only_block_sets_last_event_id_without_dispatching() {
    let decoded = decode(b"id: 5\n\n");
    assert_eq!(decoded.frames, []);
    assert_eq!(decoded.last_event_id, "5");

    let decoded = decode(b"id: 5\n\ndata: x\n\n");
    assert_eq!(decoded.frames, [Frame::Event(Event::new("x").with_id("5"))]);
}

#[test]
fn id_is_committed_by_the_blank_line_not_before() {
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::from(&b"id: 9\n"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.last_event_id(), "");
    buf.extend_from_slice(b"\n");
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.last_event_id(), "9");
}

#[test]
fn id_of_an_undispatched_block_at_end_of_stream_is_not_committed() {
    assert_eq!(decode(b"id: 1\ndata: a\n\nid: 2\n").last_event_id, "1");
    assert_eq!(
        decode(b"id: 1\ndata: a\n\nid: 2\ndata: b\n").last_event_id,
        "1"
    );
}

// ---------------------------------------------------------------------------------------------
// The retry field
// ---------------------------------------------------------------------------------------------

#[test]
fn retry_with_ascii_digits_is_reported() {
    assert_eq!(frames(b"retry: 1000\n"), [retry(1000)]);
    assert_eq!(frames(b"retry:250\n"), [retry(250)]);
    assert_eq!(frames(b"retry: 0\n"), [retry(0)]);
    assert_eq!(frames(b"retry: 007\n"), [retry(7)]);
}

#[test]
fn retry_that_is_not_all_ascii_digits_is_ignored() {
    for input in [
        &b"retry: 10a\n"[..],
        b"retry:  1000\n",
        b"retry: 1000 \n",
        b"retry: -1\n",
        b"retry: +1\n",
        b"retry:\n",
        b"retry: \n",
        b"retry\n",
        b"retry: 1.5\n",
        b"retry: 1e3\n",
        b"retry: \xD9\xA1\n", // ARABIC-INDIC DIGIT ONE: a digit, but not ASCII
    ] {
        assert_eq!(frames(input), [], "input b\"{}\"", input.escape_ascii());
    }
}

#[test]
fn retry_without_data_is_still_reported() {
    assert_eq!(frames(b"retry: 5\n\n"), [retry(5)]);
    assert_eq!(frames(b"retry: 5\n"), [retry(5)]);
    // Reported as read, before the event it came with.
    assert_eq!(frames(b"data: x\nretry: 5\n\n"), [retry(5), msg("x")]);
}

// ---------------------------------------------------------------------------------------------
// The data buffer
// ---------------------------------------------------------------------------------------------

#[test]
fn data_lines_are_joined_with_lf() {
    assert_eq!(frames(b"data: a\ndata: b\ndata: c\n\n"), [msg("a\nb\nc")]);
}

#[test]
fn trailing_lf_is_removed_exactly_once() {
    assert_eq!(frames(b"data\ndata\n\n"), [msg("\n")]);
    assert_eq!(frames(b"data: a\ndata:\n\n"), [msg("a\n")]);
    assert_eq!(frames(b"data:\ndata:\ndata:\n\n"), [msg("\n\n")]);
}

#[test]
fn block_without_data_dispatches_nothing_and_resets_type() {
    assert_eq!(frames(b"event: x\n\n"), []);
    assert_eq!(frames(b"event: x\n\ndata: y\n\n"), [msg("y")]);
}

#[test]
fn event_type_is_reset_after_dispatch() {
    assert_eq!(
        frames(b"event: a\ndata: 1\n\ndata: 2\n\n"),
        [Frame::Event(Event::new("1").with_event("a")), msg("2"),]
    );
}

#[test]
fn last_event_type_field_wins() {
    assert_eq!(
        frames(b"event: a\nevent: b\ndata: x\n\n"),
        [Frame::Event(Event::new("x").with_event("b"))]
    );
}

#[test]
fn empty_event_type_means_message() {
    assert_eq!(frames(b"event:\ndata: x\n\n"), [msg("x")]);
    assert_eq!(frames(b"event\ndata: x\n\n"), [msg("x")]);
    assert_eq!(frames(b"event: a\nevent:\ndata: x\n\n"), [msg("x")]);
}

#[test]
fn nul_in_data_is_kept() {
    assert_eq!(frames(b"data: a\x00b\n\n"), [msg("a\0b")]);
}

// ---------------------------------------------------------------------------------------------
// End of stream
// ---------------------------------------------------------------------------------------------

#[test]
fn unterminated_event_at_end_of_stream_is_dropped() {
    assert_eq!(frames(b"data: a\n\ndata: b\n"), [msg("a")]);
    assert_eq!(frames(b"data: a\n"), []);
}

#[test]
fn unterminated_final_line_is_dropped() {
    assert_eq!(frames(b"data: a\n\ndata: b"), [msg("a")]);
    assert_eq!(frames(b"data: a\n\n: comment"), [msg("a")]);
    assert_eq!(frames(b"retry: 10"), []);
}

#[test]
fn decode_eof_starts_a_new_stream() {
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::from(&b"\xEF\xBB\xBFid: 1\ndata: a\n\nevent: t\ndata: cut"[..]);
    let mut got = Vec::new();
    while let Some(frame) = decoder.decode_eof(&mut buf).expect("first stream decodes") {
        got.push(frame);
    }
    buf.extend_from_slice(b"\xEF\xBB\xBFid: 2\ndata: b\n\n");
    while let Some(frame) = decoder.decode_eof(&mut buf).expect("second stream decodes") {
        got.push(frame);
    }
    assert_eq!(
        got,
        [
            Frame::Event(Event::new("a").with_id("1")),
            Frame::Event(Event::new("b").with_id("2")),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------------

#[test]
fn multibyte_utf8_split_at_every_byte_decodes() {
    // 2-, 3- and 4-byte characters in every field; `decode` splits at every byte.
    let decoded = decode("id: ü€😀\nevent: ü€😀\ndata: ü€😀\n: ü€😀\n\n".as_bytes());
    assert_eq!(
        decoded.frames,
        [
            comment("ü€😀"),
            Frame::Event(Event::new("ü€😀").with_id("ü€😀").with_event("ü€😀")),
        ]
    );
    assert_eq!(decoded.last_event_id, "ü€😀");
}

#[test]
fn invalid_utf8_in_data_is_replaced() {
    assert_eq!(frames(b"data: a\xFFb\n\n"), [msg("a\u{FFFD}b")]);
    // A truncated sequence ended by the line end is one U+FFFD.
    assert_eq!(frames(b"data: \xE2\x82\ndata: x\n\n"), [msg("\u{FFFD}\nx")]);
    assert_eq!(frames(b"data: \xC3\n\n"), [msg("\u{FFFD}")]);
}

#[test]
fn invalid_utf8_in_event_type_is_replaced() {
    assert_eq!(
        frames(b"event: t\xFF\ndata: x\n\n"),
        [Frame::Event(Event::new("x").with_event("t\u{FFFD}"))]
    );
    // Replacement must not be confused with a literal U+FFFD type seen before.
    assert_eq!(
        frames(b"event: \xEF\xBF\xBD\ndata: x\n\nevent: \xFF\ndata: y\n\n"),
        [
            Frame::Event(Event::new("x").with_event("\u{FFFD}")),
            Frame::Event(Event::new("y").with_event("\u{FFFD}")),
        ]
    );
}

#[test]
fn invalid_utf8_in_id_is_replaced() {
    let decoded = decode(b"id: 1\xC3\ndata: x\n\n");
    assert_eq!(
        decoded.frames,
        [Frame::Event(Event::new("x").with_id("1\u{FFFD}"))]
    );
    assert_eq!(decoded.last_event_id, "1\u{FFFD}");
}

#[test]
fn invalid_utf8_in_comment_is_replaced() {
    assert_eq!(frames(b": \xFFping\n"), [comment("\u{FFFD}ping")]);
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

#[test]
fn line_longer_than_max_line_len_errors() {
    let mut decoder = Decoder::new().max_line_len(8);
    let mut buf = BytesMut::from(&b"data: 123\n\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::LineTooLong { limit: 8 })
    );
}

#[test]
fn long_line_without_line_end_errors_as_it_trickles_in() {
    let mut decoder = Decoder::new().max_line_len(8);
    let mut buf = BytesMut::new();
    for (fed, byte) in b"data: 12".iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(None),
            "after {} bytes",
            fed + 1
        );
    }
    buf.extend_from_slice(b"3");
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::LineTooLong { limit: 8 })
    );
}

#[test]
fn long_line_arriving_in_one_chunk_without_line_end_errors() {
    let mut decoder = Decoder::new().max_line_len(8);
    let mut buf = BytesMut::from(&b"data: 0123456789abcdef"[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::LineTooLong { limit: 8 })
    );
}

#[test]
fn line_exactly_at_max_line_len_is_fine() {
    let make = || Decoder::new().max_line_len(8);
    assert_eq!(
        decode_every_split_with(make, b"data: 12\r\n: 456789\r\n\r\n").frames,
        [comment("456789"), msg("12")]
    );
}

#[test]
fn data_lines_summing_past_max_event_len_error() {
    let result = try_decode_with(
        Decoder::new().max_event_len(10),
        &[b"data: abcd\n", b"data: efgh\n", b"data: ijkl\n", b"\n"],
    );
    assert_eq!(result, Err(DecodeError::EventTooLarge { limit: 10 }));

    let many_short_lines = b"data: x\n".repeat(100);
    let result = try_decode_with(Decoder::new().max_event_len(64), &[&many_short_lines]);
    assert_eq!(result, Err(DecodeError::EventTooLarge { limit: 64 }));
}

#[test]
fn data_exactly_at_max_event_len_is_fine() {
    // "abcd\nefgh" is 9 bytes.
    let make = || Decoder::new().max_event_len(9);
    assert_eq!(
        decode_every_split_with(make, b"data: abcd\ndata: efgh\n\ndata: 123456789\n\n").frames,
        [msg("abcd\nefgh"), msg("123456789")]
    );
}

// ---------------------------------------------------------------------------------------------
// Reconnection
// ---------------------------------------------------------------------------------------------

#[test]
fn reset_starts_a_new_stream_and_keeps_last_event_id() {
    let mut decoder = Decoder::new();
    let mut buf =
        BytesMut::from(&b"\xEF\xBB\xBFid: 1\ndata: a\n\nevent: t\ndata: cut\ndata: off"[..]);
    let mut got = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).expect("first stream decodes") {
        got.push(frame);
    }
    assert_eq!(got, [Frame::Event(Event::new("a").with_id("1"))]);

    decoder.reset();
    buf.clear();
    assert_eq!(decoder.last_event_id(), "1");

    // A BOM is stripped again; the half-read event and its type are gone.
    buf.extend_from_slice(b"\xEF\xBB\xBFdata: b\nid: 2\n\n");
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Frame::Event(Event::new("b").with_id("2"))))
    );
    assert_eq!(decoder.last_event_id(), "2");
}

/// The spec starts each stream's id buffer empty, which would make the first id-less event after a
/// reconnection wipe the last event id. Like browsers (Chromium seeds its parser with it), the
/// decoder starts the new stream from the kept id, so a resumed stream keeps resuming.
#[test]
fn after_reset_an_event_without_id_keeps_the_last_event_id() {
    let mut decoder = Decoder::new();
    decoder.set_last_event_id("41".into());
    decoder.reset();
    let mut buf = BytesMut::from(
        &b"data: resumed

"[..],
    );
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Frame::Event(Event::new("resumed").with_id("41"))))
    );
    assert_eq!(decoder.last_event_id(), "41");
}

// ---------------------------------------------------------------------------------------------
// A realistic stream
// ---------------------------------------------------------------------------------------------

#[test]
fn realistic_mixed_stream() {
    let input: &[u8] = b"\xEF\xBB\xBF: welcome\r\n\
        retry: 3000\r\n\
        \r\n\
        id: 1\r\n\
        event: update\r\n\
        data: {\"a\":1}\r\n\
        \r\n\
        : keep-alive\n\
        data: line one\n\
        data: line two\n\
        data\n\
        \n\
        id\n\
        event: \n\
        data:  indented\n\
        Data: ignored\n\
        foo: bar\n\
        retry: soon\n\
        \n\
        id: 2\x00x\n\
        event: ping\n\
        \n\
        data: caf\xC3\xA9 \xFF\r\
        id: 3\r\
        \r\
        data: tail never dispatched\n";
    let decoded = decode(input);
    assert_eq!(
        decoded.frames,
        [
            comment("welcome"),
            retry(3000),
            Frame::Event(Event::new("{\"a\":1}").with_id("1").with_event("update")),
            comment("keep-alive"),
            Frame::Event(Event::new("line one\nline two\n").with_id("1")),
            msg(" indented"),
            Frame::Event(Event::new("caf\u{E9} \u{FFFD}").with_id("3")),
        ]
    );
    assert_eq!(decoded.last_event_id, "3");
}
