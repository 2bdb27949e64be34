//! The slow-client policies, driven in-process: a `Subscription` that is not polled is a client
//! that does not read. Time is paused, so the waits are exact and the tests instant.
#![allow(clippy::unwrap_used)] // helpers in test code: a panic is how a test reports

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use ssehub_hub::{Event, Hub, SlowClientPolicy, Subscription};

fn events(range: std::ops::Range<usize>) -> Vec<Event> {
    range
        .map(|i| Event::new(format!("e{i}")).with_id(i.to_string()))
        .collect()
}

/// Reads chunks until `n` events have arrived; returns their data.
async fn read_events(stream: &mut Subscription, n: usize) -> Vec<String> {
    let mut buf = bytes::BytesMut::new();
    let mut decoder = ssehub_wire::Decoder::new();
    let mut data = Vec::new();
    while data.len() < n {
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            if let ssehub_wire::Frame::Event(event) = frame {
                data.push(event.data.as_str().to_owned());
            }
        }
        if data.len() < n {
            let chunk = stream.next().await.expect("stream ended");
            buf.extend_from_slice(&chunk);
        }
    }
    data
}

type Failures = Arc<Mutex<Vec<(String, String)>>>;

fn hub_with(policy: SlowClientPolicy, buffer: usize) -> (Hub, Failures) {
    let failures: Failures = Arc::default();
    let record = Arc::clone(&failures);
    let hub = Hub::builder()
        .connection_buffer(buffer)
        .slow_client(policy)
        .heartbeat(None)
        .on_push_failed(move |uid, event| {
            let id = event
                .id
                .as_ref()
                .map(|id| id.as_str().to_owned())
                .unwrap_or_default();
            record.lock().unwrap().push((uid.to_owned(), id));
        })
        .build()
        .unwrap();
    (hub, failures)
}

#[tokio::test(start_paused = true)]
async fn wait_policy_fails_after_its_retries_and_calls_the_handler() {
    let timeout = Duration::from_millis(100);
    let (hub, failures) = hub_with(
        SlowClientPolicy::Wait {
            timeout,
            retries: 3,
        },
        2,
    );
    let mut stream = hub.subscribe("slow", Default::default()).unwrap();
    let mut fast = hub.subscribe("fast", Default::default()).unwrap();
    stream.next().await; // opening comment
    fast.next().await;

    // 2 fill the queue; of the next push, 2 wait in the overflow, 1 fails at once. (Pushed
    // apart: an idle connection takes a whole push, whatever its size.)
    hub.push(["slow"], events(0..2)).await.unwrap();
    let receipt = hub.push(["slow"], events(2..5)).await.unwrap();
    assert_eq!(receipt.failed, 1);
    assert_eq!(
        failures.lock().unwrap().clone(),
        [("slow".to_owned(), "4".to_owned())]
    );
    // A slow client does not hold up anyone else.
    hub.push(["fast"], events(10..11)).await.unwrap();
    assert_eq!(read_events(&mut fast, 1).await, ["e10"]);

    // Two waits expire: two timeouts each, nothing failed yet.
    tokio::time::sleep(timeout * 2 + Duration::from_millis(1)).await;
    let stats = hub.stats();
    assert_eq!((stats.timeout, stats.failed), (4, 1));

    // The third wait expires: both waiting events fail and go to the handler.
    tokio::time::sleep(timeout).await;
    let stats = hub.stats();
    assert_eq!((stats.timeout, stats.failed, stats.success), (6, 3, 3));
    assert_eq!(failures.lock().unwrap().len(), 3);
    assert_eq!(
        failures.lock().unwrap()[1..],
        [
            ("slow".to_owned(), "2".to_owned()),
            ("slow".to_owned(), "3".to_owned())
        ]
    );

    // What was queued is still delivered, in order; the failed events are not.
    hub.push(["slow"], events(5..6)).await.unwrap();
    assert_eq!(read_events(&mut stream, 3).await, ["e0", "e1", "e5"]);
}

#[tokio::test(start_paused = true)]
async fn waiting_events_are_delivered_in_order_when_the_client_catches_up() {
    let timeout = Duration::from_millis(100);
    let (hub, failures) = hub_with(
        SlowClientPolicy::Wait {
            timeout,
            retries: 3,
        },
        2,
    );
    let mut stream = hub.subscribe("slow", Default::default()).unwrap();
    stream.next().await;
    hub.push(["slow"], events(0..2)).await.unwrap();
    hub.push(["slow"], events(2..4)).await.unwrap();
    tokio::time::sleep(timeout + Duration::from_millis(1)).await; // one wait expires
    assert_eq!(read_events(&mut stream, 4).await, ["e0", "e1", "e2", "e3"]);
    let stats = hub.stats();
    assert_eq!(
        (stats.total, stats.success, stats.failed, stats.timeout),
        (4, 4, 0, 2)
    );
    // Nothing is left to time out.
    tokio::time::sleep(timeout * 10).await;
    assert_eq!(hub.stats().failed, 0);
    assert!(failures.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn wait_policy_with_no_retries_fails_at_once() {
    let policy = SlowClientPolicy::Wait {
        timeout: Duration::from_secs(1),
        retries: 0,
    };
    let (hub, failures) = hub_with(policy, 3);
    let _stream = hub.subscribe("slow", Default::default()).unwrap();
    hub.push(["slow"], events(0..3)).await.unwrap();
    let receipt = hub.push(["slow"], events(3..5)).await.unwrap();
    assert_eq!(receipt.failed, 2);
    assert_eq!(failures.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn disconnect_policy_ends_the_stream_and_reports_the_rest() {
    let (hub, failures) = hub_with(SlowClientPolicy::Disconnect, 2);
    let mut stream = hub.subscribe("slow", Default::default()).unwrap();
    stream.next().await;
    hub.push(["slow"], events(0..2)).await.unwrap();
    let receipt = hub.push(["slow"], events(2..4)).await.unwrap();
    assert_eq!(receipt.failed, 2);
    assert_eq!(failures.lock().unwrap().len(), 2);
    // Cut off: the stream ends without the events it had not read.
    assert_eq!(stream.next().await, None);
    // Later pushes no longer count it.
    let receipt = hub.push(["slow"], events(4..5)).await.unwrap();
    assert_eq!(receipt.connections, 0);
    drop(stream);
    assert_eq!(hub.online_clients_num(), 0);
}

#[tokio::test]
async fn broadcast_to_many_connections_over_workers_reaches_each_once_in_order() {
    let hub = Hub::builder().workers(4).heartbeat(None).build().unwrap();
    let mut streams: Vec<Subscription> = (0..9000)
        .map(|i| {
            hub.subscribe(&format!("user-{}", i % 3000), Default::default())
                .unwrap()
        })
        .collect();
    for stream in &mut streams {
        stream.next().await;
    }
    let first = hub.broadcast(events(0..3)).await.unwrap();
    let second = hub.broadcast(events(3..5)).await.unwrap();
    assert_eq!((first.connections, second.connections), (9000, 9000));
    for stream in &mut streams {
        assert_eq!(read_events(stream, 5).await, ["e0", "e1", "e2", "e3", "e4"]);
    }
    let stats = hub.stats();
    assert_eq!(
        (stats.total, stats.success, stats.online_users),
        (45_000, 45_000, 3000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushers_and_subscribers_lose_nothing_and_keep_order() {
    const PUSHERS: usize = 4;
    const PER_PUSHER: usize = 300;
    let hub = Hub::builder()
        .connection_buffer(PUSHERS * PER_PUSHER)
        .heartbeat(None)
        .build()
        .unwrap();
    let mut readers = Vec::new();
    for i in 0..16 {
        let mut stream = hub
            .subscribe(&format!("u{}", i % 8), Default::default())
            .unwrap();
        stream.next().await;
        readers.push(tokio::spawn(async move {
            read_events(&mut stream, PUSHERS * PER_PUSHER).await
        }));
    }
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| {
            let hub = hub.clone();
            tokio::spawn(async move {
                for i in 0..PER_PUSHER {
                    let event = Event::new(format!("{p}:{i}"));
                    // Half broadcasts, half to every uid by name: both paths under contention.
                    if i % 2 == 0 {
                        hub.broadcast([event]).await.unwrap();
                    } else {
                        let uids: Vec<String> = (0..8).map(|u| format!("u{u}")).collect();
                        hub.push(uids, [event]).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for pusher in pushers {
        pusher.await.unwrap();
    }
    for reader in readers {
        let data = reader.await.unwrap();
        let mut next = [0usize; PUSHERS];
        for item in data {
            let (p, i) = item.split_once(':').unwrap();
            let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
            assert_eq!(
                i, next[p],
                "pusher {p}'s events arrive in order, none missing"
            );
            next[p] += 1;
        }
        assert_eq!(next, [PER_PUSHER; PUSHERS]);
    }
    assert_eq!(hub.stats().failed, 0);
}

/// A log sink for the test's own `tracing` subscriber.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_push_failing_for_thousands_of_clients_logs_one_line_and_reports_each_failure() {
    const CLIENTS: usize = 5_000;
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .finish();
    let (hub, failures) = hub_with(SlowClientPolicy::Disconnect, 1);
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let _streams: Vec<Subscription> = (0..CLIENTS)
                .map(|n| hub.subscribe(&format!("u{n}"), Default::default()).unwrap())
                .collect();
            hub.broadcast(events(0..1)).await.unwrap();
            let receipt = hub.broadcast(events(1..3)).await.unwrap();
            assert_eq!(receipt.failed, 2 * CLIENTS);
        });
    });
    assert_eq!(
        failures.lock().unwrap().len(),
        2 * CLIENTS,
        "the handler saw each"
    );
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().filter(|line| line.contains("failed")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("failed=10000") && lines[0].contains("cut_off=5000"),
        "{}",
        lines[0]
    );
}

#[tokio::test(start_paused = true)]
async fn a_push_larger_than_the_buffer_reaches_an_idle_client_whole() {
    // The events-per-push limit (1,000) is above the buffer (256): a valid push must not cut
    // off or fail every idle client.
    let (hub, failures) = hub_with(SlowClientPolicy::Disconnect, 2);
    let mut stream = hub.subscribe("idle", Default::default()).unwrap();
    stream.next().await;
    let receipt = hub.push(["idle"], events(0..10)).await.unwrap();
    assert_eq!((receipt.connections, receipt.failed), (1, 0));
    let expected: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
    assert_eq!(read_events(&mut stream, 10).await, expected);
    assert!(failures.lock().unwrap().is_empty());
}
