//! What the two architectures share outside the layers: the per-step input and a weight loader.
use crate::error::Result;
use crate::layers::{LoraLinear, Norm};
use crate::weights::WeightStore;
use candle_core::{DType, Device, Tensor};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// The input of one forward step over a batch.
pub struct Step<'a> {
    /// New token ids `[b, n]` (u32).
    pub ids: &'a Tensor,
    /// Per row, every token so far including the new ones (positions depend on them).
    pub rows: &'a [Vec<u32>],
    /// Tokens already in the cache (not counting a prefix).
    pub past: usize,
    /// Virtual prefix positions at the head of the cache (P-tuning v2).
    pub prefix_len: usize,
    /// LoRA adapter to apply, by name.
    pub adapter: Option<&'a str>,
}

/// Reads named tensors with their expected shapes in the compute dtype.
pub struct Loader<'a> {
    /// Where the tensors are.
    pub store: &'a WeightStore,
    /// Compute dtype.
    pub dtype: DType,
    /// Target device.
    pub device: &'a Device,
    /// Called with (tensors loaded, tensors in the folder) after each tensor.
    pub progress: &'a dyn Fn(usize, usize),
    /// Set from another thread to stop loading.
    pub cancel: &'a AtomicBool,
    /// Tensors loaded so far.
    pub done: Cell<usize>,
}

impl Loader<'_> {
    /// A tensor of the given shape.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(crate::error::ModelError::Cancelled);
        }
        let tensor = self.store.get(name, shape, self.dtype, self.device)?;
        self.done.set(self.done.get() + 1);
        (self.progress)(self.done.get(), self.total());
        Ok(tensor)
    }

    /// Tensors the model will load: all but the RoPE `inv_freq` buffers, which are recomputed.
    fn total(&self) -> usize {
        self.store.names().iter().filter(|n| !n.ends_with("inv_freq")).count()
    }

    /// A linear layer `name.weight` `[out, in]` with optional `name.bias`.
    pub fn linear(&self, name: &str, inp: usize, out: usize, bias: bool) -> Result<LoraLinear> {
        let weight = self.tensor(&format!("{name}.weight"), &[out, inp])?;
        let bias = if bias { Some(self.tensor(&format!("{name}.bias"), &[out])?) } else { None };
        Ok(LoraLinear::new(name.to_string(), weight, bias))
    }

    /// A LayerNorm (`weight` and `bias`) or RMSNorm (`weight`) of width `size`.
    pub fn norm(&self, name: &str, size: usize, rms: bool, eps: f64) -> Result<Norm> {
        let weight = self.tensor(&format!("{name}.weight"), &[size])?;
        if rms {
            Ok(Norm::Rms { weight, eps })
        } else {
            let bias = self.tensor(&format!("{name}.bias"), &[size])?;
            Ok(Norm::Layer { weight, bias, eps })
        }
    }
}
