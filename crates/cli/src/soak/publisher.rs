//! The soak's publisher: paced pushes, each to one client or to everyone, over one keep-alive
//! connection; every answer is written into the ledger.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::ledger::{Ledger, Recipient, event_data};
use crate::bench::http1::{BodyDecoder, parse_head};
use crate::bench::now_ns;
use crate::bench::target::Target;

/// Publisher counts the sampler reads.
#[derive(Debug, Default)]
pub struct Published {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
}

/// Sends push `seq` at `start + seq / rate`, for every push in the ledger, over `lanes`
/// keep-alive connections (push `seq` on lane `seq % lanes`), so that a push waiting for its
/// answer (a disk sync, a broadcast to thousands) does not hold up the schedule.
pub async fn run(
    target: Target,
    ledger: Arc<Ledger>,
    rate: f64,
    data_bytes: usize,
    lanes: u64,
    published: Arc<Published>,
) {
    let start = Instant::now();
    let lanes = lanes.max(1);
    let handles: Vec<_> = (0..lanes)
        .map(|lane| {
            let (target, ledger, published) =
                (target.clone(), Arc::clone(&ledger), Arc::clone(&published));
            tokio::spawn(async move {
                let mut connection: Option<TcpStream> = None;
                for seq in (lane..ledger.len()).step_by(lanes as usize) {
                    let due = start + Duration::from_secs_f64(seq as f64 / rate);
                    tokio::time::sleep_until(due).await;
                    send(
                        &target,
                        &ledger,
                        seq,
                        data_bytes,
                        &mut connection,
                        &published,
                    )
                    .await;
                }
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.await;
    }
}

/// Sends push `seq` on `connection` (opening one if there is none) and settles it in the ledger.
async fn send(
    target: &Target,
    ledger: &Ledger,
    seq: u64,
    data_bytes: usize,
    connection: &mut Option<TcpStream>,
    published: &Published,
) {
    let Some(recipient) = ledger.recipient(seq) else {
        return;
    };
    let sent_ns = now_ns();
    let data = event_data(seq, sent_ns, recipient, data_bytes);
    let body = match recipient {
        Recipient::Everyone => format!(r#"{{"events":[{{"data":"{data}"}}]}}"#),
        Recipient::Client(client) => {
            format!(r#"{{"uids":["s{client}"],"events":[{{"data":"{data}"}}]}}"#)
        }
    };
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        target.path,
        target.host,
        body.len()
    );
    published.sent.fetch_add(1, Ordering::Relaxed);
    let answer = match connection.take() {
        Some(stream) => push(stream, &request).await,
        None => match TcpStream::connect(target.addr).await {
            Ok(stream) => push(stream, &request).await,
            Err(error) => Err(error.to_string()),
        },
    };
    let acked = match answer {
        Ok((stream, status)) => {
            *connection = Some(stream);
            (200..300).contains(&status)
        }
        Err(reason) => {
            tracing::warn!(seq, %reason, "push failed");
            false
        }
    };
    ledger.settle(seq, sent_ns, acked);
    let counter = if acked {
        &published.acked
    } else {
        &published.failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Writes one request and reads its answer; returns the connection for the next one.
async fn push(mut stream: TcpStream, request: &str) -> Result<(TcpStream, u16), String> {
    let answer = async {
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|error| error.to_string())?;
        let mut buf = Vec::with_capacity(512);
        let (head, len) = loop {
            if stream
                .read_buf(&mut buf)
                .await
                .map_err(|error| error.to_string())?
                == 0
            {
                return Err("closed before the answer".to_owned());
            }
            if let Some(parsed) = parse_head(&buf).map_err(|error| error.to_string())? {
                break parsed;
            }
        };
        let mut body = BodyDecoder::new(head.framing);
        let mut rest = buf.split_off(len);
        loop {
            body.decode(&rest, |_| {})
                .map_err(|error| error.to_string())?;
            if body.is_done() {
                return Ok(head.status);
            }
            rest.clear();
            if stream
                .read_buf(&mut rest)
                .await
                .map_err(|error| error.to_string())?
                == 0
            {
                return Err("closed in the answer's body".to_owned());
            }
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .map_err(|_| "no answer within 30 s".to_owned())??;
    Ok((stream, status))
}
