//! `ssehub listen` against crafted streams on real sockets.
#![allow(clippy::unwrap_used)]

#[path = "../../client/tests/support/mod.rs"]
mod support;

use std::process::Stdio;

use support::{PATIENCE, Server, Step, sse_head, write};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

fn listen(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .arg("listen")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("timed out waiting for a line")
        .unwrap()
        .expect("stdout closed")
}

#[tokio::test]
async fn json_lines_across_a_reconnect() {
    let mut server = Server::start(|request| match request.index {
        0 => vec![
            sse_head(),
            write("retry: 10\n: hi\ndata: plain\n\nid: 1\nevent: update\ndata: two\ndata: \"lines\"\n\n"),
            write("id: 2\ndata: cut"),
        ],
        _ => vec![sse_head(), write("data: {\"k\":[1]}\n\n"), Step::Hold],
    })
    .await;
    let mut child = listen(&[
        "--json",
        "-H",
        "Authorization: Bearer t",
        "--last-event-id",
        "0",
        &server.url("/events"),
    ]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(
        line(&mut lines).await,
        r#"{"type":"message","data":"plain","id":"0"}"#
    );
    assert_eq!(
        line(&mut lines).await,
        r#"{"type":"update","data":"two\n\"lines\"","id":"1"}"#
    );
    assert_eq!(
        line(&mut lines).await,
        r#"{"type":"message","data":"{\"k\":[1]}","id":"1"}"#
    );
    let first = server.request().await;
    assert_eq!(first.header("authorization"), Some("Bearer t"));
    assert_eq!(first.header("last-event-id"), Some("0"));
    assert_eq!(server.request().await.header("last-event-id"), Some("1"));
    child.kill().await.unwrap();
}

#[tokio::test]
async fn human_form_and_exit_on_close_event() {
    let server = Server::start(|_| {
        vec![
            sse_head(),
            write("id: 7\ndata: first\ndata: second\n\ndata: x\n\nevent: close\ndata: bye\n\n"),
            Step::Hold,
        ]
    })
    .await;
    let child = listen(&[&server.url("/events")]);
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("listen did not exit after the close event")
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "[message] id=7 first\n    second\n[message] id=7 x\n[close] id=7 bye\n"
    );
}

#[tokio::test]
async fn http_error_exits_with_a_message() {
    let server =
        Server::start(|_| vec![support::response("401 Unauthorized", "", "bad token")]).await;
    let child = listen(&["--json", &server.url("/events")]);
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("listen did not exit")
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("401") && stderr.contains("bad token"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_header_is_a_usage_error() {
    for bad in ["no colon here", "Bad Name: x"] {
        let child = listen(&["-H", bad, "http://127.0.0.1:9/events"]);
        let output = child.wait_with_output().await.unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("--header"), "{stderr}");
    }
    let output = listen(&["not a url"]).wait_with_output().await.unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn broken_pipe_exits_quietly() {
    let server = Server::start(|_| {
        let mut steps = vec![sse_head(), write("data: first\n\n")];
        for _ in 0..50 {
            steps.push(Step::Pause(std::time::Duration::from_millis(5)));
            steps.push(write("data: more\n\n"));
        }
        steps.push(Step::Hold);
        steps
    })
    .await;
    let mut child = listen(&["--json", &server.url("/events")]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).await.unwrap();
    assert_eq!(
        first,
        "{\"type\":\"message\",\"data\":\"first\",\"id\":\"\"}\n"
    );
    drop(stdout); // like `| head -1`
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("listen did not exit on a broken pipe")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        !stderr.contains("error") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[tokio::test]
async fn streams_that_open_and_end_back_off_then_give_up() {
    // What ssehub's hub sends first on every stream, then the end of the stream.
    let mut server = Server::start(|_| vec![sse_head(), write(":ok\nretry: 20\n")]).await;
    let child = listen(&["--json", "--max-retries", "3", &server.url("/events")]);
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("listen kept reconnecting to streams that only opened")
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("error: gave up after 3") && stderr.contains("without sending an event"),
        "{stderr}"
    );
    // The server's retry: 20 is the reconnection time; each attempt in a row waits twice as long.
    let mut times = Vec::new();
    for _ in 0..4 {
        times.push(server.request().await.at);
    }
    for (attempt, pair) in (0..).zip(times.windows(2)) {
        let want = std::time::Duration::from_millis(20 * 2u64.pow(attempt));
        assert!(pair[1] - pair[0] >= want, "attempt {attempt}: {times:?}");
    }
}

#[tokio::test]
async fn a_success_status_other_than_200_exits_with_a_message() {
    let server = Server::start(|_| {
        vec![
            write("HTTP/1.1 201 Created\r\nContent-Type: text/event-stream\r\n\r\n"),
            write("data: not to be printed\n\n"),
            Step::Hold,
        ]
    })
    .await;
    let child = listen(&["--json", &server.url("/events")]);
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("listen read a 201 response as a stream")
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("HTTP 201 Created") && stderr.contains("200 OK"),
        "{stderr}"
    );
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn no_content_exits_cleanly_even_when_reconnecting_on_http_errors() {
    for extra in [None, Some("--reconnect-on-http-error")] {
        let server = Server::start(|_| vec![support::response("204 No Content", "", "")]).await;
        let url = server.url("/events");
        let mut args = vec!["--json"];
        args.extend(extra);
        args.push(&url);
        let output = tokio::time::timeout(PATIENCE, listen(&args).wait_with_output())
            .await
            .expect("listen did not exit on 204")
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{extra:?}: {output:?}");
        assert!(output.stdout.is_empty());
        assert_eq!(server.accepted(), 1);
    }
}
