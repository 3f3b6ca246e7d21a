//! Data order and padded batches. The order of each epoch is a ChaCha8 shuffle seeded by
//! `(seed, epoch)`, so a resumed run recomputes it from the seed, the epoch and its position.
use crate::encode::Example;
use candle_core::Device;
use doctorglm_models::train::{Batch, TrainError};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The example indices of an epoch, in training order.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mixed = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(mixed));
    order
}

/// Micro-batches (right-padded, labels -100 on padding) of the given examples.
pub fn make_batch(examples: &[&Example], pad_id: u32, device: &Device) -> Result<Batch, TrainError> {
    let ids: Vec<Vec<u32>> = examples.iter().map(|e| e.ids.clone()).collect();
    let labels: Vec<Vec<i64>> = examples.iter().map(|e| e.labels.clone()).collect();
    Batch::from_rows(&ids, &labels, pad_id, device)
}

/// Optimizer steps in one epoch of `n` examples.
pub fn steps_per_epoch(n: usize, batch_size: usize, grad_accum: usize) -> usize {
    n.div_ceil(batch_size * grad_accum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_a_seeded_permutation_per_epoch() {
        let a = epoch_order(50, 7, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 7, 0));
        assert_ne!(a, epoch_order(50, 7, 1));
        assert_ne!(a, epoch_order(50, 8, 0));
    }

    #[test]
    fn steps_round_up() {
        assert_eq!(steps_per_epoch(10, 4, 1), 3);
        assert_eq!(steps_per_epoch(16, 4, 2), 2);
        assert_eq!(steps_per_epoch(17, 4, 2), 3);
    }
}
