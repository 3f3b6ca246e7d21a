//! LoRA training: the causal-LM loss, optimizers (AdamW, Lion), gradient clipping and
//! learning-rate schedules.
//!
//! Module map:
//! - `loss`: mean cross-entropy over labels ≠ -100, shifted left by one.
//! - `optim`: AdamW (PyTorch semantics), Lion, global-norm clipping, schedules.
pub mod loss;
pub mod optim;

pub use loss::{causal_lm_loss, IGNORE_INDEX};
pub use optim::{clip_grad_norm, LrSchedule, OptimizerConfig, ScheduleKind, TrainOptimizer};

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
    /// A tensor operation failed.
    #[error("tensor error during training: {0}")]
    Tensor(#[from] candle_core::Error),
}
