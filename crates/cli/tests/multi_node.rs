//! Several `ssehub serve` processes on one Redis (`--store redis://...`) behave as one hub: a
//! push on any node reaches listeners on every node; a listener moved to another node with
//! `Last-Event-ID` gets exactly what it missed; uni-cast and topics stay private; a Redis
//! stopped and restarted mid-stream loses nothing; a node killed with SIGKILL: its clients
//! resume on another node with nothing lost or repeated.
//!
//! Needs `SSEHUB_TEST_REDIS_URL` (`.ci/run` sets it); skipped when unset. Each test uses a key
//! prefix of its own and deletes its keys at the end. The restart test runs a `redis-server`
//! of its own (`/usr/bin/redis-server`, append-only file, on a free port).
#![allow(clippy::unwrap_used)] // helpers in test code: a panic is how a test reports

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use ssehub_client::ClientBuilder;
use ssehub_server::auth::{Claims, sign_hs256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const PATIENCE: Duration = Duration::from_secs(20);
const KEY: &str = "multi-node-publisher-key-0123456789";
const SECRET: &str = "multi-node-jwt-secret-0123456789abcdefgh";

fn redis_url() -> Option<String> {
    let url = std::env::var("SSEHUB_TEST_REDIS_URL").ok();
    if url.is_none() {
        eprintln!("skipped: SSEHUB_TEST_REDIS_URL not set");
    }
    url
}

fn unique(name: &str) -> String {
    format!(
        "ssehub-cli-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Deletes a prefix's keys (what `RedisLog` writes).
async fn cleanup(url: &str, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
        let keys: Vec<String> = ["log", "ids", "sets", "meta"]
            .iter()
            .map(|name| format!("{{{prefix}}}:{name}"))
            .collect();
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut connection)
            .await;
    }
}

/// One `serve` process.
struct Node {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Node {
    async fn start(url: &str, prefix: &str) -> Self {
        let dir = temp_dir("node");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ssehub"));
        for (name, _) in std::env::vars() {
            if name.starts_with("SSEHUB_") {
                command.env_remove(name);
            }
        }
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--heartbeat", "1s"])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--store", url, "--redis-prefix", prefix])
            .env("SSEHUB_PUBLISHER_KEY", KEY)
            .env("SSEHUB_JWT_SECRET", SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(PATIENCE, stdout.next_line())
            .await
            .expect("no banner")
            .unwrap()
            .expect("serve exited before its banner");
        let addr = first
            .split_whitespace()
            .find_map(|word| word.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_owned();
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        Self { child, addr, dir }
    }

    /// `POST /push` with the publisher key: the status and the body.
    async fn push(&self, body: &str) -> (u16, String) {
        let request = format!(
            "POST /push HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = http(&self.addr, &request).await;
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = answer
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        (status, body)
    }

    async fn push_ok(&self, body: &str) -> String {
        let (status, answer) = self.push(body).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    async fn get(&self, path: &str) -> u16 {
        let answer = http(
            &self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
        .await;
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }

    /// An event stream of `uid` (with these topics), from `last_event_id` if given. The stream
    /// is open (its first heartbeat or event) when this returns.
    async fn listen(&self, uid: &str, topics: &[&str], last_event_id: Option<&str>) -> Listener {
        let token = sign_hs256(
            &Claims::new(uid, Duration::from_secs(600)).topics(topics.iter().copied()),
            SECRET,
        )
        .unwrap();
        let query: Vec<String> = topics
            .iter()
            .map(|topic| format!("topic={topic}"))
            .collect();
        let mut builder =
            ClientBuilder::new(format!("http://{}/events?{}", self.addr, query.join("&")))
                .header("Authorization", format!("Bearer {token}"))
                .reconnection_time(Duration::from_millis(100));
        if let Some(id) = last_event_id {
            builder = builder.last_event_id(id);
        }
        let mut stream = builder.build_stream().unwrap();
        // The client connects when polled: a task reads it from now on.
        let (events, received) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { return };
                let event = (
                    event.id.as_deref().unwrap_or_default().to_owned(),
                    event.data.to_string(),
                );
                if events.send(event).is_err() {
                    return;
                }
            }
        });
        Listener { received, reader }
    }

    async fn connections(&self) -> u64 {
        let answer = http(
            &self.addr,
            "GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let stats: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        stats["connections"].as_u64().unwrap_or(0)
    }

    /// Waits until this node holds `n` streams.
    async fn wait_for_streams(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.connections().await != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} streams never opened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id().unwrap() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

async fn http(addr: &str, request: &str) -> String {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, socket.read_to_string(&mut answer))
        .await
        .expect("no answer")
        .ok();
    answer
}

/// An event stream read with `ssehub-client` by a task of its own; dropped, it disconnects.
struct Listener {
    received: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Listener {
    /// The next event: (id, data).
    async fn next(&mut self) -> (String, String) {
        tokio::time::timeout(PATIENCE, self.received.recv())
            .await
            .expect("no event in time")
            .expect("the stream ended")
    }

    async fn data(&mut self, n: usize) -> Vec<String> {
        let mut data = Vec::new();
        for _ in 0..n {
            data.push(self.next().await.1);
        }
        data
    }

    /// Every event's data up to and including the `end` marker.
    async fn until_end(&mut self) -> Vec<String> {
        let mut data = Vec::new();
        loop {
            let (_, event) = self.next().await;
            if event == "end" {
                return data;
            }
            data.push(event);
        }
    }
}

fn broadcast(data: &str) -> String {
    serde_json::json!({ "events": [{ "data": data }] }).to_string()
}

fn to_uids(uids: &[&str], data: &str) -> String {
    serde_json::json!({ "uids": uids, "events": [{ "data": data }] }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_one_node_reaches_listeners_on_the_others_and_a_moved_listener_gets_what_it_missed()
 {
    let Some(url) = redis_url() else { return };
    let prefix = unique("three");
    let a = Node::start(&url, &prefix).await;
    let b = Node::start(&url, &prefix).await;
    let c = Node::start(&url, &prefix).await;
    let mut on_b = b.listen("alice", &[], None).await;
    let mut on_c = c.listen("bob", &[], None).await;
    b.wait_for_streams(1).await;
    c.wait_for_streams(1).await;

    let answer = a.push_ok(&broadcast("hello")).await;
    assert!(answer.contains("\"ids\""), "{answer}");
    let (id_b, data_b) = on_b.next().await;
    let (id_c, data_c) = on_c.next().await;
    assert_eq!((data_b.as_str(), data_c.as_str()), ("hello", "hello"));
    assert_eq!(id_b, id_c, "one id on every node");

    // Pushes from every node arrive everywhere in one order.
    for (n, node) in [&a, &b, &c].into_iter().enumerate() {
        node.push_ok(&broadcast(&format!("from-{n}"))).await;
    }
    let order_b = on_b.data(3).await;
    assert_eq!(order_b, on_c.data(3).await);
    assert_eq!(order_b, ["from-0", "from-1", "from-2"]);

    // alice moves from B to A: with Last-Event-ID she gets exactly what she missed.
    let (last, _) = {
        c.push_ok(&to_uids(&["alice"], "just for alice")).await;
        on_b.next().await
    };
    drop(on_b);
    b.wait_for_streams(0).await;
    c.push_ok(&to_uids(&["alice"], "missed 1")).await;
    b.push_ok(&to_uids(&["bob"], "not alice's")).await;
    a.push_ok(&broadcast("missed 2")).await;
    let mut on_a = a.listen("alice", &[], Some(&last)).await;
    assert_eq!(on_a.data(2).await, ["missed 1", "missed 2"]);
    c.push_ok(&to_uids(&["alice"], "live")).await;
    assert_eq!(on_a.data(1).await, ["live"]);
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uni_cast_and_topics_stay_private_across_nodes() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("privacy");
    let a = Node::start(&url, &prefix).await;
    let b = Node::start(&url, &prefix).await;
    let start = a.push_ok(&broadcast("start")).await;
    let start: serde_json::Value = serde_json::from_str(&start).unwrap();
    let start = start["data"]["ids"][0].as_str().unwrap().to_owned();
    let mut bob = b.listen("bob", &["orders/4"], None).await;
    let mut carol = a.listen("carol", &["orders/42"], None).await;
    a.wait_for_streams(1).await;
    b.wait_for_streams(1).await;
    a.push_ok(&to_uids(&["alice"], "for alice")).await;
    b.push_ok(
        &serde_json::json!({ "topics": ["orders/42"], "events": [{ "data": "order 42" }] })
            .to_string(),
    )
    .await;
    a.push_ok(&serde_json::json!({ "uids": ["bob"], "topics": ["orders/42"], "events": [{ "data": "bob and 42" }] }).to_string())
        .await;
    b.push_ok(&broadcast("end")).await;
    // `start` was answered before these streams opened, but a node delivers what it reads
    // after the answer: it may still reach them, first.
    let without_start = |mut data: Vec<String>| {
        data.retain(|event| event != "start");
        data
    };
    assert_eq!(without_start(bob.until_end().await), ["bob and 42"]);
    assert_eq!(
        without_start(carol.until_end().await),
        ["order 42", "bob and 42"]
    );
    // Resent on the other node: the same, and nothing of alice's.
    let mut bob_again = a.listen("bob", &["orders/4"], Some(&start)).await;
    assert_eq!(bob_again.until_end().await, ["bob and 42"]);
    let mut carol_again = b.listen("carol", &["orders/42"], Some(&start)).await;
    assert_eq!(carol_again.until_end().await, ["order 42", "bob and 42"]);
    // An id used on one node is refused on the other.
    let with_id = serde_json::json!({ "events": [{ "id": "order-1", "data": "x" }] }).to_string();
    a.push_ok(&with_id).await;
    let (status, answer) = b.push(&with_id).await;
    assert_eq!(status, 409, "{answer}");
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_its_clients_resume_on_another_with_nothing_lost_or_repeated() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("sigkill");
    let mut a = Node::start(&url, &prefix).await;
    let b = Node::start(&url, &prefix).await;
    let mut on_a = a.listen("alice", &[], None).await;
    a.wait_for_streams(1).await;
    // Pushes go on through B the whole time; A is killed in the middle.
    let pusher = {
        let addr = b.addr.clone();
        tokio::spawn(async move {
            let b = NodeAddr(addr);
            for i in 0..200 {
                b.push_ok(&to_uids(&["alice"], &i.to_string())).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut last = String::new();
    while seen.len() < 50 {
        let (id, data) = on_a.next().await;
        last = id;
        seen.push(data);
    }
    a.kill();
    drop(on_a);
    let mut on_b = b.listen("alice", &[], Some(&last)).await;
    while seen.len() < 200 {
        seen.push(on_b.next().await.1);
    }
    pusher.await.unwrap();
    let expected: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected, "every event once, in order");
    cleanup(&url, &prefix).await;
}

/// A node's address, for a task that pushes.
struct NodeAddr(String);

impl NodeAddr {
    async fn push_ok(&self, body: &str) {
        let request = format!(
            "POST /push HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = http(&self.0, &request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

/// A `redis-server` of the test's own: append-only, synced on every write, so a stop and a
/// start keep its data.
struct OwnRedis {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl OwnRedis {
    fn start(port: u16, dir: PathBuf) -> Self {
        let child = std::process::Command::new("/usr/bin/redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/bin/redis-server runs");
        Self { child, port, dir }
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap();
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                let pong: Result<String, _> = redis::cmd("PING").query_async(&mut connection).await;
                if pong.is_ok() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_stopped_and_restarted_mid_stream_loses_nothing() {
    // Gated like the others: it needs a Redis server binary, as CI has.
    if redis_url().is_none() {
        return;
    }
    let port = free_port();
    let dir = temp_dir("redis");
    let mut redis = OwnRedis::start(port, dir.clone());
    redis.wait_ready().await;
    let url = format!("redis://127.0.0.1:{port}");
    let a = Node::start(&url, "restart").await;
    let b = Node::start(&url, "restart").await;
    let mut on_b = b.listen("alice", &[], None).await;
    b.wait_for_streams(1).await;
    a.push_ok(&broadcast("before")).await;
    assert_eq!(on_b.data(1).await, ["before"]);

    redis.stop();
    // Pushes are refused at once with a clear message; the stream stays open.
    let started = std::time::Instant::now();
    let (status, answer) = a.push(&broadcast("while down")).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("unreachable"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.get("/readyz").await, 503);
    assert_eq!(b.connections().await, 1, "the stream stays open");

    // A publisher keeps pushing through the outage; what it was told went through (200) must
    // reach the listener once, in order (a push answered 503 may still have landed: Redis may
    // have run it and lost the answer; then it arrives too, once).
    let pusher = {
        let addr = a.addr.clone();
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            for i in 0..400 {
                let body = broadcast(&i.to_string());
                let request = format!(
                    "POST /push HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEY}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                if http(&addr, &request).await.starts_with("HTTP/1.1 200") {
                    accepted.push(i.to_string());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            accepted
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await; // pushes refused meanwhile
    let redis = OwnRedis::start(port, dir);
    redis.wait_ready().await;
    let accepted = pusher.await.unwrap();
    assert!(accepted.len() > 100, "pushes came back: {}", accepted.len());
    a.push_ok(&broadcast("end")).await;
    let received = on_b.until_end().await;
    let numbers: Vec<u32> = received.iter().map(|data| data.parse().unwrap()).collect();
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "in order, once: {numbers:?}"
    );
    for data in &accepted {
        assert!(
            received.contains(data),
            "{data} was accepted but never arrived"
        );
    }
    assert_eq!(a.get("/readyz").await, 200);
    drop(redis);
}
