//! The f16 key/value cache of quantized models: chosen for quantized weights only; it moves
//! full-precision logits by about a thousandth, and under quantized weights the error of a
//! conversation decoded over it is the size of the weights' own.
mod common;

use std::sync::atomic::AtomicBool;

use candle_core::DType;
use doctorglm_models::quant::QuantFormat;
use doctorglm_models::{KvCache, LoadOptions, Model};

/// The logits of the prompt's last position, then of each of `steps` after it: `steps.len() + 1` rows.
fn decode(m: &Model, cache: &mut KvCache, prompt: &[u32], steps: &[u32]) -> Vec<Vec<f32>> {
    let row = |t: candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut out = vec![row(m.forward(cache, prompt, None, false).expect("prompt"))];
    for &id in steps {
        out.push(row(m.forward(cache, &[id], None, false).expect("step")));
    }
    out
}

#[test]
fn quantized_models_decode_over_an_f16_cache_within_their_own_error() {
    let root = common::fixture_root().join("models");
    let mut dirs: Vec<_> = std::fs::read_dir(&root).expect("fixture models (set DOCTORGLM_FIXTURES)").filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("expected.json").is_file()).collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixture models under {root:?}");
    for dir in dirs {
        let f = Model::load(&dir, &LoadOptions::default()).expect("load fixture model");
        assert_eq!(f.cache_dtype(), None, "{dir:?}: full precision keeps an f32 cache");
        let mut q = Model::load(&dir, &LoadOptions::default()).expect("load fixture model");
        q.quantize(QuantFormat::Q8_0, None, &mut |_, _| {}, &AtomicBool::new(false)).expect("quantize");
        assert_eq!(q.cache_dtype(), Some(DType::F16), "{dir:?}");
        assert_eq!(q.new_cache(None).store_dtype(), Some(DType::F16));

        let prompt = &common::case_ids(&dir)[0];
        // Six steps: the tokens of the prompt again (any ids the vocabulary has).
        let steps: Vec<u32> = prompt.iter().copied().cycle().take(6).collect();
        let reference = decode(&f, &mut f.new_cache(None), prompt, &steps);
        let over_f32 = decode(&q, &mut KvCache::new(q.config().num_layers), prompt, &steps);
        let over_f16 = decode(&q, &mut q.new_cache(None), prompt, &steps);
        // Over full-precision weights the f16 cache moves the logits by about a thousandth of their size.
        let half_only = decode(&f, &mut f.new_cache(None).storing(DType::F16), prompt, &steps);
        for (i, (r, h)) in reference.iter().zip(&half_only).enumerate() {
            let (moved, size) = (common::rms(h, r), common::rms(r, &vec![0.0; r.len()]));
            eprintln!("{dir:?} step {i}: f32 weights over an f16 cache moved {moved:.5} of {size:.3}");
            assert!(moved > 0.0 && moved <= 2.5e-3 * size, "{dir:?} step {i}: the f16 cache moved the logits by {moved}");
        }
        // Under quantized weights that is lost in the weights' own error. The activations are
        // rounded to 8 bits before every product, so a tiny change flips some roundings and the
        // two runs' errors differ step by step; over all steps they are the same size.
        let error = |run: &[Vec<f32>]| {
            let squares: f32 = run.iter().zip(&reference).map(|(a, r)| common::rms(a, r).powi(2)).sum();
            (squares / run.len() as f32).sqrt()
        };
        let (f32_cache, f16_cache) = (error(&over_f32), error(&over_f16));
        eprintln!("{dir:?}: error of Q8_0 over an f32 cache {f32_cache:.5}, over an f16 cache {f16_cache:.5}");
        assert!(f16_cache <= 1.15 * f32_cache, "{dir:?}: the f16 cache took the logits {f16_cache} from full precision, the f32 cache {f32_cache}");
    }
}
