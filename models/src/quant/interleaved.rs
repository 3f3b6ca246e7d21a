//! Weight layouts that interleave rows for the decode kernels, and the choice between them.
//!
//! ggml's layouts keep each row's blocks together, which suits prompts (a row meets many tokens)
//! and files. A decode step multiplies each row by one vector, and there the per-row shuffles
//! and reductions of those layouts cost more than the arithmetic. The interleaved layouts keep
//! the bytes of several rows side by side instead:
//!
//! - Q4_0 and Q8_0 on AVX-512 VNNI: tiles of sixteen rows, one row per 32-bit lane
//!   ([`super::block_lanes`]);
//! - Q4_0 on the 256-bit kernel sets: octets of eight rows ([`super::octets`]);
//! - Q4_K: tiles of sixteen rows, one row per 32-bit lane ([`super::q4k_lanes`]).
//!
//! [`QMatrix::for_decoding`](super::QMatrix::for_decoding) rearranges a matrix into the layout
//! of the fastest kernel set where it has one ([`Layout`]); every other path reads rows back in
//! ggml's layout. The bytes sit on huge pages where the OS gives them ([`Lines`]).

use std::ops::Range;

use rayon::prelude::*;

use super::format::QuantFormat;
use crate::pages::PageBuffer;
use super::{block_lanes, octets, q4k_lanes};

/// A row-interleaved layout (which one a matrix takes depends on the kernel set that decodes
/// it: [`Kernel::interleaved_layout`](super::Kernel::interleaved_layout)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Q4_0 in octets of eight rows, a 128-bit lane per row ([`octets`]; the 256-bit kernels).
    Q4_0Octets,
    /// Q4_0 in tiles of sixteen rows, a 32-bit lane per row ([`block_lanes`]; AVX-512 VNNI).
    Q4_0Lanes,
    /// Q4_K in tiles of sixteen rows, a 32-bit lane per row ([`q4k_lanes`]).
    Q4kLanes,
    /// Q8_0 in tiles of sixteen rows, a 32-bit lane per row, stored unsigned ([`block_lanes`]; AVX-512 VNNI).
    Q8_0Lanes,
}

impl Layout {
    /// Every layout.
    #[cfg(test)]
    pub(crate) const ALL: [Layout; 4] = [Layout::Q4_0Octets, Layout::Q4_0Lanes, Layout::Q4kLanes, Layout::Q8_0Lanes];

    /// The format whose blocks it holds.
    pub(crate) fn format(self) -> QuantFormat {
        match self {
            Layout::Q4_0Octets | Layout::Q4_0Lanes => QuantFormat::Q4_0,
            Layout::Q4kLanes => QuantFormat::Q4K,
            Layout::Q8_0Lanes => QuantFormat::Q8_0,
        }
    }

    /// Whether a `rows × cols` matrix takes it.
    pub(crate) fn fits(self, rows: usize, cols: usize) -> bool {
        match self {
            Layout::Q4_0Octets => octets::fits(rows, cols),
            Layout::Q4_0Lanes => block_lanes::Q4_0.fits(rows, cols),
            Layout::Q4kLanes => q4k_lanes::fits(rows, cols),
            Layout::Q8_0Lanes => block_lanes::Q8_0.fits(rows, cols),
        }
    }

    /// Rows interleaved together (the decode tasks split rows in multiples of it).
    pub(crate) fn tile_rows(self) -> usize {
        match self {
            Layout::Q4_0Octets => octets::OCTET_ROWS,
            Layout::Q4kLanes => q4k_lanes::TILE_ROWS,
            Layout::Q4_0Lanes | Layout::Q8_0Lanes => block_lanes::TILE_ROWS,
        }
    }

    /// Bytes of a `rows × cols` matrix in this layout.
    fn len(self, rows: usize, cols: usize) -> usize {
        match self {
            Layout::Q4kLanes => q4k_lanes::len(rows, cols),
            Layout::Q8_0Lanes => rows * cols / super::format::QK * super::format::Q8_0_BYTES,
            _ => rows * cols / super::format::QK * super::format::Q4_0_BYTES,
        }
    }
}

/// Source bytes rearranged (or copied, `QMatrix::for_decoding`) at a time before the source's
/// pages are released.
pub(crate) const PIECE_BYTES: usize = 8 << 20;

/// `src` (ggml's layout, `rows` rows of `cols` values) in `layout`, a piece
/// of about 8 MiB at a time; after each, `release(range)` is told the range of `src` done (a
/// mapped file's pages can then leave memory, so that a matrix is never held twice). The caller
/// checks [`Layout::fits`].
pub(crate) fn interleave(layout: Layout, src: &[u8], rows: usize, cols: usize, release: &mut dyn FnMut(Range<usize>)) -> Lines {
    interleave_in_pieces(layout, src, rows, cols, PIECE_BYTES, release)
}

fn interleave_in_pieces(layout: Layout, src: &[u8], rows: usize, cols: usize, piece_bytes: usize, release: &mut dyn FnMut(Range<usize>)) -> Lines {
    let tile = layout.tile_rows();
    let (src_tile, out_tile) = (src.len() / rows * tile, layout.len(tile, cols));
    let mut out = Lines::zeroed(rows / tile * out_tile);
    let tiles_per_piece = (piece_bytes / src_tile).clamp(1, rows / tile);
    let pieces = out.as_mut_slice().chunks_mut(tiles_per_piece * out_tile).zip(src.chunks(tiles_per_piece * src_tile));
    for (i, (dst, part)) in pieces.enumerate() {
        let n = part.len() / src_tile * tile;
        match layout {
            Layout::Q4_0Octets => octets::interleave_into(part, n, cols, dst),
            Layout::Q4_0Lanes => block_lanes::Q4_0.interleave_into(part, n, cols, dst),
            Layout::Q4kLanes => q4k_lanes::interleave_into(part, n, cols, dst),
            Layout::Q8_0Lanes => block_lanes::Q8_0.interleave_into(part, n, cols, dst),
        }
        let start = i * tiles_per_piece * src_tile;
        release(start..start + part.len());
    }
    out
}

/// Rows `first..first + n` of a matrix in `layout`, in ggml's layout (on all cores).
pub(crate) fn rows(layout: Layout, data: &[u8], cols: usize, first: usize, n: usize) -> Vec<u8> {
    let format = layout.format();
    let row_bytes = cols / format.block_len() * format.block_bytes();
    let mut out = vec![0u8; n * row_bytes];
    out.par_chunks_exact_mut(row_bytes).enumerate().for_each(|(i, o)| match layout {
        Layout::Q4_0Octets => octets::row_into(data, cols, first + i, o),
        Layout::Q4_0Lanes => block_lanes::Q4_0.row_into(data, cols, first + i, o),
        Layout::Q4kLanes => q4k_lanes::row_into(data, cols, first + i, o),
        Layout::Q8_0Lanes => block_lanes::Q8_0.row_into(data, cols, first + i, o),
    });
    out
}

/// Bytes starting on a page boundary (so the kernels' loads never straddle two cache lines),
/// on huge pages where the OS gives them ([`PageBuffer::for_weights`]: packed after the model's
/// other matrices while it loads).
#[derive(Debug)]
pub struct Lines(PageBuffer);

impl Lines {
    /// `len` zero bytes. Panics where the OS refuses the memory, as a vector's allocation would.
    pub(crate) fn zeroed(len: usize) -> Lines {
        Lines(PageBuffer::for_weights(len).unwrap_or_else(|e| panic!("cannot map {len} bytes for a weight matrix: {e}")))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.0.as_slice()
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        self.0.as_mut_slice()
    }
}

impl Clone for Lines {
    fn clone(&self) -> Lines {
        let len = self.as_slice().len();
        Lines(PageBuffer::copy_of(self.as_slice()).unwrap_or_else(|e| panic!("cannot map {len} bytes for a weight matrix: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_give_the_whole_layout_and_release_every_source_byte_once() {
        for (layout, rows, cols) in [(Layout::Q4_0Octets, 40, 256), (Layout::Q4_0Lanes, 80, 256), (Layout::Q4kLanes, 80, 512), (Layout::Q8_0Lanes, 80, 128)] {
            let format = layout.format();
            let src: Vec<u8> = (0..format.row_bytes(cols).unwrap() * rows).map(|i| (i * 31 + i / 7) as u8).collect();
            let whole = interleave_in_pieces(layout, &src, rows, cols, src.len(), &mut |_| {});
            let mut released = Vec::new();
            // About two tiles a piece, and a last piece shorter than the others.
            let tile_bytes = src.len() / rows * layout.tile_rows();
            let pieces = interleave_in_pieces(layout, &src, rows, cols, 2 * tile_bytes + 1, &mut |r| released.push(r));
            assert_eq!(pieces.as_slice(), whole.as_slice(), "{layout:?}");
            assert_eq!(super::rows(layout, pieces.as_slice(), cols, 0, rows), src, "{layout:?}");
            let ends: Vec<usize> = released.iter().map(|r| r.end).collect();
            assert_eq!(released[0].start, 0);
            assert!(released.windows(2).all(|w| w[0].end == w[1].start), "{layout:?}: {released:?}");
            assert_eq!(*ends.last().unwrap(), src.len());
            assert!(released.len() > 2, "{layout:?}: several pieces");
        }
    }
}
