//! Small helpers to keep a JSON document on disk safely: write to a temporary file, then rename,
//! so a crash never leaves a half-written file behind.
use crate::error::{AppError, AppResult};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// Reads `path` as JSON, or returns `T::default()` when the file does not exist yet.
pub fn load_or_default<T: DeserializeOwned + Default>(path: &Path) -> AppResult<T> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| AppError::Corrupt { path: path.to_path_buf(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(AppError::io(path, e)),
    }
}

/// Writes `value` as pretty JSON to `path` atomically (temporary file + rename).
pub fn save<T: Serialize>(path: &Path, value: &T) -> AppResult<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| AppError::io(dir, e))?;
    }
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| AppError::Invalid(e.to_string()))?;
    std::fs::write(&tmp, bytes).map_err(|e| AppError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| AppError::io(path, e))
}
