//! One LoRA training step over a frozen base: forward, loss, backward, clipping, update.
use super::lora::LoraParams;
use super::loss::{cross_entropy, scored_positions, IGNORE_INDEX};
use super::optim::{clip_grad_norm, global_grad_norm, LrSchedule, OptimizerConfig, OptimizerState, TrainOptimizer};
use super::TrainError;
use crate::model::Model;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// File of a checkpoint holding the optimizer's moments.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// File of a checkpoint holding the step count, the settings and the parameter order.
pub const STATE_FILE: &str = "trainer_state.json";

/// What `trainer_state.json` holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedState {
    steps: usize,
    settings: TrainSettings,
    parameters: Vec<String>,
}

/// A batch of token ids `[b, seq]` (u32) and labels `[b, seq]` (i64, -100 = not scored).
#[derive(Debug, Clone)]
pub struct Batch {
    /// Token ids.
    pub input_ids: Tensor,
    /// Labels, aligned with the ids (the loss shifts them).
    pub labels: Tensor,
}

impl Batch {
    /// Right-pads rows of ids and labels to the longest row (ids with `pad_id`, labels with
    /// -100). Each row's ids and labels must have the same length.
    pub fn from_rows(ids: &[Vec<u32>], labels: &[Vec<i64>], pad_id: u32, device: &Device) -> Result<Self, TrainError> {
        if ids.is_empty() || ids.len() != labels.len() {
            return Err(TrainError::Batch(format!(
                "{} rows of ids and {} rows of labels; need the same non-zero number",
                ids.len(),
                labels.len()
            )));
        }
        let seq = ids.iter().map(Vec::len).max().unwrap_or(0);
        if seq == 0 {
            return Err(TrainError::Batch("every row is empty".into()));
        }
        let mut flat_ids = Vec::with_capacity(ids.len() * seq);
        let mut flat_labels = Vec::with_capacity(ids.len() * seq);
        for (i, (row, lab)) in ids.iter().zip(labels).enumerate() {
            if row.len() != lab.len() {
                return Err(TrainError::Batch(format!(
                    "row {i} has {} ids but {} labels",
                    row.len(),
                    lab.len()
                )));
            }
            flat_ids.extend_from_slice(row);
            flat_ids.extend(std::iter::repeat_n(pad_id, seq - row.len()));
            flat_labels.extend_from_slice(lab);
            flat_labels.extend(std::iter::repeat_n(IGNORE_INDEX, seq - lab.len()));
        }
        Ok(Self {
            input_ids: Tensor::from_vec(flat_ids, (ids.len(), seq), device)?,
            labels: Tensor::from_vec(flat_labels, (ids.len(), seq), device)?,
        })
    }
}

/// Settings of a training run that the trainer applies per step.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSettings {
    /// Optimizer and its base learning rate.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule over the steps.
    pub schedule: LrSchedule,
    /// Clip gradients to this global L2 norm (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
}

impl TrainSettings {
    /// The DoctorGLM paper's settings: Lion at 2e-5, constant rate, clipping at 1.0.
    pub fn paper_default() -> Self {
        Self {
            optimizer: OptimizerConfig::paper_default(),
            schedule: LrSchedule::constant(),
            max_grad_norm: Some(1.0),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Loss of the batch before the update.
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used for the update.
    pub lr: f64,
    /// Steps done, this one included.
    pub step: usize,
}

/// The loss as an f32, or an error when it is NaN or infinite.
fn finite_loss(loss: &Tensor) -> Result<f32, TrainError> {
    let value = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    if !value.is_finite() {
        return Err(TrainError::NonFiniteLoss(value));
    }
    Ok(value)
}

/// A block's output as the next block's input under checkpointing: a copy that is a variable,
/// so that the next block runs the same (differentiable) kernels as without checkpointing and
/// the backward can ask for its gradient, while no graph reaches back into the block before.
fn block_input(out: &Tensor) -> Result<Tensor, TrainError> {
    Ok(candle_core::Var::from_tensor(&out.detach())?.as_tensor().clone())
}

/// Trains one LoRA adapter registered with a model; the base weights stay frozen.
pub struct LoraTrainer {
    params: LoraParams,
    adapter: String,
    optimizer: TrainOptimizer,
    settings: TrainSettings,
    step: usize,
    checkpointing: bool,
}

impl LoraTrainer {
    /// Registers `params` with `model` under `adapter` and sets up the optimizer.
    pub fn new(model: &mut Model, adapter: &str, params: LoraParams, settings: TrainSettings) -> Result<Self, TrainError> {
        params.attach(model, adapter)?;
        let optimizer = TrainOptimizer::new(params.vars(), &settings.optimizer)?;
        Ok(Self {
            params,
            adapter: adapter.to_string(),
            optimizer,
            settings,
            step: 0,
            checkpointing: false,
        })
    }

    /// The trainable parameters.
    pub fn params(&self) -> &LoraParams {
        &self.params
    }

    /// The adapter name the model knows the parameters by.
    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// Steps done so far.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// Turns gradient checkpointing on or off (off by default). On, the forward keeps only each
    /// block's input and the backward recomputes one block at a time: activation memory is one
    /// block's instead of every block's, for about one more forward pass of compute. Losses and
    /// gradients are the same either way (the same kernels run on the same values).
    pub fn set_gradient_checkpointing(&mut self, on: bool) {
        self.checkpointing = on;
    }

    /// Whether gradient checkpointing is on.
    pub fn gradient_checkpointing(&self) -> bool {
        self.checkpointing
    }

    /// The loss of a batch with the current parameters (a graph that can be back-propagated;
    /// with checkpointing on, only the part after the last block is a graph).
    ///
    /// The output layer runs on the scored positions only (the answer tokens), not on every
    /// position: with a 65k vocabulary it is most of the forward's work and memory otherwise.
    pub fn loss(&self, model: &Model, batch: &Batch) -> Result<Tensor, TrainError> {
        let adapter = Some(self.adapter.as_str());
        if self.checkpointing {
            let run = model.blockwise(&batch.input_ids, adapter)?;
            let mut x = run.embed()?;
            for i in 0..run.num_blocks() {
                x = block_input(&run.block(i, &x)?)?;
            }
            return self.head_loss(model, &run.finish(&x)?, batch);
        }
        let hidden = model.forward_batch_hidden(&batch.input_ids, adapter, None)?;
        self.head_loss(model, &hidden, batch)
    }

    /// The output layer on the scored positions of `hidden` `[b, seq, h]`, then the loss.
    fn head_loss(&self, model: &Model, hidden: &Tensor, batch: &Batch) -> Result<Tensor, TrainError> {
        let (b, seq, h) = hidden.dims3()?;
        let (rows, targets) = scored_positions(&batch.labels, b, seq, model.config().vocab_size)?;
        let picked = hidden.reshape((b * seq, h))?.index_select(&rows, 0)?.unsqueeze(0)?;
        let logits = model.output_logits(&picked, Some(self.adapter.as_str()))?.squeeze(0)?;
        cross_entropy(&logits, &targets)
    }

    /// Loss and gradients of a batch, without updating anything.
    pub fn gradients(&self, model: &Model, batch: &Batch) -> Result<(f32, GradStore), TrainError> {
        if self.checkpointing {
            return self.checkpointed_gradients(model, batch);
        }
        let loss = self.loss(model, batch)?;
        let value = finite_loss(&loss)?;
        Ok((value, loss.backward()?))
    }

    /// [`LoraTrainer::gradients`] with recomputation: a forward that keeps each block's input
    /// (as a fresh variable, so no graph links the blocks), the backward of the head, then for
    /// each block from the last: recompute it from its input and back-propagate the gradient
    /// of its output, which gives its LoRA parameters' gradients and its input's.
    fn checkpointed_gradients(&self, model: &Model, batch: &Batch) -> Result<(f32, GradStore), TrainError> {
        let run = model.blockwise(&batch.input_ids, Some(self.adapter.as_str()))?;
        let mut inputs = vec![run.embed()?];
        for i in 0..run.num_blocks() {
            let out = run.block(i, &inputs[i])?;
            inputs.push(block_input(&out)?);
        }
        let last = inputs.last().ok_or_else(|| TrainError::Batch("the model has no block".into()))?.clone();
        let loss = self.head_loss(model, &run.finish(&last)?, batch)?;
        let value = finite_loss(&loss)?;
        let mut grads = loss.backward()?;
        drop(loss);
        let vars = self.params.vars();
        let missing = || TrainError::Batch("no gradient reached a block's output".into());
        let mut upstream = grads.remove(&last).ok_or_else(missing)?;
        for i in (0..run.num_blocks()).rev() {
            let out = run.block(i, &inputs[i])?;
            let block_grads = (out * &upstream)?.sum_all()?.backward()?;
            for v in &vars {
                if let Some(g) = block_grads.get(v.as_tensor()) {
                    let sum = match grads.get(v.as_tensor()) {
                        Some(prev) => (prev + g)?,
                        None => g.clone(),
                    };
                    grads.insert(v.as_tensor(), sum);
                }
            }
            if i > 0 {
                upstream = block_grads.get(&inputs[i]).ok_or_else(missing)?.clone();
            }
        }
        Ok((value, grads))
    }

    /// Mean loss and mean gradients over micro-batches (gradient accumulation): one update
    /// from several batches that would not fit in memory together.
    pub fn accumulated_gradients(&self, model: &Model, batches: &[Batch]) -> Result<(f32, GradStore), TrainError> {
        let n = batches.len();
        if n == 0 {
            return Err(TrainError::Batch("no micro-batch to accumulate".into()));
        }
        let scale = 1.0 / n as f64;
        let vars = self.params.vars();
        let mut total_loss = 0f32;
        let mut acc: Option<GradStore> = None;
        for batch in batches {
            let (loss, grads) = self.gradients(model, batch)?;
            total_loss += loss;
            match acc.as_mut() {
                None => {
                    let mut first = grads;
                    for v in &vars {
                        if let Some(g) = first.remove(v.as_tensor()) {
                            first.insert(v.as_tensor(), (g * scale)?);
                        }
                    }
                    acc = Some(first);
                }
                Some(sum) => {
                    for v in &vars {
                        let Some(g) = grads.get(v.as_tensor()) else { continue };
                        let g = (g * scale)?;
                        let next = match sum.get(v.as_tensor()) {
                            Some(prev) => (prev + g)?,
                            None => g,
                        };
                        sum.insert(v.as_tensor(), next);
                    }
                }
            }
        }
        let grads = acc.ok_or_else(|| TrainError::Batch("no micro-batch to accumulate".into()))?;
        Ok((total_loss / n as f32, grads))
    }

    /// Applies gradients: clip (if set), schedule the rate, update. Returns the norm before
    /// clipping and the rate used.
    pub fn apply(&mut self, grads: &mut GradStore) -> Result<(f64, f64), TrainError> {
        let vars = self.params.vars();
        let norm = match self.settings.max_grad_norm {
            Some(max) => clip_grad_norm(&vars, grads, max)?,
            None => global_grad_norm(&vars, grads)?,
        };
        let lr = self.settings.schedule.lr(self.settings.optimizer.lr(), self.step);
        self.optimizer.set_learning_rate(lr);
        self.optimizer.step(grads)?;
        self.step += 1;
        Ok((norm, lr))
    }

    /// Writes a resumable checkpoint into `dir`: the adapter in PEFT format (usable as is),
    /// the optimizer's moments and the step count with the settings. Each file is written under
    /// a temporary name and renamed.
    pub fn save_checkpoint(&self, dir: &Path, base_model: &str) -> Result<(), TrainError> {
        self.params.save_peft(dir, base_model)?;
        let state = self.optimizer.state()?;
        let names: Vec<String> = self.params.iter().map(|(n, _)| n.clone()).collect();
        let suffixes = ["exp_avg", "exp_avg_sq"];
        let mut tensors = HashMap::new();
        for (name, moments) in names.iter().zip(&state.moments) {
            for (suffix, t) in suffixes.iter().zip(moments) {
                tensors.insert(format!("{name}.{suffix}"), t.to_device(&Device::Cpu)?);
            }
        }
        let saved = SavedState {
            steps: self.step,
            settings: self.settings.clone(),
            parameters: names,
        };
        let text = serde_json::to_string_pretty(&saved).map_err(|e| TrainError::Init(e.to_string()))?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TrainError::Io { path, source }
        };
        let tmp = dir.join(format!("{OPTIMIZER_FILE}.tmp"));
        candle_core::safetensors::save(&tensors, &tmp)?;
        let path = dir.join(OPTIMIZER_FILE);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        let path = dir.join(STATE_FILE);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        tracing::info!(dir = %dir.display(), step = self.step, "training checkpoint saved");
        Ok(())
    }

    /// Resumes from a checkpoint written by [`LoraTrainer::save_checkpoint`]: the adapter is
    /// registered with `model` as `adapter`, and the optimizer continues where it stopped (the
    /// same updates as a run that never stopped).
    pub fn resume(model: &mut Model, adapter: &str, dir: &Path) -> Result<Self, TrainError> {
        let bad = |reason: String| TrainError::Checkpoint { dir: dir.to_path_buf(), reason };
        let state_path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&state_path).map_err(|e| bad(format!("{STATE_FILE}: {e}")))?;
        let saved: SavedState = serde_json::from_str(&text).map_err(|e| bad(format!("{STATE_FILE}: {e}")))?;
        let peft = crate::lora::load_peft_adapter(dir, DType::F32, model.device())?;
        let params = LoraParams::from_tensors(peft.config, &peft.tensors, model.device())?;
        let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
        if names != saved.parameters {
            return Err(bad("the adapter's tensors do not match the saved parameter list".into()));
        }
        let mut moments_file = candle_core::safetensors::load(dir.join(OPTIMIZER_FILE), model.device())
            .map_err(|e| bad(format!("{OPTIMIZER_FILE}: {e}")))?;
        let per_param = match saved.settings.optimizer {
            OptimizerConfig::AdamW { .. } => ["exp_avg", "exp_avg_sq"].as_slice(),
            OptimizerConfig::Lion { .. } => ["exp_avg"].as_slice(),
        };
        let mut moments = Vec::with_capacity(names.len());
        for name in &names {
            let mut slots = Vec::new();
            for suffix in per_param {
                let key = format!("{name}.{suffix}");
                slots.push(moments_file.remove(&key).ok_or_else(|| bad(format!("{OPTIMIZER_FILE} lacks {key}")))?);
            }
            moments.push(slots);
        }
        let mut trainer = Self::new(model, adapter, params, saved.settings)?;
        trainer
            .optimizer
            .load_state(&OptimizerState { steps: saved.steps, moments })
            .map_err(|e| bad(e.to_string()))?;
        trainer.step = saved.steps;
        tracing::info!(dir = %dir.display(), step = saved.steps, "training resumed");
        Ok(trainer)
    }

    /// One full step on a batch: loss, backward, clip, update.
    pub fn step(&mut self, model: &Model, batch: &Batch) -> Result<StepStats, TrainError> {
        let (loss, mut grads) = self.gradients(model, batch)?;
        let (grad_norm, lr) = self.apply(&mut grads)?;
        tracing::debug!(step = self.step, loss, grad_norm, lr, "training step");
        Ok(StepStats {
            loss,
            grad_norm,
            lr,
            step: self.step,
        })
    }
}
