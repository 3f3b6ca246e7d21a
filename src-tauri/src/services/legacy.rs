//! One-time import of the interim JSON files earlier builds kept in the data folder
//! (`registry.json`, `conversations.json`, `settings.json`) into the encrypted store.
//!
//! Each file found is read, imported, and then renamed to `<name>.imported-<ms>` beside it:
//! never deleted (it is the user's data, and the user decides when the plaintext copy goes;
//! the store status says it is there). A damaged file is left where it is, untouched, and
//! reported; the app still opens. Should the app stop between the import's commit and the
//! rename, the next start imports that file again (a duplicate, never a loss).
use super::conversations::{self, Conversation};
use super::registry::{self, Registry};
use super::settings::{self, Settings};
use crate::error::{AppError, AppResult};
use crate::store::Store;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The interim files, in the order they are imported.
const FILES: [&str; 3] = ["registry.json", "conversations.json", "settings.json"];

/// What the import did.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LegacyImport {
    /// Conversations imported.
    pub conversations: usize,
    /// Models imported.
    pub models: usize,
    /// Adapters imported.
    pub adapters: usize,
    /// Whether preferences were imported.
    pub settings: bool,
    /// The imported files, as renamed (plaintext copies the user may delete).
    pub renamed: Vec<PathBuf>,
    /// Files that could not be imported, with the reason (left untouched).
    pub problems: Vec<String>,
}

#[derive(Default, Deserialize)]
struct Book {
    #[serde(default)]
    conversations: Vec<Conversation>,
}

fn read<T: DeserializeOwned>(path: &Path) -> AppResult<T> {
    let bytes = std::fs::read(path).map_err(|e| AppError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| AppError::Corrupt { path: path.to_path_buf(), source })
}

/// Imports the interim files found in `data_dir`; `None` when there were none.
pub fn import_if_present(store: &Store, data_dir: &Path) -> AppResult<Option<LegacyImport>> {
    let present: Vec<PathBuf> = FILES.iter().map(|f| data_dir.join(f)).filter(|p| p.is_file()).collect();
    if present.is_empty() {
        return Ok(None);
    }
    let mut report = LegacyImport::default();
    for path in present {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let result = match name.as_str() {
            "registry.json" => import_registry(store, &path, &mut report),
            "conversations.json" => import_conversations(store, &path, &mut report),
            _ => import_settings(store, &path, &mut report),
        };
        match result {
            Ok(()) => {
                let renamed = path.with_file_name(format!("{name}.imported-{}", registry::now_ms()));
                std::fs::rename(&path, &renamed).map_err(|e| AppError::io(&path, e))?;
                tracing::warn!(
                    from = %path.display(), to = %renamed.display(),
                    "interim file imported into the encrypted store and renamed; it is a plaintext copy: delete it once you have checked the import"
                );
                report.renamed.push(renamed);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "interim file not imported; left as it is");
                report.problems.push(e.to_string());
            }
        }
    }
    Ok(Some(report))
}

fn import_registry(store: &Store, path: &Path, report: &mut LegacyImport) -> AppResult<()> {
    let old: Registry = read(path)?;
    let mut ids: HashMap<String, i64> = HashMap::new();
    for m in &old.models {
        let record = registry::upsert_model(store, &m.info)?;
        ids.insert(m.id.clone(), conversations::parse_id("model", &record.id)?);
        report.models += 1;
    }
    for a in &old.adapters {
        match ids.get(&a.base_id) {
            Some(&base) => {
                registry::upsert_adapter(store, base, &a.info, None)?;
                report.adapters += 1;
            }
            None => tracing::warn!(adapter = %a.info.name, "interim adapter skipped: its base model is not in the file"),
        }
    }
    Ok(())
}

fn import_conversations(store: &Store, path: &Path, report: &mut LegacyImport) -> AppResult<()> {
    let book: Book = read(path)?;
    report.conversations += conversations::import_legacy(store, &book.conversations, "conversations.json")?;
    Ok(())
}

fn import_settings(store: &Store, path: &Path, report: &mut LegacyImport) -> AppResult<()> {
    let s: Settings = read(path)?;
    settings::save_to(store, &s)?;
    report.settings = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::services::{conversations, models, settings, AppContext};

    #[test]
    fn interim_files_are_imported_once_and_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = std::env::var_os("DOCTORGLM_FIXTURES")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
        let model_dir = std::fs::canonicalize(fixtures.join("models/chatglm3-tiny")).unwrap();
        let info = crate::services::inspect::inspect_model(&model_dir, &|_| {}, &crate::services::CancelFlag::new()).unwrap();
        let adapter = crate::services::inspect::inspect_adapter(&model_dir.join("lora-adapter")).unwrap();
        let registry = serde_json::json!({
            "models": [{ "id": "model-1", "info": info, "importedAt": 5 }],
            "adapters": [{ "id": "adapter-1", "baseId": "model-1", "info": adapter, "importedAt": 6 }],
        });
        std::fs::write(dir.path().join("registry.json"), serde_json::to_vec(&registry).unwrap()).unwrap();
        let book = serde_json::json!({ "conversations": [{
            "id": "conv-1", "title": "旧的对话", "createdAt": 1000, "updatedAt": 3000,
            "messages": [
                { "id": "m1", "role": "user", "content": "胸痛两小时", "createdAt": 1000 },
                { "id": "m2", "role": "assistant", "content": "建议立即就医", "createdAt": 2000, "model": "chatglm3-tiny",
                  "timings": { "firstTokenMs": 10, "totalMs": 90, "tokens": 5 }, "stopped": true }
            ]
        }]});
        std::fs::write(dir.path().join("conversations.json"), serde_json::to_vec(&book).unwrap()).unwrap();
        std::fs::write(dir.path().join("settings.json"), br#"{"language":"en","device":"cpu","preset":"diverse"}"#).unwrap();

        let ctx = AppContext::open(dir.path()).unwrap();
        let report = ctx.legacy_import.clone().unwrap();
        assert_eq!((report.models, report.adapters, report.conversations, report.settings), (1, 1, 1, true), "{report:?}");
        assert!(report.problems.is_empty(), "{report:?}");
        assert_eq!(report.renamed.len(), 3);
        for f in ["registry.json", "conversations.json", "settings.json"] {
            assert!(!dir.path().join(f).exists(), "{f} renamed");
        }
        assert!(report.renamed.iter().all(|p| p.exists()), "nothing is deleted");

        let hits = conversations::list(&ctx, Some("胸痛")).unwrap();
        assert_eq!(hits.len(), 1);
        let c = conversations::get(&ctx, &hits[0].id).unwrap();
        assert_eq!((c.created_at, c.updated_at), (1000, 3000));
        assert!(c.messages[1].stopped);
        assert_eq!(c.messages[1].timings.as_ref().unwrap().tokens, 5);
        let reg = models::list(&ctx).unwrap();
        assert_eq!(reg.models.len(), 1);
        assert_eq!(reg.adapters.len(), 1);
        assert_eq!(reg.adapters[0].base_id, reg.models[0].id);
        assert_eq!(settings::load(&ctx).unwrap().language, settings::Language::English);
        drop(ctx);

        // A second start finds nothing more to import.
        let ctx = AppContext::open(dir.path()).unwrap();
        assert!(ctx.legacy_import.is_none());
        assert_eq!(conversations::list(&ctx, None).unwrap().len(), 1);
    }

    #[test]
    fn a_damaged_interim_file_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("conversations.json"), b"{not json").unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let report = ctx.legacy_import.clone().unwrap();
        assert_eq!(report.problems.len(), 1);
        assert!(report.problems[0].contains("damaged"), "{report:?}");
        assert_eq!(std::fs::read(dir.path().join("conversations.json")).unwrap(), b"{not json");
        assert!(conversations::list(&ctx, None).unwrap().is_empty());
    }
}
