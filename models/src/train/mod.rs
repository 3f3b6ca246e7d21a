//! LoRA training: the causal-LM loss, optimizers (AdamW, Lion), gradient clipping and
//! learning-rate schedules.
//!
//! Module map:
//! - `loss`: mean cross-entropy over labels ≠ -100, shifted left by one.
//! - `lora`: LoRA `A`/`B` as trainable `Var`s over a frozen model; saving a PEFT adapter.
//! - `trainer`: batches, one training step (forward, loss, backward, clip, update), gradient
//!   accumulation, checkpoints that resume exactly.
//! - `optim`: AdamW (PyTorch semantics), Lion, global-norm clipping, schedules.
pub mod lora;
pub mod loss;
pub mod optim;
pub mod trainer;

pub use lora::LoraParams;
pub use loss::{causal_lm_loss, cross_entropy, scored_positions, IGNORE_INDEX};
pub use optim::{clip_grad_norm, LrSchedule, OptimizerConfig, OptimizerState, ScheduleKind, TrainOptimizer};
pub use trainer::{Batch, LoraTrainer, StepStats, TrainSettings};

/// Errors of the training code.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor has the wrong shape.
    #[error("{what} has shape {got:?}, expected {expected}")]
    Shape {
        /// Which tensor.
        what: &'static str,
        /// The expected shape, in words.
        expected: String,
        /// The shape it has.
        got: Vec<usize>,
    },
    /// A label is neither -100 nor a token id of the vocabulary.
    #[error("label {label} at sample {sample}, position {position} is not a token id (vocabulary {vocab}) nor -100")]
    LabelOutOfRange {
        /// The label.
        label: i64,
        /// Sample index in the batch.
        sample: usize,
        /// Position in the sequence.
        position: usize,
        /// Vocabulary size.
        vocab: usize,
    },
    /// No position of the batch has a label to score.
    #[error("the batch has no label to learn from (every label is -100 after the shift); check the prompt/answer split")]
    NoLabels,
    /// The batch cannot be built.
    #[error("bad training batch: {0}")]
    Batch(String),
    /// The loss is NaN or infinite.
    #[error("the loss is {0}; training diverged (lower the learning rate or check the data)")]
    NonFiniteLoss(f32),
    /// No linear layer of the model matches the adapter's target modules.
    #[error("the model has no layer named {0:?} to put a LoRA adapter on")]
    NoTargets(Vec<String>),
    /// Initialisation or serialisation failed.
    #[error("cannot prepare the adapter: {0}")]
    Init(String),
    /// A file could not be written or read.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint folder is incomplete or does not match.
    #[error("cannot resume from {dir}: {reason}")]
    Checkpoint {
        /// The checkpoint folder.
        dir: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The model refused the adapter or failed in its forward pass.
    #[error(transparent)]
    Model(#[from] crate::error::ModelError),
    /// A tensor operation failed.
    #[error("tensor error during training: {0}")]
    Tensor(#[from] candle_core::Error),
}
