//! Damaged model folders give typed errors naming the tensor and the file; nothing panics.
mod common;
use candle_core::safetensors::{load, save};
use candle_core::{DType, Device, Tensor};
use common::{edit_json, model_dir, scratch_copy};
use doctorglm_models::{Model, ModelError};
use std::path::{Path, PathBuf};

const ST_INDEX: &str = "model.safetensors.index.json";
const BIN_INDEX: &str = "pytorch_model.bin.index.json";

fn load_err(dir: &Path) -> ModelError {
    match Model::load(dir, &Default::default()) {
        Ok(_) => panic!("a damaged folder loaded"),
        Err(e) => e,
    }
}

/// The shard holding `tensor` according to the index.
fn shard_of(dir: &Path, index: &str, tensor: &str) -> PathBuf {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(index)).unwrap()).unwrap();
    dir.join(json["weight_map"][tensor].as_str().unwrap())
}

fn truncate(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len / 2).unwrap();
}

#[test]
fn truncated_safetensors_shard_names_the_file() {
    let Some(src) = model_dir(ST_INDEX) else { return };
    let tmp = scratch_copy(&src);
    let shard = shard_of(tmp.path(), ST_INDEX, "transformer.output_layer.weight");
    truncate(&shard);
    match load_err(tmp.path()) {
        ModelError::BadWeightFile { path, .. } => assert_eq!(path, shard),
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn truncated_pytorch_shard_names_the_file() {
    let Some(src) = model_dir(BIN_INDEX) else { return };
    let tmp = scratch_copy(&src);
    let shard = shard_of(tmp.path(), BIN_INDEX, "lm_head.weight");
    truncate(&shard);
    let err = load_err(tmp.path());
    let text = err.to_string();
    assert!(text.contains(&shard.display().to_string()), "{text}");
}

/// Rewrites a safetensors shard with `change` applied to its tensors.
fn rewrite_shard(shard: &Path, change: impl FnOnce(&mut std::collections::HashMap<String, Tensor>)) {
    let mut tensors = load(shard, &Device::Cpu).unwrap();
    change(&mut tensors);
    std::fs::remove_file(shard).unwrap();
    save(&tensors, shard).unwrap();
}

#[test]
fn a_tensor_missing_from_its_shard_is_named_with_the_shard() {
    let Some(src) = model_dir(ST_INDEX) else { return };
    let tmp = scratch_copy(&src);
    let name = "transformer.encoder.final_layernorm.weight";
    let shard = shard_of(tmp.path(), ST_INDEX, name);
    rewrite_shard(&shard, |t| {
        t.remove(name);
    });
    match load_err(tmp.path()) {
        ModelError::MissingTensor { name: n, file } => {
            assert_eq!(n, name);
            assert_eq!(file, shard);
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn a_tensor_missing_everywhere_is_named() {
    let Some(src) = model_dir(ST_INDEX) else { return };
    let tmp = scratch_copy(&src);
    let name = "transformer.encoder.final_layernorm.weight";
    let shard = shard_of(tmp.path(), ST_INDEX, name);
    rewrite_shard(&shard, |t| {
        t.remove(name);
    });
    edit_json(&tmp.path().join(ST_INDEX), |j| {
        j["weight_map"].as_object_mut().unwrap().remove(name);
    });
    let err = load_err(tmp.path());
    assert!(matches!(&err, ModelError::MissingTensor { name: n, .. } if n == name), "{err}");
}

#[test]
fn a_mis_shaped_tensor_is_named_with_both_shapes() {
    let Some(src) = model_dir(ST_INDEX) else { return };
    let tmp = scratch_copy(&src);
    let name = "transformer.encoder.layers.0.input_layernorm.weight";
    let shard = shard_of(tmp.path(), ST_INDEX, name);
    rewrite_shard(&shard, |t| {
        let wrong = Tensor::zeros(3, DType::F16, &Device::Cpu).unwrap();
        t.insert(name.to_string(), wrong);
    });
    match load_err(tmp.path()) {
        ModelError::ShapeMismatch { name: n, file, found, .. } => {
            assert_eq!(n, name);
            assert_eq!(file, shard);
            assert_eq!(found, vec![3]);
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn a_bad_index_is_refused() {
    let Some(src) = model_dir(ST_INDEX) else { return };
    let tmp = scratch_copy(&src);
    std::fs::write(tmp.path().join(ST_INDEX), "{\"weight_map\": [1, 2").unwrap();
    assert!(matches!(load_err(tmp.path()), ModelError::Index { .. }));
    std::fs::write(tmp.path().join(ST_INDEX), "{\"metadata\": {}}").unwrap();
    assert!(matches!(load_err(tmp.path()), ModelError::Index { .. }));
    edit_json(&tmp.path().join(ST_INDEX), |j| {
        j["weight_map"] = serde_json::json!({"transformer.output_layer.weight": "../elsewhere.safetensors"});
    });
    assert!(matches!(load_err(tmp.path()), ModelError::Index { .. }));
}

#[test]
fn missing_config_and_missing_weights_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(load_err(tmp.path()), ModelError::Io { .. }));
    let Some(src) = model_dir(ST_INDEX) else { return };
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
    assert!(matches!(load_err(tmp.path()), ModelError::NoWeights { .. }));
}

#[test]
fn loading_reports_progress_and_can_be_cancelled() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(dir) = model_dir(ST_INDEX) else { return };
    let seen = std::cell::RefCell::new(Vec::new());
    let cancel = AtomicBool::new(false);
    Model::load_with_progress(&dir, &Default::default(), &|done, total| seen.borrow_mut().push((done, total)), &cancel)
        .unwrap();
    let seen = seen.into_inner();
    assert!(!seen.is_empty());
    assert!(seen.windows(2).all(|w| w[1].0 == w[0].0 + 1), "progress is not one step per tensor");
    assert!(seen.iter().all(|&(d, t)| d <= t));
    let (done, total) = seen[seen.len() - 1];
    assert_eq!(done, total, "progress does not reach the end");
    let err = Model::load_with_progress(&dir, &Default::default(), &|done, _| {
        if done == 3 {
            cancel.store(true, Ordering::SeqCst);
        }
    }, &cancel)
    .err()
    .expect("cancelled");
    assert!(matches!(err, ModelError::Cancelled));
}
