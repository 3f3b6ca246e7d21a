//! Linear layers whose weights arrive already quantized — THUDM int4/int8 checkpoints
//! (`weight` + `weight_scale`) and GGUF block formats — built straight into quantized
//! [`LoraLinear`]s, never through a full-precision copy on the CPU.

use std::sync::Arc;

use candle_core::{DType, Tensor};
use half::f16;

use super::thudm_int4::{self, SCALE_SUFFIX};
use super::QMatrix;
use crate::arch::{LoadMode, Loader};
use crate::weights::WeightStore;
use crate::error::{ModelError, Result};
use crate::layers::LoraLinear;

/// The layer `name` (`[out, inp]`) when its weight is stored quantized; `None` when it is a plain
/// float weight (the caller loads it as usual). On the CPU the quantized matrix is used as is;
/// on another device it is dequantized (exactly) into the compute dtype.
pub fn imported_linear(ld: &Loader, name: &str, inp: usize, out: usize, bias: bool) -> Result<Option<LoraLinear>> {
    let wname = format!("{name}.weight");
    let sname = format!("{name}.{SCALE_SUFFIX}");
    let store = match &ld.mode {
        LoadMode::Checkpoint { store, .. } => *store,
        LoadMode::Plan { store, .. } | LoadMode::Convert { store, .. } => {
            if stored_quantized(store, &wname, &sname)? {
                return Err(ModelError::Input(format!(
                    "{wname} is stored already quantized (THUDM int4/int8 or GGUF); load this model without quantize-on-load and its cache"
                )));
            }
            return Ok(None);
        }
        LoadMode::Cache(_) => return Ok(None),
    };
    let ld = Ctx { store, ld };
    let (q, consumed) = if let Some(q) = ld.store.stored_qmatrix(&wname)? {
        if (q.rows(), q.cols()) != (out, inp) {
            return Err(ModelError::ShapeMismatch {
                name: wname.clone(),
                file: ld.store.file_of(&wname),
                expected: vec![out, inp],
                found: vec![q.rows(), q.cols()],
            });
        }
        (Weight::Quant(q), 1)
    } else if ld.store.contains(&sname) || (ld.store.contains(&wname) && ld.store.int8_bytes(&wname)?.is_some()) {
        (thudm_weight(&ld, &wname, &sname, out, inp)?, 2)
    } else {
        return Ok(None);
    };
    if ld.cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ModelError::Cancelled);
    }
    let layer = match q {
        Weight::Quant(q) if ld.device.is_cpu() => {
            let placeholder = Tensor::zeros((), ld.dtype, ld.device)?.broadcast_as((out, inp))?;
            let mut l = LoraLinear::new(name.to_string(), placeholder, None);
            l.quant = Some(Arc::new(q));
            l
        }
        Weight::Quant(q) => LoraLinear::new(name.to_string(), q.dequantize_tensor(ld.device)?.to_dtype(ld.dtype)?, None),
        Weight::Exact(w) => {
            let t = Tensor::from_vec(w, (out, inp), ld.device)?.to_dtype(ld.dtype)?;
            LoraLinear::new(name.to_string(), t, None)
        }
    };
    // The weight (and its scale) count as loaded tensors; the bias reports progress itself.
    ld.done.set(ld.done.get() + consumed);
    (ld.progress)(ld.done.get(), ld.total);
    let mut layer = layer;
    if bias {
        layer.bias = Some(ld.tensor(&format!("{name}.bias"), &[out])?);
    }
    Ok(Some(layer))
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
    if inp % super::format::QK == 0 {
        thudm_int4::to_qmatrix(bits, &bytes, &scales, out, inp).map(Weight::Quant).map_err(bad)
    } else {
        tracing::debug!("{wname}: {inp} inputs are not whole 32-weight blocks; kept as exact f32");
        thudm_int4::dequantize(bits, &bytes, &scales, out, inp).map(Weight::Exact).map_err(bad)
    }
}
