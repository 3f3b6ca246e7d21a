//! AVX2 scores of the decode attention in register tiles: eight (head, position) dot products at a
//! time (2 heads × 4 positions, or one head × 8 positions), eight accumulators over the head
//! dimension, then one reduction of the eight registers into one register of eight sums. The
//! one-head kernel (`x86::scores`) loads the query once per four key rows and sums each
//! register on its own; here each load serves more products. What does not fill a tile goes to
//! that kernel.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{prefetch_rows, x86, View};

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
/// and every position `t` of `block`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) fn scores(qs: &[f32], k: &View, bi: usize, gi: usize, block: Range<usize>, scores: &mut [f32], n: usize, first: usize) {
    let d = k.dims[3];
    let rep = qs.len() / d;
    assert!(qs.len() == rep * d && scores.len() >= rep * n && block.start >= first && block.end - first <= n);
    let head = |r: usize| &qs[r * d..(r + 1) * d];
    let mut sums = [0f32; 8];
    let (mut r0, mut t_end) = (0, block.start);
    if d.is_multiple_of(8) {
        let (heads, positions) = if rep >= 2 { (2, 4) } else { (1, 8) };
        t_end = block.start + (block.end - block.start) / positions * positions;
        while r0 + heads <= rep {
            for t0 in (block.start..t_end).step_by(positions) {
                if r0 == 0 {
                    prefetch_rows(k, bi, gi, t0, positions);
                }
                // SAFETY: the heads and key rows are slices of `d` floats (`View::row`), and AVX2
                // and FMA were detected by whoever made the `Simd` that calls this.
                let w = unsafe {
                    if heads == 2 {
                        tile::<2, 4>([head(r0).as_ptr(), head(r0 + 1).as_ptr()], std::array::from_fn(|t| k.row(bi, gi, t0 + t).as_ptr()), d)
                    } else {
                        tile::<1, 8>([head(r0).as_ptr()], std::array::from_fn(|t| k.row(bi, gi, t0 + t).as_ptr()), d)
                    }
                };
                // SAFETY: `sums` is eight floats.
                unsafe { _mm256_storeu_ps(sums.as_mut_ptr(), w) };
                for (r, s) in sums.chunks(positions).enumerate() {
                    let at = (r0 + r) * n + t0 - first;
                    scores[at..at + positions].copy_from_slice(s);
                }
            }
            r0 += heads;
        }
    }
    // The heads left over (all positions) and the last positions of the tiled heads.
    for r in 0..rep {
        let span = if r < r0 { t_end..block.end } else { block.clone() };
        if !span.is_empty() {
            let at = r * n + span.start - first;
            x86::scores(head(r), k, bi, gi, span.clone(), &mut scores[at..at + span.len()]);
        }
    }
}
