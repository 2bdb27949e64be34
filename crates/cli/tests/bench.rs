//! `ssehub bench` as a child process, against the real hub and against a scripted server that
//! loses and repeats events, on real sockets on 127.0.0.1.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::response::Response;
use serde_json::Value;
use ssehub_hub::{Hub, SubscribeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::watch;

/// Longer than any run below takes; a run that exceeds it is a failure, not a wait.
const PATIENCE: Duration = Duration::from_secs(60);

async fn bench(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .arg("bench")
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("ssehub bench did not finish")
        .unwrap()
}

/// The one JSON line of a successful run.
fn report(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one line on stdout: {stdout}");
    serde_json::from_str(stdout.trim()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn u(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {report}"))
}

fn f(value: &Value, field: &str) -> f64 {
    value[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} in {value}"))
}

/// The hub behind axum, as the example server serves it: every stream under one uid, the push
/// API broadcasting to all.
async fn start_hub() -> (Hub, SocketAddr) {
    let hub = Hub::new();
    let serving = hub.clone();
    let app = Router::new()
        .route(
            "/events",
            axum::routing::get(move |options: SubscribeOptions| {
                let hub = serving.clone();
                async move {
                    let response: Response = ssehub_hub::axum::sse_response(&hub, "u", options);
                    response
                }
            }),
        )
        .route("/push", ssehub_hub::axum::push(hub.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (hub, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_push_reaches_every_client_of_the_hub() {
    let (hub, addr) = start_hub().await;
    let pid = std::process::id().to_string();
    let output = bench(&[
        "--sse-url",
        &format!("http://{addr}/events"),
        "--push-url",
        &format!("http://{addr}/push"),
        "--clients",
        "50",
        "--rate",
        "100",
        "--duration",
        "2",
        "--warmup",
        "0.2",
        "--body",
        r#"{"events":[{"data":"{seq} {ts} xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}]}"#,
        "--server-pid",
        &pid,
    ])
    .await;
    let report = report(&output);
    assert_eq!(u(&report, "clients_requested"), 50);
    assert_eq!(u(&report, "clients_connected"), 50);
    assert_eq!(u(&report, "connect_errors"), 0);
    assert_eq!(u(&report, "clients_dropped"), 0);
    assert_eq!(u(&report, "pushes_planned"), 200);
    assert_eq!(u(&report, "pushes_sent"), 200);
    assert_eq!(u(&report, "pushes_acked"), 200);
    assert_eq!(u(&report, "push_errors"), 0);
    assert_eq!(u(&report, "deliveries_expected"), 200 * 50);
    assert_eq!(u(&report, "deliveries_received"), 200 * 50);
    assert_eq!(u(&report, "lost"), 0);
    assert_eq!(u(&report, "duplicates"), 0);
    assert_eq!(u(&report, "other_events"), 0);
    assert_eq!(f(&report, "rate"), 100.0);
    assert_eq!(f(&report, "duration_secs"), 2.0);
    let latency = &report["latency_ms"];
    let (p50, p90, p99, p999, max) = (
        f(latency, "p50"),
        f(latency, "p90"),
        f(latency, "p99"),
        f(latency, "p999"),
        f(latency, "max"),
    );
    assert!(
        0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "{latency}"
    );
    assert!(max < 10_000.0, "{latency}");
    assert!(f(&report, "deliveries_per_sec") > 0.0);
    assert!(f(&report, "window_secs") >= 1.9);
    assert!(f(&report, "connect_secs") >= 0.0);
    assert!(report["generator_cpu_secs"].is_number());
    // This test process is the server: its figures are there.
    let server = &report["server"];
    assert_eq!(server["pid"].as_u64(), Some(u64::from(std::process::id())));
    assert!(f(server, "cpu_secs") > 0.0, "{server}");
    assert!(f(server, "efficiency") > 0.0, "{server}");
    assert!(u(server, "pss_bytes_before") > 0, "{server}");
    assert!(u(server, "pss_bytes_after") > 0, "{server}");
    assert!(server["bytes_per_connection"].is_number(), "{server}");
    assert!(server["rss_bytes_per_connection"].is_number(), "{server}");
    // The generator closed its connections when it exited.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while hub.online_clients_num() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "clients stayed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_without_pushes() {
    let (hub, addr) = start_hub().await;
    let pid = std::process::id().to_string();
    let output = bench(&[
        "--sse-url",
        &format!("http://localhost:{}/events", addr.port()),
        "--clients",
        "20",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--server-pid",
        &pid,
    ])
    .await;
    let report = report(&output);
    assert_eq!(u(&report, "clients_connected"), 20);
    assert_eq!(u(&report, "pushes_sent"), 0);
    assert_eq!(u(&report, "deliveries_expected"), 0);
    assert_eq!(u(&report, "lost"), 0);
    assert!(report["latency_ms"].is_null(), "{report}");
    assert!(
        report["server"]["bytes_per_connection"].is_number(),
        "{report}"
    );
    assert!(report["server"]["efficiency"].is_null() || report["server"]["efficiency"].is_number());
    drop(hub);
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Reads one request head.
async fn read_head(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        if socket.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// A server that acknowledges every push and, once `pushes` arrived, sends every stream the
/// same script: push 0, push 1 twice, push 3 over two data lines (push 2 lost), one event of
/// its own, in chunks cut mid-line, with LF, CRLF and CR line ends. Records the request heads
/// and the clients' addresses.
struct ScriptedServer {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl ScriptedServer {
    async fn start(pushes: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (pushed, all_pushed) = watch::channel(0u64);
        let pushed = Arc::new(pushed);
        let (server_heads, server_peers) = (heads.clone(), peers.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, peer) = listener.accept().await.unwrap();
                let heads = server_heads.clone();
                let peers = server_peers.clone();
                let pushed = pushed.clone();
                let mut all_pushed = all_pushed.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let Some(head) = read_head(&mut socket, &mut buf).await else {
                        return;
                    };
                    heads.lock().unwrap().push(head.clone());
                    if head.starts_with("GET ") {
                        peers.lock().unwrap().push(peer);
                        serve_stream(socket, &mut all_pushed, pushes).await;
                    } else {
                        serve_pushes(socket, buf, head, &pushed).await;
                    }
                });
            }
        });
        Self { addr, heads, peers }
    }
}

async fn serve_stream(mut socket: TcpStream, all_pushed: &mut watch::Receiver<u64>, pushes: u64) {
    socket
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\
              \r\n\r\n4\r\n:ok\n\r\n",
        )
        .await
        .unwrap();
    all_pushed.wait_for(|n| *n >= pushes).await.unwrap();
    let ts = now_ns();
    let script = format!(
        "data: 0 {ts} a\r\n\r\n: comment 9 9\ndata: 1 {ts}\n\nid: 7\ndata: 1 {ts}\r\r\
         data: hello_world_1\n\ndata: 3\r\ndata: {ts}\n\n"
    );
    for piece in script.as_bytes().chunks(13) {
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(piece);
        chunk.extend_from_slice(b"\r\n");
        if socket.write_all(&chunk).await.is_err() {
            return;
        }
    }
    // Hold the stream open until the generator leaves.
    let mut rest = Vec::new();
    let _ = socket.read_to_end(&mut rest).await;
}

async fn serve_pushes(
    mut socket: TcpStream,
    mut buf: Vec<u8>,
    mut head: String,
    pushed: &watch::Sender<u64>,
) {
    loop {
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < length {
            if socket.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
        buf.drain(..length);
        pushed.send_modify(|n| *n += 1);
        if socket
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
        match read_head(&mut socket, &mut buf).await {
            Some(next) => head = next,
            None => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_duplicates_and_other_events_are_counted() {
    let server = ScriptedServer::start(4).await;
    let addr = server.addr;
    let output = bench(&[
        "--sse-url",
        &format!("http://{addr}/events?x=1"),
        "--push-url",
        &format!("http://{addr}/publish"),
        "--clients",
        "3",
        "--source-ips",
        "2",
        "--rate",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--grace",
        "1",
        "--push-connections",
        "2",
        "--body",
        "{seq} {ts}",
        "-H",
        "Content-Type: text/plain",
        "-H",
        "X-Token: secret",
    ])
    .await;
    let report = report(&output);
    assert_eq!(u(&report, "clients_connected"), 3);
    assert_eq!(u(&report, "pushes_sent"), 4);
    assert_eq!(u(&report, "pushes_acked"), 4);
    assert_eq!(u(&report, "deliveries_expected"), 12);
    // Each client: pushes 0, 1 and 3 received, 1 again, 2 never, one event of the server's own.
    assert_eq!(u(&report, "deliveries_received"), 9);
    assert_eq!(u(&report, "lost"), 3);
    assert_eq!(u(&report, "duplicates"), 3);
    assert_eq!(u(&report, "other_events"), 3);
    assert!(report.get("server").is_none(), "{report}");

    let heads = server.heads.lock().unwrap().clone();
    let get = heads.iter().find(|head| head.starts_with("GET ")).unwrap();
    assert!(get.starts_with("GET /events?x=1 HTTP/1.1\r\n"), "{get}");
    assert!(get.contains("\r\nAccept: text/event-stream\r\n"), "{get}");
    assert!(get.contains(&format!("\r\nHost: {addr}\r\n")), "{get}");
    let post = heads.iter().find(|head| head.starts_with("POST ")).unwrap();
    assert!(post.starts_with("POST /publish HTTP/1.1\r\n"), "{post}");
    assert!(post.contains("\r\nContent-Type: text/plain\r\n"), "{post}");
    assert!(!post.contains("application/json"), "{post}");
    assert!(post.contains("\r\nX-Token: secret\r\n"), "{post}");
    // Two push connections (one head each shows up first), three streams.
    assert_eq!(
        heads.iter().filter(|head| head.starts_with("GET ")).count(),
        3
    );
    let mut sources: Vec<_> = server
        .peers
        .lock()
        .unwrap()
        .iter()
        .map(|peer| peer.ip().to_string())
        .collect();
    sources.sort();
    assert_eq!(sources, ["127.0.0.2", "127.0.0.2", "127.0.0.3"]);
}

#[tokio::test]
async fn urls_off_the_loopback_network_are_refused() {
    for args in [
        &["--sse-url", "http://10.1.2.3/events", "--clients", "1"][..],
        &["--sse-url", "http://example.com/events", "--clients", "1"],
        &[
            "--sse-url",
            "http://127.0.0.1:9/events",
            "--push-url",
            "http://192.168.0.1/push",
            "--rate",
            "1",
            "--clients",
            "1",
        ],
    ] {
        let output = bench(args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty());
        assert!(
            stderr(&output).contains("127.0.0.0/8 or be localhost"),
            "{}",
            stderr(&output)
        );
    }
}

#[tokio::test]
async fn bad_arguments_exit_2() {
    for (args, message) in [
        (
            &[
                "--sse-url",
                "http://127.0.0.1:9/",
                "--clients",
                "1",
                "--rate",
                "5",
            ][..],
            "needs --push-url",
        ),
        (
            &[
                "--sse-url",
                "http://127.0.0.1:9/",
                "--push-url",
                "http://127.0.0.1:9/",
                "--clients",
                "1",
                "--rate",
                "5",
                "--body",
                "{ts} {seq}",
            ],
            "{seq} and then {ts}",
        ),
        (
            &["--sse-url", "https://127.0.0.1/", "--clients", "1"],
            "only http://",
        ),
        (
            &["--sse-url", "http://127.0.0.1:9/", "--clients", "0"],
            "at least 1",
        ),
        (
            &["--sse-url", "http://127.0.0.1:9/", "--clients", "x"],
            "invalid value",
        ),
    ] {
        let output = bench(args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains(message), "{}", stderr(&output));
    }
}

/// The open-file hard limit of this process, as the generator will inherit it.
fn hard_open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

#[tokio::test]
async fn too_many_clients_for_one_process_fail_up_front() {
    let Some(hard) = hard_open_file_limit() else {
        eprintln!("skipped: the open-file hard limit is unlimited here");
        return;
    };
    let clients = (hard + 1).max(30_000).to_string();
    let output = bench(&[
        "--sse-url",
        "http://127.0.0.1:9/events",
        "--clients",
        &clients,
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("connections per process: the open-file hard limit here is"),
        "{message}"
    );
    assert!(message.contains(&hard.to_string()), "{message}");
    assert!(
        message.contains("run several `ssehub bench` processes"),
        "{message}"
    );
}

#[tokio::test]
async fn no_server_exits_1() {
    // A port that was just free: nothing listens there.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let output = bench(&[
        "--sse-url",
        &format!("http://{addr}/events"),
        "--clients",
        "3",
    ])
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(
        stderr(&output).contains("no client could connect"),
        "{}",
        stderr(&output)
    );
}

/// The hub on its lean server, as the example serves it: each stream under the uid of its
/// `uid` query parameter, the push API beside it.
async fn start_unicast_hub() -> (Hub, SocketAddr) {
    let hub = Hub::new();
    let server =
        ssehub_hub::server::Server::builder(hub.clone(), |parts: &http::request::Parts| {
            std::future::ready(
                parts
                    .uri
                    .query()
                    .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("uid=")))
                    .map(str::to_owned)
                    .ok_or(http::StatusCode::UNAUTHORIZED),
            )
        })
        .fallback(Router::new().route("/push", ssehub_hub::axum::push(hub.clone())))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(std::future::IntoFuture::into_future(server.serve(listener)));
    (hub, addr)
}

/// A uni-cast run of 50 clients and 200 pushes at 100/s against the hub, with `extra`
/// arguments; returns its output.
async fn unicast_run(addr: SocketAddr, extra: &[&str]) -> Output {
    let mut args = vec![
        "--sse-url".to_owned(),
        format!("http://{addr}/events?uid=c{{client}}"),
        "--push-url".to_owned(),
        format!("http://{addr}/push"),
    ];
    args.extend(
        [
            "--clients",
            "50",
            "--rate",
            "100",
            "--duration",
            "2",
            "--warmup",
            "0.2",
        ]
        .map(str::to_owned),
    );
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    bench(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicast_every_push_reaches_its_one_client_and_no_other() {
    let (hub, addr) = start_unicast_hub().await;
    let output = unicast_run(
        addr,
        &[
            "--body",
            r#"{"uids":["c{uid}"],"events":[{"data":"{seq} {ts}"}]}"#,
        ],
    )
    .await;
    let report = report(&output);
    assert_eq!(report["mode"], "unicast", "{report}");
    assert_eq!(report["unicast"]["recipients"], "round-robin", "{report}");
    assert_eq!(u(&report["unicast"], "uids_per_push"), 1);
    assert_eq!(u(&report, "clients_connected"), 50);
    assert_eq!(u(&report, "pushes_acked"), 200);
    assert_eq!(u(&report, "deliveries_expected"), 200);
    assert_eq!(u(&report, "deliveries_received"), 200);
    assert_eq!(u(&report, "lost"), 0);
    assert_eq!(u(&report, "duplicates"), 0);
    assert_eq!(u(&report, "misdelivered"), 0);
    assert_eq!(u(&report, "other_events"), 0);
    assert!(f(&report["latency_ms"], "max") > 0.0, "{report}");
    drop(hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicast_three_random_clients_per_push() {
    let (_hub, addr) = start_unicast_hub().await;
    let output = unicast_run(
        addr,
        &[
            "--uids-per-push",
            "3",
            "--recipients",
            "random",
            "--seed",
            "42",
            "--body",
            r#"{"uids":[{uids:c}],"events":[{"data":"{seq} {ts}"}]}"#,
        ],
    )
    .await;
    let report = report(&output);
    assert_eq!(report["unicast"]["recipients"], "random", "{report}");
    assert_eq!(u(&report["unicast"], "uids_per_push"), 3);
    assert_eq!(u(&report["unicast"], "seed"), 42);
    assert_eq!(u(&report, "pushes_acked"), 200);
    assert_eq!(u(&report, "deliveries_expected"), 600);
    assert_eq!(u(&report, "deliveries_received"), 600);
    assert_eq!(
        (
            u(&report, "lost"),
            u(&report, "duplicates"),
            u(&report, "misdelivered")
        ),
        (0, 0, 0),
        "{report}"
    );
}

/// The output of a run that fails (exit 1) with its report printed all the same.
fn failed_report(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {}",
        stderr(output)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicast_a_push_that_broadcasts_is_misdelivered_and_fails_the_run() {
    let (_hub, addr) = start_unicast_hub().await;
    // No uids: the hub sends every push to all 50 clients, the bench meant one each.
    let output = unicast_run(addr, &["--body", r#"{"events":[{"data":"{seq} {ts}"}]}"#]).await;
    let report = failed_report(&output);
    assert_eq!(u(&report, "pushes_acked"), 200);
    assert_eq!(u(&report, "deliveries_received"), 200, "{report}");
    assert_eq!(u(&report, "lost"), 0, "{report}");
    // Every other client got each push; the run stops a moment after the last one owed
    // arrived, so on a loaded machine a few of the last may still be on their way.
    let misdelivered = u(&report, "misdelivered");
    assert!(
        (200 * 49 / 2..=200 * 49).contains(&misdelivered),
        "{report}"
    );
    let message = stderr(&output);
    assert!(message.contains("address no client"), "{message}");
    assert!(
        message.contains(&format!(
            "the uni-cast run failed: {misdelivered} misdelivered"
        )),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicast_pushes_to_the_wrong_uids_are_lost_and_fail_the_run() {
    let (_hub, addr) = start_unicast_hub().await;
    // `x17` is nobody's uid: the streams are under `c17`.
    let output = unicast_run(
        addr,
        &[
            "--body",
            r#"{"uids":["x{uid}"],"events":[{"data":"{seq} {ts}"}]}"#,
            "--grace",
            "0.5",
        ],
    )
    .await;
    let report = failed_report(&output);
    assert_eq!(u(&report, "deliveries_expected"), 200, "{report}");
    assert_eq!(u(&report, "deliveries_received"), 0, "{report}");
    assert_eq!(u(&report, "lost"), 200, "{report}");
    assert!(
        stderr(&output).contains("the uni-cast run failed: 200 lost"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn unicast_bad_arguments_exit_2() {
    let base = ["--rate", "5", "--clients", "2"];
    for (sse_url, extra, message) in [
        (
            "http://127.0.0.1:9/events",
            &["--body", r#"{"uids":["{uid}"],"x":"{seq} {ts}"}"#][..],
            "need {client} in --sse-url",
        ),
        (
            "http://127.0.0.1:9/events",
            &["--push-url", "http://127.0.0.1:9/push?uid=c{uid}"][..],
            "need {client} in --sse-url",
        ),
        (
            "http://127.0.0.1:9/events",
            &["--uids-per-push", "2"],
            "need {client} in --sse-url",
        ),
        (
            "http://127.0.0.1:9/events",
            &["--recipients", "random"],
            "need {client} in --sse-url",
        ),
        (
            "http://127.0.0.1:9/events?uid={client}",
            &["--uids-per-push", "3"],
            "at most --clients",
        ),
        (
            "http://127.0.0.1:9/events?uid={client}",
            &["--uids-per-push", "0"],
            "between 1 and 255",
        ),
        (
            "http://127.0.0.1:9/events?uid={client}",
            &[
                "--uids-per-push",
                "2",
                "--body",
                r#"{"uids":["{uid}"],"x":"{seq} {ts}"}"#,
            ],
            "needs {uids} or {uids:PREFIX}",
        ),
        (
            // `{uid}` in the URL names one client: not enough for two per push.
            "http://127.0.0.1:9/events?uid={client}",
            &[
                "--uids-per-push",
                "2",
                "--push-url",
                "http://127.0.0.1:9/push?uid={uid}",
                "--body",
                "{seq} {ts}",
            ],
            "needs {uids} or {uids:PREFIX}",
        ),
        (
            "http://127.0.0.1:9/events?uid={client}",
            &["--recipients", "sideways"],
            "invalid value",
        ),
    ] {
        let mut args = vec!["--sse-url", sse_url];
        if !extra.contains(&"--push-url") {
            args.extend(["--push-url", "http://127.0.0.1:9/push"]);
        }
        args.extend(base);
        args.extend(extra);
        let output = bench(&args).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(stderr(&output).contains(message), "{}", stderr(&output));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicast_loss_and_duplicates_fail_the_run() {
    // The scripted server's streams lose push 2 and repeat push 1; with 3 clients and 3 uids a
    // push, every push is for every client, so nothing is misdelivered.
    let server = ScriptedServer::start(4).await;
    let addr = server.addr;
    let output = bench(&[
        "--sse-url",
        &format!("http://{addr}/events?uid=c{{client}}"),
        "--push-url",
        &format!("http://{addr}/publish"),
        "--clients",
        "3",
        "--uids-per-push",
        "3",
        "--rate",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--grace",
        "1",
        "--body",
        "[{uids:c}] {seq} {ts}",
    ])
    .await;
    let report = failed_report(&output);
    assert_eq!(u(&report, "deliveries_expected"), 12, "{report}");
    assert_eq!(u(&report, "deliveries_received"), 9, "{report}");
    assert_eq!(u(&report, "lost"), 3, "{report}");
    assert_eq!(u(&report, "duplicates"), 3, "{report}");
    assert_eq!(u(&report, "misdelivered"), 0, "{report}");
    assert!(
        stderr(&output).contains("the uni-cast run failed: 3 lost, 3 duplicates"),
        "{}",
        stderr(&output)
    );
    // Each client asked for its own stream.
    let mut gets: Vec<String> = server
        .heads
        .lock()
        .unwrap()
        .iter()
        .filter_map(|head| {
            head.strip_prefix("GET ")?
                .split(' ')
                .next()
                .map(str::to_owned)
        })
        .collect();
    gets.sort();
    assert_eq!(gets, ["/events?uid=c0", "/events?uid=c1", "/events?uid=c2"]);
}

/// `ssehub bench --observe` in the background: it counts another run's typed pushes.
fn observe(
    addr: SocketAddr,
    clients: u64,
    pushes: u64,
    secs: u64,
) -> tokio::task::JoinHandle<Output> {
    let args: Vec<String> = [
        "--sse-url",
        &format!("http://{addr}/events"),
        "--clients",
        &clients.to_string(),
        "--observe",
        &pushes.to_string(),
        "--typed",
        "--duration",
        &secs.to_string(),
        "--warmup",
        "0",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bench(&args).await
    })
}

/// Waits until the hub has `clients` streams.
async fn until_online(hub: &Hub, clients: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while hub.stats().connections < clients {
        assert!(
            tokio::time::Instant::now() < deadline,
            "clients never connected"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_counts_another_runs_typed_pushes_and_nothing_else() {
    let (hub, addr) = start_hub().await;
    let observer = observe(addr, 30, 60, 30);
    until_online(&hub, 30).await;
    // Stamped but untyped, as another run's pushes would be: not the observed run's.
    for seq in 0..5 {
        hub.broadcast(vec![ssehub_hub::Event::new(format!("{seq} {}", now_ns()))])
            .await
            .unwrap();
    }
    let publisher = bench(&[
        "--sse-url",
        &format!("http://{addr}/events"),
        "--push-url",
        &format!("http://{addr}/push"),
        "--clients",
        "1",
        "--rate",
        "60",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--typed",
        "--body",
        r#"{"events":[{"event":"tick","data":"{seq} {ts}"}]}"#,
    ])
    .await;
    let publisher = report(&publisher);
    assert_eq!(u(&publisher, "pushes_acked"), 60);
    // The publisher's own client counts the typed pushes, not the untyped ones.
    assert_eq!(u(&publisher, "deliveries_received"), 60);
    let observed = report(&observer.await.unwrap());
    assert_eq!(observed["mode"], "observe");
    assert_eq!(u(&observed, "clients_connected"), 30);
    assert_eq!(u(&observed, "deliveries_expected"), 60 * 30);
    assert_eq!(u(&observed, "deliveries_received"), 60 * 30);
    assert_eq!(u(&observed, "lost"), 0);
    assert_eq!(u(&observed, "duplicates"), 0);
    assert_eq!(u(&observed, "other_events"), 5 * 30);
    assert!(f(&observed["latency_ms"], "p50") > 0.0, "{observed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_that_misses_a_push_fails_the_run() {
    let (hub, addr) = start_hub().await;
    let observer = observe(addr, 3, 4, 2);
    until_online(&hub, 3).await;
    for seq in [0, 1, 3] {
        let event = ssehub_hub::Event::new(format!("{seq} {}", now_ns())).with_event("tick");
        hub.broadcast(vec![event]).await.unwrap();
    }
    let output = observer.await.unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("3 lost"), "{}", stderr(&output));
    let observed = failed_report(&output);
    assert_eq!(u(&observed, "deliveries_received"), 3 * 3);
}
