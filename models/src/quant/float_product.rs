//! Many vectors times a quantized matrix in f32: the prompts of formats without a tiled integer
//! kernel, and LoRA training over a quantized base (both directions). Slices of rows are
//! dequantized into a scratch buffer that each thread keeps from call to call, and `gemm` (the
//! crate behind candle's CPU matrix product, with its AVX-512 kernels turned on) multiplies each
//! slice straight into its part of the result.
//!
//! Why not candle's product over a tensor per slice, as before: each slice was a fresh buffer,
//! and so was candle's output. Fresh buffers this size are new mappings (glibc maps anything
//! from 32 MiB on, and the app lowers that threshold to 1 MiB), so every slice paid its page
//! faults and zeroing again: dequantizing 32 MiB of Q8_0 rows took 11.7 ms into a fresh buffer,
//! 2.9 ms into a reused one (best of seven). Whole products, 512 vectors through Q8_0 matrices with the
//! app's 1 MiB threshold (throwaway timing, the two alternated four times): 11264×2048
//! 169–208 → 134–146 ms, 2048×5632 76–95 → 62–74 ms, 6144×2048 76–83 → 62–69 ms. Slices of
//! 8 MiB were slower than 16 or 32 MiB ones (gemm's blocks); 16 keeps the buffers small.
//!
//! The scratch buffers stay allocated for the threads' lifetime: at most [`SLICE_BYTES`] per
//! rayon worker that ran a prompt.

use super::QMatrix;

/// Most bytes of dequantized f32 rows one slice holds (one scratch buffer per thread this size).
pub const SLICE_BYTES: usize = 16 << 20;

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer, `len` values long. The buffer is taken out of its
/// slot while `f` runs, so a nested call (rayon may run another task on this thread while `f`
/// waits) finds the slot empty and uses a buffer of its own.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let out = f(&mut buf[..len]);
    SCRATCH.set(buf);
    out
}

fn rows_per_slice(cols: usize) -> usize {
    (SLICE_BYTES / (4 * cols.max(1))).max(1)
}

fn parallelism() -> gemm::Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

/// Dequantizes `q` a slice of rows at a time into this thread's scratch buffer and hands each
/// slice to `f`: its first row and its `r × cols` values, row-major.
fn for_each_slice(q: &QMatrix, mut f: impl FnMut(usize, &[f32])) {
    let (rows, cols) = (q.rows(), q.cols());
    let chunk = rows_per_slice(cols);
    with_scratch(chunk.min(rows) * cols, |scratch| {
        for first in (0..rows).step_by(chunk) {
            let w = &mut scratch[..chunk.min(rows - first) * cols];
            q.dequantize_rows_into(first, w);
            f(first, w);
        }
    });
}

/// `x Wᵀ` for `n` row vectors `x` (`n × cols`, row-major): `n × rows`, row-major.
///
/// Panics if `x` is not `n × cols` (callers check the shapes first).
pub fn times_transposed(q: &QMatrix, x: &[f32], n: usize) -> Vec<f32> {
    let (rows, cols) = (q.rows(), q.cols());
    assert_eq!(x.len(), n * cols, "input of the quantized product");
    let mut y = vec![0f32; n * rows];
    if n == 0 || rows == 0 || cols == 0 {
        return y;
    }
    for_each_slice(q, |first, w| rows_times_transposed(x, n, w, cols, &mut y[first..], rows, parallelism()));
    y
}

/// `dst[t · dst_row + j] = x[t] · w[j]` for the `n` row vectors `x` and the `r = w.len() / cols`
/// rows of `w` (`cols` values each, row-major): the product `x wᵀ` written into `n` rows of
/// `dst` that start `dst_row` apart (the columns of a wider result, or a whole one).
///
/// Panics if the slices do not hold those rows.
pub(crate) fn rows_times_transposed(x: &[f32], n: usize, w: &[f32], cols: usize, dst: &mut [f32], dst_row: usize, parallelism: gemm::Parallelism) {
    let r = w.len() / cols.max(1);
    assert!(x.len() == n * cols && w.len() == r * cols && r <= dst_row, "shapes of the f32 product");
    if n == 0 || r == 0 || cols == 0 {
        return;
    }
    assert!(dst.len() >= (n - 1) * dst_row + r, "room for the f32 product");
    // SAFETY: dst holds n rows of r values, row stride dst_row (asserted); lhs is x, n × cols
    // row-major; rhs(i, j) = w[j · cols + i] is w transposed, cols × r, inside w's r · cols values.
    unsafe {
        gemm::gemm(
            n, r, cols,
            dst.as_mut_ptr(), 1, dst_row as isize, false,
            x.as_ptr(), 1, cols as isize,
            w.as_ptr(), cols as isize, 1,
            0.0, 1.0, false, false, false,
            parallelism,
        );
    }
}

/// `g W` for `n` row vectors `g` (`n × rows`, row-major): `n × cols`, row-major (the gradient
/// of `x Wᵀ` with respect to `x`).
///
/// Panics if `g` is not `n × rows`.
pub fn times(q: &QMatrix, g: &[f32], n: usize) -> Vec<f32> {
    let (rows, cols) = (q.rows(), q.cols());
    assert_eq!(g.len(), n * rows, "gradient of the quantized product");
    let mut y = vec![0f32; n * cols];
    if n == 0 || rows == 0 || cols == 0 {
        return y;
    }
    for_each_slice(q, |first, w| {
        // SAFETY: dst is y, n × cols row-major, accumulated into (y starts at zero); lhs is g's
        // columns first..first + r (row stride rows, inside g's n · rows values); rhs is the
        // slice, r × cols row-major, inside w.
        unsafe {
            gemm::gemm(
                n, cols, w.len() / cols,
                y.as_mut_ptr(), 1, cols as isize, true,
                g.as_ptr().add(first), 1, rows as isize,
                w.as_ptr(), 1, cols as isize,
                1.0, 1.0, false, false, false,
                parallelism(),
            );
        }
    });
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::testutil::random_vec;
    use crate::quant::QuantFormat;

    fn max_rel(a: &[f32], b: &[f32]) -> f32 {
        let size = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / size
    }

    #[test]
    fn both_products_equal_the_plain_sums_over_many_slices() {
        // 1200 rows of 4096 values are 18.75 MiB of f32: two slices, the second partial; the
        // interleaved layout reads back in rows like the plain one.
        let (rows, cols, n) = (1200, 4096, 5);
        assert!(rows * cols * 4 > SLICE_BYTES && rows * cols * 4 < 2 * SLICE_BYTES);
        let w = random_vec(1, rows * cols, 1.0);
        for format in QuantFormat::ALL {
            for interleave in [false, true] {
                let q = QMatrix::quantize(&w, rows, cols, format).unwrap();
                let q = if interleave { q.for_decoding() } else { q };
                let wd = q.dequantize();
                let x = random_vec(2, n * cols, 1.0);
                let want: Vec<f32> =
                    (0..n).flat_map(|t| (0..rows).map(|r| (0..cols).map(|c| x[t * cols + c] * wd[r * cols + c]).sum::<f32>()).collect::<Vec<_>>()).collect();
                let got = times_transposed(&q, &x, n);
                assert!(max_rel(&got, &want) < 1e-5, "{format}: x Wᵀ {}", max_rel(&got, &want));
                let g = random_vec(3, n * rows, 1.0);
                let want: Vec<f32> =
                    (0..n).flat_map(|t| (0..cols).map(|c| (0..rows).map(|r| g[t * rows + r] * wd[r * cols + c]).sum::<f32>()).collect::<Vec<_>>()).collect();
                let got = times(&q, &g, n);
                assert!(max_rel(&got, &want) < 1e-5, "{format}: g W {}", max_rel(&got, &want));
            }
        }
    }

    #[test]
    fn empty_inputs_give_empty_outputs_and_nested_calls_get_their_own_buffer() {
        let q = QMatrix::quantize(&random_vec(4, 64 * 32, 1.0), 64, 32, QuantFormat::Q8_0).unwrap();
        assert!(times_transposed(&q, &[], 0).is_empty());
        assert!(times(&q, &[], 0).is_empty());
        let (outer, inner) = with_scratch(8, |a| {
            a.fill(1.0);
            // The inner call must neither see nor overwrite the outer call's values.
            let inner = with_scratch(8, |b| {
                let seen = b.iter().sum::<f32>();
                b.fill(2.0);
                seen
            });
            (a.iter().sum::<f32>(), inner)
        });
        assert_eq!((outer, inner), (8.0, 0.0));
    }
}
