//! THUDM int4/int8 checkpoints: the tiny fixture models are packed into THUDM's layout exactly as
//! THUDM's `QuantizedLinear` does (`quantize_like_thudm`), written as THUDM-style checkpoints
//! (`weight` int8, `weight_scale` fp16, `quantization_bit` in `config.json`) and loaded. The
//! imported Q4_0/Q8_0 weights must equal THUDM's dequantized values exactly; the logits must
//! match the f32 engine over those same values (up to our 8-bit activation rounding) and the
//! reference logits within the quantization error. Damaged layers give clear errors.
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use doctorglm_models::quant::thudm_int4::{dequantize, quantize_like_thudm};
use doctorglm_models::quant::QuantFormat;
use doctorglm_models::weights::WeightStore;
use doctorglm_models::{LoadOptions, Model, ModelError};
use safetensors::tensor::{Dtype, TensorView};

/// Named tensors as a checkpoint's safetensors file holds them: name, dtype, shape, bytes.
type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

/// The linear layers THUDM's `quantize()` replaces.
fn is_quantized(name: &str) -> bool {
    name.contains(".layers.")
        && ["query_key_value.weight", "dense.weight", "dense_h_to_4h.weight", "dense_4h_to_h.weight"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// What to write for one tensor.
enum Out {
    Keep,
    /// Replace the THUDM pair by these (name, dtype, shape, bytes).
    Custom(Tensors),
}

/// Writes `dst` as a THUDM `bits`-bit checkpoint of the fixture `src` (one safetensors file;
/// `exact_twin`: the dequantized f32 values instead, as a plain checkpoint). `edit` may damage a layer.
fn write_thudm(src: &Path, dst: &Path, bits: u8, exact_twin: bool, edit: &dyn Fn(&str) -> Out) {
    let store = WeightStore::open_dir(src).expect("open fixture");
    let mut names = store.names();
    names.sort();
    let mut tensors: Tensors = Vec::new();
    for name in names.iter().filter(|n| !n.ends_with("inv_freq")) {
        let t = store.get_any_shape(name, DType::F32, &Device::Cpu).expect("tensor");
        let shape = t.dims().to_vec();
        let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        if !is_quantized(name) {
            tensors.push((name.clone(), Dtype::F32, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()));
            continue;
        }
        if let Out::Custom(list) = edit(name) {
            tensors.extend(list);
            continue;
        }
        let (rows, cols) = (shape[0], shape[1]);
        let (bytes, scales) = quantize_like_thudm(&values, rows, cols, bits);
        if exact_twin {
            let w = dequantize(bits, &bytes, &scales, rows, cols).unwrap();
            tensors.push((name.clone(), Dtype::F32, shape, w.iter().flat_map(|v| v.to_le_bytes()).collect()));
        } else {
            let stored = if bits == 4 { vec![rows, cols / 2] } else { vec![rows, cols] };
            tensors.push((name.clone(), Dtype::I8, stored, bytes));
            let sname = name.replace(".weight", ".weight_scale");
            tensors.push((sname, Dtype::F16, vec![rows], scales.iter().flat_map(|s| s.to_bits().to_le_bytes()).collect()));
        }
    }
    std::fs::create_dir_all(dst).unwrap();
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &dst.join("model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    if !exact_twin {
        config["quantization_bit"] = bits.into();
    }
    std::fs::write(dst.join("config.json"), config.to_string()).unwrap();
}

fn expected_logits(dir: &Path, n: usize) -> Vec<Vec<f32>> {
    let t = candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    (0..n).map(|i| t[&format!("case{i}.logits")].to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap()).collect()
}

fn fixtures() -> Vec<PathBuf> {
    let root = common::fixture_root().join("models");
    ["chatglm-6b-v1-tiny", "chatglm3-tiny"].iter().map(|n| root.join(n)).filter(|p| p.is_dir()).collect()
}

#[test]
fn thudm_checkpoints_import_losslessly_and_match_the_references() {
    let dirs = fixtures();
    assert!(!dirs.is_empty(), "fixture models missing (set DOCTORGLM_FIXTURES)");
    for src in dirs {
        let cases = common::case_ids(&src);
        let expected = expected_logits(&src, cases.len());
        let f32_model = Model::load(&src, &LoadOptions::default()).unwrap();
        for bits in [4u8, 8] {
            let tmp = tempfile::tempdir().unwrap();
            let (int_dir, twin_dir) = (tmp.path().join("int"), tmp.path().join("twin"));
            write_thudm(&src, &int_dir, bits, false, &|_| Out::Keep);
            write_thudm(&src, &twin_dir, bits, true, &|_| Out::Keep);
            let int = Model::load(&int_dir, &LoadOptions::default()).expect("THUDM checkpoint loads");
            let detected = doctorglm_models::detect::detect(&int_dir).unwrap();
            assert_eq!(detected.quantization.as_deref(), Some(if bits == 4 { "THUDM int4" } else { "THUDM int8" }));
            let twin = Model::load(&twin_dir, &LoadOptions::default()).unwrap();
            let want = if bits == 4 { QuantFormat::Q4_0 } else { QuantFormat::Q8_0 };
            let formats: HashMap<String, Option<QuantFormat>> = int.weight_formats().into_iter().collect();
            let mut quantized = 0;
            for (name, format) in &formats {
                if is_quantized(&format!("{name}.weight")) {
                    assert_eq!(*format, Some(want), "{name}");
                    quantized += 1;
                    // Lossless: the imported blocks hold exactly THUDM's scale · q.
                    let a = int.linear_weight_f32(name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let b = twin.linear_weight_f32(name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    assert!(a == b, "{name}: imported weights differ from THUDM's dequantized values");
                } else {
                    assert_eq!(*format, None, "{name}: embeddings and output layer stay full precision");
                }
            }
            assert_eq!(quantized, 4 * int.config().num_layers);
            for (i, ids) in cases.iter().enumerate() {
                let (li, lt, lf) = (common::logits(&int, ids), common::logits(&twin, ids), common::logits(&f32_model, ids));
                let spread = common::rms(&expected[i], &vec![0.0; expected[i].len()]);
                let engine = common::rms(&li, &lt);
                let quant_err = common::rms(&lt, &expected[i]);
                let import_err = common::rms(&li, &expected[i]);
                eprintln!(
                    "{} int{bits} case {i}: vs f32 over the same weights {engine:.5}, twin vs reference {quant_err:.4}, import vs reference {import_err:.4}, f32 vs reference {:.5} (logit spread {spread:.3})",
                    src.file_name().unwrap().to_string_lossy(),
                    common::rms(&lf, &expected[i])
                );
                // Same weights (checked bit for bit above): only the quantized kernels' 8-bit
                // activation rounding separates the two passes (measured ≤ 0.03 of the spread).
                assert!(engine < 0.05 * spread, "int{bits} case {i}: {engine} from the f32 engine over the same weights");
                // Against the reference: the weights' quantization error, not more.
                assert!(import_err < quant_err * 1.1 + 0.02 * spread, "int{bits} case {i}: {import_err} vs quantization error {quant_err}");
                assert!(quant_err < if bits == 4 { 0.6 } else { 0.07 } * spread, "int{bits} case {i}: quantization error {quant_err}");
            }
        }
    }
}

fn load_err(src: &Path, edit: &dyn Fn(&str) -> Out) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bad");
    write_thudm(src, &dir, 4, false, edit);
    match Model::load(&dir, &LoadOptions::default()) {
        Ok(_) => panic!("a damaged THUDM checkpoint loaded"),
        Err(e) => {
            assert!(matches!(e, ModelError::BadTensor { .. } | ModelError::ShapeMismatch { .. }), "{e:?}");
            e.to_string()
        }
    }
}

#[test]
fn damaged_thudm_layers_are_refused_with_clear_errors() {
    let Some(src) = fixtures().into_iter().last() else { panic!("fixture models missing") };
    let target = |n: &str| n.ends_with("layers.1.mlp.dense_4h_to_h.weight");
    let layer = |n: &str, f: &dyn Fn(usize, usize) -> Tensors| {
        let store = WeightStore::open_dir(&src).unwrap();
        let s = store.shape_of(n).unwrap();
        f(s[0], s[1])
    };
    let scale = |n: &str, rows: usize| (n.replace(".weight", ".weight_scale"), Dtype::F16, vec![rows], [0x00u8, 0x3c].repeat(rows));
    // Wrong scale shape.
    let e = load_err(&src, &|n| {
        if !target(n) { return Out::Keep }
        Out::Custom(layer(n, &|r, c| vec![(n.into(), Dtype::I8, vec![r, c / 2], vec![0; r * c / 2]), scale(n, r - 1)]))
    });
    assert!(e.contains("weight_scale"), "{e}");
    // Packing that is neither int4 nor int8.
    let e = load_err(&src, &|n| {
        if !target(n) { return Out::Keep }
        Out::Custom(layer(n, &|r, c| vec![(n.into(), Dtype::I8, vec![r, c / 4], vec![0; r * c / 4]), scale(n, r)]))
    });
    assert!(e.contains("two per byte"), "{e}");
    // Missing scale.
    let e = load_err(&src, &|n| {
        if !target(n) { return Out::Keep }
        Out::Custom(layer(n, &|r, c| vec![(n.into(), Dtype::I8, vec![r, c / 2], vec![0; r * c / 2])]))
    });
    assert!(e.contains("weight_scale is missing"), "{e}");
}

#[test]
fn thudm_checkpoints_go_through_the_quantize_on_load_cache() {
    use doctorglm_models::{CacheUse, QuantizeOptions};
    use std::sync::atomic::AtomicBool;
    let Some(src) = fixtures().into_iter().last() else { panic!("fixture models missing") };
    let ids = common::case_ids(&src).remove(0);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("int4");
    write_thudm(&src, &dir, 4, false, &|_| Out::Keep);
    let never = AtomicBool::new(false);
    // Without a cache: THUDM layers keep their blocks, the others are quantized to the request.
    let (direct, used) = Model::load_quantized(&dir, &QuantizeOptions::new(QuantFormat::Q8_0, None), &|_, _| {}, &never).unwrap();
    assert_eq!(used, CacheUse::NoCache);
    let opts = QuantizeOptions::new(QuantFormat::Q8_0, Some(tmp.path().join("cache.gguf")));
    let seen = std::cell::Cell::new((0, 0));
    let (written, used) = Model::load_quantized(&dir, &opts, &|d, t| seen.set((d, t)), &never).expect("a THUDM checkpoint converts into the cache");
    assert_eq!(used, CacheUse::Written);
    let (done, total) = seen.get();
    assert!(total > 0 && done == total, "progress reached {done} of {total}");
    let (reused, used) = Model::load_quantized(&dir, &opts, &|_, _| {}, &never).unwrap();
    assert_eq!(used, CacheUse::Reused);
    let formats = direct.weight_formats();
    assert_eq!(written.weight_formats(), formats);
    assert_eq!(reused.weight_formats(), formats);
    for (name, format) in &formats {
        let want = if is_quantized(&format!("{name}.weight")) { QuantFormat::Q4_0 } else { QuantFormat::Q8_0 };
        assert_eq!(*format, Some(want), "{name}: THUDM int4 stays Q4_0 (lossless); the rest is quantized as asked");
        let a = direct.linear_weight_f32(name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = reused.linear_weight_f32(name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(a == b, "{name}: the cached weights differ from the direct import");
    }
    let l = common::logits(&direct, &ids);
    assert_eq!(common::logits(&written, &ids), l);
    assert_eq!(common::logits(&reused, &ids), l);
}
