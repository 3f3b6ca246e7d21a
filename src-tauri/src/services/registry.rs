//! The registry of imported models and adapters. Model folders stay where they are (weights are
//! large); the registry records their path and what the check found.
//!
//! Interim storage: `registry.json` in the data folder, until the encrypted store's
//! models/adapters tables take over (same functions, other backing).
use super::inspect::{AdapterInfo, ModelInfo};
use super::{jsonfile, AppContext};
use crate::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// An imported model.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelRecord {
    /// Stable id.
    pub id: String,
    /// What the check found.
    pub info: ModelInfo,
    /// Milliseconds since the Unix epoch.
    pub imported_at: u64,
}

/// An imported adapter, tied to the base it was checked against.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdapterRecord {
    /// Stable id.
    pub id: String,
    /// The base model's id.
    pub base_id: String,
    /// What the check found.
    pub info: AdapterInfo,
    /// Milliseconds since the Unix epoch.
    pub imported_at: u64,
}

/// Everything imported.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Registry {
    /// Models, oldest first.
    pub models: Vec<ModelRecord>,
    /// Adapters, oldest first.
    pub adapters: Vec<AdapterRecord>,
}

impl Registry {
    fn path(ctx: &AppContext) -> PathBuf {
        ctx.data_dir().join("registry.json")
    }
    /// Loads the registry (empty when nothing was imported).
    pub fn load(ctx: &AppContext) -> AppResult<Self> {
        jsonfile::load_or_default(&Self::path(ctx))
    }
    /// Saves the registry.
    pub fn save(&self, ctx: &AppContext) -> AppResult<()> {
        jsonfile::save(&Self::path(ctx), self)
    }
    /// The model with this id.
    pub fn model(&self, id: &str) -> AppResult<&ModelRecord> {
        self.models.iter().find(|m| m.id == id).ok_or_else(|| AppError::NotFound(format!("model {id}")))
    }
    /// The adapter with this id.
    pub fn adapter(&self, id: &str) -> AppResult<&AdapterRecord> {
        self.adapters.iter().find(|a| a.id == id).ok_or_else(|| AppError::NotFound(format!("adapter {id}")))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A new id, unique within this machine: time, process and a counter.
pub fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:x}-{:x}-{n:x}", now_ms(), std::process::id())
}
