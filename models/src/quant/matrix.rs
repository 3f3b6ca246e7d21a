//! A quantized weight matrix and its multi-threaded matrix-vector / small-matrix products.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::activation::ActQ8;
use super::error::{QuantError, Result};
use super::format::QuantFormat;
use super::kernel::{Kernel, TILE_ACTS, TILE_ROWS};
use super::interleaved::{self, Layout, Lines};
use super::reference;
use crate::pages::{PageBuffer, HUGE_PAGE};
use crate::split;

/// Where a matrix's quantized bytes live.
#[derive(Debug, Clone)]
pub enum QBytes {
    /// In memory we own.
    Owned(Vec<u8>),
    /// A copy on huge pages where the OS gives them ([`QMatrix::for_decoding`]).
    Pages(Arc<PageBuffer>),
    /// A range of a memory-mapped file (a cache or GGUF file).
    Mapped {
        /// The mapping, shared by every matrix of the file.
        map: Arc<memmap2::Mmap>,
        /// Offset of the first byte.
        start: usize,
        /// Number of bytes.
        len: usize,
    },
}

impl QBytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            QBytes::Owned(v) => v,
            QBytes::Pages(p) => p.as_slice(),
            QBytes::Mapped { map, start, len } => &map[*start..*start + *len],
        }
    }
}

/// Tells the OS that the pages of `range` of a mapped file's bytes are no longer needed
/// (their contents now live elsewhere); nothing for bytes in memory.
fn release_pages(bytes: &QBytes, range: std::ops::Range<usize>) {
    if let QBytes::Mapped { map, start, .. } = bytes {
        // SAFETY: a read-only file mapping; dropping its pages only makes a later read fault
        // them in again from the file, and no one reads this range again (the matrix now lives
        // in a copy).
        if let Err(e) = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start + range.start, range.len()) } {
            tracing::debug!("could not release a mapped matrix's pages: {e}");
        }
    }
}

/// A `rows × cols` weight matrix quantized (or, F16, rounded to half floats) row by row (ggml
/// layout; `y = W·x` multiplies by rows).
#[derive(Debug, Clone)]
pub struct QMatrix {
    format: QuantFormat,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Storage,
}

/// How a matrix keeps its bytes.
#[derive(Debug, Clone)]
enum Storage {
    /// ggml's layout, row after row.
    Rows(QBytes),
    /// The decode kernels' row-interleaved layout of the format ([`QMatrix::for_decoding`],
    /// `quant::interleaved`).
    Interleaved(Layout, Lines),
}

/// How many row chunks each thread gets in the products that still split by rayon's
/// `par_chunks_mut` (prompts, and `dense_matvec`'s f32 decode; decode products split by
/// [`split::for_each_stretch`]). rayon splits a parallel iterator into about as many jobs as
/// threads and splits a job further only when it is stolen, so this bounds the chunk size
/// rather than fixing the number of jobs.
const TASKS_PER_THREAD: usize = 4;

/// About how many weight bytes a thread takes at a time in a decode product
/// ([`split::for_each_stretch`]): a few microseconds of streaming, so the threads end a product
/// within a few microseconds of each other.
const CLAIM_BYTES: usize = 64 << 10;

/// From this many input vectors on, [`QMatrix::forward`] dequantizes slices of rows and uses an
/// f32 matrix product (prompts) instead of the integer dot products (decoding), unless the
/// kernel set has a tiled kernel for the format ([`Kernel::has_tile`]).
pub const GEMM_MIN_ROWS: usize = 16;

/// Activations a tiled product keeps in L2 while a task's rows pass (64 of 2048 values: the
/// tiled kernels read about 256 KiB of their packed copies).
const TOKENS_PER_BLOCK: usize = 64;

/// Rows per chunk of a product over `rows` rows on every thread.
pub(crate) fn rows_per_task(rows: usize) -> usize {
    let tasks = rayon::current_num_threads().max(1) * TASKS_PER_THREAD;
    rows.div_ceil(tasks).max(1)
}

/// Quantizes the row-major rows `w` (`cols` values each) into `out` (their bytes in `format`),
/// on all cores. `first_row` only numbers the rows in errors (for matrices done in pieces).
pub fn quantize_rows_into(format: QuantFormat, w: &[f32], cols: usize, out: &mut [u8], first_row: usize) -> Result<()> {
    let row_bytes = format.row_bytes(cols)?;
    let rows = w.len() / cols;
    if w.len() != rows * cols || out.len() != rows * row_bytes {
        return Err(QuantError::Size { what: "quantized rows", expected: rows * row_bytes, got: out.len() });
    }
    // One pass finds a non-finite weight and, for F16, one beyond its range (which would become infinite).
    let limit = if format == QuantFormat::F16 { half::f16::MAX.to_f32() } else { f32::MAX };
    // `!(|v| <= limit)` rather than `|v| > limit`: a NaN fails every comparison and must be caught.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    let beyond = |v: &f32| !(v.abs() <= limit);
    if let Some(bad) = w.par_chunks(cols).position_any(|r| r.iter().any(beyond)) {
        let row = first_row + bad;
        return Err(if w[bad * cols..(bad + 1) * cols].iter().all(|v| v.is_finite()) {
            QuantError::OutOfF16Range { row }
        } else {
            QuantError::NonFinite { row }
        });
    }
    out.par_chunks_mut(row_bytes)
        .zip(w.par_chunks(cols))
        .for_each(|(o, x)| reference::quantize_row(format, x, o));
    Ok(())
}

impl QMatrix {
    /// Quantizes a row-major `rows × cols` f32 matrix (all cores).
    pub fn quantize(w: &[f32], rows: usize, cols: usize, format: QuantFormat) -> Result<QMatrix> {
        if w.len() != rows * cols {
            return Err(QuantError::Size { what: "weights", expected: rows * cols, got: w.len() });
        }
        let row_bytes = format.row_bytes(cols)?;
        let mut data = vec![0u8; rows * row_bytes];
        quantize_rows_into(format, w, cols, &mut data, 0)?;
        Ok(QMatrix { format, rows, cols, row_bytes, data: Storage::Rows(QBytes::Owned(data)) })
    }

    /// Quantizes a 2-D tensor of any float dtype (`[rows, cols]`, PyTorch's `Linear.weight` layout).
    pub fn quantize_tensor(t: &Tensor, format: QuantFormat) -> Result<QMatrix> {
        let (rows, cols) = t.dims2()?;
        let w = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        QMatrix::quantize(&w, rows, cols, format)
    }

    /// Wraps bytes already in `format` (from a cache or GGUF file), checking their length.
    pub fn from_bytes(format: QuantFormat, rows: usize, cols: usize, data: QBytes) -> Result<QMatrix> {
        let row_bytes = format.row_bytes(cols)?;
        let got = data.as_slice().len();
        if got != rows * row_bytes {
            return Err(QuantError::Size { what: "quantized bytes", expected: rows * row_bytes, got });
        }
        Ok(QMatrix { format, rows, cols, row_bytes, data: Storage::Rows(data) })
    }

    /// This matrix in the layout the fastest kernel set of this CPU decodes fastest: its
    /// format's row-interleaved layout where the kernel set has a kernel for it
    /// ([`Kernel::has_interleaved`]) and the shape allows, else its rows — in either case on
    /// huge pages where the OS has them (`crate::pages`; on Linux, for matrices of at least one
    /// huge page). Memory-mapped bytes are copied a piece at a time, each piece's file pages
    /// released once copied, so the matrix is never held twice.
    pub fn for_decoding(self) -> QMatrix {
        let m = match Kernel::best().interleaved_layout(self.format) {
            Some(layout) => self.interleaved(layout),
            None => self,
        };
        m.on_huge_pages()
    }

    /// This matrix in `layout` (of its format) where its shape allows, whatever this CPU's kernels.
    fn interleaved(self, layout: Layout) -> QMatrix {
        let Storage::Rows(bytes) = &self.data else { return self };
        if layout.format() != self.format || !layout.fits(self.rows, self.cols) {
            return self;
        }
        let lines = interleaved::interleave(layout, bytes.as_slice(), self.rows, self.cols, &mut |done| release_pages(bytes, done));
        QMatrix { data: Storage::Interleaved(layout, lines), ..self }
    }

    /// A matrix in rows copied onto huge pages where that can help: on Linux (transparent huge
    /// pages), when it spans at least one huge page and is not there already.
    fn on_huge_pages(self) -> QMatrix {
        let Storage::Rows(bytes) = &self.data else { return self };
        let src = bytes.as_slice();
        if !cfg!(target_os = "linux") || src.len() < HUGE_PAGE || matches!(bytes, QBytes::Pages(_)) {
            return self;
        }
        let Ok(mut pages) = PageBuffer::for_weights(src.len()) else {
            return self;
        };
        let piece = interleaved::PIECE_BYTES;
        for (i, (dst, part)) in pages.as_mut_slice().chunks_mut(piece).zip(src.chunks(piece)).enumerate() {
            dst.copy_from_slice(part);
            release_pages(bytes, i * piece..i * piece + part.len());
        }
        QMatrix { data: Storage::Rows(QBytes::Pages(Arc::new(pages))), ..self }
    }

    /// Whether the matrix is kept in the decode kernels' row-interleaved layout ([`QMatrix::for_decoding`]).
    pub fn is_interleaved(&self) -> bool {
        matches!(self.data, Storage::Interleaved(..))
    }

    /// The format.
    pub fn format(&self) -> QuantFormat {
        self.format
    }

    /// Number of rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (inputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Size of the quantized bytes in ggml's layout (the interleaved layouts hold as many; Q4_K's
    /// 2.8% more), without copying anything.
    pub fn byte_len(&self) -> usize {
        self.rows * self.row_bytes
    }

    /// The quantized bytes in ggml's layout, row after row (a copy for an interleaved matrix).
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        self.rows_bytes(0, self.rows)
    }

    /// Rows `first..first + n` in ggml's layout (a copy for an interleaved matrix).
    fn rows_bytes(&self, first: usize, n: usize) -> Cow<'_, [u8]> {
        match &self.data {
            Storage::Rows(b) => Cow::Borrowed(&b.as_slice()[first * self.row_bytes..(first + n) * self.row_bytes]),
            Storage::Interleaved(layout, lines) => Cow::Owned(interleaved::rows(*layout, lines.as_slice(), self.cols, first, n)),
        }
    }

    /// Posts the weights for the waiting threads of a decode step to pull toward the cache
    /// before this matrix's next product (see `crate::warm`).
    pub fn warm(&self) {
        let bytes = match &self.data {
            Storage::Rows(b) => b.as_slice(),
            Storage::Interleaved(_, lines) => lines.as_slice(),
        };
        crate::warm::post(bytes, rayon::current_num_threads());
    }

    /// Dequantizes to a row-major f32 matrix.
    pub fn dequantize(&self) -> Vec<f32> {
        self.dequantize_rows(0, self.rows)
    }

    /// Dequantizes rows `first..first + n` to row-major f32 values.
    pub fn dequantize_rows(&self, first: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; n * self.cols];
        self.dequantize_rows_into(first, &mut out);
        out
    }

    /// Dequantizes rows `first..first + out.len() / cols` into `out` (row-major), on every core.
    pub fn dequantize_rows_into(&self, first: usize, out: &mut [f32]) {
        let bytes = self.rows_bytes(first, out.len() / self.cols.max(1));
        let kernel = Kernel::best();
        out.par_chunks_mut(self.cols)
            .zip(bytes.par_chunks(self.row_bytes))
            .for_each(|(o, r)| kernel.dequantize_row(self.format, r, o));
    }

    /// Dequantizes to an f32 tensor `[rows, cols]` on `device`.
    pub fn dequantize_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.dequantize(), (self.rows, self.cols), device)?)
    }

    /// `y = W·x` for one vector, with the fastest kernel of this CPU on every core.
    pub fn matvec(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        self.matvec_with(Kernel::best(), x, y)
    }

    /// `y = W·x` with a chosen kernel set (for tests and benchmarks).
    pub fn matvec_with(&self, kernel: Kernel, x: &[f32], y: &mut [f32]) -> Result<()> {
        self.check_io(x.len(), y.len(), 1)?;
        match &self.data {
            Storage::Interleaved(layout, lines) if kernel.interleaved_layout(self.format) == Some(*layout) => {
                let act = ActQ8::quantize(x);
                let tile = layout.tile_rows();
                let data = lines.as_slice();
                let tile_bytes = data.len() / (self.rows / tile);
                // At least two tiles a claim, in pairs: the Q4_0 / Q8_0 kernels read a claim's
                // tiles as two streams (`x86_vnni::two_streams`).
                let claim = (CLAIM_BYTES / tile_bytes).max(2).next_multiple_of(2);
                split::for_each_stretch(y, tile, claim, |first, ys| {
                    let at = first * tile_bytes;
                    kernel.dot_interleaved(*layout, &data[at..at + ys.len() / tile * tile_bytes], &act, ys);
                });
            }
            _ => {
                let act = kernel.prepare(self.format, x);
                split::for_each_stretch(y, 1, CLAIM_BYTES / self.row_bytes, |first, ys| {
                    let rows = self.rows_bytes(first, ys.len());
                    for (y, row) in ys.iter_mut().zip(rows.chunks_exact(self.row_bytes)) {
                        *y = kernel.dot(self.format, row, &act);
                    }
                })
            }
        }
        Ok(())
    }

    /// `Y = X·Wᵀ` for `n` row vectors `x` (`n × cols`, row-major), giving `n × rows`.
    ///
    /// Each weight row is read once for all `n` vectors, so a prompt of a few hundred tokens
    /// streams the weights once.
    pub fn matmul(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        self.matmul_with(Kernel::best(), x, n)
    }

    /// [`QMatrix::matmul`] with a chosen kernel set.
    pub fn matmul_with(&self, kernel: Kernel, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let mut y = vec![0f32; n * self.rows];
        if n == 1 {
            self.matvec_with(kernel, x, &mut y)?;
            return Ok(y);
        }
        self.check_io(x.len(), y.len(), n)?;
        let acts: Vec<ActQ8> = x.par_chunks(self.cols).map(|x| kernel.prepare(self.format, x)).collect();
        let chunk = rows_per_task(self.rows);
        // Transposed result (rows × n) so that each task writes one contiguous range.
        let mut yt = vec![0f32; self.rows * n];
        let tiled = kernel.has_tile(self.format);
        yt.par_chunks_mut(chunk * n).enumerate().for_each(|(c, out)| {
            let rows = self.rows_bytes(c * chunk, out.len() / n);
            if tiled {
                self.tiled_rows(kernel, &rows, &acts, out);
                return;
            }
            for (o, row) in out.chunks_mut(n).zip(rows.chunks_exact(self.row_bytes)) {
                for (o, act) in o.iter_mut().zip(&acts) {
                    *o = kernel.dot(self.format, row, act);
                }
            }
        });
        y.par_chunks_mut(self.rows).enumerate().for_each(|(t, yr)| {
            for (r, v) in yr.iter_mut().enumerate() {
                *v = yt[r * n + t];
            }
        });
        Ok(y)
    }

    /// The transposed product of `data`'s rows (ggml layout; `out`: one row of `acts.len()`
    /// results per weight row) with the tiled kernel: [`TILE_ROWS`] rows × [`TILE_ACTS`]
    /// activations at a time, over blocks of [`TOKENS_PER_BLOCK`] activations that stay in L2
    /// while the rows pass; the edges take the single dot product.
    fn tiled_rows(&self, kernel: Kernel, data: &[u8], acts: &[ActQ8], out: &mut [f32]) {
        let n = acts.len();
        let count = out.len() / n.max(1);
        let row = |i: usize| &data[i * self.row_bytes..(i + 1) * self.row_bytes];
        for t0 in (0..n).step_by(TOKENS_PER_BLOCK) {
            let t1 = (t0 + TOKENS_PER_BLOCK).min(n);
            let mut i = 0;
            while i + TILE_ROWS <= count {
                let rows: [&[u8]; TILE_ROWS] = std::array::from_fn(|r| row(i + r));
                let mut t = t0;
                while t + TILE_ACTS <= t1 {
                    let tile: [&ActQ8; TILE_ACTS] = std::array::from_fn(|j| &acts[t + j]);
                    for (r, vr) in kernel.dot_tile(self.format, rows, tile).iter().enumerate() {
                        out[(i + r) * n + t..(i + r) * n + t + TILE_ACTS].copy_from_slice(vr);
                    }
                    t += TILE_ACTS;
                }
                for (r, row) in rows.iter().enumerate() {
                    for (j, act) in acts[t..t1].iter().enumerate() {
                        out[(i + r) * n + t + j] = kernel.dot(self.format, row, act);
                    }
                }
                i += TILE_ROWS;
            }
            for i in i..count {
                for (j, act) in acts[t0..t1].iter().enumerate() {
                    out[i * n + t0 + j] = kernel.dot(self.format, row(i), act);
                }
            }
        }
    }

    /// Applies the matrix to the last dimension of `x` (`[..., cols]` → `[..., rows]`), like
    /// `candle_nn::Linear` without bias. Runs on the CPU; the result goes back to `x`'s device and dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_prompts(x, true)
    }

    /// [`QMatrix::forward`] whose prompts always take the dequantized f32 product (LoRA training:
    /// its forward must be the function of the dequantized weights that its backward differentiates).
    pub fn forward_float_prompts(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_prompts(x, false)
    }

    fn forward_prompts(&self, x: &Tensor, tiles: bool) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let cols = dims.last().copied().unwrap_or(0);
        if cols != self.cols {
            return Err(QuantError::Size { what: "input features", expected: self.cols, got: cols });
        }
        let n = x.elem_count() / cols.max(1);
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = self.rows;
        }
        let t = if n >= GEMM_MIN_ROWS && !(tiles && Kernel::best().has_tile(self.format)) {
            // A prompt: the plain integer kernels would redo each weight row's unpacking for
            // every token; without a tiled kernel, dequantizing slices of rows into candle's f32
            // matrix product is several times faster.
            self.dequantized_product(x, n)?.reshape(out_dims)?
        } else {
            let xs = x.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            Tensor::from_vec(self.matmul(&xs, n)?, out_dims, &Device::Cpu)?
        };
        Ok(t.to_dtype(x.dtype())?.to_device(x.device())?)
    }

    /// `x` (`n` vectors of `cols` values) times the dequantized matrix, `[n, rows]` f32 on the
    /// CPU: slices of rows dequantized in turn into an f32 matrix product
    /// ([`super::float_product`]; never more than one slice in full precision). The prompt path
    /// of formats without a tiled kernel; public for the benchmarks that compare the two.
    pub fn dequantized_product(&self, x: &Tensor, n: usize) -> Result<Tensor> {
        self.check_io(x.elem_count(), n * self.rows, n)?;
        let xs = x.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Tensor::from_vec(super::float_product::times_transposed(self, &xs, n), (n, self.rows), &Device::Cpu)?)
    }

    fn check_io(&self, x: usize, y: usize, n: usize) -> Result<()> {
        if x != n * self.cols {
            return Err(QuantError::Size { what: "input vector", expected: n * self.cols, got: x });
        }
        if y != n * self.rows {
            return Err(QuantError::Size { what: "output vector", expected: n * self.rows, got: y });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::testutil::random_vec;
    use candle_core::quantized::{GgmlDType, QTensor};

    fn float_matvec(w: &[f32], x: &[f32], cols: usize) -> Vec<f32> {
        w.chunks(cols).map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
    }

    #[test]
    fn matvec_matches_the_dequantized_product_for_every_kernel_and_odd_shapes() {
        // 37 rows: not a multiple of the thread or task count; 7 blocks of 32 (Q4_K: 2 blocks of 256).
        for format in QuantFormat::ALL {
            let cols = if format == QuantFormat::Q4K { 512 } else { 224 };
            let rows = 37;
            let w = random_vec(11, rows * cols, 0.5);
            let x = random_vec(12, cols, 2.0);
            let m = QMatrix::quantize(&w, rows, cols, format).unwrap();
            let wd = m.dequantize();
            let want = float_matvec(&wd, &x, cols);
            let act_err: f32 = x.iter().map(|v| v.abs()).sum::<f32>() / 127.0;
            for k in Kernel::available() {
                let mut y = vec![0f32; rows];
                m.matvec_with(k, &x, &mut y).unwrap();
                for (r, (a, b)) in y.iter().zip(&want).enumerate() {
                    // Only the activation's 8-bit rounding separates the two.
                    assert!((a - b).abs() <= 0.5 * act_err + 1e-3, "{} {format} row {r}: {a} vs {b}", k.name());
                }
                let n = 3;
                let xs = random_vec(13, n * cols, 1.0);
                let ym = m.matmul_with(k, &xs, n).unwrap();
                for t in 0..n {
                    let mut yv = vec![0f32; rows];
                    m.matvec_with(Kernel::scalar(), &xs[t * cols..(t + 1) * cols], &mut yv).unwrap();
                    for r in 0..rows {
                        assert!((ym[t * rows + r] - yv[r]).abs() < 1e-3, "{} {format} matmul t{t} r{r}", k.name());
                    }
                }
            }
        }
    }

    #[test]
    fn quantization_error_is_small_relative_to_the_weights() {
        let (rows, cols) = (16, 512);
        let w = random_vec(21, rows * cols, 1.0);
        for (format, max_rel) in [(QuantFormat::Q8_0, 0.01), (QuantFormat::Q4_0, 0.15), (QuantFormat::Q4K, 0.15)] {
            let d = QMatrix::quantize(&w, rows, cols, format).unwrap().dequantize();
            let err: f32 = w.iter().zip(&d).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
            let norm: f32 = w.iter().map(|a| a * a).sum::<f32>().sqrt();
            assert!(err / norm < max_rel, "{format}: relative error {}", err / norm);
        }
    }

    #[test]
    fn bytes_are_ggml_compatible() {
        // candle reads our bytes as its own ggml blocks and dequantizes them to the same values;
        // for Q8_0 and Q4_0 our quantizer writes exactly the bytes candle's does.
        let (rows, cols) = (4, 256);
        let w = random_vec(31, rows * cols, 1.0);
        let t = Tensor::from_vec(w.clone(), (rows, cols), &Device::Cpu).unwrap();
        for format in QuantFormat::ALL {
            let ours = QMatrix::quantize(&w, rows, cols, format).unwrap();
            let q = candle_core::quantized::ggml_file::qtensor_from_ggml(format.ggml_dtype(), &ours.bytes(), vec![rows, cols], &Device::Cpu).unwrap();
            let theirs = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(theirs, ours.dequantize(), "{format}");
            let cq = QTensor::quantize(&t, format.ggml_dtype()).unwrap();
            if format != QuantFormat::Q4K {
                assert_eq!(cq.data().unwrap().as_ref(), &*ours.bytes(), "{format}");
            } else {
                // Our Q4_K quantizer is simpler than ggml's search; its error stays close.
                let cd = cq.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let e = |d: &[f32]| w.iter().zip(d).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
                assert!(e(&ours.dequantize()) < 2.0 * e(&cd), "{} vs {}", e(&ours.dequantize()), e(&cd));
            }
        }
        assert_eq!(GgmlDType::Q4_0.type_size(), 18);
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(matches!(QMatrix::quantize(&[0.0; 48], 1, 48, QuantFormat::Q4_0), Err(QuantError::NotBlockMultiple { .. })));
        assert!(matches!(QMatrix::quantize(&[0.0; 64], 1, 32, QuantFormat::Q8_0), Err(QuantError::Size { .. })));
        let mut w = vec![0.0; 64];
        w[40] = f32::NAN;
        assert!(matches!(QMatrix::quantize(&w, 2, 32, QuantFormat::Q8_0), Err(QuantError::NonFinite { row: 1 })));
        w[40] = 7e4;
        assert!(matches!(QMatrix::quantize(&w, 2, 32, QuantFormat::F16), Err(QuantError::OutOfF16Range { row: 1 })));
        w[40] = 6e4;
        assert!(QMatrix::quantize(&w, 2, 32, QuantFormat::F16).is_ok());
        let m = QMatrix::quantize(&[0.5; 64], 2, 32, QuantFormat::Q8_0).unwrap();
        let mut y = vec![0.0; 2];
        assert!(m.matvec(&[0.0; 31], &mut y).is_err());
        m.matvec(&[1.0; 32], &mut y).unwrap();
        assert!((y[0] - 16.0).abs() < 0.1);
    }

    #[test]
    fn prompt_sized_forward_matches_the_dequantized_product() {
        // 40 inputs take a prompt path; 4500 rows × 2048 columns make the dequantized product slice.
        let (rows, cols, n) = (4500, 2048, 40);
        assert!(n >= GEMM_MIN_ROWS && rows * cols * 4 > super::super::float_product::SLICE_BYTES);
        let m = QMatrix::quantize(&random_vec(51, rows * cols, 1.0), rows, cols, QuantFormat::Q4_0).unwrap();
        let x = Tensor::from_vec(random_vec(52, n * cols, 1.0), (2, n / 2, cols), &Device::Cpu).unwrap();
        let wd = m.dequantize_tensor(&Device::Cpu).unwrap();
        let want = x.reshape((n, cols)).unwrap().matmul(&wd.t().unwrap()).unwrap().reshape((2, n / 2, rows)).unwrap();
        let size = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let max_diff = |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let deq = m.dequantized_product(&x, n).unwrap().reshape((2, n / 2, rows)).unwrap();
        assert!(max_diff(&deq, &want) < 1e-4 * size, "{} of {size}", max_diff(&deq, &want));
        // `forward` takes the tiled integer kernel where this CPU has one (then it equals the
        // vectors' decode products), the dequantized product otherwise.
        let y = m.forward(&x).unwrap();
        assert_eq!(y.dims(), &[2, n / 2, rows]);
        if Kernel::best().has_tile(QuantFormat::Q4_0) {
            let one_by_one: Vec<f32> = (0..n).flat_map(|t| m.forward(&x.reshape((n, cols)).unwrap().narrow(0, t, 1).unwrap()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
            let one_by_one = Tensor::from_vec(one_by_one, (2, n / 2, rows), &Device::Cpu).unwrap();
            assert!(max_diff(&y, &one_by_one) < 1e-5 * size, "{} of {size}", max_diff(&y, &one_by_one));
        } else {
            assert!(max_diff(&y, &want) < 1e-4 * size, "{} of {size}", max_diff(&y, &want));
        }
        // The decoding path (one vector at a time) agrees within the activation's 8-bit rounding.
        let d1 = max_diff(&m.forward(&x.narrow(1, 0, 1).unwrap()).unwrap(), &want.narrow(1, 0, 1).unwrap());
        assert!(d1 < 0.02 * size && d1 > 0.0, "{d1} of {size}");
    }

    #[test]
    fn the_interleaved_layout_keeps_bytes_values_and_products() {
        // Quantized weights, and arbitrary bytes (every nibble, scales of either sign) as an
        // imported file may hold; shapes that take the layout and shapes that do not.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut byte = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        };
        use QuantFormat::{Q4K, Q4_0, Q8_0};
        // (format, rows, cols, arbitrary bytes): shapes that take each layout and shapes that
        // do not (the loop right below checks that both kinds are here for every layout).
        let cases = [
            (Q4_0, 40, 256, false),
            (Q4_0, 16, 512, true),
            (Q4_0, 8, 128, true),
            (Q4_0, 48, 128, false),
            (Q4_0, 12, 256, false),
            (Q4_0, 16, 160, false),
            (Q4K, 32, 512, false),
            (Q4K, 16, 256, true),
            (Q4K, 24, 256, false),
            (Q8_0, 32, 128, false),
            (Q8_0, 16, 64, true),
            (Q8_0, 24, 64, false),
            (Q8_0, 16, 96, true),
            // Whole tiles in odd and even counts: the Q4_0 / Q8_0 kernels read them in pairs, a
            // last odd tile alone (however the threads split them); Q4_K's claims are paired
            // too, its kernels take them one at a time.
            (Q4_0, 80, 128, true),
            (Q4K, 48, 256, false),
            (Q8_0, 112, 64, true),
            (Q8_0, 32, 64, false),
        ];
        for layout in Layout::ALL {
            let fitting = cases.iter().filter(|c| c.0 == layout.format() && layout.fits(c.1, c.2)).count();
            assert!(fitting >= 2 && fitting < cases.iter().filter(|c| c.0 == layout.format()).count(), "{layout:?}");
        }
        for (format, rows, cols, arbitrary) in cases {
            let m = if arbitrary {
                let mut bytes: Vec<u8> = (0..format.row_bytes(cols).unwrap() * rows).map(|_| byte()).collect();
                // Finite f16 scales of either sign (Q4_K: d and dmin).
                let scales = if format == Q4K { [0, 2].as_slice() } else { [0].as_slice() };
                for block in bytes.chunks_exact_mut(format.block_bytes()) {
                    for &at in scales {
                        let h = half::f16::from_f32((1.0 + byte() as f32 / 256.0) / 64.0 * if byte() & 1 == 0 { 1.0 } else { -1.0 });
                        block[at..at + 2].copy_from_slice(&h.to_le_bytes());
                    }
                }
                QMatrix::from_bytes(format, rows, cols, QBytes::Owned(bytes)).unwrap()
            } else {
                QMatrix::quantize(&random_vec(71, rows * cols, 0.5), rows, cols, format).unwrap()
            };
            for layout in Layout::ALL.into_iter().filter(|l| l.format() == format) {
                let il = m.clone().interleaved(layout);
                assert_eq!(il.is_interleaved(), layout.fits(rows, cols), "{layout:?} {rows}×{cols}");
                assert_eq!(il.bytes(), m.bytes());
                assert_eq!(il.dequantize(), m.dequantize());
                assert_eq!(il.dequantize_rows(3, 5), m.dequantize_rows(3, 5));
                // Every kernel set: the one whose layout this is through its interleaved kernel,
                // the others through the rows read back.
                for k in Kernel::available() {
                    for n in [1, 5, TOKENS_PER_BLOCK + 3] {
                        let xs = random_vec(72 + n as u64, n * cols, 2.0);
                        let (want, got) = (m.matmul_with(k, &xs, n).unwrap(), il.matmul_with(k, &xs, n).unwrap());
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            // The interleaved kernels sum in another order than the row kernels.
                            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{} {layout:?} {rows}×{cols} n {n} [{i}]: {g} vs {w}", k.name());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn tiled_products_equal_single_products_at_every_edge() {
        // Rows not a multiple of the tile's rows, vector counts not a multiple of its vectors and
        // beyond one block of vectors, rows with and without blocks past the last four-block group.
        for k in Kernel::available() {
            for cols in [224, 256] {
                let rows = 37;
                let m = QMatrix::quantize(&random_vec(61, rows * cols, 0.5), rows, cols, QuantFormat::Q4_0).unwrap();
                // The tile call itself, on every kernel set (a plain loop of `dot` where it has no tiled kernel).
                let acts: Vec<ActQ8> = (0..TILE_ACTS).map(|t| k.prepare(QuantFormat::Q4_0, &random_vec(63 + t as u64, cols, 2.0))).collect();
                let bytes = m.bytes();
                let row = |r: usize| &bytes[r * m.row_bytes..(r + 1) * m.row_bytes];
                let tile = k.dot_tile(QuantFormat::Q4_0, std::array::from_fn(row), std::array::from_fn(|t| &acts[t]));
                for (r, vr) in tile.iter().enumerate() {
                    for (t, g) in vr.iter().enumerate() {
                        let want = k.dot(QuantFormat::Q4_0, row(r), &acts[t]);
                        assert!((g - want).abs() <= 1e-5 * (1.0 + want.abs()), "{} tile r{r} t{t}: {g} vs {want}", k.name());
                    }
                }
                for n in [4, 9, TOKENS_PER_BLOCK + 6] {
                    let xs = random_vec(62, n * cols, 2.0);
                    let got = m.matmul_with(k, &xs, n).unwrap();
                    for t in 0..n {
                        let act = k.prepare(QuantFormat::Q4_0, &xs[t * cols..(t + 1) * cols]);
                        for r in 0..rows {
                            let want = k.dot(QuantFormat::Q4_0, &m.bytes()[r * m.row_bytes..(r + 1) * m.row_bytes], &act);
                            let g = got[t * rows + r];
                            assert!((g - want).abs() <= 1e-5 * (1.0 + want.abs()), "{} cols {cols} n {n} t{t} r{r}: {g} vs {want}", k.name());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn forward_keeps_leading_dims() {
        let m = QMatrix::quantize(&random_vec(41, 5 * 64, 1.0), 5, 64, QuantFormat::Q8_0).unwrap();
        let x = Tensor::from_vec(random_vec(42, 2 * 3 * 64, 1.0), (2, 3, 64), &Device::Cpu).unwrap();
        let y = m.forward(&x).unwrap();
        assert_eq!(y.dims(), &[2, 3, 5]);
        let wd = m.dequantize_tensor(&Device::Cpu).unwrap();
        let want = x.reshape((6, 64)).unwrap().matmul(&wd.t().unwrap()).unwrap().reshape((2, 3, 5)).unwrap();
        let diff = (y - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 0.05, "{diff}");
    }
}
