//! The store seen from outside: where its key is kept (OS keyring, key file because no
//! keyring service answered — with the reason —, or a passphrase), where the database is,
//! how big it is; encrypted backup and restore with progress and cancel.
use super::legacy::LegacyImport;
use super::{AppContext, CancelFlag, Progress};
use crate::error::{AppError, AppResult};
use crate::store::{KeyStorage, StoreError};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What the Settings tab and `doctorglm store status` show.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    /// Where the database key is kept: `{kind: "keyring"}`, `{kind: "keyring_unavailable",
    /// reason, key_file}`, `{kind: "passphrase"}` or `{kind: "provided"}`.
    pub key: KeyStorage,
    /// The same as a sentence (English), for logs and the CLI.
    pub key_description: String,
    /// The database file.
    pub database: PathBuf,
    /// Its size on disk in bytes (database and write-ahead log).
    pub database_bytes: u64,
    /// Schema version.
    pub schema_version: usize,
    /// Conversations kept.
    pub conversations: usize,
    /// Messages kept.
    pub messages: usize,
    /// Answers a crash had left unfinished, marked interrupted when this process opened the store.
    pub recovered_messages: usize,
    /// What the one-time import of the interim JSON files did at this start, if anything.
    pub legacy_import: Option<LegacyImport>,
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The store's status.
pub fn status(ctx: &AppContext) -> AppResult<StoreStatus> {
    let store = ctx.store();
    let conversations = store.list_conversations()?;
    let database = store.path().to_path_buf();
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    Ok(StoreStatus {
        key: store.key_storage().clone(),
        key_description: store.key_storage().describe(),
        database_bytes: file_len(&database) + file_len(Path::new(&wal)),
        database,
        schema_version: store.schema_version()?,
        conversations: conversations.len(),
        messages: conversations.iter().map(|c| usize::try_from(c.message_count).unwrap_or(0)).sum(),
        recovered_messages: store.recovered_messages(),
        legacy_import: ctx.legacy_import.clone(),
    })
}

fn cancelled(e: StoreError) -> AppError {
    match e {
        StoreError::Cancelled => AppError::Cancelled,
        e => e.into(),
    }
}

/// Writes an encrypted backup (same key as the database) to `dest`, which must not exist.
/// Audited. Cancelling leaves nothing at `dest`.
pub fn backup(ctx: &AppContext, dest: &Path, progress: &dyn Fn(Progress), cancel: &CancelFlag) -> AppResult<()> {
    let store = ctx.store();
    store
        .backup_to_with(dest, &mut |p| {
            progress(Progress::new(p.copied as f32 / p.total.max(1) as f32, format!("{} of {} pages", p.copied, p.total)));
            !cancel.is_cancelled()
        })
        .map_err(cancelled)
}

/// Replaces the database's contents with a backup made with the same key (checked first);
/// the current database is first copied beside it. Returns that copy's path. Audited.
pub fn restore(ctx: &AppContext, src: &Path, progress: &dyn Fn(Progress)) -> AppResult<PathBuf> {
    let mut store = ctx.store();
    store
        .restore_from_with(src, &mut |p| {
            progress(Progress::new(p.copied as f32 / p.total.max(1) as f32, format!("{} of {} pages", p.copied, p.total)));
            true
        })
        .map_err(cancelled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::conversations;

    #[test]
    fn status_says_where_the_key_is_and_backup_restores() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let s = status(&ctx).unwrap();
        // On a machine with a keyring the key is there; without one (CI, headless) in a file,
        // with the reason. Either way it is said, and never "plaintext".
        match &s.key {
            KeyStorage::Keyring => {}
            KeyStorage::KeyringUnavailable { reason, key_file } => {
                assert!(!reason.is_empty());
                assert!(key_file.exists());
                assert!(s.key_description.contains("No system keyring"));
            }
            other => panic!("unexpected key storage {other:?}"),
        }
        assert_eq!(s.schema_version, crate::store::schema::LATEST_VERSION);
        assert!(s.database_bytes > 0);
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["key"]["kind"].is_string(), "{json}");

        let (a, _) = conversations::save_question(&ctx, None, "backup me").unwrap();
        let backup_file = dir.path().join("b.db");
        backup(&ctx, &backup_file, &|_| {}, &CancelFlag::new()).unwrap();
        assert!(backup(&ctx, &backup_file, &|_| {}, &CancelFlag::new()).is_err(), "a backup never overwrites");
        conversations::delete(&ctx, &a).unwrap();
        assert_eq!(status(&ctx).unwrap().conversations, 0);
        let before = restore(&ctx, &backup_file, &|_| {}).unwrap();
        assert!(before.exists());
        assert_eq!(conversations::list(&ctx, Some("backup")).unwrap().len(), 1);
    }
}
