//! Feeds arbitrary bytes to the decoder, cut into arbitrary chunks, with small limits.
//!
//! Checks: no panic; the same frames whether the bytes come whole or in chunks; no limit is ever
//! exceeded; every event whose fields the encoder accepts encodes and decodes back to itself.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run decode --fuzz-dir crates/wire/fuzz`

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ssehub_wire::{DecodeError, Decoder, Frame};

const MAX_LINE: usize = 256;
const MAX_EVENT: usize = 512;

/// Decodes `input` cut at `cuts`; stops at the first error, as a client would drop the connection.
fn decode(input: &[u8], cuts: &[usize]) -> (Vec<Frame>, Option<DecodeError>) {
    let mut decoder = Decoder::new()
        .max_line_len(MAX_LINE)
        .max_event_len(MAX_EVENT);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([&input.len()]) {
        buf.extend_from_slice(&input[start..cut]);
        start = cut;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(err) => return (frames, Some(err)),
            }
            assert!(buf.len() <= input.len());
        }
    }
    loop {
        match decoder.decode_eof(&mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(err) => return (frames, Some(err)),
        }
    }
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (bytes, cut_seeds) = input;
    let mut cuts: Vec<usize> = cut_seeds
        .iter()
        .map(|&seed| usize::from(seed) * bytes.len() / 256)
        .collect();
    cuts.sort_unstable();

    let (whole, whole_err) = decode(&bytes, &[]);
    let (chunked, chunked_err) = decode(&bytes, &cuts);
    if whole_err.is_none() && chunked_err.is_none() {
        assert_eq!(whole, chunked);
    } else {
        // A limit error may surface at a different frame depending on chunking (a long line is
        // refused as soon as it is seen), but it surfaces either way.
        assert!(
            whole_err.is_some() && chunked_err.is_some(),
            "{whole_err:?} vs {chunked_err:?}"
        );
    }

    for frame in whole {
        if let Frame::Event(event) = frame {
            assert!(event.data.len() <= MAX_EVENT);
            let encoded = event
                .encode()
                .expect("a decoded event has no CR/LF in type or id");
            let mut buf = BytesMut::from(&encoded[..]);
            let again = Decoder::new()
                .decode(&mut buf)
                .expect("re-encoded event is small");
            assert_eq!(again, Some(Frame::Event(event)));
        }
    }
});
