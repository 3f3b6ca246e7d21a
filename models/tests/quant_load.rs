//! Quantizing while loading: the streamed load gives exactly the weights of a full-precision load
//! followed by `Model::quantize` (every fixture family and storage: `.bin` fp16, safetensors fp16
//! and bf16), writes a cache that later loads map instead, and rebuilds that cache when the source
//! files, the format or the engine version change.
mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use doctorglm_models::quant::{cache, QuantFormat};
use doctorglm_models::{CacheUse, LoadOptions, Model, ModelError, QuantizeOptions};

fn fixture_models() -> Vec<PathBuf> {
    let root = common::fixture_root().join("models");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixture models (set DOCTORGLM_FIXTURES)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 3, "expected the three fixture models in {}", root.display());
    dirs
}

fn quantized_after_load(dir: &Path, format: QuantFormat) -> Model {
    let mut m = Model::load(dir, &LoadOptions::default()).expect("load");
    m.quantize(format, None, &mut |_, _| {}, &AtomicBool::new(false)).expect("quantize");
    m
}

fn load_q(dir: &Path, format: QuantFormat, cache: Option<&Path>) -> (Model, CacheUse) {
    let opts = QuantizeOptions::new(format, cache.map(Path::to_path_buf));
    Model::load_quantized(dir, &opts, &|_, _| {}, &AtomicBool::new(false)).expect("quantized load")
}

#[test]
fn streamed_quantized_load_equals_load_then_quantize() {
    for dir in fixture_models() {
        let cases = common::case_ids(&dir);
        let f32_model = Model::load(&dir, &LoadOptions::default()).unwrap();
        for format in QuantFormat::ALL {
            let reference = quantized_after_load(&dir, format);
            let tmp = tempfile::tempdir().unwrap();
            let cache_file = tmp.path().join("model.gguf");
            let (in_memory, u1) = load_q(&dir, format, None);
            let (written, u2) = load_q(&dir, format, Some(&cache_file));
            let (mapped, u3) = load_q(&dir, format, Some(&cache_file));
            assert_eq!((u1, u2, u3), (CacheUse::NoCache, CacheUse::Written, CacheUse::Reused));
            for ids in &cases {
                let want = common::logits(&reference, ids);
                let exact = common::logits(&f32_model, ids);
                if format.is_quantized() {
                    assert_ne!(want, exact, "{dir:?} {format}: quantization changed nothing");
                } else {
                    // F16 weights of an fp16 checkpoint are its own values (bf16 ones nearly so):
                    // only the order of the float sums separates them from the f32 model.
                    let size = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let diff = want.iter().zip(&exact).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    assert!(diff <= 2e-3 * size, "{dir:?} F16 against f32: {diff} of {size}");
                }
                for (what, m) in [("in memory", &in_memory), ("written", &written), ("mapped", &mapped)] {
                    assert_eq!(common::logits(m, ids), want, "{dir:?} {format} {what}");
                }
            }
        }
    }
}

#[test]
fn progress_counts_every_tensor_and_cancel_leaves_no_cache() {
    let dir = &fixture_models()[1];
    let tmp = tempfile::tempdir().unwrap();
    let cache_file = tmp.path().join("m.gguf");
    let seen = std::cell::RefCell::new(Vec::new());
    let opts = QuantizeOptions::new(QuantFormat::Q4_0, Some(cache_file.clone()));
    Model::load_quantized(dir, &opts, &|d, t| seen.borrow_mut().push((d, t)), &AtomicBool::new(false)).unwrap();
    let seen = seen.into_inner();
    let total = seen.last().unwrap().1;
    assert!(total > 5);
    assert_eq!(seen, (1..=total).map(|d| (d, total)).collect::<Vec<_>>());

    std::fs::remove_file(&cache_file).unwrap();
    let cancel = AtomicBool::new(false);
    let err = Model::load_quantized(
        dir,
        &opts,
        &|d, _| {
            if d == 3 {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        },
        &cancel,
    );
    assert!(matches!(err, Err(ModelError::Cancelled)));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "no cache and no partial file after a cancel");
}

#[test]
fn cache_is_rebuilt_when_sources_format_or_engine_change() {
    let src = &fixture_models()[1];
    let copy = common::scratch_copy(src);
    let dir = copy.path();
    let ids = &common::case_ids(dir)[0];
    let tmp = tempfile::tempdir().unwrap();
    let cache_file = tmp.path().join("m.gguf");
    let (first, u) = load_q(dir, QuantFormat::Q8_0, Some(&cache_file));
    assert_eq!(u, CacheUse::Written);
    let want = common::logits(&first, ids);
    assert_eq!(load_q(dir, QuantFormat::Q8_0, Some(&cache_file)).1, CacheUse::Reused);

    // Another format: rebuilt, and the reused file then holds the new format.
    assert_eq!(load_q(dir, QuantFormat::Q4_0, Some(&cache_file)).1, CacheUse::Written);
    assert_eq!(load_q(dir, QuantFormat::Q4_0, Some(&cache_file)).1, CacheUse::Reused);
    assert_eq!(load_q(dir, QuantFormat::Q8_0, Some(&cache_file)).1, CacheUse::Written);

    // Another engine version does not accept the file; this one does.
    let fp = doctorglm_models::quant::linear::source_fingerprint(dir).unwrap();
    assert!(cache::open_valid_for(&cache_file, &fp, QuantFormat::Q8_0, "0.0.0-older").is_none());
    assert!(cache::open_valid(&cache_file, &fp, QuantFormat::Q8_0).is_some());

    // A changed source file (new weights of the same size) is noticed and the new weights used.
    let shard = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("model-00002")))
        .expect("second shard");
    // Same names, shapes and sizes; every weight halved.
    let tensors = candle_core::safetensors::load(&shard, &candle_core::Device::Cpu).unwrap();
    let halved: std::collections::HashMap<String, candle_core::Tensor> =
        tensors.into_iter().map(|(k, t)| (k, (t * 0.5).unwrap())).collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    candle_core::safetensors::save(&halved, &shard).unwrap();
    let (changed, u) = load_q(dir, QuantFormat::Q8_0, Some(&cache_file));
    assert_eq!(u, CacheUse::Written);
    assert_ne!(common::logits(&changed, ids), want, "the cache still served the old weights");
    assert_eq!(common::logits(&changed, ids), common::logits(&quantized_after_load(dir, QuantFormat::Q8_0), ids));

    // A damaged cache is rebuilt, not trusted.
    let len = std::fs::metadata(&cache_file).unwrap().len();
    std::fs::write(&cache_file, &std::fs::read(&cache_file).unwrap()[..(len / 2) as usize]).unwrap();
    assert_eq!(load_q(dir, QuantFormat::Q8_0, Some(&cache_file)).1, CacheUse::Written);
    assert_eq!(load_q(dir, QuantFormat::Q8_0, Some(&cache_file)).1, CacheUse::Reused);
}
