//! The hub over real HTTP on 127.0.0.1: axum handlers, real sockets, an SSE decoder on the
//! reading side.

mod common;

use std::time::Duration;

use common::{SseStream, TestServer, eventually, within};
use http::StatusCode;
use ssehub_hub::{Hub, HubStats};

#[tokio::test]
async fn unicast_reaches_only_its_uid() {
    let server = TestServer::start(Hub::new()).await;
    let mut alice = server.subscribe("alice").await;
    let mut bob = server.subscribe("bob").await;

    let (status, reply) = server
        .push_json(r#"{"uids":["alice"],"events":[{"event":"message","data":"for alice"}]}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["connections"], 1);
    // A broadcast after it: per-connection order is kept, so if bob had been sent alice's
    // event it would arrive before this one.
    server.push_json(r#"{"events":[{"data":"marker"}]}"#).await;

    assert_eq!(alice.next_data(2).await, ["for alice", "marker"]);
    assert_eq!(bob.next_data(1).await, ["marker"]);
}

#[tokio::test]
async fn broadcast_reaches_every_connection_and_both_tabs_of_a_uid() {
    let server = TestServer::start(Hub::new()).await;
    let mut tab1 = server.subscribe("u001").await;
    let mut tab2 = server.subscribe("u001").await;
    let mut other = server.subscribe("u002").await;
    assert_eq!(server.hub.online_clients_num(), 2);
    assert_eq!(server.hub.stats().connections, 3);

    let (_, reply) = server
        .push_json(r#"{"uids":["u001"],"events":[{"data":"tabs"}]}"#)
        .await;
    assert_eq!(reply["data"]["connections"], 2);
    let (_, reply) = server.push_json(r#"{"events":[{"data":"all"}]}"#).await;
    assert_eq!(reply["data"]["connections"], 3);

    assert_eq!(tab1.next_data(2).await, ["tabs", "all"]);
    assert_eq!(tab2.next_data(2).await, ["tabs", "all"]);
    assert_eq!(other.next_data(1).await, ["all"]);
}

#[tokio::test]
async fn stream_response_headers() {
    let hub = Hub::builder()
        .stream_header(
            http::HeaderName::from_static("x-served-by"),
            http::HeaderValue::from_static("node-1"),
        )
        .build()
        .unwrap();
    let server = TestServer::start(hub).await;
    let stream = server.subscribe("alice").await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-cache");
    assert_eq!(stream.headers["x-accel-buffering"], "no");
    assert_eq!(stream.headers["x-served-by"], "node-1");
}

#[tokio::test]
async fn pushed_events_arrive_as_sent_with_assigned_increasing_ids() {
    let server = TestServer::start(Hub::new()).await;
    let mut stream = server.subscribe("alice").await;
    let (status, reply) = server
        .push_json(
            r#"{"events":[
                {"id":"given-1","event":"note","data":"line 1\nline 2\r\nline 3"},
                {"data":{"n": 1, "big": 123456789012345678901234567890}},
                {"data":"second"},
                {"data":"third"}
            ]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<String> = reply["data"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids[0], "given-1");
    assert!(
        ids[1] < ids[2] && ids[2] < ids[3],
        "assigned ids increase: {ids:?}"
    );

    let first = stream.next_event().await.unwrap();
    assert_eq!(first.event_type(), "note");
    assert_eq!(first.data, "line 1\nline 2\nline 3");
    assert_eq!(first.id.as_deref(), Some("given-1"));
    let second = stream.next_event().await.unwrap();
    assert_eq!(second.event_type(), "message");
    assert_eq!(
        second.data,
        r#"{"n":1,"big":123456789012345678901234567890}"#
    );
    assert_eq!(second.id.as_deref(), Some(ids[1].as_str()));
    assert_eq!(stream.next_data(2).await, ["second", "third"]);
}

#[tokio::test]
async fn bad_push_bodies_get_400_naming_the_field_and_change_nothing() {
    let server = TestServer::start(Hub::new()).await;
    let mut stream = server.subscribe("alice").await;
    let cases = [
        ("not json", "the body is not a valid push request"),
        (
            r#"{"events":[{"data":"x"}]"#,
            "the body is not a valid push request",
        ),
        (
            r#"{"events":[]}"#,
            "events: a push needs at least one event",
        ),
        (
            r#"{"uids":["alice"]}"#,
            "events: a push needs at least one event",
        ),
        (
            r#"{"events":[{"data":"ok"},{"event":"a\nb","data":"x"}]}"#,
            "events[1].event: ",
        ),
        (r#"{"events":[{"id":"1\r2","data":"x"}]}"#, "events[0].id: "),
        (
            r#"{"events":[{"id":"1\u00002","data":"x"}]}"#,
            "events[0].id: ",
        ),
        (
            r#"{"events":[{"id":7,"data":"x"}]}"#,
            "events[0].id: invalid type",
        ),
        (r#"{"uids":[""],"events":[{"data":"x"}]}"#, "uids[0]: "),
        (r#"{"events":[{"event":"x"}]}"#, "events[0].data: missing"),
    ];
    for (body, expected) in cases {
        let (status, reply) = server.push_json(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert_eq!(reply["code"], 400, "{body}: {reply}");
        let message = reply["msg"].as_str().unwrap();
        assert!(
            message.starts_with(expected),
            "{body}: {message:?} should start with {expected:?}"
        );
        assert_eq!(reply["data"], serde_json::json!({}));
    }
    assert_eq!(
        server.hub.stats().total,
        0,
        "a refused push delivers nothing"
    );

    // The first event the stream sees is the first good push: nothing half-pushed before it.
    server.push_json(r#"{"events":[{"data":"good"}]}"#).await;
    assert_eq!(stream.next_data(1).await, ["good"]);
}

/// POSTs `body`, expects it refused with `status` and a message starting with `expected`.
async fn assert_refused(server: &TestServer, body: &str, status: StatusCode, expected: &str) {
    let (got, reply) = server.push_json(body).await;
    let shown: String = body.chars().take(200).collect();
    assert_eq!(got, status, "{shown}: {reply}");
    assert_eq!(reply["code"], status.as_u16(), "{shown}: {reply}");
    let message = reply["msg"].as_str().expect("msg is a string");
    assert!(
        message.starts_with(expected),
        "{shown}: {message:?} should start with {expected:?}"
    );
    assert_eq!(reply["data"], serde_json::json!({}));
}

/// Nothing reached `streams` and the stats did not move since `before`: a broadcast marker is the
/// first event each stream sees.
async fn assert_nothing_sent(
    server: &TestServer,
    before: HubStats,
    streams: &mut [&mut SseStream],
) {
    assert_eq!(
        server.hub.stats(),
        before,
        "a refused push changes no counter"
    );
    let (status, _) = server.push_json(r#"{"events":[{"data":"marker"}]}"#).await;
    assert_eq!(status, StatusCode::OK);
    for stream in streams {
        assert_eq!(stream.next_data(1).await, ["marker"]);
    }
}

#[tokio::test]
async fn misspelled_or_unknown_fields_are_refused_never_broadcast() {
    let server = TestServer::start(Hub::new()).await;
    let mut alice = server.subscribe("alice").await;
    let mut bob = server.subscribe("bob").await;
    let before = server.hub.stats();
    assert_refused(
        &server,
        r#"{"uid":["alice"],"events":[{"data":"for alice only"}]}"#,
        StatusCode::BAD_REQUEST,
        "uid: unknown field `uid`, expected one of `uids`, `topics`, `events`",
    )
    .await;
    assert_refused(
        &server,
        r#"{"uids":["alice"],"events":[{"data":"x","type":"note"}]}"#,
        StatusCode::BAD_REQUEST,
        "events[0].type: unknown field `type`, expected one of `id`, `event`, `data`",
    )
    .await;
    assert_nothing_sent(&server, before, &mut [&mut alice, &mut bob]).await;
}

#[tokio::test]
async fn empty_or_null_uids_are_refused_only_omitted_uids_broadcast() {
    let server = TestServer::start(Hub::new()).await;
    let mut alice = server.subscribe("alice").await;
    let before = server.hub.stats();
    for body in [
        r#"{"uids":[],"events":[{"data":"x"}]}"#,
        r#"{"uids":null,"events":[{"data":"x"}]}"#,
    ] {
        assert_refused(
            &server,
            body,
            StatusCode::BAD_REQUEST,
            "uids: empty; name at least one uid, or omit uids (and topics) to broadcast",
        )
        .await;
    }
    // Without `uids`: the seed's broadcast.
    assert_nothing_sent(&server, before, &mut [&mut alice]).await;
}

#[tokio::test]
async fn reserved_event_types_are_refused_over_http() {
    let server = TestServer::start(Hub::new()).await;
    let mut alice = server.subscribe("alice").await;
    let before = server.hub.stats();
    assert_refused(
        &server,
        r#"{"events":[{"event":"close","data":"x"}]}"#,
        StatusCode::BAD_REQUEST,
        "events[0].event: `close` is reserved",
    )
    .await;
    assert_refused(
        &server,
        r#"{"uids":["alice"],"events":[{"data":"ok"},{"event":"history-gap","data":"{}"}]}"#,
        StatusCode::BAD_REQUEST,
        "events[1].event: `history-gap` is reserved",
    )
    .await;
    assert_nothing_sent(&server, before, &mut [&mut alice]).await;
    assert_eq!(
        server.hub.stats().connections,
        1,
        "alice is still connected"
    );
}

#[tokio::test]
async fn reserved_event_types_pass_when_the_hub_allows_them() {
    let hub = Hub::builder()
        .allow_reserved_event_types_over_http(true)
        .build()
        .unwrap();
    let server = TestServer::start(hub).await;
    let mut alice = server.subscribe("alice").await;
    let (status, reply) = server
        .push_json(r#"{"events":[{"event":"close","data":"maintenance"}]}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let event = alice.next_event().await.unwrap();
    assert_eq!(
        (event.event_type(), event.data.as_str()),
        ("close", "maintenance")
    );
}

#[tokio::test]
async fn pushes_over_the_limits_get_400_or_413_naming_the_field_and_change_nothing() {
    let server = TestServer::start(Hub::new()).await;
    let mut alice = server.subscribe("alice").await;
    let before = server.hub.stats();
    let event_list = |n: usize| vec![r#"{"data":"x"}"#; n].join(",");
    let uid_list = |n: usize| {
        let uids: Vec<String> = (0..n).map(|i| format!(r#""u{i}""#)).collect();
        uids.join(",")
    };
    let cases = [
        // The issue's case: a 20 KiB id would be every client's Last-Event-ID header.
        (
            format!(
                r#"{{"events":[{{"id":"{}","data":"x"}}]}}"#,
                "7".repeat(20 << 10)
            ),
            StatusCode::BAD_REQUEST,
            "events[0].id: 20480 bytes, over the limit of 256; use a shorter id".to_owned(),
        ),
        (
            format!(
                r#"{{"events":[{{"data":"x"}},{{"id":"{}","data":"x"}}]}}"#,
                "é".repeat(129)
            ),
            StatusCode::BAD_REQUEST,
            "events[1].id: 258 bytes, over the limit of 256".to_owned(),
        ),
        (
            format!(
                r#"{{"events":[{{"event":"{}","data":"x"}}]}}"#,
                "t".repeat(65)
            ),
            StatusCode::BAD_REQUEST,
            "events[0].event: 65 bytes, over the limit of 64; use a shorter event type".to_owned(),
        ),
        (
            format!(r#"{{"events":[{}]}}"#, event_list(1_001)),
            StatusCode::BAD_REQUEST,
            "events: 1001 events, over the limit of 1000 per push".to_owned(),
        ),
        (
            format!(
                r#"{{"uids":["alice",{}],"events":[{{"data":"x"}}]}}"#,
                uid_list(10_000)
            ),
            StatusCode::BAD_REQUEST,
            "uids: 10001 uids, over the limit of 10000 per push".to_owned(),
        ),
        // Under axum's 2 MiB body limit, over the hub's 1 MiB per event.
        (
            format!(
                r#"{{"uids":["alice"],"events":[{{"data":"{}"}}]}}"#,
                "x".repeat((1 << 20) + 1)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "events[0].data: 1048577 bytes, over the limit of 1048576 bytes per event".to_owned(),
        ),
    ];
    for (body, status, expected) in &cases {
        assert_refused(&server, body, *status, expected).await;
    }
    assert_nothing_sent(&server, before, &mut [&mut alice]).await;

    // Exactly at each limit is fine.
    let at_limits = format!(
        r#"{{"uids":["alice",{}],"events":[{{"id":"{}","event":"{}","data":"{}"}},{}]}}"#,
        uid_list(9_999),
        "i".repeat(256),
        "t".repeat(64),
        "d".repeat(1 << 20),
        event_list(999)
    );
    let (status, reply) = server.push_json(&at_limits).await;
    assert_eq!(status, StatusCode::OK, "{}", reply["msg"]);
    let first = alice.next_event().await.unwrap();
    assert_eq!(first.id.as_deref().map(str::len), Some(256));
    assert_eq!(first.data.len(), 1 << 20);
}

#[tokio::test]
async fn limits_are_set_on_the_builder() {
    let hub = Hub::builder()
        .max_id_len(4)
        .max_event_type_len(3)
        .max_events_per_push(2)
        .max_uids_per_push(1)
        .max_data_len(6) // "marker"
        .build()
        .unwrap();
    let server = TestServer::start(hub).await;
    let mut alice = server.subscribe("alice").await;
    let before = server.hub.stats();
    let cases = [
        (
            r#"{"events":[{"id":"12345","data":"x"}]}"#,
            StatusCode::BAD_REQUEST,
            "events[0].id: 5 bytes, over the limit of 4",
        ),
        (
            r#"{"events":[{"event":"abcd","data":"x"}]}"#,
            StatusCode::BAD_REQUEST,
            "events[0].event: 4 bytes, over the limit of 3",
        ),
        (
            r#"{"events":[{"data":"1"},{"data":"2"},{"data":"3"}]}"#,
            StatusCode::BAD_REQUEST,
            "events: 3 events, over the limit of 2",
        ),
        (
            r#"{"uids":["alice","bob"],"events":[{"data":"x"}]}"#,
            StatusCode::BAD_REQUEST,
            "uids: 2 uids, over the limit of 1",
        ),
        (
            r#"{"events":[{"data":"1234567"}]}"#,
            StatusCode::PAYLOAD_TOO_LARGE,
            "events[0].data: 7 bytes, over the limit of 6",
        ),
    ];
    for (body, status, expected) in cases {
        assert_refused(&server, body, status, expected).await;
    }
    assert_nothing_sent(&server, before, &mut [&mut alice]).await;
}

#[tokio::test]
async fn oversized_push_body_gets_413_in_the_envelope() {
    let server = TestServer::start(Hub::new()).await;
    let big = format!(r#"{{"events":[{{"data":"{}"}}]}}"#, "x".repeat(3 << 20));
    let (status, reply) = server.push_json(&big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply["code"], 413);
    assert_eq!(server.hub.stats().total, 0);
}

#[tokio::test]
async fn dropped_connection_leaves_the_registry() {
    let server = TestServer::start(Hub::new()).await;
    let stream = server.subscribe("alice").await;
    let _other = server.subscribe("bob").await;
    assert_eq!(server.hub.online_clients_num(), 2);
    drop(stream);
    let hub = server.hub.clone();
    eventually("alice to leave", || hub.online_clients_num() == 1).await;
    assert_eq!(hub.stats().connections, 1);
}

#[tokio::test]
async fn close_sends_the_close_event_and_ends_streams() {
    let server = TestServer::start(Hub::new()).await;
    let mut stream = server.subscribe("alice").await;
    server
        .push_json(r#"{"events":[{"data":"before close"}]}"#)
        .await;
    within(server.hub.close()).await;

    assert_eq!(stream.next_data(1).await, ["before close"]);
    let close = stream.next_event().await.unwrap();
    assert_eq!(close.event_type(), "close");
    assert!(
        stream.next_frame().await.is_none(),
        "the stream ends after the close event"
    );
    assert_eq!(server.hub.stats().connections, 0);

    // A closed hub refuses pushes (503) and answers new streams with 204, which stops clients.
    let (status, reply) = server.push_json(r#"{"events":[{"data":"late"}]}"#).await;
    assert_eq!(
        (status, reply["code"].as_u64()),
        (StatusCode::SERVICE_UNAVAILABLE, Some(503))
    );
    let late = server.subscribe("bob").await;
    assert_eq!(late.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn close_for_restart_ends_streams_without_close_event() {
    let server = TestServer::start(Hub::new()).await;
    let mut stream = server.subscribe("alice").await;
    server.push_json(r#"{"events":[{"data":"last"}]}"#).await;
    within(server.hub.close_for_restart()).await;
    assert_eq!(stream.next_data(1).await, ["last"]);
    assert!(stream.next_frame().await.is_none());
    // New streams are answered with one that ends at once, so clients retry later.
    let mut late = server.subscribe("bob").await;
    assert_eq!(late.status, StatusCode::OK);
    assert_eq!(late.headers["content-type"], "text/event-stream");
    assert!(late.next_frame().await.is_none());
}

#[tokio::test]
async fn heartbeat_comment_after_each_idle_interval_and_retry_at_connect() {
    let hub = Hub::builder()
        .heartbeat(Some(Duration::from_millis(50)))
        .client_retry(Duration::from_millis(1500))
        .build()
        .unwrap();
    let server = TestServer::start(hub).await;
    let mut stream = server.subscribe("alice").await;
    let mut frames = Vec::new();
    for _ in 0..3 {
        frames.push(stream.next_frame().await.unwrap());
    }
    assert_eq!(
        frames,
        [
            ssehub_wire::Frame::Retry(Duration::from_millis(1500)),
            ssehub_wire::Frame::Comment(Default::default()),
            ssehub_wire::Frame::Comment(Default::default()),
        ]
    );
}

#[tokio::test]
async fn resume_position_comes_from_headers_before_query() {
    use axum::{Router, routing::get};
    use ssehub_hub::SubscribeOptions;

    // An app handler that echoes what the extractor read.
    async fn echo(options: SubscribeOptions) -> String {
        format!("{:?}|{:?}", options.last_event_id, options.event_type)
    }
    let app = Router::new().route("/", get(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();

    let get = |query: &str, headers: &[(&str, &str)]| {
        let mut request = http::Request::get(format!("http://{addr}/{query}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Default::default()).unwrap();
        let client = client.clone();
        async move {
            let response = client.request(request).await.unwrap();
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    assert_eq!(get("", &[]).await.1, "None|None");
    assert_eq!(
        get("?last_event_id=5&event_type=order", &[]).await.1,
        r#"Some("5")|Some("order")"#
    );
    assert_eq!(
        get(
            "?last_event_id=5",
            &[("Last-Event-ID", "9"), ("Event-Type", "chat")]
        )
        .await
        .1,
        r#"Some("9")|Some("chat")"#
    );
    let (status, message) = get("?last_event_id=1&last_event_id=2", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
}
