//! The row-interleaved Q4_0 layout of the 256-bit decode kernels (AVX-VNNI, AVX2): eight rows' blocks
//! side by side (AVX-512 VNNI reads `block_lanes` instead).
//!
//! In ggml's layout a row is its blocks one after another (a 2-byte f16 scale, then 16 bytes of
//! nibbles). A matrix-vector kernel over it spends a two-source byte permutation gathering four
//! blocks' nibbles into one register, another separating their scales, and a reduction per row
//! of a 1–2 KiB row. Here each *octet* (eight consecutive rows) is stored as groups of four
//! blocks, each group 576 bytes (nine cache lines, 64-byte aligned):
//!
//! - bytes 0..64: the 32 f16 scales, block-major (`16 · k + 2 · r` is block `k`, row `r`);
//! - bytes 64..576: per block `k`, 128 bytes: row `r`'s 16 nibble bytes at `64 + 128 · k + 16 · r`.
//!
//! One aligned load then holds one block of four rows, the activation's block is broadcast to
//! every 128-bit lane, and the eight rows' scales convert in one instruction. The group is the
//! same 8 × 72 bytes as in ggml's layout, so the matrix keeps its size. [`fits`] says which
//! matrices take it (whole octets and whole groups); the rest keep ggml's layout.

use rayon::prelude::*;

use super::activation::ActQ8;
use super::format::{Q4_0_BYTES, QK};

/// Rows interleaved together.
pub(crate) const OCTET_ROWS: usize = 8;
/// Blocks of a row in one group.
pub(crate) const GROUP_BLOCKS: usize = 4;
/// Bytes of one group: eight rows × four blocks × 18 bytes.
pub(crate) const GROUP_BYTES: usize = OCTET_ROWS * GROUP_BLOCKS * Q4_0_BYTES;

/// Whether a `rows × cols` Q4_0 matrix can take the octet layout.
pub(crate) fn fits(rows: usize, cols: usize) -> bool {
    rows > 0 && rows.is_multiple_of(OCTET_ROWS) && cols > 0 && cols.is_multiple_of(GROUP_BLOCKS * QK)
}

/// The groups per row of an octet kernel's input, after checking the lengths (the kernel reads
/// each block's `−8 · Σ a` correction from the activation's sums as it goes). Panics unless
/// `data` holds `out.len()` rows (whole octets) of `act`'s length.
// The interleaved layouts' kernels are x86-64 only (see `Kernel::interleaved_layout`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn kernel_inputs(data: &[u8], act: &ActQ8, out: &[f32]) -> usize {
    let nb = act.d.len();
    assert!(nb.is_multiple_of(GROUP_BLOCKS) && act.qs.len() == nb * QK && act.sums.len() == nb && out.len().is_multiple_of(OCTET_ROWS));
    assert_eq!(data.len(), out.len() * nb * Q4_0_BYTES);
    nb / GROUP_BLOCKS
}

/// Rearranges Q4_0 rows from ggml's layout into octets (on all cores): `src` holds `rows`
/// rows of `cols` values, `out` is as long. The caller checks [`fits`].
pub(crate) fn interleave_into(src: &[u8], rows: usize, cols: usize, out: &mut [u8]) {
    let row_bytes = cols / QK * Q4_0_BYTES;
    assert!(fits(rows, cols) && src.len() == rows * row_bytes && out.len() == src.len());
    let octet_bytes = OCTET_ROWS * row_bytes;
    out.par_chunks_mut(octet_bytes).zip(src.par_chunks(octet_bytes)).for_each(|(dst, src)| {
        for (g, group) in dst.chunks_exact_mut(GROUP_BYTES).enumerate() {
            for r in 0..OCTET_ROWS {
                for k in 0..GROUP_BLOCKS {
                    let at = r * row_bytes + (g * GROUP_BLOCKS + k) * Q4_0_BYTES;
                    let block = &src[at..at + Q4_0_BYTES];
                    group[16 * k + 2 * r..16 * k + 2 * r + 2].copy_from_slice(&block[..2]);
                    group[64 + 128 * k + 16 * r..64 + 128 * k + 16 * r + 16].copy_from_slice(&block[2..]);
                }
            }
        }
    });
}

/// Writes row `r` of an octet-layout matrix (`data`, rows of `cols` values) into `out` in
/// ggml's layout (`out`: one row's bytes).
pub(crate) fn row_into(data: &[u8], cols: usize, r: usize, out: &mut [u8]) {
    let row_bytes = cols / QK * Q4_0_BYTES;
    assert_eq!(out.len(), row_bytes);
    let octet = &data[(r / OCTET_ROWS) * OCTET_ROWS * row_bytes..][..OCTET_ROWS * row_bytes];
    let i = r % OCTET_ROWS;
    for (g, group) in octet.chunks_exact(GROUP_BYTES).enumerate() {
        for k in 0..GROUP_BLOCKS {
            let block = &mut out[(g * GROUP_BLOCKS + k) * Q4_0_BYTES..][..Q4_0_BYTES];
            block[..2].copy_from_slice(&group[16 * k + 2 * i..16 * k + 2 * i + 2]);
            block[2..].copy_from_slice(&group[64 + 128 * k + 16 * i..64 + 128 * k + 16 * i + 16]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaving_round_trips_and_places_blocks_as_documented() {
        let (rows, cols) = (16, 256);
        let row_bytes = cols / QK * Q4_0_BYTES;
        let src: Vec<u8> = (0..rows * row_bytes).map(|i| (i * 7 + i / 251) as u8).collect();
        let lines = super::super::interleaved::interleave(super::super::interleaved::Layout::Q4_0Octets, &src, rows, cols, &mut |_| {});
        let data = lines.as_slice();
        assert_eq!(data.len(), src.len());
        assert_eq!(data.as_ptr() as usize % 64, 0, "64-byte aligned");
        assert_eq!(super::super::interleaved::rows(super::super::interleaved::Layout::Q4_0Octets, data, cols, 0, rows), src);
        assert_eq!(super::super::interleaved::rows(super::super::interleaved::Layout::Q4_0Octets, data, cols, 5, 6), src[5 * row_bytes..11 * row_bytes]);
        // Row 11 (octet 1, row 3), block 6 (group 1, block 2): scale and nibbles.
        let (r, b) = (11, 6);
        let block = &src[r * row_bytes + b * Q4_0_BYTES..][..Q4_0_BYTES];
        let group = &data[OCTET_ROWS * row_bytes + GROUP_BYTES..][..GROUP_BYTES];
        assert_eq!(group[16 * 2 + 2 * 3..][..2], block[..2]);
        assert_eq!(group[64 + 128 * 2 + 16 * 3..][..16], block[2..]);
    }

    #[test]
    fn only_whole_octets_and_groups_fit() {
        assert!(fits(8, 128));
        assert!(fits(2560, 2048));
        assert!(!fits(12, 128));
        assert!(!fits(8, 96));
        assert!(!fits(0, 128));
    }
}
