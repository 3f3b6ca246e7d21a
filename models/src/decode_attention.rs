//! Attention of one new token over the KV cache, fused on the CPU: the decode step's attention.
//!
//! candle's path (`layers::attention`: scale, matmul, softmax, matmul) costs a handful of
//! tensor allocations and two general matrix products per layer, and each matmul asks the
//! system for the number of CPUs by reading `/proc/cpuinfo`; profiled while decoding the 1.3 B
//! random model at 512–768 cached positions it took about 13% of the time per token, next to
//! 68% in the weight kernels.
//!
//! Here the work is split into tasks of (key/value group, span of cached positions), about four
//! per thread: ChatGLM3 and GLM-4 have only two groups, so one task per group left all but two
//! cores idle. Each task keeps, per query head, its largest score, the sum of its exponentials
//! and the unnormalized weighted values; the spans are merged by rescaling each to the overall
//! maximum (the split-softmax of flash decoding). Within a span the heads that share a group meet
//! each key and value row while it is in L1, in register tiles where the CPU has AVX-512
//! (`avx512`) or AVX2 (`avx2`, scores only). An f16 cache is widened a block at a time (`view`).
//! Only the inference case is fused — on the CPU, f32 queries, f32 or f16 keys and values, one
//! query position, no mask, no gradient — everything else keeps candle's path. `bench_attention`
//! measures it.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::ops::Range;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod view;

use view::{Cached, View};

/// `softmax(q·kᵀ · q_scale · score_scale) · v` for `q` `[b, h, 1, d]` and `k`, `v` `[b, g, t, d]`
/// (the cache views, f32 or f16, any strides with contiguous rows); the query heads `r·(h/g) .. (r+1)·(h/g)`
/// share key/value head `r`. Returns `Ok(None)` where the fused op does not apply.
pub fn try_fused(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, q_scale: f64, score_scale: f64) -> candle_core::Result<Option<Tensor>> {
    let cpu = |t: &Tensor, dtypes: &[DType]| t.device().is_cpu() && dtypes.contains(&t.dtype()) && !t.track_op() && t.rank() == 4;
    let cached = [DType::F32, DType::F16];
    if mask.is_some() || !(cpu(q, &[DType::F32]) && cpu(k, &cached) && cpu(v, &cached)) || q.dim(2)? != 1 {
        return Ok(None);
    }
    let op = DecodeAttention { q_scale: q_scale as f32, score_scale: score_scale as f32, simd: Simd::detect() };
    q.apply_op3_no_bwd(k, v, &op).map(Some)
}

/// Cached positions handled together: 32 key or value rows of 128 floats are 16 KiB, in L1
/// while the eight query heads of a ChatGLM3 group use them.
const POSITIONS_PER_BLOCK: usize = 32;

/// Fewest positions a task takes.
const MIN_SPAN: usize = 64;

/// Rows ahead of the one being read that the kernels ask the memory system for. `bench_attention`
/// with 16 heads at 640 / 2048 / 8192 positions, AVX-512 tiles: 14.8 / 15.9 / 11.2 GB/s without
/// it (probe 26.1 GB/s), 18.6 / 21.3 / 14.7 GB/s with it (probe 28.9 GB/s).
#[cfg(target_arch = "x86_64")]
const PREFETCH_ROWS: usize = 16;

/// Values ahead of the one being widened (an f16 cache) that the x86 kernels ask the memory
/// system for: as far ahead as [`PREFETCH_ROWS`] rows of 128.
#[cfg(target_arch = "x86_64")]
const WIDEN_AHEAD: usize = PREFETCH_ROWS * 128;

/// Prefetches rows `t + PREFETCH_ROWS ..` of `x`, `rows` of them, one hint per cache line, where
/// the view's rows come from memory (not for a block already widened into L1). A prefetch never
/// faults, so rows past the view are harmless.
#[cfg(target_arch = "x86_64")]
fn prefetch_rows<T>(x: &View<T>, bi: usize, gi: usize, t: usize, rows: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    if !x.streamed {
        return;
    }
    let (d, stride) = (x.dims[3], x.strides[2]);
    let base = x.row(bi, gi, t).as_ptr();
    let per_line = 64 / std::mem::size_of::<T>();
    for r in PREFETCH_ROWS..PREFETCH_ROWS + rows {
        for line in (0..d).step_by(per_line) {
            // SAFETY: SSE is part of every x86-64 CPU, and a prefetch is a hint: the address is
            // only computed (wrapping), never read.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(r * stride + line) as *const i8) };
        }
    }
}

/// Runs a register-tile scores kernel over as much of `block` as its tiles fill and the one-head
/// AVX2 kernel over the rest: `tile(r0, t0, sums)` must write the `heads × positions` scores of
/// heads `r0..` at positions `t0..` into `sums`, row-major by head. It is called only with
/// `r0 + heads ≤ rep`, positions `t0 .. t0 + positions` inside `block`, and a head dimension that
/// is a multiple of `lanes`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn tiled_scores(
    qs: &[f32],
    k: &View,
    (bi, gi): (usize, usize),
    block: Range<usize>,
    scores: &mut [f32],
    (n, first): (usize, usize),
    (heads, positions, lanes): (usize, usize, usize),
    mut tile: impl FnMut(usize, usize, &mut [f32]),
) {
    let d = k.dims[3];
    let rep = qs.len() / d;
    assert!(qs.len() == rep * d && scores.len() >= rep * n && block.start >= first && block.end - first <= n);
    assert!(heads * positions <= 16 && heads > 0 && positions > 0);
    let mut sums = [0f32; 16];
    let sums = &mut sums[..heads * positions];
    let (mut r0, mut t_end) = (0, block.start);
    if d.is_multiple_of(lanes) {
        t_end = block.start + (block.end - block.start) / positions * positions;
        while r0 + heads <= rep {
            for t0 in (block.start..t_end).step_by(positions) {
                if r0 == 0 {
                    prefetch_rows(k, bi, gi, t0, positions);
                }
                tile(r0, t0, sums);
                for (r, s) in sums.chunks(positions).enumerate() {
                    let at = (r0 + r) * n + t0 - first;
                    copy_short(&mut scores[at..at + positions], s);
                }
            }
            r0 += heads;
        }
    }
    // The heads left over (all positions) and the last positions of the tiled heads.
    for r in 0..rep {
        let span = if r < r0 { t_end..block.end } else { block.clone() };
        if !span.is_empty() {
            let at = r * n + span.start - first;
            x86::scores(&qs[r * d..(r + 1) * d], k, bi, gi, span.clone(), &mut scores[at..at + span.len()]);
        }
    }
}

/// `dst = src` for the rows of a score tile: the lengths the kernels use are copied as fixed
/// arrays, which compile to a register move; a slice copy of unknown length calls `memmove`,
/// four calls a tile (`memmove` was 3.7% of `bench_attention`'s samples in L3, most of it
/// likely these copies).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32]) {
        <&mut [f32; N]>::try_from(dst).expect("equal lengths").copy_from_slice(<&[f32; N]>::try_from(src).expect("equal lengths"));
    }
    match src.len() {
        4 => fixed::<4>(dst, src),
        8 => fixed::<8>(dst, src),
        16 => fixed::<16>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// The fused op (see [`try_fused`]).
struct DecodeAttention {
    q_scale: f32,
    score_scale: f32,
    simd: Simd,
}

impl CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        "decode-attention"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(q) = s1 else {
            candle_core::bail!("decode attention: q is {:?}, not f32", s1.dtype());
        };
        let (q, k, v) = (View::new("q", q, l1)?, Cached::new("k", s2, l2)?, Cached::new("v", s3, l3)?);
        let [b, h, n, d] = q.dims;
        let [kb, g, t, kd] = k.dims();
        if n != 1 || kb != b || kd != d || v.dims() != k.dims() || g == 0 || h % g != 0 {
            candle_core::bail!("decode attention: q {:?}, k {:?}, v {:?} do not fit", q.dims, k.dims(), v.dims());
        }
        let rep = h / g;
        let simd = self.simd;
        let scale = self.q_scale * self.score_scale;
        // Tasks are (batch row · group, span of positions): each writes its heads' running max,
        // sum of exponentials and unnormalized weighted values; the spans are merged below.
        let span_len = span_len(t, b * g, rayon::current_num_threads());
        let spans = t.div_ceil(span_len);
        let part_len = rep * (d + 2);
        // The scaled queries, once for all tasks: the `rep` heads of group `gi` of batch row `bi`
        // are rows `(bi·g + gi)·rep ..` of `qs`.
        let mut qs = vec![0f32; b * h * d];
        for (i, row) in qs.chunks_exact_mut(d).enumerate() {
            row.iter_mut().zip(q.row(i / h, i % h, 0)).for_each(|(s, x)| *s = x * scale);
        }
        let mut parts = vec![0f32; b * g * spans * part_len];
        parts.par_chunks_mut(part_len).enumerate().for_each(|(task, part)| {
            let (bg, c) = (task / spans, task % spans);
            let (bi, gi) = (bg / g, bg % g);
            let span = c * span_len..((c + 1) * span_len).min(t);
            partial(simd, &qs[bg * rep * d..(bg + 1) * rep * d], &k, &v, bi, gi, span, part);
        });
        let mut out = vec![0f32; b * h * d];
        for (bg, o) in out.chunks_mut(rep * d).enumerate() {
            let group = &parts[bg * spans * part_len..(bg + 1) * spans * part_len];
            merge(group, rep, d, o);
        }
        Ok((CpuStorage::F32(out), Shape::from((b, h, 1, d))))
    }
}

/// Positions per task: about four tasks per thread over all groups, never under
/// [`MIN_SPAN`] positions (a span's partial results cost `rep · (d + 2)` floats to merge), and
/// a whole number of [`POSITIONS_PER_BLOCK`], so that only the last span ends in a part-block
/// (the register tiles take positions four at a time; what is left goes one row at a time).
fn span_len(t: usize, groups: usize, threads: usize) -> usize {
    let per_group = (4 * threads.max(1)).div_ceil(groups.max(1));
    t.div_ceil(per_group).max(MIN_SPAN).next_multiple_of(POSITIONS_PER_BLOCK)
}

/// One task: for the positions of `span` and each query head `r` of a group (`qs`: the heads'
/// scaled queries, `d` values each), writes into `part` the heads' largest score `m_r`, their
/// `Σ e^(s − m_r)` and `Σ e^(s − m_r) · v` (layout: `rep` maxima, `rep` sums, `rep · d` values).
#[allow(clippy::too_many_arguments)]
fn partial(simd: Simd, qs: &[f32], k: &Cached, v: &Cached, bi: usize, gi: usize, span: Range<usize>, part: &mut [f32]) {
    SCRATCH.with(|scratch| {
        // A task never starts another on its thread (no parallel calls inside), so the borrow
        // is free; a fresh pair where it is not keeps the op correct regardless.
        match scratch.try_borrow_mut() {
            Ok(mut held) => partial_with(simd, qs, (k, v), (bi, gi), span, part, &mut held),
            Err(_) => partial_with(simd, qs, (k, v), (bi, gi), span, part, &mut Scratch::default()),
        }
    })
}

/// The buffers of a task, kept per thread instead of allocated and zeroed per task (eight
/// tasks a layer): the task's scores (`rep · span` floats, every one written before it is read)
/// and the block an f16 cache is widened into. With [`copy_short`], `bench_attention --heads 16
/// --kv f16`, three alternations, median ms over 24 layers: 1.23–1.41 → 1.17–1.29 at 600
/// positions, 3.99–4.82 → 3.39–3.80 at 2048.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    widened: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// [`partial`] with its buffers.
fn partial_with(simd: Simd, qs: &[f32], (k, v): (&Cached, &Cached), (bi, gi): (usize, usize), span: Range<usize>, part: &mut [f32], scratch: &mut Scratch) {
    let d = k.dims()[3];
    let rep = qs.len() / d;
    let n = span.len();
    if scratch.scores.len() < rep * n {
        scratch.scores.resize(rep * n, 0.0);
    }
    let (scores, widened) = (&mut scratch.scores[..rep * n], &mut scratch.widened);
    // Blocks of positions, so that the heads of a group find a block's rows in L1.
    for t0 in span.clone().step_by(POSITIONS_PER_BLOCK) {
        let block = t0..(t0 + POSITIONS_PER_BLOCK).min(span.end);
        let k = k.block(simd, bi, gi, block.clone(), widened);
        simd.scores(qs, &k, bi, gi, block, scores, n, span.start);
    }
    let (stats, values) = part.split_at_mut(2 * rep);
    for (r, sr) in scores.chunks_mut(n).enumerate() {
        let (max, sum) = simd.exp_shifted(sr);
        stats[r] = max;
        stats[rep + r] = sum;
    }
    for t0 in span.clone().step_by(POSITIONS_PER_BLOCK) {
        let block = t0..(t0 + POSITIONS_PER_BLOCK).min(span.end);
        let v = v.block(simd, bi, gi, block.clone(), widened);
        simd.add_weighted(scores, n, span.start, &v, bi, gi, block, values);
    }
}

/// Merges the partial results of one group's spans (`parts`, one [`partial`] layout after the
/// other) into the heads' outputs `o` (`rep · d`): each span's values and sum are rescaled from
/// its own maximum to the overall one.
fn merge(parts: &[f32], rep: usize, d: usize, o: &mut [f32]) {
    let part_len = rep * (d + 2);
    for (r, or) in o.chunks_mut(d).enumerate() {
        let max = parts.chunks(part_len).fold(f32::NEG_INFINITY, |m, p| m.max(p[r]));
        let mut sum = 0f32;
        for p in parts.chunks(part_len) {
            let w = (p[r] - max).exp();
            sum += w * p[rep + r];
            let values = &p[2 * rep + r * d..2 * rep + (r + 1) * d];
            or.iter_mut().zip(values).for_each(|(o, x)| *o += w * x);
        }
        let inv = 1.0 / sum;
        or.iter_mut().for_each(|o| *o *= inv);
    }
}

/// `a · b` in eight independent sums, which the compiler turns into vector instructions on any
/// CPU (SSE2, NEON): one running sum, as a plain iterator `sum` keeps it, waits on every
/// addition, and made the portable attention 14× slower than the AVX-512 one.
fn dot_in_lanes(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let (a_blocks, b_blocks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_blocks.remainder().iter().zip(b_blocks.remainder()).map(|(x, y)| x * y).sum();
    let mut sums = [0f32; LANES];
    for (x, y) in a_blocks.zip(b_blocks) {
        for i in 0..LANES {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// `s[i] = e^(s[i] − max)`; returns `(max, Σ s[i])`.
fn exp_shifted_in_place(s: &mut [f32]) -> (f32, f32) {
    let max = s.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut sum = 0f32;
    for x in s.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    (max, sum)
}

/// The vector instructions the dot products may use (detected once per op).
#[derive(Clone, Copy, Debug)]
enum Simd {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Simd {
    /// Every kind this CPU can run, slowest first (for tests).
    #[cfg(test)]
    fn available() -> Vec<Simd> {
        #[allow(unused_mut)]
        let mut all = vec![Simd::Portable];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            all.push(Simd::Avx2Fma);
            if is_x86_feature_detected!("avx512f") {
                all.push(Simd::Avx512);
            }
        }
        all
    }

    /// The fastest kind of this CPU (detected once); `DOCTORGLM_KERNEL` naming a slower kernel set
    /// (`scalar`, `avx2`, `avxvnni`) picks the matching kind, for comparisons as in `quant::Kernel::best`.
    fn detect() -> Simd {
        static DETECTED: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            let want = std::env::var("DOCTORGLM_KERNEL").unwrap_or_default().to_ascii_lowercase();
            if want == "scalar" {
                return Simd::Portable;
            }
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
                let avx2_only = want == "avx2" || want == "avxvnni";
                return if is_x86_feature_detected!("avx512f") && !avx2_only { Simd::Avx512 } else { Simd::Avx2Fma };
            }
            Simd::Portable
        })
    }

    /// `scores[r·n + t − first] = qs[r] · k[bi, gi, t]` for every head `r` of `qs` and position
    /// `t` of `block`.
    #[allow(clippy::too_many_arguments)]
    fn scores(self, qs: &[f32], k: &View, bi: usize, gi: usize, block: Range<usize>, scores: &mut [f32], n: usize, first: usize) {
        let d = k.dims[3];
        match self {
            // SAFETY: `Simd::Avx512` is only made after AVX-512F, AVX2, FMA and F16C were detected.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { avx512::scores(qs, k, bi, gi, block, scores, n, first) },
            // SAFETY: `Simd::Avx2Fma` is only made after AVX2, FMA and F16C were detected.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2Fma => unsafe { avx2::scores(qs, k, bi, gi, block, scores, n, first) },
            Simd::Portable => {
                for (qr, sr) in qs.chunks(d).zip(scores.chunks_mut(n)) {
                    for t in block.clone() {
                        sr[t - first] = dot_in_lanes(qr, k.row(bi, gi, t));
                    }
                }
            }
        }
    }

    /// `values[r] += Σ_t p[r·n + t − first] · v[bi, gi, t]` over the positions of `block`, for
    /// every head `r` (`values`: one row of the head dimension per head).
    #[allow(clippy::too_many_arguments)]
    fn add_weighted(self, p: &[f32], n: usize, first: usize, v: &View, bi: usize, gi: usize, block: Range<usize>, values: &mut [f32]) {
        let d = v.dims[3];
        match self {
            // SAFETY: as in `scores`.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { avx512::add_weighted(p, n, first, v, bi, gi, block, values) },
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2Fma => {
                for (r, (sr, or)) in p.chunks(n).zip(values.chunks_mut(d)).enumerate() {
                    // SAFETY: `Simd::Avx2Fma` is only made after AVX2 and FMA were detected. The
                    // first head prefetches the rows ahead for all of them.
                    unsafe { x86::add_weighted_rows(&sr[block.start - first..block.end - first], v, bi, gi, block.start, or, r == 0) };
                }
            }
            Simd::Portable => {
                for (sr, or) in p.chunks(n).zip(values.chunks_mut(d)) {
                    for t in block.clone() {
                        let w = sr[t - first];
                        or.iter_mut().zip(v.row(bi, gi, t)).for_each(|(o, x)| *o += w * x);
                    }
                }
            }
        }
    }

    /// `dst = src` as f32 (an f16 cache row).
    fn widen(self, src: &[half::f16], dst: &mut [f32]) {
        match self {
            // SAFETY: both kinds are only made after AVX2, FMA and F16C were detected, and
            // `Simd::Avx512` after AVX-512F too.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2Fma => unsafe { x86::widen(src, dst) },
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { avx512::widen(src, dst) },
            Simd::Portable => half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, dst),
        }
    }

    /// `s[i] = e^(s[i] − max)`; returns `(max, Σ s[i])`.
    fn exp_shifted(self, s: &mut [f32]) -> (f32, f32) {
        match self {
            Simd::Portable => exp_shifted_in_place(s),
            // SAFETY: `Simd::Avx2Fma` is only made after AVX2 and FMA were detected.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2Fma | Simd::Avx512 => unsafe { x86::exp_shifted(s) },
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

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp_shifted(s: &mut [f32]) -> (f32, f32) {
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
                let e = crate::vector_exp::exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), vmax));
                _mm256_storeu_ps(c.as_mut_ptr(), e);
                sum = _mm256_add_ps(sum, e);
            }
        }
        let mut total = hsum(sum);
        for x in s[body..].iter_mut() {
            *x = (*x - max).exp();
            total += *x;
        }
        (max, total)
    }

    /// `dst = src` as f32, eight values an instruction, asking for the memory
    /// [`WIDEN_AHEAD`](super::WIDEN_AHEAD) values ahead as it goes.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn widen(src: &[half::f16], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len());
        let body = src.len() / 32 * 32;
        for i in (0..body).step_by(32) {
            // SAFETY: `i + 32 <= body <= len` of both slices; f16 is 16 bits. The prefetch is a
            // hint (its address is computed wrapping, never read).
            unsafe {
                let (from, to) = (src.as_ptr().add(i), dst.as_mut_ptr().add(i));
                _mm_prefetch::<_MM_HINT_T0>(from.wrapping_add(super::WIDEN_AHEAD) as *const i8);
                for j in (0..32).step_by(8) {
                    _mm256_storeu_ps(to.add(j), _mm256_cvtph_ps(_mm_loadu_si128(from.add(j) as *const __m128i)));
                }
            }
        }
        if body < src.len() {
            half::slice::HalfFloatSliceExt::convert_to_f32_slice(&src[body..], &mut dst[body..]);
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
                scores[t - span.start + j] = hsum(*a) + (body..d).map(|i| q[i] * row[i]).sum::<f32>();
            }
            t += 4;
        }
        // The last positions one at a time, still in vector lanes: a plain iterator sum is one
        // serial chain of additions, which made these few positions cost a fifth of the op.
        for j in t..span.end {
            let row = k.row(bi, gi, j);
            let mut acc = _mm256_setzero_ps();
            let mut i = 0;
            // SAFETY: as above, `i + 8 <= body <= d` floats in `q` and the row.
            unsafe {
                while i < body {
                    acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), _mm256_loadu_ps(row.as_ptr().add(i)), acc);
                    i += 8;
                }
            }
            scores[j - span.start] = hsum(acc) + (body..d).map(|i| q[i] * row[i]).sum::<f32>();
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn add_weighted_rows(p: &[f32], v: &View, bi: usize, gi: usize, first: usize, out: &mut [f32], prefetch: bool) {
        let d = out.len();
        let mut c = 0;
        while c + 64 <= d {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (t, &w) in p.iter().enumerate() {
                if prefetch && c == 0 {
                    super::prefetch_rows(v, bi, gi, first + t, 1);
                }
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
        // (batch, query heads, key/value heads, head dim, cached positions): grouped heads (ChatGLM3,
        // GLM-4), one head per group (ChatGLM-6B), head counts and positions that leave parts of
        // the AVX-512 tiles to the AVX2 kernels, several spans per group, odd sizes for SIMD tails.
        let shapes = [
            (1, 16, 2, 128, 300),
            (1, 32, 2, 128, 1000),
            (1, 2, 2, 128, 70),
            (1, 6, 1, 32, 50),
            (1, 2, 1, 256, 5),
            (2, 4, 4, 8, 1),
            (2, 6, 3, 19, 7),
            (1, 8, 1, 40, 33),
        ];
        // Caches of f32 and of f16 (widened block by block; the composition widens them whole).
        for ((b, h, g, d, t), dtype) in shapes.into_iter().flat_map(|s| [(s, DType::F32), (s, DType::F16)]) {
            // Keys/values as the cache holds them: views of the first `t` of 64 more positions.
            let kbuf = sample((b, g, t + 64, d), 1).to_dtype(dtype).unwrap();
            let vbuf = sample((b, g, t + 64, d), 2).to_dtype(dtype).unwrap();
            let (k, v) = (kbuf.narrow(2, 0, t).unwrap(), vbuf.narrow(2, 0, t).unwrap());
            assert_eq!(k.is_contiguous(), b * g == 1, "only a single group's view is contiguous");
            let q = sample((b, h, 1, d), 3);
            let (qs, ss) = (1.0 / (d as f64).sqrt() / 3.0, 3.0);
            for simd in Simd::available() {
                // As `try_fused`, with each instruction set this CPU has.
                let fused = |score_scale: f64| {
                    let op = DecodeAttention { q_scale: qs as f32, score_scale: score_scale as f32, simd };
                    q.apply_op3_no_bwd(&k, &v, &op).unwrap()
                };
                let composed = crate::layers::attention_composed(&q, &k, &v, None, qs, ss).unwrap();
                let diff = max_diff(&fused(ss), &composed);
                assert!(diff < 1e-5, "{simd:?} {dtype:?} b{b} h{h} g{g} d{d} t{t}: {diff}");
                // Scores far apart (a sharply peaked softmax): the spans' maxima differ by far
                // more than an f32 exponential's range, and the merge must rescale, not overflow.
                let composed = crate::layers::attention_composed(&q, &k, &v, None, qs, 60.0).unwrap();
                let diff = max_diff(&fused(60.0), &composed);
                assert!(diff < 1e-4, "{simd:?} {dtype:?} peaked, b{b} h{h} g{g} d{d} t{t}: {diff}");
            }
            let fused = try_fused(&q, &k, &v, None, qs, ss).unwrap().expect("the fused op applies");
            assert_eq!(fused.dims(), &[b, h, 1, d]);
        }
    }

    #[test]
    fn spans_cover_the_positions_and_many_threads_give_the_same_answer() {
        // (positions, groups, threads, expected span): four tasks per thread where the positions
        // allow, never spans under MIN_SPAN, whole blocks (600 / 4 = 150 becomes 160).
        for (t, groups, threads, want) in [(1, 2, 2, 64), (640, 2, 2, 160), (600, 2, 2, 160), (640, 2, 16, 64), (8192, 32, 16, 4096), (63, 1, 64, 64)] {
            let len = span_len(t, groups, threads);
            assert!(len >= MIN_SPAN && len * t.div_ceil(len) >= t && len.is_multiple_of(POSITIONS_PER_BLOCK), "t{t} g{groups} x{threads}: {len}");
            assert_eq!(len, want, "t{t} g{groups} x{threads}");
        }
        // Thirteen threads split 1000 positions of 2 groups into spans of 64: the merge of 16 spans.
        let (kbuf, vbuf) = (sample((1, 2, 1100, 128), 11), sample((1, 2, 1100, 128), 12));
        let (k, v) = (kbuf.narrow(2, 0, 1000).unwrap(), vbuf.narrow(2, 0, 1000).unwrap());
        let q = sample((1, 32, 1, 128), 13);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(13).build().unwrap();
        let many = pool.install(|| try_fused(&q, &k, &v, None, 0.1, 1.0).unwrap().unwrap());
        let composed = crate::layers::attention_composed(&q, &k, &v, None, 0.1, 1.0).unwrap();
        assert!(max_diff(&many, &composed) < 1e-5);
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
        let (k16, v16) = (k.to_dtype(DType::F16).unwrap(), v.to_dtype(DType::F16).unwrap());
        assert!(try_fused(&q, &k16, &v16, None, 1.0, 1.0).unwrap().is_some(), "an f16 cache under f32 queries");
        let half = q.to_dtype(DType::F16).unwrap();
        assert!(try_fused(&half, &k16, &v16, None, 1.0, 1.0).unwrap().is_none());
        // Shapes that do not fit are errors, not wrong answers.
        let three = sample((1, 3, 1, 8), 8);
        assert!(try_fused(&three, &k, &v, None, 1.0, 1.0).is_err());
    }
}
