//! A push reaches the two connections of its uid and not another uid's, over real sockets on
//! 127.0.0.1; a closed connection leaves the map.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Reads from `stream` into `seen` until `needle` appears in it.
async fn read_until(stream: &mut TcpStream, seen: &mut Vec<u8>, needle: &[u8]) {
    let mut buf = [0u8; 4096];
    while !seen.windows(needle.len()).any(|window| window == needle) {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "connection closed; got {:?}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Subscribes as `uid`; once the response head has arrived, the connection is in the map.
async fn subscribe(addr: SocketAddr, uid: &str) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /events?uid={uid} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut seen = Vec::new();
    timeout(
        Duration::from_secs(5),
        read_until(&mut stream, &mut seen, b"\r\n\r\n"),
    )
    .await
    .expect("response head in time");
    let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    (stream, seen)
}

/// Sends one request and returns the whole answer.
async fn request(addr: SocketAddr, request: String) -> String {
    let mut publisher = TcpStream::connect(addr).await.expect("connect");
    publisher
        .write_all(request.as_bytes())
        .await
        .expect("write");
    let mut answer = Vec::new();
    timeout(Duration::from_secs(5), publisher.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn push(addr: SocketAddr, body: &str) -> String {
    request(
        addr,
        format!(
            "POST /push HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

#[tokio::test]
async fn a_push_reaches_its_uids_connections_only() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum_unicast::serve(listener));

    let mut alice = vec![subscribe(addr, "c1").await, subscribe(addr, "c1").await];
    let (mut bob, mut bob_seen) = subscribe(addr, "c2").await;

    let answer = push(
        addr,
        r#"{"uids":["c1","nobody"],"events":[{"data":"42 1700000000000000000 for c1"}]}"#,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for (stream, seen) in &mut alice {
        timeout(
            Duration::from_secs(5),
            read_until(stream, seen, b"data: 42 1700000000000000000 for c1\n\n"),
        )
        .await
        .expect("event delivered in time");
    }

    // Then one for c2 only, with an event name and id: c2 gets it, and only it.
    let answer = push(
        addr,
        r#"{"uids":["c2"],"events":[{"event":"note","id":"7","data":"43 1 for c2"}]}"#,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    timeout(
        Duration::from_secs(5),
        read_until(&mut bob, &mut bob_seen, b"data: 43 1 for c2\n"),
    )
    .await
    .expect("event delivered in time");
    let bob_text = String::from_utf8_lossy(&bob_seen).into_owned();
    assert!(bob_text.contains("event: note\n"), "{bob_text}");
    assert!(bob_text.contains("id: 7\n"), "{bob_text}");
    assert!(!bob_text.contains("for c1"), "{bob_text}");
    // c1's connections did not get c2's event (it would have arrived before a later one for c1).
    push(addr, r#"{"uids":["c1"],"events":[{"data":"44 2 again"}]}"#).await;
    for (stream, seen) in &mut alice {
        timeout(
            Duration::from_secs(5),
            read_until(stream, seen, b"data: 44 2 again\n\n"),
        )
        .await
        .expect("event delivered in time");
        let text = String::from_utf8_lossy(seen);
        assert!(!text.contains("for c2"), "{text}");
    }
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum_unicast::serve(listener));
    let answer = request(
        addr,
        "GET /events HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".to_owned(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = push(addr, r#"{"events":[]}"#).await;
    assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
}
