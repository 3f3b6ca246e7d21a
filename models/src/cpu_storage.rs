//! Reading candle's CPU storage in this crate's custom ops.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout};

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
