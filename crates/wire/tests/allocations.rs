//! Allocation counts, the noise-free measure of the encoder's and decoder's cost: encoding is one
//! allocation per event, and steady-state decoding allocates nothing per event (values are slices of
//! the read buffer, a repeated event type is reused).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use bytes::BytesMut;
use ssehub_wire::{Decoder, Event, Frame};

/// Counts allocations made by the current thread (tests run on parallel threads).
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` in `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = work();
    (result, ALLOCATIONS.with(Cell::get) - before)
}

fn sample_event(n: usize) -> Event {
    Event::new(format!("{{\"seq\":{n},\"text\":\"hello_world\"}}"))
        .with_id(format!("{n:08}"))
        .with_event("update")
        .with_retry(Duration::from_secs(3))
}

#[test]
fn encoding_allocates_once_per_event() {
    let event = sample_event(1);
    let (bytes, allocations) = allocations_during(|| event.encode());
    assert!(bytes.is_ok());
    assert_eq!(allocations, 1);
}

#[test]
fn steady_state_decoding_allocates_nothing_per_event() {
    const EVENTS: usize = 2_000;
    const READ: usize = 16 * 1024;
    let mut wire = BytesMut::new();
    for n in 0..EVENTS {
        Event::new(format!("{{\"seq\":{n}}}"))
            .with_id(format!("{n:08}"))
            .with_event("update")
            .encode_into(&mut wire)
            .expect("valid event");
    }

    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(READ);
    let mut events = 0;
    let mut chunks = 0;
    let ((), allocations) = allocations_during(|| {
        for chunk in wire.chunks(READ) {
            chunks += 1;
            // A socket read into the buffer: room for one more read, as `read_buf` would reserve.
            buf.reserve(READ);
            buf.extend_from_slice(chunk);
            while let Some(frame) = decoder.decode(&mut buf).expect("valid stream") {
                assert!(matches!(frame, Frame::Event(_)));
                events += 1;
            }
        }
    });
    assert_eq!(events, EVENTS);
    // Per read: a new buffer once the old one is shared with decoded events, and the shared
    // header `bytes` makes on the first split. Plus the event type, once.
    assert!(
        allocations <= 2 * chunks + 1,
        "{allocations} allocations for {EVENTS} events in {chunks} reads"
    );
}
