//! The context every service gets: where data lives, plus shared state (loaded engine).
use crate::error::{AppError, AppResult};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Environment variable that overrides the data folder (tests, portable installs).
pub const DATA_DIR_ENV: &str = "DOCTORGLM_DATA_DIR";

/// Shared state of a running app or CLI invocation.
pub struct AppContext {
    data_dir: PathBuf,
    /// The engine session currently loaded (model + adapter), reused across questions.
    pub(crate) engine: Mutex<Option<super::engine::LoadedModel>>,
    /// The prompt designer (library + index), built on first use.
    pub(crate) designer: Mutex<Option<doctorglm_knowledge::PromptDesigner>>,
}

impl AppContext {
    /// Opens the context on `data_dir`, creating the folder if needed.
    pub fn open(data_dir: impl Into<PathBuf>) -> AppResult<Self> {
        let data_dir = data_dir.into();
        std::fs::create_dir_all(&data_dir).map_err(|e| AppError::io(&data_dir, e))?;
        Ok(Self { data_dir, engine: Mutex::new(None), designer: Mutex::new(None) })
    }

    /// Opens the context on `$DOCTORGLM_DATA_DIR`, or the platform's data folder.
    pub fn open_default() -> AppResult<Self> {
        Self::open(default_data_dir()?)
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// The data folder: `$DOCTORGLM_DATA_DIR`, else the platform's (e.g. `~/.local/share/doctorglm`).
pub fn default_data_dir() -> AppResult<PathBuf> {
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("org", "doctorglm", "doctorglm")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or_else(|| AppError::Invalid(format!("no home folder found: set {DATA_DIR_ENV} to a folder for the app's data")))
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
