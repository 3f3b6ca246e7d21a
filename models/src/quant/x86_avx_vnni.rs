//! 256-bit kernels laid out for unsigned × signed byte products: Q4_0 takes two blocks per
//! register against an activation packed in pairs, Q4_K one 32-value sub-block per register
//! against the plain activation (its chunks already line up), with the 6-bit scales unpacked by
//! word masks and one vector of scales per super-block. Stamped twice by [`kernels!`]: with
//! AVX-VNNI (`vpdpbusd`, the client CPUs that have VNNI without AVX-512, Alder Lake and later)
//! and with plain AVX2 (`vpmaddubsw` + `vpmaddwd`: the nibbles are at most 15, so the 16-bit
//! pair sums cannot saturate). With AVX-VNNI, prompts over Q4_0 take a tiled version that unpacks each pair of
//! blocks once for four activations. Q8_0 stays on the AVX2 kernel (a VNNI version measured no
//! faster). Every loop prefetches ahead of the row. Callers must only call these after run-time
//! detection of the features (see `kernel::Kernel`).

use std::arch::x86_64::*;

use super::activation::{ActQ8, Packed};
use super::format::{Q4_0_BYTES, Q4_K_BYTES, QK, QK_K};
use super::x86::{as_bytes, check, f16_to_f32, hsum256, prefetch, q4_0_block, q4k_scales};

/// `acc` + the sums of four adjacent products of unsigned `u` and signed `s` bytes (AVX2).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_avx2(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
}

/// `acc` + the sums of four adjacent products of unsigned `u` and signed `s` bytes (AVX-VNNI).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) fn dot_vnni(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(acc, u, s)
}

/// The Q4_0 and Q4_K kernels for one instruction set: `$features` enabled, `$dot` the byte product.
macro_rules! kernels {
    ($features:literal, $dot:ident, $pair:ident, $q4_0:ident, $q4k:ident) => {
/// Two Q4_0 blocks at `w` (36 bytes) against their packed activation, added to `acc`.
///
/// # Safety
/// 36 bytes at `w`, 64 at `a`, 8 lanes at `c` and `d`.
#[inline]
#[target_feature(enable = $features)]
unsafe fn $pair(acc: __m256, w: *const u8, a: *const u8, c: *const i32, d: *const f32) -> __m256 {
    // SAFETY: the caller guarantees every byte read here exists.
    unsafe {
        let q = _mm256_loadu2_m128i(w.add(Q4_0_BYTES + 2) as *const __m128i, w.add(2) as *const __m128i);
        let m4 = _mm256_set1_epi8(0x0F);
        let lo = _mm256_and_si256(q, m4);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
        let corr = _mm256_loadu_si256(c as *const __m256i);
        let s = $dot(corr, lo, _mm256_loadu_si256(a as *const __m256i));
        let s = $dot(s, hi, _mm256_loadu_si256(a.add(32) as *const __m256i));
        let d0 = std::ptr::read_unaligned(w as *const u16) as u32;
        let d1 = std::ptr::read_unaligned(w.add(Q4_0_BYTES) as *const u16) as u32;
        let dw = _mm_cvtph_ps(_mm_cvtsi32_si128((d0 | (d1 << 16)) as i32));
        let dw = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(dw), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_loadu_ps(d)), acc)
    }
}

/// Q4_0 row · activation (activation packed in pairs).
///
/// Panics unless `p` was packed for Q4_0 in pairs from `act` and the lengths agree.
#[target_feature(enable = $features)]
pub(super) fn $q4_0(row: &[u8], act: &ActQ8, p: &Packed) -> f32 {
    let nb = check(row, Q4_0_BYTES, act);
    let pairs = nb / 2;
    assert!(p.group == 2 && p.qs.len() == pairs * 64 && p.corr.len() == pairs * 8 && p.dx.len() == pairs * 8);
    let (rp, ap, cp, dp) = (row.as_ptr(), p.qs.as_ptr() as *const u8, p.corr.as_ptr(), p.dx.as_ptr());
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    // SAFETY: `check` and the assert prove 36 weight bytes at `rp + 36i`, 64 packed activation
    // bytes and 8 corrections and scales for every pair `i < pairs`.
    unsafe {
        while i + 2 <= pairs {
            prefetch(row, i * 2 * Q4_0_BYTES, 4 * Q4_0_BYTES);
            acc0 = $pair(acc0, rp.add(i * 2 * Q4_0_BYTES), ap.add(i * 64), cp.add(i * 8), dp.add(i * 8));
            acc1 = $pair(acc1, rp.add((i + 1) * 2 * Q4_0_BYTES), ap.add((i + 1) * 64), cp.add((i + 1) * 8), dp.add((i + 1) * 8));
            i += 2;
        }
        if i < pairs {
            acc0 = $pair(acc0, rp.add(i * 2 * Q4_0_BYTES), ap.add(i * 64), cp.add(i * 8), dp.add(i * 8));
        }
    }
    let mut total = hsum256(_mm256_add_ps(acc0, acc1));
    if nb % 2 == 1 {
        let b = nb - 1;
        let s = q4_0_block(row, as_bytes(&act.qs), &act.sums, b);
        total += hsum256(_mm256_cvtepi32_ps(s)) * f16_to_f32(&row[b * Q4_0_BYTES..]) * act.d[b];
    }
    total
}

/// Q4_K row · activation (the plain activation: each 32-byte chunk's low nibbles are one
/// sub-block, its high nibbles the next).
#[target_feature(enable = $features)]
pub(super) fn $q4k(row: &[u8], act: &ActQ8) -> f32 {
    let nsb = row.len() / Q4_K_BYTES;
    assert!(row.len() == nsb * Q4_K_BYTES && act.qs.len() == nsb * QK_K && act.d.len() == nsb * 8 && act.sums.len() == nsb * 8);
    let a = as_bytes(&act.qs);
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut mins = _mm256_setzero_ps();
    let mut scales = [0f32; 8];
    for sb in 0..nsb {
        prefetch(row, sb * Q4_K_BYTES, Q4_K_BYTES);
        let blk = &row[sb * Q4_K_BYTES..(sb + 1) * Q4_K_BYTES];
        let (sc, mn) = q4k_scales(blk, 0);
        let da = &act.d[sb * 8..sb * 8 + 8];
        let sums = &act.sums[sb * 8..sb * 8 + 8];
        // SAFETY: `da` and `sums` are eight entries each.
        let (da, sums) = unsafe { (_mm256_loadu_ps(da.as_ptr()), _mm256_cvtepi32_ps(_mm256_loadu_si256(sums.as_ptr() as *const __m256i))) };
        let sv = _mm256_mul_ps(sc, da);
        // SAFETY: `scales` is eight f32.
        unsafe { _mm256_storeu_ps(scales.as_mut_ptr(), sv) };
        mins = _mm256_fmadd_ps(mn, _mm256_mul_ps(da, sums), mins);
        for j in 0..4 {
            let q = super::x86::load32(blk, 16 + 32 * j);
            let ab = sb * 8 + 2 * j;
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
            let plo = $dot(_mm256_setzero_si256(), lo, super::x86::load32(a, ab * QK));
            let phi = $dot(_mm256_setzero_si256(), hi, super::x86::load32(a, (ab + 1) * QK));
            acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(plo), _mm256_set1_ps(scales[2 * j]), acc[0]);
            acc[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(phi), _mm256_set1_ps(scales[2 * j + 1]), acc[1]);
        }
    }
    hsum256(_mm256_add_ps(acc[0], acc[1])) - hsum256(mins)
}

    };
}

kernels!("avx2,fma,f16c,avxvnni", dot_vnni, q4_0_pair_vnni, dot_q4_0_vnni, dot_q4k_vnni);
kernels!("avx2,fma,f16c", dot_avx2, q4_0_pair_avx2, dot_q4_0_avx2, dot_q4k_avx2);

/// The tiled Q4_0 prompt kernel for one instruction set (stamped for AVX-VNNI only: with AVX2's
/// `vpmaddubsw` + `vpmaddwd` it measured 0.97–1.18× the dequantized f32 product in
/// `bench_quant`'s prompt comparison, against 1.12–1.59× with AVX-VNNI).
macro_rules! tile_kernel {
    ($features:literal, $dot:ident, $tile:ident) => {
/// One Q4_0 row against `T` activations packed in pairs (prompts): each pair of blocks is
/// loaded and unpacked once for all `T` (sixteen registers hold no more than one row).
///
/// Panics unless every `Packed` was made for Q4_0 in pairs from its `ActQ8` and the lengths agree.
#[target_feature(enable = $features)]
pub(super) fn $tile<const T: usize>(row: &[u8], acts: [(&ActQ8, &Packed); T]) -> [f32; T] {
    let nb = check(row, Q4_0_BYTES, acts[0].0);
    let pairs = nb / 2;
    for (act, p) in acts {
        check(row, Q4_0_BYTES, act);
        assert!(p.group == 2 && p.qs.len() == pairs * 64 && p.corr.len() == pairs * 8 && p.dx.len() == pairs * 8);
    }
    let m4 = _mm256_set1_epi8(0x0F);
    let spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let mut acc = [_mm256_setzero_ps(); T];
    for i in 0..pairs {
        // SAFETY: the asserts above prove 36 weight bytes at `36i` and, in every packed
        // activation, 64 bytes and 8 corrections and scales for pair `i`.
        unsafe {
            let w = row.as_ptr().add(i * 2 * Q4_0_BYTES);
            let q = _mm256_loadu2_m128i(w.add(Q4_0_BYTES + 2) as *const __m128i, w.add(2) as *const __m128i);
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
            let d0 = std::ptr::read_unaligned(w as *const u16) as u32;
            let d1 = std::ptr::read_unaligned(w.add(Q4_0_BYTES) as *const u16) as u32;
            let dw = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128((d0 | (d1 << 16)) as i32))), spread);
            for (t, (_, p)) in acts.iter().enumerate() {
                let a = (p.qs.as_ptr() as *const u8).add(i * 64);
                let c = _mm256_loadu_si256(p.corr.as_ptr().add(i * 8) as *const __m256i);
                let s = $dot($dot(c, lo, _mm256_loadu_si256(a as *const __m256i)), hi, _mm256_loadu_si256(a.add(32) as *const __m256i));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_loadu_ps(p.dx.as_ptr().add(i * 8))), acc[t]);
            }
        }
    }
    let mut out = [0f32; T];
    for (t, (act, _)) in acts.iter().enumerate() {
        out[t] = hsum256(acc[t]);
        if nb % 2 == 1 {
            let b = nb - 1;
            let s = q4_0_block(row, as_bytes(&act.qs), &act.sums, b);
            out[t] += hsum256(_mm256_cvtepi32_ps(s)) * f16_to_f32(&row[b * Q4_0_BYTES..]) * act.d[b];
        }
    }
    out
}
    };
}

tile_kernel!("avx2,fma,f16c,avxvnni", dot_vnni, dot_q4_0_tile_vnni);
