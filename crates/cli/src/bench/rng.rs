//! A small deterministic random generator, shared by `ssehub bench` and `ssehub soak`: their
//! randomness is reproducible from a seed, and needs no `rand`.

/// xorshift64*.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// A generator of its own for `key` under `seed` (splitmix64 of both): a push's random draws
    /// can be made again from its number alone, by the publisher and by every client, so that
    /// nobody needs to keep a list of who each push was for.
    pub fn keyed(seed: u64, key: u64) -> Self {
        let mut z = seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(key)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self::new(z ^ (z >> 31))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..=max` (the slight bias of a modulo is of no matter here).
    pub fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(bound) => self.next() % bound,
            None => self.next(),
        }
    }

    /// Exponentially distributed with this mean: the time to a random event.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_generators_repeat_and_differ() {
        let draw = |seed, key| Rng::keyed(seed, key).next();
        assert_eq!(draw(1, 7), draw(1, 7));
        assert_ne!(draw(1, 7), draw(1, 8));
        assert_ne!(draw(1, 7), draw(2, 7));
        assert_ne!(draw(0, 0), 0);
        let mut rng = Rng::new(3);
        assert!((0..1000).all(|_| rng.up_to(4) <= 4));
        assert!((0..1000).any(|_| rng.up_to(4) == 4));
    }
}
