//! The key/value cache of one conversation: per layer, the keys and values of every position
//! seen so far (`[batch, kv_heads, positions, head_dim]`), plus the token ids they came from.
//! A P-tuning v2 prefix is simply the cache's first `prefix_len` positions.
//!
//! A cache may store its keys and values in a narrower dtype than the model computes in
//! ([`KvCache::storing`]): quantized models on the CPU keep them as f16, which halves both the
//! memory a long conversation holds and the bytes each decode step's attention reads. Values
//! beyond f16's range are stored as its largest finite value ([`stored`]), not as infinities that
//! would turn attention into NaNs.
use crate::error::Result;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use half::f16;

/// Positions a layer's buffers grow by when they are full.
pub const GROW_POSITIONS: usize = 256;

/// Keys and values of one layer.
///
/// Decoding writes each new position in place into buffers preallocated `GROW_POSITIONS` at a
/// time (`[batch, kv_heads, capacity, head_dim]`) and hands attention views of the filled part,
/// so a step copies only its own keys and values. Two exceptions keep the old behaviour: the
/// first append of a fresh cache stores the given tensors as they are, and new keys/values that
/// carry gradients (training) are concatenated, so that gradients flow through the cache.
/// With a storage dtype set, what is written is converted to it, and the views handed out are in it.
#[derive(Default)]
pub struct LayerKv {
    k: Option<Tensor>,
    v: Option<Tensor>,
    /// Filled positions (the buffers may hold more).
    len: usize,
    /// Whether the buffers belong to this cache alone and may be written in place (false for
    /// a clone, a prefix or tensors given from outside: the first write then copies them).
    owned: bool,
    /// The dtype keys and values are stored in (`None`: as they come).
    store: Option<DType>,
}

impl Clone for LayerKv {
    /// Shares the buffers for reading; whichever side appends next writes past the shared part
    /// (the original) or into a copy of its own (the clone), so neither sees the other's writes.
    fn clone(&self) -> Self {
        Self { k: self.k.clone(), v: self.v.clone(), len: self.len, owned: false, store: self.store }
    }
}

impl LayerKv {
    /// A layer cache that starts with the given keys and values (a prefix).
    pub fn with(k: Tensor, v: Tensor) -> Self {
        let len = k.dims().get(2).copied().unwrap_or(0);
        Self { k: Some(k), v: Some(v), len, owned: false, store: None }
    }

    /// Appends new keys/values along the position axis; returns all keys and values so far.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = k.dim(2)?;
        let tracked = k.track_op() || v.track_op();
        let (Some(old_k), Some(old_v)) = (&self.k, &self.v) else {
            let (k, v) = match self.store {
                Some(dtype) if !tracked => (stored(k, dtype)?, stored(v, dtype)?),
                _ => (k.clone(), v.clone()),
            };
            self.k = Some(k.clone());
            self.v = Some(v.clone());
            self.len = n;
            self.owned = false;
            return Ok((k, v));
        };
        if tracked || old_k.track_op() || old_v.track_op() {
            // Gradients must flow through the cache: concatenate (new tensors, nothing written
            // in place), in the dtype of the new keys and values.
            let filled = |old: &Tensor, new: &Tensor| -> Result<Tensor> { Ok(old.narrow(2, 0, self.len)?.to_dtype(new.dtype())?) };
            let k = Tensor::cat(&[&filled(old_k, k)?, k], 2)?;
            let v = Tensor::cat(&[&filled(old_v, v)?, v], 2)?;
            self.len = k.dim(2)?;
            self.k = Some(k.clone());
            self.v = Some(v.clone());
            self.owned = false;
            return Ok((k, v));
        }
        let dtype = self.store.unwrap_or(old_k.dtype());
        let capacity = old_k.dim(2)?;
        if !self.owned || self.len + n > capacity || old_k.dtype() != dtype {
            let capacity = (self.len + n).div_ceil(GROW_POSITIONS) * GROW_POSITIONS;
            let grow = |old: &Tensor| -> Result<Tensor> {
                let (b, h, _, d) = old.dims4()?;
                let buf = Tensor::zeros((b, h, capacity, d), dtype, old.device())?;
                if self.len > 0 {
                    buf.slice_set(&stored(&old.narrow(2, 0, self.len)?, dtype)?.contiguous()?, 2, 0)?;
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
        buf_k.slice_set(&stored(k, dtype)?.contiguous()?, 2, self.len)?;
        buf_v.slice_set(&stored(v, dtype)?.contiguous()?, 2, self.len)?;
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
        Ok(Self { k: rep(&self.k)?, v: rep(&self.v)?, len: self.len, owned: false, store: self.store })
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

/// `t` converted to the cache's storage dtype; into f16, values beyond its range become its
/// largest finite value (±65 504) instead of infinities. A key or value that large is an outlier
/// of the model's activations, and an infinite one would turn its whole attention row into NaNs.
fn stored(t: &Tensor, dtype: DType) -> Result<Tensor> {
    Ok(match (t.dtype(), dtype) {
        (from, to) if from == to => t.clone(),
        (DType::F32, DType::F16) if t.device().is_cpu() && !t.track_op() && t.is_contiguous() => t.apply_op1_no_bwd(&SaturatingF16)?,
        (_, DType::F16) => t.clamp(-f16::MAX.to_f32(), f16::MAX.to_f32())?.to_dtype(DType::F16)?,
        _ => t.to_dtype(dtype)?,
    })
}

/// Contiguous f32 → f16 on the CPU, saturating (see [`stored`]), in one pass: chunks are clamped
/// into a small buffer and converted with `half`'s slice conversion (F16C where the CPU has it).
struct SaturatingF16;

impl CustomOp1 for SaturatingF16 {
    fn name(&self) -> &'static str {
        "saturating-f16"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        use half::slice::HalfFloatSliceExt;
        let CpuStorage::F32(x) = s else {
            candle_core::bail!("saturating f16: the input is {:?}, not f32", s.dtype());
        };
        let limit = f16::MAX.to_f32();
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("saturating f16: the input is not contiguous");
        };
        let values = &x[start..end];
        let mut out = vec![f16::ZERO; values.len()];
        let mut buf = [0f32; 1024];
        for (src, dst) in values.chunks(buf.len()).zip(out.chunks_mut(buf.len())) {
            let buf = &mut buf[..src.len()];
            buf.iter_mut().zip(src).for_each(|(b, &v)| *b = v.clamp(-limit, limit));
            dst.convert_from_f32_slice(buf);
        }
        Ok((CpuStorage::F16(out), l.shape().clone()))
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

    /// The same cache storing keys and values as `dtype` from now on (what it holds already is
    /// converted at its next append).
    pub fn storing(mut self, dtype: DType) -> Self {
        self.layers.iter_mut().for_each(|l| l.store = Some(dtype));
        self
    }

    /// The dtype keys and values are stored in, if one was set.
    pub fn store_dtype(&self) -> Option<DType> {
        self.layers.first().and_then(|l| l.store)
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
    fn a_storage_dtype_converts_prompts_steps_and_prefixes() {
        let half = |t: &Tensor| values(&t.to_dtype(DType::F16).unwrap().to_dtype(DType::F32).unwrap());
        let as_f32 = |t: &Tensor| values(&t.to_dtype(DType::F32).unwrap());
        let steps: Vec<Tensor> = (0..40).map(|s| (step(s, 1 + s % 2) * 0.001).unwrap()).collect();
        // The same appends into an f32 cache and into one that stores f16: the prompt (the first
        // append) is stored converted, then each step lands in an f16 buffer.
        let mut cache = KvCache::new(1).storing(DType::F16);
        assert_eq!(cache.store_dtype(), Some(DType::F16));
        let (mut plain, kv) = (LayerKv::default(), &mut cache.layers_mut()[0]);
        for t in &steps {
            let (k, v) = kv.append(t, &(t * 2.0).unwrap()).unwrap();
            let (pk, pv) = plain.append(t, &(t * 2.0).unwrap()).unwrap();
            assert_eq!((k.dtype(), v.dtype()), (DType::F16, DType::F16));
            assert_eq!(as_f32(&k), half(&pk));
            assert_eq!(as_f32(&v), half(&pv));
        }
        assert!(kv.capacity() >= kv.len() && kv.len() == plain.len());

        // A prefix given in f32 is converted at the first append.
        let prefix = (step(7, 3) * 0.01).unwrap();
        let mut cache = KvCache::with_prefix(vec![LayerKv::with(prefix.clone(), prefix.clone())], 3).storing(DType::F16);
        let (k, _) = cache.layers_mut()[0].append(&step(8, 1), &step(8, 1)).unwrap();
        assert_eq!(k.dtype(), DType::F16);
        assert_eq!(as_f32(&k.narrow(2, 0, 3).unwrap()), half(&prefix));
    }

    #[test]
    fn f16_storage_saturates_instead_of_overflowing() {
        let big = [1e6f32, -1e6, 70_000.0, 65_519.0, -65_536.0, 1.5, -0.25, 65_504.0];
        let t = Tensor::from_vec(big.to_vec(), (1, 2, 1, 4), &Device::Cpu).unwrap();
        let want = [65_504f32, -65_504.0, 65_504.0, 65_504.0, -65_504.0, 1.5, -0.25, 65_504.0];
        // The first append (stored as given), a step written in place, and a strided input.
        let mut kv = LayerKv { store: Some(DType::F16), ..LayerKv::default() };
        let (k, v) = kv.append(&t, &(&t * -1.0).unwrap()).unwrap();
        assert_eq!(values(&k.to_dtype(DType::F32).unwrap()), want);
        assert_eq!(values(&v.to_dtype(DType::F32).unwrap()), want.map(|x| -x));
        let (k, _) = kv.append(&t, &t).unwrap();
        assert_eq!(values(&k.narrow(2, 1, 1).unwrap().to_dtype(DType::F32).unwrap()), want);
        // Element [0, i, 0, j] of the transposed view is data[2j + i].
        let data: Vec<f32> = (0..8).map(|at| big[(at % 2) * 4 + at / 2]).collect();
        let strided = Tensor::from_vec(data, (1, 4, 1, 2), &Device::Cpu).unwrap().transpose(1, 3).unwrap();
        assert!(!strided.is_contiguous());
        let (k, _) = kv.append(&strided, &strided).unwrap();
        assert_eq!(values(&k.narrow(2, 2, 1).unwrap().to_dtype(DType::F32).unwrap()), want);
        // What fits is converted as candle converts it (round to nearest even).
        let small = (step(3, 2) * 0.37).unwrap();
        assert_eq!(values(&stored(&small, DType::F16).unwrap().to_dtype(DType::F32).unwrap()), values(&small.to_dtype(DType::F16).unwrap().to_dtype(DType::F32).unwrap()));
    }

    #[test]
    fn tensors_with_gradients_are_concatenated() {
        let var = candle_core::Var::from_tensor(&step(1, 2)).unwrap();
        let mut kv = LayerKv::with(var.as_tensor().clone(), var.as_tensor().clone());
        kv.store = Some(DType::F16);
        let new = (step(2, 1) * 1.0).unwrap();
        let (k, _) = kv.append(&new, &new).unwrap();
        assert_eq!(k.dtype(), DType::F32, "a storage dtype does not apply to tensors that carry gradients");
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
