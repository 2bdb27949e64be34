//! The publish path's cost per push, without sockets: `axum::push_response` (JSON parse, checks,
//! encoding, registry lookup, delivery to one connection, the envelope) for a uni-cast push to
//! one of many online uids, the way `POST /push` runs it. Reports nanoseconds and allocations
//! per push; under `valgrind --tool=callgrind` the instruction count per push is
//! `(total(N) - total(0)) / N` (run it with `PUSHES=0` and with `PUSHES=N`).
//!
//! ```sh
//! cargo bench -p ssehub-hub --bench publish                       # ns and allocations per push
//! PUSHES=20000 valgrind --tool=callgrind target/release/deps/publish-*   # instructions
//! ```
#![allow(unsafe_code)] // the counting allocator
#![allow(clippy::unwrap_used)] // a bench: a panic is how it reports

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_util::StreamExt;
use ssehub_hub::{Hub, SubscribeOptions};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same pointer and layout, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same pointer and layout, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let pushes: u64 = std::env::var("PUSHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let users: u64 = 10_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let hub = Hub::builder().heartbeat(None).build().unwrap();
        let mut streams: Vec<_> = (0..users)
            .map(|i| hub.subscribe(&format!("c{i}"), SubscribeOptions::default()).unwrap())
            .collect();
        for stream in &mut streams {
            stream.next().await.unwrap(); // the opening comment
        }
        // The bodies, made before counting: what arrives over HTTP is already bytes.
        let bodies: Vec<Vec<u8>> = (0..pushes.min(users))
            .map(|i| {
                format!(
                    r#"{{"uids":["c{i}"],"events":[{{"data":"{i} 1764680000000000000 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}]}}"#
                )
                .into_bytes()
            })
            .collect();
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        let start = Instant::now();
        for n in 0..pushes {
            let i = (n % users) as usize;
            let response = ssehub_hub::axum::push_response(&hub, &bodies[i % bodies.len()]).await;
            assert_eq!(response.status(), 200);
            drop(response);
            // The stream takes its event, as the writer would.
            streams[i].next().await.unwrap();
        }
        let elapsed = start.elapsed();
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
        if pushes > 0 {
            println!(
                "{pushes} uni-cast pushes through push_response to 1 of {users} uids: {:.0} ns and {:.1} allocations per push (the stream's take included)",
                elapsed.as_nanos() as f64 / pushes as f64,
                allocations as f64 / pushes as f64
            );
        }
    });
}
