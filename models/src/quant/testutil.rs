//! Seeded random data for the module's tests.

use rand::{rngs::StdRng, Rng, SeedableRng};

/// `n` values uniform in `[-scale, scale)`, the same for the same seed.
pub(crate) fn random_vec(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}
