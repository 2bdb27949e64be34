//! `ssehub soak` as a child process against the real hub with a store, on real sockets: the
//! short form of the soak that `bench/soak.py` runs for 30 minutes. Clients drop and resume,
//! slow ones read a little at a time, pushes mix uni-cast and broadcast; the soak must find
//! nothing lost, repeated or misdelivered.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use ssehub_hub::Hub;
use ssehub_hub::server::Server;
use ssehub_hub::store::MemoryStore;
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_against_the_hub_finds_nothing_lost_repeated_or_misdelivered() {
    let hub = Hub::builder()
        .store(MemoryStore::new(100_000))
        .resend(true)
        .connection_buffer(8)
        .max_queued_bytes(4 * 1024)
        .heartbeat(Some(Duration::from_secs(1)))
        .build()
        .unwrap();
    let server = Server::builder(hub.clone(), |parts: &http::request::Parts| {
        std::future::ready(
            parts
                .uri
                .query()
                .and_then(|query| query.strip_prefix("uid="))
                .map(str::to_owned)
                .ok_or(http::StatusCode::UNAUTHORIZED),
        )
    })
    .fallback(axum::Router::new().route("/push", ssehub_hub::axum::push(hub.clone())))
    .build()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(std::future::IntoFuture::into_future(server.serve(listener)));

    let child = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["soak", "--sse-url"])
        .arg(format!("http://{addr}/events?uid={{uid}}"))
        .arg("--push-url")
        .arg(format!("http://{addr}/push"))
        .args(["--clients", "40", "--rate", "60", "--duration", "5"])
        .args(["--broadcast-share", "0.5", "--drop-every", "3"])
        .args([
            "--slow-share",
            "0.25",
            "--pause",
            "1.5",
            "--pause-every",
            "0.5",
        ])
        .args(["--grace", "20"])
        .args(["--data-bytes", "4000", "--slow-rate", "2000"])
        .args(["--sample-every", "1", "--source-ips", "4"])
        .arg("--server-pid")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("the soak did not finish")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );
    let verdict: Value = serde_json::from_str(stdout.trim()).unwrap();
    let n = |field: &str| verdict[field].as_u64().unwrap();
    assert_eq!(
        (n("lost"), n("duplicates"), n("misdelivered")),
        (0, 0, 0),
        "{verdict}"
    );
    assert_eq!(n("pushes_acked"), 300, "{verdict}");
    assert_eq!(
        n("deliveries_received"),
        n("deliveries_expected"),
        "{verdict}"
    );
    assert!(n("drops") > 0, "clients dropped and resumed: {verdict}");
    assert_eq!(n("history_gaps"), 0, "{verdict}");
    assert!(
        stderr.contains("server_open_fds"),
        "samples were taken: {stderr}"
    );
}
