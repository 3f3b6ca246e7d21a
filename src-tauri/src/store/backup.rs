//! Encrypted backup and restore with SQLite's online backup API. A backup is a copy of the
//! database encrypted with the same key; it is written beside its final name and renamed into
//! place only when complete. Restore checks the backup (key, integrity, schema version) and
//! keeps a copy of the current database before replacing it.

use std::path::{Path, PathBuf};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;
use serde::Serialize;

use super::audit::{self, AuditAction};
use super::connection;
use super::error::{Result, StoreError};
use super::keys::sync_dir;
use super::schema;
use super::time::now_ms;
use super::Store;

/// Pages copied per step of the backup API.
const PAGES_PER_STEP: std::os::raw::c_int = 128;

/// Progress of a backup or restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BackupProgress {
    /// Pages copied so far.
    pub copied: u64,
    /// Pages in all.
    pub total: u64,
}

/// Copies `from` into `to` step by step; `progress` returning false cancels.
fn copy(from: &Connection, to: &mut Connection, progress: &mut dyn FnMut(BackupProgress) -> bool) -> Result<()> {
    let backup = Backup::new(from, to)?;
    loop {
        let step = backup.step(PAGES_PER_STEP)?;
        let p = backup.progress();
        let total = u64::try_from(p.pagecount).unwrap_or(0);
        let copied = total.saturating_sub(u64::try_from(p.remaining).unwrap_or(0));
        match step {
            StepResult::Done => {
                progress(BackupProgress { copied: total, total });
                return Ok(());
            }
            StepResult::More => {
                if !progress(BackupProgress { copied, total }) {
                    return Err(StoreError::Cancelled);
                }
            }
            StepResult::Busy | StepResult::Locked => std::thread::sleep(std::time::Duration::from_millis(10)),
            _ => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}

fn remove_if_exists(path: &Path) {
    for p in [path.to_path_buf(), sidecar(path, "-wal"), sidecar(path, "-shm")] {
        let _ = std::fs::remove_file(p);
    }
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl Store {
    /// Writes an encrypted backup to `dest` (which must not exist yet).
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        self.backup_to_with(dest, &mut |_| true)
    }

    /// Like [`Store::backup_to`], reporting progress; `progress` returning false cancels (and
    /// nothing is left at `dest`).
    pub fn backup_to_with(&self, dest: &Path, progress: &mut dyn FnMut(BackupProgress) -> bool) -> Result<()> {
        self.write_backup(dest, progress)?;
        audit::record(
            &self.conn,
            AuditAction::Backup,
            "database",
            &serde_json::json!({ "to": dest.display().to_string() }),
        )?;
        Ok(())
    }

    fn write_backup(&self, dest: &Path, progress: &mut dyn FnMut(BackupProgress) -> bool) -> Result<()> {
        if dest.exists() {
            return Err(StoreError::Invalid(format!("{} already exists; choose a new name for the backup", dest.display())));
        }
        let mut tmp = dest.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        remove_if_exists(&tmp);
        let result = (|| -> Result<()> {
            let mut out = connection::open_keyed(&tmp, &self.secret, true)?;
            copy(&self.conn, &mut out, progress)?;
            connection::integrity_check(&out, &tmp)?;
            out.close().map_err(|(_, e)| StoreError::Sqlite(e))?;
            std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| StoreError::io(&tmp, e))?;
            std::fs::rename(&tmp, dest).map_err(|e| StoreError::io(dest, e))?;
            if let Some(dir) = dest.parent() {
                sync_dir(dir);
            }
            Ok(())
        })();
        if result.is_err() {
            remove_if_exists(&tmp);
        }
        result
    }

    /// Replaces the database's contents with the backup at `src` (made with the same key).
    /// The backup is checked first; the current database is first copied to
    /// `<database>.before-restore-<time>` in the same folder. Returns that copy's path.
    pub fn restore_from(&mut self, src: &Path) -> Result<PathBuf> {
        self.restore_from_with(src, &mut |_| true)
    }

    /// Like [`Store::restore_from`], reporting progress of the copy into the database.
    pub fn restore_from_with(&mut self, src: &Path, progress: &mut dyn FnMut(BackupProgress) -> bool) -> Result<PathBuf> {
        let source = connection::open_keyed(src, &self.secret, false)?;
        connection::integrity_check(&source, src)?;
        let version: i64 = source.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > schema::LATEST_VERSION {
            return Err(StoreError::TooNew { path: src.to_path_buf(), found: version, known: schema::LATEST_VERSION });
        }
        let mut safety = self.path.as_os_str().to_owned();
        safety.push(format!(".before-restore-{}", now_ms()));
        let safety = PathBuf::from(safety);
        self.write_backup(&safety, &mut |_| true)?;

        copy(&source, &mut self.conn, progress)?;
        drop(source);
        let mode: String = self.conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "restored database did not return to WAL mode");
        }
        connection::migrate(&mut self.conn, &self.path)?;
        self.recovered += connection::recover(&self.conn)?;
        self.conn.flush_prepared_statement_cache();
        audit::record(
            &self.conn,
            AuditAction::Restore,
            "database",
            &serde_json::json!({ "from": src.display().to_string(), "previous_copy": safety.display().to_string() }),
        )?;
        Ok(safety)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::{temp_store, test_key};
    use crate::store::{DbKey, KeySource, Store, StoreError};

    #[test]
    fn store_backup_and_restore_round_trip() {
        let (dir, mut store) = temp_store();
        let c = store.create_conversation("before backup").unwrap();
        store.append_user_message(c.id, "血压 150/95，需要用药吗？").unwrap();
        let backup = dir.path().join("backup.db");
        let mut steps = 0;
        store.backup_to_with(&backup, &mut |p| {
            steps += 1;
            p.copied <= p.total
        }).unwrap();
        assert!(steps > 0);
        assert!(store.backup_to(&backup).is_err(), "an existing backup is never overwritten");

        // The backup is encrypted with the same key and opens on its own.
        let copy = Store::open_file(&backup, KeySource::Key(test_key())).unwrap();
        assert_eq!(copy.list_conversations().unwrap().len(), 1);
        copy.check_integrity().unwrap();
        drop(copy);
        assert!(matches!(
            Store::open_file(&backup, KeySource::Key(DbKey::from_hex(&"11".repeat(32)).unwrap())),
            Err(StoreError::WrongKey { .. })
        ));

        store.delete_conversation(c.id).unwrap();
        store.create_conversation("after backup").unwrap();
        let safety = store.restore_from(&backup).unwrap();
        let titles: Vec<_> = store.list_conversations().unwrap().into_iter().map(|c| c.title).collect();
        assert_eq!(titles, vec!["before backup".to_string()]);
        assert_eq!(store.search("需要用药", 5).unwrap().len(), 1);
        store.check_integrity().unwrap();
        assert!(safety.exists());
        assert_eq!(store.audit_log(1).unwrap()[0].action, "restore");
        // The restored database survives a reopen.
        drop(store);
        let store = crate::store::test_support::reopen(&dir);
        assert_eq!(store.list_conversations().unwrap().len(), 1);
    }

    #[test]
    fn store_backup_cancel_leaves_nothing() {
        let (dir, store) = temp_store();
        let c = store.create_conversation("x").unwrap();
        let texts: Vec<String> = (0..1000).map(|i| format!("message {i} {}", "长文本".repeat(100))).collect();
        let batch: Vec<_> = texts.iter().map(|t| (crate::store::Role::User, t.as_str())).collect();
        store.append_messages(c.id, &batch).unwrap();
        let dest = dir.path().join("b.db");
        let r = store.backup_to_with(&dest, &mut |_| false);
        assert!(matches!(r, Err(StoreError::Cancelled)), "{r:?}");
        assert!(!dest.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("b.db")).collect();
        assert!(leftovers.is_empty());
    }
}
