//! The context every service gets: where data lives, the encrypted store (opened once per
//! process and shared by every thread), plus shared state (loaded engine, prompt designer).
use crate::error::{AppError, AppResult};
use crate::store::{AppPaths, KeySource, Store};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use zeroize::Zeroizing;

/// Environment variable that overrides the data folder (tests, portable installs).
pub use crate::store::DATA_DIR_ENV;

/// Shared state of a running app or CLI invocation.
pub struct AppContext {
    paths: AppPaths,
    /// The conversation store. One connection per process behind a mutex: every service
    /// locks it only for its own statements (never across a generation), so the window's
    /// worker threads and a streaming answer take turns without waiting long.
    store: Mutex<Store>,
    /// What the one-time import of the interim JSON files did at open, if there were any.
    pub(crate) legacy_import: Option<super::legacy::LegacyImport>,
    /// The engine session currently loaded (model + adapter), reused across questions.
    pub(crate) engine: Mutex<Option<super::engine::LoadedModel>>,
    /// The prompt designer (library + index), built on first use.
    pub(crate) designer: Mutex<Option<doctorglm_knowledge::PromptDesigner>>,
}

impl AppContext {
    /// Opens the context on `data_dir` (database there, key file in its `config/` when no OS
    /// keyring is available), creating the folder if needed.
    pub fn open(data_dir: impl AsRef<Path>) -> AppResult<Self> {
        Self::open_with(AppPaths::under(data_dir.as_ref()), KeySource::Auto)
    }

    /// Opens the context on `$DOCTORGLM_DATA_DIR`, or the platform's data and config folders,
    /// with the key source of [`default_key_source`] (a passphrase given to this process, or
    /// the OS keyring / key file).
    pub fn open_default() -> AppResult<Self> {
        Self::open_with(AppPaths::resolve(None)?, default_key_source())
    }

    /// Opens the context on `paths` with the database key from `key` (a passphrase, a key
    /// given by administrators' tooling, or `Auto`: the OS keyring or the key file). Interim
    /// JSON files found in the data folder are imported once and renamed.
    pub fn open_with(paths: AppPaths, key: KeySource) -> AppResult<Self> {
        std::fs::create_dir_all(&paths.data_dir).map_err(|e| AppError::io(&paths.data_dir, e))?;
        let store = Store::open(&paths, key)?;
        let legacy_import = super::legacy::import_if_present(&store, &paths.data_dir)?;
        Ok(Self {
            paths,
            store: Mutex::new(store),
            legacy_import,
            engine: Mutex::new(None),
            designer: Mutex::new(None),
        })
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        &self.paths.data_dir
    }

    /// The data and config folders.
    pub fn paths(&self) -> &AppPaths {
        &self.paths
    }

    /// The store, locked for the caller. Hold the guard only for store calls: never across
    /// model loading or generation.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while the lock was held cannot leave SQLite half-written (an open
        // transaction rolls back when dropped), so a poisoned lock is safe to take over.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Environment variable with the store's passphrase, for administrators' scripts where no
/// keyring is wanted (the CLI's `--passphrase-stdin` keeps it out of the environment too).
pub const PASSPHRASE_ENV: &str = "DOCTORGLM_PASSPHRASE";

/// A passphrase given to this process (the CLI's `--passphrase-stdin`), set once at start.
static PASSPHRASE: OnceLock<Zeroizing<String>> = OnceLock::new();

/// Makes [`AppContext::open_default`] use `passphrase` (SQLCipher derives the key from it).
/// A passphrase given before wins; an empty one is refused when the store opens.
pub fn use_passphrase(passphrase: Zeroizing<String>) {
    let _ = PASSPHRASE.set(passphrase);
}

/// Reads a passphrase from the first line of `input` (the line end removed); nothing else is
/// read, so what follows stays for the command (`chat` reads its questions there).
pub fn read_passphrase(input: &mut dyn std::io::BufRead) -> AppResult<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    input.read_line(&mut line).map_err(|e| AppError::Invalid(format!("could not read the passphrase: {e}")))?;
    let trimmed = line.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(AppError::Invalid("no passphrase was given on standard input (an empty first line)".into()));
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// The key source for this process: the passphrase given with [`use_passphrase`], else
/// `$DOCTORGLM_PASSPHRASE` if set and not empty, else the OS keyring or key file.
pub fn default_key_source() -> KeySource {
    if let Some(p) = PASSPHRASE.get() {
        return KeySource::Passphrase(p.clone());
    }
    match std::env::var(PASSPHRASE_ENV) {
        Ok(p) if !p.is_empty() => KeySource::Passphrase(Zeroizing::new(p)),
        _ => KeySource::Auto,
    }
}

/// A cancellation flag shared between the UI (or Ctrl-C) and a long task.
#[derive(Clone, Default, Debug)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A new flag, not cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the task to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
    /// Whether stopping was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// The flag itself, for code that polls an `AtomicBool` (the engine).
    pub fn as_atomic(&self) -> &AtomicBool {
        &self.0
    }
    /// `Err(Cancelled)` when stopping was asked for.
    pub fn check(&self) -> AppResult<()> {
        if self.is_cancelled() {
            Err(AppError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// One progress report of a long task.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Done so far, 0.0..=1.0.
    pub fraction: f32,
    /// What is happening now, for people.
    pub message: String,
}

impl Progress {
    /// A report at `fraction` (clamped to 0..=1) with a message.
    pub fn new(fraction: f32, message: impl Into<String>) -> Self {
        Self { fraction: fraction.clamp(0.0, 1.0), message: message.into() }
    }
}
