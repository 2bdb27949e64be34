//! The live page's routes over real sockets: its files, their types and security headers,
//! `--no-ui`, and the stats stream that feeds its charts (events that move with the hub, its
//! cap, its end at shutdown). What a browser makes of them is `tests/browser.rs`.
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use ssehub_server::auth::Claims;
use ssehub_server::config::Settings;
use ssehub_wire::{Decoder, Frame};
use support::{KEY, Running, settings, token, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOUR: Duration = Duration::from_secs(3600);

/// The stats streams one hub serves at once (`stats_stream::MAX_STATS_STREAMS`).
const MAX_STATS_STREAMS: usize = 32;

#[tokio::test]
async fn the_page_and_its_files_go_out_with_their_types_and_a_strict_policy() {
    let hub = Running::start(settings()).await;
    assert!(
        hub.banner
            .contains(&format!("live page:     http://{}/", hub.addr)),
        "{}",
        hub.banner
    );
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
    ] {
        let answer = hub
            .request(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
            .await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.head);
        assert_eq!(answer.header("content-type"), Some(content_type), "{path}");
        assert_eq!(
            answer.header("content-security-policy"),
            Some("default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(answer.header("referrer-policy"), Some("no-referrer"));
        assert!(!answer.body.is_empty(), "{path}");
    }
    let page = hub.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n").await.body;
    // Scripts and styles are files of this origin: none inline, none from elsewhere.
    assert!(
        page.contains(r#"<script src="/ui/app.js" defer></script>"#),
        "{page}"
    );
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert!(
        !page.contains("<style") && !page.contains(" style="),
        "{page}"
    );
    assert!(!page.contains("http://") && !page.contains("https://"));
    let script = hub
        .request("GET /ui/app.js HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .body;
    // What the script must never do, whatever the browser tests cover: parse received text as
    // HTML, keep a secret.
    for never in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "localStorage",
        "sessionStorage",
        "document.cookie",
        "eval(",
    ] {
        assert!(!script.contains(never), "app.js uses {never}");
    }
    // HEAD answers too, without a body.
    let head = hub.request("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    hub.stop().await;
}

#[tokio::test]
async fn no_ui_turns_the_page_off_and_leaves_the_stats_stream() {
    let hub = Running::start(Settings {
        no_ui: Some(true),
        ..settings()
    })
    .await;
    assert!(!hub.banner.contains("live page"), "{}", hub.banner);
    for path in ["/", "/ui/app.js", "/ui/style.css"] {
        let answer = hub
            .request(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
            .await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert!(answer.msg().starts_with("no such route"), "{}", answer.body);
    }
    let mut stats = StatsStream::open(hub.addr).await;
    assert_eq!(stats.status, 200, "{}", stats.head);
    assert_eq!(stats.next().await.unwrap()["connections"], 0);
    hub.stop().await;
}

#[tokio::test]
async fn the_stats_stream_sends_the_numbers_each_second_and_they_move_with_the_hub() {
    let hub = Running::start(settings()).await;
    let mut stats = StatsStream::open(hub.addr).await;
    assert_eq!(stats.status, 200, "{}", stats.head);
    assert_eq!(
        stats.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(stats.header("cache-control").as_deref(), Some("no-cache"));
    let first = stats.next().await.unwrap();
    for field in [
        "total",
        "success",
        "failed",
        "timeout",
        "connections",
        "users",
        "topics",
        "pushes",
        "uptime_ms",
    ] {
        assert!(first[field].is_u64(), "{field} in {first}");
    }
    assert_eq!(
        (&first["connections"], &first["pushes"]),
        (&0.into(), &0.into())
    );

    let bearer = format!(
        "Authorization: Bearer {}\r\n",
        token(&Claims::new("alice", HOUR).topics(["news"]))
    );
    let mut alice = hub.stream("/events?topic=news", &bearer).await;
    assert_eq!(alice.status, 200);
    for data in ["one", "two"] {
        let body = format!(r#"{{"topics":["news"],"events":[{{"data":"{data}"}}]}}"#);
        assert_eq!(hub.push(Some(KEY), &body).await.status, 200);
        assert_eq!(alice.data().await, data);
    }
    // A refused push is not counted.
    assert_eq!(
        hub.push(Some("wrong"), r#"{"events":[{"data":"x"}]}"#)
            .await
            .status,
        401
    );

    // The numbers of the next events say so (each a second apart: a few at most).
    let mut previous = first;
    let moved = loop {
        let now = stats.next().await.expect("the stats stream ended");
        let gap = now["uptime_ms"].as_u64().unwrap() - previous["uptime_ms"].as_u64().unwrap();
        assert!(
            (500..=3_000).contains(&gap),
            "stats events {gap} ms apart: {previous} then {now}"
        );
        if now["pushes"] == 2 && now["success"] == 2 {
            break now;
        }
        previous = now;
    };
    assert_eq!(
        (
            &moved["connections"],
            &moved["users"],
            &moved["topics"],
            &moved["total"]
        ),
        (&1.into(), &1.into(), &1.into(), &2.into())
    );
    hub.stop().await;
}

#[tokio::test]
async fn stats_streams_are_capped_and_all_end_when_the_hub_shuts_down() {
    let hub = Running::start(settings()).await;
    let mut open = Vec::new();
    for _ in 0..MAX_STATS_STREAMS {
        let mut stream = StatsStream::open(hub.addr).await;
        assert_eq!(stream.status, 200, "{}", stream.head);
        stream.next().await.unwrap();
        open.push(stream);
    }
    let refused = hub
        .request("GET /stats/stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(refused.status, 503, "{}", refused.head);
    assert!(
        refused.msg().contains("stats streams are open"),
        "{}",
        refused.body
    );
    assert!(refused.header("retry-after").is_some());

    // One closed gives its place back (once the server has noticed: it writes each second).
    drop(open.pop());
    let mut again = within(async {
        loop {
            let stream = StatsStream::open(hub.addr).await;
            if stream.status == 200 {
                break stream;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    again.next().await.unwrap();
    open.push(again);

    // Shutdown with every stream open returns promptly (an open body would hold it for ever),
    // and each stream ends.
    let started = std::time::Instant::now();
    hub.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    for mut stream in open {
        within(async { while stream.next().await.is_some() {} }).await;
    }
}

/// `GET /stats/stream` read over a raw socket as HTTP/1.0, so the body is not chunked.
struct StatsStream {
    head: String,
    status: u16,
    socket: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl StatsStream {
    async fn open(addr: SocketAddr) -> Self {
        let mut socket = within(TcpStream::connect(addr)).await.unwrap();
        within(socket.write_all(b"GET /stats/stream HTTP/1.0\r\nHost: t\r\n\r\n"))
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = buf.split_to(end + 4);
                break String::from_utf8(head.to_vec()).unwrap();
            }
            buf.reserve(4096);
            let n = within(socket.read_buf(&mut buf)).await.unwrap();
            assert!(n > 0, "closed before a head: {buf:?}");
        };
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        Self {
            head,
            status,
            socket,
            buf,
            decoder: Decoder::new(),
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// The next `stats` event's JSON; `None` when the stream ends.
    async fn next(&mut self) -> Option<serde_json::Value> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                if let Frame::Event(event) = frame {
                    assert_eq!(event.event.as_ref().map(|e| e.as_str()), Some("stats"));
                    return Some(serde_json::from_str(event.data.as_str()).unwrap());
                }
                continue;
            }
            self.buf.reserve(4096);
            match within(self.socket.read_buf(&mut self.buf)).await {
                Ok(n) if n > 0 => {}
                _ => return None,
            }
        }
    }
}
