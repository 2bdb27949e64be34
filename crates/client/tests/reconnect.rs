//! The reconnecting engine through the `Stream` API, against crafted byte streams on real sockets.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use ssehub_client::{ClientBuilder, Error, Event, EventStream};
use support::{PATIENCE, Server, Step, response, sse_head, write};

const MS: Duration = Duration::from_millis(1);
const PAUSE: Step = Step::Pause(Duration::from_millis(20));

async fn next(events: &mut EventStream) -> Option<Result<Event, Error>> {
    tokio::time::timeout(PATIENCE, events.next())
        .await
        .expect("timed out waiting for the stream")
}

async fn event(events: &mut EventStream) -> (String, String, String) {
    let event = next(events).await.expect("stream ended").expect("error");
    (
        event.event_type().to_owned(),
        event.data.to_string(),
        event.id.as_deref().unwrap_or("").to_owned(),
    )
}

fn ev(event_type: &str, data: &str, id: &str) -> (String, String, String) {
    (event_type.into(), data.into(), id.into())
}

/// Fast reconnection, no jitter, no idle timeout: deterministic and quick.
fn builder(server: &Server) -> ClientBuilder {
    ClientBuilder::new(server.url("/events"))
        .reconnection_time(10 * MS)
        .jitter(false)
        .idle_timeout(None)
}

#[tokio::test]
async fn bom_crlf_and_utf8_split_across_reads_and_comments() {
    let server = Server::start(|request| {
        if request.index > 0 {
            return vec![Step::Hold];
        }
        vec![
            sse_head(),
            write(b"\xEF\xBB"),
            PAUSE,
            write(b"\xBFdata: h\xC3"),
            PAUSE,
            write(b"\xA9llo\r"),
            PAUSE,
            write(b"\n: a comment\r\n\r"),
            PAUSE,
            write(b"\nevent: x\rdata: y\rid: 3\r\r"),
            Step::Hold,
        ]
    })
    .await;
    let mut events = builder(&server).build_stream().unwrap();
    assert_eq!(event(&mut events).await, ev("message", "héllo", ""));
    assert_eq!(event(&mut events).await, ev("x", "y", "3"));
}

#[tokio::test]
async fn request_headers_and_last_event_id_on_reconnect() {
    let mut server = Server::start(|request| match request.index {
        0 => vec![sse_head(), write("id: 7\ndata: a\n\n")],
        _ => vec![sse_head(), write("data: b\n\n"), Step::Hold],
    })
    .await;
    let mut events = builder(&server)
        .header("X-Token", "t1")
        .build_stream()
        .unwrap();
    assert_eq!(event(&mut events).await, ev("message", "a", "7"));
    assert_eq!(event(&mut events).await, ev("message", "b", "7"));
    let first = server.request().await;
    assert_eq!(first.method, "GET");
    assert_eq!(first.header("accept"), Some("text/event-stream"));
    assert_eq!(first.header("cache-control"), Some("no-cache"));
    assert_eq!(first.header("x-token"), Some("t1"));
    assert_eq!(first.header("last-event-id"), None, "no id yet: no header");
    let second = server.request().await;
    assert_eq!(second.header("last-event-id"), Some("7"));
    assert_eq!(second.header("x-token"), Some("t1"));
}

#[tokio::test]
async fn initial_last_event_id_is_sent() {
    let mut server = Server::start(|_| vec![sse_head(), write("data: a\n\n"), Step::Hold]).await;
    let mut events = builder(&server).last_event_id("41").build_stream().unwrap();
    assert_eq!(event(&mut events).await, ev("message", "a", "41"));
    assert_eq!(server.request().await.header("last-event-id"), Some("41"));
}

#[tokio::test]
async fn retry_field_sets_the_reconnection_time_for_good() {
    let mut server = Server::start(|request| match request.index {
        0 => vec![sse_head(), write("retry: 150\ndata: a\n\n")],
        1 => vec![sse_head(), write("data: b\n\n")],
        _ => vec![sse_head(), write("data: c\n\n"), Step::Hold],
    })
    .await;
    // Without the server's retry: 2 s; with jitter on, delays only grow above it (at most 1.5x).
    let mut events = ClientBuilder::new(server.url("/events"))
        .idle_timeout(None)
        .build_stream()
        .unwrap();
    assert_eq!(event(&mut events).await.1, "a");
    assert_eq!(event(&mut events).await.1, "b");
    assert_eq!(event(&mut events).await.1, "c");
    let _first = server.request().await;
    for index in 0..2 {
        let (closed, at) = server.closed().await;
        assert_eq!(closed, index);
        let gap = server.request().await.at - at;
        assert!(
            gap >= 150 * MS,
            "reconnected after {gap:?}, before retry: 150"
        );
        assert!(
            gap < 1000 * MS,
            "reconnected after {gap:?}: retry: ignored?"
        );
    }
}

#[tokio::test]
async fn id_with_nul_is_ignored() {
    let mut server = Server::start(|request| match request.index {
        0 => vec![sse_head(), write("id: 1\ndata: a\n\nid: x\0y\ndata: b\n\n")],
        _ => vec![sse_head(), write("data: c\n\n"), Step::Hold],
    })
    .await;
    let mut events = builder(&server).build_stream().unwrap();
    assert_eq!(event(&mut events).await, ev("message", "a", "1"));
    assert_eq!(event(&mut events).await, ev("message", "b", "1"));
    // A stream works only while polled: read on so that it reconnects.
    assert_eq!(event(&mut events).await, ev("message", "c", "1"));
    let _ = server.request().await;
    assert_eq!(server.request().await.header("last-event-id"), Some("1"));
}

#[tokio::test]
async fn id_only_block_updates_the_last_event_id() {
    let mut server = Server::start(|request| match request.index {
        0 => vec![sse_head(), write("data: a\n\nid: 5\n\n")],
        _ => vec![sse_head(), write("data: b\n\n"), Step::Hold],
    })
    .await;
    let mut events = builder(&server).build_stream().unwrap();
    assert_eq!(event(&mut events).await, ev("message", "a", ""));
    assert_eq!(event(&mut events).await, ev("message", "b", "5"));
    let _ = server.request().await;
    assert_eq!(server.request().await.header("last-event-id"), Some("5"));
}

#[tokio::test]
async fn empty_id_resets_and_sends_no_header() {
    let mut server = Server::start(|request| match request.index {
        0 => vec![sse_head(), write("id: 1\ndata: a\n\nid\ndata: b\n\n")],
        _ => vec![sse_head(), write("data: c\n\n"), Step::Hold],
    })
    .await;
    let mut events = builder(&server).build_stream().unwrap();
    assert_eq!(event(&mut events).await, ev("message", "a", "1"));
    assert_eq!(event(&mut events).await, ev("message", "b", ""));
    assert_eq!(event(&mut events).await, ev("message", "c", ""));
    let _ = server.request().await;
    let second = server.request().await;
    assert_eq!(
        second.header("last-event-id"),
        None,
        "never an empty header"
    );
}

#[tokio::test]
async fn stream_cut_mid_event_drops_the_half_event() {
    let mut server = Server::start(|request| match request.index {
        0 => vec![
            sse_head(),
            write("id: 1\ndata: a\n\nid: 2\ndata: half"),
            PAUSE,
            write("\ndata: still half\n"),
        ],
        _ => vec![sse_head(), write("data: b\n\n"), Step::Hold],
    })
    .await;
    let mut events = builder(&server).build_stream().unwrap();
    assert_eq!(event(&mut events).await, ev("message", "a", "1"));
    // The half event is gone and its id never committed.
    assert_eq!(event(&mut events).await, ev("message", "b", "1"));
    let _ = server.request().await;
    assert_eq!(server.request().await.header("last-event-id"), Some("1"));
}

#[tokio::test]
async fn silent_stream_hits_the_idle_timeout_and_reconnects() {
    let mut server = Server::start(|request| match request.index {
        0 => vec![sse_head(), write("id: 1\ndata: a\n\n"), Step::Hold],
        _ => vec![sse_head(), write("data: b\n\n"), Step::Hold],
    })
    .await;
    let mut events = builder(&server)
        .idle_timeout(Some(200 * MS))
        .build_stream()
        .unwrap();
    assert_eq!(event(&mut events).await, ev("message", "a", "1"));
    assert_eq!(event(&mut events).await, ev("message", "b", "1"));
    let first = server.request().await;
    let second = server.request().await;
    assert!(second.at - first.at >= 200 * MS);
    assert_eq!(second.header("last-event-id"), Some("1"));
    // The client closed the silent connection.
    assert_eq!(server.closed().await.0, 0);
}

#[tokio::test]
async fn idle_timeout_covers_waiting_for_the_response_headers() {
    let server = Server::start(|request| match request.index {
        // Reads the request, never answers.
        0 => vec![Step::Hold],
        _ => vec![sse_head(), write("data: answered\n\n"), Step::Hold],
    })
    .await;
    let mut events = builder(&server)
        .idle_timeout(Some(200 * MS))
        .build_stream()
        .unwrap();
    assert_eq!(event(&mut events).await.1, "answered");
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn heartbeat_comments_keep_the_connection_alive() {
    let mut server = Server::start(|request| match request.index {
        0 => {
            let mut steps = vec![sse_head()];
            for _ in 0..6 {
                steps.push(Step::Pause(60 * MS));
                steps.push(write(": ping\n"));
            }
            steps.push(write("data: after heartbeats\n\n"));
            steps.push(Step::Hold);
            steps
        }
        _ => vec![sse_head(), Step::Hold],
    })
    .await;
    let mut events = builder(&server)
        .idle_timeout(Some(200 * MS))
        .build_stream()
        .unwrap();
    // 360 ms in all, longer than the idle timeout, but never 200 ms silent.
    assert_eq!(event(&mut events).await.1, "after heartbeats");
    let _ = server.request().await;
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn no_content_stops_for_good() {
    let mut server = Server::start(|request| match request.index {
        0 => vec![sse_head(), write("data: a\n\n")],
        _ => vec![response("204 No Content", "", "")],
    })
    .await;
    let mut events = builder(&server).build_stream().unwrap();
    assert_eq!(event(&mut events).await.1, "a");
    assert!(next(&mut events).await.is_none(), "204 ends the stream");
    // Nothing runs in the background of a stream: it ended, so no connection can follow.
    let _ = server.request().await;
    let _ = server.request().await;
    assert_eq!(server.accepted(), 2);
    assert!(next(&mut events).await.is_none(), "fused");
}

#[tokio::test]
async fn http_error_is_surfaced_and_not_retried_by_default() {
    let server = Server::start(|_| {
        vec![response(
            "500 Internal Server Error",
            "Content-Type: text/plain\r\n",
            "boom",
        )]
    })
    .await;
    let mut events = builder(&server).build_stream().unwrap();
    let error = next(&mut events).await.unwrap().unwrap_err();
    assert!(
        matches!(&error, Error::Http { status, body, .. } if status.as_u16() == 500 && body == "boom"),
        "{error:?}"
    );
    assert!(error.to_string().contains("500"), "{error}");
    assert!(next(&mut events).await.is_none());
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn http_error_is_retried_when_asked() {
    let server = Server::start(|request| match request.index {
        0 | 1 => vec![response("503 Service Unavailable", "", "")],
        _ => vec![sse_head(), write("data: up\n\n"), Step::Hold],
    })
    .await;
    let mut events = builder(&server)
        .reconnect_on_http_error(true)
        .build_stream()
        .unwrap();
    assert_eq!(event(&mut events).await.1, "up");
    assert_eq!(server.accepted(), 3);
}

#[tokio::test]
async fn retries_run_out() {
    let server = Server::start(|_| vec![response("503 Service Unavailable", "", "")]).await;
    let mut events = builder(&server)
        .reconnect_on_http_error(true)
        .max_retries(2)
        .build_stream()
        .unwrap();
    let error = next(&mut events).await.unwrap().unwrap_err();
    assert!(
        matches!(&error, Error::RetriesExhausted { attempts: 2, last } if last.status().map(|s| s.as_u16()) == Some(503)),
        "{error:?}"
    );
    assert!(next(&mut events).await.is_none());
    assert_eq!(server.accepted(), 3, "the first attempt and two retries");
}

#[tokio::test]
async fn wrong_content_type_is_an_error() {
    let server = Server::start(|_| {
        vec![response(
            "200 OK",
            "Content-Type: text/html; charset=utf-8\r\n",
            "<html>",
        )]
    })
    .await;
    let mut events = builder(&server).build_stream().unwrap();
    let error = next(&mut events).await.unwrap().unwrap_err();
    assert!(
        matches!(&error, Error::ContentType { content_type: Some(found), .. } if found.starts_with("text/html")),
        "{error:?}"
    );
    assert!(next(&mut events).await.is_none());
}

#[tokio::test]
async fn content_type_parameters_are_accepted() {
    let server = Server::start(|_| {
        vec![
            write("HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\n\r\n"),
            write("data: ok\n\n"),
            Step::Hold,
        ]
    })
    .await;
    let mut events = builder(&server).build_stream().unwrap();
    assert_eq!(event(&mut events).await.1, "ok");
}

#[tokio::test]
async fn backoff_grows_on_failures_in_a_row_and_stays_under_the_cap() {
    // Accepts, then closes without a response: a connection error every time.
    let mut server = Server::start(|_| vec![]).await;
    let cap = 100 * MS;
    let mut events = ClientBuilder::new(server.url("/events"))
        .reconnection_time(20 * MS)
        .max_reconnect_delay(cap)
        .max_retries(7)
        .idle_timeout(None)
        .build_stream()
        .unwrap();
    let error = next(&mut events).await.unwrap().unwrap_err();
    assert!(
        matches!(&error, Error::RetriesExhausted { attempts: 7, last } if matches!(**last, Error::Connect { .. })),
        "{error:?}"
    );
    let mut times = Vec::new();
    for _ in 0..8 {
        times.push(server.request().await.at);
    }
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let slack = 150 * MS;
    for gap in &gaps {
        assert!(*gap >= 20 * MS, "{gaps:?}");
        assert!(*gap <= cap + slack, "gap above the cap: {gaps:?}");
    }
    // Capped delays are drawn from [0.75 cap, cap]: the last ones grew well past the first.
    assert!(gaps[6] >= 75 * MS, "{gaps:?}");
}

#[tokio::test]
async fn a_delivering_connection_resets_the_backoff() {
    let mut server = Server::start(|request| match request.index {
        // Three failures, then a stream that delivers and ends, then one more failure.
        0..=2 | 4 => vec![],
        3 => vec![sse_head(), write("data: a\n\n")],
        _ => vec![sse_head(), write("data: b\n\n"), Step::Hold],
    })
    .await;
    let mut events = builder(&server)
        .reconnection_time(40 * MS)
        .max_reconnect_delay(Duration::from_secs(10))
        .build_stream()
        .unwrap();
    assert_eq!(event(&mut events).await.1, "a");
    assert_eq!(event(&mut events).await.1, "b");
    let mut times = Vec::new();
    for _ in 0..6 {
        times.push(server.request().await.at);
    }
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // 40, 80, 160 ms after failures in a row...
    assert!(gaps[2] >= 160 * MS, "{gaps:?}");
    // ...then, after the connection that delivered, back to 40 ms and 80 ms.
    assert!(gaps[4] >= 80 * MS && gaps[4] < 160 * MS, "{gaps:?}");
}

#[tokio::test]
async fn max_retries_zero_ends_cleanly_when_the_server_ends_the_stream() {
    let server = Server::start(|_| vec![sse_head(), write("data: done\n\n")]).await;
    let mut events = builder(&server).max_retries(0).build_stream().unwrap();
    assert_eq!(event(&mut events).await.1, "done");
    assert!(next(&mut events).await.is_none(), "ends without an error");
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn first_connection_failure_is_retried_by_a_stream() {
    let server = Server::start(|request| match request.index {
        0 => vec![],
        _ => vec![sse_head(), write("data: second try\n\n"), Step::Hold],
    })
    .await;
    let mut events = builder(&server).build_stream().unwrap();
    assert_eq!(event(&mut events).await.1, "second try");
}

#[tokio::test]
async fn redirects_are_followed_and_reconnects_use_the_final_url() {
    let mut server = Server::start(|request| match request.path.as_str() {
        "/old" => vec![response("302 Found", "Location: /events\r\n", "")],
        _ if request.index < 3 => vec![sse_head(), write("id: 1\ndata: a\n\n")],
        _ => vec![sse_head(), write("data: b\n\n"), Step::Hold],
    })
    .await;
    let mut events = ClientBuilder::new(server.url("/old"))
        .reconnection_time(10 * MS)
        .idle_timeout(None)
        .build_stream()
        .unwrap();
    assert_eq!(event(&mut events).await.1, "a");
    assert_eq!(event(&mut events).await.1, "a");
    assert_eq!(event(&mut events).await.1, "b");
    let mut paths = Vec::new();
    for _ in 0..4 {
        let request = server.request().await;
        paths.push((
            request.path.clone(),
            request.header("last-event-id").map(str::to_owned),
        ));
    }
    assert_eq!(
        paths,
        [
            ("/old".to_owned(), None),
            ("/events".to_owned(), None),
            ("/events".to_owned(), Some("1".to_owned())),
            ("/events".to_owned(), Some("1".to_owned())),
        ]
    );
}

#[tokio::test]
async fn redirect_loops_stop_with_an_error() {
    let server = Server::start(|_| {
        vec![response(
            "307 Temporary Redirect",
            "Location: /again\r\n",
            "",
        )]
    })
    .await;
    let mut events = builder(&server).max_redirects(3).build_stream().unwrap();
    let error = next(&mut events).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Redirect { .. }), "{error:?}");
    assert_eq!(server.accepted(), 4);
}

#[tokio::test]
async fn credentials_are_not_sent_to_another_origin_and_post_bodies_follow_307() {
    let mut target =
        Server::start(|_| vec![sse_head(), write("data: there\n\n"), Step::Hold]).await;
    let location = target.url("/elsewhere");
    let mut origin = Server::start(move |_| {
        vec![response(
            "307 Temporary Redirect",
            &format!("Location: {location}\r\n"),
            "",
        )]
    })
    .await;
    let mut events = ClientBuilder::new(origin.url("/events"))
        .method(http::Method::POST)
        .body("{\"q\":1}")
        .header("Authorization", "Bearer secret")
        .header("X-Other", "kept")
        .idle_timeout(None)
        .build_stream()
        .unwrap();
    assert_eq!(event(&mut events).await.1, "there");
    let first = origin.request().await;
    assert_eq!(first.method, "POST");
    assert_eq!(first.header("authorization"), Some("Bearer secret"));
    let moved = target.request().await;
    assert_eq!(moved.method, "POST");
    assert_eq!(moved.body, b"{\"q\":1}");
    assert_eq!(moved.header("authorization"), None);
    assert_eq!(moved.header("x-other"), Some("kept"));
}

#[tokio::test]
async fn close_event_is_delivered_then_ends_the_stream() {
    let server = Server::start(|_| {
        vec![
            sse_head(),
            write("data: a\n\nevent: close\ndata: bye\n\ndata: never\n\n"),
            Step::Hold,
        ]
    })
    .await;
    let mut events = builder(&server).build_stream().unwrap();
    assert_eq!(event(&mut events).await.1, "a");
    assert_eq!(event(&mut events).await, ev("close", "bye", ""));
    assert!(next(&mut events).await.is_none());
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn close_event_can_be_an_ordinary_event() {
    let server = Server::start(|_| {
        vec![
            sse_head(),
            write("event: close\ndata: bye\n\ndata: more\n\n"),
            Step::Hold,
        ]
    })
    .await;
    let mut events = builder(&server)
        .stop_on_close_event(false)
        .build_stream()
        .unwrap();
    assert_eq!(event(&mut events).await.1, "bye");
    assert_eq!(event(&mut events).await.1, "more");
}

#[tokio::test]
async fn decoder_limits_stop_the_client() {
    let server =
        Server::start(|_| vec![sse_head(), write("data: 0123456789\n\n"), Step::Hold]).await;
    let mut events = builder(&server).max_line_len(8).build_stream().unwrap();
    let error = next(&mut events).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Decode { .. }), "{error:?}");
    assert!(next(&mut events).await.is_none());
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let mut server = Server::start(|_| vec![sse_head(), write("data: a\n\n"), Step::Hold]).await;
    let mut events = builder(&server).build_stream().unwrap();
    assert_eq!(event(&mut events).await.1, "a");
    drop(events);
    assert_eq!(server.closed().await.0, 0);
}

#[test]
fn public_types_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<ssehub_client::Client>();
    send_sync::<Error>();
    send::<EventStream>();
}

#[test]
fn bad_configuration_is_reported_by_build() {
    let err = ClientBuilder::new("localhost:8080/events")
        .build_stream()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
    let err = ClientBuilder::new("http://h/e")
        .header("Bad Name", "x")
        .build_stream()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidHeader { .. }), "{err:?}");
    let err = ClientBuilder::new("http://h/e")
        .header("X", "a\nb")
        .build_stream()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidHeader { .. }), "{err:?}");
    let err = ClientBuilder::new("http://h/e")
        .last_event_id("a\0b")
        .build_stream()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidHeader { .. }), "{err:?}");
}

/// Starts a server whose connections `0..ending` answer 200 with `opening` and end, and whose
/// later connections send `data: up` and stay open; reads the stream until `up` (and any events
/// in `expected` before it), then returns the delay before each reconnection, from the moment the
/// server began closing connection `i` to the arrival of request `i + 1`. The client cannot have
/// seen the end before the server began it, so each gap is at least the client's delay.
async fn reconnection_gaps(
    openings: impl Fn(usize) -> &'static str + Send + Sync + 'static,
    ending: usize,
    configure: impl FnOnce(ClientBuilder) -> ClientBuilder,
    expected: &[&str],
) -> Vec<Duration> {
    let mut server = Server::start(move |request| {
        if request.index < ending {
            vec![sse_head(), write(openings(request.index))]
        } else {
            vec![sse_head(), write("data: up\n\n"), Step::Hold]
        }
    })
    .await;
    let mut events = configure(builder(&server)).build_stream().unwrap();
    for data in expected.iter().chain(&["up"]) {
        assert_eq!(event(&mut events).await.1, *data);
    }
    let mut gaps = Vec::new();
    let _first = server.request().await;
    for index in 0..ending {
        let (closed, at) = server.closed().await;
        assert_eq!(closed, index);
        gaps.push(server.request().await.at - at);
    }
    gaps
}

/// The delay before attempt `attempt` in a row (from 1), as configured: the lowest value jitter
/// may give, and the highest.
fn delay_bounds(reconnection_time: Duration, cap: Duration, attempt: u32) -> (Duration, Duration) {
    let grown = reconnection_time * 2u32.pow(attempt - 1);
    if grown < cap {
        (grown, grown.mul_f64(1.5).min(cap))
    } else {
        (cap.mul_f64(0.75), cap)
    }
}

/// How late a reconnection may be on a loaded machine (the client noticing the end, connecting).
const SCHEDULING_SLACK: Duration = Duration::from_millis(150);

#[tokio::test]
async fn streams_that_open_and_end_back_off_up_to_the_cap() {
    // ssehub's hub opens every stream with a comment; a hub that then ends each stream at once
    // must see its clients back off, not come back every reconnection time.
    let (reconnection_time, cap) = (20 * MS, 200 * MS);
    let gaps = reconnection_gaps(
        |_| ":ok\n",
        7,
        |builder| {
            builder
                .reconnection_time(reconnection_time)
                .max_reconnect_delay(cap)
                .jitter(true)
        },
        &[],
    )
    .await;
    for (attempt, gap) in (1..).zip(&gaps) {
        let (low, high) = delay_bounds(reconnection_time, cap, attempt);
        assert!(
            *gap >= low,
            "attempt {attempt} came after {gap:?}, before the {low:?} it had to wait: {gaps:?}"
        );
        assert!(
            *gap <= high + SCHEDULING_SLACK,
            "attempt {attempt} came after {gap:?}, past {high:?}: {gaps:?}"
        );
    }
}

#[tokio::test]
async fn a_retry_field_alone_does_not_reset_the_backoff() {
    let reconnection_time = 20 * MS;
    let gaps = reconnection_gaps(
        |_| "retry: 20\n",
        4,
        |builder| {
            builder
                .reconnection_time(Duration::from_secs(2))
                .max_reconnect_delay(Duration::from_secs(10))
        },
        &[],
    )
    .await;
    // The server's retry: is the reconnection time (20 ms, not the configured 2 s), and it
    // doubles: 20, 40, 80, 160 ms.
    for (attempt, gap) in (1..).zip(&gaps) {
        let want = reconnection_time * 2u32.pow(attempt - 1);
        assert!(
            *gap >= want,
            "attempt {attempt}: {gap:?} < {want:?}: {gaps:?}"
        );
    }
    assert!(gaps[0] < Duration::from_secs(1), "retry: ignored? {gaps:?}");
}

#[tokio::test]
async fn a_dispatched_event_resets_the_backoff_to_the_reconnection_time() {
    let reconnection_time = 50 * MS;
    // Three streams with only the opening comment (50, 100, 200 ms), one with an event, then one
    // more with only the comment.
    let gaps = reconnection_gaps(
        |index| match index {
            3 => ":ok\ndata: real\n\n",
            _ => ":ok\n",
        },
        5,
        |builder| {
            builder
                .reconnection_time(reconnection_time)
                .max_reconnect_delay(Duration::from_secs(10))
        },
        &["real"],
    )
    .await;
    assert!(gaps[2] >= 4 * reconnection_time, "{gaps:?}");
    // After the stream that dispatched an event the count starts over: 50 ms, not the 400 ms the
    // fourth attempt in a row would wait...
    assert!(
        gaps[3] >= reconnection_time && gaps[3] < 8 * reconnection_time,
        "{gaps:?}"
    );
    // ...and the next failure is the second in a row: 100 ms.
    assert!(
        gaps[4] >= 2 * reconnection_time && gaps[4] < 4 * reconnection_time,
        "{gaps:?}"
    );
}

#[tokio::test]
async fn a_connection_open_for_the_cap_resets_the_backoff() {
    let (reconnection_time, cap) = (50 * MS, 300 * MS);
    let mut server = Server::start(move |request| match request.index {
        0..=2 | 4 => vec![sse_head(), write(":ok\n")],
        // Heartbeats only, for longer than the cap.
        3 => {
            let mut steps = vec![sse_head(), write(":ok\n")];
            for _ in 0..5 {
                steps.push(Step::Pause(cap / 3));
                steps.push(write(":\n"));
            }
            steps
        }
        _ => vec![sse_head(), write("data: up\n\n"), Step::Hold],
    })
    .await;
    let mut events = builder(&server)
        .reconnection_time(reconnection_time)
        .max_reconnect_delay(cap)
        .build_stream()
        .unwrap();
    assert_eq!(event(&mut events).await.1, "up");
    let mut requests = Vec::new();
    for _ in 0..6 {
        requests.push(server.request().await);
    }
    let mut gaps = Vec::new();
    for index in 0..5 {
        let (closed, at) = server.closed().await;
        assert_eq!(closed, index);
        gaps.push(requests[index + 1].at - at);
    }
    assert!(requests[4].at - requests[3].at >= cap, "{gaps:?}");
    // Without the reset the fourth attempt in a row would wait the cap (300 ms).
    assert!(
        gaps[3] >= reconnection_time && gaps[3] < cap,
        "a connection that lasted the cap did not reset the backoff: {gaps:?}"
    );
    assert!(gaps[4] >= 2 * reconnection_time, "{gaps:?}");
}

/// A response head with `status` and an event-stream content type.
fn sse_head_with_status(status: &str) -> Step {
    write(format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/event-stream\r\n\r\n"
    ))
}

#[tokio::test]
async fn success_statuses_other_than_200_fail_the_connection() {
    for (status, code) in [("201 Created", 201), ("206 Partial Content", 206)] {
        let server = Server::start(move |_| {
            vec![
                sse_head_with_status(status),
                write("data: not a stream to read\n\n"),
                Step::Hold,
            ]
        })
        .await;
        let mut events = builder(&server).build_stream().unwrap();
        let started = tokio::time::Instant::now();
        let error = next(&mut events).await.unwrap().unwrap_err();
        assert!(
            matches!(&error, Error::Http { status, body, .. } if status.as_u16() == code && body.is_empty()),
            "{status}: {error:?}"
        );
        assert_eq!(error.status().map(|s| s.as_u16()), Some(code));
        let message = error.to_string();
        assert!(
            message.contains(&code.to_string()) && message.contains("200 OK"),
            "{message}"
        );
        // The body of an event stream that never ends is not waited for.
        assert!(started.elapsed() < Duration::from_secs(2), "{status}");
        // The spec's "fail the connection": no reconnection.
        assert!(next(&mut events).await.is_none(), "{status}");
        assert_eq!(server.accepted(), 1, "{status}");
    }
}

#[tokio::test]
async fn success_statuses_other_than_200_are_retried_with_reconnect_on_http_error() {
    let server = Server::start(|request| match request.index {
        0 => vec![sse_head_with_status("201 Created"), write("data: no\n\n")],
        _ => vec![sse_head(), write("data: up\n\n"), Step::Hold],
    })
    .await;
    let mut events = builder(&server)
        .reconnect_on_http_error(true)
        .build_stream()
        .unwrap();
    assert_eq!(event(&mut events).await.1, "up");
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn no_content_stops_even_with_reconnect_on_http_error() {
    let server = Server::start(|_| vec![response("204 No Content", "", "")]).await;
    let mut events = builder(&server)
        .reconnect_on_http_error(true)
        .build_stream()
        .unwrap();
    assert!(next(&mut events).await.is_none(), "204 ends the stream");
    assert_eq!(server.accepted(), 1);
}
