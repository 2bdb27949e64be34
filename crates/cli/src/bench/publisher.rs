//! The publisher: pushes at a fixed rate, pipelined over a few keep-alive connections.
//!
//! Push `i` is due at `start + i / rate` and goes on connection `i mod K`. Each connection has a
//! writer (this module's lane) that writes every push that is due, without waiting for answers,
//! and a reader task that counts the answers. A server that falls behind therefore shows up as
//! latency, not as fewer pushes: the schedule does not wait for it.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::http1::{BodyDecoder, parse_head};
use super::now_ns;
use super::recipients::Recipients;
use super::target::Target;
use super::template::Template;

/// The time limit of opening one push connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Pushes written in one go at most, when a lane is behind schedule.
const MAX_BATCH: usize = 256;

/// Reconnections in a row a lane tries before it gives up.
const MAX_RECONNECTS: u32 = 3;

/// The pause after a failed reconnection.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// What to push, where, and how fast.
#[derive(Debug)]
pub struct PushSpec {
    target: Target,
    /// The request line and headers, without `Content-Length` and the blank line; with
    /// `path`, only the headers.
    head: Box<[u8]>,
    /// The push URL's path and query, when they have placeholders (`{uid}`, `{uids:PREFIX}`):
    /// the request line is then rendered per push, for that push's clients.
    path: Option<Template>,
    template: Template,
    rate: f64,
    total: u64,
    /// In a uni-cast run: who each push is for, rendered into its body.
    recipients: Option<Recipients>,
    /// One bit per push, set when it is answered 2xx: a uni-cast run owes a push to its clients
    /// only once the server took it.
    acked: Box<[AtomicU64]>,
}

impl PushSpec {
    /// `total` pushes at `rate` per second to `target`, with `headers` (a `Content-Type:
    /// application/json` unless they have a content type of their own), each for `recipients`
    /// in a uni-cast run. Placeholders in the URL's path and query are rendered per push
    /// ([`Template::parse_url`]); a URL without any is written as is.
    pub fn new(
        target: Target,
        headers: &[(String, String)],
        template: Template,
        rate: f64,
        total: u64,
        recipients: Option<Recipients>,
    ) -> Self {
        let path = Some(Template::parse_url(&target.path)).filter(Template::has_placeholders);
        let mut head = match path {
            Some(_) => String::new(),
            None => format!("POST {} HTTP/1.1\r\n", target.path),
        };
        let has = |name: &str| {
            headers
                .iter()
                .any(|(key, _)| key.eq_ignore_ascii_case(name))
        };
        if !has("host") {
            head.push_str(&format!("Host: {}\r\n", target.host));
        }
        if !has("content-type") {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            // The length is the generator's to write, per push.
            if !name.eq_ignore_ascii_case("content-length") {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        Self {
            target,
            head: head.into_bytes().into(),
            path,
            template,
            rate,
            total,
            recipients,
            acked: (0..total.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Whether push `seq` was answered 2xx.
    pub fn is_acked(&self, seq: u64) -> bool {
        usize::try_from(seq / 64)
            .ok()
            .and_then(|word| self.acked.get(word))
            .is_some_and(|word| word.load(Ordering::Acquire) & (1 << (seq % 64)) != 0)
    }

    fn set_acked(&self, seq: u64) {
        if let Some(word) = usize::try_from(seq / 64)
            .ok()
            .and_then(|word| self.acked.get(word))
        {
            word.fetch_or(1 << (seq % 64), Ordering::AcqRel);
        }
    }

    /// Where the pushes go.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// When push `seq` is due, counted from the start.
    fn due(&self, seq: u64) -> Duration {
        Duration::from_secs_f64(seq as f64 / self.rate)
    }

    /// Appends the request of push `seq` stamped `ts`; `body` and `uids` are scratch space.
    fn render(
        &self,
        seq: u64,
        ts: u64,
        out: &mut Vec<u8>,
        body: &mut Vec<u8>,
        uids: &mut Vec<u64>,
    ) {
        body.clear();
        uids.clear();
        if let Some(recipients) = &self.recipients {
            recipients.of_push(seq, uids);
        }
        self.template.render(seq, ts, uids, body);
        if let Some(path) = &self.path {
            out.extend_from_slice(b"POST ");
            path.render(seq, ts, uids, out);
            out.extend_from_slice(b" HTTP/1.1\r\n");
        }
        out.extend_from_slice(&self.head);
        // Writing into a Vec cannot fail.
        let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
        out.extend_from_slice(body);
    }
}

/// Opens a push connection; Nagle is off so that a push is not held back waiting for the
/// previous one's acknowledgement.
pub async fn connect(target: &Target) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.addr))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|error| error.to_string())?;
    stream
        .set_nodelay(true)
        .map_err(|error| error.to_string())?;
    Ok(stream)
}

/// The counts of the pushes of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Requests written.
    pub sent: u64,
    /// Answered with 2xx.
    pub acked: u64,
}

impl PushOutcome {
    fn add(&mut self, other: Self) {
        self.sent += other.sent;
        self.acked += other.acked;
    }
}

/// Publishes `spec` over `streams` (one lane each) from `start`; stops writing and waiting for
/// answers at `deadline`.
pub async fn publish(
    spec: Arc<PushSpec>,
    streams: Vec<TcpStream>,
    start: Instant,
    deadline: Instant,
) -> PushOutcome {
    let lanes = streams.len() as u64;
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(lane, stream)| {
            tokio::spawn(run_lane(
                spec.clone(),
                lane as u64,
                lanes,
                stream,
                start,
                deadline,
            ))
        })
        .collect();
    let mut outcome = PushOutcome::default();
    for task in tasks {
        match task.await {
            Ok(lane) => outcome.add(lane),
            Err(error) => tracing::error!(%error, "a push lane failed"),
        }
    }
    outcome
}

/// One push connection: the counts its reader keeps, and the handles to end it.
struct Connection {
    write: OwnedWriteHalf,
    counts: Arc<Counts>,
    reader: JoinHandle<()>,
}

/// Counts shared by a connection's writer and reader.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    answered: AtomicU64,
    acked: AtomicU64,
    /// The server closed the connection, or it failed: the writer opens a new one.
    closed: AtomicBool,
    /// Woken whenever answers arrive or the connection closes.
    progress: Notify,
}

impl Connection {
    /// Starts a connection whose requests are pushes `first`, `first + lanes`, ... in order:
    /// answers come in the order of the requests, so the n-th answer is for push
    /// `first + n · lanes`.
    fn start(stream: TcpStream, spec: Arc<PushSpec>, first: u64, lanes: u64) -> Self {
        let (read, write) = stream.into_split();
        let counts = Arc::new(Counts::default());
        let reader = tokio::spawn(read_answers(read, counts.clone(), spec, first, lanes));
        Self {
            write,
            counts,
            reader,
        }
    }

    fn is_closed(&self) -> bool {
        self.counts.closed.load(Ordering::Acquire)
    }

    /// Waits until every request written has its answer, the connection closes, or `deadline`;
    /// then ends it. Pushes left unanswered count as sent but not acknowledged.
    async fn finish(self, deadline: Instant) -> PushOutcome {
        let counts = &self.counts;
        loop {
            let progress = counts.progress.notified();
            if counts.answered.load(Ordering::Acquire) >= counts.sent.load(Ordering::Acquire)
                || counts.closed.load(Ordering::Acquire)
            {
                break;
            }
            if tokio::time::timeout_at(deadline, progress).await.is_err() {
                break;
            }
        }
        self.reader.abort();
        PushOutcome {
            sent: counts.sent.load(Ordering::Acquire),
            acked: counts.acked.load(Ordering::Acquire),
        }
    }
}

/// Writes pushes `lane`, `lane + lanes`, `lane + 2 lanes`, ... each at its due time.
async fn run_lane(
    spec: Arc<PushSpec>,
    lane: u64,
    lanes: u64,
    stream: TcpStream,
    start: Instant,
    deadline: Instant,
) -> PushOutcome {
    let mut outcome = PushOutcome::default();
    let mut connection = Connection::start(stream, spec.clone(), lane, lanes);
    let mut reconnects = 0;
    let mut requests = Vec::new();
    let mut body = Vec::new();
    let mut uids = Vec::new();
    let mut next = lane;
    while next < spec.total {
        tokio::time::sleep_until(start + spec.due(next)).await;
        if Instant::now() >= deadline {
            break;
        }
        if connection.is_closed() {
            let previous = connection;
            let reopened = tokio::time::timeout_at(deadline, connect(&spec.target))
                .await
                .unwrap_or_else(|_| Err("the run's deadline passed".to_owned()));
            match reopened {
                Ok(stream) => connection = Connection::start(stream, spec.clone(), next, lanes),
                Err(error) => {
                    reconnects += 1;
                    tracing::warn!(lane, %error, "cannot reopen a push connection");
                    if reconnects >= MAX_RECONNECTS {
                        tracing::error!(lane, "giving up on a push connection");
                        outcome.add(previous.finish(Instant::now()).await);
                        return outcome;
                    }
                    connection = previous;
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            }
            outcome.add(previous.finish(Instant::now()).await);
        }
        // Everything due by now goes in one write: behind schedule, the lane catches up in
        // bursts instead of drifting.
        let now = Instant::now();
        let ts = now_ns();
        requests.clear();
        let mut batch = 0;
        while next < spec.total && start + spec.due(next) <= now && batch < MAX_BATCH {
            spec.render(next, ts, &mut requests, &mut body, &mut uids);
            next += lanes;
            batch += 1;
        }
        // Counted before the write, so that the answers never outnumber the requests.
        connection
            .counts
            .sent
            .fetch_add(batch as u64, Ordering::AcqRel);
        match tokio::time::timeout_at(deadline, connection.write.write_all(&requests)).await {
            Ok(Ok(())) => reconnects = 0,
            Ok(Err(error)) => {
                tracing::warn!(lane, %error, "push write failed; reconnecting");
                connection.counts.closed.store(true, Ordering::Release);
            }
            Err(_) => break,
        }
    }
    outcome.add(connection.finish(deadline).await);
    outcome
}

/// Reads and counts the answers on one push connection until it closes or fails; the n-th is
/// for push `first + n · lanes`.
async fn read_answers(
    mut read: OwnedReadHalf,
    counts: Arc<Counts>,
    spec: Arc<PushSpec>,
    first: u64,
    lanes: u64,
) {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut body: Option<BodyDecoder> = None;
    let mut close_after_body = false;
    let mut first_error_logged = false;
    'reading: loop {
        match read.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "push connection read failed");
                break;
            }
        }
        let mut at = 0;
        loop {
            if let Some(decoder) = &mut body {
                match decoder.decode(&buf[at..], |_| {}) {
                    Ok(used) => at += used,
                    Err(error) => {
                        tracing::warn!(%error, "bad push response");
                        break 'reading;
                    }
                }
                if !decoder.is_done() {
                    break;
                }
                body = None;
                if close_after_body {
                    break 'reading;
                }
            }
            match parse_head(&buf[at..]) {
                Ok(Some((head, len))) => {
                    at += len;
                    close_after_body = head.close;
                    body = Some(BodyDecoder::new(head.framing));
                    // 1xx answers are interim: the final answer follows.
                    if head.status >= 200 {
                        if head.status < 300 {
                            let answered = counts.answered.load(Ordering::Acquire);
                            spec.set_acked(first + answered * lanes);
                            counts.acked.fetch_add(1, Ordering::AcqRel);
                        } else if !first_error_logged {
                            first_error_logged = true;
                            tracing::warn!(status = head.status, "push refused (first of any)");
                        }
                        counts.answered.fetch_add(1, Ordering::AcqRel);
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "bad push response");
                    break 'reading;
                }
            }
        }
        buf.drain(..at);
        counts.progress.notify_one();
    }
    counts.closed.store(true, Ordering::Release);
    counts.progress.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::parse("http://127.0.0.1:9/push?x=1").unwrap()
    }

    #[test]
    fn requests() {
        let spec = PushSpec::new(
            target(),
            &[],
            Template::parse(r#"{"events":[{"data":"{seq} {ts}"}]}"#),
            10.0,
            20,
            None,
        );
        let (mut out, mut body, mut uids) = (Vec::new(), Vec::new(), Vec::new());
        spec.render(3, 42, &mut out, &mut body, &mut uids);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /push?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Type: application/json\r\n\
             Content-Length: 28\r\n\r\n{\"events\":[{\"data\":\"3 42\"}]}"
        );
        assert_eq!(spec.due(0), Duration::ZERO);
        assert_eq!(spec.due(15), Duration::from_millis(1500));
    }

    #[test]
    fn uni_cast_requests_name_their_clients() {
        let spec = PushSpec::new(
            target(),
            &[],
            Template::parse(r#"{"uids":[{uids:c}],"events":[{"data":"{seq} {ts}"}]}"#),
            10.0,
            20,
            Some(Recipients::new(
                10,
                2,
                crate::bench::recipients::Order::RoundRobin,
                1,
            )),
        );
        let (mut out, mut body, mut uids) = (Vec::new(), Vec::new(), Vec::new());
        spec.render(7, 42, &mut out, &mut body, &mut uids);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"uids":["c4","c5"],"events":[{"data":"7 42"}]}"#
        );
    }

    #[test]
    fn uni_cast_push_urls_name_their_clients() {
        let recipients = |k| {
            Some(Recipients::new(
                10,
                k,
                crate::bench::recipients::Order::RoundRobin,
                1,
            ))
        };
        let headers = [("Content-Type".to_owned(), "text/plain".to_owned())];
        let spec = PushSpec::new(
            Target::parse("http://127.0.0.1:9/push?uids={uids:c}").unwrap(),
            &headers,
            Template::parse("{seq} {ts}"),
            10.0,
            20,
            recipients(2),
        );
        assert!(spec.path.as_ref().is_some_and(Template::has_uids));
        let (mut out, mut body, mut uids) = (Vec::new(), Vec::new(), Vec::new());
        spec.render(7, 42, &mut out, &mut body, &mut uids);
        spec.render(8, 43, &mut out, &mut body, &mut uids);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /push?uids=c4,c5 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Type: text/plain\r\n\
             Content-Length: 4\r\n\r\n7 42\
             POST /push?uids=c6,c7 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Type: text/plain\r\n\
             Content-Length: 4\r\n\r\n8 43"
        );
        let spec = PushSpec::new(
            Target::parse("http://127.0.0.1:9/push/c{uid}").unwrap(),
            &headers,
            Template::parse("{seq} {ts}"),
            10.0,
            20,
            recipients(1),
        );
        let (mut out, mut body, mut uids) = (Vec::new(), Vec::new(), Vec::new());
        spec.render(3, 1, &mut out, &mut body, &mut uids);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with("POST /push/c3 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"),
        );
        // No placeholder: the request line is the URL's, as is.
        let spec = PushSpec::new(
            Target::parse("http://127.0.0.1:9/push?x={}").unwrap(),
            &headers,
            Template::parse("{seq} {ts}"),
            10.0,
            20,
            recipients(1),
        );
        assert!(spec.path.is_none());
        let (mut out, mut body, mut uids) = (Vec::new(), Vec::new(), Vec::new());
        spec.render(3, 1, &mut out, &mut body, &mut uids);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with("POST /push?x={} HTTP/1.1\r\n")
        );
    }

    #[test]
    fn headers_replace_the_defaults() {
        let headers = [
            ("content-type".to_owned(), "text/plain".to_owned()),
            ("Content-Length".to_owned(), "999".to_owned()),
            ("X-Token".to_owned(), "t".to_owned()),
        ];
        let spec = PushSpec::new(
            target(),
            &headers,
            Template::parse("{seq} {ts}"),
            1.0,
            1,
            None,
        );
        let (mut out, mut body, mut uids) = (Vec::new(), Vec::new(), Vec::new());
        spec.render(0, 7, &mut out, &mut body, &mut uids);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /push?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\ncontent-type: text/plain\r\n\
             X-Token: t\r\nContent-Length: 3\r\n\r\n0 7"
        );
    }

    #[tokio::test]
    async fn answers_are_counted_across_reads() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let answers = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\
                           HTTP/1.1 100 Continue\r\n\r\n\
                           HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n\
                           HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\noops\
                           HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
            for piece in answers.as_bytes().chunks(7) {
                socket.write_all(piece).await.unwrap();
                socket.flush().await.unwrap();
            }
            // Hold the socket until the reader saw the close.
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest).await;
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        // Pushes 1, 4, 7, 10 (lane 1 of 3) on this connection.
        let spec = Arc::new(PushSpec::new(
            target(),
            &[],
            Template::parse("{seq} {ts}"),
            1.0,
            12,
            None,
        ));
        let connection = Connection::start(stream, spec.clone(), 1, 3);
        connection.counts.sent.store(4, Ordering::Release);
        let outcome = connection
            .finish(Instant::now() + Duration::from_secs(10))
            .await;
        assert_eq!(outcome, PushOutcome { sent: 4, acked: 3 });
        let acked: Vec<u64> = (0..12).filter(|&seq| spec.is_acked(seq)).collect();
        assert_eq!(acked, [1, 4, 10], "the 500 was for push 7");
        server.abort();
    }
}
