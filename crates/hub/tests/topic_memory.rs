//! What a (connection, topic) pair costs on the heap: N idle connections each subscribe to K
//! topics, against the same N connections with none. Its own test binary, with an allocator that
//! counts live heap bytes (requested sizes: the allocator's own overhead is not in it), so the
//! figures are exact and the same on every run. Run with `--nocapture` to see them
//! (`docs/benchmarks.md`, "Topics").
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

mod counting;

use std::task::{Context, Poll, Waker};

use futures_util::Stream;
use ssehub_hub::{Hub, SubscribeOptions, Subscription};

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// Enough connections that the hash tables' growth steps average out, few enough for a second.
const CONNECTIONS: usize = 1000;

/// Polls a stream until it has nothing more (its opening comment), as a server would at once.
fn drain(stream: &mut Subscription) {
    let mut cx = Context::from_waker(Waker::noop());
    while let Poll::Ready(Some(_)) = std::pin::Pin::new(&mut *stream).poll_next(&mut cx) {}
}

/// Topic names of realistic length: `orders/000042` (13 bytes), shared by every connection or
/// the connection's own.
fn topic(connection: usize, k: usize, shared: bool) -> String {
    if shared {
        format!("orders/{k:06}")
    } else {
        format!("orders/{:06}", connection * 64 + k)
    }
}

/// Live heap bytes held by `CONNECTIONS` idle subscriptions on `k` topics each, over an empty
/// hub's. The hub is built and dropped here, so nothing else in the process moves the count.
fn heap(k: usize, shared: bool) -> isize {
    let hub = Hub::builder()
        .heartbeat(None)
        .max_streams(usize::MAX)
        .build()
        .unwrap();
    // The options are built before the count starts: a server builds them from the request and
    // they are moved into the subscription, so their heap is counted as the subscription's.
    let options: Vec<SubscribeOptions> = (0..CONNECTIONS)
        .map(|c| SubscribeOptions::default().topics((0..k).map(|k| topic(c, k, shared))))
        .collect();
    let uids: Vec<String> = (0..CONNECTIONS).map(|c| format!("u{c:06}")).collect();
    let options_heap: isize = options
        .iter()
        .map(|o| {
            (o.topics.capacity() * 24 + o.topics.iter().map(String::capacity).sum::<usize>())
                as isize
        })
        .sum();
    let before = counting::live() - options_heap;
    let mut streams: Vec<Subscription> = uids
        .iter()
        .zip(options)
        .map(|(uid, options)| hub.subscribe(uid, options).unwrap())
        .collect();
    for stream in &mut streams {
        drain(stream);
    }
    // The vector of streams is the test's, not the hub's.
    let held = counting::live()
        - before
        - (streams.capacity() * std::mem::size_of::<Subscription>()) as isize;
    assert_eq!(hub.stats().connections, CONNECTIONS);
    held
}

/// Each figure is the median of this many hubs: each hub hashes with its own seed, so how full
/// its tables are when the count is taken (and with that, the figure) moves by a few percent.
const HUBS: usize = 3;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[test]
fn a_connection_topic_pair_costs_under_200_bytes_in_the_hub() {
    let none = median((0..HUBS).map(|_| heap(0, false) as f64).collect());
    eprintln!(
        "{CONNECTIONS} idle subscriptions, no topic: {:.0} B each (heap, requested sizes)",
        none / CONNECTIONS as f64
    );
    let mut worst: f64 = 0.0;
    for shared in [true, false] {
        for k in [1, 8, 64] {
            let pairs = (CONNECTIONS * k) as f64;
            // The registry's index and the connection's list of its topics: the subscription
            // keeps no copy of the names the caller handed in.
            let per_pair: Vec<f64> = (0..HUBS)
                .map(|_| (heap(k, shared) as f64 - none) / pairs)
                .collect();
            let (min, max) = per_pair
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let pair = median(per_pair);
            eprintln!(
                "K = {k:>2}, {} topics of 13 bytes, per (connection, topic) pair: {pair:.0} B \
                 ({min:.0}-{max:.0})",
                if shared { "shared" } else { "distinct" },
            );
            worst = worst.max(pair);
        }
    }
    assert!(
        worst < 200.0,
        "a (connection, topic) pair costs {worst:.1} B, over the 200 B promised"
    );
}
