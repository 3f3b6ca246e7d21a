//! AVX2 scores of the decode attention in register tiles: eight (head, position) dot products at a
//! time (2 heads × 4 positions, or one head × 8 positions), eight accumulators over the head
//! dimension, then one reduction of the eight registers into one register of eight sums. The
//! one-head kernel (`x86::scores`) loads the query once per four key rows and sums each
//! register on its own; here each load serves more products. What does not fill a tile goes to
//! that kernel.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{tiled_scores, View};

/// The eight sums of `acc`: lane `j` of the result is the sum of `acc[j]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn reduce8(acc: [__m256; 8]) -> __m256 {
    // Within each 128-bit half: pairs, then fours.
    let t = [_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]), _mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7])];
    let u0 = _mm256_hadd_ps(t[0], t[1]);
    let u1 = _mm256_hadd_ps(t[2], t[3]);
    // u0 = [lo halves of acc 0..4 | hi halves of acc 0..4], u1 the same for acc 4..8.
    _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(u0, u1), _mm256_permute2f128_ps::<0x31>(u0, u1))
}

/// `R × T = 8` dot products of length `d` (a multiple of 8): lane `r·T + t` of the result is
/// `q[r] · k[t]`.
///
/// # Safety
/// Every pointer must have `d` readable floats, and AVX2 and FMA must be available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize, const T: usize>(q: [*const f32; R], k: [*const f32; T], d: usize) -> __m256 {
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut i = 0;
    while i < d {
        // SAFETY: `i + 8 <= d` and every row has `d` floats (the caller's contract).
        unsafe {
            let kv: [__m256; T] = std::array::from_fn(|t| _mm256_loadu_ps(k[t].add(i)));
            for r in 0..R {
                let qv = _mm256_loadu_ps(q[r].add(i));
                for t in 0..T {
                    acc[r * T + t] = _mm256_fmadd_ps(qv, kv[t], acc[r * T + t]);
                }
            }
        }
        i += 8;
    }
    reduce8(acc)
}

/// `scores[r·n + t − first] = qs[r] · k[bi, gi, t]` for every head `r` of `qs` (`d` values each)
/// and every position `t` of `block`: 2 heads × 4 positions a tile (1 × 8 where a group has one
/// head).
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) fn scores(qs: &[f32], k: &View, bi: usize, gi: usize, block: Range<usize>, scores: &mut [f32], n: usize, first: usize) {
    let d = k.dims[3];
    let two = qs.len() / d >= 2;
    let shape = if two { (2, 4, 8) } else { (1, 8, 8) };
    tiled_scores(qs, k, (bi, gi), block, scores, (n, first), shape, |r0, t0, sums| {
        let head = |r: usize| qs[(r0 + r) * d..].as_ptr();
        let row = |t: usize| k.row(bi, gi, t0 + t).as_ptr();
        // SAFETY: `tiled_scores` only asks for whole heads and key rows of `d` floats, `d` a
        // multiple of 8; AVX2 and FMA were detected by whoever made the `Simd`; `sums` holds 8.
        unsafe {
            let w = if two { tile::<2, 4>(std::array::from_fn(head), std::array::from_fn(row), d) } else { tile::<1, 8>([head(0)], std::array::from_fn(row), d) };
            _mm256_storeu_ps(sums.as_mut_ptr(), w);
        }
    });
}
