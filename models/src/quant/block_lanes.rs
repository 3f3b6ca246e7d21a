//! The row-lane layouts of the AVX-512 VNNI decode kernels for the 32-weight block formats
//! (Q4_0, Q8_0): sixteen rows, one per 32-bit lane.
//!
//! ggml's layouts keep a row's blocks together; the octet layout ([`super::octets`]) gives each
//! row a 128-bit lane, so a block's integer sums sit in four lanes per row and every block needs
//! two permutations to spread the rows' scales over them. Here a 512-bit register holds four
//! bytes of each of sixteen rows, so one `vpdpbusd` against four activation bytes (broadcast
//! from memory) adds into one lane per row, and a block's sums meet the sixteen rows' scales as
//! they load. Each *tile* (sixteen consecutive rows) is stored as groups of two blocks
//! (64-byte aligned; Q4_0 576 bytes, Q8_0 1088):
//!
//! - bytes 0..64: the 32 f16 scales, block-major (`32 · k + 2 · r` is block `k`, row `r`);
//! - then per block `k`, steps of 64 bytes (Q4_0 four, Q8_0 eight); step `j` holds bytes
//!   `4j..4j + 4` of each row's block payload (row `r` at `64 + 16 · P · k + 64 · j + 4 · r`, `P`
//!   the payload's bytes). Q4_0's payload is its 16 nibble bytes as they are (bytes `4j..4j + 4`
//!   hold weights `4j..4j + 4` in their low nibbles and `16 + 4j..` in their high ones); Q8_0's is
//!   its 32 quants plus 128 (`q xor 0x80`), so that `vpdpbusd` takes them as its unsigned side.
//!
//! Unsigned weights `u = q + offset` (Q4_0's nibbles are `q + 8`) give `Σ u · a = Σ q · a +
//! offset · Σ a`, so each block's sums start from `−offset · Σ a` ([`Lanes::offset`]).
//! A group holds the same 16 × 2 blocks as in ggml's layout, so the matrix keeps its size.

use rayon::prelude::*;

use super::activation::ActQ8;
use super::format::{Q4_0_BYTES, Q8_0_BYTES, QK};

/// Rows interleaved together.
pub(crate) const TILE_ROWS: usize = 16;
/// Blocks of a row in one group.
pub(crate) const GROUP_BLOCKS: usize = 2;
/// Bytes of a group's scales (before its payloads).
pub(crate) const SCALES_BYTES: usize = 2 * TILE_ROWS * GROUP_BLOCKS;

/// One format's row-lane layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lanes {
    /// Bytes of one block in ggml's layout (an f16 scale, then the payload).
    block_bytes: usize,
    /// What the stored payload bytes are XORed with (Q8_0: its quants made unsigned).
    flip: u8,
    /// What the stored unsigned weights exceed the signed ones by.
    offset: i32,
}

/// Q4_0: the nibbles (`q + 8`) as they are.
pub(crate) const Q4_0: Lanes = Lanes { block_bytes: Q4_0_BYTES, flip: 0, offset: 8 };
/// Q8_0: the quants plus 128.
pub(crate) const Q8_0: Lanes = Lanes { block_bytes: Q8_0_BYTES, flip: 0x80, offset: 128 };

impl Lanes {
    /// Bytes of one block's payload (after its scale).
    fn payload(self) -> usize {
        self.block_bytes - 2
    }

    /// Bytes of one block's payloads for the sixteen rows of a tile.
    pub(crate) fn block_payloads(self) -> usize {
        TILE_ROWS * self.payload()
    }

    /// Bytes of one group.
    pub(crate) fn group_bytes(self) -> usize {
        TILE_ROWS * GROUP_BLOCKS * self.block_bytes
    }

    /// Whether a `rows × cols` matrix can take the layout (whole tiles, whole groups).
    pub(crate) fn fits(self, rows: usize, cols: usize) -> bool {
        rows > 0 && rows.is_multiple_of(TILE_ROWS) && cols > 0 && cols.is_multiple_of(GROUP_BLOCKS * QK)
    }

    /// Where payload byte `i` of row `r`, block `k` of a group lies in the group.
    fn byte_at(self, k: usize, r: usize, i: usize) -> usize {
        SCALES_BYTES + self.block_payloads() * k + 64 * (i / 4) + 4 * r + i % 4
    }

    /// What the stored unsigned weights exceed the signed ones by: a block's sums start from
    /// `−offset · Σ a`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn offset(self) -> i32 {
        self.offset
    }

    /// The groups per row of a kernel's input, after checking the lengths. Panics unless
    /// `data` holds `out.len()` rows (whole tiles) of `act`'s length.
    // The interleaved layouts' kernels are x86-64 only (see `Kernel::interleaved_layout`).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn kernel_inputs(self, data: &[u8], act: &ActQ8, out: &[f32]) -> usize {
        let nb = act.d.len();
        assert!(nb.is_multiple_of(GROUP_BLOCKS) && act.qs.len() == nb * QK && act.sums.len() == nb && out.len().is_multiple_of(TILE_ROWS));
        assert_eq!(data.len(), out.len() * nb * self.block_bytes);
        nb / GROUP_BLOCKS
    }

    /// Rearranges rows from ggml's layout into tiles (on all cores): `src` holds `rows` rows of
    /// `cols` values, `out` is as long. The caller checks [`Lanes::fits`].
    pub(crate) fn interleave_into(self, src: &[u8], rows: usize, cols: usize, out: &mut [u8]) {
        let row_bytes = cols / QK * self.block_bytes;
        assert!(self.fits(rows, cols) && src.len() == rows * row_bytes && out.len() == src.len());
        let flip = u32::from_le_bytes([self.flip; 4]);
        let tile_bytes = TILE_ROWS * row_bytes;
        out.par_chunks_mut(tile_bytes).zip(src.par_chunks(tile_bytes)).for_each(|(dst, src)| {
            for (g, group) in dst.chunks_exact_mut(self.group_bytes()).enumerate() {
                for r in 0..TILE_ROWS {
                    for k in 0..GROUP_BLOCKS {
                        let block = &src[r * row_bytes + (g * GROUP_BLOCKS + k) * self.block_bytes..][..self.block_bytes];
                        group[32 * k + 2 * r..32 * k + 2 * r + 2].copy_from_slice(&block[..2]);
                        for (j, four) in block[2..].chunks_exact(4).enumerate() {
                            let at = self.byte_at(k, r, 4 * j);
                            let stored = u32::from_le_bytes([four[0], four[1], four[2], four[3]]) ^ flip;
                            group[at..at + 4].copy_from_slice(&stored.to_le_bytes());
                        }
                    }
                }
            }
        });
    }

    /// Writes row `r` of a tiled matrix (`data`, rows of `cols` values) into `out` in ggml's
    /// layout (`out`: one row's bytes).
    pub(crate) fn row_into(self, data: &[u8], cols: usize, r: usize, out: &mut [u8]) {
        let row_bytes = cols / QK * self.block_bytes;
        assert_eq!(out.len(), row_bytes);
        let tile = &data[(r / TILE_ROWS) * TILE_ROWS * row_bytes..][..TILE_ROWS * row_bytes];
        let i = r % TILE_ROWS;
        for (g, group) in tile.chunks_exact(self.group_bytes()).enumerate() {
            for k in 0..GROUP_BLOCKS {
                let block = &mut out[(g * GROUP_BLOCKS + k) * self.block_bytes..][..self.block_bytes];
                block[..2].copy_from_slice(&group[32 * k + 2 * i..32 * k + 2 * i + 2]);
                for (n, b) in block[2..].iter_mut().enumerate() {
                    *b = group[self.byte_at(k, i, n)] ^ self.flip;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaving_round_trips_and_places_blocks_as_documented() {
        for (lanes, payload) in [(Q4_0, 16), (Q8_0, 32)] {
            let (rows, cols) = (32, 256);
            let row_bytes = cols / QK * lanes.block_bytes;
            let src: Vec<u8> = (0..rows * row_bytes).map(|i| (i * 7 + i / 251) as u8).collect();
            let mut data = vec![0u8; src.len()];
            lanes.interleave_into(&src, rows, cols, &mut data);
            let mut back = vec![0u8; row_bytes];
            for r in 0..rows {
                lanes.row_into(&data, cols, r, &mut back);
                assert_eq!(back, src[r * row_bytes..][..row_bytes], "{lanes:?} row {r}");
            }
            // Row 21 (tile 1, row 5), block 5 (group 2, block 1): scale, and payload bytes 0, 6
            // and the last.
            let (r, b) = (21, 5);
            let block = &src[r * row_bytes + b * lanes.block_bytes..][..lanes.block_bytes];
            let group = &data[TILE_ROWS * row_bytes + 2 * lanes.group_bytes()..][..lanes.group_bytes()];
            let second = 64 + 16 * payload;
            assert_eq!(group[32 + 2 * 5..][..2], block[..2]);
            assert_eq!(group[second + 4 * 5], block[2] ^ lanes.flip);
            assert_eq!(group[second + 64 + 4 * 5 + 2], block[2 + 6] ^ lanes.flip);
            assert_eq!(group[second + (payload / 4 - 1) * 64 + 4 * 5 + 3], block[2 + payload - 1] ^ lanes.flip);
        }
    }

    #[test]
    fn only_whole_tiles_and_groups_fit() {
        for lanes in [Q4_0, Q8_0] {
            assert!(lanes.fits(16, 64));
            assert!(lanes.fits(2304, 2048) && lanes.fits(2048, 5632) && lanes.fits(65024, 2048));
            assert!(!lanes.fits(8, 64));
            assert!(!lanes.fits(16, 32));
            assert!(!lanes.fits(0, 64));
        }
    }
}
