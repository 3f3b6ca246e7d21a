//! Errors of the tokenizers: missing, unreadable or corrupt tokenizer files.
use std::path::PathBuf;

/// What can go wrong while loading or using a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The model folder holds none of the tokenizer files the engine knows.
    #[error("no tokenizer in {dir}: expected `ice_text.model` (ChatGLM-6B) or `tokenizer.model` (ChatGLM2/3, GLM-4)")]
    NotFound {
        /// The folder that was searched.
        dir: PathBuf,
    },
    /// The tokenizer file exists but could not be read.
    #[error("cannot read tokenizer file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The tokenizer file is damaged, truncated or of an unexpected kind.
    #[error("tokenizer file {path} is corrupt or not a supported tokenizer: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, TokenizerError>;
