//! The database schema and its migrations (`rusqlite_migration`, version in `PRAGMA user_version`).
//!
//! Each entry of [`all`] moves the schema one version up inside one transaction. Never
//! edit a migration that has shipped: add a new one, and extend the migration tests.

use rusqlite_migration::{HookResult, Migrations, M};

/// Version 1: conversations and messages with full-text search, model/adapter registry,
/// datasets and training runs, audit log, settings.
const V1: &str = r#"
CREATE TABLE conversations (
    id          INTEGER PRIMARY KEY,
    title       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,          -- Unix milliseconds, UTC
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE messages (
    id                 INTEGER PRIMARY KEY,
    conversation_id    INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role               TEXT    NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content            TEXT    NOT NULL,
    status             TEXT    NOT NULL
                       CHECK (status IN ('streaming', 'complete', 'cancelled', 'error', 'interrupted')),
    error              TEXT,
    model              TEXT,
    adapter            TEXT,
    settings_json      TEXT,               -- generation settings
    keywords_json      TEXT,               -- prompt designer: keywords
    sources_json       TEXT,               -- prompt designer: library sources
    prompt_tokens      INTEGER,
    completion_tokens  INTEGER,
    first_token_ms     INTEGER,
    total_ms           INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming';

-- Full-text index over finished messages (trigram: substring search that works for Chinese).
-- External content: the text lives once, in messages; the triggers keep the index in step and
-- leave messages out while they are still streaming (no re-indexing on every update).
CREATE VIRTUAL TABLE messages_fts USING fts5(
    content, content = 'messages', content_rowid = 'id', tokenize = 'trigram'
);
-- Deleted rows are removed from the index itself, not only marked (deletion removes the text).
INSERT INTO messages_fts(messages_fts, rank) VALUES ('secure-delete', 1);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
WHEN new.status <> 'streaming' BEGIN
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.status <> 'streaming' BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, status ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content)
        SELECT 'delete', old.id, old.content WHERE old.status <> 'streaming';
    INSERT INTO messages_fts(rowid, content)
        SELECT new.id, new.content WHERE new.status <> 'streaming';
END;

CREATE TABLE models (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    family        TEXT    NOT NULL,        -- chatglm-6b, chatglm2, chatglm3, glm4
    path          TEXT    NOT NULL,
    quantization  TEXT,
    sha256        TEXT,
    added_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE datasets (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    source        TEXT,                    -- where it was imported from
    format        TEXT    NOT NULL,
    records       INTEGER NOT NULL,
    deidentified  INTEGER NOT NULL CHECK (deidentified IN (0, 1)),
    sha256        TEXT,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE training_runs (
    id             INTEGER PRIMARY KEY,
    dataset_id     INTEGER REFERENCES datasets(id) ON DELETE SET NULL,
    base_model_id  INTEGER REFERENCES models(id) ON DELETE SET NULL,
    method         TEXT    NOT NULL CHECK (method IN ('lora', 'ptuning')),
    config_json    TEXT    NOT NULL,
    status         TEXT    NOT NULL
                   CHECK (status IN ('queued', 'running', 'paused', 'completed', 'failed', 'cancelled', 'interrupted')),
    error          TEXT,
    output_path    TEXT,
    created_at     INTEGER NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER
) STRICT;

CREATE TABLE training_metrics (
    run_id         INTEGER NOT NULL REFERENCES training_runs(id) ON DELETE CASCADE,
    step           INTEGER NOT NULL,
    epoch          REAL,
    loss           REAL,
    eval_loss      REAL,
    learning_rate  REAL,
    at             INTEGER NOT NULL,
    PRIMARY KEY (run_id, step)
) STRICT;

CREATE TABLE adapters (
    id               INTEGER PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE,
    kind             TEXT    NOT NULL CHECK (kind IN ('lora', 'ptuning')),
    base_model_id    INTEGER REFERENCES models(id) ON DELETE SET NULL,
    training_run_id  INTEGER REFERENCES training_runs(id) ON DELETE SET NULL,
    path             TEXT    NOT NULL,
    created_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    action       TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    detail_json  TEXT    NOT NULL
) STRICT;

CREATE TABLE settings (
    key         TEXT PRIMARY KEY,
    value_json  TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
"#;

/// Version 2: what the app's check found about a model or adapter (architecture, sizes,
/// memory need, adapter shapes) kept as JSON beside the registry row.
const V2: &str = r#"
ALTER TABLE models ADD COLUMN info_json TEXT;
ALTER TABLE adapters ADD COLUMN info_json TEXT;
"#;

/// Version 3: an index for search terms of one or two CJK characters (痒, 肺癌), which the
/// trigram index cannot answer. A contentless FTS5 table over the CJK unigrams and bigrams of
/// each finished message (made by the SQL function `doctorglm_cjk_grams`, see `grams`), kept
/// in step by triggers like `messages_fts`; `detail = none` (no positions: only "which
/// messages hold this token") keeps it small. Deleting a message deletes its tokens with
/// FTS5's `delete` command and the same tokens (recomputed from the old text), so that
/// `secure-delete` removes them from the index pages (`contentless_delete = 1` would only
/// record a tombstone and leave the tokens in place). Existing messages are indexed by the
/// migration's hook ([`backfill_grams`]), in the migration's transaction.
const V3: &str = r#"
CREATE VIRTUAL TABLE messages_grams USING fts5(
    grams, content = '', detail = none, tokenize = 'ascii'
);
INSERT INTO messages_grams(messages_grams, rank) VALUES ('secure-delete', 1);

CREATE TRIGGER messages_grams_insert AFTER INSERT ON messages
WHEN new.status <> 'streaming' BEGIN
    INSERT INTO messages_grams(rowid, grams)
        SELECT new.id, g FROM (SELECT doctorglm_cjk_grams(new.content) AS g) WHERE g <> '';
END;
CREATE TRIGGER messages_grams_delete AFTER DELETE ON messages
WHEN old.status <> 'streaming' BEGIN
    INSERT INTO messages_grams(messages_grams, rowid, grams)
        SELECT 'delete', old.id, g FROM (SELECT doctorglm_cjk_grams(old.content) AS g) WHERE g <> '';
END;
CREATE TRIGGER messages_grams_update AFTER UPDATE OF content, status ON messages
WHEN old.status <> 'streaming' OR new.status <> 'streaming' BEGIN
    INSERT INTO messages_grams(messages_grams, rowid, grams)
        SELECT 'delete', old.id, g FROM (SELECT doctorglm_cjk_grams(old.content) AS g)
        WHERE g <> '' AND old.status <> 'streaming';
    INSERT INTO messages_grams(rowid, grams)
        SELECT new.id, g FROM (SELECT doctorglm_cjk_grams(new.content) AS g)
        WHERE g <> '' AND new.status <> 'streaming';
END;
"#;

/// Version 4: the short-term index also answers one or two ASCII letters or digits (BP, CT,
/// X光), which v3 left to a scan of every message. The v3 table and triggers are dropped and
/// rebuilt over `doctorglm_short_grams` (see `grams::short_grams`); the hook
/// ([`backfill_short_grams`]) indexes the existing messages again.
const V4: &str = r#"
DROP TRIGGER messages_grams_insert;
DROP TRIGGER messages_grams_delete;
DROP TRIGGER messages_grams_update;
DROP TABLE messages_grams;

CREATE VIRTUAL TABLE messages_grams USING fts5(
    grams, content = '', detail = none, tokenize = 'ascii'
);
INSERT INTO messages_grams(messages_grams, rank) VALUES ('secure-delete', 1);

CREATE TRIGGER messages_grams_insert AFTER INSERT ON messages
WHEN new.status <> 'streaming' BEGIN
    INSERT INTO messages_grams(rowid, grams)
        SELECT new.id, g FROM (SELECT doctorglm_short_grams(new.content) AS g) WHERE g <> '';
END;
CREATE TRIGGER messages_grams_delete AFTER DELETE ON messages
WHEN old.status <> 'streaming' BEGIN
    INSERT INTO messages_grams(messages_grams, rowid, grams)
        SELECT 'delete', old.id, g FROM (SELECT doctorglm_short_grams(old.content) AS g) WHERE g <> '';
END;
CREATE TRIGGER messages_grams_update AFTER UPDATE OF content, status ON messages
WHEN old.status <> 'streaming' OR new.status <> 'streaming' BEGIN
    INSERT INTO messages_grams(messages_grams, rowid, grams)
        SELECT 'delete', old.id, g FROM (SELECT doctorglm_short_grams(old.content) AS g)
        WHERE g <> '' AND old.status <> 'streaming';
    INSERT INTO messages_grams(rowid, grams)
        SELECT new.id, g FROM (SELECT doctorglm_short_grams(new.content) AS g)
        WHERE g <> '' AND new.status <> 'streaming';
END;
"#;

/// Messages indexed per statement by [`backfill_grams`] (one progress line each).
const BACKFILL_CHUNK: i64 = 20_000;

/// Fills `messages_grams` for the messages already in the database, in chunks of ids, with a
/// progress line per chunk (a big database takes seconds). Runs inside the v3 migration's
/// transaction: a crash part way leaves the database at v2, and the next open starts again.
fn backfill_grams(tx: &rusqlite::Transaction<'_>) -> HookResult {
    backfill_with(tx, super::grams::FUNCTION)
}

/// [`backfill_grams`] for v4, with its token function.
fn backfill_short_grams(tx: &rusqlite::Transaction<'_>) -> HookResult {
    backfill_with(tx, super::grams::FUNCTION_V4)
}

fn backfill_with(tx: &rusqlite::Transaction<'_>, function: &str) -> HookResult {
    let (max_id, total): (i64, i64) = tx.query_row(
        "SELECT coalesce(max(id), 0), count(*) FROM messages WHERE status <> 'streaming'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if total == 0 {
        return Ok(());
    }
    let mut stmt = tx.prepare(&format!(
        "INSERT INTO messages_grams(rowid, grams)
         SELECT id, g FROM (SELECT id, {function}(content) AS g FROM messages
                            WHERE status <> 'streaming' AND id > ?1 AND id <= ?2)
         WHERE g <> ''"
    ))?;
    let mut count = tx.prepare("SELECT count(*) FROM messages WHERE status <> 'streaming' AND id <= ?1")?;
    let mut low = 0;
    while low < max_id {
        let high = low.saturating_add(BACKFILL_CHUNK);
        stmt.execute([low, high])?;
        let done: i64 = count.query_row([high], |r| r.get(0))?;
        tracing::info!(done, total, "indexing short search terms of existing messages");
        low = high;
    }
    Ok(())
}

/// All migrations, oldest first. Index `i` takes the schema from version `i` to `i + 1`.
pub fn all() -> Vec<M<'static>> {
    vec![
        M::up(V1).foreign_key_check(),
        M::up(V2).foreign_key_check(),
        M::up_with_hook(V3, backfill_grams).foreign_key_check(),
        M::up_with_hook(V4, backfill_short_grams).foreign_key_check(),
    ]
}

/// The newest schema version this build knows (the length of [`all`]).
pub const LATEST_VERSION: usize = 4;

/// The migrations as `rusqlite_migration` wants them.
pub fn migrations() -> Migrations<'static> {
    Migrations::new(all())
}

#[cfg(test)]
mod tests {
    #[test]
    fn store_migrations_are_valid() {
        super::migrations().validate().unwrap();
    }

    #[test]
    fn store_latest_version_counts_the_migrations() {
        assert_eq!(super::all().len(), super::LATEST_VERSION);
    }
}
