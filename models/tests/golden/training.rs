//! Golden cases: one LoRA training step (loss, gradients, AdamW and Lion updates) against
//! `train_step` in each model folder's `expected.json` and the `train.*` tensors of
//! `expected.safetensors`. Names, sizes and hyper-parameters are all read from the fixtures.
use crate::report::Report;
use candle_core::{Device, Tensor};
use doctorglm_models::lora::LoraConfig;
use doctorglm_models::model::{LoadOptions, Model};
use doctorglm_models::train::{Batch, LoraParams, LoraTrainer, LrSchedule, OptimizerConfig, ScheduleKind, TrainSettings};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// Relative tolerance of the loss; absolute-plus-relative tolerance of the tensors.
const TOL: f64 = 1e-4;
/// Logits of the trainable (differentiable ops) and inference (fused kernels) paths agree to this.
const LOGITS_TOL: f64 = 2e-4;

/// Adds this group's cases to the report.
pub fn run(root: &Path, report: &mut Report) {
    let Ok(entries) = std::fs::read_dir(root.join("models")) else {
        return;
    };
    let mut dirs: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Ok(text) = std::fs::read_to_string(dir.join("expected.json")) else { continue };
        let Ok(expected) = serde_json::from_str::<Value>(&text) else { continue };
        if expected.get("train_step").is_none() {
            continue;
        }
        let fixture = match Fixture::load(&dir, &expected) {
            Ok(f) => f,
            Err(why) => {
                report.check(&format!("{name} train_step"), || Err(why));
                continue;
            }
        };
        for kind in ["adamw", "lion"] {
            report.check(&format!("{name} train_step {kind}"), || fixture.check(&dir, kind));
        }
        report.check(&format!("{name} trained adapter saved as PEFT, reloaded: same logits"), || {
            fixture.check_save_reload(&dir)
        });
        report.check(&format!("{name} checkpoint and resume continue exactly"), || fixture.check_resume(&dir));
        report.check(&format!("{name} fresh LoRA starts at the base model and learns"), || {
            fixture.check_fresh(&dir)
        });
    }
}

struct Fixture {
    batch: Batch,
    hyper: Value,
    losses: HashMap<String, f64>,
    tensors: HashMap<String, Tensor>,
    config: LoraConfig,
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value, String> {
    v.get(key).ok_or_else(|| format!("expected.json train_step lacks `{key}`"))
}

fn number(v: &Value, key: &str) -> Result<f64, String> {
    field(v, key)?.as_f64().ok_or_else(|| format!("`{key}` is not a number"))
}

fn pair(v: &Value, key: &str) -> Result<(f64, f64), String> {
    let arr = field(v, key)?.as_array().ok_or_else(|| format!("`{key}` is not a list"))?;
    match arr.as_slice() {
        [a, b] => Ok((
            a.as_f64().ok_or_else(|| format!("`{key}` holds a non-number"))?,
            b.as_f64().ok_or_else(|| format!("`{key}` holds a non-number"))?,
        )),
        _ => Err(format!("`{key}` should hold two numbers")),
    }
}

fn rows<T: serde::de::DeserializeOwned>(v: &Value, key: &str) -> Result<Vec<Vec<T>>, String> {
    serde_json::from_value(field(v, key)?.clone()).map_err(|e| format!("`{key}`: {e}"))
}

impl Fixture {
    fn load(dir: &Path, expected: &Value) -> Result<Self, String> {
        let step = field(expected, "train_step")?;
        let ids: Vec<Vec<u32>> = rows(step, "input_ids")?;
        let labels: Vec<Vec<i64>> = rows(step, "labels")?;
        let batch = Batch::from_rows(&ids, &labels, 0, &Device::Cpu).map_err(|e| e.to_string())?;
        if batch.input_ids.dims()[1] != ids[0].len() || ids.iter().any(|r| r.len() != ids[0].len()) {
            return Err("train_step rows have different lengths".into());
        }
        let hyper = field(step, "hyper")?.clone();
        let mut losses = HashMap::new();
        for kind in ["adamw", "lion"] {
            losses.insert(kind.to_string(), number(step, &format!("loss_{kind}"))?);
        }
        let target = field(&hyper, "target")?;
        let target_modules = match target {
            Value::String(s) => vec![s.clone()],
            other => serde_json::from_value(other.clone()).map_err(|e| format!("`target`: {e}"))?,
        };
        let config = LoraConfig {
            r: number(&hyper, "lora_r")? as usize,
            alpha: number(&hyper, "lora_alpha")?,
            target_modules,
            use_rslora: false,
        };
        let tensors = candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu)
            .map_err(|e| format!("expected.safetensors: {e}"))?;
        Ok(Self {
            batch,
            hyper,
            losses,
            tensors,
            config,
        })
    }

    fn with_prefix(&self, prefix: &str) -> HashMap<String, Tensor> {
        self.tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_string(), v.clone())))
            .collect()
    }

    fn optimizer(&self, kind: &str) -> Result<OptimizerConfig, String> {
        let h = &self.hyper;
        let lr = number(h, "lr")?;
        let weight_decay = number(h, "weight_decay")?;
        Ok(match kind {
            "adamw" => {
                let (beta1, beta2) = pair(h, "adamw_betas")?;
                OptimizerConfig::AdamW {
                    lr,
                    beta1,
                    beta2,
                    eps: number(h, "adamw_eps")?,
                    weight_decay,
                }
            }
            _ => {
                let (beta1, beta2) = pair(h, "lion_betas")?;
                OptimizerConfig::Lion {
                    lr,
                    beta1,
                    beta2,
                    weight_decay,
                }
            }
        })
    }

    fn check(&self, dir: &Path, kind: &str) -> Result<(), String> {
        let init = self.with_prefix("train.init.");
        if init.is_empty() {
            return Err("expected.safetensors has no train.init.* tensors".into());
        }
        let mut model = Model::load(dir, &LoadOptions::default()).map_err(|e| e.to_string())?;
        let params = LoraParams::from_tensors(self.config.clone(), &init, &Device::Cpu).map_err(|e| e.to_string())?;
        let settings = TrainSettings {
            optimizer: self.optimizer(kind)?,
            schedule: LrSchedule::constant(),
            max_grad_norm: None,
        };
        let mut trainer = LoraTrainer::new(&mut model, "train", params, settings).map_err(|e| e.to_string())?;
        let (loss, mut grads) = trainer.gradients(&model, &self.batch).map_err(|e| e.to_string())?;
        let want = self.losses[kind];
        let rel = (loss as f64 - want).abs() / want.abs().max(1e-12);
        if rel > TOL {
            return Err(format!("loss {loss} vs {want} (relative error {rel:.2e})"));
        }
        let mut worst = (0f64, String::new());
        for (name, expected) in self.with_prefix("train.grad.") {
            let var = trainer.params().get(&name).ok_or_else(|| format!("no parameter {name}"))?;
            let got = grads.get(var.as_tensor()).ok_or_else(|| format!("no gradient for {name}"))?;
            compare(&format!("grad {name}"), got, &expected, &mut worst)?;
        }
        trainer.apply(&mut grads).map_err(|e| e.to_string())?;
        let after = self.with_prefix(&format!("train.after_{kind}."));
        if after.is_empty() {
            return Err(format!("expected.safetensors has no train.after_{kind}.* tensors"));
        }
        for (name, expected) in after {
            let var = trainer.params().get(&name).ok_or_else(|| format!("no parameter {name}"))?;
            compare(&format!("after {name}"), var.as_tensor(), &expected, &mut worst)?;
        }
        println!("       {kind}: loss {loss:.6} (want {want:.6}); worst tensor error {:.2e} at {}", worst.0, worst.1);
        Ok(())
    }
}

impl Fixture {
    fn check_save_reload(&self, dir: &Path) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let mut model = Model::load(dir, &LoadOptions::default()).map_err(|e| err(&e))?;
        let params =
            LoraParams::from_tensors(self.config.clone(), &self.with_prefix("train.init."), &Device::Cpu).map_err(|e| err(&e))?;
        let settings = TrainSettings {
            optimizer: self.optimizer("lion")?,
            schedule: LrSchedule::constant(),
            max_grad_norm: Some(1.0),
        };
        let mut trainer = LoraTrainer::new(&mut model, "train", params, settings).map_err(|e| err(&e))?;
        trainer.step(&model, &self.batch).map_err(|e| err(&e))?;
        let out = tempfile::tempdir().map_err(|e| err(&e))?;
        trainer.params().save_peft(out.path(), "fixture").map_err(|e| err(&e))?;
        model.load_lora("saved", out.path()).map_err(|e| err(&e))?;
        let trained = model.forward_batch(&self.batch.input_ids, Some("train")).map_err(|e| err(&e))?;
        let saved = model.forward_batch(&self.batch.input_ids, Some("saved")).map_err(|e| err(&e))?;
        let base = model.forward_batch(&self.batch.input_ids, None).map_err(|e| err(&e))?;
        // The trainable forward takes differentiable compositions of basic ops, inference the
        // fused kernels: the two agree to rounding (a few 1e-5 on logits spread near 8).
        let diff = max_abs_diff(&trained, &saved)?;
        if diff > LOGITS_TOL {
            return Err(format!("reloaded adapter's logits differ by {diff:.2e}"));
        }
        if max_abs_diff(&trained, &base)? < 1e-3 {
            return Err("the adapter does not change the logits at all".into());
        }
        Ok(())
    }

    fn check_resume(&self, dir: &Path) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let mut model = Model::load(dir, &LoadOptions::default()).map_err(|e| err(&e))?;
        let init = self.with_prefix("train.init.");
        let settings = TrainSettings {
            optimizer: self.optimizer("adamw")?,
            schedule: LrSchedule { kind: ScheduleKind::Cosine, warmup_steps: 1, total_steps: 4 },
            max_grad_norm: Some(1.0),
        };
        let run = |model: &mut Model, name: &str| -> Result<LoraTrainer, String> {
            let params = LoraParams::from_tensors(self.config.clone(), &init, &Device::Cpu).map_err(|e| err(&e))?;
            LoraTrainer::new(model, name, params, settings.clone()).map_err(|e| err(&e))
        };
        let mut straight = run(&mut model, "straight")?;
        let mut stopped = run(&mut model, "stopped")?;
        for _ in 0..2 {
            straight.step(&model, &self.batch).map_err(|e| err(&e))?;
            stopped.step(&model, &self.batch).map_err(|e| err(&e))?;
        }
        let out = tempfile::tempdir().map_err(|e| err(&e))?;
        stopped.save_checkpoint(out.path(), "fixture").map_err(|e| err(&e))?;
        drop(stopped);
        let mut resumed = LoraTrainer::resume(&mut model, "resumed", out.path()).map_err(|e| err(&e))?;
        if resumed.steps_done() != 2 {
            return Err(format!("resumed at step {}, expected 2", resumed.steps_done()));
        }
        // A damaged checkpoint is refused with a message naming what is wrong.
        let damaged = tempfile::tempdir().map_err(|e| err(&e))?;
        for f in ["adapter_config.json", "adapter_model.safetensors", "trainer_state.json"] {
            std::fs::copy(out.path().join(f), damaged.path().join(f)).map_err(|e| err(&e))?;
        }
        std::fs::write(damaged.path().join("optimizer.safetensors"), b"not a tensor file").map_err(|e| err(&e))?;
        match LoraTrainer::resume(&mut model, "damaged", damaged.path()) {
            Ok(_) => return Err("a checkpoint with a corrupt optimizer file was accepted".into()),
            Err(e) if e.to_string().contains("optimizer.safetensors") => {}
            Err(e) => return Err(format!("unhelpful error for a corrupt checkpoint: {e}")),
        }
        for _ in 0..2 {
            let a = straight.step(&model, &self.batch).map_err(|e| err(&e))?;
            let b = resumed.step(&model, &self.batch).map_err(|e| err(&e))?;
            if a.lr != b.lr {
                return Err(format!("learning rate {} after resuming, {} without", b.lr, a.lr));
            }
        }
        for (name, var) in straight.params().iter() {
            let other = resumed.params().get(name).ok_or_else(|| format!("resumed run lacks {name}"))?;
            let d = max_abs_diff(var.as_tensor(), other.as_tensor())?;
            if d > 1e-6 {
                return Err(format!("{name} differs by {d:.2e} after resuming"));
            }
        }
        Ok(())
    }

    fn check_fresh(&self, dir: &Path) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let mut model = Model::load(dir, &LoadOptions::default()).map_err(|e| err(&e))?;
        let params = LoraParams::init(&model, self.config.clone(), 1).map_err(|e| err(&e))?;
        let again = LoraParams::init(&model, self.config.clone(), 1).map_err(|e| err(&e))?;
        for ((name, a), (_, b)) in params.iter().zip(again.iter()) {
            if max_abs_diff(a.as_tensor(), b.as_tensor())? != 0.0 {
                return Err(format!("same seed gave different {name}"));
            }
        }
        let settings = TrainSettings {
            optimizer: self.optimizer("lion")?,
            schedule: LrSchedule::constant(),
            max_grad_norm: Some(1.0),
        };
        let mut trainer = LoraTrainer::new(&mut model, "fresh", params, settings).map_err(|e| err(&e))?;
        let with = model.forward_batch(&self.batch.input_ids, Some("fresh")).map_err(|e| err(&e))?;
        let base = model.forward_batch(&self.batch.input_ids, None).map_err(|e| err(&e))?;
        let diff = max_abs_diff(&with, &base)?;
        if diff > LOGITS_TOL {
            return Err(format!("a fresh adapter (B = 0) changes the logits by {diff:.2e}"));
        }
        // Accumulating two copies of a batch gives that batch's gradients.
        let (single_loss, single) = trainer.gradients(&model, &self.batch).map_err(|e| err(&e))?;
        let pair = [self.batch.clone(), self.batch.clone()];
        let (acc_loss, acc) = trainer.accumulated_gradients(&model, &pair).map_err(|e| err(&e))?;
        if (single_loss - acc_loss).abs() > 1e-5 * single_loss.abs() {
            return Err(format!("accumulated loss {acc_loss} vs {single_loss}"));
        }
        for (name, var) in trainer.params().iter() {
            let (Some(a), Some(b)) = (single.get(var.as_tensor()), acc.get(var.as_tensor())) else {
                return Err(format!("no gradient for {name}"));
            };
            let d = max_abs_diff(a, b)?;
            if d > 1e-6 {
                return Err(format!("accumulated gradient of {name} differs by {d:.2e}"));
            }
        }
        let mut losses = Vec::new();
        for _ in 0..4 {
            losses.push(trainer.step(&model, &self.batch).map_err(|e| err(&e))?.loss);
        }
        let last = trainer.loss(&model, &self.batch).map_err(|e| err(&e))?;
        let last = last.to_scalar::<f32>().map_err(|e| err(&e))?;
        if last.is_nan() || last >= losses[0] {
            return Err(format!("loss did not fall over 4 steps: {losses:?} then {last}"));
        }
        println!("       fresh LoRA losses {losses:?} then {last}");
        Ok(())
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64, String> {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_dtype(candle_core::DType::F64))
        .and_then(|d| d.to_scalar::<f64>())
        .map_err(|e| e.to_string())
}

/// Every element within `TOL·(1 + |expected|)`; records the worst error.
fn compare(what: &str, got: &Tensor, expected: &Tensor, worst: &mut (f64, String)) -> Result<(), String> {
    if got.dims() != expected.dims() {
        return Err(format!("{what}: shape {:?} vs {:?}", got.dims(), expected.dims()));
    }
    let flat = |t: &Tensor| -> Result<Vec<f32>, String> {
        t.to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| e.to_string())
    };
    let (g, e) = (flat(got)?, flat(expected)?);
    for (i, (a, b)) in g.iter().zip(&e).enumerate() {
        let err = (*a as f64 - *b as f64).abs();
        if err > worst.0 {
            *worst = (err, what.to_string());
        }
        if err.is_nan() || err > TOL * (1.0 + (*b as f64).abs()) {
            return Err(format!("{what}: element {i} is {a}, expected {b} (error {err:.2e})"));
        }
    }
    Ok(())
}
