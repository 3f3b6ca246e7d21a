//! The key/value cache of one conversation: per layer, the keys and values of every position
//! seen so far (`[batch, kv_heads, positions, head_dim]`), plus the token ids they came from.
//! A P-tuning v2 prefix is simply the cache's first `prefix_len` positions.
use crate::error::Result;
use candle_core::Tensor;

/// Positions a layer's buffers grow by when they are full.
pub const GROW_POSITIONS: usize = 256;

/// Keys and values of one layer.
///
/// Decoding writes each new position in place into buffers preallocated `GROW_POSITIONS` at a
/// time (`[batch, kv_heads, capacity, head_dim]`) and hands attention views of the filled part,
/// so a step copies only its own keys and values. Two exceptions keep the old behaviour: the
/// first append of a fresh cache stores the given tensors as they are, and new keys/values that
/// carry gradients (training) are concatenated, so that gradients flow through the cache.
#[derive(Default)]
pub struct LayerKv {
    k: Option<Tensor>,
    v: Option<Tensor>,
    /// Filled positions (the buffers may hold more).
    len: usize,
    /// Whether the buffers belong to this cache alone and may be written in place (false for
    /// a clone, a prefix or tensors given from outside: the first write then copies them).
    owned: bool,
}

impl Clone for LayerKv {
    /// Shares the buffers for reading; whichever side appends next writes past the shared part
    /// (the original) or into a copy of its own (the clone), so neither sees the other's writes.
    fn clone(&self) -> Self {
        Self { k: self.k.clone(), v: self.v.clone(), len: self.len, owned: false }
    }
}

impl LayerKv {
    /// A layer cache that starts with the given keys and values (a prefix).
    pub fn with(k: Tensor, v: Tensor) -> Self {
        let len = k.dims().get(2).copied().unwrap_or(0);
        Self { k: Some(k), v: Some(v), len, owned: false }
    }

    /// Appends new keys/values along the position axis; returns all keys and values so far.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = k.dim(2)?;
        let (Some(old_k), Some(old_v)) = (&self.k, &self.v) else {
            self.k = Some(k.clone());
            self.v = Some(v.clone());
            self.len = n;
            self.owned = false;
            return Ok((k.clone(), v.clone()));
        };
        if k.track_op() || v.track_op() || old_k.track_op() || old_v.track_op() {
            // Gradients must flow through the cache: concatenate (new tensors, nothing written in place).
            let k = Tensor::cat(&[&old_k.narrow(2, 0, self.len)?, k], 2)?;
            let v = Tensor::cat(&[&old_v.narrow(2, 0, self.len)?, v], 2)?;
            self.len = k.dim(2)?;
            self.k = Some(k.clone());
            self.v = Some(v.clone());
            self.owned = false;
            return Ok((k, v));
        }
        let capacity = old_k.dim(2)?;
        if !self.owned || self.len + n > capacity {
            let capacity = (self.len + n).div_ceil(GROW_POSITIONS) * GROW_POSITIONS;
            let grow = |old: &Tensor| -> Result<Tensor> {
                let (b, h, _, d) = old.dims4()?;
                let buf = Tensor::zeros((b, h, capacity, d), old.dtype(), old.device())?;
                if self.len > 0 {
                    buf.slice_set(&old.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                }
                Ok(buf)
            };
            self.k = Some(grow(old_k)?);
            self.v = Some(grow(old_v)?);
            self.owned = true;
        }
        let (Some(buf_k), Some(buf_v)) = (&self.k, &self.v) else {
            unreachable!("both buffers were set above");
        };
        buf_k.slice_set(&k.contiguous()?, 2, self.len)?;
        buf_v.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len += n;
        Ok((buf_k.narrow(2, 0, self.len)?, buf_v.narrow(2, 0, self.len)?))
    }

    /// The same keys/values repeated over a batch of `b` rows (for a prefix of batch 1).
    pub fn repeat_batch(&self, b: usize) -> Result<Self> {
        let rep = |t: &Option<Tensor>| -> Result<Option<Tensor>> {
            match t {
                Some(t) if b > 1 => Ok(Some(t.narrow(2, 0, self.len)?.repeat((b, 1, 1, 1))?)),
                other => Ok(other.clone()),
            }
        };
        Ok(Self { k: rep(&self.k)?, v: rep(&self.v)?, len: self.len, owned: false })
    }

    /// The dtype of the cached keys, if any.
    pub fn dtype(&self) -> Option<candle_core::DType> {
        self.k.as_ref().map(|k| k.dtype())
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the buffers hold room for (for tests and memory figures).
    pub fn capacity(&self) -> usize {
        self.k.as_ref().and_then(|k| k.dims().get(2).copied()).unwrap_or(0)
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

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn step(seed: usize, n: usize) -> Tensor {
        let data: Vec<f32> = (0..2 * n * 4).map(|i| (seed * 1000 + i) as f32).collect();
        Tensor::from_vec(data, (1, 2, n, 4), &Device::Cpu).unwrap()
    }

    #[test]
    fn preallocated_appends_equal_concatenation_and_clones_stay_apart() {
        let mut kv = LayerKv::default();
        let mut want = step(0, 5);
        let mut want_v = (&want * -1.0).unwrap();
        kv.append(&want, &want_v).unwrap();
        for s in 1..300 {
            let t = step(s, 1 + s % 3);
            let tv = (&t * 2.0).unwrap();
            want = Tensor::cat(&[&want, &t], 2).unwrap();
            want_v = Tensor::cat(&[&want_v, &tv], 2).unwrap();
            let (k, v) = kv.append(&t, &tv).unwrap();
            assert_eq!(values(&k), values(&want), "step {s}");
            assert_eq!(values(&v), values(&want_v), "step {s}");
            if s == 1 {
                // The first in-place write moved the data into a buffer of whole growth steps.
                assert_eq!(kv.capacity(), GROW_POSITIONS);
            }
        }
        assert_eq!(kv.len(), want.dim(2).unwrap());
        assert_eq!(kv.capacity() % GROW_POSITIONS, 0);
        assert!(kv.capacity() >= kv.len());

        // A clone shares what was written, but later appends on either side stay apart.
        let mut other = kv.clone();
        let before = values(&want);
        let (k1, _) = kv.append(&step(1000, 2), &step(1000, 2)).unwrap();
        let (k2, _) = other.append(&step(2000, 1), &step(2000, 1)).unwrap();
        let n = want.dim(2).unwrap();
        assert_eq!(values(&k1.narrow(2, 0, n).unwrap()), before);
        assert_eq!(values(&k2.narrow(2, 0, n).unwrap()), before);
        assert_eq!(values(&k1.narrow(2, n, 2).unwrap()), values(&step(1000, 2)));
        assert_eq!(values(&k2.narrow(2, n, 1).unwrap()), values(&step(2000, 1)));
        assert_eq!((kv.len(), other.len()), (n + 2, n + 1));
    }

    #[test]
    fn tensors_with_gradients_are_concatenated() {
        let var = candle_core::Var::from_tensor(&step(1, 2)).unwrap();
        let mut kv = LayerKv::with(var.as_tensor().clone(), var.as_tensor().clone());
        let new = (step(2, 1) * 1.0).unwrap();
        let (k, _) = kv.append(&new, &new).unwrap();
        let grads = k.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&var).is_some(), "the prefix receives gradients through the cache");
    }

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
