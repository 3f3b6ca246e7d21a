//! The encrypted conversation store: one SQLite database, encrypted with SQLCipher, that keeps
//! conversations, the model/adapter registry, datasets and training runs, the audit log and
//! settings. No Tauri here: the app, the CLI and the tests use it directly.
//!
//! Module map:
//! - `paths`: where the files live (`directories`, `DOCTORGLM_DATA_DIR`, or a parameter).
//! - `keys`: the database key (OS keyring, user-only key file, or a passphrase).
//! - `schema`: tables and migrations.
//! - `connection`: opening, keying, pragmas, crash recovery.
//! - `conversations`: create, list, rename, delete.
//! - `messages`: user messages and streamed answers.
//! - `search`: full-text search (FTS5 trigram; CJK unigrams/bigrams for 1–2 character
//!   terms) with highlighted snippets.
//! - `grams`: the CJK unigram/bigram tokens of the short-term index (an SQL function).
//! - `export`: a conversation as Markdown or JSON.
//! - `import`: whole conversations written elsewhere (older formats), with their timestamps.
//! - `backup`: encrypted backup and restore with SQLite's online backup API.
//! - `audit`: the audit log.
//! - `registry`: models and adapters.
//! - `training`: datasets, training runs and their metrics.
//! - `settings`: key/value settings (JSON values).
//! - `time`: timestamps.
//! - `error`: [`StoreError`].

pub mod audit;
pub mod backup;
mod connection;
pub mod conversations;
pub mod error;
pub mod export;
mod grams;
pub mod import;
pub mod keys;
pub mod messages;
pub mod paths;
pub mod registry;
pub mod schema;
pub mod search;
pub mod settings;
pub mod time;
pub mod training;

use std::path::{Path, PathBuf};

pub use audit::{AuditAction, AuditEntry};
pub use backup::BackupProgress;
pub use conversations::{Conversation, ConversationId};
pub use error::{Result, StoreError};
pub use export::ExportFormat;
pub use import::ImportedMessage;
pub use keys::{DbKey, KeySource, KeyStorage, KeyVault, OsKeyring, VaultUnavailable};
pub use messages::{AnswerEnd, AnswerMeta, AnswerWriter, Message, MessageId, MessageStatus, Role};
pub use paths::{AppPaths, DATA_DIR_ENV};
pub use registry::{Adapter, AdapterKind, Model, NewAdapter, NewModel};
pub use search::{SearchHit, SnippetSpan};
pub use training::{Dataset, NewDataset, TrainingMetric, TrainingRun, TrainingStatus};

/// An open, keyed, migrated conversation store.
pub struct Store {
    conn: rusqlite::Connection,
    path: PathBuf,
    secret: keys::Secret,
    key_storage: KeyStorage,
    recovered: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).field("key_storage", &self.key_storage).finish()
    }
}

impl Store {
    /// Opens (or at first run creates) the store in `paths`, with the key from `source`,
    /// using the OS keyring for [`KeySource::Auto`].
    pub fn open(paths: &AppPaths, source: KeySource) -> Result<Self> {
        Self::open_with_vault(paths, source, &OsKeyring::default())
    }

    /// Like [`Store::open`] with another keyring (tests, or a keyring chosen by policy).
    pub fn open_with_vault(paths: &AppPaths, source: KeySource, vault: &dyn KeyVault) -> Result<Self> {
        let db = paths.database();
        let resolved = keys::resolve_key(source, &db, &paths.key_file(), vault)?;
        connection::open(&db, resolved)
    }

    /// Opens the database file at `path` with a raw key or passphrase (no keyring involved).
    pub fn open_file(path: &Path, source: KeySource) -> Result<Self> {
        if matches!(source, KeySource::Auto) {
            return Err(StoreError::Invalid("open_file needs a key or a passphrase, not Auto".into()));
        }
        let resolved = keys::resolve_key(source, path, Path::new(""), &NoVault)?;
        connection::open(path, resolved)
    }

    /// Where the key in use is kept (for the UI to show).
    pub fn key_storage(&self) -> &KeyStorage {
        &self.key_storage
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many answers were found still streaming at open (a crash) and marked interrupted.
    pub fn recovered_messages(&self) -> usize {
        self.recovered
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<usize> {
        let v: i64 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        Ok(usize::try_from(v).unwrap_or(0))
    }

    /// Runs `PRAGMA integrity_check`; an error names what is damaged.
    pub fn check_integrity(&self) -> Result<()> {
        connection::integrity_check(&self.conn, &self.path)
    }

    /// The underlying connection, for tests.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> &rusqlite::Connection {
        &self.conn
    }
}

/// A keyring that is never there (used when the key is given directly).
struct NoVault;

impl KeyVault for NoVault {
    fn load(&self) -> Result<Option<zeroize::Zeroizing<String>>, VaultUnavailable> {
        Err(VaultUnavailable("no keyring in use".into()))
    }
    fn save(&self, _: &str) -> Result<(), VaultUnavailable> {
        Err(VaultUnavailable("no keyring in use".into()))
    }
}

#[cfg(test)]
mod security_tests;
#[cfg(test)]
pub(crate) mod test_support;
