//! The audit log: imports, exports, deletions, trainings, settings changes, backups.
//! Entries name what was done to what, never the patient text itself.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use super::error::Result;
use super::time::now_ms;
use super::Store;

/// What kind of action an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// Data was imported (a dataset, a model, an adapter).
    Import,
    /// Data left the store (a conversation export).
    Export,
    /// Data was deleted.
    Delete,
    /// A training run started, ended or changed state.
    Training,
    /// A setting changed.
    Settings,
    /// A backup was written.
    Backup,
    /// The database was restored from a backup.
    Restore,
}

impl AuditAction {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Import => "import",
            AuditAction::Export => "export",
            AuditAction::Delete => "delete",
            AuditAction::Training => "training",
            AuditAction::Settings => "settings",
            AuditAction::Backup => "backup",
            AuditAction::Restore => "restore",
        }
    }
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Identifier (increasing).
    pub id: i64,
    /// When, Unix milliseconds.
    pub at: i64,
    /// The action, as stored (`import`, `export`, ...).
    pub action: String,
    /// What it was done to (`conversation 12`, `setting theme`, ...).
    pub subject: String,
    /// Details.
    pub detail: serde_json::Value,
}

/// Writes an entry on `conn` (inside the caller's transaction, if any).
pub(crate) fn record(conn: &Connection, action: AuditAction, subject: &str, detail: &serde_json::Value) -> Result<()> {
    conn.prepare_cached("INSERT INTO audit_log (at, action, subject, detail_json) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![now_ms(), action.as_str(), subject, serde_json::to_string(detail)?])?;
    Ok(())
}

impl Store {
    /// Adds an audit entry (for actions recorded outside the store, e.g. a training job).
    pub fn audit(&self, action: AuditAction, subject: &str, detail: &serde_json::Value) -> Result<()> {
        record(&self.conn, action, subject, detail)
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let mut stmt =
            self.conn.prepare_cached("SELECT id, at, action, subject, detail_json FROM audit_log ORDER BY id DESC LIMIT ?1")?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            let detail: String = r.get(4)?;
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                action: r.get(2)?,
                subject: r.get(3)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    #[test]
    fn store_audit_records_deletions_without_text() {
        let (_dir, store) = temp_store();
        let c = store.create_conversation("秘密标题").unwrap();
        store.append_user_message(c.id, "秘密内容").unwrap();
        store.delete_conversation(c.id).unwrap();
        store.audit(AuditAction::Training, "run 1", &serde_json::json!({"status": "completed"})).unwrap();
        let log = store.audit_log(10).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].action, "training");
        assert_eq!(log[1].action, "delete");
        assert_eq!(log[1].subject, format!("conversation {}", c.id));
        assert_eq!(log[1].detail["messages"], 1);
        let all = serde_json::to_string(&log).unwrap();
        assert!(!all.contains("秘密"));
    }
}
