//! LoRA adapters: several at once, chosen per request, merge, and refusal of adapters that do
//! not fit; P-tuning prefixes that do not fit.
mod common;
use candle_core::{Device, Tensor};
use common::{edit_json, model_dir, scratch_copy};
use doctorglm_models::{Model, ModelError, PrefixAdapter};
use std::path::Path;

fn logits(model: &Model, adapter: Option<&str>) -> Tensor {
    let ids: Vec<u32> = (0..6).map(|i| 30 + i).collect();
    let mut cache = model.new_cache(None);
    model.forward(&mut cache, &ids, adapter, false).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

fn chatglm2_dir() -> Option<std::path::PathBuf> {
    model_dir("model.safetensors.index.json")
}

#[test]
fn adapters_are_chosen_per_request_and_merge_matches_unmerged() {
    let Some(dir) = chatglm2_dir() else { return };
    let mut model = Model::load(&dir, &Default::default()).unwrap();
    let base = logits(&model, None);
    model.load_lora("a", &dir.join("lora-adapter")).unwrap();
    model.load_lora("b", &dir.join("lora-adapter")).unwrap();
    assert_eq!(model.adapters(), vec!["a".to_string(), "b".to_string()]);
    let with_a = logits(&model, Some("a"));
    assert!(max_diff(&base, &logits(&model, None)) == 0.0, "the base changed");
    assert!(max_diff(&base, &with_a) > 1e-3, "the adapter had no effect");
    assert!(max_diff(&with_a, &logits(&model, Some("b"))) < 1e-6);
    assert!(matches!(model.forward(&mut model.new_cache(None), &[1], Some("c"), false), Err(ModelError::UnknownAdapter(_))));
    model.merge_lora("a").unwrap();
    assert!(max_diff(&with_a, &logits(&model, None)) < 1e-3, "merged base differs from base + adapter");
    model.remove_lora("b").unwrap();
    assert!(model.adapters().is_empty());
}

fn refused(model: &mut Model, adapter: &Path) -> String {
    match model.load_lora("x", adapter) {
        Err(e @ ModelError::AdapterMismatch { .. }) => e.to_string(),
        Err(other) => panic!("wrong error kind: {other}"),
        Ok(()) => panic!("a tampered adapter was accepted"),
    }
}

#[test]
fn adapters_for_another_base_are_refused() {
    let Some(dir) = chatglm2_dir() else { return };
    let mut model = Model::load(&dir, &Default::default()).unwrap();
    // Another rank in the config than in the tensors.
    let tmp = scratch_copy(&dir.join("lora-adapter"));
    edit_json(&tmp.path().join("adapter_config.json"), |j| j["r"] = serde_json::json!(4));
    assert!(refused(&mut model, tmp.path()).contains("lora_A"));
    // A target module this model does not have.
    let tmp = scratch_copy(&dir.join("lora-adapter"));
    edit_json(&tmp.path().join("adapter_config.json"), |j| {
        j["target_modules"] = serde_json::json!(["q_proj"]);
    });
    refused(&mut model, tmp.path());
    // Matrices of another width.
    let tmp = scratch_copy(&dir.join("lora-adapter"));
    let file = tmp.path().join("adapter_model.safetensors");
    let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let key = tensors.keys().find(|k| k.contains("lora_A")).unwrap().clone();
    let (r, inp) = tensors[&key].dims2().unwrap();
    tensors.insert(key, Tensor::zeros((r, inp + 1), candle_core::DType::F32, &Device::Cpu).unwrap());
    std::fs::remove_file(&file).unwrap();
    candle_core::safetensors::save(&tensors, &file).unwrap();
    refused(&mut model, tmp.path());
    // An adapter made for a ChatGLM-6B (v1) base.
    if let Some(v1) = model_dir("pytorch_model.bin.index.json") {
        refused(&mut model, &v1.join("lora-adapter"));
    }
    assert!(model.adapters().is_empty(), "a refused adapter was kept");
}

#[test]
fn a_prefix_for_another_base_is_refused() {
    let (Some(dir), Some(v1)) = (chatglm2_dir(), model_dir("pytorch_model.bin.index.json")) else { return };
    let model = Model::load(&dir, &Default::default()).unwrap();
    let err = PrefixAdapter::load(&v1.join("ptuning-v2"), &model).err().expect("refused");
    assert!(matches!(err, ModelError::AdapterMismatch { .. }), "{err}");
    let tmp = scratch_copy(&dir.join("ptuning-v2"));
    edit_json(&tmp.path().join("config.json"), |j| j["pre_seq_len"] = serde_json::json!(5));
    assert!(PrefixAdapter::load(tmp.path(), &model).is_err());
}
