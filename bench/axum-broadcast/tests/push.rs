//! A push reaches a subscriber, over real sockets on 127.0.0.1.

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

#[tokio::test]
async fn a_push_reaches_every_subscriber() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum_broadcast::serve(listener));

    // Two subscribers; once the response head has arrived, the receiver exists.
    let mut subscribers = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /events HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n")
            .await
            .unwrap();
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
        subscribers.push((stream, seen));
    }

    let body = "42 1700000000000000000 hello";
    let mut publisher = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /push HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    publisher.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(Duration::from_secs(5), publisher.read_to_end(&mut answer))
        .await
        .expect("push answered in time")
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let event = format!("data: {body}\n\n");
    for (mut stream, mut seen) in subscribers {
        timeout(
            Duration::from_secs(5),
            read_until(&mut stream, &mut seen, event.as_bytes()),
        )
        .await
        .expect("event delivered in time");
    }
}
