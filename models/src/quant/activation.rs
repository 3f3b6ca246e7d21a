//! Activations quantized to 8 bits per 32-value block, the right-hand side of every quantized dot product.

use super::format::{QuantFormat, QK};

/// One activation vector quantized in blocks of 32: `x[i] ≈ d[i / 32] · qs[i]`.
///
/// Like ggml's Q8_0 (the scale is kept as f32 rather than f16) plus each block's sum of
/// `qs`, which the Q4_K kernels need for the sub-block minimums.
#[derive(Debug, Clone, Default)]
pub struct ActQ8 {
    /// One scale per block.
    pub d: Vec<f32>,
    /// The quantized values, `len()` a multiple of 32.
    pub qs: Vec<i8>,
    /// Sum of the block's `qs`.
    pub sums: Vec<i32>,
    /// The activation itself, unrounded, for F16 weights ([`ActQ8::keep_float`]); empty otherwise.
    pub float: Vec<f32>,
    /// The same values rearranged for the VNNI kernels of one weight format
    /// ([`ActQ8::pack_for`]); `None` for the other kernels.
    pub(crate) packed: Option<Packed>,
}

/// An activation laid out so that each register load lines up with the weight nibbles a
/// VNNI kernel unpacks from one load of weights, with per-lane scales and offset corrections.
///
/// - Q4_0, per group of `group` blocks (four for 512-bit registers, two for 256-bit): `qs` holds
///   the blocks' first halves (16 bytes each) then their second halves; `corr` four lanes per
///   block, the first = −8 · Σ qs of the block (the nibbles' offset), the others 0; `dx` four
///   lanes per block = its scale.
/// - Q4_K, per super-block (eight 32-value sub-blocks): `qs` four 64-byte registers holding
///   sub-blocks (0, 2), (1, 3), (4, 6), (5, 7); `dx` their scales per lane (4 × 16); `dsum` the
///   eight `d · Σ qs` in order (for the sub-block minimums).
// Only the x86-64 VNNI and AVX2 kernels read a packed layout.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    /// The weight format this layout serves.
    pub format: QuantFormat,
    /// Blocks per register step: Q4_0 groups of 4 (512-bit kernels) or 2 (256-bit); 1 otherwise.
    pub group: usize,
    /// Rearranged quantized values.
    pub qs: Vec<i8>,
    /// Integer corrections added to each register's sums.
    pub corr: Vec<i32>,
    /// Activation scales per 32-bit lane.
    pub dx: Vec<f32>,
    /// Q4_K: scale × sum per 32-value block.
    pub dsum: Vec<f32>,
}

/// Sub-blocks of a Q4_K super-block held by register `r` (lanes 0..8, then 8..16) after the
/// nibbles of one 64-byte load are split into low and high halves.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn q4k_register_blocks(r: usize) -> [usize; 2] {
    [4 * (r / 2) + r % 2, 4 * (r / 2) + 2 + r % 2]
}

impl ActQ8 {
    /// Quantizes `x` (length a multiple of 32; the caller checks).
    pub fn quantize(x: &[f32]) -> ActQ8 {
        let mut a = ActQ8::default();
        a.requantize(x);
        a
    }

    /// Keeps `x` in f32 (the activation of F16 weights, which are multiplied in full precision).
    pub fn keep_float(x: &[f32]) -> ActQ8 {
        ActQ8 { float: x.to_vec(), ..ActQ8::default() }
    }

    /// Quantizes `x` into this buffer, reusing its allocations.
    pub fn requantize(&mut self, x: &[f32]) {
        debug_assert!(x.len().is_multiple_of(QK));
        self.d.clear();
        self.sums.clear();
        self.float.clear();
        self.packed = None;
        self.qs.resize(x.len(), 0);
        self.d.reserve(x.len() / QK);
        self.sums.reserve(x.len() / QK);
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            // SAFETY: AVX2, FMA and F16C were detected just above.
            unsafe { super::x86::quantize_act_avx2(x, &mut self.qs, &mut self.d, &mut self.sums) };
            return;
        }
        self.quantize_blocks(x);
    }

    /// The portable quantizer (the reference for `x86::quantize_act_avx2`).
    fn quantize_blocks(&mut self, x: &[f32]) {
        for (chunk, qs) in x.chunks_exact(QK).zip(self.qs.chunks_exact_mut(QK)) {
            let mut lanes = [0f32; 8];
            for part in chunk.chunks_exact(8) {
                for (m, v) in lanes.iter_mut().zip(part) {
                    *m = m.max(v.abs());
                }
            }
            let amax = lanes.iter().fold(0f32, |m, &v| m.max(v));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, v) in qs.iter_mut().zip(chunk) {
                let r = (v * id).round().clamp(-127.0, 127.0) as i8;
                *q = r;
                sum += r as i32;
            }
            self.d.push(d);
            self.sums.push(sum);
        }
    }

    /// Adds the layout of a VNNI kernel for `format` (see [`Packed`]); `group` is the number of
    /// Q4_0 blocks per register (4 or 2). Only whole Q4_0 groups are packed; the kernels do the
    /// rest from the plain fields.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn pack_for(&mut self, format: QuantFormat, group: usize) {
        let nb = self.d.len();
        let group = if format == QuantFormat::Q4_0 { group.max(1) } else { 1 };
        let mut p = Packed { format, group, qs: Vec::new(), corr: Vec::new(), dx: Vec::new(), dsum: Vec::new() };
        match format {
            QuantFormat::Q4_0 => {
                let groups = nb / group;
                p.qs.reserve(groups * group * QK);
                p.corr.reserve(groups * group * 4);
                p.dx.reserve(groups * group * 4);
                for g in 0..groups {
                    for half in 0..2 {
                        for k in 0..group {
                            let at = (group * g + k) * QK + 16 * half;
                            p.qs.extend_from_slice(&self.qs[at..at + 16]);
                        }
                    }
                    for k in 0..group {
                        let b = group * g + k;
                        p.corr.extend_from_slice(&[-8 * self.sums[b], 0, 0, 0]);
                        p.dx.extend_from_slice(&[self.d[b]; 4]);
                    }
                }
            }
            // No VNNI kernel reads a packed Q8_0 activation (see `x86_vnni`); F16 products use
            // the float activation.
            QuantFormat::Q8_0 | QuantFormat::F16 => return,
            QuantFormat::Q4K => {
                let nsb = nb / 8;
                p.qs.reserve(nsb * 256);
                for sb in 0..nsb {
                    for r in 0..4 {
                        for j in q4k_register_blocks(r) {
                            let b = 8 * sb + j;
                            p.qs.extend_from_slice(&self.qs[b * QK..(b + 1) * QK]);
                            p.dx.extend_from_slice(&[self.d[b]; 8]);
                        }
                    }
                    for j in 0..8 {
                        let b = 8 * sb + j;
                        p.dsum.push(self.d[b] * self.sums[b] as f32);
                    }
                }
            }
        }
        self.packed = Some(p);
    }

    /// The packed layout when it was made for `format` with `group` Q4_0 blocks per register
    /// (any group for the other formats).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn packed_for(&self, format: QuantFormat, group: usize) -> Option<&Packed> {
        self.packed.as_ref().filter(|p| p.format == format && (format != QuantFormat::Q4_0 || p.group == group))
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.qs.len()
    }

    /// True when it holds no values.
    pub fn is_empty(&self) -> bool {
        self.qs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_build_quantizes_exactly_as_the_portable_one() {
        // Halves (ties round away from zero), values just below a half, NaN (ignored by the
        // maximum) and a zero block: the AVX2 build must give the same bytes, scales and sums.
        let mut x: Vec<f32> = (0..256).map(|i| ((i * 53 % 255) as f32 - 127.0) * 0.5).collect();
        // Block 0 with maximum 63.5: scale 0.5 exactly, so 0.25 and −1.25 land on ties (0.5, −2.5).
        x[..4].copy_from_slice(&[63.5, 0.25, -1.25, 0.499_999_97]);
        x[4..32].iter_mut().for_each(|v| *v = v.clamp(-63.0, 63.0));
        x[40] = f32::NAN;
        x[64..96].fill(0.0);
        let dispatched = ActQ8::quantize(&x);
        let mut portable = ActQ8 { qs: vec![0; x.len()], ..ActQ8::default() };
        portable.quantize_blocks(&x);
        assert_eq!(dispatched.d[0], 0.5);
        assert_eq!(&dispatched.qs[..4], &[127, 1, -3, 1]);
        assert_eq!(dispatched.qs, portable.qs);
        assert_eq!(dispatched.sums, portable.sums);
        assert_eq!(dispatched.d.iter().map(|d| d.to_bits()).collect::<Vec<_>>(), portable.d.iter().map(|d| d.to_bits()).collect::<Vec<_>>());

        // Random blocks over many magnitudes, with ties at exact scales, infinities, subnormals
        // (a scale whose inverse overflows) and negative zeros.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut x = Vec::new();
        for block in 0..400 {
            let magnitude = [1e-40f32, 1e-30, 1e-3, 1.0, 7.0, 1e6, 3e38][block % 7];
            for i in 0..32 {
                let r = next();
                let v = ((r >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * magnitude;
                x.push(match (block, i, r % 97) {
                    (_, 0, _) if block % 5 == 0 => 127.0 * 0.5, // scale 0.5: multiples of 0.25 tie
                    (_, _, 0) if block % 5 == 0 => ((r % 508) as f32 - 254.0) * 0.25,
                    (_, _, 1) if block % 11 == 0 => f32::INFINITY,
                    (_, _, 2) if block % 11 == 0 => f32::NEG_INFINITY,
                    (_, _, 3) => -0.0,
                    _ => v,
                });
            }
        }
        let dispatched = ActQ8::quantize(&x);
        let mut portable = ActQ8 { qs: vec![0; x.len()], ..ActQ8::default() };
        portable.quantize_blocks(&x);
        assert_eq!(dispatched.qs, portable.qs);
        assert_eq!(dispatched.sums, portable.sums);
        assert_eq!(dispatched.d.iter().map(|d| d.to_bits()).collect::<Vec<_>>(), portable.d.iter().map(|d| d.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn roundtrip_error_is_within_half_a_step() {
        let x: Vec<f32> = (0..96).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let a = ActQ8::quantize(&x);
        for (i, v) in x.iter().enumerate() {
            let back = a.d[i / QK] * a.qs[i] as f32;
            assert!((back - v).abs() <= a.d[i / QK] * 0.5 + 1e-6, "{i}: {v} vs {back}");
        }
        assert_eq!(a.sums[1], a.qs[32..64].iter().map(|&q| q as i32).sum::<i32>());
        let z = ActQ8::quantize(&[0.0; 32]);
        assert_eq!(z.d[0], 0.0);
        assert!(z.qs.iter().all(|&q| q == 0));
    }
}
