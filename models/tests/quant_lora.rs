//! LoRA and P-tuning v2 over a quantized base: the adapter's effect over Q8_0 / Q4_0 weights
//! equals its effect over f32 within the base's own quantization error (the error of the two
//! passes it is the difference of); the quantization cache round-trips.
mod common;
use common::{case_ids, model_dirs, rms};

use std::sync::atomic::AtomicBool;

use doctorglm_models::quant::QuantFormat;
use doctorglm_models::{LoadOptions, Model, PrefixAdapter};

/// Last-position logits of `ids`, with a LoRA adapter and a P-tuning prefix or without.
fn logits(m: &Model, ids: &[u32], adapter: Option<&str>, prefix: Option<&PrefixAdapter>) -> Vec<f32> {
    let mut cache = m.new_cache(prefix);
    let t = m.forward(&mut cache, ids, adapter, false).expect("forward");
    t.flatten_all().unwrap().to_dtype(candle_core::DType::F32).unwrap().to_vec1::<f32>().unwrap()
}

/// An adapter's effect (with − without) over f32 weights and over quantized ones, compared.
struct Effect {
    /// RMS of the effect over f32.
    size: f32,
    /// RMS difference of the quantized base's logits from the f32 base's.
    base_err: f32,
    /// RMS difference of the two effects.
    err: f32,
    /// Cosine of the two effects.
    cosine: f32,
}

impl Effect {
    fn of(base_f: &[f32], with_f: &[f32], base_q: &[f32], with_q: &[f32]) -> Self {
        let diff = |a: &[f32], b: &[f32]| -> Vec<f32> { a.iter().zip(b).map(|(x, y)| x - y).collect() };
        let (effect_f, effect_q) = (diff(with_f, base_f), diff(with_q, base_q));
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
        let dot: f32 = effect_q.iter().zip(&effect_f).map(|(a, b)| a * b).sum();
        Effect {
            size: rms(with_f, base_f),
            base_err: rms(base_q, base_f),
            err: rms(&effect_q, &effect_f),
            cosine: dot / (norm(&effect_q) * norm(&effect_f)),
        }
    }
}

fn load(dir: &std::path::Path) -> Model {
    let mut m = Model::load(dir, &LoadOptions::default()).expect("load fixture model");
    m.load_lora("doc", &dir.join("lora-adapter")).expect("load fixture LoRA");
    m
}

#[test]
fn lora_effect_over_quantized_base_matches_f32_within_the_base_error() {
    let dir = common::model_dir("model.safetensors.index.json").expect("fixture models (set DOCTORGLM_FIXTURES)");
    let ids = case_ids(&dir).swap_remove(0);
    let f = load(&dir);
    let (base_f, lora_f) = (logits(&f, &ids, None, None), logits(&f, &ids, Some("doc"), None));
    for format in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
        let mut q = load(&dir);
        let from_cache = q.quantize(format, None, &mut |_, _| {}, &AtomicBool::new(false)).expect("quantize");
        assert!(!from_cache);
        let e = Effect::of(&base_f, &lora_f, &logits(&q, &ids, None, None), &logits(&q, &ids, Some("doc"), None));
        eprintln!("{dir:?} {format}: adapter effect {:.4}, base error {:.4}, effect error {:.4}, cosine {:.3}", e.size, e.base_err, e.err, e.cosine);
        assert!(e.base_err > 0.0, "{format}: the base was not quantized");
        // The with-adapter and without-adapter passes each carry an error of the base's size, so
        // their difference may reach about twice it; an adapter broken by quantization (dropped,
        // or merged and re-rounded as in the paper) would miss by the size of its whole effect.
        assert!(e.err <= 2.5 * e.base_err, "{format}: adapter effect differs by {}, base quantization error {}", e.err, e.base_err);
        assert!(e.cosine > 0.5, "{format}: the adapter's effect lost its direction (cosine {})", e.cosine);
        if format == QuantFormat::Q8_0 {
            // 8-bit weights keep the adapter's effect almost whole.
            assert!(e.err <= 0.25 * e.size, "{format}: adapter effect {} changed by {}", e.size, e.err);
        }
        assert!(q.merge_lora("doc").is_err(), "merging into quantized weights must be refused");
    }
}

#[test]
fn ptuning_effect_over_quantized_base_matches_f32_within_the_base_error() {
    // Every fixture family (ChatGLM-6B v1, ChatGLM3, GLM-4): the prefix's keys and values go
    // into the f16 cache a quantized model keeps, so each family's cache layout is exercised.
    let dirs: Vec<_> = model_dirs().into_iter().filter(|d| d.join("ptuning-v2").is_dir()).collect();
    assert_eq!(dirs.len(), 3, "the three fixture families, each with a P-tuning v2 prefix");
    for dir in dirs {
        let ids = case_ids(&dir).swap_remove(0);
        let with_prefix = |m: &Model| {
            let prefix = PrefixAdapter::load(&dir.join("ptuning-v2"), m).expect("load fixture prefix");
            (logits(m, &ids, None, None), logits(m, &ids, None, Some(&prefix)))
        };
        let (base_f, tuned_f) = with_prefix(&Model::load(&dir, &LoadOptions::default()).expect("load fixture model"));
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
            let mut q = Model::load(&dir, &LoadOptions::default()).expect("load fixture model");
            q.quantize(format, None, &mut |_, _| {}, &AtomicBool::new(false)).expect("quantize");
            let (base_q, tuned_q) = with_prefix(&q);
            let e = Effect::of(&base_f, &tuned_f, &base_q, &tuned_q);
            eprintln!("{dir:?} {format}: prefix effect {:.4}, base error {:.4}, effect error {:.4}, cosine {:.3}", e.size, e.base_err, e.err, e.cosine);
            assert!(e.size > 0.0, "{dir:?}: the prefix had no effect");
            assert!(e.base_err > 0.0, "{format}: the base was not quantized");
            // As for LoRA above: two passes, each with an error of the base's size. (Measured:
            // the effect errors are 0.08–0.91 of the base's.)
            assert!(e.err <= 2.5 * e.base_err, "{dir:?} {format}: prefix effect differs by {}, base quantization error {}", e.err, e.base_err);
            // Its direction survives (measured 0.63–0.997).
            assert!(e.cosine > 0.5, "{dir:?} {format}: the prefix's effect lost its direction (cosine {})", e.cosine);
            if format == QuantFormat::Q8_0 && e.base_err < 0.5 * e.size {
                // Where 8-bit weights err less than the prefix moves the logits (not the v1
                // fixture, whose prefix moves them by about Q8_0's own error), the effect
                // stays almost whole (measured 7–12% of it).
                assert!(e.err <= 0.25 * e.size, "{dir:?} {format}: prefix effect {} changed by {}", e.size, e.err);
            }
        }
    }
}

#[test]
fn quantization_cache_is_reused_and_rebuilt_when_stale() {
    let dir = common::model_dir("model.safetensors.index.json").expect("fixture models (set DOCTORGLM_FIXTURES)");
    let ids = case_ids(&dir).swap_remove(0);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("model.q4_0.gguf");
    let never = AtomicBool::new(false);
    let mut first = load(&dir);
    let mut steps = 0;
    assert!(!first.quantize(QuantFormat::Q4_0, Some((&dir, &cache)), &mut |_, _| steps += 1, &never).unwrap());
    assert!(steps > 1 && cache.is_file());
    let mut second = load(&dir);
    assert!(second.quantize(QuantFormat::Q4_0, Some((&dir, &cache)), &mut |_, _| {}, &never).unwrap(), "cache reused");
    assert_eq!(logits(&first, &ids, Some("doc"), None), logits(&second, &ids, Some("doc"), None));
    // Another format is a different cache content: rebuilt, not reused.
    let mut third = load(&dir);
    assert!(!third.quantize(QuantFormat::Q8_0, Some((&dir, &cache)), &mut |_, _| {}, &never).unwrap());
    // Cancellation before any layer leaves an error and no cache.
    let other = tmp.path().join("other.gguf");
    let mut fourth = load(&dir);
    assert!(fourth.quantize(QuantFormat::Q8_0, Some((&dir, &other)), &mut |_, _| {}, &AtomicBool::new(true)).is_err());
    assert!(!other.exists());
}
