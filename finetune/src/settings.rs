//! Settings of a fine-tuning job; defaults are the DoctorGLM paper's.
use crate::error::{FinetuneError, Result};
use crate::probe::ProbeQuestion;
use doctorglm_models::train::{LrSchedule, OptimizerConfig, ScheduleKind, TrainSettings};
use doctorglm_models::LoraConfig;
use serde::{Deserialize, Serialize};

/// Which optimizer updates the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Lion (the paper's choice).
    Lion,
    /// AdamW (PyTorch semantics).
    AdamW,
}

/// Everything that decides how a job trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneSettings {
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha.
    pub alpha: f64,
    /// Module names the adapter targets.
    pub target_modules: Vec<String>,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (gradient accumulation).
    pub grad_accum: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Stop after this many optimizer steps even if epochs remain.
    pub max_steps: Option<usize>,
    /// Most prompt tokens (longer prompts keep their start markers and their end).
    pub max_source: usize,
    /// Most answer tokens, the end token included.
    pub max_target: usize,
    /// Learning-rate schedule shape.
    pub schedule: ScheduleKind,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Clip gradients to this global norm.
    pub max_grad_norm: Option<f64>,
    /// Evaluate (validation loss and probe) every this many steps; 0 = only at the end.
    pub eval_every: usize,
    /// Stop after this many evaluations without improvement; `None` = never stop early.
    pub patience: Option<usize>,
    /// An evaluation improves when the loss falls by more than this.
    pub min_delta: f64,
    /// Write a resumable checkpoint every this many steps (and at each evaluation); 0 = only at evaluations and the end.
    pub checkpoint_every: usize,
    /// Validate on at most this many validation examples (all when `None`).
    pub eval_max_examples: Option<usize>,
    /// Seed of the adapter's initialisation and of the data order.
    pub seed: u64,
    /// General questions answered at each evaluation.
    pub probe: Vec<ProbeQuestion>,
    /// Most tokens of a probe answer.
    pub probe_max_tokens: usize,
}

impl Default for FinetuneSettings {
    fn default() -> Self {
        Self {
            optimizer: OptimizerKind::Lion,
            lr: 2e-5,
            weight_decay: 0.0,
            rank: 8,
            alpha: 16.0,
            target_modules: vec!["query_key_value".into()],
            batch_size: 4,
            grad_accum: 1,
            epochs: 1,
            max_steps: None,
            max_source: 512,
            max_target: 100,
            schedule: ScheduleKind::Constant,
            warmup_steps: 0,
            max_grad_norm: Some(1.0),
            eval_every: 100,
            patience: Some(3),
            min_delta: 0.0,
            checkpoint_every: 50,
            eval_max_examples: Some(200),
            seed: 42,
            probe: ProbeQuestion::defaults(),
            probe_max_tokens: 32,
        }
    }
}

impl FinetuneSettings {
    /// Checks ranges; the error names the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(FinetuneError::Settings(m.to_string()));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("the learning rate must be a positive number");
        }
        if self.rank == 0 {
            return bad("the LoRA rank must be at least 1");
        }
        if self.batch_size == 0 || self.grad_accum == 0 {
            return bad("batch size and gradient accumulation must be at least 1");
        }
        if self.epochs == 0 {
            return bad("train for at least one epoch");
        }
        if self.max_source < 4 || self.max_target < 2 {
            return bad("max source must be at least 4 tokens and max target at least 2");
        }
        if self.target_modules.is_empty() {
            return bad("name at least one target module (e.g. query_key_value)");
        }
        Ok(())
    }

    /// The adapter's LoRA settings.
    pub fn lora_config(&self) -> LoraConfig {
        LoraConfig { r: self.rank, alpha: self.alpha, target_modules: self.target_modules.clone(), use_rslora: false }
    }

    /// The engine's per-step settings for a run of `total_steps`.
    pub fn train_settings(&self, total_steps: usize) -> TrainSettings {
        let optimizer = match self.optimizer {
            OptimizerKind::Lion => OptimizerConfig::Lion { lr: self.lr, beta1: 0.9, beta2: 0.99, weight_decay: self.weight_decay },
            OptimizerKind::AdamW => {
                OptimizerConfig::AdamW { lr: self.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: self.weight_decay }
            }
        };
        TrainSettings {
            optimizer,
            schedule: LrSchedule { kind: self.schedule, warmup_steps: self.warmup_steps, total_steps },
            max_grad_norm: self.max_grad_norm,
        }
    }

    /// The settings a resumed run must share with the run it continues (they fix the
    /// adapter's shape and the data order), as a comparable string.
    pub fn resume_fingerprint(&self) -> String {
        format!(
            "{:?}|r{}|a{}|{:?}|b{}|acc{}|src{}|tgt{}|seed{}",
            self.optimizer, self.rank, self.alpha, self.target_modules, self.batch_size, self.grad_accum, self.max_source,
            self.max_target, self.seed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_papers() {
        let s = FinetuneSettings::default();
        assert_eq!((s.optimizer, s.lr, s.rank, s.alpha, s.batch_size, s.epochs), (OptimizerKind::Lion, 2e-5, 8, 16.0, 4, 1));
        assert_eq!((s.max_source, s.max_target, s.warmup_steps, s.weight_decay), (512, 100, 0, 0.0));
        assert_eq!(s.target_modules, vec!["query_key_value".to_string()]);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn bad_settings_are_named() {
        let s = FinetuneSettings { rank: 0, ..Default::default() };
        assert!(s.validate().unwrap_err().to_string().contains("rank"));
        let s = FinetuneSettings { lr: f64::NAN, ..Default::default() };
        assert!(s.validate().unwrap_err().to_string().contains("learning rate"));
    }
}
