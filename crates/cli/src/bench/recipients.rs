//! Uni-cast runs: which clients each push is addressed to.
//!
//! The recipients of push `seq` are a pure function of `seq` (and of the seed), so the publisher
//! renders them into the body and every client checks a delivery against them without a ledger
//! of pushes: memory stays one bit per (client, push), as in a broadcast run.

use super::rng::Rng;

/// How the clients of each push are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// Push `seq` addresses clients `seq·K`, `seq·K + 1`, ... `seq·K + K − 1` (mod N): every
    /// client in turn, evenly.
    RoundRobin,
    /// K distinct clients drawn at random, from the seed and the push's number.
    Random,
}

impl Order {
    /// The name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "round-robin",
            Self::Random => "random",
        }
    }
}

/// Who each push of a uni-cast run is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipients {
    /// N: clients are `0..clients`.
    clients: u64,
    /// K, at least 1 and at most N.
    per_push: u64,
    order: Order,
    seed: u64,
}

impl Recipients {
    /// `per_push` distinct clients of `clients` for each push (the caller checks
    /// `1 <= per_push <= clients`).
    pub fn new(clients: u64, per_push: u64, order: Order, seed: u64) -> Self {
        Self {
            clients: clients.max(1),
            per_push: per_push.clamp(1, clients.max(1)),
            order,
            seed,
        }
    }

    pub fn per_push(&self) -> u64 {
        self.per_push
    }

    /// Writes the clients push `seq` is for into `out` (cleared first): K distinct indexes.
    pub fn of_push(&self, seq: u64, out: &mut Vec<u64>) {
        out.clear();
        match self.order {
            Order::RoundRobin => {
                let first = self.first_round_robin(seq);
                out.extend((0..self.per_push).map(|j| (first + j) % self.clients));
            }
            Order::Random => {
                // Floyd's sampling: K distinct values of 0..N in K draws, no shuffle of N.
                let mut rng = Rng::keyed(self.seed, seq);
                for top in self.clients - self.per_push..self.clients {
                    let pick = rng.up_to(top);
                    out.push(if out.contains(&pick) { top } else { pick });
                }
            }
        }
    }

    /// Whether push `seq` is for `client`: what every client asks of every delivery.
    pub fn includes(&self, seq: u64, client: u64, scratch: &mut Vec<u64>) -> bool {
        match self.order {
            // O(1): the K clients are a run, mod N, from the first.
            Order::RoundRobin => {
                let first = self.first_round_robin(seq);
                (client % self.clients + self.clients - first) % self.clients < self.per_push
            }
            Order::Random => {
                self.of_push(seq, scratch);
                scratch.contains(&client)
            }
        }
    }

    /// `seq · K mod N`, without overflow.
    fn first_round_robin(&self, seq: u64) -> u64 {
        ((u128::from(seq) * u128::from(self.per_push)) % u128::from(self.clients)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_consistent(recipients: &Recipients, pushes: u64) {
        let (mut of, mut scratch) = (Vec::new(), Vec::new());
        for seq in 0..pushes {
            recipients.of_push(seq, &mut of);
            assert_eq!(of.len() as u64, recipients.per_push, "{seq}");
            let mut distinct = of.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), of.len(), "distinct: {of:?}");
            for client in 0..recipients.clients {
                assert_eq!(
                    recipients.includes(seq, client, &mut scratch),
                    of.contains(&client),
                    "push {seq}, client {client}: {of:?}"
                );
            }
        }
    }

    #[test]
    fn round_robin_takes_every_client_in_turn() {
        let one = Recipients::new(5, 1, Order::RoundRobin, 1);
        let mut of = Vec::new();
        let firsts: Vec<u64> = (0..7)
            .map(|seq| {
                one.of_push(seq, &mut of);
                of[0]
            })
            .collect();
        assert_eq!(firsts, [0, 1, 2, 3, 4, 0, 1]);
        let three = Recipients::new(5, 3, Order::RoundRobin, 1);
        three.of_push(1, &mut of);
        assert_eq!(of, [3, 4, 0]);
        for (clients, k) in [(5, 1), (5, 3), (5, 5), (7, 2), (1, 1)] {
            check_consistent(&Recipients::new(clients, k, Order::RoundRobin, 1), 40);
        }
        // Large numbers do not overflow.
        let big = Recipients::new(1_000_003, 255, Order::RoundRobin, 1);
        assert!(big.includes(u64::MAX, big.first_round_robin(u64::MAX), &mut of));
    }

    #[test]
    fn random_is_distinct_repeatable_and_spread() {
        for (clients, k) in [(5, 1), (5, 3), (5, 5), (50, 3), (1, 1)] {
            check_consistent(&Recipients::new(clients, k, Order::Random, 9), 40);
        }
        let random = Recipients::new(50, 3, Order::Random, 9);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        random.of_push(11, &mut a);
        random.of_push(11, &mut b);
        assert_eq!(a, b, "the same push, the same clients");
        let mut hits = [0u32; 50];
        for seq in 0..5000 {
            random.of_push(seq, &mut a);
            for &client in &a {
                hits[client as usize] += 1;
            }
        }
        // 300 a client on average.
        assert!(hits.iter().all(|&n| (200..400).contains(&n)), "{hits:?}");
        let other_seed = Recipients::new(50, 3, Order::Random, 10);
        let differs = (0..20).any(|seq| {
            random.of_push(seq, &mut a);
            other_seed.of_push(seq, &mut b);
            a != b
        });
        assert!(differs);
    }
}
