//! Errors of the conversation store, written for the person who has to act on them.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key does not open the database (wrong key, wrong passphrase, or not a DoctorGLM database).
    #[error(
        "the database {path} could not be opened with this key: the key or passphrase is wrong, \
         or the file is not a DoctorGLM database. Nothing was changed."
    )]
    WrongKey {
        /// The database file.
        path: PathBuf,
    },
    /// The database exists but no key for it was found anywhere.
    #[error(
        "the database {path} exists but its key was not found ({detail}). Restore the key file \
         {key_file}, unlock the OS keyring, or open it with its passphrase. The database was not changed."
    )]
    MissingKey {
        /// The database file.
        path: PathBuf,
        /// Where the key file was looked for.
        key_file: PathBuf,
        /// What the keyring said.
        detail: String,
    },
    /// The SQLite library linked into this build cannot encrypt.
    #[error("this build has no SQLCipher encryption; refusing to keep patient data unencrypted")]
    NoEncryption,
    /// The key file exists but does not hold a key.
    #[error("the key file {path} is not valid: {reason}")]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A passphrase was empty.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// The system random source failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// The database was made by a newer DoctorGLM.
    #[error(
        "the database {path} was written by a newer version of DoctorGLM (schema {found}; this \
         version knows up to {known}). Update DoctorGLM; the database was not changed."
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: usize,
        /// The newest schema version this build knows.
        known: usize,
    },
    /// A schema migration failed (the transaction was rolled back).
    #[error("updating the database schema failed (nothing was changed): {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// An SQLite error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file or folder could not be read or written.
    #[error("could not access {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// The conversation does not exist.
    #[error("conversation {0} does not exist (it may have been deleted)")]
    ConversationNotFound(i64),
    /// The message does not exist.
    #[error("message {0} does not exist")]
    MessageNotFound(i64),
    /// A streaming update came for a message that is no longer streaming.
    #[error("message {id} is not being written any more (its status is {status})")]
    NotStreaming {
        /// The message.
        id: i64,
        /// Its status.
        status: String,
    },
    /// The integrity check failed.
    #[error("the database {path} failed its integrity check: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What `PRAGMA integrity_check` said.
        detail: String,
    },
    /// A value in the database or from the caller is not what it should be.
    #[error("{0}")]
    Invalid(String),
    /// JSON could not be written or read.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// A long operation was cancelled by the caller.
    #[error("cancelled")]
    Cancelled,
}

impl StoreError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io { path: path.into(), source }
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
