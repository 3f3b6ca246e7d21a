//! Quantized weights: ggml block formats, run-time chosen SIMD kernels, multi-threaded products.
//!
//! Module map:
//! - `format`: the weight formats (F16, and the block formats Q8_0, Q4_0, Q4_K) and their byte layouts.
//! - `reference`: portable scalar quantize / dequantize / dot (the reference for every kernel).
//! - `activation`: activations quantized to 8 bits per 32-value block.
//! - `kernel`: run-time choice of scalar, AVX2, AVX-VNNI, AVX-512, AVX-512 VNNI or NEON dot products.
//! - `x86`, `x86_avx_vnni`, `x86_vnni`, `x86_interleaved_256`, `x86_f16`, `neon`: the SIMD kernels (AVX2 / AVX-512; 256-bit Q4 kernels for AVX2 and AVX-VNNI; AVX-512 VNNI; the interleaved layouts' 256-bit kernels; F16 weights by F16C/AVX-512F and FMA; NEON).
//! - `bandwidth`: the memory read-bandwidth probe behind the benchmarks' roofline ratios.
//! - `float_product`: many vectors times a quantized matrix in f32 (prompts without a tiled kernel, training), by slices into `gemm`.
//! - `matrix`: [`QMatrix`], a quantized matrix with multi-threaded matrix-vector and small-matrix products.
//! - `gguf`: streaming GGUF writer and memory-mapped reader (the quantization cache format).
//! - `cache`: the quantized model cache (every tensor of a quantized model, memory-mapped on later starts).
//! - `device`: [`device::DeviceMatrix`], quantized weights uploaded to a GPU for candle's kernels.
//! - `linear`: quantizing the engine's linear layers in place, and the cache file of the result.
//! - `thudm_int4`: THUDM's int4/int8 checkpoints (`weight` + `weight_scale`) as Q4_0/Q8_0, losslessly.
//! - `imported`: building quantized linear layers from weights stored quantized (the two above).
//! - `gguf_import`: llama.cpp GGUF files of the `chatglm` architecture (ChatGLM3, GLM-4).
//! - `error`: [`QuantError`].

pub mod activation;
pub mod bandwidth;
pub mod cache;
pub mod device;
pub mod error;
pub mod float_product;
pub mod format;
pub mod gguf;
pub mod gguf_import;
pub mod imported;
pub mod kernel;
pub mod linear;
pub mod matrix;
mod block_lanes;
mod interleaved;
mod octets;
mod q4k_lanes;
#[cfg(target_arch = "aarch64")]
mod neon;
pub mod reference;
pub mod thudm_int4;
#[cfg(test)]
pub(crate) mod testutil;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_avx_vnni;
#[cfg(target_arch = "x86_64")]
mod x86_f16;
#[cfg(target_arch = "x86_64")]
mod x86_interleaved_256;
#[cfg(target_arch = "x86_64")]
mod x86_vnni;

pub use activation::ActQ8;
pub use error::{QuantError, Result};
pub use format::QuantFormat;
pub use kernel::Kernel;
pub use matrix::{QBytes, QMatrix};
