//! x86-64 kernels: AVX2 (+FMA, F16C) and AVX-512 (F + BW).
//!
//! Each function checks its slice lengths first (a panic, never an out-of-bounds read); the
//! unaligned SIMD loads below rely on those checks. Callers must only call these functions
//! after run-time detection of the features they enable (see `kernel::Kernel`).

use std::arch::x86_64::*;

use super::activation::ActQ8;
use super::format::{Q4_0_BYTES, Q4_K_BYTES, Q8_0_BYTES, QK};

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn f16_to_f32(b: &[u8]) -> f32 {
    let bits = u16::from_le_bytes([b[0], b[1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

/// Asks for the cache lines `PREFETCH` bytes ahead of `p[at..at + span]` into L2
/// (`PREFETCH_HINT`; a hint: it never faults, even past the end). Streaming rows from memory
/// ran at half the bandwidth without it.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn prefetch(p: &[u8], at: usize, span: usize) {
    let base = p.as_ptr().wrapping_add(at + super::x86_vnni::PREFETCH);
    let mut off = 0;
    while off < span {
        _mm_prefetch::<{ super::x86_vnni::PREFETCH_HINT }>(base.wrapping_add(off) as *const i8);
        off += 64;
    }
}

/// Loads 32 bytes at `p[at..at + 32]`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load32(p: &[u8], at: usize) -> __m256i {
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

pub(super) fn as_bytes(q: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size and alignment and every bit pattern is valid for both.
    unsafe { std::slice::from_raw_parts(q.as_ptr() as *const u8, q.len()) }
}

/// Quantizes `x` to 8 bits per 32-value block exactly as `ActQ8::quantize_blocks` does (the
/// block's largest magnitude, NaN ignored, maps to 127; values round half away from zero; NaN
/// becomes 0): writes `qs` and pushes each block's scale to `d` and its sum to `sums`. The
/// compiler left the portable loop's rounding scalar (3.5 ns a value, 1–1.5 ms of a decode step).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn quantize_act_avx2(x: &[f32], qs: &mut [i8], d: &mut Vec<f32>, sums: &mut Vec<i32>) {
    assert!(x.len().is_multiple_of(QK) && qs.len() == x.len(), "whole 32-value blocks, as many bytes as values");
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
    let sign = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
    let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
    let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (chunk, out) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)) {
        let mut v = [_mm256_setzero_ps(); 4];
        let mut m = _mm256_setzero_ps();
        for (k, vk) in v.iter_mut().enumerate() {
            // SAFETY: `chunk` holds 32 floats, so floats 8k..8k + 8 are inside it.
            *vk = unsafe { _mm256_loadu_ps(chunk.as_ptr().add(8 * k)) };
            // The running maximum is the second operand: `max` answers it when |v| is NaN.
            m = _mm256_max_ps(_mm256_and_ps(*vk, abs), m);
        }
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_shuffle_ps::<1>(m2, m2)));
        let scale = amax / 127.0;
        let id = _mm256_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
        let mut q = [_mm256_setzero_si256(); 4];
        let mut sum = _mm256_setzero_si256();
        for (qk, vk) in q.iter_mut().zip(v) {
            let p = _mm256_mul_ps(vk, id);
            // Half away from zero: truncate, then step away from zero when |fraction| ≥ 0.5 (the
            // fraction is exact below 2^23, and every larger float is already whole).
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(p);
            let frac = _mm256_and_ps(_mm256_sub_ps(p, t), abs);
            let step = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, half), _mm256_or_ps(_mm256_and_ps(p, sign), one));
            let r = _mm256_and_ps(_mm256_add_ps(t, step), _mm256_cmp_ps::<_CMP_ORD_Q>(p, p));
            *qk = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
            sum = _mm256_add_epi32(sum, *qk);
        }
        let bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        // SAFETY: `out` holds 32 bytes.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, _mm256_permutevar8x32_epi32(bytes, order)) };
        let s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256::<1>(sum));
        let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        sums.push(_mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32::<1>(s2))));
        d.push(scale);
    }
}

/// Sums of products of adjacent signed bytes, as eight i32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
}

/// Q4_0 block `b` of `row` against activation block `b`, as eight i32 whose sum is Σ (q−8)·a.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q4_0_block(row: &[u8], a: &[u8], sums: &[i32], b: usize) -> __m256i {
    let q = load16(row, b * Q4_0_BYTES + 2);
    let m4 = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(q, m4);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), m4);
    let w = _mm256_set_m128i(hi, lo);
    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, load32(a, b * QK)), _mm256_set1_epi16(1));
    // Σ q·a − 8·Σ a, spread over the eight lanes.
    _mm256_sub_epi32(p, _mm256_set1_epi32(sums[b]))
}

pub(super) fn check(row: &[u8], block_bytes: usize, act: &ActQ8) -> usize {
    let nb = row.len() / block_bytes;
    assert!(row.len() == nb * block_bytes && act.qs.len() == nb * QK && act.d.len() == nb && act.sums.len() == nb);
    nb
}

/// The eight sub-block scales × `d` and the eight minimums × `dmin` of the Q4_K super-block
/// starting at `blk[at]`, its 6-bit fields unpacked with byte shuffles (the scalar unpacking it
/// replaces cost about twenty integer instructions per super-block on the vector ports).
///
/// Scale `j < 4` is `s[j] & 63`, `j ≥ 4` is `s[j + 4] & 15 | (s[j − 4] >> 6) << 4`; minimum
/// `j < 4` is `s[j + 4] & 63`, `j ≥ 4` is `s[j + 4] >> 4 | (s[j] >> 6) << 4` (`s`: the 12 bytes
/// after `d` and `dmin`; `format::q4k_scale_min` is the reference).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q4k_scales(row: &[u8], at: usize) -> (__m256, __m256) {
    assert!(at + Q4_K_BYTES <= row.len());
    // SAFETY: bytes at..at + 20 are inside the super-block, checked above.
    let (dm, s) = unsafe {
        let p = row.as_ptr().add(at);
        (_mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned())), _mm_loadu_si128(p.add(4) as *const __m128i))
    };
    // Bytes 0..8: the scales' low bits, 8..16: the minimums'; then their top two bits.
    let low = _mm_shuffle_epi8(s, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    let low = _mm_or_si128(
        _mm_and_si128(low, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0)),
        _mm_and_si128(_mm_srli_epi16::<4>(low), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15)),
    );
    let top = _mm_shuffle_epi8(s, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    let v = _mm_or_si128(low, _mm_and_si128(_mm_srli_epi16::<2>(top), _mm_set1_epi8(0x30)));
    let d = _mm256_broadcastss_ps(dm);
    let dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
    let sc = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), d);
    let mn = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(v, v))), dmin);
    (sc, mn)
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
        prefetch(row, b * Q8_0_BYTES, 2 * Q8_0_BYTES);
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
        prefetch(row, b * Q4_0_BYTES, 2 * Q4_0_BYTES);
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

/// Loads two 256-bit halves into one 512-bit register.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// Lanes 0..8 take element 0 of a 128-bit vector, lanes 8..16 element 1.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
fn halves_index() -> __m512i {
    _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
}

/// The combined scales of blocks `b` and `b + 1` (weight f16 scale × activation scale), spread
/// as lanes 0..8 and 8..16.
///
/// # Safety
/// `row` must hold blocks `b + 1` of `block_bytes` bytes (scale first) and `d` entries `b + 1`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
unsafe fn pair_scales(row: *const u8, block_bytes: usize, d: *const f32, b: usize, idx: __m512i) -> __m512 {
    // SAFETY: the caller guarantees both blocks and both activation scales exist.
    unsafe {
        let w0 = std::ptr::read_unaligned(row.add(b * block_bytes) as *const u16);
        let w1 = std::ptr::read_unaligned(row.add((b + 1) * block_bytes) as *const u16);
        let w = _mm_cvtph_ps(_mm_cvtsi32_si128((w0 as u32 | ((w1 as u32) << 16)) as i32));
        let a = _mm_castpd_ps(_mm_load_sd(d.add(b) as *const f64));
        _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_mul_ps(w, a)))
    }
}

/// Two Q8_0 blocks `b, b + 1` against the activation, accumulated into `acc`.
///
/// # Safety
/// `rp` must hold blocks `b + 1` of Q8_0_BYTES, `ap` `(b + 2) · 32` bytes and `dp` `b + 2` scales.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
unsafe fn q8_0_pair(acc: __m512, rp: *const u8, ap: *const u8, dp: *const f32, b: usize, idx: __m512i) -> __m512 {
    // SAFETY: the caller guarantees every byte read here exists.
    unsafe {
        let w = join(
            _mm256_loadu_si256(rp.add(b * Q8_0_BYTES + 2) as *const __m256i),
            _mm256_loadu_si256(rp.add((b + 1) * Q8_0_BYTES + 2) as *const __m256i),
        );
        let x = _mm512_loadu_si512(ap.add(b * QK) as *const __m512i);
        // |w| · (x with w's sign): AVX-512 has no vpsignb, so negate x where w < 0.
        let sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
        let p = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(w), sx), _mm512_set1_epi16(1));
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), pair_scales(rp, Q8_0_BYTES, dp, b, idx), acc)
    }
}

/// Two Q4_0 blocks `b, b + 1` against the activation, accumulated into `acc`.
///
/// # Safety
/// `rp` must hold blocks `b + 1` of Q4_0_BYTES, `ap` `(b + 2) · 32` bytes, `dp` and `sp` `b + 2` entries.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
unsafe fn q4_0_pair(acc: __m512, rp: *const u8, ap: *const u8, dp: *const f32, sp: *const i32, b: usize, idx: __m512i) -> __m512 {
    // SAFETY: the caller guarantees every byte read here exists.
    unsafe {
        // [q0 | q1] → low nibbles [lo0 | lo1] and high nibbles [hi0 | hi1] → [lo0 hi0 lo1 hi1].
        let q = _mm256_set_m128i(
            _mm_loadu_si128(rp.add((b + 1) * Q4_0_BYTES + 2) as *const __m128i),
            _mm_loadu_si128(rp.add(b * Q4_0_BYTES + 2) as *const __m128i),
        );
        let m4 = _mm256_set1_epi8(0x0F);
        let lo = _mm256_and_si256(q, m4);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
        let lh = join(lo, hi);
        let w = _mm512_shuffle_i64x2::<0b11_01_10_00>(lh, lh);
        let x = _mm512_loadu_si512(ap.add(b * QK) as *const __m512i);
        let p = _mm512_madd_epi16(_mm512_maddubs_epi16(w, x), _mm512_set1_epi16(1));
        // Σ q·a − 8·Σ a per block: the activation's block sums, spread over each half.
        let sums = _mm_loadl_epi64(sp.add(b) as *const __m128i);
        let p = _mm512_sub_epi32(p, _mm512_permutexvar_epi32(idx, _mm512_castsi128_si512(sums)));
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), pair_scales(rp, Q4_0_BYTES, dp, b, idx), acc)
    }
}

/// Q8_0 row · activation with AVX-512, two blocks per step, four per loop turn.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub(super) fn dot_q8_0_avx512(row: &[u8], act: &ActQ8) -> f32 {
    let nb = check(row, Q8_0_BYTES, act);
    let (rp, ap, dp) = (row.as_ptr(), act.qs.as_ptr() as *const u8, act.d.as_ptr());
    let idx = halves_index();
    let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut b = 0;
    // SAFETY: `check` proved that `row` holds `nb` blocks, `act.qs` `nb · 32` bytes and `act.d`
    // `nb` scales; pairs are only taken for blocks `b, b + 1 < nb`.
    unsafe {
        while b + 4 <= nb {
            prefetch(row, b * Q8_0_BYTES, 4 * Q8_0_BYTES);
            acc0 = q8_0_pair(acc0, rp, ap, dp, b, idx);
            acc1 = q8_0_pair(acc1, rp, ap, dp, b + 2, idx);
            b += 4;
        }
        if b + 2 <= nb {
            acc0 = q8_0_pair(acc0, rp, ap, dp, b, idx);
            b += 2;
        }
    }
    let mut total = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if b < nb {
        let p = mul_sum_i8(load32(row, b * Q8_0_BYTES + 2), load32(as_bytes(&act.qs), b * QK));
        total += hsum256(_mm256_cvtepi32_ps(p)) * f16_to_f32(&row[b * Q8_0_BYTES..]) * act.d[b];
    }
    total
}

/// Q4_0 row · activation with AVX-512, two blocks per step, four per loop turn.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub(super) fn dot_q4_0_avx512(row: &[u8], act: &ActQ8) -> f32 {
    let nb = check(row, Q4_0_BYTES, act);
    let (rp, ap, dp, sp) = (row.as_ptr(), act.qs.as_ptr() as *const u8, act.d.as_ptr(), act.sums.as_ptr());
    let idx = halves_index();
    let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut b = 0;
    // SAFETY: `check` proved that `row` holds `nb` blocks, `act.qs` `nb · 32` bytes and `act.d` /
    // `act.sums` `nb` entries; pairs are only taken for blocks `b, b + 1 < nb`.
    unsafe {
        while b + 4 <= nb {
            prefetch(row, b * Q4_0_BYTES, 4 * Q4_0_BYTES);
            acc0 = q4_0_pair(acc0, rp, ap, dp, sp, b, idx);
            acc1 = q4_0_pair(acc1, rp, ap, dp, sp, b + 2, idx);
            b += 4;
        }
        if b + 2 <= nb {
            acc0 = q4_0_pair(acc0, rp, ap, dp, sp, b, idx);
            b += 2;
        }
    }
    let mut total = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if b < nb {
        let p = q4_0_block(row, as_bytes(&act.qs), &act.sums, b);
        total += hsum256(_mm256_cvtepi32_ps(p)) * f16_to_f32(&row[b * Q4_0_BYTES..]) * act.d[b];
    }
    total
}
