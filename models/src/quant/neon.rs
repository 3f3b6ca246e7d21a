//! aarch64 NEON kernels (baseline NEON only: no dot-product extension needed).
//!
//! Each function checks its slice lengths first; the loads below rely on those checks. They are
//! tested under qemu-user (`scripts/test-aarch64.sh`), which checks results, not speed.

use std::arch::aarch64::*;

use super::activation::ActQ8;
use super::format::{q4k_scale_min, read_f16, Q4_0_BYTES, Q4_K_BYTES, Q8_0_BYTES, QK, QK_K};

fn check(row: &[u8], block_bytes: usize, act: &ActQ8) -> usize {
    let nb = row.len() / block_bytes;
    assert!(row.len() == nb * block_bytes && act.qs.len() == nb * QK && act.d.len() == nb && act.sums.len() == nb);
    nb
}

/// Σ of products of sixteen signed bytes, widened.
#[target_feature(enable = "neon")]
fn dot16(w: int8x16_t, a: int8x16_t, acc: int32x4_t) -> int32x4_t {
    let acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w), vget_low_s8(a)));
    vpadalq_s16(acc, vmull_high_s8(w, a))
}

/// Loads 16 signed bytes at `p[at..at + 16]`.
#[target_feature(enable = "neon")]
fn load_s8(p: &[i8], at: usize) -> int8x16_t {
    assert!(at + 16 <= p.len());
    // SAFETY: the assert above keeps the 16-byte load inside `p`.
    unsafe { vld1q_s8(p.as_ptr().add(at)) }
}

/// Loads 16 bytes at `p[at..at + 16]`.
#[target_feature(enable = "neon")]
fn load_u8(p: &[u8], at: usize) -> uint8x16_t {
    assert!(at + 16 <= p.len());
    // SAFETY: the assert above keeps the 16-byte load inside `p`.
    unsafe { vld1q_u8(p.as_ptr().add(at)) }
}

/// Q8_0 row · activation with NEON.
#[target_feature(enable = "neon")]
pub(super) fn dot_q8_0_neon(row: &[u8], act: &ActQ8) -> f32 {
    let nb = check(row, Q8_0_BYTES, act);
    let mut total = 0f32;
    for b in 0..nb {
        let off = b * Q8_0_BYTES + 2;
        let w0 = vreinterpretq_s8_u8(load_u8(row, off));
        let w1 = vreinterpretq_s8_u8(load_u8(row, off + 16));
        let s = dot16(w0, load_s8(&act.qs, b * QK), vdupq_n_s32(0));
        let s = dot16(w1, load_s8(&act.qs, b * QK + 16), s);
        total += read_f16(&row[b * Q8_0_BYTES..]) * act.d[b] * vaddvq_s32(s) as f32;
    }
    total
}

/// Q4_0 row · activation with NEON.
#[target_feature(enable = "neon")]
pub(super) fn dot_q4_0_neon(row: &[u8], act: &ActQ8) -> f32 {
    let nb = check(row, Q4_0_BYTES, act);
    let m4 = vdupq_n_u8(0x0F);
    let eight = vdupq_n_s8(8);
    let mut total = 0f32;
    for b in 0..nb {
        let q = load_u8(row, b * Q4_0_BYTES + 2);
        let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), eight);
        let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)), eight);
        let s = dot16(lo, load_s8(&act.qs, b * QK), vdupq_n_s32(0));
        let s = dot16(hi, load_s8(&act.qs, b * QK + 16), s);
        total += read_f16(&row[b * Q4_0_BYTES..]) * act.d[b] * vaddvq_s32(s) as f32;
    }
    total
}

/// Q4_K row · activation with NEON: per super-block, the eight sub-blocks' integer sums come
/// from one 32-byte load of nibbles per pair of sub-blocks (low nibbles: the even sub-block, high:
/// the odd one); scales and minimums are applied to those sums as the reference does.
#[target_feature(enable = "neon")]
pub(super) fn dot_q4k_neon(row: &[u8], act: &ActQ8) -> f32 {
    let nsb = row.len() / Q4_K_BYTES;
    assert!(row.len() == nsb * Q4_K_BYTES && act.qs.len() == nsb * QK_K && act.d.len() == nsb * 8 && act.sums.len() == nsb * 8);
    let m4 = vdupq_n_u8(0x0F);
    let mut total = 0f32;
    for sb in 0..nsb {
        let blk = &row[sb * Q4_K_BYTES..(sb + 1) * Q4_K_BYTES];
        let (d, dmin) = (read_f16(blk), read_f16(&blk[2..]));
        let mut isum = [0i32; 8];
        for pair in 0..4 {
            let q0 = load_u8(blk, 16 + 32 * pair);
            let q1 = load_u8(blk, 16 + 32 * pair + 16);
            let a = (sb * 8 + 2 * pair) * QK;
            let lo = dot16(vreinterpretq_s8_u8(vandq_u8(q0, m4)), load_s8(&act.qs, a), vdupq_n_s32(0));
            let lo = dot16(vreinterpretq_s8_u8(vandq_u8(q1, m4)), load_s8(&act.qs, a + 16), lo);
            let hi = dot16(vreinterpretq_s8_u8(vshrq_n_u8::<4>(q0)), load_s8(&act.qs, a + QK), vdupq_n_s32(0));
            let hi = dot16(vreinterpretq_s8_u8(vshrq_n_u8::<4>(q1)), load_s8(&act.qs, a + QK + 16), hi);
            isum[2 * pair] = vaddvq_s32(lo);
            isum[2 * pair + 1] = vaddvq_s32(hi);
        }
        for (s, &is) in isum.iter().enumerate() {
            let ab = sb * 8 + s;
            let (sc, m) = q4k_scale_min(s, &blk[4..16]);
            total += act.d[ab] * (d * sc as f32 * is as f32 - dmin * m as f32 * act.sums[ab] as f32);
        }
    }
    total
}

/// Eight little-endian f16 values at `row[at..at + 16]` widened to f32, exactly (subnormals,
/// infinities and NaNs included), without the half-precision extension: each half's exponent
/// and mantissa are shifted into an f32's place, which reads as the value times 2^-112, then
/// multiplied by 2^112; infinities and NaNs get the all-ones exponent instead.
#[target_feature(enable = "neon")]
fn widen8(row: &[u8], at: usize) -> [float32x4_t; 2] {
    let h = vreinterpretq_u16_u8(load_u8(row, at));
    let magnitude = vandq_u16(h, vdupq_n_u16(0x7FFF));
    let sign = vandq_u16(h, vdupq_n_u16(0x8000));
    let widen = |m: uint16x4_t, s: uint16x4_t| {
        let m = vmovl_u16(m);
        let bits = vshlq_n_u32::<13>(m);
        let finite = vreinterpretq_u32_f32(vmulq_f32(vreinterpretq_f32_u32(bits), vdupq_n_f32(f32::from_bits(0x7780_0000))));
        let special = vorrq_u32(bits, vdupq_n_u32(0x7F80_0000));
        let v = vbslq_u32(vcgeq_u32(m, vdupq_n_u32(0x7C00)), special, finite);
        vreinterpretq_f32_u32(vorrq_u32(v, vshlq_n_u32::<16>(vmovl_u16(s))))
    };
    [widen(vget_low_u16(magnitude), vget_low_u16(sign)), widen(vget_high_u16(magnitude), vget_high_u16(sign))]
}

/// `row` (little-endian f16, two bytes a value) · `x`, widened by [`widen8`] and multiplied in
/// four independent f32 sums.
#[target_feature(enable = "neon")]
pub(super) fn dot_f16_neon(row: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    assert_eq!(row.len(), 2 * n, "an F16 row holds two bytes per activation value");
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for half in 0..2 {
            let at = i + 8 * half;
            let [w0, w1] = widen8(row, 2 * at);
            acc[2 * half] = vfmaq_f32(acc[2 * half], w0, load_f32(x, at));
            acc[2 * half + 1] = vfmaq_f32(acc[2 * half + 1], w1, load_f32(x, at + 4));
        }
        i += 16;
    }
    let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
    for j in i..n {
        s += read_f16(&row[2 * j..]) * x[j];
    }
    s
}

/// Widens a row of little-endian f16 values into `out` (the prompt path's dequantization).
#[target_feature(enable = "neon")]
pub(super) fn widen_f16_neon(row: &[u8], out: &mut [f32]) {
    let n = out.len();
    assert_eq!(row.len(), 2 * n, "an F16 row holds two bytes per value");
    let mut i = 0;
    while i + 8 <= n {
        let [w0, w1] = widen8(row, 2 * i);
        let dst = &mut out[i..i + 8];
        // SAFETY: `dst` holds eight values, the two four-value stores' span.
        unsafe {
            vst1q_f32(dst.as_mut_ptr(), w0);
            vst1q_f32(dst.as_mut_ptr().add(4), w1);
        }
        i += 8;
    }
    for j in i..n {
        out[j] = read_f16(&row[2 * j..]);
    }
}

/// Loads four f32 at `p[at..at + 4]`.
#[target_feature(enable = "neon")]
fn load_f32(p: &[f32], at: usize) -> float32x4_t {
    assert!(at + 4 <= p.len());
    // SAFETY: the assert above keeps the load inside `p`.
    unsafe { vld1q_f32(p.as_ptr().add(at)) }
}
