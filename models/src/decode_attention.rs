//! Attention of one new token over the KV cache, fused on the CPU: the decode step's attention.
//!
//! candle's path (`layers::attention`: scale, matmul, softmax, matmul) costs a handful of
//! tensor allocations and two general matrix products per layer, and each matmul asks the
//! system for the number of CPUs by reading `/proc/cpuinfo`; profiled while decoding the 1.3 B
//! random model at 512–768 cached positions it took about 13% of the time per token, next to
//! 68% in the weight kernels. Here each key/value group is one task: the query heads that share
//! it meet each cached key and value row once, while the row is in L1, and nothing is allocated
//! but the scores. Only the inference case is fused — f32 on the CPU, one query position, no mask,
//! no gradient — everything else keeps candle's path.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::ops::Range;

/// `softmax(q·kᵀ · q_scale · score_scale) · v` for `q` `[b, h, 1, d]` and `k`, `v` `[b, g, t, d]`
/// (the cache views, any strides with contiguous rows); the query heads `r·(h/g) .. (r+1)·(h/g)`
/// share key/value head `r`. Returns `Ok(None)` where the fused op does not apply.
pub fn try_fused(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, q_scale: f64, score_scale: f64) -> candle_core::Result<Option<Tensor>> {
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && !t.track_op() && t.rank() == 4;
    if mask.is_some() || !(cpu_f32(q) && cpu_f32(k) && cpu_f32(v)) || q.dim(2)? != 1 {
        return Ok(None);
    }
    let op = DecodeAttention { q_scale: q_scale as f32, score_scale: score_scale as f32 };
    q.apply_op3_no_bwd(k, v, &op).map(Some)
}

/// Cached positions handled together: 32 key or value rows of 128 floats are 16 KiB, in L1
/// while the eight query heads of a ChatGLM3 group use them.
const POSITIONS_PER_BLOCK: usize = 32;

/// The fused op (see [`try_fused`]).
struct DecodeAttention {
    q_scale: f32,
    score_scale: f32,
}

/// A 4-D f32 tensor whose last dimension is contiguous.
struct View<'a> {
    data: &'a [f32],
    start: usize,
    dims: [usize; 4],
    strides: [usize; 4],
}

impl<'a> View<'a> {
    fn new(what: &str, s: &'a CpuStorage, l: &Layout) -> candle_core::Result<View<'a>> {
        let CpuStorage::F32(data) = s else {
            candle_core::bail!("decode attention: {what} is {:?}, not f32", s.dtype());
        };
        let (Ok(dims), Ok(strides)) = (<[usize; 4]>::try_from(l.dims()), <[usize; 4]>::try_from(l.stride())) else {
            candle_core::bail!("decode attention: {what} has shape {:?}, not 4-D", l.dims());
        };
        if strides[3] != 1 && dims[3] > 1 {
            candle_core::bail!("decode attention: the rows of {what} are not contiguous");
        }
        // The furthest element must lie inside the storage (every index below stays under it).
        let last = l.start_offset() + (0..4).map(|i| dims[i].saturating_sub(1) * strides[i]).sum::<usize>();
        if dims.iter().any(|&n| n == 0) || last >= data.len() {
            candle_core::bail!("decode attention: {what} has an empty or out-of-range layout");
        }
        Ok(View { data, start: l.start_offset(), dims, strides })
    }

    /// Row `[i, j, k, ..]`.
    fn row(&self, i: usize, j: usize, k: usize) -> &'a [f32] {
        let at = self.start + i * self.strides[0] + j * self.strides[1] + k * self.strides[2];
        &self.data[at..at + self.dims[3]]
    }
}

impl CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        "decode-attention"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (View::new("q", s1, l1)?, View::new("k", s2, l2)?, View::new("v", s3, l3)?);
        let [b, h, n, d] = q.dims;
        let [kb, g, t, kd] = k.dims;
        if n != 1 || kb != b || kd != d || v.dims != k.dims || g == 0 || h % g != 0 {
            candle_core::bail!("decode attention: q {:?}, k {:?}, v {:?} do not fit", q.dims, k.dims, v.dims);
        }
        let rep = h / g;
        let simd = Simd::detect();
        let mut out = vec![0f32; b * h * d];
        out.par_chunks_mut(rep * d).enumerate().for_each(|(bg, o)| {
            let (bi, gi) = (bg / g, bg % g);
            let qs: Vec<f32> = (0..rep).flat_map(|r| q.row(bi, gi * rep + r, 0).iter().map(|x| x * self.q_scale)).collect();
            let mut scores = vec![0f32; rep * t];
            // Blocks of positions, so that the heads of a group find a block's rows in L1.
            for t0 in (0..t).step_by(POSITIONS_PER_BLOCK) {
                let span = t0..(t0 + POSITIONS_PER_BLOCK).min(t);
                for (qr, sr) in qs.chunks(d).zip(scores.chunks_mut(t)) {
                    simd.scores(qr, &k, bi, gi, span.clone(), sr);
                }
            }
            for sr in scores.chunks_mut(t) {
                sr.iter_mut().for_each(|s| *s *= self.score_scale);
                simd.softmax(sr);
            }
            for t0 in (0..t).step_by(POSITIONS_PER_BLOCK) {
                let span = t0..(t0 + POSITIONS_PER_BLOCK).min(t);
                for (sr, or) in scores.chunks(t).zip(o.chunks_mut(d)) {
                    simd.add_weighted_rows(&sr[span.clone()], &v, bi, gi, span.start, or);
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, h, 1, d))))
    }
}

fn softmax_in_place(s: &mut [f32]) {
    let max = s.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut sum = 0f32;
    for x in s.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in s.iter_mut() {
        *x *= inv;
    }
}

/// The vector instructions the dot products may use (detected once per op).
#[derive(Clone, Copy)]
enum Simd {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Simd {
    fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Simd::Avx2Fma;
        }
        Simd::Portable
    }

    /// `s = softmax(s)`.
    fn softmax(self, s: &mut [f32]) {
        match self {
            Simd::Portable => softmax_in_place(s),
            // SAFETY: `Simd::Avx2Fma` is only made after AVX2 and FMA were detected.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2Fma => unsafe { x86::softmax(s) },
        }
    }

    /// `scores[t] = q · k[bi, gi, t]` for the positions `t` of `span`.
    fn scores(self, q: &[f32], k: &View, bi: usize, gi: usize, span: Range<usize>, scores: &mut [f32]) {
        match self {
            Simd::Portable => {
                for t in span {
                    scores[t] = q.iter().zip(k.row(bi, gi, t)).map(|(x, y)| x * y).sum();
                }
            }
            // SAFETY: `Simd::Avx2Fma` is only made after AVX2 and FMA were detected.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2Fma => unsafe { x86::scores(q, k, bi, gi, span, scores) },
        }
    }

    /// `out += Σ_j p[j] · v[bi, gi, first + j]`.
    fn add_weighted_rows(self, p: &[f32], v: &View, bi: usize, gi: usize, first: usize, out: &mut [f32]) {
        match self {
            Simd::Portable => {
                for (j, &w) in p.iter().enumerate() {
                    out.iter_mut().zip(v.row(bi, gi, first + j)).for_each(|(o, x)| *o += w * x);
                }
            }
            // SAFETY: as in `scores`.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2Fma => unsafe { x86::add_weighted_rows(p, v, bi, gi, first, out) },
        }
    }
}

/// AVX2 + FMA loops. Four key rows share each load of the query; the weighted sum keeps 64
/// output values in eight registers over every position (a first version that added each row
/// into the output in memory ran five times slower: every step reloaded what the last stored).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::View;
    use std::ops::Range;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    /// `e^x` for eight lanes: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-6 polynomial for
    /// `e^r` (Cephes' `expf` coefficients, within 2 ulp of `f32::exp` here), `2^n` built in the
    /// exponent bits. Inputs are clamped to [−87.33, 88.37] (the result stays finite and normal);
    /// a NaN stays NaN.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(_mm256_set1_ps(88.37), _mm256_max_ps(_mm256_set1_ps(-87.33), x));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_2e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0)));
        let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127))));
        _mm256_mul_ps(p, pow2)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn softmax(s: &mut [f32]) {
        let body = s.len() / 8 * 8;
        let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
        for c in s[..body].chunks_exact(8) {
            // SAFETY: `c` is eight floats.
            m = _mm256_max_ps(m, unsafe { _mm256_loadu_ps(c.as_ptr()) });
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` is eight floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
        let max = lanes.iter().chain(&s[body..]).fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut sum = _mm256_setzero_ps();
        let vmax = _mm256_set1_ps(max);
        for c in s[..body].chunks_exact_mut(8) {
            // SAFETY: `c` is eight floats.
            unsafe {
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), vmax));
                _mm256_storeu_ps(c.as_mut_ptr(), e);
                sum = _mm256_add_ps(sum, e);
            }
        }
        let mut total = hsum(sum);
        for x in s[body..].iter_mut() {
            *x = (*x - max).exp();
            total += *x;
        }
        let inv = 1.0 / total;
        for x in s.iter_mut() {
            *x *= inv;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn scores(q: &[f32], k: &View, bi: usize, gi: usize, span: Range<usize>, scores: &mut [f32]) {
        let d = q.len();
        let body = d / 8 * 8;
        let mut t = span.start;
        while t + 4 <= span.end {
            let rows = [k.row(bi, gi, t), k.row(bi, gi, t + 1), k.row(bi, gi, t + 2), k.row(bi, gi, t + 3)];
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            // SAFETY: `q` and every row hold `d` floats (`View::row`), and `i + 8 <= body <= d`.
            unsafe {
                while i < body {
                    let x = _mm256_loadu_ps(q.as_ptr().add(i));
                    for (a, row) in acc.iter_mut().zip(&rows) {
                        *a = _mm256_fmadd_ps(x, _mm256_loadu_ps(row.as_ptr().add(i)), *a);
                    }
                    i += 8;
                }
            }
            for (j, (a, row)) in acc.iter().zip(&rows).enumerate() {
                scores[t + j] = hsum(*a) + (body..d).map(|i| q[i] * row[i]).sum::<f32>();
            }
            t += 4;
        }
        for j in t..span.end {
            scores[j] = q.iter().zip(k.row(bi, gi, j)).map(|(x, y)| x * y).sum();
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn add_weighted_rows(p: &[f32], v: &View, bi: usize, gi: usize, first: usize, out: &mut [f32]) {
        let d = out.len();
        let mut c = 0;
        while c + 64 <= d {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (t, &w) in p.iter().enumerate() {
                let row = &v.row(bi, gi, first + t)[c..c + 64];
                let w = _mm256_set1_ps(w);
                for (j, a) in acc.iter_mut().enumerate() {
                    // SAFETY: `row` holds 64 floats and `8j + 8 <= 64`.
                    *a = _mm256_fmadd_ps(w, unsafe { _mm256_loadu_ps(row.as_ptr().add(8 * j)) }, *a);
                }
            }
            for (j, a) in acc.iter().enumerate() {
                // SAFETY: `c + 64 <= d = out.len()`.
                unsafe {
                    let o = out.as_mut_ptr().add(c + 8 * j);
                    _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), *a));
                }
            }
            c += 64;
        }
        while c + 8 <= d {
            let mut acc = _mm256_setzero_ps();
            for (t, &w) in p.iter().enumerate() {
                // SAFETY: every row holds `d` floats and `c + 8 <= d`.
                acc = _mm256_fmadd_ps(_mm256_set1_ps(w), unsafe { _mm256_loadu_ps(v.row(bi, gi, first + t).as_ptr().add(c)) }, acc);
            }
            // SAFETY: `c + 8 <= d = out.len()`.
            unsafe {
                let o = out.as_mut_ptr().add(c);
                _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), acc));
            }
            c += 8;
        }
        for (i, o) in out.iter_mut().enumerate().skip(c) {
            *o += p.iter().enumerate().map(|(t, &w)| w * v.row(bi, gi, first + t)[i]).sum::<f32>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn sample(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    #[test]
    fn fused_equals_candles_composition_over_cache_views() {
        // (batch, query heads, key/value heads, head dim, cached positions): grouped heads (ChatGLM3),
        // one head per group (ChatGLM-6B), odd sizes that leave SIMD tails.
        for (b, h, g, d, t) in [(1, 16, 2, 128, 300), (2, 4, 4, 8, 1), (2, 6, 3, 19, 7), (1, 8, 1, 40, 33)] {
            // Keys/values as the cache holds them: views of the first `t` of 64 more positions.
            let kbuf = sample((b, g, t + 64, d), 1);
            let vbuf = sample((b, g, t + 64, d), 2);
            let (k, v) = (kbuf.narrow(2, 0, t).unwrap(), vbuf.narrow(2, 0, t).unwrap());
            assert_eq!(k.is_contiguous(), b * g == 1, "only a single group's view is contiguous");
            let q = sample((b, h, 1, d), 3);
            let (qs, ss) = (1.0 / (d as f64).sqrt() / 3.0, 3.0);
            let fused = try_fused(&q, &k, &v, None, qs, ss).unwrap().expect("the fused op applies");
            let composed = crate::layers::attention_composed(&q, &k, &v, None, qs, ss).unwrap();
            assert_eq!(fused.dims(), composed.dims());
            let diff = max_diff(&fused, &composed);
            assert!(diff < 1e-5, "b{b} h{h} g{g} d{d} t{t}: {diff}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_vector_exp_is_within_two_ulp_of_the_library_exp() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        use std::arch::x86_64::*;
        let mut worst = 0f32;
        for i in 0..200_000 {
            let x = -87.0 + i as f32 * (87.0 + 10.0) / 200_000.0;
            let mut out = [0f32; 8];
            // SAFETY: AVX2 and FMA were detected above; `out` is eight floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), x86::exp8(_mm256_set1_ps(x))) };
            let want = x.exp();
            worst = worst.max(((out[0] - want) / want).abs());
        }
        assert!(worst <= 2.0 * f32::EPSILON, "relative error {worst}");
        let mut special = [0f32; 8];
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(special.as_mut_ptr(), x86::exp8(_mm256_setr_ps(f32::NAN, -1e9, 0.0, 1e9, -87.33, 88.0, 1.0, -1.0))) };
        assert!(special[0].is_nan() && special[1] > 0.0 && special[1] < 1e-37 && special[2] == 1.0 && special[3].is_finite());
    }

    #[test]
    fn only_the_inference_decode_case_is_fused() {
        let (q, k, v) = (sample((1, 2, 1, 8), 4), sample((1, 2, 5, 8), 5), sample((1, 2, 5, 8), 6));
        assert!(try_fused(&q, &k, &v, None, 1.0, 1.0).unwrap().is_some());
        let mask = Tensor::zeros((1, 1, 1, 5), DType::F32, &Device::Cpu).unwrap();
        assert!(try_fused(&q, &k, &v, Some(&mask), 1.0, 1.0).unwrap().is_none());
        let two = sample((1, 2, 2, 8), 7);
        assert!(try_fused(&two, &k, &v, None, 1.0, 1.0).unwrap().is_none());
        let tracked = Var::from_tensor(&q).unwrap();
        assert!(try_fused(tracked.as_tensor(), &k, &v, None, 1.0, 1.0).unwrap().is_none());
        let half = q.to_dtype(DType::F16).unwrap();
        assert!(try_fused(&half, &k.to_dtype(DType::F16).unwrap(), &v.to_dtype(DType::F16).unwrap(), None, 1.0, 1.0).unwrap().is_none());
        // Shapes that do not fit are errors, not wrong answers.
        let three = sample((1, 3, 1, 8), 8);
        assert!(try_fused(&three, &k, &v, None, 1.0, 1.0).is_err());
    }
}
