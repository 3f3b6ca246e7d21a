//! aarch64 NEON kernels (baseline NEON only: no dot-product extension needed).
//!
//! Each function checks its slice lengths first; the loads below rely on those checks.

use std::arch::aarch64::*;

use super::activation::ActQ8;
use super::format::{read_f16, Q4_0_BYTES, Q8_0_BYTES, QK};

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
