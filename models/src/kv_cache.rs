//! The key/value cache of one conversation: per layer, the keys and values of every position
//! seen so far (`[batch, kv_heads, positions, head_dim]`), plus the token ids they came from.
//! A P-tuning v2 prefix is simply the cache's first `prefix_len` positions.
use crate::error::Result;
use candle_core::Tensor;

/// Keys and values of one layer.
#[derive(Clone, Default)]
pub struct LayerKv {
    k: Option<Tensor>,
    v: Option<Tensor>,
}

impl LayerKv {
    /// A layer cache that starts with the given keys and values (a prefix).
    pub fn with(k: Tensor, v: Tensor) -> Self {
        Self { k: Some(k), v: Some(v) }
    }

    /// Appends new keys/values along the position axis; returns all keys and values so far.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let k = match &self.k {
            Some(old) => Tensor::cat(&[old, k], 2)?,
            None => k.clone(),
        };
        let v = match &self.v {
            Some(old) => Tensor::cat(&[old, v], 2)?,
            None => v.clone(),
        };
        self.k = Some(k.clone());
        self.v = Some(v.clone());
        Ok((k, v))
    }

    /// The same keys/values repeated over a batch of `b` rows (for a prefix of batch 1).
    pub fn repeat_batch(&self, b: usize) -> Result<Self> {
        let rep = |t: &Option<Tensor>| -> Result<Option<Tensor>> {
            match t {
                Some(t) if b > 1 => Ok(Some(t.repeat((b, 1, 1, 1))?)),
                other => Ok(other.clone()),
            }
        };
        Ok(Self { k: rep(&self.k)?, v: rep(&self.v)? })
    }

    /// The dtype of the cached keys, if any.
    pub fn dtype(&self) -> Option<candle_core::DType> {
        self.k.as_ref().map(|k| k.dtype())
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.k.as_ref().and_then(|k| k.dims().get(2).copied()).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cache of one sequence: what incremental decoding needs to run only the new tokens.
#[derive(Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) prefix_len: usize,
    pub(crate) tokens: Vec<u32>,
}

impl KvCache {
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![LayerKv::default(); num_layers], prefix_len: 0, tokens: Vec::new() }
    }

    /// A cache that starts with a P-tuning prefix (per layer keys and values).
    pub fn with_prefix(layers: Vec<LayerKv>, prefix_len: usize) -> Self {
        Self { layers, prefix_len, tokens: Vec::new() }
    }

    /// Token ids run so far (not counting the prefix).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Number of virtual prefix positions.
    pub fn prefix_len(&self) -> usize {
        self.prefix_len
    }

    /// Keys/values of every layer, for the architectures.
    pub(crate) fn layers_mut(&mut self) -> &mut [LayerKv] {
        &mut self.layers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn append_grows_along_positions() {
        let mut kv = LayerKv::default();
        let a = Tensor::zeros((1, 2, 3, 4), DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::ones((1, 2, 1, 4), DType::F32, &Device::Cpu).unwrap();
        kv.append(&a, &a).unwrap();
        let (k, _) = kv.append(&b, &b).unwrap();
        assert_eq!(k.dims(), &[1, 2, 4, 4]);
        assert_eq!(kv.len(), 4);
    }
}
