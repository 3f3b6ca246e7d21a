//! DoctorGLM engine: the ChatGLM family on candle.
//!
//! Module map:
//! - `error`: the crate's error type.
//! - `config`: `config.json` → [`ModelConfig`] (ChatGLM-6B, ChatGLM2/3, GLM-4).
//! - `weights`: safetensors / PyTorch `.bin` files, single or sharded, checked per tensor.
//! - `device`: CPU, CUDA or Metal.
//! - `detect`: what a model path is (folder or GGUF, family, stored quantization) without loading it.
//! - `layers`: shared blocks (LoRA-aware linear, norms, RoPE, attention).
//! - `decode_attention`: the decode step's attention (one token over the KV cache) fused on the CPU.
//! - `heads_rope`: ChatGLM2's qkv output split into heads with RoPE, fused on the CPU.
//! - `swiglu`: the MLP's `silu(gate) · up` fused on the CPU; `vector_exp`: the vector `e^x` both use.
//! - `arch`, `chatglm6b`, `chatglm2`: the two architectures (v1; v2/v3/GLM-4).
//! - `kv_cache`: per-sequence keys/values for incremental decoding.
//! - `lora`: PEFT LoRA adapters (unmerged, several at once, optional merge).
//! - `ptuning`: P-tuning v2 prefixes.
//! - `model`: [`Model`], loading, forward passes, adapters.
//! - `generate`: the generation loop (streaming, stop tokens, cancellation).
//! - `sampling`: next-token choice (repetition penalty, n-gram ban, temperature, top-k, top-p, seeded draw, presets).
//! - `train`: LoRA training (loss, AdamW/Lion, clipping, schedules).
//! - `tokenizer`: the tokenizers of ChatGLM-6B, ChatGLM2/3 and GLM-4 behind one `Tokenizer`.
//! - `chat_format`: each family's chat prompt as token ids.
//! - `quant`: quantized weights (Q8_0, Q4_0, Q4_K), run-time chosen SIMD kernels, multi-threaded products, GGUF cache files.
//! - `quant_grad`: frozen linear products (quantized Q8_0/Q4_0, or full precision) as candle custom ops whose backward gives the input gradient only (LoRA training).

pub mod arch;
pub mod awake;
pub mod chat_format;
pub mod chatglm2;
pub mod chatglm6b;
pub mod config;
mod cpu_storage;
pub mod decode_attention;
pub mod dense_matvec;
pub mod detect;
pub mod device;
pub mod error;
pub mod generate;
pub mod heads_rope;
pub mod kv_cache;
pub mod layers;
pub mod lora;
pub mod model;
mod norm_rows;
pub mod pages;
pub mod ptuning;
pub mod quant;
pub mod quant_grad;
pub mod sampling;
mod split;
pub mod swiglu;
pub mod tokenizer;
pub mod train;
mod vector_exp;
mod warm;
pub mod weights;

pub use config::{Family, ModelConfig};
pub use device::{select_device, DeviceChoice};
pub use error::{ModelError, Result};
pub use generate::{generate, GenerationSettings, Generated, Request, StopReason};
pub use kv_cache::KvCache;
pub use lora::{LoraConfig, PeftAdapter};
pub use model::{CacheUse, LoadOptions, Model, QuantizeOptions};
pub use ptuning::PrefixAdapter;
pub use sampling::{Preset, Sampler, SamplingConfig};
