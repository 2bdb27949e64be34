//! Who each push was for, whether the hub acknowledged it, and what each client received: the
//! soak's ground truth.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::bench::rng::Rng;

/// The data of a soak push: `{seq} {ts} b` for a broadcast, `{seq} {ts} u{client}` for one
/// client, then ` x...` up to `len` bytes. Whatever else arrives is somebody else's event (the
/// example's demo broadcast).
pub fn event_data(seq: u64, ts_ns: u64, recipient: Recipient, len: usize) -> String {
    let mut data = match recipient {
        Recipient::Everyone => format!("{seq} {ts_ns} b"),
        Recipient::Client(client) => format!("{seq} {ts_ns} u{client}"),
    };
    if data.len() + 1 < len {
        data.push(' ');
        data.extend(std::iter::repeat_n('x', len - data.len()));
    }
    data
}

/// Who a push is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    Everyone,
    Client(u32),
}

/// A delivery as the client read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub seq: u64,
    pub ts_ns: u64,
    pub recipient: Recipient,
}

/// Parses an event's data; `None` for events that are not the soak's.
pub fn parse_data(data: &str) -> Option<Delivery> {
    let mut parts = data.split(' ');
    let seq = parts.next()?.parse().ok()?;
    let ts_ns = parts.next()?.parse().ok()?;
    let recipient = match parts.next()? {
        "b" => Recipient::Everyone,
        client => Recipient::Client(client.strip_prefix('u')?.parse().ok()?),
    };
    let padding = parts.next();
    (parts.next().is_none() && padding.is_none_or(|pad| pad.bytes().all(|b| b == b'x'))).then_some(
        Delivery {
            seq,
            ts_ns,
            recipient,
        },
    )
}

/// Planned pushes: their recipients, fixed up front from a seed, and whether each was acked.
#[derive(Debug)]
pub struct Ledger {
    recipients: Box<[Recipient]>,
    /// 0: not answered (yet), 1: acknowledged (2xx), 2: refused or failed.
    outcome: Box<[AtomicU8]>,
    /// When each push was sent (ns since the epoch, 0: not yet): a `history-gap` notice can only
    /// cover pushes sent before it arrived.
    sent_ns: Box<[AtomicU64]>,
}

const ACKED: u8 = 1;
const FAILED: u8 = 2;

impl Ledger {
    /// `pushes` recipients: a broadcast with probability `broadcast_share`, else a random client.
    pub fn plan(pushes: u64, clients: u32, broadcast_share: f64, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let recipients = (0..pushes)
            .map(|_| {
                if rng.unit() < broadcast_share {
                    Recipient::Everyone
                } else {
                    Recipient::Client((rng.next() % u64::from(clients.max(1))) as u32)
                }
            })
            .collect();
        let outcome = (0..pushes).map(|_| AtomicU8::new(0)).collect();
        let sent_ns = (0..pushes).map(|_| AtomicU64::new(0)).collect();
        Self {
            recipients,
            outcome,
            sent_ns,
        }
    }

    pub fn len(&self) -> u64 {
        self.recipients.len() as u64
    }

    pub fn recipient(&self, seq: u64) -> Option<Recipient> {
        self.recipients.get(usize::try_from(seq).ok()?).copied()
    }

    /// Records that push `seq` went out at `sent_ns`, and whether the hub acknowledged it.
    pub fn settle(&self, seq: u64, sent_ns: u64, acked: bool) {
        let Ok(i) = usize::try_from(seq) else { return };
        if let Some(outcome) = self.outcome.get(i) {
            outcome.store(if acked { ACKED } else { FAILED }, Ordering::Relaxed);
        }
        if let Some(sent) = self.sent_ns.get(i) {
            sent.store(sent_ns, Ordering::Relaxed);
        }
    }

    fn sent_ns(&self, seq: u64) -> u64 {
        usize::try_from(seq)
            .ok()
            .and_then(|i| self.sent_ns.get(i))
            .map_or(0, |sent| sent.load(Ordering::Relaxed))
    }

    pub fn acked(&self, seq: u64) -> bool {
        usize::try_from(seq)
            .ok()
            .and_then(|i| self.outcome.get(i))
            .is_some_and(|outcome| outcome.load(Ordering::Relaxed) == ACKED)
    }

    /// Whether an acknowledged push `seq` was for `client`.
    pub fn owed_to(&self, seq: u64, client: u32) -> bool {
        self.acked(seq)
            && self
                .recipient(seq)
                .is_some_and(|r| r == Recipient::Everyone || r == Recipient::Client(client))
    }
}

/// What one client was owed and did not get, in two kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Missing {
    /// Lost without a word: a broken promise.
    pub silent: u64,
    /// The first and last push lost silently.
    pub silent_range: Option<(u64, u64)>,
    /// Sent before a `history-gap` notice that this client then received: the hub said these
    /// had left its history (a reader slower than its stream for longer than the history lasts).
    pub after_gap_notice: u64,
}

/// Which pushes one client has received, one bit each, and when it was last told of a gap.
#[derive(Debug, Clone)]
pub struct Seen {
    bits: Vec<u64>,
    len: u64,
    last_gap_notice_ns: u64,
    gap_notices: u32,
    last_delivery_ns: u64,
}

impl Seen {
    pub fn new(pushes: u64) -> Self {
        Self {
            bits: vec![0; usize::try_from(pushes.div_ceil(64)).unwrap_or(0)],
            len: pushes,
            last_gap_notice_ns: 0,
            gap_notices: 0,
            last_delivery_ns: 0,
        }
    }

    /// The client received a `history-gap` notice at `now_ns`.
    pub fn gap_notice(&mut self, now_ns: u64) {
        self.last_gap_notice_ns = self.last_gap_notice_ns.max(now_ns);
        self.gap_notices += 1;
    }

    /// The client received one of its events at `now_ns`.
    pub fn delivered_at(&mut self, now_ns: u64) {
        self.last_delivery_ns = self.last_delivery_ns.max(now_ns);
    }

    pub fn gap_notices(&self) -> u32 {
        self.gap_notices
    }

    pub fn last_delivery_ns(&self) -> u64 {
        self.last_delivery_ns
    }

    /// What `client` was owed and never received, each miss sorted into silent loss or loss
    /// the hub gave notice of; `examples` collects the first few silent ones.
    pub fn missing(&self, ledger: &Ledger, client: u32, examples: &mut Vec<(u32, u64)>) -> Missing {
        let mut missing = Missing::default();
        for seq in 0..ledger.len() {
            if !ledger.owed_to(seq, client) || self.contains(seq) {
                continue;
            }
            if ledger.sent_ns(seq) < self.last_gap_notice_ns {
                missing.after_gap_notice += 1;
            } else {
                missing.silent += 1;
                let (first, _) = missing.silent_range.unwrap_or((seq, seq));
                missing.silent_range = Some((first, seq));
                if examples.len() < 10 {
                    examples.push((client, seq));
                }
            }
        }
        missing
    }

    /// Marks `seq`; `false` if it was already marked (a duplicate) or out of range.
    pub fn insert(&mut self, seq: u64) -> bool {
        if seq >= self.len {
            return false;
        }
        let Some(word) = usize::try_from(seq / 64)
            .ok()
            .and_then(|i| self.bits.get_mut(i))
        else {
            return false;
        };
        let bit = 1 << (seq % 64);
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }

    pub fn contains(&self, seq: u64) -> bool {
        usize::try_from(seq / 64)
            .ok()
            .and_then(|i| self.bits.get(i))
            .is_some_and(|word| word & (1 << (seq % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips_and_strangers_are_ignored() {
        let uni = Recipient::Client(17);
        assert_eq!(
            parse_data(&event_data(5, 99, uni, 0)),
            Some(Delivery {
                seq: 5,
                ts_ns: 99,
                recipient: uni
            })
        );
        assert_eq!(
            parse_data(&event_data(6, 1, Recipient::Everyone, 64)).map(|d| d.recipient),
            Some(Recipient::Everyone)
        );
        assert_eq!(parse_data("hello_world_3"), None);
        assert_eq!(parse_data("1 2 u3 extra"), None);
        assert_eq!(event_data(6, 1, Recipient::Everyone, 64).len(), 64);
    }

    #[test]
    fn a_push_is_owed_to_its_recipients_once_acked() {
        let ledger = Ledger::plan(1000, 10, 0.3, 7);
        let broadcasts = (0..1000)
            .filter(|&seq| ledger.recipient(seq) == Some(Recipient::Everyone))
            .count();
        assert!((200..400).contains(&broadcasts), "{broadcasts}");
        let seq = (0..1000)
            .find(|&seq| ledger.recipient(seq) == Some(Recipient::Client(3)))
            .unwrap();
        assert!(!ledger.owed_to(seq, 3), "not acked yet");
        ledger.settle(seq, 1, true);
        assert!(ledger.owed_to(seq, 3));
        assert!(!ledger.owed_to(seq, 4));
    }

    #[test]
    fn seen_counts_duplicates() {
        let mut seen = Seen::new(130);
        assert!(seen.insert(129));
        assert!(!seen.insert(129));
        assert!(seen.contains(129) && !seen.contains(128));
        assert!(!seen.insert(130), "out of range");
    }

    #[test]
    fn a_miss_counts_as_signalled_only_if_sent_before_the_last_gap_notice() {
        let ledger = Ledger::plan(4, 1, 1.0, 3); // four broadcasts, one client
        for (seq, sent_ns) in [(0, 100), (1, 200), (2, 300), (3, 400)] {
            ledger.settle(seq, sent_ns, true);
        }
        let mut seen = Seen::new(4);
        seen.insert(0);
        let mut examples = Vec::new();
        assert_eq!(
            seen.missing(&ledger, 0, &mut examples),
            Missing {
                silent: 3,
                silent_range: Some((1, 3)),
                after_gap_notice: 0
            },
            "no notice: every miss is silent"
        );
        assert_eq!(examples, [(0, 1), (0, 2), (0, 3)]);
        seen.gap_notice(250);
        assert_eq!(
            seen.missing(&ledger, 0, &mut Vec::new()),
            Missing {
                silent: 2,
                silent_range: Some((2, 3)),
                after_gap_notice: 1
            },
            "a notice covers only what was sent before it"
        );
        seen.gap_notice(150); // an older notice changes nothing
        seen.insert(3);
        assert_eq!(
            seen.missing(&ledger, 0, &mut Vec::new()),
            Missing {
                silent: 1,
                silent_range: Some((2, 2)),
                after_gap_notice: 1
            }
        );
    }
}
