//! Errors of a fine-tuning job, with messages a person can act on.
use std::path::PathBuf;

/// What can go wrong in a fine-tuning job.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Settings(String),
    /// No example can be trained on.
    #[error("no training example is usable: {0}")]
    NoData(String),
    /// The base model or its tokenizer cannot be loaded.
    #[error("cannot load the base model from {dir}: {message}")]
    Model {
        /// The model folder.
        dir: PathBuf,
        /// Why.
        message: String,
    },
    /// A checkpoint is missing, damaged or was made with other settings.
    #[error("cannot resume from {dir}: {reason}")]
    Checkpoint {
        /// The checkpoint folder.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be written or read.
    #[error("cannot write or read {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The dataset cannot be read.
    #[error(transparent)]
    Dataset(#[from] doctorglm_datasets::DatasetError),
    /// The engine's trainer failed.
    #[error(transparent)]
    Train(#[from] doctorglm_models::train::TrainError),
    /// The engine failed (generation of probe answers, adapters).
    #[error(transparent)]
    Engine(#[from] doctorglm_models::ModelError),
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T, E = FinetuneError> = std::result::Result<T, E>;

/// Maps an io error to [`FinetuneError::Io`] naming the path.
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> FinetuneError + '_ {
    move |source| FinetuneError::Io { path: path.to_path_buf(), source }
}
