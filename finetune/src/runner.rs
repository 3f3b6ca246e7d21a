//! The job: load the base model, tokenize, train with the engine's [`LoraTrainer`], evaluate on
//! a schedule with the probe, stop early, keep the best adapter, checkpoint and resume.
use crate::batches::{epoch_order, make_batch, steps_per_epoch};
use crate::checkpoint::{self, EvalRecord, RunnerState, StepRecord};
use crate::encode::{encode_all, Example};
use crate::error::{io_err, FinetuneError, Result};
use crate::events::{Event, JobControl};
use crate::probe::run_probe;
use crate::settings::FinetuneSettings;
use crate::summary::{DatasetRef, SourceRef, TrainingSummary, SUMMARY_FILE};
use doctorglm_datasets::prepared::PreparedDataset;
use doctorglm_datasets::Dialogue;
use doctorglm_models::tokenizer::Tokenizer;
use doctorglm_models::train::{LoraParams, LoraTrainer};
use doctorglm_models::{LoadOptions, Model};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The adapter name the trainer registers with the model.
pub const ADAPTER_NAME: &str = "finetune";
/// Folder (in the output folder) of the adapter with the lowest validation loss.
pub const BEST_DIR: &str = "best";
/// Folder of the adapter to use: the best one, or the last one without validation.
pub const ADAPTER_DIR: &str = "adapter";

/// The dialogues to train and validate on.
#[derive(Debug, Clone, Default)]
pub struct TrainingData {
    /// Training dialogues.
    pub train: Vec<Dialogue>,
    /// Validation dialogues (may be empty: no validation loss, no early stopping).
    pub validation: Vec<Dialogue>,
    /// Where they came from, for the summary.
    pub dataset: Option<DatasetRef>,
}

impl TrainingData {
    /// The dialogues of a prepared dataset, with a reference to its manifest.
    pub fn from_prepared(ds: &PreparedDataset, dir: Option<&Path>) -> Self {
        let dataset = DatasetRef {
            dir: dir.map(|d| d.display().to_string()),
            sources: ds.manifest.sources.iter().map(|s| SourceRef { name: s.name.clone(), sha256: s.sha256.clone() }).collect(),
            train: ds.manifest.train,
            validation: ds.manifest.validation,
            deidentified: ds.manifest.deid.applied,
        };
        Self { train: ds.train.clone(), validation: ds.validation.clone(), dataset: Some(dataset) }
    }

    /// Reads a prepared dataset folder (`train.jsonl`, `validation.jsonl`, `manifest.json`).
    pub fn read_prepared(dir: &Path) -> Result<Self> {
        let ds = PreparedDataset::read(dir)?;
        Ok(Self::from_prepared(&ds, Some(dir)))
    }
}

/// A fine-tuning job.
#[derive(Debug, Clone)]
pub struct FinetuneJob {
    /// The base model folder (config, weights, tokenizer).
    pub model_dir: PathBuf,
    /// Output folder: `adapter/`, `best/`, `checkpoints/`, `training_summary.json`.
    pub out_dir: PathBuf,
    /// The data.
    pub data: TrainingData,
    /// The settings.
    pub settings: FinetuneSettings,
    /// Continue from the output folder's latest checkpoint when there is one.
    pub resume: bool,
    /// Device of the base model (its dtype follows `settings.dtype`; a quantized base computes in f32).
    pub load: LoadOptions,
}

/// Why a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// All planned steps ran.
    Completed,
    /// Validation loss stopped improving for `patience` evaluations.
    EarlyStopped,
    /// The control handle cancelled it (a checkpoint was written; resume continues).
    Cancelled,
}

/// The result of a job.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Why it ended.
    pub reason: StopReason,
    /// The first step this run did, minus one (the checkpoint step when resumed).
    pub start_step: usize,
    /// Steps done in all.
    pub steps: usize,
    /// The adapter to use.
    pub adapter_dir: PathBuf,
    /// Best validation loss and its step.
    pub best: Option<(usize, f64)>,
    /// The full summary (also written to `training_summary.json`).
    pub summary: TrainingSummary,
}

/// Validation loss: the mean over scored tokens of the per-batch losses (weighted by targets).
fn validation_loss(model: &Model, trainer: &LoraTrainer, examples: &[Example], batch_size: usize, pad: u32) -> Result<Option<f64>> {
    let mut total = 0f64;
    let mut weight = 0f64;
    for chunk in examples.chunks(batch_size) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let batch = make_batch(&refs, pad, model.device())?;
        let loss = trainer.loss(model, &batch)?.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let w = chunk.iter().map(|e| e.targets()).sum::<usize>() as f64;
        total += loss as f64 * w;
        weight += w;
    }
    Ok((weight > 0.0).then(|| total / weight))
}

/// The pad id: the tokenizer's first end token (padding is never scored).
fn pad_id(tok: &Tokenizer) -> u32 {
    tok.special_tokens().eos.first().copied().unwrap_or(0)
}

/// Saves the trainer's current adapter as the output's `dir_name` folder, atomically.
fn save_adapter_as(trainer: &LoraTrainer, out: &Path, dir_name: &str, base: &str) -> Result<PathBuf> {
    let staging = out.join(format!("{dir_name}.staging"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
    }
    trainer.params().save_peft(&staging, base)?;
    let dst = out.join(dir_name);
    checkpoint::publish_adapter(&staging, &dst)?;
    std::fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
    Ok(dst)
}

/// Loads the base model as the settings ask: in the compute dtype on the job's device, or with
/// its linear weights quantized as they are read (never a full-precision copy; on a GPU the
/// blocks are uploaded and dequantized per product while training).
fn load_base(job: &FinetuneJob) -> doctorglm_models::Result<Model> {
    let s = &job.settings;
    match s.base_quantization.format() {
        Some(format) => {
            let quant = doctorglm_models::QuantizeOptions { device: job.load.device.clone(), ..doctorglm_models::QuantizeOptions::new(format, None) };
            let (model, _) = Model::load_quantized(&job.model_dir, &quant, &|_, _| {}, &std::sync::atomic::AtomicBool::new(false))?;
            Ok(model)
        }
        None => {
            let load = LoadOptions { dtype: s.dtype.resolve(&job.load.device), device: job.load.device.clone() };
            Model::load(&job.model_dir, &load)
        }
    }
}

/// Runs a job to its end (all steps, early stop or cancel), calling `on_event` as it goes.
/// Check `control` from any thread to pause, resume or cancel.
pub fn run(job: &FinetuneJob, control: &JobControl, mut on_event: impl FnMut(&Event)) -> Result<Outcome> {
    let s = &job.settings;
    s.validate()?;
    let out = &job.out_dir;
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let model_err = |message: String| FinetuneError::Model { dir: job.model_dir.clone(), message };
    let tok = Tokenizer::load(&job.model_dir).map_err(|e| model_err(e.to_string()))?;
    let mut model = load_base(job).map_err(|e| model_err(e.to_string()))?;
    let base = job.model_dir.display().to_string();
    let pad = pad_id(&tok);

    let (train, skipped_train) = encode_all(&tok, &job.data.train, s.max_source, s.max_target);
    let (mut validation, skipped_val) = encode_all(&tok, &job.data.validation, s.max_source, s.max_target);
    if let Some(cap) = s.eval_max_examples {
        validation.truncate(cap);
    }
    if train.is_empty() {
        return Err(FinetuneError::NoData(format!(
            "{} training dialogues, none with a non-empty answer",
            job.data.train.len()
        )));
    }
    let per_epoch = steps_per_epoch(train.len(), s.batch_size, s.grad_accum);
    let mut total_steps = per_epoch * s.epochs;
    if let Some(max) = s.max_steps {
        total_steps = total_steps.min(max);
    }

    let resumed = if job.resume { checkpoint::latest(out)? } else { None };
    let (mut trainer, mut state) = match resumed {
        Some((dir, state)) => {
            if state.fingerprint != s.resume_fingerprint() {
                return Err(FinetuneError::Checkpoint {
                    dir,
                    reason: format!(
                        "it was made with other settings ({}); this run has {}",
                        state.fingerprint,
                        s.resume_fingerprint()
                    ),
                });
            }
            let trainer = LoraTrainer::resume(&mut model, ADAPTER_NAME, &dir)?;
            if trainer.steps_done() != state.step {
                return Err(FinetuneError::Checkpoint {
                    dir,
                    reason: format!("the trainer is at step {} but the runner at {}", trainer.steps_done(), state.step),
                });
            }
            (trainer, state)
        }
        None => {
            let baseline_probe = if s.probe.is_empty() {
                Vec::new()
            } else {
                run_probe(&model, &tok, &s.probe, None, s.probe_max_tokens, None)?
            };
            let params = LoraParams::init(&model, s.lora_config(), s.seed)?;
            let trainer = LoraTrainer::new(&mut model, ADAPTER_NAME, params, s.train_settings(total_steps))?;
            let state = RunnerState {
                step: 0,
                epoch: 0,
                position: 0,
                seed: s.seed,
                fingerprint: s.resume_fingerprint(),
                best: None,
                evals_without_improvement: 0,
                steps: Vec::new(),
                evals: Vec::new(),
                baseline_probe,
                tokens_seen: 0,
            };
            (trainer, state)
        }
    };
    trainer.set_gradient_checkpointing(s.gradient_checkpointing);
    let start_step = state.step;
    on_event(&Event::Started {
        total_steps,
        start_step,
        train_examples: train.len(),
        validation_examples: validation.len(),
        skipped: skipped_train + skipped_val,
    });
    tracing::info!(total_steps, start_step, train = train.len(), validation = validation.len(), "fine-tuning starts");

    let mut order = epoch_order(train.len(), state.seed, state.epoch);
    let mut order_epoch = state.epoch;
    let mut reason = StopReason::Completed;
    let mut step_secs: Option<f64> = None;
    let mut tokens_per_sec = 0f64;
    let mut last_checkpoint = state.step;

    while state.step < total_steps {
        if control.is_paused() && !control.is_cancelled() {
            on_event(&Event::Paused);
            while control.is_paused() && !control.is_cancelled() {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !control.is_cancelled() {
                on_event(&Event::Resumed);
            }
        }
        if control.is_cancelled() {
            reason = StopReason::Cancelled;
            break;
        }
        let started = Instant::now();
        // Gather the micro-batches of one step; an epoch's last step may be smaller.
        let mut micro = Vec::with_capacity(s.grad_accum);
        let mut tokens = 0u64;
        for k in 0..s.grad_accum {
            if state.position >= train.len() {
                if k > 0 {
                    break;
                }
                state.epoch += 1;
                state.position = 0;
            }
            if order_epoch != state.epoch {
                order = epoch_order(train.len(), state.seed, state.epoch);
                order_epoch = state.epoch;
            }
            let end = (state.position + s.batch_size).min(train.len());
            let rows: Vec<&Example> = order[state.position..end].iter().map(|&i| &train[i]).collect();
            tokens += rows.iter().map(|e| e.ids.len() as u64).sum::<u64>();
            micro.push(make_batch(&rows, pad, model.device())?);
            state.position = end;
        }
        let (loss, mut grads) = trainer.accumulated_gradients(&model, &micro)?;
        let (grad_norm, lr) = trainer.apply(&mut grads)?;
        state.step = trainer.steps_done();
        state.tokens_seen += tokens;
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        step_secs = Some(match step_secs {
            None => secs,
            Some(avg) => 0.9 * avg + 0.1 * secs,
        });
        tokens_per_sec = if tokens_per_sec == 0.0 { tokens as f64 / secs } else { 0.9 * tokens_per_sec + 0.1 * tokens as f64 / secs };
        let eta_secs = step_secs.unwrap_or(secs) * (total_steps - state.step) as f64;
        state.steps.push(StepRecord { step: state.step, epoch: state.epoch, loss, lr, grad_norm });
        on_event(&Event::Step { step: state.step, total_steps, epoch: state.epoch, loss, lr, tokens_per_sec, eta_secs });

        let last = state.step >= total_steps;
        let evaluate = (s.eval_every > 0 && state.step % s.eval_every == 0) || last;
        let mut stop_early = false;
        if evaluate {
            let val = validation_loss(&model, &trainer, &validation, s.batch_size, pad)?;
            let probe = if s.probe.is_empty() {
                Vec::new()
            } else {
                run_probe(&model, &tok, &s.probe, Some(ADAPTER_NAME), s.probe_max_tokens, Some(&state.baseline_probe))?
            };
            let collapse = probe.iter().any(|p| !p.collapse.is_empty());
            if collapse {
                tracing::warn!(step = state.step, "a probe answer looks collapsed");
            }
            let mut best = false;
            if let Some(v) = val {
                if state.best.is_none_or(|(_, b)| v < b - s.min_delta) {
                    state.best = Some((state.step, v));
                    state.evals_without_improvement = 0;
                    save_adapter_as(&trainer, out, BEST_DIR, &base)?;
                    best = true;
                } else {
                    state.evals_without_improvement += 1;
                    if s.patience.is_some_and(|p| state.evals_without_improvement >= p) {
                        stop_early = true;
                    }
                }
            }
            state.evals.push(EvalRecord { step: state.step, validation_loss: val, probe: probe.clone(), collapse });
            on_event(&Event::Evaluation { step: state.step, validation_loss: val, best, probe, collapse });
        }
        let periodic = s.checkpoint_every > 0 && state.step % s.checkpoint_every == 0;
        if periodic || evaluate || last || stop_early {
            let dir = checkpoint::save(out, &trainer, &base, &state)?;
            last_checkpoint = state.step;
            on_event(&Event::Checkpoint { step: state.step, dir });
        }
        if stop_early {
            tracing::info!(step = state.step, best = ?state.best, "early stop: validation loss no longer improves");
            reason = StopReason::EarlyStopped;
            break;
        }
    }
    if last_checkpoint != state.step {
        let dir = checkpoint::save(out, &trainer, &base, &state)?;
        on_event(&Event::Checkpoint { step: state.step, dir });
    }

    // The adapter to use: the best by validation loss, else the last.
    let adapter_dir = out.join(ADAPTER_DIR);
    let best_dir = out.join(BEST_DIR);
    if state.best.is_some() && best_dir.join("adapter_model.safetensors").exists() {
        checkpoint::publish_adapter(&best_dir, &adapter_dir)?;
    } else {
        save_adapter_as(&trainer, out, ADAPTER_DIR, &base)?;
    }
    let reason_text = match reason {
        StopReason::Completed => "completed",
        StopReason::EarlyStopped => "early_stopped",
        StopReason::Cancelled => "cancelled",
    };
    let summary = TrainingSummary {
        base_model: base.clone(),
        dataset: job.data.dataset.clone(),
        settings: s.clone(),
        stop_reason: reason_text.into(),
        steps: state.step,
        total_steps,
        best: state.best,
        train_examples: train.len(),
        skipped: skipped_train + skipped_val,
        tokens_seen: state.tokens_seen,
        history: state.steps.clone(),
        evaluations: state.evals.clone(),
        collapse_seen: state.evals.iter().any(|e| e.collapse),
        adapter: ADAPTER_DIR.into(),
    };
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| io_err(out)(std::io::Error::other(e)))?;
    checkpoint::write_atomic(&out.join(SUMMARY_FILE), &json)?;
    Ok(Outcome { reason, start_step, steps: state.step, adapter_dir, best: state.best, summary })
}
