//! One LoRA training step over a frozen base: forward, loss, backward, clipping, update.
use super::lora::LoraParams;
use super::loss::{causal_lm_loss, IGNORE_INDEX};
use super::optim::{clip_grad_norm, global_grad_norm, LrSchedule, OptimizerConfig, TrainOptimizer};
use super::TrainError;
use crate::model::Model;
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};

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

/// Trains one LoRA adapter registered with a model; the base weights stay frozen.
pub struct LoraTrainer {
    params: LoraParams,
    adapter: String,
    optimizer: TrainOptimizer,
    settings: TrainSettings,
    step: usize,
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

    /// The loss of a batch with the current parameters (a graph that can be back-propagated).
    pub fn loss(&self, model: &Model, batch: &Batch) -> Result<Tensor, TrainError> {
        let logits = model.forward_batch(&batch.input_ids, Some(&self.adapter))?;
        causal_lm_loss(&logits, &batch.labels)
    }

    /// Loss and gradients of a batch, without updating anything.
    pub fn gradients(&self, model: &Model, batch: &Batch) -> Result<(f32, GradStore), TrainError> {
        let loss = self.loss(model, batch)?;
        let value = loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(TrainError::NonFiniteLoss(value));
        }
        Ok((value, loss.backward()?))
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
