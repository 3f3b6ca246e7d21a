//! Quantizing the engine's linear layers in place, and the cache file that keeps the result.
//!
//! A quantized [`LoraLinear`] keeps its bias and its LoRA adapters (unmerged, in full
//! precision) and replaces its weight by a [`QMatrix`]; `weight` becomes a zero-stride
//! placeholder of the same shape, so the layer's shape queries still work while no f32 copy
//! of the weight stays in memory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::Tensor;

use super::device::DeviceMatrix;
use super::error::{QuantError, Result};
use super::format::QuantFormat;
use super::gguf::{self, GgufTensor, GgufType, GgufWriter, TensorSpec};
use super::matrix::QMatrix;
use crate::layers::LoraLinear;

/// The format a layer of `cols` inputs gets when `want` is asked for: Q4_K falls back to Q4_0
/// when a row is not a whole number of 256-weight super-blocks (as llama.cpp does); `None` when
/// not even 32-weight blocks fit (the layer then stays in full precision).
pub fn format_for(want: QuantFormat, cols: usize) -> Option<QuantFormat> {
    if cols.is_multiple_of(want.block_len()) {
        Some(want)
    } else if cols.is_multiple_of(32) {
        Some(QuantFormat::Q4_0)
    } else {
        None
    }
}

/// Puts `q` in place of the layer's weight (the weight tensor becomes a zero-stride placeholder)
/// for the layer's device: see [`attach`].
pub fn install(layer: &mut LoraLinear, q: Arc<QMatrix>) -> Result<()> {
    let (out, inp) = layer.weight.dims2()?;
    if (q.rows(), q.cols()) != (out, inp) {
        return Err(QuantError::Size { what: "quantized weight of the layer", expected: out * inp, got: q.rows() * q.cols() });
    }
    layer.weight = Tensor::zeros((), layer.weight.dtype(), layer.weight.device())?.broadcast_as((out, inp))?;
    attach(layer, Arc::unwrap_or_clone(q))
}

/// Makes `q` the base weight of `layer`, whose `weight` is already a placeholder on the model's
/// device. On the CPU it takes the layout this CPU decodes fastest ([`QMatrix::for_decoding`]);
/// on another device it is uploaded for candle's quantized kernels ([`DeviceMatrix`]) and the
/// host copy stays in rows (mapped from the cache where it came from there), for what reads
/// the bytes: dequantizing, comparisons, the format list.
pub fn attach(layer: &mut LoraLinear, q: QMatrix) -> Result<()> {
    let device = layer.weight.device().clone();
    if device.is_cpu() {
        layer.quant = Some(Arc::new(q.for_decoding()));
        layer.on_device = None;
    } else {
        layer.on_device = Some(Arc::new(DeviceMatrix::upload(&q, &device)?));
        layer.quant = Some(Arc::new(q));
    }
    Ok(())
}

/// Quantizes one layer's weight in place; returns false when the layer's shape allows no format.
pub fn quantize_layer(layer: &mut LoraLinear, want: QuantFormat) -> Result<bool> {
    if layer.quant.is_some() {
        return Ok(true);
    }
    let (_, cols) = layer.weight.dims2()?;
    let Some(format) = format_for(want, cols) else {
        tracing::debug!("{}: {cols} inputs fit no quantized block; kept in full precision", layer.name);
        return Ok(false);
    };
    let q = QMatrix::quantize_tensor(&layer.weight, format)?;
    install(layer, Arc::new(q))?;
    Ok(true)
}

/// Quantizes every layer, reporting `(done, total)` after each and stopping when `cancel` is set
/// (layers done so far stay quantized; the model remains usable).
pub fn quantize_layers(layers: Vec<&mut LoraLinear>, want: QuantFormat, progress: &mut dyn FnMut(usize, usize), cancel: &AtomicBool) -> Result<()> {
    let total = layers.len();
    for (i, l) in layers.into_iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(QuantError::Cancelled);
        }
        quantize_layer(l, want)?;
        progress(i + 1, total);
    }
    Ok(())
}

/// Metadata keys of our cache files.
pub mod keys {
    /// Fingerprint of the source checkpoint files.
    pub const SOURCE: &str = "doctorglm.source_fingerprint";
    /// Requested quantization (`Q4_0`, `Q8_0`, `Q4_K`).
    pub const QUANTIZATION: &str = "doctorglm.quantization";
    /// Version of the engine that wrote the file.
    pub const ENGINE: &str = "doctorglm.engine_version";
}

/// A stable fingerprint (FNV-1a 64, hex) of a model folder's checkpoint and config files: their
/// names, sizes and modification times. Any rewrite of a source file changes it.
pub fn source_fingerprint(dir: &Path) -> Result<String> {
    let err = |source| QuantError::Io { path: dir.display().to_string(), source };
    let mut entries: Vec<(String, u64, u128)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(err)? {
        let e = e.map_err(err)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let wanted = name.ends_with(".safetensors") || name.ends_with(".bin") || name.ends_with(".json") || name.ends_with(".gguf");
        if !wanted {
            continue;
        }
        let m = e.metadata().map_err(err)?;
        let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        entries.push((name, m.len(), mtime));
    }
    entries.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, len, mtime) in &entries {
        for b in format!("{name}\0{len}\0{mtime}\n").bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(format!("{h:016x}"))
}

/// Writes the quantized weights of `layers` (those with a [`QMatrix`]) to a GGUF cache file.
pub fn save_cache(path: &Path, fingerprint: &str, want: QuantFormat, layers: &[&LoraLinear]) -> Result<()> {
    let quantized: Vec<(&str, &QMatrix)> = layers.iter().filter_map(|l| l.quant.as_deref().map(|q| (l.name.as_str(), q))).collect();
    let specs = quantized
        .iter()
        .map(|(name, q)| TensorSpec { name: format!("{name}.weight"), shape: vec![q.rows(), q.cols()], ty: GgufType::Quant(q.format()) })
        .collect();
    let meta = [(keys::SOURCE, fingerprint), (keys::QUANTIZATION, want.name()), (keys::ENGINE, env!("CARGO_PKG_VERSION"))];
    let mut w = GgufWriter::create(path, &meta, specs)?;
    for (name, q) in quantized {
        if let Err(e) = w.write_tensor(&format!("{name}.weight"), &q.bytes()) {
            w.abandon();
            return Err(e);
        }
    }
    w.finish()
}

/// Installs the cached quantized weights into `layers` if the cache at `path` exists and was
/// written for this source, format and engine version; returns false (changing nothing) otherwise.
pub fn load_cache(path: &Path, fingerprint: &str, want: QuantFormat, layers: Vec<&mut LoraLinear>) -> Result<bool> {
    if !path.is_file() {
        return Ok(false);
    }
    let file = match gguf::open(path) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("ignoring unreadable quantization cache {}: {e}", path.display());
            return Ok(false);
        }
    };
    let meta = |k: &str| file.metadata.get(k).map(String::as_str);
    if meta(keys::SOURCE) != Some(fingerprint) || meta(keys::QUANTIZATION) != Some(want.name()) || meta(keys::ENGINE) != Some(env!("CARGO_PKG_VERSION")) {
        tracing::info!("quantization cache {} is stale; rebuilding", path.display());
        return Ok(false);
    }
    let mut found: HashMap<String, Arc<QMatrix>> = HashMap::new();
    for (name, t) in file.tensors {
        let q = match t {
            GgufTensor::Quant(q) => q,
            // GGUF has no separate type for F16 weights: a cache for F16 holds plain F16 matrices.
            GgufTensor::Plain { shape, ty: GgufType::F16, data } if want == QuantFormat::F16 && shape.len() == 2 => {
                QMatrix::from_bytes(QuantFormat::F16, shape[0], shape[1], data)?
            }
            _ => continue,
        };
        found.insert(name, Arc::new(q));
    }
    // Check every layer first so that a mismatched cache changes nothing.
    let mut plan = Vec::new();
    for l in layers {
        let (out, inp) = l.weight.dims2()?;
        match found.get(&format!("{}.weight", l.name)) {
            Some(q) if (q.rows(), q.cols()) == (out, inp) => plan.push((l, Some(q.clone()))),
            Some(_) => return Ok(false),
            None if format_for(want, inp).is_none() => plan.push((l, None)),
            None => return Ok(false),
        }
    }
    for (l, q) in plan {
        if let Some(q) = q {
            install(l, q)?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::testutil::random_vec;
    use crate::quant::Kernel;
    use candle_core::Device;

    fn layer(name: &str, rows: usize, cols: usize, seed: u64) -> LoraLinear {
        let w = Tensor::from_vec(random_vec(seed, rows * cols, 0.1), (rows, cols), &Device::Cpu).unwrap();
        LoraLinear::new(name.into(), w, None)
    }

    #[test]
    fn quantized_layer_keeps_shape_and_output() {
        let mut l = layer("a", 48, 96, 1);
        let x = Tensor::from_vec(random_vec(2, 2 * 96, 1.0), (2, 96), &Device::Cpu).unwrap();
        let want = l.forward(&x, None).unwrap();
        assert!(quantize_layer(&mut l, QuantFormat::Q4K).unwrap(), "falls back to Q4_0");
        assert_eq!(l.quant.as_ref().unwrap().format(), QuantFormat::Q4_0);
        assert_eq!((l.out_features(), l.in_features()), (48, 96));
        let got = l.forward(&x, None).unwrap();
        let err = (got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(err < 0.1 * scale && err > 0.0, "{err} vs {scale}");
        let mut odd = layer("b", 4, 40, 3);
        assert!(!quantize_layer(&mut odd, QuantFormat::Q8_0).unwrap());
        assert!(odd.quant.is_none());
    }

    #[test]
    fn a_layer_on_a_device_multiplies_its_uploaded_blocks_with_bias_and_adapter() {
        // `attach` on the CPU keeps our kernels; a layer whose blocks sit in a DeviceMatrix (as on
        // a GPU; here candle's CPU kernels stand in) routes its product there, adds the bias and
        // the unmerged adapter the same way, and trains through the dequantized weight.
        let mut ours = layer("d", 64, 128, 11);
        ours.bias = Some(Tensor::from_vec(random_vec(12, 64, 1.0), 64, &Device::Cpu).unwrap());
        let pair = crate::lora::LoraPair {
            a: Tensor::from_vec(random_vec(13, 4 * 128, 0.5), (4, 128), &Device::Cpu).unwrap(),
            b: Tensor::from_vec(random_vec(14, 64 * 4, 0.5), (64, 4), &Device::Cpu).unwrap(),
            scale: 2.0,
        };
        ours.adapters.insert("doc".into(), pair.clone());
        let q = QMatrix::quantize_tensor(&ours.weight, QuantFormat::Q4_0).unwrap();
        let mut on_device = LoraLinear::new("d".into(), ours.weight.clone(), ours.bias.clone());
        on_device.adapters.insert("doc".into(), pair);
        install(&mut ours, Arc::new(q.clone())).unwrap();
        assert!(ours.on_device.is_none() && ours.quant.as_ref().unwrap().is_interleaved() == Kernel::best().has_interleaved(QuantFormat::Q4_0));
        on_device.weight = ours.weight.clone();
        on_device.on_device = Some(Arc::new(DeviceMatrix::upload(&q, &Device::Cpu).unwrap()));
        on_device.quant = Some(Arc::new(q));
        let x = Tensor::from_vec(random_vec(15, 3 * 128, 1.0), (1, 3, 128), &Device::Cpu).unwrap();
        for adapter in [None, Some("doc")] {
            let want = ours.forward(&x, adapter).unwrap();
            let got = on_device.forward(&x, adapter).unwrap();
            let err = (&got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let size = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(err < 1e-2 * size, "{adapter:?}: {err} vs {size}");
        }
        let xv = candle_core::Var::from_tensor(&x).unwrap();
        let grads = on_device.forward(xv.as_tensor(), None).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(xv.as_tensor()).is_some(), "gradients reach the input through the device product");
    }

    #[test]
    fn lora_term_is_untouched_by_quantizing_the_base() {
        // The adapter's contribution (forward with it − forward without it) is the same full-precision
        // `scale · B A x` over a quantized base as over the f32 one.
        let mut l = layer("q", 64, 128, 7);
        let pair = |seed| crate::lora::LoraPair {
            a: Tensor::from_vec(random_vec(seed, 4 * 128, 0.5), (4, 128), &Device::Cpu).unwrap(),
            b: Tensor::from_vec(random_vec(seed + 1, 64 * 4, 0.5), (64, 4), &Device::Cpu).unwrap(),
            scale: 2.0,
        };
        l.adapters.insert("doc".into(), pair(8));
        let x = Tensor::from_vec(random_vec(9, 3 * 128, 1.0), (3, 128), &Device::Cpu).unwrap();
        let effect = |l: &LoraLinear| (l.forward(&x, Some("doc")).unwrap() - l.forward(&x, None).unwrap()).unwrap();
        let before = effect(&l);
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
            let mut q = layer("q", 64, 128, 7);
            q.adapters.insert("doc".into(), pair(8));
            assert!(quantize_layer(&mut q, format).unwrap());
            let diff = (effect(&q) - &before).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let size = before.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(size > 1.0 && diff < 1e-4 * size, "{format}: {diff} of {size}");
        }
    }

    #[test]
    fn cache_round_trip_and_staleness() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.q8_0.gguf");
        let mut a = layer("x.a", 8, 64, 4);
        let mut b = layer("x.b", 16, 64, 5);
        let cancel = AtomicBool::new(false);
        let mut seen = Vec::new();
        quantize_layers(vec![&mut a, &mut b], QuantFormat::Q8_0, &mut |d, t| seen.push((d, t)), &cancel).unwrap();
        assert_eq!(seen, vec![(1, 2), (2, 2)]);
        save_cache(&path, "fp1", QuantFormat::Q8_0, &[&a, &b]).unwrap();

        let mut a2 = layer("x.a", 8, 64, 4);
        let mut b2 = layer("x.b", 16, 64, 5);
        assert!(!load_cache(&path, "fp2", QuantFormat::Q8_0, vec![&mut a2, &mut b2]).unwrap(), "other source");
        assert!(!load_cache(&path, "fp1", QuantFormat::Q4_0, vec![&mut a2, &mut b2]).unwrap(), "other format");
        assert!(a2.quant.is_none());
        assert!(load_cache(&path, "fp1", QuantFormat::Q8_0, vec![&mut a2, &mut b2]).unwrap());
        assert_eq!(a2.quant.as_ref().unwrap().bytes(), a.quant.as_ref().unwrap().bytes());
        assert_eq!(b2.quant.as_ref().unwrap().bytes(), b.quant.as_ref().unwrap().bytes());

        let mut c = layer("x.c", 8, 64, 6);
        assert!(!load_cache(&path, "fp1", QuantFormat::Q8_0, vec![&mut c]).unwrap(), "layer missing from the cache");
        cancel.store(true, Ordering::Relaxed);
        assert!(matches!(quantize_layers(vec![&mut c], QuantFormat::Q8_0, &mut |_, _| {}, &cancel), Err(QuantError::Cancelled)));
    }

    #[test]
    fn f16_cache_round_trip() {
        // GGUF stores F16 weights as plain F16 tensors; a cache asked for in F16 takes them back as matrices.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.f16.gguf");
        let mut a = layer("y.a", 8, 40, 4);
        assert!(quantize_layer(&mut a, QuantFormat::F16).unwrap(), "F16 takes any width");
        save_cache(&path, "fp", QuantFormat::F16, &[&a]).unwrap();
        let mut a2 = layer("y.a", 8, 40, 4);
        assert!(!load_cache(&path, "fp", QuantFormat::Q8_0, vec![&mut a2]).unwrap(), "other format");
        assert!(load_cache(&path, "fp", QuantFormat::F16, vec![&mut a2]).unwrap());
        let q = a2.quant.as_ref().unwrap();
        assert_eq!((q.format(), q.bytes()), (QuantFormat::F16, a.quant.as_ref().unwrap().bytes()));
    }
}
