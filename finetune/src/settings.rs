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

/// How the frozen base weights are held while the adapter trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseQuantization {
    /// Full precision (the compute dtype).
    #[default]
    F32,
    /// Half floats (half of f32's memory, the checkpoint's own values for fp16 models; CPU).
    #[serde(rename = "f16")]
    F16,
    /// 8-bit blocks (about a quarter of f32's memory; CPU).
    #[serde(rename = "q8_0")]
    Q8_0,
    /// 4-bit blocks (about an eighth of f32's memory; CPU), as QLoRA trains over an INT4 base.
    #[serde(rename = "q4_0")]
    Q4_0,
}

impl BaseQuantization {
    /// The engine's weight format (`None` for a full-precision base).
    pub fn format(self) -> Option<doctorglm_models::quant::QuantFormat> {
        match self {
            BaseQuantization::F32 => None,
            BaseQuantization::F16 => Some(doctorglm_models::quant::QuantFormat::F16),
            BaseQuantization::Q8_0 => Some(doctorglm_models::quant::QuantFormat::Q8_0),
            BaseQuantization::Q4_0 => Some(doctorglm_models::quant::QuantFormat::Q4_0),
        }
    }
}

/// The dtype of the base weights and activations (the LoRA parameters and the optimizer's
/// state stay f32 whatever this says, as PEFT keeps them under mixed precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeDtype {
    /// bf16 on a CUDA device, f32 elsewhere.
    #[default]
    Auto,
    /// f32.
    F32,
    /// bf16 (mixed precision).
    Bf16,
}

impl ComputeDtype {
    /// The dtype on `device`.
    pub fn resolve(self, device: &candle_core::Device) -> candle_core::DType {
        match self {
            ComputeDtype::F32 => candle_core::DType::F32,
            ComputeDtype::Bf16 => candle_core::DType::BF16,
            ComputeDtype::Auto if device.is_cuda() => candle_core::DType::BF16,
            ComputeDtype::Auto => candle_core::DType::F32,
        }
    }
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
    /// How the frozen base is held: f32, or quantized to Q8_0/Q4_0 (less memory, CPU).
    #[serde(default)]
    pub base_quantization: BaseQuantization,
    /// Recompute each block's activations during the backward pass instead of keeping them
    /// (less memory, about one more forward pass of time).
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// Compute dtype of the base and the activations.
    #[serde(default)]
    pub dtype: ComputeDtype,
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
            base_quantization: BaseQuantization::F32,
            gradient_checkpointing: false,
            dtype: ComputeDtype::Auto,
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
        if self.base_quantization != BaseQuantization::F32 && self.dtype == ComputeDtype::Bf16 {
            return bad("a quantized base computes in f32; choose dtype f32 (or auto) with base quantization f16/q8_0/q4_0");
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
    fn memory_settings_parse_and_old_files_still_load() {
        let mut v = serde_json::to_value(FinetuneSettings::default()).unwrap();
        v["base_quantization"] = "q4_0".into();
        v["gradient_checkpointing"] = true.into();
        v["dtype"] = "bf16".into();
        let s: FinetuneSettings = serde_json::from_value(v).unwrap();
        assert_eq!((s.base_quantization, s.gradient_checkpointing, s.dtype), (BaseQuantization::Q4_0, true, ComputeDtype::Bf16));
        assert!(s.validate().unwrap_err().to_string().contains("quantized base"));
        // Settings saved before these fields existed.
        let mut old = serde_json::to_value(FinetuneSettings::default()).unwrap();
        for k in ["base_quantization", "gradient_checkpointing", "dtype"] {
            old.as_object_mut().unwrap().remove(k);
        }
        let s: FinetuneSettings = serde_json::from_value(old).unwrap();
        assert_eq!(s, FinetuneSettings::default());
        assert_eq!(ComputeDtype::Auto.resolve(&candle_core::Device::Cpu), candle_core::DType::F32);
    }

    #[test]
    fn bad_settings_are_named() {
        let s = FinetuneSettings { rank: 0, ..Default::default() };
        assert!(s.validate().unwrap_err().to_string().contains("rank"));
        let s = FinetuneSettings { lr: f64::NAN, ..Default::default() };
        assert!(s.validate().unwrap_err().to_string().contains("learning rate"));
    }
}
