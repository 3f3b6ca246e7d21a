//! x86-64 kernels: AVX2 (+FMA, F16C) and AVX-512 (F + BW).
//!
//! Each function checks its slice lengths first (a panic, never an out-of-bounds read); the
//! unaligned SIMD loads below rely on those checks. Callers must only call these functions
//! after run-time detection of the features they enable (see `kernel::Kernel`).

use std::arch::x86_64::*;

use super::activation::ActQ8;
use super::format::{q4k_scale_min, Q4_0_BYTES, Q4_K_BYTES, Q8_0_BYTES, QK, QK_K};

#[target_feature(enable = "avx2,fma,f16c")]
fn f16_to_f32(b: &[u8]) -> f32 {
    let bits = u16::from_le_bytes([b[0], b[1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

/// Loads 32 bytes at `p[at..at + 32]`.
#[target_feature(enable = "avx2,fma,f16c")]
fn load32(p: &[u8], at: usize) -> __m256i {
    assert!(at + 32 <= p.len());
    // SAFETY: the assert above keeps the 32-byte unaligned load inside `p`.
    unsafe { _mm256_loadu_si256(p.as_ptr().add(at) as *const __m256i) }
}

/// Loads 16 bytes at `p[at..at + 16]`.
#[target_feature(enable = "avx2,fma,f16c")]
fn load16(p: &[u8], at: usize) -> __m128i {
    assert!(at + 16 <= p.len());
    // SAFETY: the assert above keeps the 16-byte unaligned load inside `p`.
    unsafe { _mm_loadu_si128(p.as_ptr().add(at) as *const __m128i) }
}

fn as_bytes(q: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size and alignment and every bit pattern is valid for both.
    unsafe { std::slice::from_raw_parts(q.as_ptr() as *const u8, q.len()) }
}

/// Sums of products of adjacent signed bytes, as eight i32.
#[target_feature(enable = "avx2,fma,f16c")]
fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
}

/// Q4_0 block `b` of `row` against activation block `b`, as eight i32 whose sum is Σ (q−8)·a.
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_block(row: &[u8], a: &[u8], sums: &[i32], b: usize) -> __m256i {
    let q = load16(row, b * Q4_0_BYTES + 2);
    let m4 = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(q, m4);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), m4);
    let w = _mm256_set_m128i(hi, lo);
    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, load32(a, b * QK)), _mm256_set1_epi16(1));
    // Σ q·a − 8·Σ a, spread over the eight lanes.
    _mm256_sub_epi32(p, _mm256_set1_epi32(sums[b]))
}

fn check(row: &[u8], block_bytes: usize, act: &ActQ8) -> usize {
    let nb = row.len() / block_bytes;
    assert!(row.len() == nb * block_bytes && act.qs.len() == nb * QK && act.d.len() == nb && act.sums.len() == nb);
    nb
}

/// Q8_0 row · activation with AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q8_0_avx2(row: &[u8], act: &ActQ8) -> f32 {
    let nb = check(row, Q8_0_BYTES, act);
    let a = as_bytes(&act.qs);
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut b = 0;
    while b + 2 <= nb {
        let p0 = mul_sum_i8(load32(row, b * Q8_0_BYTES + 2), load32(a, b * QK));
        let p1 = mul_sum_i8(load32(row, (b + 1) * Q8_0_BYTES + 2), load32(a, (b + 1) * QK));
        let s0 = f16_to_f32(&row[b * Q8_0_BYTES..]) * act.d[b];
        let s1 = f16_to_f32(&row[(b + 1) * Q8_0_BYTES..]) * act.d[b + 1];
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(s0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(s1), acc1);
        b += 2;
    }
    if b < nb {
        let p0 = mul_sum_i8(load32(row, b * Q8_0_BYTES + 2), load32(a, b * QK));
        let s0 = f16_to_f32(&row[b * Q8_0_BYTES..]) * act.d[b];
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(s0), acc0);
    }
    hsum256(_mm256_add_ps(acc0, acc1))
}

/// Q4_0 row · activation with AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q4_0_avx2(row: &[u8], act: &ActQ8) -> f32 {
    let nb = check(row, Q4_0_BYTES, act);
    let a = as_bytes(&act.qs);
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut b = 0;
    while b + 2 <= nb {
        let p0 = q4_0_block(row, a, &act.sums, b);
        let p1 = q4_0_block(row, a, &act.sums, b + 1);
        let s0 = f16_to_f32(&row[b * Q4_0_BYTES..]) * act.d[b];
        let s1 = f16_to_f32(&row[(b + 1) * Q4_0_BYTES..]) * act.d[b + 1];
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(s0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(s1), acc1);
        b += 2;
    }
    if b < nb {
        let p0 = q4_0_block(row, a, &act.sums, b);
        let s0 = f16_to_f32(&row[b * Q4_0_BYTES..]) * act.d[b];
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(s0), acc0);
    }
    hsum256(_mm256_add_ps(acc0, acc1))
}

/// Q4_K row · activation with AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q4k_avx2(row: &[u8], act: &ActQ8) -> f32 {
    let nsb = row.len() / Q4_K_BYTES;
    assert!(row.len() == nsb * Q4_K_BYTES && act.qs.len() == nsb * QK_K && act.d.len() == nsb * 8 && act.sums.len() == nsb * 8);
    let a = as_bytes(&act.qs);
    let m4 = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    for sb in 0..nsb {
        let blk = &row[sb * Q4_K_BYTES..(sb + 1) * Q4_K_BYTES];
        let d = f16_to_f32(blk);
        let dmin = f16_to_f32(&blk[2..]);
        for j in 0..4 {
            let q = load32(blk, 16 + 32 * j);
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
            let ab = sb * 8 + 2 * j;
            let plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32(a, ab * QK)), ones);
            let phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load32(a, (ab + 1) * QK)), ones);
            let (sc0, m0) = q4k_scale_min(2 * j, &blk[4..16]);
            let (sc1, m1) = q4k_scale_min(2 * j + 1, &blk[4..16]);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(plo), _mm256_set1_ps(d * sc0 as f32 * act.d[ab]), acc);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(phi), _mm256_set1_ps(d * sc1 as f32 * act.d[ab + 1]), acc);
            mins += dmin * (m0 as f32 * act.d[ab] * act.sums[ab] as f32 + m1 as f32 * act.d[ab + 1] * act.sums[ab + 1] as f32);
        }
    }
    hsum256(acc) - mins
}

/// Loads two 256-bit halves into one 512-bit register.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// Loads 64 bytes at `p[at..at + 64]`.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
fn load64(p: &[u8], at: usize) -> __m512i {
    assert!(at + 64 <= p.len());
    // SAFETY: the assert above keeps the 64-byte unaligned load inside `p`.
    unsafe { _mm512_loadu_si512(p.as_ptr().add(at) as *const __m512i) }
}

/// Q8_0 row · activation with AVX-512, two blocks per step.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub(super) fn dot_q8_0_avx512(row: &[u8], act: &ActQ8) -> f32 {
    let nb = check(row, Q8_0_BYTES, act);
    let a = as_bytes(&act.qs);
    let ones = _mm512_set1_epi16(1);
    let zero = _mm512_setzero_si512();
    let mut acc = _mm512_setzero_ps();
    let mut b = 0;
    while b + 2 <= nb {
        let w = join(load32(row, b * Q8_0_BYTES + 2), load32(row, (b + 1) * Q8_0_BYTES + 2));
        let x = load64(a, b * QK);
        // |w| · (x with w's sign): AVX-512 has no vpsignb, so negate x where w < 0.
        let neg = _mm512_movepi8_mask(w);
        let sx = _mm512_mask_sub_epi8(x, neg, zero, x);
        let p = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(w), sx), ones);
        let s0 = f16_to_f32(&row[b * Q8_0_BYTES..]) * act.d[b];
        let s1 = f16_to_f32(&row[(b + 1) * Q8_0_BYTES..]) * act.d[b + 1];
        let s = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(s0), _mm512_set1_ps(s1));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc);
        b += 2;
    }
    let mut total = _mm512_reduce_add_ps(acc);
    if b < nb {
        let p = mul_sum_i8(load32(row, b * Q8_0_BYTES + 2), load32(a, b * QK));
        total += hsum256(_mm256_cvtepi32_ps(p)) * f16_to_f32(&row[b * Q8_0_BYTES..]) * act.d[b];
    }
    total
}

/// Q4_0 row · activation with AVX-512, two blocks per step.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub(super) fn dot_q4_0_avx512(row: &[u8], act: &ActQ8) -> f32 {
    let nb = check(row, Q4_0_BYTES, act);
    let a = as_bytes(&act.qs);
    let ones = _mm512_set1_epi16(1);
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = _mm512_setzero_ps();
    let mut b = 0;
    while b + 2 <= nb {
        // [q0 | q1] → low nibbles [lo0 | lo1] and high nibbles [hi0 | hi1] → [lo0 hi0 lo1 hi1].
        let q = _mm256_set_m128i(load16(row, (b + 1) * Q4_0_BYTES + 2), load16(row, b * Q4_0_BYTES + 2));
        let lo = _mm256_and_si256(q, m4);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
        let w = _mm512_shuffle_i64x2::<0b11_01_10_00>(join(lo, hi), join(lo, hi));
        let p = _mm512_madd_epi16(_mm512_maddubs_epi16(w, load64(a, b * QK)), ones);
        let corr = _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(act.sums[b]), _mm512_set1_epi32(act.sums[b + 1]));
        let p = _mm512_sub_epi32(p, corr);
        let s0 = f16_to_f32(&row[b * Q4_0_BYTES..]) * act.d[b];
        let s1 = f16_to_f32(&row[(b + 1) * Q4_0_BYTES..]) * act.d[b + 1];
        let s = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(s0), _mm512_set1_ps(s1));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc);
        b += 2;
    }
    let mut total = _mm512_reduce_add_ps(acc);
    if b < nb {
        let p = q4_0_block(row, a, &act.sums, b);
        total += hsum256(_mm256_cvtepi32_ps(p)) * f16_to_f32(&row[b * Q4_0_BYTES..]) * act.d[b];
    }
    total
}
