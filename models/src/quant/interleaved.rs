//! Weight layouts that interleave rows for the decode kernels, and the choice between them.
//!
//! ggml's layouts keep each row's blocks together, which suits prompts (a row meets many tokens)
//! and files. A decode step multiplies each row by one vector, and there the per-row shuffles
//! and reductions of those layouts cost more than the arithmetic. The interleaved layouts keep
//! the bytes of several rows side by side instead:
//!
//! - Q4_0: octets of eight rows ([`super::octets`]);
//! - Q4_K: tiles of sixteen rows, one row per 32-bit lane ([`super::q4k_lanes`]).
//!
//! [`QMatrix::for_decoding`](super::QMatrix::for_decoding) rearranges a matrix into its layout
//! where the kernel set has a kernel for it; every other path reads rows back in ggml's layout.

use super::format::QuantFormat;
use super::{octets, q4k_lanes};

/// Whether a `rows × cols` matrix of `format` has an interleaved layout.
pub(crate) fn fits(format: QuantFormat, rows: usize, cols: usize) -> bool {
    match format {
        QuantFormat::Q4_0 => octets::fits(format, rows, cols),
        QuantFormat::Q4K => q4k_lanes::fits(rows, cols),
        _ => false,
    }
}

/// Rows interleaved together in `format`'s layout (the decode tasks split rows in multiples of it).
pub(crate) fn tile_rows(format: QuantFormat) -> usize {
    match format {
        QuantFormat::Q4K => q4k_lanes::TILE_ROWS,
        _ => octets::OCTET_ROWS,
    }
}

/// `src` (ggml's layout, `rows` rows of `cols` values) in `format`'s interleaved layout. The
/// caller checks [`fits`].
pub(crate) fn interleave(format: QuantFormat, src: &[u8], rows: usize, cols: usize) -> Lines {
    match format {
        QuantFormat::Q4K => q4k_lanes::interleave(src, rows, cols),
        _ => octets::interleave(src, rows, cols),
    }
}

/// Rows `first..first + n` of an interleaved `format` matrix in ggml's layout.
pub(crate) fn rows(format: QuantFormat, data: &[u8], cols: usize, first: usize, n: usize) -> Vec<u8> {
    match format {
        QuantFormat::Q4K => q4k_lanes::rows(data, cols, first, n),
        _ => octets::rows(data, cols, first, n),
    }
}

/// One 64-byte-aligned cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line([u8; 64]);

/// Bytes in 64-byte-aligned storage (the kernels' loads never straddle two lines).
#[derive(Debug, Clone)]
pub struct Lines {
    lines: Vec<Line>,
    len: usize,
}

impl Lines {
    /// `len` zero bytes.
    pub(crate) fn zeroed(len: usize) -> Lines {
        Lines { lines: vec![Line([0; 64]); len.div_ceil(64)], len }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `Line` is 64 plain bytes without padding, so the vector's lines are
        // `64 · lines.len() ≥ len` initialized bytes.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const u8, self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut u8, self.len) }
    }
}

