//! llama.cpp GGUF files of the `chatglm` architecture (ChatGLM2/3 and GLM-4 as
//! `convert_hf_to_gguf.py`'s `ChatGLMModel` writes them, then possibly `llama-quantize`d).
//!
//! The converter strips `transformer.` and renames, without reordering any weight:
//!
//! | GGUF | checkpoint (`transformer.` …) |
//! |---|---|
//! | `token_embd.weight` | `embedding.word_embeddings.weight` |
//! | `blk.N.attn_norm.weight` | `encoder.layers.N.input_layernorm.weight` |
//! | `blk.N.attn_qkv.{weight,bias}` | `encoder.layers.N.self_attention.query_key_value.*` |
//! | `blk.N.attn_output.weight` | `encoder.layers.N.self_attention.dense.weight` |
//! | `blk.N.ffn_norm.weight` | `encoder.layers.N.post_attention_layernorm.weight` |
//! | `blk.N.ffn_up.weight` | `encoder.layers.N.mlp.dense_h_to_4h.weight` (gate and up halves, as stored) |
//! | `blk.N.ffn_down.weight` | `encoder.layers.N.mlp.dense_4h_to_h.weight` |
//! | `output_norm.weight` | `encoder.final_layernorm.weight` |
//! | `output.weight` | `output_layer.weight` |
//!
//! Sizes come from `chatglm.context_length`, `.embedding_length`, `.block_count`,
//! `.feed_forward_length`, `.attention.head_count`, `.attention.head_count_kv`,
//! `.attention.layer_norm_rms_epsilon`, `.rope.dimension_count` (half a head: ChatGLM rotates
//! the first half of each head) and `.rope.freq_base` (10000 · `rope_ratio`); the vocabulary
//! from `token_embd`'s rows; end tokens from `tokenizer.ggml.eos_token_id` / `eot_token_id`.
//! Tensor types F32, F16, BF16, Q8_0, Q4_0 and Q4_K are read (the block formats stay
//! memory-mapped and run on our kernels); any other type is refused by name.
//!
//! The tokenizer is not rebuilt from the file's `tokenizer.ggml.*` lists: the model's own
//! `tokenizer.model` must sit next to the GGUF file ([`tokenizer_dir`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};

use super::gguf::{self, GgufTensor};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::weights::WeightStore;

/// The `general.architecture` this importer reads.
pub const ARCH: &str = "chatglm";

/// What a GGUF file's header says, without reading tensor data.
#[derive(Debug, Clone)]
pub struct GgufSummary {
    /// `general.architecture`.
    pub architecture: String,
    /// `general.name`, if any.
    pub name: Option<String>,
    /// Number of tensors of each GGML type (`"Q4_0" → 169`).
    pub tensor_types: Vec<(String, usize)>,
    /// `tokenizer.ggml.model` (`llama` for ChatGLM3's SentencePiece, `gpt2` for GLM-4's BPE).
    pub tokenizer_model: Option<String>,
}

fn bad(path: &Path, reason: String) -> ModelError {
    ModelError::BadWeightFile { path: path.to_path_buf(), reason }
}

fn read_header(path: &Path) -> Result<gguf_file::Content> {
    let mut f = std::fs::File::open(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    // candle's parser may panic on a damaged header; that must be an error, not a crash.
    match std::panic::catch_unwind(move || gguf_file::Content::read(&mut f)) {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(bad(path, format!("not a readable GGUF file ({e})"))),
        Err(_) => Err(bad(path, "not a readable GGUF file (the header could not be parsed)".into())),
    }
}

/// Reads the header of a GGUF file: architecture, name, tensor types, tokenizer kind.
pub fn summarize(path: &Path) -> Result<GgufSummary> {
    let c = read_header(path)?;
    let s = |k: &str| c.metadata.get(k).and_then(|v| v.to_string().ok()).cloned();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for info in c.tensor_infos.values() {
        *counts.entry(format!("{:?}", info.ggml_dtype).to_uppercase()).or_default() += 1;
    }
    let mut tensor_types: Vec<(String, usize)> = counts.into_iter().collect();
    tensor_types.sort();
    Ok(GgufSummary {
        architecture: s("general.architecture").unwrap_or_default(),
        name: s("general.name"),
        tensor_types,
        tokenizer_model: s("tokenizer.ggml.model"),
    })
}

fn num(meta: &HashMap<String, Value>, key: &str) -> Option<f64> {
    let v = meta.get(key)?;
    v.to_u64()
        .map(|x| x as f64)
        .or_else(|_| v.to_i64().map(|x| x as f64))
        .or_else(|_| v.to_f64())
        .or_else(|_| v.to_u32().map(|x| x as f64))
        .or_else(|_| v.to_i32().map(|x| x as f64))
        .or_else(|_| v.to_f32().map(|x| x as f64))
        .or_else(|_| v.to_u16().map(|x| x as f64))
        .or_else(|_| v.to_u8().map(|x| x as f64))
        .ok()
}

/// The checkpoint name of a GGUF tensor name (`None` for tensors the engine does not use).
pub fn checkpoint_name(gguf_name: &str) -> Option<String> {
    let fixed = match gguf_name {
        "token_embd.weight" => Some("transformer.embedding.word_embeddings.weight"),
        "output_norm.weight" => Some("transformer.encoder.final_layernorm.weight"),
        "output.weight" => Some("transformer.output_layer.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = tail.rsplit_once('.')?;
    let module = match module {
        "attn_norm" => "input_layernorm",
        "attn_qkv" => "self_attention.query_key_value",
        "attn_output" => "self_attention.dense",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_up" => "mlp.dense_h_to_4h",
        "ffn_down" => "mlp.dense_4h_to_h",
        _ => return None,
    };
    Some(format!("transformer.encoder.layers.{layer}.{module}.{kind}"))
}

/// Opens a `chatglm` GGUF file: the model config from its metadata and its tensors (memory-mapped,
/// block formats left quantized) under the checkpoint names the engine loads.
pub fn open(path: &Path) -> Result<(ModelConfig, WeightStore)> {
    let header = read_header(path)?;
    let meta = &header.metadata;
    let arch = meta.get("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    if arch != ARCH {
        return Err(bad(
            path,
            format!("GGUF architecture {arch:?} is not supported; this engine reads `chatglm` files (ChatGLM2/3, GLM-4 converted by llama.cpp)"),
        ));
    }
    let key = |k: &str| format!("{ARCH}.{k}");
    let need = |k: &str| num(meta, &key(k)).ok_or_else(|| bad(path, format!("metadata {} is missing", key(k))));
    let hidden = need("embedding_length")? as usize;
    let layers = need("block_count")? as usize;
    let heads = need("attention.head_count")? as usize;
    let kv_heads = num(meta, &key("attention.head_count_kv")).map_or(heads, |v| v as usize);
    let ffn = need("feed_forward_length")? as usize;
    let eps = num(meta, &key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5);
    let freq_base = num(meta, &key("rope.freq_base")).unwrap_or(10000.0);
    let context = num(meta, &key("context_length")).map_or(8192, |v| v as usize);
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(bad(path, format!("embedding_length {hidden} is not a multiple of head_count {heads}")));
    }
    let head_dim = num(meta, &key("attention.key_length")).map_or(hidden / heads, |v| v as usize);
    if let Some(rot) = num(meta, &key("rope.dimension_count")) {
        if rot as usize != head_dim / 2 {
            return Err(bad(path, format!("rope.dimension_count {rot} is not half the head size {head_dim}; only ChatGLM's half-head RoPE is supported")));
        }
    }

    let file = gguf::open(path).map_err(|e| bad(path, e.to_string()))?;
    let mut tensors: HashMap<String, GgufTensor> = HashMap::new();
    for (name, t) in file.tensors {
        if let Some(ck) = checkpoint_name(&name) {
            tensors.insert(ck, t);
        } else if name.starts_with("blk.") && (name.contains(".attn_q.") || name.contains(".attn_k.") || name.contains(".attn_v.")) {
            return Err(bad(path, format!("tensor {name}: separate q/k/v projections are not supported (expected the fused attn_qkv)")));
        } else {
            tracing::debug!("{}: ignoring tensor {name}", path.display());
        }
    }
    for required in ["token_embd.weight", "blk.0.attn_qkv.weight", "blk.0.ffn_up.weight"] {
        let ck = checkpoint_name(required).unwrap_or_default();
        if !tensors.contains_key(&ck) {
            return Err(bad(path, format!("tensor {required} is missing")));
        }
    }
    let embed = "transformer.embedding.word_embeddings.weight";
    let vocab = tensors.get(embed).map(|t| t.shape()).and_then(|s| s.first().copied()).unwrap_or(0);
    if !tensors.contains_key("transformer.output_layer.weight") {
        // llama.cpp falls back to the embeddings when a file has no separate output matrix.
        if let Some(t) = tensors.get(embed).cloned() {
            tensors.insert("transformer.output_layer.weight".into(), t);
        }
    }
    let has = |n: &str| tensors.contains_key(n);
    let mut eos: Vec<u32> = Vec::new();
    for k in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(id) = num(meta, k) {
            if !eos.contains(&(id as u32)) {
                eos.push(id as u32);
            }
        }
    }
    let config = serde_json::json!({
        "hidden_size": hidden,
        "num_layers": layers,
        "num_attention_heads": heads,
        "kv_channels": head_dim,
        "multi_query_attention": kv_heads != heads,
        "multi_query_group_num": kv_heads,
        "padded_vocab_size": vocab,
        "ffn_hidden_size": ffn,
        "layernorm_epsilon": eps,
        "rope_ratio": freq_base / 10000.0,
        "add_qkv_bias": has("transformer.encoder.layers.0.self_attention.query_key_value.bias"),
        "add_bias_linear": has("transformer.encoder.layers.0.self_attention.dense.bias"),
        "rmsnorm": true,
        "post_layer_norm": has("transformer.encoder.final_layernorm.weight"),
        "apply_residual_connection_post_layernorm": false,
        "eos_token_id": eos,
        "seq_length": context,
    });
    let config = ModelConfig::from_json(&config.to_string()).map_err(|reason| ModelError::Config { path: path.to_path_buf(), reason })?;
    Ok((config, WeightStore::from_gguf_tensors(path, tensors)))
}

/// The folder whose tokenizer goes with a GGUF file: the file's own folder, which must hold the
/// model's `tokenizer.model` (ChatGLM3's SentencePiece model or GLM-4's tiktoken ranks).
pub fn tokenizer_dir(gguf_path: &Path) -> Result<PathBuf> {
    let dir = gguf_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    if dir.join("tokenizer.model").is_file() {
        Ok(dir)
    } else {
        Err(ModelError::Io {
            path: dir.join("tokenizer.model"),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "a GGUF model needs its tokenizer: copy the original model's tokenizer.model (and tokenizer_config.json) next to the .gguf file",
            ),
        })
    }
}
