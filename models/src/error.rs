//! The engine's error type: every failure names what a person can act on (file, tensor, setting).
use std::path::PathBuf;

/// Errors from loading, running and adapting models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `config.json` (of a model, adapter or prefix) is missing a value or is not valid JSON.
    #[error("bad config {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A shard index (`*.index.json`) is not valid.
    #[error("bad weight index {path}: {reason}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The folder holds no weights this engine can read.
    #[error("no weights in {dir}: expected model.safetensors, pytorch_model.bin or a sharded *.index.json")]
    NoWeights {
        /// The folder.
        dir: PathBuf,
    },
    /// A weight file is damaged (truncated, not safetensors/PyTorch, unreadable header).
    #[error("weight file {path} is damaged or truncated: {reason}")]
    BadWeightFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A tensor the model needs is not in the file that should hold it.
    #[error("tensor {name} is missing from {file}")]
    MissingTensor {
        /// Tensor name.
        name: String,
        /// The file (or folder) searched.
        file: PathBuf,
    },
    /// A tensor has another shape than the config implies.
    #[error("tensor {name} in {file} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// The file holding it.
        file: PathBuf,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape found.
        found: Vec<usize>,
    },
    /// A tensor could not be read (data truncated or of an unsupported type).
    #[error("cannot read tensor {name} from {file}: {reason}")]
    BadTensor {
        /// Tensor name.
        name: String,
        /// The file holding it.
        file: PathBuf,
        /// The cause.
        reason: String,
    },
    /// An adapter (LoRA or P-tuning) does not fit this base model.
    #[error("adapter {adapter} does not fit this model: {reason}")]
    AdapterMismatch {
        /// The adapter (name or folder).
        adapter: String,
        /// What does not fit.
        reason: String,
    },
    /// No LoRA adapter of that name is loaded.
    #[error("no LoRA adapter named {0:?} is loaded")]
    UnknownAdapter(String),
    /// The input ids cannot be run (empty, too long, missing control tokens).
    #[error("bad input: {0}")]
    Input(String),
    /// The requested device is not available in this build or on this machine.
    #[error("device unavailable: {0}")]
    Device(String),
    /// The work was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The sampling settings or the logits cannot be sampled.
    #[error("{0}")]
    Sampling(#[from] crate::sampling::SamplingError),
    /// A tensor computation failed.
    #[error("quantized weights: {0}")]
    Quant(#[from] crate::quant::QuantError),
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;
