//! Opening the database: key it before anything is read, refuse a wrong key without writing,
//! set the durability pragmas, migrate, and recover answers a crash left streaming.
//!
//! Durability: WAL with `synchronous = FULL`. In WAL mode `NORMAL` survives an application
//! crash but may lose the last commits on power loss; a committed message must survive both,
//! so every commit fsyncs the WAL. Streamed answers commit only every few hundred
//! milliseconds, so the cost is small (see the store benchmark).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::error::{Result, StoreError};
use super::grams;
use super::keys::{create_private_dir, ResolvedKey, Secret};
use super::schema;
use super::time::now_ms;
use super::Store;

/// Opens and prepares the store at `path`.
pub(crate) fn open(path: &Path, resolved: ResolvedKey) -> Result<Store> {
    let mut conn = open_keyed(path, &resolved.secret, true)?;
    check_not_too_new(&conn, path)?;
    prepare(&conn)?;
    migrate(&mut conn, path)?;
    let recovered = recover(&conn)?;
    if recovered > 0 {
        tracing::warn!(recovered, "answers left unfinished by a crash were marked interrupted");
    }
    Ok(Store { conn, path: path.to_path_buf(), secret: resolved.secret, key_storage: resolved.storage, recovered })
}

/// Opens `path` and applies the key; an existing file is opened without the create flag and a
/// wrong key is reported before anything is written. A missing file is created only when
/// `create` is true.
pub(crate) fn open_keyed(path: &Path, secret: &Secret, create: bool) -> Result<Connection> {
    let exists = path.exists();
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if !exists {
        if !create {
            return Err(StoreError::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| match e.sqlite_error_code() {
        Some(ErrorCode::CannotOpen) => StoreError::io(path, std::io::Error::other(e.to_string())),
        _ => StoreError::Sqlite(e),
    })?;
    // SQLCipher would print its own decryption errors on stderr; ours says it better.
    conn.pragma_update(None, "cipher_log_level", "NONE")?;
    conn.pragma_update(None, "key", secret.pragma_value().as_str())?;
    let cipher: Option<String> = conn.query_row("PRAGMA cipher_version", [], |r| r.get(0)).optional()?;
    if cipher.is_none_or(|c| c.is_empty()) {
        return Err(StoreError::NoEncryption);
    }
    // The first read decrypts page 1: a wrong key fails here, before any write.
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)) {
        Ok(_) => {}
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            return Err(StoreError::WrongKey { path: path.to_path_buf() });
        }
        Err(e) => return Err(e.into()),
    }
    conn.busy_timeout(Duration::from_secs(5))?;
    // The short-term index's triggers call it: before any write or migration.
    grams::register(&conn)?;
    Ok(conn)
}

/// Pragmas every connection of the store uses.
fn prepare(conn: &Connection) -> Result<()> {
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Invalid(format!("the database refused WAL journaling (got {mode})")));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted content is overwritten with zeros, not left in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    // Temporary tables and sort spills stay in memory, never in plaintext temp files.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// Brings the schema to the newest version; refuses databases from a newer build.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let found = check_not_too_new(conn, path)?;
    if found < schema::LATEST_VERSION {
        tracing::info!(from = found, to = schema::LATEST_VERSION, "migrating the store schema");
        schema::migrations().to_latest(conn)?;
    }
    Ok(())
}

/// The schema version, or [`StoreError::TooNew`] if a newer build wrote the database.
pub(crate) fn check_not_too_new(conn: &Connection, path: &Path) -> Result<usize> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let found = usize::try_from(found).unwrap_or(usize::MAX);
    if found > schema::LATEST_VERSION {
        return Err(StoreError::TooNew { path: path.to_path_buf(), found, known: schema::LATEST_VERSION });
    }
    Ok(found)
}

/// Marks work a crash interrupted: answers still `streaming`, training runs still `running`.
pub(crate) fn recover(conn: &Connection) -> Result<usize> {
    let now = now_ms();
    let messages = conn.execute(
        "UPDATE messages SET status = 'interrupted', updated_at = ?1 WHERE status = 'streaming'",
        [now],
    )?;
    conn.execute(
        "UPDATE training_runs SET status = 'interrupted', finished_at = ?1 WHERE status = 'running'",
        [now],
    )?;
    Ok(messages)
}

/// `PRAGMA integrity_check`, as a result.
pub(crate) fn integrity_check(conn: &Connection, path: &Path) -> Result<()> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let lines: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        Err(StoreError::Corrupt { path: path.to_path_buf(), detail: lines.join("; ") })
    }
}
