//! A connection's memory after a burst: once the burst is written, its queue gives its capacity
//! back and the connection costs what it cost idle. Its own test binary, with an allocator that
//! counts live heap bytes. Run with `--nocapture` to see the figures (`docs/benchmarks.md`).
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

mod counting;

use std::task::{Context, Poll, Waker};

use futures_util::Stream;
use ssehub_hub::{Event, Hub, Subscription};

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

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
        let idle = counting::live();

        for n in 0..BURST {
            hub.broadcast([Event::new(format!("event {n} {}", "x".repeat(1000)))])
                .await
                .unwrap();
        }
        let during = counting::live();
        let mut written = 0;
        for stream in &mut streams {
            written += drain(stream);
        }
        let after = counting::live();

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
