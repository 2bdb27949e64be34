//! Against a real Redis: `SSEHUB_TEST_REDIS_URL` (`.ci/run` sets it); skipped when unset. Each
//! test uses a key prefix of its own and deletes its keys at the end.

use std::time::Duration;

use ssehub_store::{Append, Appended, Event, ListQuery, Log, Recipients, Record, Retention, Store};

use super::*;

fn url() -> Option<String> {
    let url = std::env::var("SSEHUB_TEST_REDIS_URL").ok();
    if url.is_none() {
        eprintln!("skipped: SSEHUB_TEST_REDIS_URL not set");
    }
    url
}

fn prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("ssehub-test-{name}-{}-{nanos}", std::process::id())
}

async fn open(url: &str, prefix: &str, retention: Retention) -> RedisLog {
    RedisLog::builder(url)
        .prefix(prefix)
        .retention(retention)
        .connect()
        .await
        .expect("the test Redis answers")
}

async fn cleanup(log: &RedisLog) {
    let mut connection = log.inner.commands().await.expect("connected");
    let _: () = redis::cmd("DEL")
        .arg(&log.keys()[..])
        .query_async(&mut connection)
        .await
        .expect("keys deleted");
}

async fn hlen(log: &RedisLog, key: &str) -> u64 {
    let mut connection = log.inner.commands().await.expect("connected");
    redis::cmd("HLEN")
        .arg(key)
        .query_async(&mut connection)
        .await
        .expect("HLEN")
}

async fn append_one(log: &RedisLog, to: &Recipients, events: &[Event]) -> Appended {
    let mut answers = log
        .append(
            &[Append {
                recipients: to,
                events,
            }],
            0,
        )
        .await
        .expect("appended");
    answers.pop().expect("one answer")
}

fn accepted(answer: Appended) -> (u64, Vec<String>) {
    match answer {
        Appended::Accepted { first_seq, ids } => (first_seq, ids),
        other => panic!("refused: {other:?}"),
    }
}

async fn everything(log: &RedisLog) -> Vec<Record> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = log
            .list_after(&ListQuery::new("anyone", after, 100))
            .await
            .expect("listed");
        after = page.scanned_through;
        all.extend(page.records);
        if page.end {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_appending_at_once_get_one_dense_order_with_increasing_ids() {
    let Some(url) = url() else { return };
    let prefix = prefix("dense");
    let a = open(&url, &prefix, Retention::events(10_000)).await;
    let b = open(&url, &prefix, Retention::events(10_000)).await;
    let node = |log: RedisLog, name: &'static str| {
        tokio::spawn(async move {
            for n in 0..50 {
                let events = [Event::new(format!("{name}{n}")), Event::new("second")];
                accepted(append_one(&log, &Recipients::All, &events).await);
            }
        })
    };
    let (ta, tb) = (node(a.clone(), "a"), node(b.clone(), "b"));
    ta.await.expect("node a");
    tb.await.expect("node b");
    let all = everything(&a).await;
    assert_eq!(all.len(), 200);
    for (index, record) in all.iter().enumerate() {
        assert_eq!(record.seq, index as u64 + 1, "no hole, no repeat");
    }
    // A push's events stay together, and ids increase in log order whichever node pushed.
    for pair in all.chunks(2) {
        assert_eq!(pair[1].event.data, "second");
    }
    for pair in all.windows(2) {
        assert!(
            pair[0].id() < pair[1].id(),
            "{} < {}",
            pair[0].id(),
            pair[1].id()
        );
        assert_eq!(pair[0].id().len(), 26, "a ULID");
    }
    assert_eq!(b.last_seq().await.expect("last"), 200);
    // The tail's read: after any seq, in order, bounded by its limit.
    let read = b.read(150, 20).await.expect("read");
    let seqs: Vec<u64> = read.iter().map(|record| record.seq).collect();
    assert_eq!(seqs, (151..=170).collect::<Vec<_>>());
    assert_eq!(b.seq_of(all[41].id()).await.expect("seq_of"), Some(42));
    cleanup(&a).await;
}

#[tokio::test]
async fn a_reused_id_is_refused_on_any_node_and_nothing_of_its_push_is_appended() {
    let Some(url) = url() else { return };
    let prefix = prefix("dup");
    let a = open(&url, &prefix, Retention::events(100)).await;
    let b = open(&url, &prefix, Retention::events(100)).await;
    accepted(append_one(&a, &Recipients::All, &[Event::new("x").with_id("order-1")]).await);
    let again = append_one(
        &b,
        &Recipients::All,
        &[
            Event::new("y").with_id("fresh"),
            Event::new("z").with_id("order-1"),
        ],
    )
    .await;
    assert_eq!(
        again,
        Appended::DuplicateId {
            index: 1,
            id: "order-1".into()
        }
    );
    let within = append_one(
        &b,
        &Recipients::All,
        &[
            Event::new("y").with_id("twice"),
            Event::new("z").with_id("twice"),
        ],
    )
    .await;
    assert!(matches!(within, Appended::DuplicateId { index: 1, .. }));
    // Two pushes of one call: the second reuses the first's id.
    let events = [Event::new("p").with_id("same")];
    let answers = a
        .append(
            &[
                Append {
                    recipients: &Recipients::All,
                    events: &events,
                },
                Append {
                    recipients: &Recipients::All,
                    events: &events,
                },
            ],
            0,
        )
        .await
        .expect("appended");
    assert!(matches!(
        answers[0],
        Appended::Accepted { first_seq: 2, .. }
    ));
    assert!(matches!(answers[1], Appended::DuplicateId { index: 0, .. }));
    assert_eq!(a.seq_of("fresh").await.expect("seq_of"), None);
    assert_eq!(everything(&a).await.len(), 2);
    cleanup(&a).await;
}

#[tokio::test]
async fn resend_lists_only_what_each_uid_and_topic_may_see() {
    let Some(url) = url() else { return };
    let log = open(&url, &prefix("privacy"), Retention::events(100)).await;
    // One event (its list inline) and several (a shared set).
    accepted(append_one(&log, &Recipients::uids(["alice"]), &[Event::new("a1")]).await);
    let many = [Event::new("b1"), Event::new("b2").with_event("order")];
    accepted(
        append_one(
            &log,
            &Recipients::uids(["bob"]).and_topics(["orders/42"]),
            &many,
        )
        .await,
    );
    accepted(append_one(&log, &Recipients::All, &[Event::new("all")]).await);
    accepted(append_one(&log, &Recipients::topics(["orders/4"]), &[Event::new("t4")]).await);
    let seen = |query: ListQuery| {
        let log = log.clone();
        async move {
            let page = log.list_after(&query).await.expect("listed");
            assert!(page.end);
            page.records
                .iter()
                .map(|record| record.event.data.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(seen(ListQuery::new("alice", 0, 10)).await, ["a1", "all"]);
    assert_eq!(
        seen(ListQuery::new("bob", 0, 10)).await,
        ["b1", "b2", "all"]
    );
    assert_eq!(
        seen(ListQuery::new("carol", 0, 10).topics(["orders/42"])).await,
        ["b1", "b2", "all"]
    );
    assert_eq!(
        seen(ListQuery::new("carol", 0, 10).topics(["orders/420"])).await,
        ["all"]
    );
    assert_eq!(
        seen(ListQuery::new("bob", 2, 10).event_type("order")).await,
        ["b2"]
    );
    // The tail reads the same recipients back.
    let read = log.read(0, 10).await.expect("read");
    assert_eq!(read[1].recipients, Recipients::new(["bob"], ["orders/42"]));
    assert_eq!(read[3].recipients, Recipients::All);
    assert_eq!(read[4].recipients, Recipients::topics(["orders/4"]));
    cleanup(&log).await;
}

#[tokio::test]
async fn retention_by_count_drops_the_oldest_with_their_ids_and_sets() {
    let Some(url) = url() else { return };
    let log = open(&url, &prefix("count"), Retention::events(10)).await;
    let mut ids = Vec::new();
    for n in 0..12 {
        let events = [Event::new(format!("{n}a")), Event::new(format!("{n}b"))];
        let (_, assigned) =
            accepted(append_one(&log, &Recipients::uids([format!("u{n}")]), &events).await);
        ids.extend(assigned);
    }
    let all = log.read(0, 100).await.expect("read");
    assert_eq!(all.len(), 10);
    assert_eq!(all[0].seq, 15);
    assert_eq!(all[0].recipients, Recipients::uids(["u7"]));
    assert_eq!(log.seq_of(&ids[13]).await.expect("seq_of"), None, "trimmed");
    assert_eq!(log.seq_of(&ids[14]).await.expect("seq_of"), Some(15));
    assert_eq!(hlen(&log, &log.inner.keys.ids).await, 10);
    // Pushes 7..=11 are kept whole (seqs 15..=24): five sets.
    assert_eq!(hlen(&log, &log.inner.keys.sets).await, 5);
    // A resume from a trimmed position sees the hole (first record past after + 1).
    let page = log
        .list_after(&ListQuery::new("u7", 3, 10))
        .await
        .expect("listed");
    assert_eq!(page.first_scanned, Some(15));
    cleanup(&log).await;
}

#[tokio::test]
async fn retention_by_age_and_bytes() {
    let Some(url) = url() else { return };
    let aged = open(
        &url,
        &prefix("age"),
        Retention::events(1000).max_age(Duration::from_millis(50)),
    )
    .await;
    for _ in 0..5 {
        accepted(append_one(&aged, &Recipients::All, &[Event::new("old")]).await);
    }
    tokio::time::sleep(Duration::from_millis(120)).await; // age is the point here
    accepted(append_one(&aged, &Recipients::All, &[Event::new("new")]).await);
    let left = everything(&aged).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event.data, "new");
    cleanup(&aged).await;

    let sized = open(
        &url,
        &prefix("bytes"),
        Retention::events(1000).max_bytes(10 * 1100),
    )
    .await;
    for _ in 0..30 {
        accepted(append_one(&sized, &Recipients::All, &[Event::new("x".repeat(1000))]).await);
    }
    let kept = everything(&sized).await.len();
    assert!((8..=10).contains(&kept), "{kept} kept");
    cleanup(&sized).await;
}

#[tokio::test]
async fn a_log_that_lost_its_data_numbers_above_what_the_node_saw() {
    let Some(url) = url() else { return };
    let log = open(&url, &prefix("lost"), Retention::events(100)).await;
    for _ in 0..3 {
        accepted(append_one(&log, &Recipients::All, &[Event::new("before")]).await);
    }
    let id = everything(&log).await[2].id().to_owned();
    cleanup(&log).await; // as a Redis restarted without persistence
    let events = [Event::new("after")];
    let answers = log
        .append(
            &[Append {
                recipients: &Recipients::All,
                events: &events,
            }],
            3,
        )
        .await
        .expect("appended");
    let (first, _) = accepted(answers.into_iter().next().expect("answer"));
    assert_eq!(first, 3 + LOSS_JUMP + 1);
    assert_eq!(log.seq_of(&id).await.expect("seq_of"), None, "history-gap");
    // The tail's reconnect does the same before reading.
    cleanup(&log).await;
    *log.inner.blocking.lock().expect("lock") = None;
    assert!(log.read(7, 10).await.expect("read").is_empty());
    assert_eq!(log.last_seq().await.expect("last"), 7 + LOSS_JUMP);
    cleanup(&log).await;
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_with_a_clear_message() {
    // A port nothing listens on: refused at once, not after the store timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let started = std::time::Instant::now();
    let error = RedisLog::builder(format!("redis://127.0.0.1:{port}"))
        .connect()
        .await
        .expect_err("nothing there");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        error
            .to_string()
            .contains(&format!("127.0.0.1:{port} is unreachable")),
        "{error}"
    );
    let bad = RedisLog::builder("http://127.0.0.1").connect().await;
    assert!(matches!(bad, Err(RedisLogError::Url { .. })));
}
