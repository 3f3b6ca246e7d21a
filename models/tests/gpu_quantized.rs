//! Quantized models on a CUDA GPU (`cargo test -p doctorglm-models --features cuda --test
//! gpu_quantized`, on a machine with one): the same cache file as the CPU's, uploaded as it is,
//! is about as far from the f32 model as the CPU's quantized model is, keeps every layer's
//! format, and decodes with its key/value cache. Without the `cuda` feature this file is empty.
#![cfg(feature = "cuda")]
mod common;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use doctorglm_models::quant::QuantFormat;
use doctorglm_models::{select_device, CacheUse, DeviceChoice, LoadOptions, Model, QuantizeOptions};

fn fixture_models() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(common::fixture_root().join("models"))
        .expect("fixture models (set DOCTORGLM_FIXTURES)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn softmax(v: &[f32]) -> Vec<f64> {
    let m = v.iter().fold(f32::MIN, |a, b| a.max(*b)) as f64;
    let e: Vec<f64> = v.iter().map(|x| (*x as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

fn kl(p: &[f32], q: &[f32]) -> f64 {
    let (p, q) = (softmax(p), softmax(q));
    p.iter().zip(&q).map(|(a, b)| if *a > 0.0 { a * (a / b.max(1e-30)).ln() } else { 0.0 }).sum()
}

#[test]
fn quantized_models_on_the_gpu_match_the_cpu() {
    let Ok(gpu) = select_device(DeviceChoice::Cuda(0)) else {
        eprintln!("no CUDA device: skipped");
        return;
    };
    let never = AtomicBool::new(false);
    for dir in fixture_models() {
        let exact = Model::load(&dir, &LoadOptions::default()).unwrap();
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Q4K, QuantFormat::F16] {
            let tmp = tempfile::tempdir().unwrap();
            let cache = tmp.path().join("model.gguf");
            let cpu_opts = QuantizeOptions::new(format, Some(cache.clone()));
            let (cpu, used) = Model::load_quantized(&dir, &cpu_opts, &|_, _| {}, &never).unwrap();
            assert_eq!(used, CacheUse::Written);
            let gpu_opts = QuantizeOptions { device: gpu.clone(), ..cpu_opts.clone() };
            let (on_gpu, used) = Model::load_quantized(&dir, &gpu_opts, &|_, _| {}, &never).unwrap();
            assert_eq!(used, CacheUse::Reused, "the GPU maps the cache the CPU wrote");
            assert!(on_gpu.device().is_cuda());
            assert_eq!(on_gpu.weight_formats(), cpu.weight_formats());
            for ids in common::case_ids(&dir) {
                let reference = common::logits(&exact, &ids);
                let want = common::logits(&cpu, &ids);
                let got = common::logits(&on_gpu, &ids);
                // The same blocks, but each side rounds (or keeps) the activations its own way
                // (candle's kernels round every product's to 8 bits; ours keep prompts' in f32
                // except for Q4_0): the bounds of the CPU stand-in in `model.rs`'s tests.
                let (e_cpu, e_gpu, apart) = (kl(&reference, &want), kl(&reference, &got), kl(&want, &got));
                assert!(e_gpu <= 2.0 * e_cpu + 0.02, "{dir:?} {format}: KL to f32 {e_gpu} on the GPU, {e_cpu} on the CPU");
                assert!(apart < 0.05, "{dir:?} {format}: KL(cpu ‖ gpu) {apart}");
            }
            // One more token through the key/value cache against a fresh pass over all of them
            // (a ChatGLM-6B prompt must end with <sop>, so the step is a token after the prompt).
            let ids = &common::case_ids(&dir)[0];
            let first = common::logits(&on_gpu, ids);
            let next = first.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
            let mut kv = on_gpu.new_cache(None);
            on_gpu.forward(&mut kv, ids, None, false).unwrap();
            let stepped = on_gpu.forward(&mut kv, &[next], None, false).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let fresh = common::logits(&on_gpu, &[ids.as_slice(), &[next]].concat());
            assert!(kl(&fresh, &stepped) < 1e-3, "{dir:?} {format}: cached step against a fresh pass");
        }
    }
}
