//! Importing, listing and removing models and adapters. Import checks the folder first
//! (`inspect`), reports progress and can be cancelled; nothing is recorded unless the check passed.
use super::conversations::parse_id;
use super::inspect::{self, ModelInfo};
use super::registry::{self, AdapterRecord, ModelRecord, Registry};
use super::{AppContext, CancelFlag, Progress};
use crate::error::{AppError, AppResult};
use std::path::Path;

/// Checks a model folder without importing it.
pub fn check_model(path: &Path, progress: &dyn Fn(Progress), cancel: &CancelFlag) -> AppResult<ModelInfo> {
    inspect::inspect_model(path, progress, cancel)
}

/// Checks and imports a model folder; also imports the adapters found inside it that fit.
/// Importing the same folder again refreshes its record instead of adding a second one.
/// The registry lives in the encrypted store; each registration is audited as an import.
pub fn import_model(
    ctx: &AppContext,
    path: &Path,
    progress: &dyn Fn(Progress),
    cancel: &CancelFlag,
) -> AppResult<ModelRecord> {
    let path = std::fs::canonicalize(path).map_err(|e| AppError::io(path, e))?;
    let info = inspect::inspect_model(&path, &|p| progress(Progress::new(p.fraction * 0.9, p.message)), cancel)?;
    cancel.check()?;
    let mut adapters = Vec::new();
    for adapter_dir in &info.adapters_found {
        progress(Progress::new(0.95, format!("checking adapter {}", adapter_dir.display())));
        match inspect::inspect_adapter(adapter_dir).and_then(|a| inspect::check_adapter_against(&a, &info).map(|_| a)) {
            Ok(adapter) => adapters.push(adapter),
            Err(e) => tracing::warn!("adapter {} skipped: {e}", adapter_dir.display()),
        }
    }
    cancel.check()?;
    let store = ctx.store();
    let record = registry::upsert_model(&store, &info)?;
    let base_id = parse_id("model", &record.id)?;
    for adapter in &adapters {
        registry::upsert_adapter(&store, base_id, adapter, None)?;
    }
    drop(store);
    progress(Progress::new(1.0, "imported"));
    tracing::info!(model = %record.info.name, "model imported");
    Ok(record)
}

/// Imports an adapter folder for an imported base model, after checking that it fits.
pub fn import_adapter(ctx: &AppContext, base_id: &str, path: &Path) -> AppResult<AdapterRecord> {
    let path = std::fs::canonicalize(path).map_err(|e| AppError::io(path, e))?;
    let registry = Registry::load(ctx)?;
    let base = registry.model(base_id)?.info.clone();
    let adapter = inspect::inspect_adapter(&path)?;
    inspect::check_adapter_against(&adapter, &base)?;
    let base_id = parse_id("model", base_id)?;
    registry::upsert_adapter(&ctx.store(), base_id, &adapter, None)
}

/// All imported models and adapters.
pub fn list(ctx: &AppContext) -> AppResult<Registry> {
    Registry::load(ctx)
}

/// Forgets a model and its adapters (their files stay on disk); audited as deletions.
pub fn remove_model(ctx: &AppContext, id: &str) -> AppResult<()> {
    let model_id = parse_id("model", id)?;
    let store = ctx.store();
    if !store.list_models()?.iter().any(|m| m.id == model_id) {
        return Err(AppError::NotFound(format!("model {id}")));
    }
    for a in store.list_adapters()?.iter().filter(|a| a.base_model_id == Some(model_id)) {
        store.remove_adapter(a.id)?;
    }
    store.remove_model(model_id)?;
    drop(store);
    // Its quantized-weight caches go too (they can be gigabytes); one that cannot be removed
    // is only logged: the model is gone from the registry either way.
    let cache_dir = super::engine::cache_dir(ctx);
    for weights in super::engine::Weights::ALL {
        let file = super::engine::cache_file(&cache_dir, &model_id.to_string(), weights);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(file = %file.display(), error = %e, "could not remove a weight cache")
            }
            _ => {}
        }
    }
    Ok(())
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
