//! The crate's error type.
use std::path::PathBuf;

/// Everything that can go wrong in the knowledge crate, worded for the person who must fix it.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// A file or folder could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What we tried to do ("read", "write", "create folder" ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A document is not in the library format.
    #[error("{path}: not a valid library document: {reason}")]
    BadDocument {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
    /// A file is not text in an encoding we can detect.
    #[error("{path}: {reason}")]
    Encoding {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
    /// A file is not in a format any importer understands.
    #[error("{path}: {reason}")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
    /// The search index failed.
    #[error("search index at {path}: {reason}")]
    Index {
        /// The index folder.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
    /// An evaluation file is not in the expected format.
    #[error("{path}: {reason}")]
    EvalFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
    /// The operation was cancelled by the user.
    #[error("cancelled")]
    Cancelled,
}

impl KnowledgeError {
    /// Builds an [`KnowledgeError::Io`] error.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { action, path: path.into(), source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = KnowledgeError> = std::result::Result<T, E>;
