//! Importing, listing and removing models and adapters. Import checks the folder first
//! (`inspect`), reports progress and can be cancelled; nothing is recorded unless the check passed.
use super::inspect::{self, AdapterInfo, ModelInfo};
use super::registry::{new_id, now_ms, AdapterRecord, ModelRecord, Registry};
use super::{AppContext, CancelFlag, Progress};
use crate::error::{AppError, AppResult};
use std::path::Path;

/// Checks a model folder without importing it.
pub fn check_model(path: &Path, progress: &dyn Fn(Progress), cancel: &CancelFlag) -> AppResult<ModelInfo> {
    inspect::inspect_model(path, progress, cancel)
}

/// Checks and imports a model folder; also imports the adapters found inside it that fit.
/// Importing the same folder again refreshes its record instead of adding a second one.
pub fn import_model(
    ctx: &AppContext,
    path: &Path,
    progress: &dyn Fn(Progress),
    cancel: &CancelFlag,
) -> AppResult<ModelRecord> {
    let path = std::fs::canonicalize(path).map_err(|e| AppError::io(path, e))?;
    let info = inspect::inspect_model(&path, &|p| progress(Progress::new(p.fraction * 0.9, p.message)), cancel)?;
    cancel.check()?;
    let mut registry = Registry::load(ctx)?;
    let record = match registry.models.iter_mut().find(|m| m.info.path == path) {
        Some(existing) => {
            existing.info = info.clone();
            existing.clone()
        }
        None => {
            let record = ModelRecord { id: new_id("model"), info: info.clone(), imported_at: now_ms() };
            registry.models.push(record.clone());
            record
        }
    };
    for adapter_dir in &info.adapters_found {
        progress(Progress::new(0.95, format!("checking adapter {}", adapter_dir.display())));
        match inspect::inspect_adapter(adapter_dir).and_then(|a| inspect::check_adapter_against(&a, &info).map(|_| a)) {
            Ok(adapter) => {
                upsert_adapter(&mut registry, &record.id, adapter);
            }
            Err(e) => tracing::warn!("adapter {} skipped: {e}", adapter_dir.display()),
        }
    }
    registry.save(ctx)?;
    progress(Progress::new(1.0, "imported"));
    tracing::info!(model = %record.info.name, "model imported");
    Ok(record)
}

fn upsert_adapter(registry: &mut Registry, base_id: &str, info: AdapterInfo) -> AdapterRecord {
    if let Some(existing) = registry.adapters.iter_mut().find(|a| a.info.path == info.path && a.base_id == base_id) {
        existing.info = info;
        return existing.clone();
    }
    let record = AdapterRecord { id: new_id("adapter"), base_id: base_id.to_string(), info, imported_at: now_ms() };
    registry.adapters.push(record.clone());
    record
}

/// Imports an adapter folder for an imported base model, after checking that it fits.
pub fn import_adapter(ctx: &AppContext, base_id: &str, path: &Path) -> AppResult<AdapterRecord> {
    let path = std::fs::canonicalize(path).map_err(|e| AppError::io(path, e))?;
    let mut registry = Registry::load(ctx)?;
    let base = registry.model(base_id)?.info.clone();
    let adapter = inspect::inspect_adapter(&path)?;
    inspect::check_adapter_against(&adapter, &base)?;
    let record = upsert_adapter(&mut registry, base_id, adapter);
    registry.save(ctx)?;
    Ok(record)
}

/// All imported models and adapters.
pub fn list(ctx: &AppContext) -> AppResult<Registry> {
    Registry::load(ctx)
}

/// Forgets a model (its files stay on disk) and its adapters.
pub fn remove_model(ctx: &AppContext, id: &str) -> AppResult<()> {
    let mut registry = Registry::load(ctx)?;
    registry.model(id)?;
    registry.models.retain(|m| m.id != id);
    registry.adapters.retain(|a| a.base_id != id);
    registry.save(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        std::env::var_os("DOCTORGLM_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
            .join("models")
            .join(name)
    }

    #[test]
    fn import_records_model_and_its_adapters_once() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let none = CancelFlag::new();
        let first = import_model(&ctx, &fixture("chatglm3-tiny"), &|_| {}, &none).unwrap();
        let again = import_model(&ctx, &fixture("chatglm3-tiny"), &|_| {}, &none).unwrap();
        assert_eq!(first.id, again.id);
        let reg = list(&ctx).unwrap();
        assert_eq!(reg.models.len(), 1);
        assert_eq!(reg.adapters.len(), 2);
        assert!(reg.adapters.iter().all(|a| a.base_id == first.id));
        // Reopening the context reads the same registry back.
        let ctx2 = AppContext::open(dir.path()).unwrap();
        assert_eq!(list(&ctx2).unwrap(), reg);
        remove_model(&ctx, &first.id).unwrap();
        let reg = list(&ctx).unwrap();
        assert!(reg.models.is_empty() && reg.adapters.is_empty());
    }

    #[test]
    fn a_foreign_adapter_is_refused_and_nothing_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let v1 = import_model(&ctx, &fixture("chatglm-6b-v1-tiny"), &|_| {}, &CancelFlag::new()).unwrap();
        let before = list(&ctx).unwrap();
        let err = import_adapter(&ctx, &v1.id, &fixture("chatglm3-tiny/ptuning-v2")).unwrap_err();
        assert!(matches!(err, AppError::AdapterMismatch { .. }), "{err}");
        assert_eq!(list(&ctx).unwrap(), before);
    }

    #[test]
    fn a_cancelled_import_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let flag = CancelFlag::new();
        flag.cancel();
        assert!(matches!(import_model(&ctx, &fixture("glm4-tiny"), &|_| {}, &flag), Err(AppError::Cancelled)));
        assert!(list(&ctx).unwrap().models.is_empty());
    }
}
