//! Quantized weights on an accelerator (CUDA, Metal): our blocks are ggml's, byte for byte
//! (`matrix` tests it), so a [`QMatrix`] uploads as one of candle's `QTensor`s and multiplies
//! with candle's device kernels (quantized matrix-vector products for decoding, quantized or
//! dequantized matrix products for prompts). Our own kernels are CPU kernels; this is what
//! keeps a 4-bit model 4-bit on a GPU instead of widening it to f32 there.
//!
//! F16 weights stay half floats on the device and multiply through candle's f16 product.
//!
//! Nothing here is CPU-specific: on the CPU device the same code runs candle's CPU kernels,
//! which is how the tests check it where no GPU is.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::{QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use super::{QMatrix, QuantFormat, Result};

/// One linear weight in device memory, ready for candle's quantized product.
pub struct DeviceMatrix {
    product: QMatMul,
    rows: usize,
    cols: usize,
}

impl std::fmt::Debug for DeviceMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceMatrix({}×{})", self.rows, self.cols)
    }
}

impl DeviceMatrix {
    /// Copies `q` (any layout: interleaved matrices are read back in rows) to `device`.
    pub fn upload(q: &QMatrix, device: &Device) -> Result<Self> {
        let (rows, cols) = (q.rows(), q.cols());
        let bytes = q.bytes();
        let mut words = Vec::new();
        let bytes = two_byte_aligned(&bytes, &mut words);
        let product = match q.format() {
            QuantFormat::F16 => QMatMul::TensorF16(Tensor::from_raw_buffer(bytes, DType::F16, &[rows, cols], device)?),
            format => {
                let storage = QStorage::from_data(Cow::Borrowed(bytes), device, format.ggml_dtype())?;
                QMatMul::QTensor(Arc::new(QTensor::new(storage, (rows, cols))?))
            }
        };
        Ok(Self { product, rows, cols })
    }

    /// `x Wᵀ` for `x` `[.., cols]` (f32): `[.., rows]`. With `training`, the weight is
    /// dequantized for this call and multiplied as a constant, so gradients flow to `x` (candle's
    /// quantized product has no backward pass; see `quant_grad` for the CPU's equivalent).
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let in_dtype = x.dtype();
        if training {
            let w = match &self.product {
                QMatMul::QTensor(t) => t.dequantize(x.device())?,
                QMatMul::Tensor(w) | QMatMul::TensorF16(w) => w.clone(),
            };
            return Ok(x.broadcast_matmul(&w.to_dtype(in_dtype)?.t()?)?);
        }
        let x = if in_dtype == DType::F32 { x.contiguous()? } else { x.to_dtype(DType::F32)? };
        Ok(self.product.forward(&x)?.to_dtype(in_dtype)?)
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
}

/// `bytes` where candle may read them as its block types, whose f16 scales need 2-byte
/// alignment (it asserts that): as they are when they already sit there (the cache's tensors
/// start 32-byte aligned), else copied into `words`. Every format's rows are an even number of
/// bytes, so nothing is cut.
fn two_byte_aligned<'a>(bytes: &'a [u8], words: &'a mut Vec<u16>) -> &'a [u8] {
    if (bytes.as_ptr() as usize).is_multiple_of(2) {
        return bytes;
    }
    debug_assert!(bytes.len().is_multiple_of(2));
    *words = bytes.chunks_exact(2).map(|c| u16::from_ne_bytes([c[0], c[1]])).collect();
    // SAFETY: `words` lives as long as the returned slice (the same lifetime), u16 has no
    // padding, and its 2·len bytes are initialized.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 2) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::testutil::random_vec;

    fn max_rel(a: &[f32], b: &[f32]) -> f32 {
        let size = b.iter().map(|v| v.abs()).fold(0f32, f32::max).max(1e-6);
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / size
    }

    #[test]
    fn candle_products_over_our_blocks_equal_our_kernels() {
        // On the CPU device candle runs its own CPU kernels over the uploaded blocks: the same
        // quantized weights, so the products agree with ours up to the activations' rounding.
        let (rows, cols) = (48, 512);
        let w = random_vec(7, rows * cols, 1.0);
        for format in QuantFormat::ALL {
            let q = QMatrix::quantize(&w, rows, cols, format).unwrap();
            let dense = Tensor::from_vec(q.dequantize(), (rows, cols), &Device::Cpu).unwrap();
            for (&interleave, seq) in [false, true].iter().zip([1usize, 5]) {
                let q = if interleave { q.clone().for_decoding() } else { q.clone() };
                let d = DeviceMatrix::upload(&q, &Device::Cpu).unwrap();
                assert_eq!(d.dims(), (rows, cols));
                let x = Tensor::from_vec(random_vec(8 + seq as u64, seq * cols, 2.0), (1, seq, cols), &Device::Cpu).unwrap();
                let want = x.broadcast_matmul(&dense.t().unwrap()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let got = d.forward(&x, false).unwrap();
                assert_eq!(got.dims(), &[1, seq, rows]);
                let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                // 8-bit activations (block formats) or f16 rounding of the input (F16).
                assert!(max_rel(&got, &want) < 0.02, "{format} seq {seq}: {}", max_rel(&got, &want));
                let exact = d.forward(&x, true).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert!(max_rel(&exact, &want) < 1e-5, "{format} training path: {}", max_rel(&exact, &want));
            }
        }
    }

    #[test]
    fn unaligned_bytes_are_copied_to_an_aligned_place() {
        let buf: Vec<u8> = (0..41u8).collect();
        let odd = if (buf.as_ptr() as usize).is_multiple_of(2) { &buf[1..] } else { &buf[..40] };
        let mut words = Vec::new();
        let got = two_byte_aligned(odd, &mut words);
        assert_eq!(got, odd);
        assert_eq!(got.as_ptr() as usize % 2, 0);
        let even = if (buf.as_ptr() as usize).is_multiple_of(2) { &buf[..40] } else { &buf[1..] };
        assert_eq!(two_byte_aligned(even, &mut Vec::new()).as_ptr(), even.as_ptr(), "aligned bytes are not copied");
    }

    #[test]
    fn the_training_path_passes_gradients_to_the_input() {
        let (rows, cols) = (8, 64);
        let w = random_vec(3, rows * cols, 1.0);
        let q = QMatrix::quantize(&w, rows, cols, QuantFormat::Q4_0).unwrap();
        let d = DeviceMatrix::upload(&q, &Device::Cpu).unwrap();
        let x = candle_core::Var::from_vec(random_vec(4, 2 * cols, 1.0), (2, cols), &Device::Cpu).unwrap();
        let y = d.forward(x.as_tensor(), true).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        // d(sum(x Wᵀ))/dx = column sums of W.
        let wd = q.dequantize();
        for (c, v) in g[0].iter().enumerate() {
            let want: f32 = (0..rows).map(|r| wd[r * cols + c]).sum();
            assert!((v - want).abs() < 1e-4, "column {c}: {v} vs {want}");
        }
    }
}
