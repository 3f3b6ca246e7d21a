//! The registry of base models and adapters (LoRA, P-tuning v2) the app can load.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditAction};
use super::error::{Result, StoreError};
use super::time::now_ms;
use super::Store;

/// A registered base model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Model {
    /// Identifier.
    pub id: i64,
    /// Unique name shown to the user.
    pub name: String,
    /// Model family (`chatglm-6b`, `chatglm2`, `chatglm3`, `glm4`).
    pub family: String,
    /// Folder or file of the weights.
    pub path: String,
    /// Quantization, if any.
    pub quantization: Option<String>,
    /// Checksum of the weights, if known.
    pub sha256: Option<String>,
    /// When it was registered, Unix milliseconds.
    pub added_at: i64,
    /// What the app's check found (architecture, sizes), if recorded.
    pub info: Option<serde_json::Value>,
}

/// A model to register.
#[derive(Debug, Clone, Default)]
pub struct NewModel {
    /// Unique name.
    pub name: String,
    /// Model family.
    pub family: String,
    /// Folder or file of the weights.
    pub path: String,
    /// Quantization, if any.
    pub quantization: Option<String>,
    /// Checksum, if known.
    pub sha256: Option<String>,
}

/// Kind of adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterKind {
    /// LoRA.
    Lora,
    /// P-tuning v2.
    Ptuning,
}

impl AdapterKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Lora => "lora",
            AdapterKind::Ptuning => "ptuning",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "lora" => Some(AdapterKind::Lora),
            "ptuning" => Some(AdapterKind::Ptuning),
            _ => None,
        }
    }
}

/// A registered adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adapter {
    /// Identifier.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// LoRA or P-tuning.
    pub kind: AdapterKind,
    /// The base model it was trained on, if registered.
    pub base_model_id: Option<i64>,
    /// The training run that made it, if any.
    pub training_run_id: Option<i64>,
    /// Folder of the adapter (PEFT format).
    pub path: String,
    /// When it was registered, Unix milliseconds.
    pub created_at: i64,
    /// What the app's check found (kind, rank, shapes), if recorded.
    pub info: Option<serde_json::Value>,
}

/// An adapter to register.
#[derive(Debug, Clone)]
pub struct NewAdapter {
    /// Unique name.
    pub name: String,
    /// LoRA or P-tuning.
    pub kind: AdapterKind,
    /// Base model.
    pub base_model_id: Option<i64>,
    /// Training run that made it.
    pub training_run_id: Option<i64>,
    /// Folder of the adapter.
    pub path: String,
}

/// The `info_json` column; damaged JSON reads as "not recorded" (the app checks the folder again).
fn info_column(r: &rusqlite::Row<'_>, i: usize) -> Option<serde_json::Value> {
    let text: Option<String> = r.get(i).ok().flatten();
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

impl Store {
    /// Registers a model (audited as an import). Names are unique.
    pub fn register_model(&self, m: &NewModel) -> Result<Model> {
        self.register_model_with_info(m, None)
    }

    /// Registers a model with what the app's check found about it (audited as an import).
    pub fn register_model_with_info(&self, m: &NewModel, info: Option<&serde_json::Value>) -> Result<Model> {
        let now = now_ms();
        let info_text = info.map(serde_json::to_string).transpose()?;
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO models (name, family, path, quantization, sha256, added_at, info_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![m.name, m.family, m.path, m.quantization, m.sha256, now, info_text],
        )
        .map_err(|e| {
            if unique_violation(&e) {
                StoreError::Invalid(format!("a model named '{}' is already registered", m.name))
            } else {
                e.into()
            }
        })?;
        let id = tx.last_insert_rowid();
        audit::record(&tx, AuditAction::Import, &format!("model {id}"), &serde_json::json!({ "name": m.name, "path": m.path }))?;
        tx.commit()?;
        Ok(Model {
            id,
            name: m.name.clone(),
            family: m.family.clone(),
            path: m.path.clone(),
            quantization: m.quantization.clone(),
            sha256: m.sha256.clone(),
            added_at: now,
            info: info.cloned(),
        })
    }

    /// Replaces what is recorded about a model's check (a re-import of the same folder).
    pub fn set_model_info(&self, id: i64, info: &serde_json::Value) -> Result<()> {
        let n = self.conn.execute("UPDATE models SET info_json = ?1 WHERE id = ?2", params![serde_json::to_string(info)?, id])?;
        if n == 0 {
            return Err(StoreError::Invalid(format!("model {id} is not registered")));
        }
        Ok(())
    }

    /// Replaces what is recorded about an adapter's check.
    pub fn set_adapter_info(&self, id: i64, info: &serde_json::Value) -> Result<()> {
        let n = self.conn.execute("UPDATE adapters SET info_json = ?1 WHERE id = ?2", params![serde_json::to_string(info)?, id])?;
        if n == 0 {
            return Err(StoreError::Invalid(format!("adapter {id} is not registered")));
        }
        Ok(())
    }

    /// All models, by name.
    pub fn list_models(&self) -> Result<Vec<Model>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, name, family, path, quantization, sha256, added_at, info_json FROM models ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(Model {
                id: r.get(0)?,
                name: r.get(1)?,
                family: r.get(2)?,
                path: r.get(3)?,
                quantization: r.get(4)?,
                sha256: r.get(5)?,
                added_at: r.get(6)?,
                info: info_column(r, 7),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes a model from the registry (not its files); adapters keep a null base model.
    pub fn remove_model(&self, id: i64) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        if tx.execute("DELETE FROM models WHERE id = ?1", [id])? == 0 {
            return Err(StoreError::Invalid(format!("model {id} is not registered")));
        }
        audit::record(&tx, AuditAction::Delete, &format!("model {id}"), &serde_json::json!({}))?;
        tx.commit()?;
        Ok(())
    }

    /// Registers an adapter (audited as an import). Names are unique.
    pub fn register_adapter(&self, a: &NewAdapter) -> Result<Adapter> {
        self.register_adapter_with_info(a, None)
    }

    /// Registers an adapter with what the app's check found about it (audited as an import).
    pub fn register_adapter_with_info(&self, a: &NewAdapter, info: Option<&serde_json::Value>) -> Result<Adapter> {
        let now = now_ms();
        let info_text = info.map(serde_json::to_string).transpose()?;
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO adapters (name, kind, base_model_id, training_run_id, path, created_at, info_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![a.name, a.kind.as_str(), a.base_model_id, a.training_run_id, a.path, now, info_text],
        )
        .map_err(|e| {
            if unique_violation(&e) {
                StoreError::Invalid(format!("an adapter named '{}' is already registered", a.name))
            } else {
                e.into()
            }
        })?;
        let id = tx.last_insert_rowid();
        audit::record(&tx, AuditAction::Import, &format!("adapter {id}"), &serde_json::json!({ "name": a.name, "path": a.path }))?;
        tx.commit()?;
        Ok(Adapter {
            id,
            name: a.name.clone(),
            kind: a.kind,
            base_model_id: a.base_model_id,
            training_run_id: a.training_run_id,
            path: a.path.clone(),
            created_at: now,
            info: info.cloned(),
        })
    }

    /// One adapter by name.
    pub fn adapter_by_name(&self, name: &str) -> Result<Option<Adapter>> {
        Ok(self.list_adapters()?.into_iter().find(|a| a.name == name))
    }

    /// All adapters, by name.
    pub fn list_adapters(&self) -> Result<Vec<Adapter>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, kind, base_model_id, training_run_id, path, created_at, info_json FROM adapters ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            let kind: String = r.get(2)?;
            Ok(Adapter {
                id: r.get(0)?,
                name: r.get(1)?,
                kind: AdapterKind::parse(&kind).unwrap_or(AdapterKind::Lora),
                base_model_id: r.get(3)?,
                training_run_id: r.get(4)?,
                path: r.get(5)?,
                created_at: r.get(6)?,
                info: info_column(r, 7),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes an adapter from the registry (not its files).
    pub fn remove_adapter(&self, id: i64) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let found: Option<i64> = tx.query_row("SELECT id FROM adapters WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        if found.is_none() {
            return Err(StoreError::Invalid(format!("adapter {id} is not registered")));
        }
        tx.execute("DELETE FROM adapters WHERE id = ?1", [id])?;
        audit::record(&tx, AuditAction::Delete, &format!("adapter {id}"), &serde_json::json!({}))?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    #[test]
    fn store_registry_models_and_adapters() {
        let (_dir, store) = temp_store();
        let m = store
            .register_model(&NewModel { name: "ChatGLM-6B".into(), family: "chatglm-6b".into(), path: "models/chatglm-6b".into(), ..Default::default() })
            .unwrap();
        assert!(store.register_model(&NewModel { name: "ChatGLM-6B".into(), family: "x".into(), path: "y".into(), ..Default::default() }).is_err());
        let a = store
            .register_adapter(&NewAdapter { name: "doctor".into(), kind: AdapterKind::Lora, base_model_id: Some(m.id), training_run_id: None, path: "adapters/doctor".into() })
            .unwrap();
        assert_eq!(store.list_models().unwrap(), vec![m.clone()]);
        assert_eq!(store.adapter_by_name("doctor").unwrap(), Some(a.clone()));
        store.remove_model(m.id).unwrap();
        assert_eq!(store.list_adapters().unwrap()[0].base_model_id, None, "adapter survives its base model's removal");
        store.remove_adapter(a.id).unwrap();
        assert!(store.list_adapters().unwrap().is_empty());
        let actions: Vec<_> = store.audit_log(10).unwrap().into_iter().map(|e| e.action).collect();
        assert_eq!(actions, vec!["delete", "delete", "import", "import"]);
    }
}
