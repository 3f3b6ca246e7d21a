//! LoRA and P-tuning v2 over a quantized base: the adapter's effect over Q8_0 / Q4_0 weights
//! equals its effect over f32 within the base's own quantization error (the error of the two
//! passes it is the difference of); the quantization cache round-trips.
mod common;

use std::sync::atomic::AtomicBool;

use doctorglm_models::quant::QuantFormat;
use doctorglm_models::{LoadOptions, Model, PrefixAdapter};

fn prompt(dir: &std::path::Path) -> Vec<u32> {
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("expected.json is JSON");
    v["cases"][0]["input_ids"].as_array().expect("input_ids").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn logits(m: &Model, ids: &[u32], adapter: Option<&str>) -> Vec<f32> {
    let mut cache = m.new_cache(None);
    let t = m.forward(&mut cache, ids, adapter, false).expect("forward");
    t.flatten_all().unwrap().to_dtype(candle_core::DType::F32).unwrap().to_vec1::<f32>().unwrap()
}

fn rms_diff(a: &[f32], b: &[f32]) -> f32 {
    (a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>() / a.len() as f32).sqrt()
}

fn load(dir: &std::path::Path) -> Model {
    let mut m = Model::load(dir, &LoadOptions::default()).expect("load fixture model");
    m.load_lora("doc", &dir.join("lora-adapter")).expect("load fixture LoRA");
    m
}

#[test]
fn lora_effect_over_quantized_base_matches_f32_within_the_base_error() {
    let dir = common::model_dir("model.safetensors.index.json").expect("fixture models (set DOCTORGLM_FIXTURES)");
    let ids = prompt(&dir);
    let f = load(&dir);
    let (base_f, lora_f) = (logits(&f, &ids, None), logits(&f, &ids, Some("doc")));
    let effect_f: Vec<f32> = lora_f.iter().zip(&base_f).map(|(a, b)| a - b).collect();
    let effect_size = rms_diff(&lora_f, &base_f);
    for format in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
        let mut q = load(&dir);
        let from_cache = q.quantize(format, None, &mut |_, _| {}, &AtomicBool::new(false)).expect("quantize");
        assert!(!from_cache);
        let (base_q, lora_q) = (logits(&q, &ids, None), logits(&q, &ids, Some("doc")));
        let effect_q: Vec<f32> = lora_q.iter().zip(&base_q).map(|(a, b)| a - b).collect();
        let base_err = rms_diff(&base_q, &base_f);
        let effect_err = rms_diff(&effect_q, &effect_f);
        eprintln!("{dir:?} {format}: adapter effect {effect_size:.4}, base error {base_err:.4}, effect error {effect_err:.4}");
        assert!(base_err > 0.0, "{format}: the base was not quantized");
        // The with-adapter and without-adapter passes each carry an error of the base's size, so
        // their difference may reach about twice it; an adapter broken by quantization (dropped,
        // or merged and re-rounded as in the paper) would miss by the size of its whole effect.
        assert!(effect_err <= 2.5 * base_err, "{format}: adapter effect differs by {effect_err}, base quantization error {base_err}");
        let dot: f32 = effect_q.iter().zip(&effect_f).map(|(a, b)| a * b).sum();
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
        let cosine = dot / (norm(&effect_q) * norm(&effect_f));
        eprintln!("{format}: cosine of the adapter effects {cosine:.3}");
        assert!(cosine > 0.5, "{format}: the adapter's effect lost its direction (cosine {cosine})");
        if format == QuantFormat::Q8_0 {
            // 8-bit weights keep the adapter's effect almost whole.
            assert!(effect_err <= 0.25 * effect_size, "{format}: adapter effect {effect_size} changed by {effect_err}");
        }
        assert!(q.merge_lora("doc").is_err(), "merging into quantized weights must be refused");
    }
}

/// Logits of `ids` after the P-tuning prefix (or none).
fn prefixed_logits(m: &Model, ids: &[u32], prefix: Option<&PrefixAdapter>) -> Vec<f32> {
    let mut cache = m.new_cache(prefix);
    let t = m.forward(&mut cache, ids, None, false).expect("forward");
    t.flatten_all().unwrap().to_dtype(candle_core::DType::F32).unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn ptuning_effect_over_quantized_base_matches_f32_within_the_base_error() {
    // Every fixture family (ChatGLM-6B v1, ChatGLM3, GLM-4): the prefix's keys and values go
    // into the f16 cache a quantized model keeps, so each family's cache layout is exercised.
    let root = common::fixture_root().join("models");
    let mut dirs: Vec<_> = std::fs::read_dir(&root).expect("fixture models (set DOCTORGLM_FIXTURES)").map(|e| e.unwrap().path()).collect();
    dirs.sort();
    let dirs: Vec<_> = dirs.into_iter().filter(|d| d.join("ptuning-v2").is_dir()).collect();
    assert_eq!(dirs.len(), 3, "the three fixture families, each with a P-tuning v2 prefix");
    for dir in dirs {
        let ids = prompt(&dir);
        let f = Model::load(&dir, &LoadOptions::default()).expect("load fixture model");
        let prefix_f = PrefixAdapter::load(&dir.join("ptuning-v2"), &f).expect("load fixture prefix");
        let (base_f, tuned_f) = (prefixed_logits(&f, &ids, None), prefixed_logits(&f, &ids, Some(&prefix_f)));
        let effect_f: Vec<f32> = tuned_f.iter().zip(&base_f).map(|(a, b)| a - b).collect();
        let effect_size = rms_diff(&tuned_f, &base_f);
        assert!(effect_size > 0.0, "{dir:?}: the prefix had no effect");
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
            let mut q = Model::load(&dir, &LoadOptions::default()).expect("load fixture model");
            q.quantize(format, None, &mut |_, _| {}, &AtomicBool::new(false)).expect("quantize");
            let prefix_q = PrefixAdapter::load(&dir.join("ptuning-v2"), &q).expect("load fixture prefix");
            let (base_q, tuned_q) = (prefixed_logits(&q, &ids, None), prefixed_logits(&q, &ids, Some(&prefix_q)));
            let effect_q: Vec<f32> = tuned_q.iter().zip(&base_q).map(|(a, b)| a - b).collect();
            let base_err = rms_diff(&base_q, &base_f);
            let effect_err = rms_diff(&effect_q, &effect_f);
            let dot: f32 = effect_q.iter().zip(&effect_f).map(|(a, b)| a * b).sum();
            let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
            let cosine = dot / (norm(&effect_q) * norm(&effect_f));
            eprintln!("{dir:?} {format}: prefix effect {effect_size:.4}, base error {base_err:.4}, effect error {effect_err:.4}, cosine {cosine:.3}");
            assert!(base_err > 0.0, "{format}: the base was not quantized");
            // As for LoRA above: two passes, each with an error of the base's size. (Measured:
            // the effect errors are 0.08–0.91 of the base's.)
            assert!(effect_err <= 2.5 * base_err, "{dir:?} {format}: prefix effect differs by {effect_err}, base quantization error {base_err}");
            // Its direction survives (measured 0.63–0.997).
            assert!(cosine > 0.5, "{dir:?} {format}: the prefix's effect lost its direction (cosine {cosine})");
            if format == QuantFormat::Q8_0 && base_err < 0.5 * effect_size {
                // Where 8-bit weights err less than the prefix moves the logits (not the v1
                // fixture, whose prefix moves them by about Q8_0's own error), the effect
                // stays almost whole (measured 7–12% of it).
                assert!(effect_err <= 0.25 * effect_size, "{dir:?} {format}: prefix effect {effect_size} changed by {effect_err}");
            }
        }
    }
}

#[test]
fn quantization_cache_is_reused_and_rebuilt_when_stale() {
    let dir = common::model_dir("model.safetensors.index.json").expect("fixture models (set DOCTORGLM_FIXTURES)");
    let ids = prompt(&dir);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("model.q4_0.gguf");
    let never = AtomicBool::new(false);
    let mut first = load(&dir);
    let mut steps = 0;
    assert!(!first.quantize(QuantFormat::Q4_0, Some((&dir, &cache)), &mut |_, _| steps += 1, &never).unwrap());
    assert!(steps > 1 && cache.is_file());
    let mut second = load(&dir);
    assert!(second.quantize(QuantFormat::Q4_0, Some((&dir, &cache)), &mut |_, _| {}, &never).unwrap(), "cache reused");
    assert_eq!(logits(&first, &ids, Some("doc")), logits(&second, &ids, Some("doc")));
    // Another format is a different cache content: rebuilt, not reused.
    let mut third = load(&dir);
    assert!(!third.quantize(QuantFormat::Q8_0, Some((&dir, &cache)), &mut |_, _| {}, &never).unwrap());
    // Cancellation before any layer leaves an error and no cache.
    let other = tmp.path().join("other.gguf");
    let mut fourth = load(&dir);
    assert!(fourth.quantize(QuantFormat::Q8_0, Some((&dir, &other)), &mut |_, _| {}, &AtomicBool::new(true)).is_err());
    assert!(!other.exists());
}
