//! LoRA training in the memory-saving modes, on the chatglm3-tiny fixture and its `train_step`
//! batch: over an INT8/INT4 base (gradients through the quantized product), with gradient
//! checkpointing, and in bf16.
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use doctorglm_models::lora::peft_name;
use doctorglm_models::quant::QuantFormat;
use doctorglm_models::train::{Batch, LoraParams, LoraTrainer, LrSchedule, OptimizerConfig, TrainSettings};
use doctorglm_models::{LoadOptions, LoraConfig, Model};

const TARGETS: [&str; 4] = ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"];

fn fixture() -> PathBuf {
    common::model_dir("model.safetensors.index.json").expect("fixture models (set DOCTORGLM_FIXTURES)")
}

fn batch(dir: &Path) -> Batch {
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("expected.json is JSON");
    let step = &v["train_step"];
    let ids: Vec<Vec<u32>> = serde_json::from_value(step["input_ids"].clone()).expect("input_ids");
    let labels: Vec<Vec<i64>> = serde_json::from_value(step["labels"].clone()).expect("labels");
    Batch::from_rows(&ids, &labels, 0, &Device::Cpu).expect("batch")
}

fn config() -> LoraConfig {
    LoraConfig { r: 4, alpha: 8.0, target_modules: TARGETS.iter().map(|s| s.to_string()).collect(), use_rslora: false }
}

/// Deterministic values in ±scale.
fn random(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A LoRA start with both A and B non-zero, so that every parameter has a gradient.
fn start(model: &Model) -> HashMap<String, Tensor> {
    let c = config();
    let mut tensors = HashMap::new();
    for (i, (name, inp, out)) in model.linear_shapes().into_iter().filter(|(n, _, _)| c.targets(n)).enumerate() {
        let a = Tensor::from_vec(random(2 * i as u64 + 1, c.r * inp, 0.1), (c.r, inp), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(random(2 * i as u64 + 2, out * c.r, 0.05), (out, c.r), &Device::Cpu).unwrap();
        tensors.insert(peft_name(&name, false), a);
        tensors.insert(peft_name(&name, true), b);
    }
    tensors
}

fn settings(lr: f64) -> TrainSettings {
    TrainSettings {
        optimizer: OptimizerConfig::AdamW { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
        schedule: LrSchedule::constant(),
        max_grad_norm: None,
    }
}

fn load(dir: &Path, quant: Option<QuantFormat>) -> Model {
    let mut m = Model::load(dir, &LoadOptions::default()).expect("load fixture");
    if let Some(f) = quant {
        m.quantize(f, None, &mut |_, _| {}, &AtomicBool::new(false)).expect("quantize");
    }
    m
}

fn trainer(model: &mut Model, tensors: &HashMap<String, Tensor>) -> LoraTrainer {
    let params = LoraParams::from_tensors(config(), tensors, &Device::Cpu).expect("params");
    LoraTrainer::new(model, "t", params, settings(1e-3)).expect("trainer")
}

/// Every parameter's gradient, flattened in name order.
fn flat_grads(t: &LoraTrainer, grads: &GradStore) -> Vec<f32> {
    let mut out = Vec::new();
    for (name, var) in t.params().iter() {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        out.extend(g.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap());
    }
    out
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let d: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&d) / norm(b)
}

fn loss(t: &LoraTrainer, model: &Model, b: &Batch) -> f64 {
    t.loss(model, b).unwrap().to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap() as f64
}

#[test]
fn gradients_over_an_int8_or_int4_base_match_finite_differences() {
    let dir = fixture();
    let b = batch(&dir);
    for format in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
        let mut model = load(&dir, Some(format));
        let init = start(&model);
        let t = trainer(&mut model, &init);
        let (_, grads) = t.gradients(&model, &b).unwrap();
        let g = flat_grads(&t, &grads);
        // Directional derivative along a random direction over every parameter, against a
        // central difference of the loss. Layer 0's parameters reach the loss only through the
        // quantized layers above them, so a cut graph would show here.
        let vars: Vec<_> = t.params().iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        // Random, tilted towards the gradient's signs so that the derivative is not a small
        // difference of large terms.
        let dirs: Vec<Tensor> = vars
            .iter()
            .enumerate()
            .map(|(i, (_, v))| {
                let r = Tensor::from_vec(random(100 + i as u64, v.elem_count(), 1.0), v.shape(), &Device::Cpu).unwrap();
                let g = grads.get(v.as_tensor()).unwrap().sign().unwrap();
                (r + g).unwrap()
            })
            .collect();
        let flat_dir: Vec<f32> = dirs.iter().flat_map(|d| d.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
        let analytic: f64 = g.iter().zip(&flat_dir).map(|(a, b)| *a as f64 * *b as f64).sum();
        let eps = 1e-3;
        let originals: Vec<Tensor> = vars.iter().map(|(_, v)| v.as_tensor().copy().unwrap()).collect();
        let shifted = |sign: f64| {
            for ((_, v), (o, d)) in vars.iter().zip(originals.iter().zip(&dirs)) {
                v.set(&(o + (d * (sign * eps)).unwrap()).unwrap()).unwrap();
            }
            loss(&t, &model, &b)
        };
        let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps);
        let rel = (analytic - numeric).abs() / numeric.abs();
        eprintln!("{format}: directional derivative {analytic:.6}, finite difference {numeric:.6}, relative {rel:.2e}");
        assert!(numeric.abs() > 1e-2, "{format}: the direction should change the loss");
        assert!(rel < 1e-2, "{format}: gradient {analytic} vs finite difference {numeric}");
        // Layer 0's A has a gradient that flowed through the quantized product above it.
        let first = t.params().get(&peft_name("transformer.encoder.layers.0.self_attention.query_key_value", false)).unwrap();
        let g0 = grads.get(first.as_tensor()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(g0 > 0.0, "{format}: no gradient reached layer 0");
    }
}

#[test]
fn gradients_over_a_quantized_base_equal_those_over_its_dequantized_weights() {
    let dir = fixture();
    let b = batch(&dir);
    let mut f32_model = load(&dir, None);
    let init = start(&f32_model);
    let tf = trainer(&mut f32_model, &init);
    let (loss_f, grads_f) = tf.gradients(&f32_model, &b).unwrap();
    let gf = flat_grads(&tf, &grads_f);
    for format in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
        let mut q = load(&dir, Some(format));
        let tq = trainer(&mut q, &init);
        let (loss_q, grads_q) = tq.gradients(&q, &b).unwrap();
        let gq = flat_grads(&tq, &grads_q);
        // The same weights, dequantized into plain tensors: the gradients are those of the same function.
        let mut d = load(&dir, Some(format));
        d.dequantize().unwrap();
        let td = trainer(&mut d, &init);
        let (loss_d, grads_d) = td.gradients(&d, &b).unwrap();
        let gd = flat_grads(&td, &grads_d);
        let exact = rel_diff(&gq, &gd);
        let hidden = |m: &Model| {
            m.forward_batch_hidden(&b.input_ids, None, None).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let hidden_err = rel_diff(&hidden(&q), &hidden(&f32_model));
        let weight_err = {
            let name = "transformer.encoder.layers.0.self_attention.query_key_value";
            let w = |m: &Model| m.linear_weight_f32(name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            rel_diff(&w(&q), &w(&f32_model))
        };
        eprintln!("{format}: weight error {weight_err:.3e}, final hidden state error {hidden_err:.3e}");
        let vs_f32 = rel_diff(&gq, &gf);
        eprintln!(
            "{format}: loss {loss_q:.5} (dequantized {loss_d:.5}, f32 {loss_f:.5}); gradient vs dequantized {exact:.2e}, vs f32 base {vs_f32:.3e}"
        );
        assert!(((loss_q - loss_d) / loss_d).abs() < 1e-5);
        assert!(exact < 1e-4, "{format}: {exact}");
        // Against the f32 base the difference is the quantization error: present, and of the
        // size of the error the quantized base makes in the forward's final hidden states (the
        // random tiny model amplifies weight errors: 0.5% in Q8_0 weights is 2.7% there).
        assert!(vs_f32 > 1e-5, "{format}: the base was not quantized");
        assert!(vs_f32 < 4.0 * hidden_err, "{format}: gradients differ by {vs_f32} from the f32 base, hidden states by {hidden_err}");
    }
}

#[test]
fn lora_over_an_int4_base_learns() {
    let dir = fixture();
    let b = batch(&dir);
    let mut model = load(&dir, Some(QuantFormat::Q4_0));
    let params = LoraParams::init(&model, config(), 7).unwrap();
    let mut t = LoraTrainer::new(&mut model, "t", params, settings(1e-2)).unwrap();
    let mut losses = Vec::new();
    for _ in 0..30 {
        losses.push(t.step(&model, &b).unwrap().loss);
    }
    eprintln!("INT4 base losses: {:?}", losses);
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < 0.5 * first, "loss {first} → {last}");
}

/// A fixture folder of each architecture (v1 `.bin`, v2 safetensors) with its batch.
fn families() -> Vec<(PathBuf, Batch)> {
    ["pytorch_model.bin.index.json", "model.safetensors.index.json"]
        .iter()
        .map(|marker| {
            let dir = common::model_dir(marker).expect("fixture models (set DOCTORGLM_FIXTURES)");
            let b = batch(&dir);
            (dir, b)
        })
        .collect()
}

#[test]
fn gradient_checkpointing_gives_the_same_loss_and_gradients() {
    for (dir, b) in families() {
        for quant in [None, Some(QuantFormat::Q4_0)] {
            let mut model = load(&dir, quant);
            let init = start(&model);
            let mut t = trainer(&mut model, &init);
            let (loss_plain, grads_plain) = t.gradients(&model, &b).unwrap();
            let plain = flat_grads(&t, &grads_plain);
            let eval_plain = loss(&t, &model, &b);
            t.set_gradient_checkpointing(true);
            let (loss_ckpt, grads_ckpt) = t.gradients(&model, &b).unwrap();
            let ckpt = flat_grads(&t, &grads_ckpt);
            let eval_ckpt = loss(&t, &model, &b);
            let rel = rel_diff(&ckpt, &plain);
            eprintln!("{dir:?} {quant:?}: loss {loss_plain} / {loss_ckpt}, gradient difference {rel:.2e}");
            assert_eq!(loss_plain, loss_ckpt, "{dir:?} {quant:?}: the loss changed");
            assert_eq!(eval_plain, eval_ckpt, "{dir:?} {quant:?}: the evaluation loss changed");
            assert!(rel < 1e-5, "{dir:?} {quant:?}: gradients differ by {rel}");
            assert!(norm(&plain) > 1e-3);
            // Steps with checkpointing follow the same path as steps without it.
            let mut m2 = load(&dir, quant);
            let mut t2 = trainer(&mut m2, &init);
            t.set_gradient_checkpointing(true);
            for _ in 0..3 {
                let a = t.step(&model, &b).unwrap().loss;
                let c = t2.step(&m2, &b).unwrap().loss;
                assert!((a - c).abs() <= 1e-5 * c.abs(), "{a} vs {c}");
            }
        }
    }
}

#[test]
fn bf16_base_with_f32_lora_matches_f32_and_learns() {
    for (dir, b) in families() {
        let mut f = load(&dir, None);
        let mut h = Model::load(&dir, &LoadOptions { dtype: DType::BF16, ..LoadOptions::default() }).expect("load in bf16");
        let init = start(&f);
        let tf = trainer(&mut f, &init);
        let th = trainer(&mut h, &init);
        let (loss_f, grads_f) = tf.gradients(&f, &b).unwrap();
        let (loss_h, grads_h) = th.gradients(&h, &b).unwrap();
        // Mixed precision: the parameters, their gradients and the optimizer's state stay f32.
        for (name, var) in th.params().iter() {
            assert_eq!(var.dtype(), DType::F32, "{name}");
            assert_eq!(grads_h.get(var.as_tensor()).unwrap().dtype(), DType::F32, "{name} gradient");
        }
        let rel_loss = ((loss_h - loss_f) / loss_f).abs();
        let rel_grad = rel_diff(&flat_grads(&th, &grads_h), &flat_grads(&tf, &grads_f));
        eprintln!("{dir:?}: bf16 loss {loss_h} vs f32 {loss_f} (relative {rel_loss:.2e}); gradients differ by {rel_grad:.3e}");
        assert!(rel_loss < 1e-2, "bf16 loss {loss_h} vs f32 {loss_f}");
        assert!(rel_loss > 0.0, "the bf16 model computed in f32");
        assert!(rel_grad < 0.2, "bf16 gradients differ by {rel_grad}");
        // A fresh adapter over the bf16 base learns.
        let mut fresh = Model::load(&dir, &LoadOptions { dtype: DType::BF16, ..LoadOptions::default() }).unwrap();
        let params = LoraParams::init(&fresh, config(), 3).unwrap();
        let mut t = LoraTrainer::new(&mut fresh, "t", params, settings(1e-2)).unwrap();
        let losses: Vec<f32> = (0..12).map(|_| t.step(&fresh, &b).unwrap().loss).collect();
        eprintln!("{dir:?}: bf16 losses {losses:?}");
        assert!(losses[11] < 0.5 * losses[0], "bf16 training did not learn: {losses:?}");
        assert!(t.params().vars().iter().all(|v| v.dtype() == DType::F32));
        let saved = tempfile::tempdir().unwrap();
        t.save_checkpoint(saved.path(), "bf16").unwrap();
        let moments = candle_core::safetensors::load(saved.path().join("optimizer.safetensors"), &Device::Cpu).unwrap();
        assert!(!moments.is_empty() && moments.values().all(|m| m.dtype() == DType::F32), "optimizer state is not f32");
    }
}
