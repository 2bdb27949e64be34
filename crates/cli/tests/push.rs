//! `ssehub push` as a child process against an in-process hub behind a publisher-key check, on
//! real sockets: what it sends, what arrives at subscribers, what it prints, how it exits.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::StreamExt;
use ssehub_hub::{Event, Hub, SubscribeOptions, Subscription};
use ssehub_wire::{Decoder, Frame};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const PATIENCE: Duration = Duration::from_secs(20);

/// A hub's push route on 127.0.0.1 behind the test's own publisher-key check.
struct PushServer {
    hub: Hub,
    addr: SocketAddr,
    /// Requests that reached the server, authorized or not.
    requests: Arc<AtomicUsize>,
}

impl PushServer {
    async fn start() -> Self {
        // Room for a whole `--lines` run in one subscriber's queue: the test reads after the push.
        let hub = Hub::builder().connection_buffer(4096).build().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/push", ssehub_hub::axum::push(hub.clone()))
            .layer(middleware::from_fn_with_state(
                requests.clone(),
                require_key,
            ));
        let addr = serve(app).await;
        Self {
            hub,
            addr,
            requests,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/push", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn subscribe(&self, uid: &str, options: SubscribeOptions) -> Events {
        Events {
            subscription: self.hub.subscribe(uid, options).unwrap(),
            decoder: Decoder::new(),
            buf: BytesMut::new(),
        }
    }
}

async fn require_key(
    State(requests): State<Arc<AtomicUsize>>,
    request: Request,
    next: Next,
) -> Response {
    requests.fetch_add(1, Ordering::SeqCst);
    if request.headers().get(AUTHORIZATION) != Some(&HeaderValue::from_static("Bearer secret")) {
        return (
            StatusCode::UNAUTHORIZED,
            [(CONTENT_TYPE, "application/json")],
            r#"{"code":401,"msg":"a valid publisher key is required","data":{}}"#,
        )
            .into_response();
    }
    next.run(request).await
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The events of one subscription, decoded.
struct Events {
    subscription: Subscription,
    decoder: Decoder,
    buf: BytesMut,
}

impl Events {
    async fn next(&mut self) -> Event {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                match frame {
                    Frame::Event(event) => return event,
                    Frame::Comment(_) | Frame::Retry(_) => continue,
                }
            }
            let chunk = tokio::time::timeout(PATIENCE, self.subscription.next())
                .await
                .expect("timed out waiting for an event")
                .expect("the subscription ended");
            self.buf.extend_from_slice(&chunk);
        }
    }
}

/// Runs `ssehub push ARGS` with `stdin` (or none), to the end.
async fn push(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .arg("push")
        .args(args)
        .env_remove("SSEHUB_URL")
        .env_remove("SSEHUB_PUBLISHER_KEY")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        // Written alongside, so that a large input cannot block on a full pipe.
        tokio::spawn(async move {
            pipe.write_all(&input).await.unwrap();
            // Dropping the pipe is the EOF.
        });
    }
    tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("ssehub push did not finish")
        .unwrap()
}

fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("ssehub push was killed")
}

#[tokio::test]
async fn unicast_arrives_at_that_uid_only_and_prints_its_id() {
    let server = PushServer::start().await;
    let mut u1 = server.subscribe("u1", SubscribeOptions::default());
    let mut u2 = server.subscribe("u2", SubscribeOptions::default());
    let url = server.url();

    let output = push(
        &[
            "--url", &url, "--key", "secret", "--uid", "u1", "--event", "note", "hello",
        ],
        None,
    )
    .await;
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let ids = stdout_lines(&output);
    assert_eq!(ids.len(), 1);
    let event = u1.next().await;
    assert_eq!(event.data, "hello");
    assert_eq!(event.event_type(), "note");
    assert_eq!(event.id.as_deref(), Some(ids[0].as_str()));

    // u2 got nothing: the next push to it is the first thing it receives.
    let output = push(
        &["--url", &url, "--key", "secret", "--uid", "u2", "second"],
        None,
    )
    .await;
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let event = u2.next().await;
    assert_eq!(event.data, "second");
    assert_eq!(event.id.as_deref(), Some(stdout_lines(&output)[0].as_str()));
}

#[tokio::test]
async fn topic_push_reaches_subscribers_of_the_topic() {
    let server = PushServer::start().await;
    let mut reader = server.subscribe("reader", SubscribeOptions::default().topic("orders/42"));
    let mut other = server.subscribe("other", SubscribeOptions::default().topic("orders/7"));
    let url = server.url();

    let output = push(
        &[
            "--url",
            &url,
            "--key",
            "secret",
            "--topic",
            "orders/42",
            "shipped",
        ],
        None,
    )
    .await;
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let event = reader.next().await;
    assert_eq!(event.data, "shipped");
    assert_eq!(event.id.as_deref(), Some(stdout_lines(&output)[0].as_str()));

    let output = push(
        &[
            "--url", &url, "--key", "secret", "--topic", "orders/7", "packed",
        ],
        None,
    )
    .await;
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(other.next().await.data, "packed");
}

#[tokio::test]
async fn broadcast_reaches_everyone_with_the_given_id() {
    let server = PushServer::start().await;
    let mut a = server.subscribe("a", SubscribeOptions::default());
    let mut b = server.subscribe("b", SubscribeOptions::default());
    // The url without a path gets `/push`.
    let url = format!("http://{}", server.addr);

    let output = push(
        &[
            "--url",
            &url,
            "--key",
            "secret",
            "--broadcast",
            "--id",
            "evt-1",
            "to all",
        ],
        None,
    )
    .await;
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(stdout_lines(&output), ["evt-1"]);
    for events in [&mut a, &mut b] {
        let event = events.next().await;
        assert_eq!(event.data, "to all");
        assert_eq!(event.id.as_deref(), Some("evt-1"));
    }
}

#[tokio::test]
async fn no_recipients_without_broadcast_is_a_usage_error_and_pushes_nothing() {
    let server = PushServer::start().await;
    let url = server.url();

    let output = push(&["--url", &url, "--key", "secret", "hello"], None).await;
    assert_eq!(code(&output), 2);
    let message = stderr(&output);
    assert!(
        message.contains("--uid") && message.contains("--topic") && message.contains("--broadcast"),
        "{message}"
    );
    assert!(output.stdout.is_empty());

    // Naming recipients and --broadcast together is refused too.
    let output = push(
        &[
            "--url",
            &url,
            "--key",
            "secret",
            "--broadcast",
            "--uid",
            "u1",
            "hello",
        ],
        None,
    )
    .await;
    assert_eq!(code(&output), 2, "stderr: {}", stderr(&output));
    assert_eq!(server.requests(), 0, "nothing may reach the hub");
}

#[tokio::test]
async fn lines_from_stdin_go_in_requests_of_a_thousand_in_order() {
    let server = PushServer::start().await;
    let mut events = server.subscribe("u1", SubscribeOptions::default());
    let url = server.url();
    let mut input = String::new();
    for n in 0..2500 {
        input.push_str(&format!("line {n}\n"));
        if n == 1200 {
            // Empty lines are skipped.
            input.push('\n');
        }
    }

    let output = push(
        &[
            "--url", &url, "--key", "secret", "--uid", "u1", "--lines", "--event", "row",
        ],
        Some(input.as_bytes()),
    )
    .await;
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(server.requests(), 3);
    let ids = stdout_lines(&output);
    assert_eq!(ids.len(), 2500);
    for (n, id) in ids.iter().enumerate() {
        let event = events.next().await;
        assert_eq!(event.data, format!("line {n}"));
        assert_eq!(event.event_type(), "row");
        assert_eq!(event.id.as_deref(), Some(id.as_str()));
    }
}

#[tokio::test]
async fn data_from_stdin_with_a_dash_loses_one_trailing_newline() {
    let server = PushServer::start().await;
    let mut events = server.subscribe("u1", SubscribeOptions::default());
    let url = server.url();

    let output = push(
        &["--url", &url, "--key", "secret", "--uid", "u1", "-"],
        Some(b"{\"total\": 3}\nsecond line\n"),
    )
    .await;
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let event = events.next().await;
    assert_eq!(event.data, "{\"total\": 3}\nsecond line");
    assert_eq!(event.id.as_deref(), Some(stdout_lines(&output)[0].as_str()));

    // Without an argument, stdin too; the url and key from the environment.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["push", "--uid", "u1"])
        .env("SSEHUB_URL", &url)
        .env("SSEHUB_PUBLISHER_KEY", "secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(b"from the environment").await.unwrap();
    drop(pipe);
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(events.next().await.data, "from the environment");
}

#[tokio::test]
async fn a_wrong_key_exits_1_with_the_hubs_message() {
    let server = PushServer::start().await;
    let url = server.url();

    let output = push(
        &["--url", &url, "--key", "not-the-key", "--uid", "u1", "x"],
        None,
    )
    .await;
    assert_eq!(code(&output), 1);
    let message = stderr(&output);
    assert!(
        message.contains("ssehub push: 401 a valid publisher key is required"),
        "{message}"
    );
    assert!(!message.contains("not-the-key"), "the key is never printed");
    assert!(output.stdout.is_empty());

    // No key at all: the same answer.
    let output = push(&["--url", &url, "--uid", "u1", "x"], None).await;
    assert_eq!(code(&output), 1, "stderr: {}", stderr(&output));
}

#[tokio::test]
async fn a_400_from_the_hub_exits_1_with_its_message() {
    let server = PushServer::start().await;
    let url = server.url();

    let output = push(
        &[
            "--url", &url, "--key", "secret", "--uid", "u1", "--event", "close", "bye",
        ],
        None,
    )
    .await;
    assert_eq!(code(&output), 1);
    let message = stderr(&output);
    assert!(
        message.contains("ssehub push: 400 events[0].event: `close` is reserved"),
        "{message}"
    );
}

#[tokio::test]
async fn connection_refused_exits_3() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);

    let output = push(
        &[
            "--url",
            &format!("http://{addr}/push"),
            "--key",
            "secret",
            "--uid",
            "u1",
            "x",
        ],
        None,
    )
    .await;
    assert_eq!(code(&output), 3, "stderr: {}", stderr(&output));
    assert!(
        stderr(&output).starts_with("ssehub push: "),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn a_503_exits_3_with_the_raw_body_when_it_is_not_an_envelope() {
    let app = Router::new().route(
        "/push",
        axum::routing::post(|| async { (StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream") }),
    );
    let addr = serve(app).await;

    let output = push(
        &["--url", &format!("http://{addr}/push"), "--uid", "u1", "x"],
        None,
    )
    .await;
    assert_eq!(code(&output), 3);
    let message = stderr(&output);
    assert!(
        message.contains("ssehub push: 503 no healthy upstream"),
        "{message}"
    );
}

#[tokio::test]
async fn json_prints_the_envelopes_as_they_came() {
    let server = PushServer::start().await;
    let mut events = server.subscribe("u1", SubscribeOptions::default());
    let url = server.url();

    let output = push(
        &[
            "--url", &url, "--key", "secret", "--uid", "u1", "--lines", "--batch", "2", "--json",
        ],
        Some(b"a\nb\nc\n"),
    )
    .await;
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 2, "one envelope per request: {lines:?}");
    let mut ids = Vec::new();
    for line in &lines {
        let envelope: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(envelope["code"], 0);
        assert_eq!(envelope["msg"], "ok");
        assert_eq!(envelope["data"]["connections"], 1);
        for id in envelope["data"]["ids"].as_array().unwrap() {
            ids.push(id.as_str().unwrap().to_owned());
        }
    }
    assert_eq!(ids.len(), 3);
    for (id, data) in ids.iter().zip(["a", "b", "c"]) {
        let event = events.next().await;
        assert_eq!(event.data, data);
        assert_eq!(event.id.as_deref(), Some(id.as_str()));
    }
}

#[tokio::test]
async fn id_with_lines_and_a_bad_batch_are_usage_errors() {
    let server = PushServer::start().await;
    let url = server.url();
    for args in [
        &["--url", &url, "--uid", "u1", "--lines", "--id", "1", "a"][..],
        &[
            "--url", &url, "--uid", "u1", "--lines", "--batch", "1001", "a",
        ][..],
        &["--url", &url, "--uid", "u1", "--lines", "--batch", "0", "a"][..],
        &["--url", "ftp://127.0.0.1/push", "--uid", "u1", "a"][..],
    ] {
        let output = push(args, None).await;
        assert_eq!(code(&output), 2, "{args:?}: {}", stderr(&output));
    }
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn lines_stop_at_the_first_refused_request() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let app = Router::new().route(
        "/push",
        axum::routing::post(move || {
            let counted = counted.clone();
            async move {
                let body = match counted.fetch_add(1, Ordering::SeqCst) {
                    0 => (StatusCode::OK, r#"{"code":0,"msg":"ok","data":{"ids":["first"],"connections":1,"failed":0}}"#),
                    _ => (StatusCode::TOO_MANY_REQUESTS, r#"{"code":429,"msg":"too many pushes; retry later","data":{}}"#),
                };
                (body.0, [(CONTENT_TYPE, "application/json")], body.1)
            }
        }),
    );
    let addr = serve(app).await;

    let output = push(
        &[
            "--url",
            &format!("http://{addr}"),
            "--uid",
            "u1",
            "--lines",
            "--batch",
            "1",
        ],
        Some(b"a\nb\nc\n"),
    )
    .await;
    assert_eq!(code(&output), 3);
    assert_eq!(stdout_lines(&output), ["first"]);
    let message = stderr(&output);
    assert!(
        message.contains("ssehub push: 429 too many pushes; retry later"),
        "{message}"
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "nothing is sent after a refusal"
    );
}

#[tokio::test]
async fn no_answer_within_the_timeout_exits_3() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });

    let output = push(
        &[
            "--url",
            &format!("http://{addr}/push"),
            "--uid",
            "u1",
            "--timeout",
            "1",
            "x",
        ],
        None,
    )
    .await;
    assert_eq!(code(&output), 3);
    let message = stderr(&output);
    assert!(message.contains("no answer from"), "{message}");
    assert!(
        message.contains("may or may not have been pushed"),
        "{message}"
    );
}
