//! The registry of imported models and adapters, kept in the encrypted store (`models` and
//! `adapters` tables, with what the check found as JSON). Model folders stay where they are
//! (weights are large); the registry records their path and what the check found.
use super::inspect::{self, AdapterInfo, ModelInfo};
use super::AppContext;
use crate::error::{AppError, AppResult};
use crate::store::{self, Store};
use serde::{Deserialize, Serialize};

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
    /// The base model's id (empty when its base was removed).
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
    /// Reads the registry from the store (empty when nothing was imported).
    pub fn load(ctx: &AppContext) -> AppResult<Self> {
        let (models, adapters) = {
            let store = ctx.store();
            (store.list_models()?, store.list_adapters()?)
        };
        let mut out = Registry::default();
        for m in models {
            match model_record(&m) {
                Some(r) => out.models.push(r),
                None => tracing::warn!(model = %m.name, path = %m.path, "registered model skipped: its folder cannot be checked"),
            }
        }
        for a in adapters {
            match adapter_record(&a) {
                Some(r) => out.adapters.push(r),
                None => tracing::warn!(adapter = %a.name, path = %a.path, "registered adapter skipped: its folder cannot be checked"),
            }
        }
        out.models.sort_by_key(|m| (m.imported_at, m.id.parse::<i64>().unwrap_or(0)));
        out.adapters.sort_by_key(|a| (a.imported_at, a.id.parse::<i64>().unwrap_or(0)));
        Ok(out)
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

/// A store row as a record; a row without a recorded check (registered by other tooling, or
/// from schema v1) is checked now from its folder.
fn model_record(m: &store::Model) -> Option<ModelRecord> {
    let info = match m.info.clone().and_then(|v| serde_json::from_value::<ModelInfo>(v).ok()) {
        Some(info) => info,
        None => inspect::inspect_model(std::path::Path::new(&m.path), &|_| {}, &super::CancelFlag::new()).ok()?,
    };
    Some(ModelRecord { id: m.id.to_string(), info, imported_at: u64::try_from(m.added_at).unwrap_or(0) })
}

fn adapter_record(a: &store::Adapter) -> Option<AdapterRecord> {
    let info = match a.info.clone().and_then(|v| serde_json::from_value::<AdapterInfo>(v).ok()) {
        Some(info) => info,
        None => inspect::inspect_adapter(std::path::Path::new(&a.path)).ok()?,
    };
    Some(AdapterRecord {
        id: a.id.to_string(),
        base_id: a.base_model_id.map(|id| id.to_string()).unwrap_or_default(),
        info,
        imported_at: u64::try_from(a.created_at).unwrap_or(0),
    })
}

/// `wanted`, or `wanted (2)`, `wanted (3)`, ... : the first name not in `taken`.
fn unique_name(wanted: &str, taken: &[String]) -> String {
    let wanted = if wanted.trim().is_empty() { "model" } else { wanted.trim() };
    if !taken.iter().any(|t| t == wanted) {
        return wanted.to_string();
    }
    (2..).map(|i| format!("{wanted} ({i})")).find(|n| !taken.iter().any(|t| t == n)).unwrap_or_default()
}

fn to_json<T: Serialize>(v: &T) -> AppResult<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| AppError::Invalid(e.to_string()))
}

/// Records a checked model (a second import of the same folder refreshes its record).
pub(crate) fn upsert_model(store: &Store, info: &ModelInfo) -> AppResult<ModelRecord> {
    let path = info.path.display().to_string();
    let models = store.list_models()?;
    let json = to_json(info)?;
    if let Some(m) = models.iter().find(|m| m.path == path) {
        store.set_model_info(m.id, &json)?;
        return Ok(ModelRecord { id: m.id.to_string(), info: info.clone(), imported_at: u64::try_from(m.added_at).unwrap_or(0) });
    }
    let taken: Vec<String> = models.into_iter().map(|m| m.name).collect();
    let family = serde_json::to_value(info.architecture).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let m = store.register_model_with_info(
        &store::NewModel { name: unique_name(&info.name, &taken), family, path, ..Default::default() },
        Some(&json),
    )?;
    Ok(ModelRecord { id: m.id.to_string(), info: info.clone(), imported_at: u64::try_from(m.added_at).unwrap_or(0) })
}

/// Records a checked adapter for a base (again for the same folder and base: refreshed),
/// with the training run that made it, if any. Its name is the check's, made unique.
pub(crate) fn upsert_adapter(
    store: &Store,
    base_id: i64,
    info: &AdapterInfo,
    training_run_id: Option<i64>,
) -> AppResult<AdapterRecord> {
    let path = info.path.display().to_string();
    let adapters = store.list_adapters()?;
    let json = to_json(info)?;
    let record = |id: i64, at: i64| AdapterRecord {
        id: id.to_string(),
        base_id: base_id.to_string(),
        info: info.clone(),
        imported_at: u64::try_from(at).unwrap_or(0),
    };
    if let Some(a) = adapters.iter().find(|a| a.path == path && a.base_model_id == Some(base_id)) {
        store.set_adapter_info(a.id, &json)?;
        return Ok(record(a.id, a.created_at));
    }
    let taken: Vec<String> = adapters.into_iter().map(|a| a.name).collect();
    let kind = match info.adapter {
        inspect::AdapterKind::Lora { .. } => store::AdapterKind::Lora,
        inspect::AdapterKind::PtuningV2 { .. } => store::AdapterKind::Ptuning,
    };
    let a = store.register_adapter_with_info(
        &store::NewAdapter {
            name: unique_name(&info.name, &taken),
            kind,
            base_model_id: Some(base_id),
            training_run_id,
            path,
        },
        Some(&json),
    )?;
    Ok(record(a.id, a.created_at))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A new id, unique within this machine: time, process and a counter (jobs).
pub fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:x}-{:x}-{n:x}", now_ms(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_unique() {
        let taken = vec!["lora".to_string(), "lora (2)".to_string()];
        assert_eq!(unique_name("lora", &taken), "lora (3)");
        assert_eq!(unique_name("ptuning", &taken), "ptuning");
    }
}
