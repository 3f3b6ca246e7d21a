//! Q4_K in row lanes: sixteen rows interleaved so that each 32-bit lane of a 512-bit register
//! is one row.
//!
//! ggml's Q4_K super-block (256 weights of one row, 144 bytes) packs eight 6-bit sub-block scales
//! and minimums into 12 bytes; a kernel over it unpacks them with shuffles for every row and
//! spreads them over the lanes its nibbles landed in. Here a *tile* of sixteen rows keeps, per
//! super-block, 2368 bytes (37 cache lines, 64-byte aligned):
//!
//! - 0..32: the sixteen rows' `d` (f16); 32..64: their `dmin`;
//! - 64..192: the scales as bytes, sub-block-major (`64 + 16 · s + i`: sub-block `s`, row `i`);
//!   192..320: the minimums, likewise;
//! - 320..2368: 32 steps of 64 bytes, step `t` covering weights `8t..8t + 8` of the super-block:
//!   byte `4i + j` holds row `i`'s weight `8t + j` in its low nibble and `8t + 4 + j` in its high.
//!
//! One step is then one load and two `vpdpbusd` against four activation bytes broadcast to every
//! lane, and each sub-block's scales and minimums are one byte load widened per lane: no shuffle
//! anywhere. The scales take a byte each instead of six bits, so the layout is 64 bytes (2.8%)
//! larger than ggml's per tile and super-block.
//!
//! Keeping ggml's packed six bits instead (its 12 bytes a row as three words of a dword a lane,
//! exactly ggml's size) was measured three ways at stop 25 and gained nothing: the shifts and
//! masks cost more than the 2.8% of bytes (ARCHITECTURE.md, Quantization, stop 25).

use rayon::prelude::*;

use super::activation::ActQ8;
use super::format::{q4k_pack_scales, q4k_scale_min, Q4_K_BYTES, QK_K};

/// Rows of one tile.
pub(crate) const TILE_ROWS: usize = 16;
/// Bytes of one tile's super-block.
pub(crate) const TILE_BYTES: usize = 320 + 2048;
/// Offsets within a tile's super-block.
pub(crate) const SCALES_AT: usize = 64;
pub(crate) const MINS_AT: usize = 192;
pub(crate) const NIBBLES_AT: usize = 320;

/// Whether a `rows × cols` Q4_K matrix can take the layout.
pub(crate) fn fits(rows: usize, cols: usize) -> bool {
    rows > 0 && rows.is_multiple_of(TILE_ROWS) && cols > 0 && cols.is_multiple_of(QK_K)
}

/// The 128 nibble bytes of one row's super-block, ggml's `qs` → a tile's steps (row `i`'s four
/// bytes of each 64-byte step). ggml's byte `32p + e` holds weight `64p + e` (low) and
/// `64p + 32 + e` (high); step `t`'s byte `j` holds weights `8t + j` (low) and `8t + 4 + j` (high).
fn nibbles_to_lanes(qs: &[u8], i: usize, steps: &mut [u8]) {
    for p in 0..4 {
        for u in 0..4 {
            for j in 0..4 {
                let (a, b) = (qs[32 * p + 8 * u + j], qs[32 * p + 8 * u + j + 4]);
                steps[64 * (8 * p + u) + 4 * i + j] = (a & 0x0F) | (b << 4);
                steps[64 * (8 * p + 4 + u) + 4 * i + j] = (a >> 4) | (b & 0xF0);
            }
        }
    }
}

/// The inverse of [`nibbles_to_lanes`].
fn lanes_to_nibbles(steps: &[u8], i: usize, qs: &mut [u8]) {
    for p in 0..4 {
        for u in 0..4 {
            for j in 0..4 {
                let (lo, hi) = (steps[64 * (8 * p + u) + 4 * i + j], steps[64 * (8 * p + 4 + u) + 4 * i + j]);
                qs[32 * p + 8 * u + j] = (lo & 0x0F) | (hi << 4);
                qs[32 * p + 8 * u + j + 4] = (lo >> 4) | (hi & 0xF0);
            }
        }
    }
}

/// Bytes of `rows × cols` in this layout.
pub(crate) fn len(rows: usize, cols: usize) -> usize {
    rows / TILE_ROWS * (cols / QK_K) * TILE_BYTES
}

/// The super-blocks per row of a row-lane kernel's input, after checking the lengths (the
/// kernel forms each 32-value activation block's `d · Σ qs`, the minimums' factor, as it goes).
/// Panics unless `data` holds `out.len()` rows (whole tiles) of `act`'s length.
// The interleaved layouts' kernels are x86-64 only (see `Kernel::interleaved_layout`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn kernel_inputs(data: &[u8], act: &ActQ8, out: &[f32]) -> usize {
    let nsb = act.d.len() / 8;
    assert!(act.d.len() == nsb * 8 && act.qs.len() == nsb * QK_K && act.sums.len() == nsb * 8 && out.len().is_multiple_of(TILE_ROWS));
    assert_eq!(data.len(), out.len() / TILE_ROWS * nsb * TILE_BYTES);
    nsb
}

/// Rearranges Q4_K rows from ggml's layout (on all cores): `src` holds `rows` rows of `cols`
/// values, `out` their [`len`]. The caller checks [`fits`].
pub(crate) fn interleave_into(src: &[u8], rows: usize, cols: usize, out: &mut [u8]) {
    assert!(fits(rows, cols));
    let nsb = cols / QK_K;
    assert!(src.len() == rows * nsb * Q4_K_BYTES && out.len() == len(rows, cols));
    let tile_src = TILE_ROWS * nsb * Q4_K_BYTES;
    out.par_chunks_mut(nsb * TILE_BYTES).zip(src.par_chunks(tile_src)).for_each(|(dst, src)| {
        for (sb, t) in dst.chunks_exact_mut(TILE_BYTES).enumerate() {
            for i in 0..TILE_ROWS {
                let b = &src[(i * nsb + sb) * Q4_K_BYTES..][..Q4_K_BYTES];
                t[2 * i..2 * i + 2].copy_from_slice(&b[0..2]);
                t[32 + 2 * i..32 + 2 * i + 2].copy_from_slice(&b[2..4]);
                for s in 0..8 {
                    let (sc, m) = q4k_scale_min(s, &b[4..16]);
                    t[SCALES_AT + 16 * s + i] = sc;
                    t[MINS_AT + 16 * s + i] = m;
                }
                nibbles_to_lanes(&b[16..], i, &mut t[NIBBLES_AT..]);
            }
        }
    });
}

/// Writes row `r` of a row-lane matrix (`data`, rows of `cols` values) into `out` in ggml's layout.
pub(crate) fn row_into(data: &[u8], cols: usize, r: usize, out: &mut [u8]) {
    let nsb = cols / QK_K;
    assert_eq!(out.len(), nsb * Q4_K_BYTES);
    let tile = &data[(r / TILE_ROWS) * nsb * TILE_BYTES..][..nsb * TILE_BYTES];
    let i = r % TILE_ROWS;
    for (t, b) in tile.chunks_exact(TILE_BYTES).zip(out.chunks_exact_mut(Q4_K_BYTES)) {
        b[0..2].copy_from_slice(&t[2 * i..2 * i + 2]);
        b[2..4].copy_from_slice(&t[32 + 2 * i..32 + 2 * i + 2]);
        let sc: [u8; 8] = std::array::from_fn(|s| t[SCALES_AT + 16 * s + i]);
        let m: [u8; 8] = std::array::from_fn(|s| t[MINS_AT + 16 * s + i]);
        b[4..16].copy_from_slice(&q4k_pack_scales(&sc, &m));
        lanes_to_nibbles(&t[NIBBLES_AT..], i, &mut b[16..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_bytes_round_trip_and_land_where_documented() {
        // Arbitrary bytes: every 6-bit scale pattern must survive the unpacking and repacking.
        let (rows, cols) = (32, 512);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let src: Vec<u8> = (0..rows * cols / QK_K * Q4_K_BYTES)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let lines = super::super::interleaved::interleave(super::super::interleaved::Layout::Q4kLanes, &src, rows, cols, &mut |_| {});
        let data = lines.as_slice();
        assert_eq!(data.as_ptr() as usize % 64, 0, "64-byte aligned");
        assert_eq!(data.len(), len(rows, cols));
        assert_eq!(super::super::interleaved::rows(super::super::interleaved::Layout::Q4kLanes, data, cols, 0, rows), src);
        let row_bytes = cols / QK_K * Q4_K_BYTES;
        assert_eq!(super::super::interleaved::rows(super::super::interleaved::Layout::Q4kLanes, data, cols, 7, 11), src[7 * row_bytes..18 * row_bytes]);
        // Row 21 (tile 1, lane 5), super-block 1, weight 77: sub-block 2 (ggml: low nibble of qs
        // byte 32 + 13), step 9, position 5 of 8 (here: high nibble of the step's byte 4·5 + 1).
        let (r, sb) = (21, 1);
        let b = &src[r * row_bytes + sb * Q4_K_BYTES..][..Q4_K_BYTES];
        let t = &data[(2 + sb) * TILE_BYTES..][..TILE_BYTES];
        assert_eq!(t[2 * 5..2 * 5 + 2], b[0..2]);
        assert_eq!(t[SCALES_AT + 16 * 2 + 5], q4k_scale_min(2, &b[4..16]).0);
        assert_eq!(t[MINS_AT + 16 * 2 + 5], q4k_scale_min(2, &b[4..16]).1);
        assert_eq!(t[NIBBLES_AT + 64 * 9 + 4 * 5 + 1] >> 4, b[16 + 32 + 13] & 15);
    }

    #[test]
    fn only_whole_tiles_and_super_blocks_fit() {
        assert!(fits(16, 256));
        assert!(fits(2560, 2048));
        assert!(!fits(8, 256));
        assert!(!fits(16, 128));
        assert!(!fits(0, 256));
    }
}
