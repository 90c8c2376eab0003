//! Zipf(1.1) sampling of 0-based popularity ranks, from a fixed seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Zipf;

/// Draws ranks in `0..n` with P(rank r) proportional to 1 / (r + 1)^s.
pub struct RankSampler {
    dist: Zipf<f64>,
    rng: ChaCha8Rng,
}

impl RankSampler {
    pub fn new(n: u64, s: f64, seed: u64) -> Self {
        RankSampler { dist: Zipf::new(n, s).expect("n >= 1 and s > 0"), rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    #[inline]
    pub fn next_rank(&mut self) -> u64 {
        // rand_distr's Zipf yields 1..=n as a float.
        self.rng.sample(self.dist) as u64 - 1
    }

    /// The generator, for the non-Zipf draws that go with the ranks.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_in_range_and_skewed() {
        let mut s = RankSampler::new(1000, 1.1, 7);
        let draws: Vec<u64> = (0..20_000).map(|_| s.next_rank()).collect();
        assert!(draws.iter().all(|&r| r < 1000));
        let top = draws.iter().filter(|&&r| r == 0).count();
        let tail = draws.iter().filter(|&&r| r == 999).count();
        assert!(top > 10 * tail.max(1));
    }
}
