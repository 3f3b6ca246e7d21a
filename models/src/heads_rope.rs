//! ChatGLM2/3 and GLM-4's fused `query_key_value` output split into heads, with RoPE on the
//! first half of every query and key head (interleaved pairs), in one CPU pass.
//!
//! candle's composition (narrow, reshape and transpose per part; a contiguous copy, the rotation
//! and a concatenation for the queries and again for the keys; a copy of the values), together with
//! the cache append, took 0.79 ms of a 1.3 B model's decode step here (timers in one run), in a
//! dozen small tensor operations. The pass computes each
//! rotated pair as candle's `rope_i` does (`x0·cos − x1·sin`, `x0·sin + x1·cos`), so the results
//! are the same to the bit. Only inference is fused (f32 on the CPU, no gradient).

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_storage::contiguous_f32;

/// The query, key and value heads of `qkv` `[b, n, (h + 2g)·d]` as one tensor `[b, h + 2g, n, d]`
/// (queries, then keys, then values), the first `d/2` values of each query and key head rotated
/// in pairs by `cos`, `sin` `[b, n, d/4]`. `Ok(None)` where the fused op does not apply.
pub fn try_fused(qkv: &Tensor, heads: usize, groups: usize, d: usize, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let fits = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && !t.track_op();
    if !(fits(qkv) && fits(cos) && fits(sin) && d.is_multiple_of(4)) {
        return Ok(None);
    }
    let op = HeadsRope { heads, groups, d };
    qkv.contiguous()?.apply_op3_no_bwd(&cos.contiguous()?, &sin.contiguous()?, &op).map(Some)
}

/// Values from which the positions are split over threads (a decode step's single one is not).
const PARALLEL_FROM: usize = 1 << 16;

struct HeadsRope {
    heads: usize,
    groups: usize,
    d: usize,
}

impl CustomOp3 for HeadsRope {
    fn name(&self) -> &'static str {
        "heads-rope"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let read = |what, s, l| contiguous_f32("heads-rope", what, s, l);
        let (x, cos, sin) = (read("qkv", s1, l1)?, read("cos", s2, l2)?, read("sin", s3, l3)?);
        let (h, g, d) = (self.heads, self.groups, self.d);
        let all = h + 2 * g;
        let &[b, n, width] = l1.dims() else {
            candle_core::bail!("heads-rope: qkv has shape {:?}, not [b, n, (h + 2g)·d]", l1.dims());
        };
        let pairs = d / 4;
        if width != all * d || l2.dims() != [b, n, pairs] || l3.dims() != [b, n, pairs] {
            candle_core::bail!("heads-rope: qkv {:?}, cos {:?}, sin {:?} do not fit {h} + 2·{g} heads of {d}", l1.dims(), l2.dims(), l3.dims());
        }
        // out[bi][head][pos][..]: each task writes one batch row's head (all its positions).
        let mut out = vec![0f32; b * all * n * d];
        let task = |(bh, o): (usize, &mut [f32])| {
            let (bi, head) = (bh / all, bh % all);
            for (pos, o) in o.chunks_mut(d).enumerate() {
                let row = bi * n + pos;
                let src = &x[row * width + head * d..row * width + (head + 1) * d];
                if head < h + g {
                    let (c, s) = (&cos[row * pairs..(row + 1) * pairs], &sin[row * pairs..(row + 1) * pairs]);
                    for i in 0..pairs {
                        let (x0, x1) = (src[2 * i], src[2 * i + 1]);
                        o[2 * i] = x0 * c[i] - x1 * s[i];
                        o[2 * i + 1] = x0 * s[i] + x1 * c[i];
                    }
                    o[2 * pairs..].copy_from_slice(&src[2 * pairs..]);
                } else {
                    o.copy_from_slice(src);
                }
            }
        };
        if out.len() >= PARALLEL_FROM {
            out.par_chunks_mut((n * d).max(1)).enumerate().for_each(task);
        } else {
            out.chunks_mut((n * d).max(1)).enumerate().for_each(task);
        }
        Ok((CpuStorage::F32(out), Shape::from((b, all, n, d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::rope_pairs;
    use candle_core::{Device, Var};

    /// The composition the op replaces: heads by narrow/reshape/transpose, RoPE on the first half.
    fn composed(qkv: &Tensor, h: usize, g: usize, d: usize, cos: &Tensor, sin: &Tensor) -> Tensor {
        let (b, n, _) = qkv.dims3().unwrap();
        let part = |start: usize, count: usize| qkv.narrow(2, start * d, count * d).unwrap().reshape((b, n, count, d)).unwrap().transpose(1, 2).unwrap();
        let rotate = |x: Tensor| {
            let rotated = rope_pairs(&x.narrow(3, 0, d / 2).unwrap(), cos, sin).unwrap();
            Tensor::cat(&[&rotated, &x.narrow(3, d / 2, d / 2).unwrap()], 3).unwrap()
        };
        Tensor::cat(&[&rotate(part(0, h)), &rotate(part(h, g)), &part(h + g, g).contiguous().unwrap()], 1).unwrap()
    }

    #[test]
    fn fused_equals_the_composition_to_the_bit() {
        // A decode step of ChatGLM3's shape, a prompt (parallel path), a batch of two.
        for (b, n, h, g, d) in [(1, 1, 32, 2, 128), (1, 40, 16, 2, 128), (2, 3, 4, 2, 8)] {
            let qkv = Tensor::randn(0f32, 1.0, (b, n, (h + 2 * g) * d), &Device::Cpu).unwrap();
            let angles = Tensor::randn(0f32, 3.0, (b, n, d / 4), &Device::Cpu).unwrap();
            let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
            let fused = try_fused(&qkv, h, g, d, &cos, &sin).unwrap().expect("f32 on the CPU is fused");
            let want = composed(&qkv, h, g, d, &cos, &sin);
            assert_eq!(fused.dims(), want.dims());
            let (a, w) = (fused.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            assert!(a == w, "b{b} n{n} h{h} g{g} d{d}");
        }
    }

    #[test]
    fn training_and_bad_shapes_are_not_fused() {
        let qkv = Tensor::randn(0f32, 1.0, (1, 2, 6 * 8), &Device::Cpu).unwrap();
        let angles = Tensor::zeros((1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let tracked = Var::from_tensor(&qkv).unwrap();
        assert!(try_fused(tracked.as_tensor(), 4, 1, 8, &angles, &angles).unwrap().is_none());
        assert!(try_fused(&qkv, 4, 1, 6, &angles, &angles).unwrap().is_none(), "d not a multiple of 4");
        assert!(try_fused(&qkv, 3, 1, 8, &angles, &angles).is_err(), "heads that do not fill the row");
    }
}
