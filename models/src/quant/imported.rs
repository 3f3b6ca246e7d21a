//! Linear layers whose weights arrive already quantized — THUDM int4/int8 checkpoints
//! (`weight` + `weight_scale`) and GGUF block formats — built straight into quantized
//! [`LoraLinear`]s, never through a full-precision copy on the CPU.

use candle_core::{DType, Tensor};
use half::f16;

use super::gguf::{GgufType, TensorSpec};
use super::thudm_int4::{self, SCALE_SUFFIX};
use super::{QMatrix, QuantFormat};
use crate::arch::{LoadMode, Loader};
use crate::weights::WeightStore;
use crate::error::{ModelError, Result};
use crate::layers::LoraLinear;

/// The layer `name` (`[out, inp]`) when its weight is stored quantized; `None` when it is a plain
/// float weight (the caller loads it as usual). The quantized matrix is used as is, on the CPU
/// or uploaded to another device ([`super::linear::attach`]).
///
/// For the quantize-on-load cache ([`LoadMode::Plan`] / [`LoadMode::Convert`]) such a weight
/// keeps its stored blocks (THUDM int4/int8 as Q4_0/Q8_0, GGUF blocks as mapped): re-quantizing
/// them to the requested format would only add error. The cache then holds it under
/// `name.weight` like any other quantized weight, and the scale tensor is not needed any more.
pub fn imported_linear(ld: &Loader, name: &str, inp: usize, out: usize, bias: bool) -> Result<Option<LoraLinear>> {
    let wname = format!("{name}.weight");
    let sname = format!("{name}.{SCALE_SUFFIX}");
    let store = match &ld.mode {
        LoadMode::Checkpoint { store, .. } | LoadMode::Plan { store, .. } | LoadMode::Convert { store, .. } => *store,
        LoadMode::Cache(_) => return Ok(None),
    };
    if !stored_quantized(store, &wname, &sname)? {
        return Ok(None);
    }
    let ctx = Ctx { store, ld };
    let placeholder = || -> Result<Tensor> { crate::arch::placeholder(&[out, inp], ld.dtype, ld.device) };
    let layer = match &ld.mode {
        LoadMode::Plan { specs, .. } => {
            let ty = match planned_format(&ctx, &wname, &sname, out, inp)? {
                Some(f) => GgufType::Quant(f),
                None => GgufType::F32,
            };
            specs.borrow_mut().push(TensorSpec { name: wname.clone(), shape: vec![out, inp], ty });
            LoraLinear::new(name.to_string(), placeholder()?, None)
        }
        LoadMode::Convert { writer, .. } => {
            // Progress counts the cache's tensors here: the weight is one, whatever it was read from.
            let (w, _) = import_weight(&ctx, &wname, &sname, out, inp)?;
            match w {
                Weight::Quant(q) => writer.borrow_mut().write_part(&wname, &q.bytes())?,
                Weight::Exact(v) => {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    writer.borrow_mut().write_part(&wname, &bytes)?
                }
            }
            ctx.count(1);
            LoraLinear::new(name.to_string(), placeholder()?, None)
        }
        _ => {
            let (w, consumed) = import_weight(&ctx, &wname, &sname, out, inp)?;
            let layer = match w {
                Weight::Quant(q) => {
                    let mut l = LoraLinear::new(name.to_string(), placeholder()?, None);
                    super::linear::attach(&mut l, q)?;
                    l
                }
                Weight::Exact(w) => {
                    let t = Tensor::from_vec(w, (out, inp), ld.device)?.to_dtype(ld.dtype)?;
                    LoraLinear::new(name.to_string(), t, None)
                }
            };
            ctx.count(consumed);
            layer
        }
    };
    let mut layer = layer;
    if bias {
        layer.bias = Some(ld.tensor(&format!("{name}.bias"), &[out])?);
    }
    Ok(Some(layer))
}

/// The stored weight as a quantized matrix (or exact values), and how many checkpoint tensors
/// it used (the weight, and the THUDM scale).
fn import_weight(ld: &Ctx, wname: &str, sname: &str, out: usize, inp: usize) -> Result<(Weight, usize)> {
    let r = if let Some(q) = ld.store.stored_qmatrix(wname)? {
        if (q.rows(), q.cols()) != (out, inp) {
            return Err(ModelError::ShapeMismatch { name: wname.to_string(), file: ld.store.file_of(wname), expected: vec![out, inp], found: vec![q.rows(), q.cols()] });
        }
        (Weight::Quant(q), 1)
    } else {
        (thudm_weight(ld, wname, sname, out, inp)?, 2)
    };
    if ld.cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ModelError::Cancelled);
    }
    Ok(r)
}

/// The block format [`import_weight`] will give (`None`: exact f32), read from shapes and
/// headers only.
fn planned_format(ld: &Ctx, wname: &str, sname: &str, out: usize, inp: usize) -> Result<Option<QuantFormat>> {
    if let Some(q) = ld.store.stored_qmatrix(wname)? {
        return Ok(Some(q.format()));
    }
    let stored = ld.store.shape_of(wname)?;
    let bits = thudm_int4::bits_from_shape(&stored, out, inp)
        .map_err(|reason| ModelError::BadTensor { name: wname.to_string(), file: ld.store.file_of(wname), reason })?;
    if !ld.store.contains(sname) {
        // import_weight reports the missing scale with its full explanation.
        return Ok(None);
    }
    Ok(inp.is_multiple_of(super::format::QK).then_some(if bits == 4 { QuantFormat::Q4_0 } else { QuantFormat::Q8_0 }))
}

/// Whether `wname` is stored quantized (a GGUF block matrix, or int8 / with a THUDM scale).
fn stored_quantized(store: &WeightStore, wname: &str, sname: &str) -> Result<bool> {
    Ok(store.contains(sname) || (store.contains(wname) && (store.int8_bytes(wname)?.is_some() || store.is_gguf_block(wname))))
}

/// The loader with its checkpoint.
struct Ctx<'a, 'b> {
    store: &'a WeightStore,
    ld: &'a Loader<'b>,
}

impl Ctx<'_, '_> {
    /// Reports `n` more checkpoint tensors loaded.
    fn count(&self, n: usize) {
        self.ld.done.set(self.ld.done.get() + n);
        (self.ld.progress)(self.ld.done.get(), self.ld.total);
    }
}

impl<'b> std::ops::Deref for Ctx<'_, 'b> {
    type Target = Loader<'b>;
    fn deref(&self) -> &Loader<'b> {
        self.ld
    }
}

enum Weight {
    Quant(QMatrix),
    Exact(Vec<f32>),
}

/// A THUDM int4/int8 layer: checks both tensors and maps them onto Q4_0 / Q8_0 (or exact f32
/// when rows are not whole 32-weight blocks).
fn thudm_weight(ld: &Ctx, wname: &str, sname: &str, out: usize, inp: usize) -> Result<Weight> {
    let file = ld.store.file_of(wname);
    let bad = |reason: String| ModelError::BadTensor { name: wname.to_string(), file: file.clone(), reason };
    if !ld.store.contains(sname) {
        return Err(bad(format!(
            "the weight is stored as int8 but {sname} is missing; a THUDM int4/int8 checkpoint keeps a per-row fp16 scale beside each quantized weight"
        )));
    }
    let stored = ld.store.shape_of(wname)?;
    let bits = thudm_int4::bits_from_shape(&stored, out, inp).map_err(bad)?;
    let bytes = ld
        .store
        .int8_bytes(wname)?
        .ok_or_else(|| bad(format!("{sname} is present but the weight is not stored as int8")))?;
    let sshape = ld.store.shape_of(sname)?;
    if sshape != [out] {
        return Err(ModelError::ShapeMismatch { name: sname.to_string(), file: ld.store.file_of(sname), expected: vec![out], found: sshape });
    }
    let scales: Vec<f16> = ld
        .store
        .get_any_shape(sname, DType::F32, &candle_core::Device::Cpu)?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f16::from_f32)
        .collect();
    if inp.is_multiple_of(super::format::QK) {
        thudm_int4::to_qmatrix(bits, &bytes, &scales, out, inp).map(Weight::Quant).map_err(bad)
    } else {
        tracing::debug!("{wname}: {inp} inputs are not whole 32-weight blocks; kept as exact f32");
        thudm_int4::dequantize(bits, &bytes, &scales, out, inp).map(Weight::Exact).map_err(bad)
    }
}
