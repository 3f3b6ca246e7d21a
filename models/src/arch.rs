//! What the two architectures share outside the layers: the per-step input, the transformer
//! block's layers, and the weight loader (full precision, quantized as read, or from the cache).
use crate::error::{ModelError, Result};
use crate::layers::{Embedding, LoraLinear, Norm};
use crate::quant::gguf::{GgufFile, GgufTensor, GgufType, GgufWriter, TensorSpec};
use crate::quant::linear::format_for;
use crate::quant::matrix::quantize_rows_into;
use crate::quant::{QBytes, QMatrix, QuantError, QuantFormat};
use crate::weights::WeightStore;
use candle_core::{DType, Device, Tensor};
use std::cell::{Cell, RefCell};
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

/// What every block of one forward step shares: the rotary angles (cos, sin pairs) and the
/// additive attention mask (none when one token is decoded).
pub struct StepShared {
    /// Rotary cos/sin tensors, in the order the architecture uses them.
    pub angles: Vec<Tensor>,
    /// Additive mask `[b, 1, n, t]`.
    pub mask: Option<Tensor>,
}

/// One transformer block's norms and linear layers (the same in both architectures).
pub struct Block {
    /// Norm before attention.
    pub input_norm: Norm,
    /// Fused query/key/value projection.
    pub qkv: LoraLinear,
    /// Attention output projection.
    pub dense: LoraLinear,
    /// Norm before the MLP.
    pub post_norm: Norm,
    /// MLP up projection.
    pub h_to_4h: LoraLinear,
    /// MLP down projection.
    pub four_h_to_h: LoraLinear,
}

/// Every linear layer of `blocks` in order, then `output`: the layers adapters and quantization see.
pub fn linears<'a>(blocks: &'a [Block], output: &'a LoraLinear) -> Vec<&'a LoraLinear> {
    let mut all: Vec<&LoraLinear> = blocks.iter().flat_map(|b| [&b.qkv, &b.dense, &b.h_to_4h, &b.four_h_to_h]).collect();
    all.push(output);
    all
}

/// [`linears`], mutable.
pub fn linears_mut<'a>(blocks: &'a mut [Block], output: &'a mut LoraLinear) -> Vec<&'a mut LoraLinear> {
    let mut all: Vec<&mut LoraLinear> =
        blocks.iter_mut().flat_map(|b| [&mut b.qkv, &mut b.dense, &mut b.h_to_4h, &mut b.four_h_to_h]).collect();
    all.push(output);
    all
}

/// Where a [`Loader`] takes tensors from and what it makes of them.
pub enum LoadMode<'a> {
    /// Read the checkpoint: tensors in the compute dtype; with `quant`, every linear weight whose
    /// rows fit the format is quantized as it is read (a few rows at a time) and the embedding
    /// rows are kept as f16/f32 bytes, so no full-precision copy of the model is ever made.
    Checkpoint {
        /// The checkpoint.
        store: &'a WeightStore,
        /// Quantize linear weights to this format.
        quant: Option<QuantFormat>,
    },
    /// Check every tensor's presence and shape and record how the cache will store it; nothing
    /// is read and the layers returned are placeholders.
    Plan {
        /// The checkpoint.
        store: &'a WeightStore,
        /// Format of the linear weights.
        quant: QuantFormat,
        /// The cache's tensors, in the order they are asked for.
        specs: &'a RefCell<Vec<TensorSpec>>,
    },
    /// Read the checkpoint, convert each tensor as [`LoadMode::Plan`] recorded and write it to
    /// the cache (one piece at a time); the layers returned are placeholders.
    Convert {
        /// The checkpoint.
        store: &'a WeightStore,
        /// Format of the linear weights.
        quant: QuantFormat,
        /// The cache file being written.
        writer: &'a RefCell<GgufWriter>,
    },
    /// Take every tensor from a memory-mapped cache file (quantized weights stay in the mapping).
    Cache(&'a GgufFile),
}

/// Reads named tensors with their expected shapes in the compute dtype.
pub struct Loader<'a> {
    /// Where the tensors come from.
    pub mode: LoadMode<'a>,
    /// Compute dtype.
    pub dtype: DType,
    /// Target device.
    pub device: &'a Device,
    /// Called with (tensors loaded, `total`) after each tensor.
    pub progress: &'a dyn Fn(usize, usize),
    /// Set from another thread to stop loading.
    pub cancel: &'a AtomicBool,
    /// Tensors loaded so far.
    pub done: Cell<usize>,
    /// Tensors to load in all (for progress).
    pub total: usize,
}

/// Bytes of converted rows handled at once when streaming a tensor.
const PIECE_BYTES: usize = 16 << 20;

/// A zero-stride tensor of the given shape: stands for a weight that lives elsewhere.
pub fn placeholder(shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
    Ok(Tensor::zeros((), dtype, device)?.broadcast_as(shape)?)
}

fn quant_err(e: QuantError) -> ModelError {
    match e {
        QuantError::Cancelled => ModelError::Cancelled,
        e => e.into(),
    }
}

/// How the cache stores an embedding table: f16 when the checkpoint has f16 (exact), else f32.
fn embedding_type(store: &WeightStore, name: &str) -> Result<GgufType> {
    Ok(if store.dtype_of(name)? == DType::F16 { GgufType::F16 } else { GgufType::F32 })
}

impl Loader<'_> {
    fn tick(&self) {
        self.done.set(self.done.get() + 1);
        (self.progress)(self.done.get(), self.total);
    }

    fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(ModelError::Cancelled);
        }
        Ok(())
    }

    fn check_shape(store: &WeightStore, name: &str, shape: &[usize]) -> Result<()> {
        let found = store.shape_of(name)?;
        if found != shape {
            return Err(ModelError::ShapeMismatch { name: name.to_string(), file: store.file_of(name), expected: shape.to_vec(), found });
        }
        Ok(())
    }

    fn cached<'f>(file: &'f GgufFile, name: &str) -> Result<&'f GgufTensor> {
        file.tensors
            .get(name)
            .ok_or_else(|| ModelError::Input(format!("the quantization cache holds no tensor {name}")))
    }

    /// A tensor of the given shape (norms, biases).
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.check_cancel()?;
        let t = match &self.mode {
            LoadMode::Checkpoint { store, .. } => store.get(name, shape, self.dtype, self.device)?,
            LoadMode::Plan { store, specs, .. } => {
                Self::check_shape(store, name, shape)?;
                specs.borrow_mut().push(TensorSpec { name: name.to_string(), shape: shape.to_vec(), ty: GgufType::F32 });
                placeholder(shape, self.dtype, self.device)?
            }
            LoadMode::Convert { store, writer, .. } => {
                let t = store.get(name, shape, DType::F32, &Device::Cpu)?;
                let bytes: Vec<u8> = t.flatten_all()?.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect();
                writer.borrow_mut().write_tensor(name, &bytes)?;
                placeholder(shape, self.dtype, self.device)?
            }
            LoadMode::Cache(file) => {
                let t = Self::cached(file, name)?.to_tensor(self.device)?;
                if t.dims() != shape {
                    return Err(ModelError::Input(format!("tensor {name} in the quantization cache has shape {:?}, not {shape:?}", t.dims())));
                }
                t.to_dtype(self.dtype)?
            }
        };
        self.tick();
        Ok(t)
    }

    /// The `[rows, cols]` embedding table `name`.
    pub fn embedding(&self, name: &str, rows: usize, cols: usize) -> Result<Embedding> {
        self.check_cancel()?;
        let e = match &self.mode {
            LoadMode::Checkpoint { store, quant: None } => Embedding::Dense(store.get(name, &[rows, cols], self.dtype, self.device)?),
            LoadMode::Checkpoint { store, quant: Some(_) } => {
                let ty = embedding_type(store, name)?;
                let mut data = Vec::with_capacity(rows * cols * if ty == GgufType::F16 { 2 } else { 4 });
                self.stream_plain(store, name, rows, cols, ty, &mut |bytes| {
                    data.extend_from_slice(bytes);
                    Ok(())
                })?;
                Embedding::Rows { data: QBytes::Owned(data), ty, rows, cols, dtype: self.dtype, device: self.device.clone() }
            }
            LoadMode::Plan { store, specs, .. } => {
                Self::check_shape(store, name, &[rows, cols])?;
                let ty = embedding_type(store, name)?;
                specs.borrow_mut().push(TensorSpec { name: name.to_string(), shape: vec![rows, cols], ty });
                Embedding::Dense(placeholder(&[rows, cols], self.dtype, self.device)?)
            }
            LoadMode::Convert { store, writer, .. } => {
                let ty = embedding_type(store, name)?;
                self.stream_plain(store, name, rows, cols, ty, &mut |bytes| Ok(writer.borrow_mut().write_part(name, bytes)?))?;
                Embedding::Dense(placeholder(&[rows, cols], self.dtype, self.device)?)
            }
            LoadMode::Cache(file) => match Self::cached(file, name)? {
                GgufTensor::Plain { shape, ty, data } if shape[..] == [rows, cols] => {
                    Embedding::Rows { data: data.clone(), ty: *ty, rows, cols, dtype: self.dtype, device: self.device.clone() }
                }
                _ => return Err(ModelError::Input(format!("the quantization cache's {name} is not a {rows}×{cols} table"))),
            },
        };
        self.tick();
        Ok(e)
    }

    /// Reads a tensor a few rows at a time, handing each piece to `sink` as f16 or f32 bytes.
    fn stream_plain(
        &self,
        store: &WeightStore,
        name: &str,
        rows: usize,
        cols: usize,
        ty: GgufType,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut reader = store.rows(name, [rows, cols])?;
        let step = (PIECE_BYTES / (4 * cols.max(1))).max(1);
        let (mut buf, mut bytes) = (Vec::new(), Vec::new());
        for first in (0..rows).step_by(step) {
            self.check_cancel()?;
            let n = step.min(rows - first);
            reader.read(first, n, &mut buf)?;
            bytes.clear();
            if ty == GgufType::F16 {
                bytes.extend(buf.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()));
            } else {
                bytes.extend(buf.iter().flat_map(|v| v.to_le_bytes()));
            }
            sink(&bytes)?;
        }
        Ok(())
    }

    /// Reads and quantizes a `[rows, cols]` weight a few rows at a time, handing each piece's bytes to `sink`.
    fn stream_quantized(
        &self,
        store: &WeightStore,
        name: &str,
        rows: usize,
        cols: usize,
        format: QuantFormat,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut reader = store.rows(name, [rows, cols])?;
        let row_bytes = format.row_bytes(cols)?;
        let step = (PIECE_BYTES / (4 * cols.max(1))).max(1);
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        for first in (0..rows).step_by(step) {
            self.check_cancel()?;
            let n = step.min(rows - first);
            reader.read(first, n, &mut buf)?;
            out.resize(n * row_bytes, 0);
            quantize_rows_into(format, &buf, cols, &mut out, first).map_err(|e| match e {
                QuantError::NonFinite { row } => ModelError::BadTensor {
                    name: name.to_string(),
                    file: store.file_of(name),
                    reason: format!("row {row} holds a non-finite value, so it cannot be quantized"),
                },
                QuantError::OutOfF16Range { row } => ModelError::BadTensor {
                    name: name.to_string(),
                    file: store.file_of(name),
                    reason: format!("row {row} holds a value beyond the F16 range (±65504); load this model in f32 or a block format"),
                },
                e => quant_err(e),
            })?;
            sink(&out)?;
        }
        Ok(())
    }

    /// The weight `[out, inp]` of a linear layer: a tensor, or a quantized matrix (with a
    /// placeholder tensor; [`crate::quant::linear::attach`] places it for the device).
    fn weight(&self, name: &str, out: usize, inp: usize) -> Result<(Tensor, Option<QMatrix>)> {
        self.check_cancel()?;
        let shape = [out, inp];
        let quantized = |q: QMatrix| -> Result<(Tensor, Option<QMatrix>)> { Ok((placeholder(&shape, self.dtype, self.device)?, Some(q))) };
        let w = match &self.mode {
            LoadMode::Checkpoint { store, quant } => match quant.and_then(|q| format_for(q, inp)) {
                None => (store.get(name, &shape, self.dtype, self.device)?, None),
                Some(format) => {
                    let mut data = Vec::with_capacity(out * format.row_bytes(inp)?);
                    self.stream_quantized(store, name, out, inp, format, &mut |b| {
                        data.extend_from_slice(b);
                        Ok(())
                    })?;
                    quantized(QMatrix::from_bytes(format, out, inp, QBytes::Owned(data))?)?
                }
            },
            LoadMode::Plan { store, quant, specs } => {
                Self::check_shape(store, name, &shape)?;
                let ty = format_for(*quant, inp).map_or(GgufType::F32, GgufType::Quant);
                specs.borrow_mut().push(TensorSpec { name: name.to_string(), shape: shape.to_vec(), ty });
                (placeholder(&shape, self.dtype, self.device)?, None)
            }
            LoadMode::Convert { store, quant, writer } => {
                match format_for(*quant, inp) {
                    Some(format) => self.stream_quantized(store, name, out, inp, format, &mut |b| {
                        Ok(writer.borrow_mut().write_part(name, b)?)
                    })?,
                    None => self.stream_plain(store, name, out, inp, GgufType::F32, &mut |b| {
                        Ok(writer.borrow_mut().write_part(name, b)?)
                    })?,
                }
                (placeholder(&shape, self.dtype, self.device)?, None)
            }
            LoadMode::Cache(file) => match Self::cached(file, name)? {
                GgufTensor::Quant(q) if (q.rows(), q.cols()) == (out, inp) => quantized(q.clone())?,
                // GGUF has no type of its own for F16 weights: a linear weight stored as F16 is one
                // (the other formats store the weights they cannot quantize as F32).
                GgufTensor::Plain { shape: s, ty: GgufType::F16, data } if s[..] == shape => {
                    quantized(QMatrix::from_bytes(QuantFormat::F16, out, inp, data.clone()).map_err(quant_err)?)?
                }
                t @ GgufTensor::Plain { shape: s, .. } if s[..] == shape => (t.to_tensor(self.device)?.to_dtype(self.dtype)?, None),
                _ => return Err(ModelError::Input(format!("the quantization cache's {name} is not a {out}×{inp} matrix"))),
            },
        };
        self.tick();
        Ok(w)
    }

    /// A linear layer `name.weight` `[out, in]` with optional `name.bias`.
    pub fn linear(&self, name: &str, inp: usize, out: usize, bias: bool) -> Result<LoraLinear> {
        // Weights stored quantized (THUDM int4/int8, GGUF blocks) become quantized layers directly.
        if let Some(layer) = crate::quant::imported::imported_linear(self, name, inp, out, bias)? {
            return Ok(layer);
        }
        let (weight, quant) = self.weight(&format!("{name}.weight"), out, inp)?;
        let bias = if bias { Some(self.tensor(&format!("{name}.bias"), &[out])?) } else { None };
        let mut layer = LoraLinear::new(name.to_string(), weight, bias);
        if let Some(q) = quant {
            crate::quant::linear::attach(&mut layer, q).map_err(quant_err)?;
        }
        Ok(layer)
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
