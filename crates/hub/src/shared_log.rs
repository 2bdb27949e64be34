//! Pushes with a shared log (`HubBuilder::log`): many nodes, one order.
//!
//! A node never delivers its own pushes directly. The appender takes the pushes waiting (as the
//! committer does with a store of its own) and appends them in one call; the log numbers them
//! across nodes, assigns the missing ids and refuses reused ones; the pushers are answered once
//! appended. The tail, on every node, reads the log from where this node was when the log was
//! opened, in bounded pages, and fans each run of records with the same recipients out to this
//! node's connections, encoded once, tagged with their seqs (so a resume's handover works as
//! with a store). Live and resend come from one sequence: `Last-Event-ID` works on any node.
//!
//! When the log cannot be read, the streams stay open (heartbeats go on) and the tail retries
//! with back-off and jitter, from the last seq it delivered: nothing lost, nothing repeated.
//! Records past a hole (the log trimmed them before this node read them, or it lost its data)
//! cannot be delivered: every connection is then closed, so that its client resumes from the
//! history, which tells it of the gap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::PushError;
use crate::delivery::Tally;
use crate::hub::Shared;
use crate::sequencer::{Committed, MAX_BATCH, Submission, isolated, refuse};
use crate::store::{Append, Appended, Log, Recipients, Record, StoreError};

/// Records read per page: bounds what one read holds.
const PAGE: usize = 512;
/// The tail gives up one read after this (the log's own read waits less) and looks again, so
/// that a dropped hub is noticed.
const READ_WAIT: Duration = Duration::from_secs(10);
/// Back-off between failed reads: from the first, doubling, to the cap; with jitter.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// What the appender and the tail of one hub share.
pub(crate) struct Node {
    pub(crate) log: Arc<dyn Log>,
    /// Where the tail starts: the log's end when the hub was built (or the log opened).
    opened_at: u64,
    /// The highest seq this node has seen: the log must number above it.
    pub(crate) known: AtomicU64,
    /// Ends the tail (the hub closed).
    pub(crate) stop: CancellationToken,
}

impl Node {
    pub(crate) fn new(log: Arc<dyn Log>) -> Self {
        let opened_at = log.opened_at();
        Self {
            opened_at,
            known: AtomicU64::new(opened_at),
            log,
            stop: CancellationToken::new(),
        }
    }
}

/// The appender: batch, append, answer; until the hub is gone.
pub(crate) async fn append(
    hub: Weak<Shared>,
    node: Arc<Node>,
    mut submissions: mpsc::Receiver<Submission>,
) {
    let mut batch = Vec::new();
    while submissions.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if hub.strong_count() == 0 {
            return;
        }
        // A pusher that gave up waiting was told its push failed: don't append it.
        batch.retain(|submission| !submission.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let pushes: Vec<Append<'_>> = batch
            .iter()
            .map(|submission| Append {
                recipients: &submission.recipients,
                events: &submission.events,
            })
            .collect();
        let known = node.known.load(Ordering::Acquire);
        let answers = isolated(node.log.append(&pushes, known)).await;
        drop(pushes);
        let answers = match answers {
            Ok(answers) if answers.len() == batch.len() => answers,
            Ok(_) => {
                refuse(
                    &mut batch,
                    &StoreError::backend("the log answered for a different number of pushes"),
                );
                continue;
            }
            Err(error) => {
                refuse(&mut batch, &error);
                continue;
            }
        };
        for (submission, answer) in batch.drain(..).zip(answers) {
            let reply = match answer {
                Appended::Accepted { first_seq, ids } => {
                    let last = first_seq + (ids.len() as u64).saturating_sub(1);
                    node.known.fetch_max(last, Ordering::AcqRel);
                    Ok(Committed {
                        ids,
                        tally: Tally::default(),
                    })
                }
                Appended::DuplicateId { index, id } => Err(PushError::DuplicateId { index, id }),
            };
            let _ = submission.reply.send(reply);
        }
    }
}

/// The tail: reads the log in order and delivers to this node's connections.
pub(crate) async fn tail(hub: Weak<Shared>, node: Arc<Node>) {
    let mut after = node.opened_at;
    let mut failures: u32 = 0;
    let mut wakers = Vec::new();
    loop {
        if hub.strong_count() == 0 {
            return;
        }
        let read = tokio::select! {
            () = node.stop.cancelled() => return,
            read = tokio::time::timeout(READ_WAIT, isolated(node.log.read(after, PAGE))) => read,
        };
        let records = match read {
            Err(_elapsed) => continue,
            Ok(Ok(records)) => records,
            Ok(Err(error)) => {
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(
                        target: "ssehub",
                        %error,
                        failures,
                        after,
                        "cannot read the shared log; streams stay open, retrying"
                    );
                }
                let wait = backoff(failures);
                tokio::select! {
                    () = node.stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        if failures > 0 {
            tracing::info!(target: "ssehub", failures, after, "reading the shared log again");
            failures = 0;
        }
        let Some(shared) = hub.upgrade() else { return };
        let Some(last) = records.last().map(|record| record.seq) else {
            continue;
        };
        if records[0].seq > after + 1 {
            hole(&shared, after, records[0].seq);
        }
        deliver(&shared, &records, &mut wakers).await;
        after = last;
        node.known.fetch_max(last, Ordering::AcqRel);
    }
}

/// Delivers records in order: each run of consecutive records with the same recipients (the
/// events of one push) as one fan-out, encoded once; the streams woken once for the page.
async fn deliver(shared: &Arc<Shared>, records: &[Record], wakers: &mut Vec<std::task::Waker>) {
    let mut start = 0;
    while start < records.len() {
        let first = &records[start];
        let mut end = start + 1;
        while end < records.len()
            && records[end].seq == records[end - 1].seq + 1
            && same(&records[end].recipients, &first.recipients)
        {
            end += 1;
        }
        let encoded: Arc<[Bytes]> = records[start..end]
            .iter()
            .map(|record| {
                record.event.encode().unwrap_or_else(|error| {
                    tracing::error!(seq = record.seq, %error, "a logged event cannot be sent");
                    Bytes::new()
                })
            })
            .collect();
        let mut tally = shared
            .fan_out(&first.recipients, &encoded, first.seq, None, true)
            .await;
        wakers.extend(tally.wakers.take().into_iter().flatten());
        shared.settle(tally);
        start = end;
    }
    for waker in wakers.drain(..) {
        waker.wake();
    }
}

/// The same recipients (the log gives the events of one push one shared list).
fn same(a: &Recipients, b: &Recipients) -> bool {
    match (a, b) {
        (Recipients::All, Recipients::All) => true,
        (Recipients::Listed(a), Recipients::Listed(b)) => a.same(b) || a == b,
        _ => false,
    }
}

/// Records between `after` and `next` can no longer be delivered: close every connection, so
/// that each client resumes from the history (which then tells it of the gap) rather than
/// silently missing them.
fn hole(shared: &Shared, after: u64, next: u64) {
    let connections = shared.registry.all();
    tracing::warn!(
        target: "ssehub",
        after,
        next,
        connections = connections.len(),
        "the shared log no longer holds events this node had not delivered (trimmed, or the log \
         lost its data): closing every stream so that clients resume from the history"
    );
    for connection in connections {
        connection.close(None);
    }
}

/// The wait after `failures` failed reads: doubling from 0.1 s to 5 s, each drawn in
/// [wait / 2, wait) so that nodes do not retry in step.
fn backoff(failures: u32) -> Duration {
    let doubled = BACKOFF_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let wait = doubled.min(BACKOFF_CAP);
    let half = wait / 2;
    half + half.mul_f64(jitter())
}

/// A number in [0, 1), from the clock's low bits: enough to spread retries.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let mixed = u64::from(nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    mixed as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_within_the_jitter() {
        for failures in 1..40 {
            let full = BACKOFF_FIRST
                .saturating_mul(1 << (failures - 1).min(16))
                .min(BACKOFF_CAP);
            let wait = backoff(failures);
            assert!(wait >= full / 2 && wait < full, "{failures}: {wait:?}");
        }
    }
}
