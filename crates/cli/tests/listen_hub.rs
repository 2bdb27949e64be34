//! `ssehub listen --json` against the real hub, as outside tools will drive it.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use ssehub_hub::{Event, Hub, SubscribeOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn json_lines_from_the_hub_then_exit_on_close() {
    let hub = Hub::new();
    let serving = hub.clone();
    let app = Router::new().route(
        "/events",
        axum::routing::get(move |options: SubscribeOptions| {
            let hub = serving.clone();
            async move {
                let response: Response = ssehub_hub::axum::sse_response(&hub, "u001", options);
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut child = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["listen", "--json", &format!("http://{addr}/events")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    let deadline = tokio::time::Instant::now() + PATIENCE;
    while hub.online_clients_num() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "listen never connected"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hub.push(
        ["u001"],
        [Event::new("a \"quoted\"\nsecond line")
            .with_event("note")
            .with_id("7")],
    )
    .await
    .unwrap();
    let receipt = hub.broadcast([Event::new("{\"n\":1}")]).await.unwrap();

    let mut next = async || {
        tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        next().await,
        r#"{"type":"note","data":"a \"quoted\"\nsecond line","id":"7"}"#
    );
    assert_eq!(
        next().await,
        format!(
            r#"{{"type":"message","data":"{{\"n\":1}}","id":"{}"}}"#,
            receipt.ids[0]
        )
    );

    hub.close().await;
    // The close event has no id of its own: "id" is the last event id, the broadcast's.
    assert_eq!(
        next().await,
        format!(
            r#"{{"type":"close","data":"closed","id":"{}"}}"#,
            receipt.ids[0]
        )
    );
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "listen exits 0 when the hub closes: {status}"
    );
}
