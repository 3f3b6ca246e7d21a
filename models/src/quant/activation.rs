//! Activations quantized to 8 bits per 32-value block, the right-hand side of every quantized dot product.

use super::format::QK;

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
}

impl ActQ8 {
    /// Quantizes `x` (length a multiple of 32; the caller checks).
    pub fn quantize(x: &[f32]) -> ActQ8 {
        let mut a = ActQ8::default();
        a.requantize(x);
        a
    }

    /// Quantizes `x` into this buffer, reusing its allocations.
    pub fn requantize(&mut self, x: &[f32]) {
        debug_assert!(x.len() % QK == 0);
        let nb = x.len() / QK;
        self.d.clear();
        self.sums.clear();
        self.qs.resize(x.len(), 0);
        for (b, chunk) in x.chunks_exact(QK).enumerate() {
            let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, v) in self.qs[b * QK..(b + 1) * QK].iter_mut().zip(chunk) {
                let r = (v * id).round().clamp(-127.0, 127.0) as i8;
                *q = r;
                sum += r as i32;
            }
            self.d.push(d);
            self.sums.push(sum);
        }
        debug_assert_eq!(self.d.len(), nb);
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
