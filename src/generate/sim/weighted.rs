//! Weighted index sampling with integer weights, identical on every platform.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Cumulative integer weights for sampling an index.
pub(super) struct Weighted {
    cumulative: Vec<u64>,
}

impl Weighted {
    /// Zipf-like weights 1/(k + shift), in integers so the table is identical on every platform.
    pub(super) fn zipf(n: usize, shift: u64) -> Weighted {
        let mut total = 0u64;
        let cumulative = (0..n as u64)
            .map(|k| {
                total += 1_000_000_000_000 / (k + shift);
                total
            })
            .collect();
        Weighted { cumulative }
    }

    pub(super) fn sample(&self, rng: &mut ChaCha8Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        if total == 0 {
            return 0;
        }
        let x = rng.random_range(0..total);
        self.cumulative.partition_point(|&c| c <= x)
    }
}
