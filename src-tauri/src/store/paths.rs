//! Where the store keeps its files: per-user folders from the `directories` crate, or an
//! override (a function parameter, or the `DOCTORGLM_DATA_DIR` environment variable) for
//! tests and for administrators who place data by policy.

use std::path::{Path, PathBuf};

use super::error::{Result, StoreError};

/// Environment variable that moves all DoctorGLM data (database, key file, backups) to one folder.
pub const DATA_DIR_ENV: &str = "DOCTORGLM_DATA_DIR";

/// File name of the conversation database inside the data folder.
pub const DATABASE_FILE: &str = "conversations.db";
/// File name of the fallback key file inside the config folder.
pub const KEY_FILE: &str = "store.key";

/// The folders the store uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPaths {
    /// Folder of the database and backups.
    pub data_dir: PathBuf,
    /// Folder of configuration and the fallback key file (kept apart from the data on purpose:
    /// copying the data folder does not copy the key).
    pub config_dir: PathBuf,
}

impl AppPaths {
    /// Resolves the folders: `override_dir` if given, else `$DOCTORGLM_DATA_DIR` if set and not
    /// empty, else the platform's per-user folders.
    pub fn resolve(override_dir: Option<&Path>) -> Result<Self> {
        if let Some(dir) = override_dir {
            return Ok(Self::under(dir));
        }
        if let Some(dir) = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
            return Ok(Self::under(Path::new(&dir)));
        }
        let dirs = directories::ProjectDirs::from("org", "DoctorGLM", "DoctorGLM").ok_or_else(|| {
            StoreError::Invalid(format!(
                "no home folder was found for this user; set {DATA_DIR_ENV} to a folder for DoctorGLM's data"
            ))
        })?;
        Ok(Self { data_dir: dirs.data_dir().to_path_buf(), config_dir: dirs.config_dir().to_path_buf() })
    }

    /// All folders under one root: data in `root`, configuration in `root/config`.
    pub fn under(root: &Path) -> Self {
        Self { data_dir: root.to_path_buf(), config_dir: root.join("config") }
    }

    /// The conversation database.
    pub fn database(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }

    /// The fallback key file (used only where no OS keyring is reachable).
    pub fn key_file(&self) -> PathBuf {
        self.config_dir.join(KEY_FILE)
    }

    /// The default folder for backups.
    pub fn backups_dir(&self) -> PathBuf {
        self.data_dir.join("backups")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_override_parameter_wins() {
        let p = AppPaths::resolve(Some(Path::new("some/where"))).unwrap();
        assert_eq!(p.database(), Path::new("some/where").join(DATABASE_FILE));
        assert_eq!(p.key_file(), Path::new("some/where/config").join(KEY_FILE));
        assert_ne!(p.data_dir, p.config_dir);
    }
}
