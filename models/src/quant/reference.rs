//! Portable scalar reference: quantize, dequantize and dot products for every format.
//!
//! The SIMD kernels must agree with these functions (see the tests in `kernel`).

use half::f16;

use super::activation::ActQ8;
use super::format::{q4k_pack_scales, q4k_scale_min, read_f16, QuantFormat, QK, QK_K};

/// Quantizes one row `x` into `out` (exactly `format.row_bytes(x.len())` bytes).
pub fn quantize_row(format: QuantFormat, x: &[f32], out: &mut [u8]) {
    if format == QuantFormat::F16 {
        // Round to nearest even, as `torch.Tensor.half()` does.
        for (o, v) in out.chunks_exact_mut(2).zip(x) {
            o.copy_from_slice(&f16::from_f32(*v).to_le_bytes());
        }
        return;
    }
    let bl = format.block_len();
    let bb = format.block_bytes();
    debug_assert_eq!(out.len(), x.len() / bl * bb);
    for (xb, ob) in x.chunks_exact(bl).zip(out.chunks_exact_mut(bb)) {
        match format {
            QuantFormat::Q8_0 => quantize_q8_0(xb, ob),
            QuantFormat::Q4_0 => quantize_q4_0(xb, ob),
            QuantFormat::Q4K => quantize_q4k(xb, ob),
            QuantFormat::F16 => unreachable!("handled above"),
        }
    }
}

fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
    for (o, v) in out[2..].iter_mut().zip(x) {
        *o = (v * id).round() as i8 as u8;
    }
}

fn quantize_q4_0(x: &[f32], out: &mut [u8]) {
    // The value of largest magnitude maps to -8 exactly, as ggml does.
    let mut amax = 0f32;
    let mut max = 0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
    let q = |v: f32| -> u8 { ((v * id + 8.5) as i32).clamp(0, 15) as u8 };
    for j in 0..QK / 2 {
        out[2 + j] = q(x[j]) | (q(x[j + QK / 2]) << 4);
    }
}

fn quantize_q4k(x: &[f32], out: &mut [u8]) {
    // Per 32-weight sub-block: w ≈ scale·q − min with q in 0..=15, scale and min ≥ 0,
    // both stored as 6-bit multiples of the super-block's f16 `d` and `dmin`.
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    for s in 0..8 {
        let sub = &x[s * 32..(s + 1) * 32];
        let lo = sub.iter().fold(f32::INFINITY, |m, &v| m.min(v)).min(0.0);
        let hi = sub.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        scales[s] = (hi - lo) / 15.0;
        mins[s] = -lo;
    }
    let max_scale = scales.iter().fold(0f32, |m, &v| m.max(v));
    let max_min = mins.iter().fold(0f32, |m, &v| m.max(v));
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    let (df, dminf) = (d.to_f32(), dmin.to_f32());
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for s in 0..8 {
        ls[s] = if df > 0.0 { (scales[s] / df).round().clamp(0.0, 63.0) as u8 } else { 0 };
        lm[s] = if dminf > 0.0 { (mins[s] / dminf).round().clamp(0.0, 63.0) as u8 } else { 0 };
        // A scale rounded to zero would lose the whole sub-block: keep at least one step.
        if ls[s] == 0 && scales[s] > 0.0 && df > 0.0 {
            ls[s] = 1;
        }
    }
    out[0..2].copy_from_slice(&d.to_bits().to_le_bytes());
    out[2..4].copy_from_slice(&dmin.to_bits().to_le_bytes());
    out[4..16].copy_from_slice(&q4k_pack_scales(&ls, &lm));
    let qs = &mut out[16..16 + QK_K / 2];
    qs.fill(0);
    for s in 0..8 {
        let sc = df * ls[s] as f32;
        let mn = dminf * lm[s] as f32;
        let inv = if sc > 0.0 { 1.0 / sc } else { 0.0 };
        for i in 0..32 {
            let q = ((x[s * 32 + i] + mn) * inv).round().clamp(0.0, 15.0) as u8;
            let byte = (s / 2) * 32 + i;
            qs[byte] |= if s % 2 == 0 { q } else { q << 4 };
        }
    }
}

/// Dequantizes one row of `format` bytes into `out`.
pub fn dequantize_row(format: QuantFormat, row: &[u8], out: &mut [f32]) {
    if format == QuantFormat::F16 {
        for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
            *o = read_f16(b);
        }
        return;
    }
    let bl = format.block_len();
    let bb = format.block_bytes();
    for (b, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(bl)) {
        match format {
            QuantFormat::Q8_0 => {
                let d = read_f16(b);
                for (o, &q) in o.iter_mut().zip(&b[2..]) {
                    *o = d * (q as i8) as f32;
                }
            }
            QuantFormat::Q4_0 => {
                let d = read_f16(b);
                for j in 0..QK / 2 {
                    o[j] = d * ((b[2 + j] & 0x0F) as i32 - 8) as f32;
                    o[j + QK / 2] = d * ((b[2 + j] >> 4) as i32 - 8) as f32;
                }
            }
            QuantFormat::Q4K => {
                let d = read_f16(b);
                let dmin = read_f16(&b[2..]);
                let qs = &b[16..];
                for s in 0..8 {
                    let (sc, m) = q4k_scale_min(s, &b[4..16]);
                    let (sc, m) = (d * sc as f32, dmin * m as f32);
                    for i in 0..32 {
                        let byte = qs[(s / 2) * 32 + i];
                        let q = if s % 2 == 0 { byte & 0x0F } else { byte >> 4 };
                        o[s * 32 + i] = sc * q as f32 - m;
                    }
                }
            }
            QuantFormat::F16 => unreachable!("handled above"),
        }
    }
}

/// Dot product of one weight row with an activation from [`crate::quant::Kernel::prepare`]
/// (scalar reference): quantized formats with the 8-bit activation, F16 with its f32 values.
pub fn dot_row(format: QuantFormat, row: &[u8], act: &ActQ8) -> f32 {
    let mut acc = 0f32;
    match format {
        QuantFormat::F16 => {
            assert_eq!(row.len(), 2 * act.float.len(), "an F16 row holds two bytes per activation value");
            for (b, x) in row.chunks_exact(2).zip(&act.float) {
                acc += read_f16(b) * x;
            }
        }
        QuantFormat::Q8_0 => {
            for (b, blk) in row.chunks_exact(format.block_bytes()).enumerate() {
                let a = &act.qs[b * QK..(b + 1) * QK];
                let s: i32 = blk[2..].iter().zip(a).map(|(&w, &x)| (w as i8) as i32 * x as i32).sum();
                acc += read_f16(blk) * act.d[b] * s as f32;
            }
        }
        QuantFormat::Q4_0 => {
            for (b, blk) in row.chunks_exact(format.block_bytes()).enumerate() {
                let a = &act.qs[b * QK..(b + 1) * QK];
                let mut s = 0i32;
                for j in 0..QK / 2 {
                    s += ((blk[2 + j] & 0x0F) as i32 - 8) * a[j] as i32;
                    s += ((blk[2 + j] >> 4) as i32 - 8) * a[j + QK / 2] as i32;
                }
                acc += read_f16(blk) * act.d[b] * s as f32;
            }
        }
        QuantFormat::Q4K => {
            for (sb, blk) in row.chunks_exact(format.block_bytes()).enumerate() {
                let d = read_f16(blk);
                let dmin = read_f16(&blk[2..]);
                let qs = &blk[16..];
                for s in 0..8 {
                    let ab = sb * 8 + s;
                    let a = &act.qs[ab * QK..(ab + 1) * QK];
                    let (sc, m) = q4k_scale_min(s, &blk[4..16]);
                    let mut isum = 0i32;
                    for i in 0..32 {
                        let byte = qs[(s / 2) * 32 + i];
                        let q = if s % 2 == 0 { byte & 0x0F } else { byte >> 4 };
                        isum += q as i32 * a[i] as i32;
                    }
                    acc += act.d[ab] * (d * sc as f32 * isum as f32 - dmin * m as f32 * act.sums[ab] as f32);
                }
            }
        }
    }
    acc
}
