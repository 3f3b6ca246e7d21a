//! The tensors of the decode attention as the kernels read them: 4-D views with contiguous rows,
//! and the keys and values in the dtype the cache stores (f32, or f16 for quantized models).
//!
//! The kernels read f32 rows only. An f16 cache is widened a block of positions at a time into a
//! small f32 buffer (32 rows of 128 values are 16 KiB, in L1 while the block's heads read it):
//! memory is read at half the bytes, and the register-tile kernels stay as they are.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout};
use half::f16;
use std::ops::Range;

use super::Simd;

/// A 4-D tensor whose last dimension is contiguous.
#[derive(Clone, Copy)]
pub(super) struct View<'a, T = f32> {
    data: &'a [T],
    start: usize,
    pub(super) dims: [usize; 4],
    pub(super) strides: [usize; 4],
    /// The position of the third axis that the view's first row stands for (0, but a block
    /// widened into a buffer keeps the positions of the cache it came from).
    origin: usize,
    /// Whether the rows come from memory, where reading ahead pays (not a widened block in L1).
    /// Read by the x86-64 prefetches only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) streamed: bool,
}

impl<'a, T> View<'a, T> {
    /// The view of `data` that `l` describes, checked to lie inside it.
    pub(super) fn new(what: &str, data: &'a [T], l: &Layout) -> candle_core::Result<View<'a, T>> {
        let (Ok(dims), Ok(strides)) = (<[usize; 4]>::try_from(l.dims()), <[usize; 4]>::try_from(l.stride())) else {
            candle_core::bail!("decode attention: {what} has shape {:?}, not 4-D", l.dims());
        };
        if strides[3] != 1 && dims[3] > 1 {
            candle_core::bail!("decode attention: the rows of {what} are not contiguous");
        }
        // The furthest element must lie inside the storage (every index below stays under it).
        let last = l.start_offset() + (0..4).map(|i| dims[i].saturating_sub(1) * strides[i]).sum::<usize>();
        if dims.contains(&0) || last >= data.len() {
            candle_core::bail!("decode attention: {what} has an empty or out-of-range layout");
        }
        Ok(View { data, start: l.start_offset(), dims, strides, origin: 0, streamed: true })
    }

    /// Row `[i, j, k, ..]`.
    pub(super) fn row(&self, i: usize, j: usize, k: usize) -> &'a [T] {
        let at = self.start + i * self.strides[0] + j * self.strides[1] + (k - self.origin) * self.strides[2];
        &self.data[at..at + self.dims[3]]
    }
}

/// Keys or values as the cache holds them.
pub(super) enum Cached<'a> {
    F32(View<'a>),
    F16(View<'a, f16>),
}

impl<'a> Cached<'a> {
    /// The view of a key or value storage (f32 or f16).
    pub(super) fn new(what: &str, s: &'a CpuStorage, l: &Layout) -> candle_core::Result<Cached<'a>> {
        match s {
            CpuStorage::F32(data) => Ok(Cached::F32(View::new(what, data, l)?)),
            CpuStorage::F16(data) => Ok(Cached::F16(View::new(what, data, l)?)),
            other => candle_core::bail!("decode attention: {what} is {:?}, not f32 or f16", other.dtype()),
        }
    }

    /// `[batch, groups, positions, head_dim]`.
    pub(super) fn dims(&self) -> [usize; 4] {
        match self {
            Cached::F32(v) => v.dims,
            Cached::F16(v) => v.dims,
        }
    }

    /// The rows `block` of batch row `bi`, group `gi` as an f32 view addressed as the cache is
    /// (same `bi`, `gi` and positions): the cache itself where it holds f32, else those rows
    /// widened into `buffer`.
    pub(super) fn block<'s>(&'s self, simd: Simd, bi: usize, gi: usize, block: Range<usize>, buffer: &'s mut Vec<f32>) -> View<'s> {
        match self {
            Cached::F32(v) => *v,
            Cached::F16(v) => {
                let d = v.dims[3];
                buffer.resize(block.len() * d, 0.0);
                for (t, out) in block.clone().zip(buffer.chunks_exact_mut(d)) {
                    simd.widen(v.row(bi, gi, t), out);
                }
                // Every batch row and group maps to the buffer; only `bi`, `gi` are ever asked for.
                View { data: buffer, start: 0, dims: [v.dims[0], v.dims[1], block.end, d], strides: [0, 0, d, 1], origin: block.start, streamed: false }
            }
        }
    }
}
