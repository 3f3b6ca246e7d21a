//! x86-64 AVX-512 VNNI kernels (F + BW + VNNI + VBMI): `vpdpbusd` multiplies unsigned weight
//! bytes by signed activation bytes and sums four products per 32-bit lane in one instruction.
//!
//! - Q4_0: the nibbles (0..15) are the unsigned side; the activation's `−8 · Σ a` correction
//!   starts each register's sum. Decoding reads the row-lane layout (`block_lanes`, one row per
//!   32-bit lane); the per-row and tiled kernels for ggml's layout gather four blocks (72 bytes)
//!   into one register with one two-source byte permutation.
//! - Q8_0: decoding reads the row-lane layout (`block_lanes`), whose weights are stored made
//!   unsigned (`q + 128`) with `−128 · Σ a` as the start. For ggml's rows (prompts and shapes
//!   the layout does not take) Q8_0 keeps the AVX-512 kernel of `x86`: a per-row VNNI version
//!   (the weights made unsigned per load, two 34-byte blocks gathered per register) measured
//!   5–10% slower single-threaded.
//! - Q4_K: the nibbles are the unsigned side; the sub-block minimums use the activation's sums.
//!
//! The activation is rearranged once per product ([`Packed`]) so that every register of weights
//! meets its values without shuffling weights per row. Each kernel prefetches the row a few
//! cache lines ahead: without it, streaming rows from memory ran at half the bandwidth here.
//! Callers must only call these after run-time detection of the features (see `kernel::Kernel`).

use std::arch::x86_64::*;

use super::activation::{ActQ8, Packed};
use super::format::{Q4_0_BYTES, Q4_K_BYTES, QK_K};
use super::x86::{as_bytes, check, f16_to_f32, hsum256, q4_0_block, q4k_scales};

/// How far ahead of the bytes being read the kernels prefetch (bytes). `bench_quant` on
/// 16384×4096 matrices streamed from memory, two cores: 512 bytes gave Q4_0 12.4 GB/s, 4096
/// bytes 17.4–18.5 GB/s (the hardware prefetcher alone keeps too few lines in flight per core);
/// 2048 and 8192 were slower than 4096 in the same runs.
pub(super) const PREFETCH: usize = 4096;

/// The cache level those prefetches fill: L2 (`T1`), not L1 (`T0`). An L1 fill holds one of the
/// core's few L1 miss buffers until the line arrives; an L2 fill queues in L2's larger one, so
/// more lines are in flight per core, and the kernels' own loads find the line in L2 a few
/// cycles later. Stop 19's VM (about 15 GB/s per core): `bench_quant --shape 11264x2048`
/// streamed from memory on two cores, two alternated rounds at 4 and 8 KiB (T1 also 16 KiB),
/// best of 15: Q4_0 17.3–18.4 → 22.7–24.8 GB/s, Q4_K 17.6–20.4 → 22.7–24.9 GB/s; stop 14's VM
/// (9–11 GB/s per core) saw no order between T0, T1 and T2.
pub(super) const PREFETCH_HINT: i32 = _MM_HINT_T1;

/// How far ahead the kernels also ask for lines into L1 (`T0`), on top of the L2 prefetches
/// [`PREFETCH`] ahead: the L2 prefetch brings a line from memory, the L1 one moves it into L1
/// before the loads reach it. `bench_quant --shape 65536x2048 --shape 2048x2048 --stream-mib 768`
/// on two cores, two alternated rounds (ARCHITECTURE.md, stop 21): Q4_0 28.7–29.5 → 30.9–31.3 GB/s
/// and 27.0–27.5 → 28.4–29.5 GB/s, Q8_0 30.2–30.5 → 31.5–31.9 and 29.4–29.9 → 30.2–30.3 GB/s;
/// 512 and 2048 bytes did about as well as 1024, fewer L2 prefetches (every other line) worse.
pub(super) const PREFETCH_NEAR: usize = 1024;

/// Asks for the line [`PREFETCH`] bytes after `p` into L2 and the one [`PREFETCH_NEAR`] bytes
/// after it into L1 (hints: they never fault, even past the end of a buffer).
#[inline(always)]
pub(super) fn prefetch_ahead(p: *const u8) {
    // SAFETY: SSE is part of every x86-64 CPU, and a prefetch does not access memory.
    unsafe {
        _mm_prefetch::<PREFETCH_HINT>(p.wrapping_add(PREFETCH) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_NEAR) as *const i8);
    }
}

/// Prefetches the first [`PREFETCH`] bytes of a decode task's weights at once (its first
/// [`PREFETCH_NEAR`] into L1): the loop's prefetches run that far ahead, so without this the
/// task's first lines arrive one demand miss after another. `bench_quant --shape 11264x2048
/// --shape 2048x2048 --stream-mib 768`, two alternated rounds (ARCHITECTURE.md, stop 20): 0–4% faster.
#[inline]
fn prefetch_start(data: &[u8]) {
    for off in (0..PREFETCH.min(data.len())).step_by(64) {
        // SAFETY: SSE is part of every x86-64 CPU, and `off` lies inside `data`.
        unsafe {
            if off < PREFETCH_NEAR {
                _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().add(off) as *const i8);
            } else {
                _mm_prefetch::<PREFETCH_HINT>(data.as_ptr().add(off) as *const i8);
            }
        }
    }
}

/// vpermt2b indices gathering the 4 × 16 nibble bytes of four Q4_0 blocks from two loads: bytes
/// 0..64 of the group (indices 0..64) and bytes 8..72 (indices 64..128).
const Q4_0_GATHER: [u8; 64] = {
    let mut idx = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        let src = 18 * (i / 16) + 2 + i % 16;
        idx[i] = if src < 64 { src as u8 } else { (64 + src - 8) as u8 };
        i += 1;
    }
    idx
};

/// vpermb indices putting block `k`'s f16 scale (bytes 18k, 18k + 1 of a Q4_0 group) in 16-bit
/// lanes `4k..4k + 4` of the low 256 bits.
const Q4_0_SCALES: [u8; 64] = {
    let mut idx = [0u8; 64];
    let mut l = 0;
    while l < 16 {
        idx[2 * l] = (18 * (l / 4)) as u8;
        idx[2 * l + 1] = (18 * (l / 4) + 1) as u8;
        l += 1;
    }
    idx
};

/// permutexvar indices spreading eight per-sub-block floats over the lanes of Q4_K register `r`.
const Q4K_SPREAD: [[u32; 16]; 4] = {
    let mut idx = [[0u32; 16]; 4];
    let mut r = 0;
    while r < 4 {
        let mut l = 0;
        while l < 16 {
            idx[r][l] = (4 * (r / 2) + r % 2 + 2 * (l / 8)) as u32;
            l += 1;
        }
        r += 1;
    }
    idx
};

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi,avx2,fma,f16c")]
fn load_idx(idx: &[u8; 64]) -> __m512i {
    // SAFETY: `idx` is 64 bytes.
    unsafe { _mm512_loadu_si512(idx.as_ptr() as *const __m512i) }
}

/// Q4_0 row · activation.
///
/// Panics unless `p` was packed for Q4_0 from `act` and the lengths agree.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi,avx2,fma,f16c")]
pub(super) fn dot_q4_0(row: &[u8], act: &ActQ8, p: &Packed) -> f32 {
    let nb = check(row, Q4_0_BYTES, act);
    let groups = nb / 4;
    assert!(p.group == 4 && p.qs.len() == groups * 128 && p.corr.len() == groups * 16 && p.dx.len() == groups * 16);
    let gather = load_idx(&Q4_0_GATHER);
    let scales = load_idx(&Q4_0_SCALES);
    let m4 = _mm512_set1_epi8(0x0F);
    let (rp, ap, cp, dp) = (row.as_ptr(), p.qs.as_ptr() as *const u8, p.corr.as_ptr(), p.dx.as_ptr());
    // One group: four blocks against their activation, added to `acc`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi,avx2,fma,f16c")]
    unsafe fn group(acc: __m512, w: *const u8, a: *const u8, c: *const i32, d: *const f32, ix: [__m512i; 2], m4: __m512i) -> __m512 {
        // SAFETY: the caller guarantees 72 bytes at `w`, 128 at `a`, 16 lanes at `c` and `d`.
        unsafe {
            prefetch_ahead(w);
            prefetch_ahead(w.wrapping_add(64));
            let x0 = _mm512_loadu_si512(w as *const __m512i);
            let x1 = _mm512_loadu_si512(w.add(8) as *const __m512i);
            let q = _mm512_permutex2var_epi8(x0, ix[0], x1);
            let lo = _mm512_and_si512(q, m4);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4);
            let a_lo = _mm512_loadu_si512(a as *const __m512i);
            let a_hi = _mm512_loadu_si512(a.add(64) as *const __m512i);
            let s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_loadu_si512(c as *const __m512i), lo, a_lo), hi, a_hi);
            let dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi8(ix[1], x0)));
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_loadu_ps(d)), acc)
        }
    }
    let ix = [gather, scales];
    let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut g = 0;
    // SAFETY: the assert and `check` above prove that group `g < groups` has its 72 weight bytes
    // at `rp + 72g` (read as [0, 64) and [8, 72)), 128 activation bytes and 16 corrections and scales.
    unsafe {
        let at = |g: usize| (rp.add(g * 4 * Q4_0_BYTES), ap.add(g * 128), cp.add(g * 16), dp.add(g * 16));
        while g + 2 <= groups {
            let (w, a, c, d) = at(g);
            acc0 = group(acc0, w, a, c, d, ix, m4);
            let (w, a, c, d) = at(g + 1);
            acc1 = group(acc1, w, a, c, d, ix, m4);
            g += 2;
        }
        if g < groups {
            let (w, a, c, d) = at(g);
            acc0 = group(acc0, w, a, c, d, ix, m4);
        }
    }
    let mut total = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    let a = as_bytes(&act.qs);
    for b in groups * 4..nb {
        let s = q4_0_block(row, a, &act.sums, b);
        total += hsum256(_mm256_cvtepi32_ps(s)) * f16_to_f32(&row[b * Q4_0_BYTES..]) * act.d[b];
    }
    total
}

/// `out[i]` = row `i` · activation for whole tiles of Q4_0 (`Q8 = false`) or Q8_0 (`Q8 = true`)
/// rows in their row-lane layout ([`super::block_lanes`]; `data` holds `out.len() / 16` tiles of
/// `act`'s length).
///
/// Each 32-bit lane is one row. Per block: the weights' steps against four activation bytes
/// each, broadcast from memory (two `vpdpbusd` chains, one starting from the block's
/// `−offset · Σ a`; Q4_0 splits each load into low and high nibbles, Q8_0's loads are the
/// unsigned weights), one conversion of the sixteen rows' f16 scales, and one multiply-add into
/// the row sums. The tiles are read as two streams in step ([`two_streams`]).
///
/// Panics unless the lengths agree.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi,avx2,fma,f16c")]
pub(super) fn dot_block_lanes<const Q8: bool>(data: &[u8], act: &ActQ8, out: &mut [f32]) {
    use super::block_lanes::TILE_ROWS;
    let lanes = if Q8 { super::block_lanes::Q8_0 } else { super::block_lanes::Q4_0 };
    let groups = lanes.kernel_inputs(data, act, out);
    let group_bytes = lanes.group_bytes();
    let (qp, sp, dp) = (act.qs.as_ptr() as *const u8, act.sums.as_ptr(), act.d.as_ptr());
    let tile_bytes = groups * group_bytes;
    let inputs = StepInputs { groups, qp, sp, dp };
    two_streams(
        data,
        tile_bytes,
        out,
        TILE_ROWS,
        // SAFETY (both): `kernel_inputs` checked that each tile holds `groups` groups of
        // `group_bytes`, and the activation 32 bytes, a sum and a scale per block.
        |bases, ys| unsafe { block_lanes_tiles::<Q8, 2>(bases, &inputs, ys) },
        |base, y| unsafe { block_lanes_tiles::<Q8, 1>([base], &inputs, [y]) },
    );
}

/// What the block kernels that read tiles in step ([`block_lanes_tiles`], the 256-bit octet
/// ones) take besides the weights: the groups a row and the activation's bytes, sums and scales.
pub(super) struct StepInputs {
    pub(super) groups: usize,
    pub(super) qp: *const u8,
    pub(super) sp: *const i32,
    pub(super) dp: *const f32,
}

/// `N` tiles of [`dot_block_lanes`] in step, group by group (two accumulators a tile: even and
/// odd blocks, two independent chains of multiply-adds). Safety: each base holds `groups`
/// groups of `group_bytes`, and the activation 32 bytes, a sum and a scale per block.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi,avx2,fma,f16c")]
unsafe fn block_lanes_tiles<const Q8: bool, const N: usize>(bases: [*const u8; N], x: &StepInputs, ys: [&mut [f32]; N]) {
    use super::block_lanes::{GROUP_BLOCKS, SCALES_BYTES};
    // The layout's sizes, constants here (not passed in), so that the loops below unroll.
    let lanes = if Q8 { super::block_lanes::Q8_0 } else { super::block_lanes::Q4_0 };
    let (group_bytes, payloads, offset) = (lanes.group_bytes(), lanes.block_payloads(), lanes.offset());
    let mut acc = [[_mm512_setzero_ps(); GROUP_BLOCKS]; N];
    for g in 0..x.groups {
        for (base, acc) in bases.iter().zip(acc.iter_mut()) {
            // SAFETY: the caller's.
            unsafe {
                let gp = base.add(g * group_bytes);
                for l in 0..group_bytes / 64 {
                    prefetch_ahead(gp.wrapping_add(64 * l));
                }
                for (k, acc) in acc.iter_mut().enumerate() {
                    let b = g * GROUP_BLOCKS + k;
                    let (w, a, start) = (gp.add(SCALES_BYTES + payloads * k), x.qp.add(32 * b) as *const i32, _mm512_set1_epi32(-offset * *x.sp.add(b)));
                    let sums = if Q8 { q8_0_block_lanes(w, a, start) } else { q4_0_block_lanes(w, a, start) };
                    let scales = _mm512_cvtph_ps(_mm256_loadu_si256(gp.add(32 * k) as *const __m256i));
                    let f = _mm512_mul_ps(scales, _mm512_set1_ps(*x.dp.add(b)));
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), f, *acc);
                }
            }
        }
    }
    for (y, acc) in ys.into_iter().zip(acc) {
        assert!(y.len() >= 16);
        // SAFETY: `y` holds sixteen floats.
        unsafe { _mm512_storeu_ps(y.as_mut_ptr(), _mm512_add_ps(acc[0], acc[1])) };
    }
}

/// Runs the kernel over the `out.len() / rows` tiles of `tile_bytes` each in `data`, two at a
/// time: `pair` gets tile `i` of the first half with tile `i` of the second, so that the kernel
/// reads two streams in step; a last odd tile goes to `single`.
///
/// With one stream a core the kernels streamed slower than this VM's memory allows (a pure
/// read, the bandwidth probe, is as fast with the hardware prefetcher alone as with software
/// prefetches; the kernels, with their arithmetic between loads, are not — by inference they
/// leave requests unissued): `bench_quant`, three alternated rounds, 2048 × 5632 Q4_0
/// 30.0–31.1 → 32.2–33.8 GB/s and Q8_0 31.4–32.5 → 32.3–33.8, other shapes unchanged to a few
/// percent faster by the VM's phase (ARCHITECTURE.md, Quantization, stop 24); the 256-bit octet
/// kernels (`x86_interleaved_256`) 4–14% faster with AVX2. Q4_K's 512-bit kernel measured 0–5%
/// slower with two and keeps one (the 256-bit Q4_K kernels were not tried). The first lines of
/// the second stream are asked for at once, as [`prefetch_start`] does for the first.
#[inline]
pub(super) fn two_streams<'o>(
    data: &[u8],
    tile_bytes: usize,
    out: &'o mut [f32],
    rows: usize,
    mut pair: impl FnMut([*const u8; 2], [&'o mut [f32]; 2]),
    mut single: impl FnMut(*const u8, &'o mut [f32]),
) {
    let tiles = out.len() / rows;
    assert!(data.len() >= tiles * tile_bytes && out.len() == tiles * rows);
    let pairs = tiles / 2;
    prefetch_start(data);
    if pairs > 0 {
        prefetch_start(&data[pairs * tile_bytes..]);
    }
    let (first, rest) = out.split_at_mut(pairs * rows);
    let (second, last) = rest.split_at_mut(pairs * rows);
    for (i, (a, b)) in first.chunks_exact_mut(rows).zip(second.chunks_exact_mut(rows)).enumerate() {
        pair([data[i * tile_bytes..].as_ptr(), data[(pairs + i) * tile_bytes..].as_ptr()], [a, b]);
    }
    if !last.is_empty() {
        single(data[2 * pairs * tile_bytes..].as_ptr(), last);
    }
}

/// One Q4_0 block of sixteen rows: four steps of 64 bytes at `w` (nibbles), the block's 32
/// activation bytes at `a`, the sums starting from `start`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi,avx2,fma,f16c")]
unsafe fn q4_0_block_lanes(w: *const u8, a: *const i32, start: __m512i) -> __m512i {
    let m4 = _mm512_set1_epi8(0x0F);
    let (mut lo, mut hi) = (start, _mm512_setzero_si512());
    for j in 0..4 {
        // SAFETY: the caller guarantees 256 bytes at `w` and 32 at `a`.
        unsafe {
            let q = _mm512_loadu_si512(w.add(64 * j) as *const __m512i);
            lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(q, m4), _mm512_set1_epi32(a.add(j).read_unaligned()));
            hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4), _mm512_set1_epi32(a.add(4 + j).read_unaligned()));
        }
    }
    _mm512_add_epi32(lo, hi)
}

/// One Q8_0 block of sixteen rows: eight steps of 64 bytes at `w` (quants plus 128), the
/// block's 32 activation bytes at `a`, the sums starting from `start`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi,avx2,fma,f16c")]
unsafe fn q8_0_block_lanes(w: *const u8, a: *const i32, start: __m512i) -> __m512i {
    let mut s = [start, _mm512_setzero_si512()];
    for j in 0..8 {
        // SAFETY: the caller guarantees 512 bytes at `w` and 32 at `a`.
        unsafe {
            let q = _mm512_loadu_si512(w.add(64 * j) as *const __m512i);
            s[j % 2] = _mm512_dpbusd_epi32(s[j % 2], q, _mm512_set1_epi32(a.add(j).read_unaligned()));
        }
    }
    _mm512_add_epi32(s[0], s[1])
}

/// `out[i]` = row `i` · activation for whole tiles of Q4_K rows in the row-lane layout
/// ([`super::q4k_lanes`]; `data` holds `out.len() / 16` tiles of `act`'s length).
///
/// Each 32-bit lane is one row: a step of eight weights is one load and two `vpdpbusd` against
/// four activation bytes broadcast by a load, a sub-block's integer sum is scaled once by its
/// per-lane scale (a byte load widened), and the minimums need one more multiply-add per
/// sub-block against the activation's block sums.
///
/// The compiler leaves the loop over a super-block's eight sub-blocks rolled. A variant unrolled
/// with constants in place of `s` (over packed scales, 2.7% fewer bytes) streamed 9–16% slower
/// than this one at stop 25 (ARCHITECTURE.md, Quantization).
///
/// Panics unless the lengths agree.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi,avx2,fma,f16c")]
pub(super) fn dot_q4k_lanes(data: &[u8], act: &ActQ8, out: &mut [f32]) {
    use super::q4k_lanes::{kernel_inputs, MINS_AT, NIBBLES_AT, SCALES_AT, TILE_BYTES, TILE_ROWS};
    let nsb = kernel_inputs(data, act, out);
    let m4 = _mm512_set1_epi8(0x0F);
    let (qp, dp, sp) = (act.qs.as_ptr(), act.d.as_ptr(), act.sums.as_ptr());
    prefetch_start(data);
    for (t, y) in out.chunks_exact_mut(TILE_ROWS).enumerate() {
        let mut acc = _mm512_setzero_ps();
        for sb in 0..nsb {
            // SAFETY: `kernel_inputs` checked that tile `t` holds `nsb` super-blocks of TILE_BYTES at
            // `base`, and the activation 256 values, 8 scales and 8 sums per super-block.
            unsafe {
                let base = data.as_ptr().add((t * nsb + sb) * TILE_BYTES);
                let (mut sums, mut mins) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                for s in 0..8 {
                    for l in 0..5 {
                        prefetch_ahead(base.wrapping_add(296 * s + 64 * l));
                    }
                    let (mut lo, mut hi) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                    for step in 4 * s..4 * s + 4 {
                        let q = _mm512_loadu_si512(base.add(NIBBLES_AT + 64 * step) as *const __m512i);
                        let a = qp.add(sb * QK_K + 8 * step) as *const i32;
                        lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(q, m4), _mm512_set1_epi32(a.read_unaligned()));
                        hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4), _mm512_set1_epi32(a.add(1).read_unaligned()));
                    }
                    let widen = |at: usize| _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(base.add(at + 16 * s) as *const __m128i)));
                    let scale = _mm512_mul_ps(widen(SCALES_AT), _mm512_set1_ps(*dp.add(sb * 8 + s)));
                    sums = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi)), scale, sums);
                    let dsum = *dp.add(sb * 8 + s) * *sp.add(sb * 8 + s) as f32;
                    mins = _mm512_fmadd_ps(widen(MINS_AT), _mm512_set1_ps(dsum), mins);
                }
                let d = _mm512_cvtph_ps(_mm256_loadu_si256(base as *const __m256i));
                let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(base.add(32) as *const __m256i));
                acc = _mm512_fnmadd_ps(mins, dmin, _mm512_fmadd_ps(sums, d, acc));
            }
        }
        // SAFETY: `y` holds sixteen floats.
        unsafe { _mm512_storeu_ps(y.as_mut_ptr(), acc) };
    }
}

/// Q4_K row · activation.
///
/// Panics unless `p` was packed for Q4_K from `act` and the lengths agree.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi,avx2,fma,f16c")]
pub(super) fn dot_q4k(row: &[u8], act: &ActQ8, p: &Packed) -> f32 {
    let nsb = row.len() / Q4_K_BYTES;
    assert!(row.len() == nsb * Q4_K_BYTES && act.qs.len() == nsb * QK_K);
    assert!(p.qs.len() == nsb * 256 && p.dx.len() == nsb * 64 && p.dsum.len() == nsb * 8);
    let spread = Q4K_SPREAD.map(|ix| {
        // SAFETY: `ix` is sixteen u32.
        unsafe { _mm512_loadu_si512(ix.as_ptr() as *const __m512i) }
    });
    let m4 = _mm512_set1_epi8(0x0F);
    let (ap, dp, sp) = (p.qs.as_ptr() as *const u8, p.dx.as_ptr(), p.dsum.as_ptr());
    // One sum per register of a super-block: four independent chains of multiply-adds.
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut mins = _mm256_setzero_ps();
    for sb in 0..nsb {
        let (sc, mn) = q4k_scales(row, sb * Q4_K_BYTES);
        let scale = _mm512_castps256_ps512(sc);
        // SAFETY: super-block `sb` is whole (its 128 nibble bytes at 16..144 of it) and the
        // asserts above prove 256 packed activation bytes, 64 lane scales and 8 sums for it.
        unsafe {
            let bp = row.as_ptr().add(sb * Q4_K_BYTES);
            prefetch_ahead(bp);
            prefetch_ahead(bp.wrapping_add(64));
            prefetch_ahead(bp.wrapping_add(128));
            mins = _mm256_fmadd_ps(mn, _mm256_loadu_ps(sp.add(sb * 8)), mins);
            for half in 0..2 {
                let q = _mm512_loadu_si512(bp.add(16 + 64 * half) as *const __m512i);
                let nib = [_mm512_and_si512(q, m4), _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4)];
                for (h, w) in nib.into_iter().enumerate() {
                    let r = 2 * half + h;
                    let a = _mm512_loadu_si512(ap.add(sb * 256 + 64 * r) as *const __m512i);
                    let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, a);
                    let f = _mm512_mul_ps(_mm512_permutexvar_ps(spread[r], scale), _mm512_loadu_ps(dp.add(sb * 64 + 16 * r)));
                    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), f, acc[r]);
                }
            }
        }
    }
    let total = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(total) - hsum256(mins)
}

/// `R` Q4_0 rows against `T` activations at once, `out[r][t] = rows[r] · acts[t]` (prompts):
/// each group of weights is loaded and unpacked once for all `T` activations, and each
/// activation register serves all `R` rows.
///
/// Panics unless every `Packed` was made for Q4_0 (four blocks per group) from its `ActQ8` and
/// every length agrees.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi,avx2,fma,f16c")]
pub(super) fn dot_q4_0_tile<const R: usize, const T: usize>(rows: [&[u8]; R], acts: [(&ActQ8, &Packed); T]) -> [[f32; T]; R] {
    let nb = check(rows[0], Q4_0_BYTES, acts[0].0);
    let groups = nb / 4;
    for row in rows {
        assert_eq!(row.len(), rows[0].len());
    }
    for (act, p) in acts {
        check(rows[0], Q4_0_BYTES, act);
        assert!(p.group == 4 && p.qs.len() == groups * 128 && p.corr.len() == groups * 16 && p.dx.len() == groups * 16);
    }
    let (gather, scales) = (load_idx(&Q4_0_GATHER), load_idx(&Q4_0_SCALES));
    let m4 = _mm512_set1_epi8(0x0F);
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    for g in 0..groups {
        // SAFETY: the asserts above prove that every row holds group `g`'s 72 bytes at `72g` (read
        // as [0, 64) and [8, 72)) and every packed activation its 128 bytes and 16 lanes of
        // corrections and scales.
        unsafe {
            let mut lo = [_mm512_setzero_si512(); R];
            let mut hi = [_mm512_setzero_si512(); R];
            let mut dw = [_mm512_setzero_ps(); R];
            for r in 0..R {
                let w = rows[r].as_ptr().add(g * 4 * Q4_0_BYTES);
                let x0 = _mm512_loadu_si512(w as *const __m512i);
                let q = _mm512_permutex2var_epi8(x0, gather, _mm512_loadu_si512(w.add(8) as *const __m512i));
                lo[r] = _mm512_and_si512(q, m4);
                hi[r] = _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4);
                dw[r] = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi8(scales, x0)));
            }
            for (t, (_, p)) in acts.iter().enumerate() {
                let a = (p.qs.as_ptr() as *const u8).add(g * 128);
                let a_lo = _mm512_loadu_si512(a as *const __m512i);
                let a_hi = _mm512_loadu_si512(a.add(64) as *const __m512i);
                let c = _mm512_loadu_si512(p.corr.as_ptr().add(g * 16) as *const __m512i);
                let d = _mm512_loadu_ps(p.dx.as_ptr().add(g * 16));
                for r in 0..R {
                    let s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(c, lo[r], a_lo), hi[r], a_hi);
                    acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[r], d), acc[r][t]);
                }
            }
        }
    }
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        for (t, (act, _)) in acts.iter().enumerate() {
            let mut total = _mm512_reduce_add_ps(acc[r][t]);
            let a = as_bytes(&act.qs);
            for b in groups * 4..nb {
                let s = q4_0_block(rows[r], a, &act.sums, b);
                total += hsum256(_mm256_cvtepi32_ps(s)) * f16_to_f32(&rows[r][b * Q4_0_BYTES..]) * act.d[b];
            }
            out[r][t] = total;
        }
    }
    out
}
