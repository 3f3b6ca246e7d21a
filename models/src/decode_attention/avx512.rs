//! AVX-512F kernels of the decode attention, in register tiles.
//!
//! - Scores: sixteen (head, position) dot products at a time (4 heads × 4 positions, or one head
//!   × 16 positions), sixteen accumulators over the head dimension, then one reduction that
//!   turns the sixteen registers into one register of sixteen sums (45 instructions, counted;
//!   sixteen separate horizontal sums would take about eight each).
//! - Weighted values: two heads × 128 output values (16 accumulators) per pass over a block of
//!   value rows, each row loaded once for both heads.
//!
//! What does not fill a tile (head counts that are not multiples of four, the last positions of
//! a block, head dimensions that are not multiples of 16 or 128) goes to the AVX2 kernels.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{prefetch_rows, tiled_scores, x86, View};

/// The sixteen sums of `acc`, where lane `4l + e` of the result is the sum of `acc[4e + l]`.
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce16(acc: [__m512; 16]) -> __m512 {
    // Halves of each pair: lanes (128-bit) 0, 1 hold acc[2k]'s partial sums, 2, 3 acc[2k + 1]'s.
    let b: [__m512; 8] = std::array::from_fn(|k| {
        let (x, y) = (acc[2 * k], acc[2 * k + 1]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0b01_00_01_00>(x, y), _mm512_shuffle_f32x4::<0b11_10_11_10>(x, y))
    });
    // Lane l of c[m] holds four partial sums of acc[4m + l].
    let c: [__m512; 4] = std::array::from_fn(|m| {
        let (x, y) = (b[2 * m], b[2 * m + 1]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_00_10_00>(x, y), _mm512_shuffle_f32x4::<0b11_01_11_01>(x, y))
    });
    let u0 = _mm512_add_ps(_mm512_unpacklo_ps(c[0], c[1]), _mm512_unpackhi_ps(c[0], c[1]));
    let u1 = _mm512_add_ps(_mm512_unpacklo_ps(c[2], c[3]), _mm512_unpackhi_ps(c[2], c[3]));
    let (u0, u1) = (_mm512_castps_pd(u0), _mm512_castps_pd(u1));
    _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(u0, u1)), _mm512_castpd_ps(_mm512_unpackhi_pd(u0, u1)))
}

/// `R × T = 16` dot products of length `d` (a multiple of 16): slot `r·T + t` of the result is
/// `q[r] · k[t]`.
///
/// # Safety
/// Every pointer must have `d` readable floats, and AVX-512F must be available.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize, const T: usize>(q: [*const f32; R], k: [*const f32; T], d: usize) -> __m512 {
    let mut acc = [_mm512_setzero_ps(); 16];
    let mut i = 0;
    while i < d {
        // SAFETY: `i + 16 <= d` and every row has `d` floats (the caller's contract).
        unsafe {
            for (j, a) in acc.iter_mut().enumerate() {
                let slot = 4 * (j % 4) + j / 4;
                let (r, t) = (slot / T, slot % T);
                *a = _mm512_fmadd_ps(_mm512_loadu_ps(q[r].add(i)), _mm512_loadu_ps(k[t].add(i)), *a);
            }
        }
        i += 16;
    }
    reduce16(acc)
}

/// `scores[r·n + t − first] = qs[r] · k[bi, gi, t]` for every head `r` of `qs` (`d` values each)
/// and every position `t` of `block`: 4 heads × 4 positions a tile (1 × 16 where a group has fewer
/// than four heads).
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) fn scores(qs: &[f32], k: &View, bi: usize, gi: usize, block: Range<usize>, scores: &mut [f32], n: usize, first: usize) {
    let d = k.dims[3];
    let four = qs.len() / d >= 4;
    let shape = if four { (4, 4, 16) } else { (1, 16, 16) };
    tiled_scores(qs, k, (bi, gi), block, scores, (n, first), shape, |r0, t0, sums| {
        let head = |r: usize| qs[(r0 + r) * d..].as_ptr();
        let row = |t: usize| k.row(bi, gi, t0 + t).as_ptr();
        // SAFETY: `tiled_scores` only asks for whole heads and key rows of `d` floats, `d` a
        // multiple of 16; AVX-512F was detected by whoever made `Simd::Avx512`; `sums` holds 16.
        unsafe {
            let w = if four { tile::<4, 4>(std::array::from_fn(head), std::array::from_fn(row), d) } else { tile::<1, 16>([head(0)], std::array::from_fn(row), d) };
            _mm512_storeu_ps(sums.as_mut_ptr(), w);
        }
    });
}

/// `values[r] += Σ_t p[r·n + t − first] · v[bi, gi, t]` over the positions `t` of `block`, for
/// every head `r` (`values`: `rep` rows of `d`).
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) fn add_weighted(p: &[f32], n: usize, first: usize, v: &View, bi: usize, gi: usize, block: Range<usize>, values: &mut [f32]) {
    let d = v.dims[3];
    let rep = values.len() / d;
    assert!(values.len() == rep * d && p.len() >= rep * n && block.start >= first && block.end - first <= n);
    let weights = |r: usize| &p[r * n + block.start - first..r * n + block.end - first];
    if !d.is_multiple_of(128) {
        for (r, out) in values.chunks_mut(d).enumerate() {
            x86::add_weighted_rows(weights(r), v, bi, gi, block.start, out, r == 0);
        }
        return;
    }
    let mut r0 = 0;
    while r0 < rep {
        let pair = (rep - r0).min(2);
        for c in (0..d).step_by(128) {
            let out = &mut values[r0 * d..(r0 + pair) * d];
            // SAFETY: `c + 128 <= d`, and AVX-512F was detected by whoever made `Simd::Avx512`.
            unsafe {
                if pair == 2 {
                    weighted_columns::<2>([weights(r0), weights(r0 + 1)], v, bi, gi, block.clone(), out, c, r0 == 0);
                } else {
                    weighted_columns::<1>([weights(r0)], v, bi, gi, block.clone(), out, c, r0 == 0);
                }
            }
        }
        r0 += pair;
    }
}

/// For `P` heads: `out[r][c..c + 128] += Σ_j w[r][j] · v[bi, gi, block.start + j][c..c + 128]`
/// (`out`: `P` rows of `d`), in 8·P registers.
///
/// # Safety
/// `c + 128` must not exceed the head dimension `d`, and AVX-512F must be available.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn weighted_columns<const P: usize>(w: [&[f32]; P], v: &View, bi: usize, gi: usize, block: Range<usize>, out: &mut [f32], c: usize, prefetch: bool) {
    let d = v.dims[3];
    assert!(out.len() == P * d && c + 128 <= d && w.iter().all(|w| w.len() == block.len()));
    // SAFETY: the assert proves 128 floats at `r·d + c` of `out` for every `r < P`, and every
    // value row has `d` floats (`View::row`).
    unsafe {
        let base = out.as_mut_ptr();
        let at = |r: usize| base.add(r * d + c);
        let mut acc: [[__m512; 8]; P] = std::array::from_fn(|r| std::array::from_fn(|i| _mm512_loadu_ps(at(r).add(16 * i))));
        for (j, t) in block.enumerate() {
            if c == 0 && prefetch {
                prefetch_rows(v, bi, gi, t, 1);
            }
            let row = v.row(bi, gi, t).as_ptr().add(c);
            let x: [__m512; 8] = std::array::from_fn(|i| _mm512_loadu_ps(row.add(16 * i)));
            for (a, w) in acc.iter_mut().zip(w) {
                let s = _mm512_set1_ps(w[j]);
                for (a, x) in a.iter_mut().zip(x) {
                    *a = _mm512_fmadd_ps(s, x, *a);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (i, a) in a.iter().enumerate() {
                _mm512_storeu_ps(at(r).add(16 * i), *a);
            }
        }
    }
}

/// `dst = src` as f32, sixteen values an instruction, asking for the row [`WIDEN_AHEAD`]
/// values ahead into L1 and the one four times as far into L2 (an f16 cache comes from memory:
/// the decode's weights pushed it out of the caches since the last step).
///
/// [`WIDEN_AHEAD`]: super::WIDEN_AHEAD
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) fn widen(src: &[half::f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    let body = src.len() / 32 * 32;
    for i in (0..body).step_by(32) {
        // SAFETY: `i + 32 <= body <= len` of both slices; f16 is 16 bits. The prefetches are
        // hints (their addresses are computed wrapping, never read).
        unsafe {
            let (from, to) = (src.as_ptr().add(i), dst.as_mut_ptr().add(i));
            _mm_prefetch::<_MM_HINT_T0>(from.wrapping_add(super::WIDEN_AHEAD) as *const i8);
            _mm_prefetch::<_MM_HINT_T1>(from.wrapping_add(4 * super::WIDEN_AHEAD) as *const i8);
            _mm512_storeu_ps(to, _mm512_cvtph_ps(_mm256_loadu_si256(from as *const __m256i)));
            _mm512_storeu_ps(to.add(16), _mm512_cvtph_ps(_mm256_loadu_si256(from.add(16) as *const __m256i)));
        }
    }
    if body < src.len() {
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(&src[body..], &mut dst[body..]);
    }
}
