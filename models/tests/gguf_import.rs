//! llama.cpp GGUF files of the `chatglm` architecture: the tiny ChatGLM3 and GLM-4 fixtures are
//! written as `convert_hf_to_gguf.py` lays them out (names, metadata keys and value types, 1-D
//! tensors in F32, matrices in the chosen type) with candle's GGUF writer, then loaded through
//! the importer and compared with the f32 engine on the original checkpoint.
mod common;

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use doctorglm_models::quant::gguf_import::{self, checkpoint_name};
use doctorglm_models::detect::{Architecture, WeightFormat};
use doctorglm_models::quant::QuantFormat;
use doctorglm_models::weights::WeightStore;
use doctorglm_models::{LoadOptions, Model, ModelConfig, ModelError};

/// Every GGUF tensor name of a `chatglm` model of `layers` blocks.
fn gguf_names(layers: usize) -> Vec<String> {
    let mut names: Vec<String> = ["token_embd.weight", "output_norm.weight", "output.weight"].iter().map(|s| s.to_string()).collect();
    for i in 0..layers {
        for t in ["attn_norm.weight", "attn_qkv.weight", "attn_qkv.bias", "attn_output.weight", "ffn_norm.weight", "ffn_up.weight", "ffn_down.weight"] {
            names.push(format!("blk.{i}.{t}"));
        }
    }
    names
}

/// Writes `src` as a GGUF file: matrices in `ty`, 1-D tensors in F32, llama.cpp's metadata.
/// `edit` may change a (name, type) before writing.
fn write_gguf(src: &Path, out: &Path, ty: GgmlDType, edit: &dyn Fn(&str, GgmlDType) -> GgmlDType) {
    write_gguf_as(src, out, ty, false, edit)
}

/// As [`write_gguf`]; `twin`: every matrix quantized to its type and stored dequantized as F32
/// (the f32 engine's input for the same weight values).
fn write_gguf_as(src: &Path, out: &Path, ty: GgmlDType, twin: bool, edit: &dyn Fn(&str, GgmlDType) -> GgmlDType) {
    let cfg = ModelConfig::from_path(src).unwrap();
    let store = WeightStore::open_dir(src).unwrap();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for g in gguf_names(cfg.num_layers) {
        let ck = checkpoint_name(&g).unwrap();
        if !store.contains(&ck) {
            continue;
        }
        let t = store.get_any_shape(&ck, DType::F32, &Device::Cpu).unwrap();
        let want = if t.rank() == 1 { GgmlDType::F32 } else { edit(&g, ty) };
        let q = QTensor::quantize(&t, want).unwrap();
        let q = if twin { QTensor::quantize(&q.dequantize(&Device::Cpu).unwrap(), GgmlDType::F32).unwrap() } else { q };
        tensors.push((g, q));
    }
    let head_dim = cfg.head_dim as u32;
    let mut meta: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("chatglm".into())),
        ("general.name", Value::String("tiny".into())),
        ("chatglm.context_length", Value::U32(cfg.max_sequence_length as u32)),
        ("chatglm.embedding_length", Value::U32(cfg.hidden_size as u32)),
        ("chatglm.feed_forward_length", Value::U32(cfg.ffn_hidden_size as u32)),
        ("chatglm.block_count", Value::U32(cfg.num_layers as u32)),
        ("chatglm.attention.head_count", Value::U32(cfg.num_heads as u32)),
        ("chatglm.attention.head_count_kv", Value::U32(cfg.num_kv_heads as u32)),
        ("chatglm.attention.layer_norm_rms_epsilon", Value::F32(cfg.eps as f32)),
        ("chatglm.rope.dimension_count", Value::U32(head_dim / 2)),
        ("chatglm.rope.freq_base", Value::F32(cfg.rope_base as f32)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
    ];
    if let Some(&eos) = cfg.eos_token_ids.first() {
        meta.push(("tokenizer.ggml.eos_token_id", Value::U32(eos)));
    }
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut f = std::fs::File::create(out).unwrap();
    candle_core::quantized::gguf_file::write(&mut f, &meta_refs, &tensor_refs).unwrap();
}

fn fixtures() -> Vec<std::path::PathBuf> {
    let root = common::fixture_root().join("models");
    let dirs: Vec<_> = ["chatglm3-tiny", "glm4-tiny"].iter().map(|n| root.join(n)).filter(|p| p.is_dir()).collect();
    assert!(!dirs.is_empty(), "fixture models missing (set DOCTORGLM_FIXTURES)");
    dirs
}

#[test]
fn quantized_loads_of_a_gguf_file_map_it_without_a_cache() {
    use doctorglm_models::{CacheUse, QuantizeOptions};
    let src = fixtures().remove(0);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.gguf");
    // Q4_0 matrices, but the output layer in F16: that one is quantized to the request.
    write_gguf(&src, &path, GgmlDType::Q4_0, &|n, t| if n == "output.weight" { GgmlDType::F16 } else { t });
    let plain = Model::load(&path, &LoadOptions::default()).unwrap();
    let cache = tmp.path().join("never-written.gguf");
    let opts = QuantizeOptions::new(QuantFormat::Q8_0, Some(cache.clone()));
    let (m, used) = Model::load_quantized(&path, &opts, &|_, _| {}, &std::sync::atomic::AtomicBool::new(false)).expect("a GGUF file loads quantized");
    assert_eq!(used, CacheUse::SourceMapped);
    assert!(!cache.exists(), "mapping the GGUF file is what a cache would give; none is written");
    let plain_formats: std::collections::HashMap<String, Option<QuantFormat>> = plain.weight_formats().into_iter().collect();
    for (module, format) in m.weight_formats() {
        if plain_formats[&module].is_some() {
            assert_eq!(format, plain_formats[&module], "{module}: stored blocks are used as they are");
            let a = m.linear_weight_f32(&module).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let b = plain.linear_weight_f32(&module).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(a == b, "{module}");
        } else {
            assert_eq!(format, Some(QuantFormat::Q8_0), "{module}: a float matrix is quantized as asked");
        }
    }
}

#[test]
fn chatglm_gguf_files_load_and_match_the_f32_engine() {
    for src in fixtures() {
        let name = src.file_name().unwrap().to_string_lossy().to_string();
        let f32_model = Model::load(&src, &LoadOptions::default()).unwrap();
        let cases = common::case_ids(&src);
        let tmp = tempfile::tempdir().unwrap();
        for (ty, ours) in [(GgmlDType::F32, None), (GgmlDType::F16, None), (GgmlDType::Q8_0, Some(QuantFormat::Q8_0)), (GgmlDType::Q4_0, Some(QuantFormat::Q4_0))] {
            let path = tmp.path().join(format!("{name}-{ty:?}.gguf"));
            write_gguf(&src, &path, ty, &|_, t| t);
            let m = Model::load(&path, &LoadOptions::default()).expect("GGUF loads");
            let d = doctorglm_models::detect::detect(&path).unwrap();
            let arch = if name.starts_with("glm4") { Architecture::Glm4 } else { Architecture::Chatglm3 };
            assert_eq!((d.format, d.architecture), (WeightFormat::Gguf, arch));
            assert!(d.quantization.as_deref().unwrap_or("").contains(&format!("{ty:?}").to_uppercase()), "{:?}", d.quantization);
            let (a, b) = (m.config(), f32_model.config());
            assert_eq!(
                (a.vocab_size, a.hidden_size, a.num_layers, a.num_heads, a.num_kv_heads, a.head_dim, a.ffn_hidden_size, a.qkv_bias, a.linear_bias),
                (b.vocab_size, b.hidden_size, b.num_layers, b.num_heads, b.num_kv_heads, b.head_dim, b.ffn_hidden_size, b.qkv_bias, b.linear_bias),
                "{name} {ty:?}: config from metadata"
            );
            assert!((a.rope_base - b.rope_base).abs() < 1e-3 * b.rope_base && (a.eps - b.eps).abs() <= 1e-6 * b.eps.max(1e-9) + 1e-12);
            for (module, format) in m.weight_formats() {
                assert_eq!(format, ours, "{name} {ty:?} {module}");
                if let Some(f) = format {
                    // The blocks are used as stored: equal to candle's dequantization of the same tensor.
                    let w = m.linear_weight_f32(&module).unwrap();
                    let orig = f32_model.linear_weight_f32(&module).unwrap();
                    let via_candle = QTensor::quantize(&orig, f.ggml_dtype()).unwrap().dequantize(&Device::Cpu).unwrap();
                    let d = (w - via_candle).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                    assert_eq!(d, 0.0, "{name} {ty:?} {module}");
                }
            }
            let twin_path = tmp.path().join(format!("{name}-{ty:?}-twin.gguf"));
            write_gguf_as(&src, &twin_path, ty, true, &|_, t| t);
            let twin = Model::load(&twin_path, &LoadOptions::default()).unwrap();
            for (i, ids) in cases.iter().enumerate() {
                let (g, t, f) = (common::logits(&m, ids), common::logits(&twin, ids), common::logits(&f32_model, ids));
                let spread = common::rms(&f, &vec![0.0; f.len()]);
                let (err, engine) = (common::rms(&g, &f), common::rms(&g, &t));
                eprintln!("{name} {ty:?} case {i}: rms vs f32 engine over the same values {engine:.5}, vs the f32 checkpoint {err:.5} (spread {spread:.3})");
                // F32 / F16 files hold the fixture's own fp16/bf16 values: the same model.
                // Block formats: the same values as the f32 twin, up to our 8-bit activation rounding.
                let bound = match ty {
                    GgmlDType::F32 | GgmlDType::F16 => 1e-4,
                    _ => 0.05,
                } * spread;
                assert!(engine < bound, "{name} {ty:?} case {i}: {engine} ≥ {bound}");
                if matches!(ty, GgmlDType::F32 | GgmlDType::F16) {
                    assert!(err < bound, "{name} {ty:?} case {i}: {err} from the f32 checkpoint");
                }
            }
        }
    }
}

#[test]
fn types_without_kernels_are_requantized_and_bad_files_refused() {
    let src = fixtures().remove(0);
    let tmp = tempfile::tempdir().unwrap();
    // A Q5_0 matrix (as llama-quantize mixes types) is dequantized by candle and becomes Q8_0.
    let mixed = tmp.path().join("mixed.gguf");
    write_gguf(&src, &mixed, GgmlDType::Q4_0, &|n, t| if n == "blk.1.ffn_down.weight" { GgmlDType::Q5_0 } else { t });
    let m = Model::load(&mixed, &LoadOptions::default()).unwrap();
    let formats: std::collections::HashMap<_, _> = m.weight_formats().into_iter().collect();
    assert_eq!(formats["transformer.encoder.layers.1.mlp.dense_4h_to_h"], Some(QuantFormat::Q8_0));
    assert_eq!(formats["transformer.encoder.layers.0.mlp.dense_4h_to_h"], Some(QuantFormat::Q4_0));

    // Another architecture is named in the error.
    let other = tmp.path().join("llama.gguf");
    let t = QTensor::quantize(&Tensor::zeros((2, 32), DType::F32, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap();
    let arch = Value::String("llama".into());
    candle_core::quantized::gguf_file::write(&mut std::fs::File::create(&other).unwrap(), &[("general.architecture", &arch)], &[("token_embd.weight", &t)]).unwrap();
    let e = Model::load(&other, &LoadOptions::default()).err().expect("refused");
    assert!(matches!(e, ModelError::BadWeightFile { .. }) && e.to_string().contains("\"llama\""), "{e}");
    // A truncated file.
    let bytes = std::fs::read(&mixed).unwrap();
    let cut = tmp.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(Model::load(&cut, &LoadOptions::default()).is_err());
    std::fs::write(&cut, b"GGUF").unwrap();
    assert!(Model::load(&cut, &LoadOptions::default()).is_err());
    // The tokenizer must sit beside the file.
    assert!(gguf_import::tokenizer_dir(&mixed).unwrap_err().to_string().contains("tokenizer.model"));
    std::fs::copy(src.join("tokenizer.model"), tmp.path().join("tokenizer.model")).unwrap();
    let dir = gguf_import::tokenizer_dir(&mixed).unwrap();
    assert!(doctorglm_models::tokenizer::Tokenizer::load(&dir).is_ok());
}
