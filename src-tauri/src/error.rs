//! The app's error type: each variant says what went wrong and what a person can do about it.
use std::path::PathBuf;

/// Errors of the app's services, shown as-is in the UI and the CLI.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A file or folder could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A folder chosen as a model is not one.
    #[error("{path} is not a usable model folder: {reason}")]
    NotAModel {
        /// The folder.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// An adapter does not fit the base model it was imported for.
    #[error("the adapter at {path} does not fit the base model: {reason}")]
    AdapterMismatch {
        /// The adapter folder.
        path: PathBuf,
        /// Why it does not fit.
        reason: String,
    },
    /// A JSON file the app keeps is damaged.
    #[error("{path} is damaged ({source}); move it away to start afresh, nothing else was changed")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Something the user asked for does not exist.
    #[error("{0} was not found")]
    NotFound(String),
    /// No model has been imported yet.
    #[error("no model is imported yet: import one in the Models tab or with `doctorglm models import <folder>`")]
    NoModel,
    /// The engine could not load or run the model.
    #[error("the engine failed: {0}")]
    Engine(String),
    /// The prompt designer failed.
    #[error("the prompt designer failed: {0}")]
    Designer(String),
    /// The user cancelled the work.
    #[error("cancelled")]
    Cancelled,
    /// The request itself is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The window was started without the store's key and nobody has typed the passphrase yet.
    #[error("the conversation store is locked: type its passphrase first")]
    Locked,
    /// The encrypted store failed (its message says what to do).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl AppError {
    /// Whether the store could not be opened for want of the right key (none found, or a
    /// wrong key or passphrase): the window then asks for the passphrase.
    pub fn store_needs_key(&self) -> bool {
        matches!(self, AppError::Store(crate::store::StoreError::MissingKey { .. } | crate::store::StoreError::WrongKey { .. }))
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AppError::Io { path: path.into(), source }
    }
}

impl serde::Serialize for AppError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// The services' result type.
pub type AppResult<T> = Result<T, AppError>;
