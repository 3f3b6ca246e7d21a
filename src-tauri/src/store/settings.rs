//! Settings: JSON values under string keys. Every change is written to the audit log.

use rusqlite::{params, OptionalExtension};
use serde::{de::DeserializeOwned, Serialize};

use super::audit::{self, AuditAction};
use super::error::Result;
use super::time::now_ms;
use super::Store;

impl Store {
    /// The setting `key`, if set.
    pub fn setting<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let text: Option<String> = self
            .conn
            .query_row("SELECT value_json FROM settings WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        match text {
            None => Ok(None),
            Some(t) => Ok(Some(serde_json::from_str(&t)?)),
        }
    }

    /// Sets `key` to `value`; the change (old and new value) goes to the audit log.
    pub fn set_setting<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let new = serde_json::to_value(value)?;
        let tx = self.conn.unchecked_transaction()?;
        let old: Option<String> =
            tx.query_row("SELECT value_json FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional()?;
        let old: serde_json::Value = old.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(serde_json::Value::Null);
        if old == new {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO settings (key, value_json, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET value_json = excluded.value_json, updated_at = excluded.updated_at",
            params![key, serde_json::to_string(&new)?, now_ms()],
        )?;
        audit::record(&tx, AuditAction::Settings, &format!("setting {key}"), &serde_json::json!({ "old": old, "new": new }))?;
        tx.commit()?;
        Ok(())
    }

    /// Removes the setting `key` (audited).
    pub fn remove_setting(&self, key: &str) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        if tx.execute("DELETE FROM settings WHERE key = ?1", [key])? > 0 {
            audit::record(&tx, AuditAction::Settings, &format!("setting {key}"), &serde_json::json!({ "removed": true }))?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::temp_store;

    #[test]
    fn store_settings_round_trip_and_audit() {
        let (_dir, store) = temp_store();
        assert_eq!(store.setting::<f64>("temperature").unwrap(), None);
        store.set_setting("temperature", &0.7).unwrap();
        store.set_setting("temperature", &0.7).unwrap();
        store.set_setting("temperature", &0.9).unwrap();
        assert_eq!(store.setting::<f64>("temperature").unwrap(), Some(0.9));
        let log = store.audit_log(10).unwrap();
        assert_eq!(log.len(), 2, "an unchanged value is not a change");
        assert_eq!(log[0].detail["old"], 0.7);
        assert_eq!(log[0].detail["new"], 0.9);
        store.remove_setting("temperature").unwrap();
        assert_eq!(store.setting::<f64>("temperature").unwrap(), None);
        assert!(store.setting::<String>("temperature").is_ok());
    }
}
