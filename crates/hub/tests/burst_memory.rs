//! A connection's memory after a burst: once the burst is written, its queue gives its capacity
//! back and the connection costs what it cost idle. Its own test binary, with an allocator that
//! counts live heap bytes. Run with `--nocapture` to see the figures (`docs/benchmarks.md`).
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports
#![allow(unsafe_code)] // a counting global allocator is the only way to see the heap

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::task::{Context, Poll, Waker};

use futures_util::Stream;
use ssehub_hub::{Event, Hub, Subscription};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout, passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same pointer and layout, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same pointer and layout, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONNECTIONS: usize = 200;
const BURST: usize = 250;

/// Polls a stream until it has nothing more, returning the bytes it gave.
fn drain(stream: &mut Subscription) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut bytes = 0;
    while let Poll::Ready(Some(chunk)) = std::pin::Pin::new(&mut *stream).poll_next(&mut cx) {
        bytes += chunk.len();
    }
    bytes
}

#[test]
fn after_a_burst_a_connection_costs_what_it_cost_idle() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let hub = Hub::builder().heartbeat(None).build().unwrap();
        let mut streams: Vec<Subscription> = (0..CONNECTIONS)
            .map(|n| hub.subscribe(&format!("u{n}"), Default::default()).unwrap())
            .collect();
        for stream in &mut streams {
            drain(stream);
        }
        // Warm up whatever the first push allocates once (the id generator, ...).
        hub.broadcast([Event::new("warm-up")]).await.unwrap();
        for stream in &mut streams {
            drain(stream);
        }
        let idle = LIVE.load(Ordering::Relaxed);

        for n in 0..BURST {
            hub.broadcast([Event::new(format!("event {n} {}", "x".repeat(1000)))])
                .await
                .unwrap();
        }
        let during = LIVE.load(Ordering::Relaxed);
        let mut written = 0;
        for stream in &mut streams {
            written += drain(stream);
        }
        let after = LIVE.load(Ordering::Relaxed);

        let per_connection = |bytes: isize| bytes as f64 / CONNECTIONS as f64;
        eprintln!(
            "{CONNECTIONS} connections, a burst of {BURST} x 1 KiB events: heap {:.0} B per \
             connection over idle during the burst, {:.0} B after it was written",
            per_connection(during - idle),
            per_connection(after - idle),
        );
        assert!(
            written >= CONNECTIONS * BURST * 1000,
            "the burst was written"
        );
        assert!(
            after - idle <= (CONNECTIONS * 64) as isize,
            "after the burst, {:.0} B per connection over idle (at most 64 B)",
            per_connection(after - idle)
        );
    });
}
