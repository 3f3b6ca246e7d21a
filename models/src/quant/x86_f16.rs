//! F16 weight kernels for x86-64: half floats widened by F16C (AVX2) or AVX-512F and multiplied
//! with the f32 activation by FMA.
//!
//! Each function checks its slice lengths first (a panic, never an out-of-bounds read); the
//! unaligned loads below rely on those checks. Callers must only call these functions after
//! run-time detection of the features they enable (see `kernel::Kernel`).

use std::arch::x86_64::*;

use super::x86::{f16_to_f32, hsum256, prefetch};

/// `row` (little-endian f16, two bytes a value) · `x`, with AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_f16_avx2(row: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    assert_eq!(row.len(), 2 * n, "an F16 row holds two bytes per activation value");
    let (w, xp) = (row.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // 32 values (64 bytes of weights, one cache line) per step, in four independent sums.
    while i + 32 <= n {
        prefetch(row, 2 * i, 64);
        for (k, a) in acc.iter_mut().enumerate() {
            let at = i + 8 * k;
            // SAFETY: at + 8 <= n, so bytes 2·at..2·at + 16 of `row` and values at..at + 8 of `x`
            // are inside the slices (lengths checked above).
            let (wv, xv) = unsafe { (_mm256_cvtph_ps(_mm_loadu_si128(w.add(2 * at) as *const __m128i)), _mm256_loadu_ps(xp.add(at))) };
            *a = _mm256_fmadd_ps(wv, xv, *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: as above, with i + 8 <= n.
        let (wv, xv) = unsafe { (_mm256_cvtph_ps(_mm_loadu_si128(w.add(2 * i) as *const __m128i)), _mm256_loadu_ps(xp.add(i))) };
        acc[0] = _mm256_fmadd_ps(wv, xv, acc[0]);
        i += 8;
    }
    let mut s = hsum256(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for j in i..n {
        s += f16_to_f32(&row[2 * j..]) * x[j];
    }
    s
}

/// [`dot_f16_avx2`] with 512-bit registers (AVX-512F widens sixteen halves at a time).
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub(super) fn dot_f16_avx512(row: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    assert_eq!(row.len(), 2 * n, "an F16 row holds two bytes per activation value");
    let (w, xp) = (row.as_ptr(), x.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // 64 values (128 bytes of weights, two cache lines) per step, in four independent sums.
    while i + 64 <= n {
        prefetch(row, 2 * i, 128);
        for (k, a) in acc.iter_mut().enumerate() {
            let at = i + 16 * k;
            // SAFETY: at + 16 <= n, so bytes 2·at..2·at + 32 of `row` and values at..at + 16 of
            // `x` are inside the slices (lengths checked above).
            let (wv, xv) = unsafe { (_mm512_cvtph_ps(_mm256_loadu_si256(w.add(2 * at) as *const __m256i)), _mm512_loadu_ps(xp.add(at))) };
            *a = _mm512_fmadd_ps(wv, xv, *a);
        }
        i += 64;
    }
    while i + 16 <= n {
        // SAFETY: as above, with i + 16 <= n.
        let (wv, xv) = unsafe { (_mm512_cvtph_ps(_mm256_loadu_si256(w.add(2 * i) as *const __m256i)), _mm512_loadu_ps(xp.add(i))) };
        acc[0] = _mm512_fmadd_ps(wv, xv, acc[0]);
        i += 16;
    }
    let mut s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
    for j in i..n {
        s += f16_to_f32(&row[2 * j..]) * x[j];
    }
    s
}

/// Widens a row of little-endian f16 values into `out` (the prompt path's dequantization).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn widen_f16_avx2(row: &[u8], out: &mut [f32]) {
    let n = out.len();
    assert_eq!(row.len(), 2 * n, "an F16 row holds two bytes per value");
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n keeps the 16-byte load inside `row` and the 8-value store inside `out`.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_cvtph_ps(_mm_loadu_si128(row.as_ptr().add(2 * i) as *const __m128i))) };
        i += 8;
    }
    for j in i..n {
        out[j] = f16_to_f32(&row[2 * j..]);
    }
}
