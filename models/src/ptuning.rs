//! P-tuning v2 prefixes as THUDM's ptuning scripts save them: `pytorch_model.bin` (or
//! safetensors) with `transformer.prefix_encoder.embedding.weight` and, with
//! `prefix_projection`, the MLP `trans.0` → tanh → `trans.2`. The prefix becomes per-layer
//! keys and values placed at the head of the [`crate::KvCache`]; every token attends to them,
//! they are not rotated and do not shift positions (as in THUDM's code).
use crate::error::{ModelError, Result};
use crate::kv_cache::LayerKv;
use crate::model::Model;
use crate::weights::WeightStore;
use candle_core::{DType, Module, Tensor};
use serde::Deserialize;
use std::path::Path;

const EMBEDDING: &str = "transformer.prefix_encoder.embedding.weight";
const TRANS: &str = "transformer.prefix_encoder.trans";

#[derive(Deserialize)]
struct RawPrefixConfig {
    pre_seq_len: Option<usize>,
    #[serde(default)]
    prefix_projection: bool,
}

/// A loaded prefix: the keys and values it contributes to each layer.
#[derive(Clone)]
pub struct PrefixAdapter {
    layers: Vec<LayerKv>,
    len: usize,
}

impl PrefixAdapter {
    /// Loads a P-tuning v2 checkpoint folder for `model` and computes its keys and values.
    pub fn load(dir: &Path, model: &Model) -> Result<Self> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|source| ModelError::Io { path: config_path.clone(), source })?;
        let bad = |reason: String| ModelError::Config { path: config_path.clone(), reason };
        let raw: RawPrefixConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let pre_seq_len = raw.pre_seq_len.filter(|&n| n > 0).ok_or_else(|| bad("no positive `pre_seq_len`".into()))?;
        let store = WeightStore::open_dir(dir)?;
        let (dtype, device) = (model.dtype(), model.device());
        let c = model.config();
        let kv_size = 2 * c.num_layers * c.num_kv_heads * c.head_dim;
        let mismatch = |reason: String| ModelError::AdapterMismatch { adapter: dir.display().to_string(), reason };
        let emb_shape = store.shape_of(EMBEDDING)?;
        if emb_shape.first() != Some(&pre_seq_len) {
            return Err(mismatch(format!("{EMBEDDING} has shape {emb_shape:?} but pre_seq_len is {pre_seq_len}")));
        }
        let past = if raw.prefix_projection {
            let emb = store.get(EMBEDDING, &[pre_seq_len, c.hidden_size], dtype, device)?;
            let mid = store.shape_of(&format!("{TRANS}.0.weight"))?.first().copied().unwrap_or(0);
            let linear = |i: usize, out: usize, inp: usize| -> Result<candle_nn::Linear> {
                let w = store.get(&format!("{TRANS}.{i}.weight"), &[out, inp], dtype, device)?;
                let b = store.get(&format!("{TRANS}.{i}.bias"), &[out], dtype, device)?;
                Ok(candle_nn::Linear::new(w, Some(b)))
            };
            let first = linear(0, mid, c.hidden_size)?;
            let second = linear(2, kv_size, mid)?;
            second.forward(&first.forward(&emb)?.tanh()?)?
        } else {
            if emb_shape != [pre_seq_len, kv_size] {
                return Err(mismatch(format!(
                    "{EMBEDDING} has shape {emb_shape:?}, this model needs [{pre_seq_len}, {kv_size}]"
                )));
            }
            store.get(EMBEDDING, &[pre_seq_len, kv_size], dtype, device)?
        };
        Self::from_past(&past, c.num_layers, c.num_kv_heads, c.head_dim)
    }

    /// Splits the prefix encoder's output `[pre_seq_len, 2·layers·kv_heads·head_dim]` (laid
    /// out layer by layer, key then value) into per-layer caches `[1, kv_heads, pre, d]`.
    pub fn from_past(past: &Tensor, layers: usize, kv_heads: usize, head_dim: usize) -> Result<Self> {
        let len = past.dim(0)?;
        let past = past.reshape((len, 2 * layers, kv_heads, head_dim))?;
        let part = |i: usize| -> Result<Tensor> {
            Ok(past.narrow(1, i, 1)?.squeeze(1)?.transpose(0, 1)?.unsqueeze(0)?.contiguous()?)
        };
        let layers = (0..layers)
            .map(|l| Ok(LayerKv::with(part(2 * l)?, part(2 * l + 1)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, len })
    }

    /// Per-layer keys and values.
    pub fn layers(&self) -> &[LayerKv] {
        &self.layers
    }

    /// Number of virtual tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the prefix is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stored dtype of the keys, for callers that mix dtypes.
    pub fn dtype(&self) -> Option<DType> {
        self.layers.first().and_then(|l| l.dtype())
    }
}
