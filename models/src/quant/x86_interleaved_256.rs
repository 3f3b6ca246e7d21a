//! 256-bit kernels over the row-interleaved layouts (`super::interleaved`), for CPUs without
//! AVX-512 VNNI: most Intel desktops (AVX2, and AVX-VNNI from Alder Lake on). The same designs as
//! the 512-bit ones in `x86_vnni`, half a block of rows per register:
//!
//! - Q4_0 octets: one register holds one block of two rows (16 bytes each, one per 128-bit lane),
//!   against the activation's halves and correction broadcast to both lanes; the octet's eight
//!   scales convert in one instruction and a lane permutation hands each row pair its two.
//! - Q4_K lanes: each 32-bit lane is one row, a step of eight weights is two loads (rows 0–7 and
//!   8–15) against four activation bytes broadcast by a load; a sub-block's scales and minimums
//!   are one 8-byte load widened per register.
//!
//! Stamped twice by [`kernels!`]: with AVX-VNNI (`vpdpbusd`) and with plain AVX2
//! (`vpmaddubsw` + `vpmaddwd`; nibbles are at most 15, so the 16-bit pair sums cannot
//! saturate). Callers must only call these after run-time detection of the features (see
//! `kernel::Kernel`).

use std::arch::x86_64::*;

use super::activation::ActQ8;
use super::format::QK_K;
use super::octets::{GROUP_BLOCKS, GROUP_BYTES, OCTET_ROWS};
use super::q4k_lanes::{MINS_AT, NIBBLES_AT, SCALES_AT, TILE_BYTES, TILE_ROWS};
use super::x86_avx_vnni::{dot_avx2, dot_vnni};
use super::x86_vnni::{prefetch_ahead, two_streams, StepInputs};

/// The two interleaved kernels for one instruction set: `$features` enabled, `$dot` the byte product.
macro_rules! kernels {
    ($features:literal, $dot:ident, $q4_0:ident, $q4_0_octets:ident, $q4k:ident) => {
/// `out[i]` = row `i` · activation for whole octets of Q4_0 rows in the octet layout
/// (`data` holds `out.len() / 8` octets of `act`'s length), two octets at a time as two
/// streams in step (`x86_vnni::two_streams`).
///
/// Panics unless the lengths agree.
#[target_feature(enable = $features)]
pub(super) fn $q4_0(data: &[u8], act: &ActQ8, out: &mut [f32]) {
    let groups = super::octets::kernel_inputs(data, act, out);
    let inputs = StepInputs { groups, qp: act.qs.as_ptr() as *const u8, sp: act.sums.as_ptr(), dp: act.d.as_ptr() };
    two_streams(
        data,
        groups * GROUP_BYTES,
        out,
        OCTET_ROWS,
        // SAFETY (both): `kernel_inputs` checked that each octet holds `groups` groups of
        // GROUP_BYTES, and the activation 32 bytes, a sum and a scale per block.
        |bases, ys| unsafe { $q4_0_octets::<2>(bases, &inputs, ys) },
        |base, y| unsafe { $q4_0_octets::<1>([base], &inputs, [y]) },
    );
}

/// `N` octets of the kernel above in step, group by group. Safety: each base holds `groups`
/// groups of GROUP_BYTES, and the activation 32 bytes, a sum and a scale per block.
#[inline]
#[target_feature(enable = $features)]
unsafe fn $q4_0_octets<const N: usize>(bases: [*const u8; N], x: &StepInputs, ys: [&mut [f32]; N]) {
    let m4 = _mm256_set1_epi8(0x0F);
    // Row pair `m`'s two scales over its four lanes each.
    let spread: [__m256i; 4] = std::array::from_fn(|m| {
        let (a, b) = (2 * m as i32, 2 * m as i32 + 1);
        _mm256_setr_epi32(a, a, a, a, b, b, b, b)
    });
    let (qp, sp, dp) = (x.qp, x.sp, x.dp);
    // One accumulator per row pair.
    let mut acc = [[_mm256_setzero_ps(); 4]; N];
    for g in 0..x.groups {
        for (base, acc) in bases.iter().zip(acc.iter_mut()) {
            // SAFETY: the caller's.
            unsafe {
                let gp = base.add(g * GROUP_BYTES);
                for l in 0..GROUP_BYTES / 64 {
                    prefetch_ahead(gp.wrapping_add(64 * l));
                }
                for k in 0..GROUP_BLOCKS {
                    let b = g * GROUP_BLOCKS + k;
                    let a_lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(qp.add(32 * b) as *const __m128i));
                    let a_hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(qp.add(32 * b + 16) as *const __m128i));
                    // `−8 · Σ a` in the first lane of each row's four (they are summed at the end).
                    let c = _mm256_broadcastsi128_si256(_mm_cvtsi32_si128(-8 * *sp.add(b)));
                    let scales = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(gp.add(16 * k) as *const __m128i)), _mm256_set1_ps(*dp.add(b)));
                    for (m, acc) in acc.iter_mut().enumerate() {
                        let q = _mm256_loadu_si256(gp.add(64 + 128 * k + 32 * m) as *const __m256i);
                        let s = $dot($dot(c, _mm256_and_si256(q, m4), a_lo), _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4), a_hi);
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_permutevar8x32_ps(scales, spread[m]), *acc);
                    }
                }
            }
        }
    }
    for (y, acc) in ys.into_iter().zip(acc) {
        for (m, acc) in acc.iter().enumerate() {
            let mut lanes = [0f32; 8];
            // SAFETY: `lanes` holds eight floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *acc) };
            y[2 * m] = lanes[..4].iter().sum();
            y[2 * m + 1] = lanes[4..].iter().sum();
        }
    }
}

/// `out[i]` = row `i` · activation for whole tiles of Q4_K rows in the row-lane layout (`data`
/// holds `out.len() / 16` tiles of `act`'s length).
///
/// Panics unless the lengths agree.
#[target_feature(enable = $features)]
pub(super) fn $q4k(data: &[u8], act: &ActQ8, out: &mut [f32]) {
    let nsb = super::q4k_lanes::kernel_inputs(data, act, out);
    let m4 = _mm256_set1_epi8(0x0F);
    let (qp, dp, sp) = (act.qs.as_ptr(), act.d.as_ptr(), act.sums.as_ptr());
    for (t, y) in out.chunks_exact_mut(TILE_ROWS).enumerate() {
        // Rows 0–7 and 8–15.
        let mut acc = [_mm256_setzero_ps(); 2];
        for sb in 0..nsb {
            // SAFETY: `kernel_inputs` checked that tile `t` holds `nsb` super-blocks of TILE_BYTES at
            // `base`, and the activation 256 values, 8 scales and 8 sums per super-block.
            unsafe {
                let base = data.as_ptr().add((t * nsb + sb) * TILE_BYTES);
                let (mut sums, mut mins) = ([_mm256_setzero_ps(); 2], [_mm256_setzero_ps(); 2]);
                for s in 0..8 {
                    for l in 0..5 {
                        prefetch_ahead(base.wrapping_add(296 * s + 64 * l));
                    }
                    let (mut lo, mut hi) = ([_mm256_setzero_si256(); 2], [_mm256_setzero_si256(); 2]);
                    for step in 4 * s..4 * s + 4 {
                        let a = qp.add(sb * QK_K + 8 * step) as *const i32;
                        let (a0, a1) = (_mm256_set1_epi32(a.read_unaligned()), _mm256_set1_epi32(a.add(1).read_unaligned()));
                        for h in 0..2 {
                            let q = _mm256_loadu_si256(base.add(NIBBLES_AT + 64 * step + 32 * h) as *const __m256i);
                            lo[h] = $dot(lo[h], _mm256_and_si256(q, m4), a0);
                            hi[h] = $dot(hi[h], _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4), a1);
                        }
                    }
                    for h in 0..2 {
                        let widen = |at: usize| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(base.add(at + 16 * s + 8 * h) as *const __m128i)));
                        let scale = _mm256_mul_ps(widen(SCALES_AT), _mm256_set1_ps(*dp.add(sb * 8 + s)));
                        sums[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(lo[h], hi[h])), scale, sums[h]);
                        mins[h] = _mm256_fmadd_ps(widen(MINS_AT), _mm256_set1_ps(*dp.add(sb * 8 + s) * *sp.add(sb * 8 + s) as f32), mins[h]);
                    }
                }
                for h in 0..2 {
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(base.add(16 * h) as *const __m128i));
                    let dmin = _mm256_cvtph_ps(_mm_loadu_si128(base.add(32 + 16 * h) as *const __m128i));
                    acc[h] = _mm256_fnmadd_ps(mins[h], dmin, _mm256_fmadd_ps(sums[h], d, acc[h]));
                }
            }
        }
        // SAFETY: `y` holds sixteen floats.
        unsafe {
            _mm256_storeu_ps(y.as_mut_ptr(), acc[0]);
            _mm256_storeu_ps(y.as_mut_ptr().add(8), acc[1]);
        }
    }
}
    };
}

kernels!("avx2,fma,f16c", dot_avx2, dot_q4_0_octets_avx2, q4_0_octets_avx2, dot_q4k_lanes_avx2);
kernels!("avx2,fma,f16c,avxvnni", dot_vnni, dot_q4_0_octets_vnni, q4_0_octets_vnni, dot_q4k_lanes_vnni);
