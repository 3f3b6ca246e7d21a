//! Reading candle's CPU storage in this crate's custom ops.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Storage, Tensor};

/// The values of an f32, contiguous CPU input; `op` and `what` name the operation and the input
/// in the errors for anything else.
pub(crate) fn contiguous_f32<'a>(op: &str, what: &str, s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("{op}: {what} is {:?}, not f32", s.dtype());
    };
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: {what} is not contiguous"),
    }
}

/// Calls `f` with the values of `t` where it is a contiguous f32 tensor on the CPU, without
/// copying them; `None` for any other tensor.
pub(crate) fn with_f32_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(data)) => layout.contiguous_offsets().map(|(start, end)| f(&data[start..end])),
        _ => None,
    }
}
