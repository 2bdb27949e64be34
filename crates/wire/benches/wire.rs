//! Encode and decode throughput, with a plain `memchr` scan of the same bytes as the yardstick for
//! decoding (the target: decoding large `data` lines within 2x of it).
//!
//! Run: `cargo bench -p ssehub-wire --bench wire`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ssehub_wire::{Decoder, Event, Frame};

/// Socket reads rarely hand over more than this at once.
const CHUNK: usize = 16 * 1024;

fn small_event(n: usize) -> Event {
    Event::new(format!(
        "{{\"user\":\"u001\",\"seq\":{n},\"text\":\"hello_world\"}}"
    ))
    .with_id(format!("01JDQ6Z8XH5V2T0000000{n:05}"))
    .with_event("message")
}

fn stream_of(events: impl IntoIterator<Item = Event>) -> Bytes {
    let mut buf = BytesMut::new();
    for event in events {
        event.encode_into(&mut buf).expect("bench events are valid");
    }
    buf.freeze()
}

/// Decodes `input` as a client would: chunk by chunk appended to one read buffer.
fn decode_chunked(input: &[u8]) -> usize {
    let mut decoder = Decoder::new()
        .max_line_len(usize::MAX)
        .max_event_len(usize::MAX);
    let mut buf = BytesMut::with_capacity(CHUNK * 2);
    let mut frames = 0;
    for chunk in input.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = decoder.decode(&mut buf).expect("bench input is valid") {
            black_box(frame);
            frames += 1;
        }
    }
    frames
}

/// Decodes a buffer that already holds the whole input, as after `read_buf` from a socket. The
/// frames are returned so that freeing them (and the buffer they share) is not timed.
fn decode_whole(mut buf: BytesMut) -> Vec<Frame> {
    let mut decoder = Decoder::new()
        .max_line_len(usize::MAX)
        .max_event_len(usize::MAX);
    let mut frames = Vec::with_capacity(64);
    while let Some(frame) = decoder.decode(&mut buf).expect("bench input is valid") {
        frames.push(frame);
    }
    frames
}

fn memchr_scan(input: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', input).count()
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let small = small_event(1);
    group.throughput(Throughput::Elements(1));
    group.bench_function("small_event", |b| b.iter(|| black_box(&small).encode()));

    let multiline =
        Event::new("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n".repeat(16));
    group.throughput(Throughput::Bytes(multiline.data.len() as u64));
    group.bench_function("1k_data_16_lines", |b| {
        b.iter(|| black_box(&multiline).encode())
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let line = "x".repeat(64 * 1024);
    let inputs = [
        ("small_events", stream_of((0..10_000).map(small_event))),
        (
            "64k_data_lines",
            stream_of((0..16).map(|_| Event::new(line.as_str()))),
        ),
    ];
    for (name, input) in &inputs {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(format!("{name}/whole"), |b| {
            b.iter_batched(
                || BytesMut::from(&input[..]),
                decode_whole,
                BatchSize::LargeInput,
            )
        });
        group.bench_function(format!("{name}/chunked"), |b| {
            b.iter(|| decode_chunked(black_box(input)))
        });
        group.bench_function(format!("{name}/memchr_baseline"), |b| {
            b.iter(|| memchr_scan(black_box(input)))
        });
    }
    // The two passes a decoder cannot avoid, measured alone: finding CR or LF, and checking UTF-8.
    let large = &inputs[1].1;
    group.bench_function("64k_data_lines/part_memchr2", |b| {
        b.iter(|| memchr::memchr2_iter(b'\r', b'\n', black_box(large)).count())
    });
    group.bench_function("64k_data_lines/part_utf8_check_std", |b| {
        b.iter(|| std::str::from_utf8(black_box(large)).is_ok())
    });
    group.bench_function("64k_data_lines/part_utf8_check_simd", |b| {
        b.iter(|| simdutf8::basic::from_utf8(black_box(large)).is_ok())
    });
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
