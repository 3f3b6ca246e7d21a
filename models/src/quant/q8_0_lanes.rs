//! The row-lane Q8_0 layout of the AVX-512 VNNI decode kernel: sixteen rows, one per 32-bit lane.
//!
//! The per-row Q8_0 kernels multiply signed by signed bytes, which `vpdpbusd` cannot (one side
//! must be unsigned), and reduce each row at its end. Here the weights are stored made unsigned
//! (`q + 128`, the same bits as `q xor 0x80`), so one `vpdpbusd` multiplies four bytes of each
//! of sixteen rows by four activation bytes, and the block's `−128 · Σ a` starts the sum. Each
//! *tile* (sixteen consecutive rows) is stored as groups of two blocks, each group 1088 bytes
//! (seventeen cache lines, 64-byte aligned):
//!
//! - bytes 0..64: the 32 f16 scales, block-major (`32 · k + 2 · r` is block `k`, row `r`);
//! - bytes 64..1088: per block `k`, eight steps of 64 bytes; step `j` holds quants `4j..4j + 4`
//!   of each row plus 128 (row `r` at `64 + 512 · k + 64 · j + 4 · r`).
//!
//! The group is the same 16 × 2 × 34 bytes as in ggml's layout, so the matrix keeps its size.
//! [`fits`] says which matrices take it (whole tiles and whole groups).

use rayon::prelude::*;

use super::activation::ActQ8;
use super::format::{Q8_0_BYTES, QK};

/// Rows interleaved together.
pub(crate) const TILE_ROWS: usize = 16;
/// Blocks of a row in one group.
pub(crate) const GROUP_BLOCKS: usize = 2;
/// Bytes of one group: sixteen rows × two blocks × 34 bytes.
pub(crate) const GROUP_BYTES: usize = TILE_ROWS * GROUP_BLOCKS * Q8_0_BYTES;
/// Where a group's quants start (after its scales).
pub(crate) const QUANTS_AT: usize = 2 * TILE_ROWS * GROUP_BLOCKS;

/// Whether a `rows × cols` Q8_0 matrix can take the layout.
pub(crate) fn fits(rows: usize, cols: usize) -> bool {
    rows > 0 && rows % TILE_ROWS == 0 && cols > 0 && cols % (GROUP_BLOCKS * QK) == 0
}

/// Where quant `i` (0..32) of row `r`, block `k` of a group lies in the group.
fn quant_at(k: usize, r: usize, i: usize) -> usize {
    QUANTS_AT + 512 * k + 64 * (i / 4) + 4 * r + i % 4
}

/// What the kernel needs besides the bytes, after checking the lengths: the groups per row and
/// each activation block's `−128 · Σ a` correction. Panics unless `data` holds `out.len()` rows
/// (whole tiles) of `act`'s length.
// The interleaved layouts' kernels are x86-64 only (see `Kernel::interleaved_layout`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn kernel_inputs(data: &[u8], act: &ActQ8, out: &[f32]) -> (usize, Vec<i32>) {
    let nb = act.d.len();
    assert!(nb % GROUP_BLOCKS == 0 && act.qs.len() == nb * QK && act.sums.len() == nb && out.len() % TILE_ROWS == 0);
    assert_eq!(data.len(), out.len() * nb * Q8_0_BYTES);
    (nb / GROUP_BLOCKS, act.sums.iter().map(|s| -128 * s).collect())
}

/// Rearranges Q8_0 rows from ggml's layout into tiles (on all cores): `src` holds `rows` rows
/// of `cols` values, `out` is as long. The caller checks [`fits`].
pub(crate) fn interleave_into(src: &[u8], rows: usize, cols: usize, out: &mut [u8]) {
    let row_bytes = cols / QK * Q8_0_BYTES;
    assert!(fits(rows, cols) && src.len() == rows * row_bytes && out.len() == src.len());
    let tile_bytes = TILE_ROWS * row_bytes;
    out.par_chunks_mut(tile_bytes).zip(src.par_chunks(tile_bytes)).for_each(|(dst, src)| {
        for (g, group) in dst.chunks_exact_mut(GROUP_BYTES).enumerate() {
            for r in 0..TILE_ROWS {
                for k in 0..GROUP_BLOCKS {
                    let block = &src[r * row_bytes + (g * GROUP_BLOCKS + k) * Q8_0_BYTES..][..Q8_0_BYTES];
                    group[32 * k + 2 * r..32 * k + 2 * r + 2].copy_from_slice(&block[..2]);
                    for (j, four) in block[2..].chunks_exact(4).enumerate() {
                        let at = quant_at(k, r, 4 * j);
                        let unsigned = u32::from_le_bytes([four[0], four[1], four[2], four[3]]) ^ 0x8080_8080;
                        group[at..at + 4].copy_from_slice(&unsigned.to_le_bytes());
                    }
                }
            }
        }
    });
}

/// Writes row `r` of a tiled matrix (`data`, rows of `cols` values) into `out` in ggml's layout
/// (`out`: one row's bytes).
pub(crate) fn row_into(data: &[u8], cols: usize, r: usize, out: &mut [u8]) {
    let row_bytes = cols / QK * Q8_0_BYTES;
    assert_eq!(out.len(), row_bytes);
    let tile = &data[(r / TILE_ROWS) * TILE_ROWS * row_bytes..][..TILE_ROWS * row_bytes];
    let i = r % TILE_ROWS;
    for (g, group) in tile.chunks_exact(GROUP_BYTES).enumerate() {
        for k in 0..GROUP_BLOCKS {
            let block = &mut out[(g * GROUP_BLOCKS + k) * Q8_0_BYTES..][..Q8_0_BYTES];
            block[..2].copy_from_slice(&group[32 * k + 2 * i..32 * k + 2 * i + 2]);
            for (n, q) in block[2..].iter_mut().enumerate() {
                *q = group[quant_at(k, i, n)] ^ 0x80;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaving_round_trips_and_places_blocks_as_documented() {
        let (rows, cols) = (32, 256);
        let row_bytes = cols / QK * Q8_0_BYTES;
        let src: Vec<u8> = (0..rows * row_bytes).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut data = vec![0u8; src.len()];
        interleave_into(&src, rows, cols, &mut data);
        let mut back = vec![0u8; row_bytes];
        for r in 0..rows {
            row_into(&data, cols, r, &mut back);
            assert_eq!(back, src[r * row_bytes..][..row_bytes], "row {r}");
        }
        // Row 21 (tile 1, row 5), block 5 (group 2, block 1): scale, and quants 0, 6 and 31.
        let (r, b) = (21, 5);
        let block = &src[r * row_bytes + b * Q8_0_BYTES..][..Q8_0_BYTES];
        let group = &data[TILE_ROWS * row_bytes + 2 * GROUP_BYTES..][..GROUP_BYTES];
        assert_eq!(group[32 + 2 * 5..][..2], block[..2]);
        assert_eq!(group[64 + 512 + 4 * 5], block[2] ^ 0x80);
        assert_eq!(group[64 + 512 + 64 + 4 * 5 + 2], block[2 + 6] ^ 0x80);
        assert_eq!(group[64 + 512 + 7 * 64 + 4 * 5 + 3], block[2 + 31] ^ 0x80);
    }

    #[test]
    fn only_whole_tiles_and_groups_fit() {
        assert!(fits(16, 64));
        assert!(fits(2304, 2048) && fits(2048, 5632) && fits(65024, 2048));
        assert!(!fits(8, 64));
        assert!(!fits(16, 32));
        assert!(!fits(0, 64));
    }
}
