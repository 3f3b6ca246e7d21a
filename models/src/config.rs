//! Model configuration read from a Hugging Face `config.json` (ChatGLM-6B, ChatGLM2/3, GLM-4).
use crate::error::{ModelError, Result};
use serde::Deserialize;
use std::path::Path;

/// Which architecture a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// ChatGLM-6B (v1): 2D RoPE, GeLU, LayerNorm, DeepNorm residual, prefix-LM mask.
    ChatGlm6b,
    /// ChatGLM2-6B, ChatGLM3-6B and GLM-4: MQA/GQA, half-dim RoPE, RMSNorm, SwiGLU.
    ChatGlm2,
}

/// Sizes and switches of a model, every one read from `config.json`.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Architecture family.
    pub family: Family,
    /// Vocabulary size (rows of the embedding and the output layer).
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// Number of key/value heads (multi-query groups; equals `num_heads` without MQA).
    pub num_kv_heads: usize,
    /// Inner size of the MLP (per branch for SwiGLU).
    pub ffn_hidden_size: usize,
    /// Epsilon of the layer norms.
    pub eps: f64,
    /// RoPE base (10000 times `rope_ratio` for GLM-4).
    pub rope_base: f64,
    /// Bias on the query/key/value projection.
    pub qkv_bias: bool,
    /// Bias on the other linear layers.
    pub linear_bias: bool,
    /// RMSNorm (true) or LayerNorm (false) in ChatGLM2-style models.
    pub rmsnorm: bool,
    /// A final norm before the output layer (ChatGLM2-style).
    pub post_layer_norm: bool,
    /// Residual taken after the input norm (ChatGLM2-style switch).
    pub residual_post_layernorm: bool,
    /// Token ids that end generation according to the config.
    pub eos_token_ids: Vec<u32>,
    /// `<sop>` / bos id (ChatGLM-6B: where the prefix-LM context ends).
    pub bos_token_id: Option<u32>,
    /// `[MASK]` id (ChatGLM-6B).
    pub mask_token_id: Option<u32>,
    /// `[gMASK]` id (ChatGLM-6B).
    pub gmask_token_id: Option<u32>,
    /// Longest sequence the model was trained for.
    pub max_sequence_length: usize,
    /// Storage dtype named in the config (`float16`, `bfloat16`, `float32`).
    pub torch_dtype: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Deserialize)]
struct RawConfig {
    hidden_size: Option<usize>,
    num_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    vocab_size: Option<usize>,
    padded_vocab_size: Option<usize>,
    inner_hidden_size: Option<usize>,
    ffn_hidden_size: Option<usize>,
    kv_channels: Option<usize>,
    multi_query_attention: Option<bool>,
    multi_query_group_num: Option<usize>,
    layernorm_epsilon: Option<f64>,
    rope_ratio: Option<f64>,
    add_qkv_bias: Option<bool>,
    add_bias_linear: Option<bool>,
    rmsnorm: Option<bool>,
    post_layer_norm: Option<bool>,
    apply_residual_connection_post_layernorm: Option<bool>,
    position_encoding_2d: Option<bool>,
    eos_token_id: Option<OneOrMany>,
    bos_token_id: Option<u32>,
    mask_token_id: Option<u32>,
    gmask_token_id: Option<u32>,
    max_sequence_length: Option<usize>,
    seq_length: Option<usize>,
    torch_dtype: Option<String>,
}

impl ModelConfig {
    /// Reads `config.json` from a model folder (or the file itself).
    pub fn from_path(path: &Path) -> Result<Self> {
        let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file)
            .map_err(|source| ModelError::Io { path: file.clone(), source })?;
        Self::from_json(&text).map_err(|reason| ModelError::Config { path: file, reason })
    }

    /// Parses the text of a `config.json`.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let need = |v: Option<usize>, name: &str| v.ok_or_else(|| format!("missing `{name}`"));
        let hidden_size = need(raw.hidden_size, "hidden_size")?;
        let num_layers = need(raw.num_layers, "num_layers")?;
        let num_heads = need(raw.num_attention_heads, "num_attention_heads")?;
        if num_heads == 0 || hidden_size == 0 || num_layers == 0 {
            return Err("hidden_size, num_layers and num_attention_heads must be positive".into());
        }
        let v1 = raw.position_encoding_2d.is_some() || raw.inner_hidden_size.is_some();
        let family = if v1 && raw.multi_query_group_num.is_none() {
            Family::ChatGlm6b
        } else {
            Family::ChatGlm2
        };
        let eos_token_ids = match raw.eos_token_id {
            Some(OneOrMany::One(id)) => vec![id],
            Some(OneOrMany::Many(ids)) => ids,
            None => Vec::new(),
        };
        let eps = raw.layernorm_epsilon.unwrap_or(1e-5);
        let config = match family {
            Family::ChatGlm6b => {
                if hidden_size % num_heads != 0 || (hidden_size / num_heads) % 4 != 0 {
                    return Err("hidden_size / num_attention_heads must be a multiple of 4".into());
                }
                ModelConfig {
                    family,
                    vocab_size: need(raw.vocab_size, "vocab_size")?,
                    hidden_size,
                    num_layers,
                    num_heads,
                    head_dim: hidden_size / num_heads,
                    num_kv_heads: num_heads,
                    ffn_hidden_size: raw.inner_hidden_size.unwrap_or(4 * hidden_size),
                    eps,
                    rope_base: 10000.0,
                    qkv_bias: true,
                    linear_bias: true,
                    rmsnorm: false,
                    post_layer_norm: true,
                    residual_post_layernorm: true,
                    eos_token_ids,
                    bos_token_id: raw.bos_token_id,
                    mask_token_id: raw.mask_token_id,
                    gmask_token_id: raw.gmask_token_id,
                    max_sequence_length: raw.max_sequence_length.unwrap_or(2048),
                    torch_dtype: raw.torch_dtype,
                }
            }
            Family::ChatGlm2 => {
                let head_dim = raw.kv_channels.unwrap_or(hidden_size / num_heads);
                let mqa = raw.multi_query_attention.unwrap_or(false);
                let num_kv_heads =
                    if mqa { need(raw.multi_query_group_num, "multi_query_group_num")? } else { num_heads };
                if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
                    return Err("num_attention_heads must be a multiple of multi_query_group_num".into());
                }
                if !head_dim.is_multiple_of(4) {
                    return Err("kv_channels must be a multiple of 4".into());
                }
                ModelConfig {
                    family,
                    vocab_size: need(raw.padded_vocab_size.or(raw.vocab_size), "padded_vocab_size")?,
                    hidden_size,
                    num_layers,
                    num_heads,
                    head_dim,
                    num_kv_heads,
                    ffn_hidden_size: need(raw.ffn_hidden_size, "ffn_hidden_size")?,
                    eps,
                    rope_base: 10000.0 * raw.rope_ratio.unwrap_or(1.0),
                    qkv_bias: raw.add_qkv_bias.unwrap_or(false),
                    linear_bias: raw.add_bias_linear.unwrap_or(false),
                    rmsnorm: raw.rmsnorm.unwrap_or(true),
                    post_layer_norm: raw.post_layer_norm.unwrap_or(true),
                    residual_post_layernorm: raw
                        .apply_residual_connection_post_layernorm
                        .unwrap_or(false),
                    eos_token_ids,
                    bos_token_id: raw.bos_token_id,
                    mask_token_id: None,
                    gmask_token_id: None,
                    max_sequence_length: raw.seq_length.or(raw.max_sequence_length).unwrap_or(8192),
                    torch_dtype: raw.torch_dtype,
                }
            }
        };
        Ok(config)
    }

    /// Width of the fused query/key/value projection's output.
    pub fn qkv_size(&self) -> usize {
        (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_chatglm3_config_with_list_eos() {
        let text = r#"{"hidden_size":48,"num_layers":3,"num_attention_heads":4,"kv_channels":12,
            "multi_query_attention":true,"multi_query_group_num":1,"padded_vocab_size":100,
            "ffn_hidden_size":96,"add_qkv_bias":true,"rope_ratio":500,"eos_token_id":[2,7]}"#;
        let c = ModelConfig::from_json(text).unwrap();
        assert_eq!(c.family, Family::ChatGlm2);
        assert_eq!((c.num_kv_heads, c.head_dim, c.qkv_size()), (1, 12, 72));
        assert_eq!(c.rope_base, 5_000_000.0);
        assert_eq!(c.eos_token_ids, vec![2, 7]);
    }

    #[test]
    fn reads_a_v1_config() {
        let text = r#"{"hidden_size":64,"num_layers":2,"num_attention_heads":4,"inner_hidden_size":256,
            "vocab_size":1000,"position_encoding_2d":true,"eos_token_id":5,"bos_token_id":4,"gmask_token_id":3}"#;
        let c = ModelConfig::from_json(text).unwrap();
        assert_eq!(c.family, Family::ChatGlm6b);
        assert_eq!((c.head_dim, c.ffn_hidden_size, c.qkv_size()), (16, 256, 192));
    }

    #[test]
    fn missing_sizes_are_named() {
        let err = ModelConfig::from_json(r#"{"hidden_size":64}"#).unwrap_err();
        assert!(err.contains("num_layers"), "{err}");
    }
}
