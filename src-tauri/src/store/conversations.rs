//! Conversations: create, list, rename, delete (deletion removes the text for good).

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::audit::AuditAction;
use super::error::{Result, StoreError};
use super::time::now_ms;
use super::Store;

/// Identifier of a conversation.
pub type ConversationId = i64;

/// A conversation as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conversation {
    /// Identifier.
    pub id: ConversationId,
    /// Title shown in the list.
    pub title: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Last change, Unix milliseconds.
    pub updated_at: i64,
    /// Number of messages.
    pub message_count: i64,
}

fn clean_title(title: &str) -> Result<String> {
    let title = title.trim();
    if title.is_empty() {
        return Err(StoreError::Invalid("a conversation title cannot be empty".into()));
    }
    Ok(title.chars().take(200).collect())
}

impl Store {
    /// Creates an empty conversation.
    pub fn create_conversation(&self, title: &str) -> Result<Conversation> {
        let title = clean_title(title)?;
        let now = now_ms();
        self.conn.execute(
            "INSERT INTO conversations (title, created_at, updated_at) VALUES (?1, ?2, ?2)",
            params![title, now],
        )?;
        let id = self.conn.last_insert_rowid();
        Ok(Conversation { id, title, created_at: now, updated_at: now, message_count: 0 })
    }

    /// One conversation.
    pub fn conversation(&self, id: ConversationId) -> Result<Conversation> {
        self.conn
            .query_row(
                "SELECT c.id, c.title, c.created_at, c.updated_at,
                        (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)
                 FROM conversations c WHERE c.id = ?1",
                [id],
                row_to_conversation,
            )
            .optional()?
            .ok_or(StoreError::ConversationNotFound(id))
    }

    /// All conversations, most recently changed first.
    pub fn list_conversations(&self) -> Result<Vec<Conversation>> {
        self.list_conversations_page(0, usize::MAX)
    }

    /// At most `limit` conversations after the first `offset`, most recently changed first
    /// (one page of the list).
    pub fn list_conversations_page(&self, offset: usize, limit: usize) -> Result<Vec<Conversation>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.id, c.title, c.created_at, c.updated_at,
                    (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)
             FROM conversations c ORDER BY c.updated_at DESC, c.id DESC LIMIT ?1 OFFSET ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let rows = stmt.query_map([limit, offset], row_to_conversation)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many conversations there are.
    pub fn count_conversations(&self) -> Result<usize> {
        let n: i64 = self.conn.query_row("SELECT count(*) FROM conversations", [], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Renames a conversation.
    pub fn rename_conversation(&self, id: ConversationId, title: &str) -> Result<()> {
        let title = clean_title(title)?;
        let n = self.conn.execute(
            "UPDATE conversations SET title = ?1, updated_at = ?2 WHERE id = ?3",
            params![title, now_ms(), id],
        )?;
        if n == 0 {
            return Err(StoreError::ConversationNotFound(id));
        }
        Ok(())
    }

    /// Deletes a conversation and its messages. The text is overwritten in the database
    /// (`secure_delete`), removed from the full-text index (FTS5 `secure-delete`) and the WAL is
    /// checkpointed and truncated so no old page copy stays behind. The audit entry records
    /// the deletion without the title or text.
    pub fn delete_conversation(&self, id: ConversationId) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let messages = tx.execute("DELETE FROM messages WHERE conversation_id = ?1", [id])?;
        let n = tx.execute("DELETE FROM conversations WHERE id = ?1", [id])?;
        if n == 0 {
            return Err(StoreError::ConversationNotFound(id));
        }
        super::audit::record(
            &tx,
            AuditAction::Delete,
            &format!("conversation {id}"),
            &serde_json::json!({ "messages": messages }),
        )?;
        tx.commit()?;
        self.checkpoint_truncate()?;
        Ok(())
    }

    /// Copies the WAL into the database and truncates it to zero bytes.
    pub(crate) fn checkpoint_truncate(&self) -> Result<()> {
        let (busy, _, _): (i64, i64, i64) =
            self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        if busy != 0 {
            tracing::warn!("WAL checkpoint could not finish (another reader); old pages stay until the next one");
        }
        Ok(())
    }
}

fn row_to_conversation(r: &rusqlite::Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: r.get(0)?,
        title: r.get(1)?,
        created_at: r.get(2)?,
        updated_at: r.get(3)?,
        message_count: r.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::temp_store;

    #[test]
    fn store_conversations_create_list_rename_delete() {
        let (_dir, store) = temp_store();
        let a = store.create_conversation("  头痛三天  ").unwrap();
        assert_eq!(a.title, "头痛三天");
        let b = store.create_conversation("Fever").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        store.append_user_message(a.id, "头痛三天了，怎么办？").unwrap();
        let list = store.list_conversations().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, a.id, "the conversation with the newest message comes first");
        assert_eq!(list[0].message_count, 1);
        store.rename_conversation(b.id, "Fever in a child").unwrap();
        assert_eq!(store.conversation(b.id).unwrap().title, "Fever in a child");
        assert!(store.rename_conversation(b.id, "   ").is_err());
        store.delete_conversation(a.id).unwrap();
        assert!(store.conversation(a.id).is_err());
        assert!(store.messages(a.id).unwrap().is_empty());
        assert!(store.delete_conversation(a.id).is_err());
        assert_eq!(store.list_conversations().unwrap().len(), 1);
    }

    #[test]
    fn store_conversations_page_through_the_list() {
        let (_dir, store) = temp_store();
        let ids: Vec<i64> = (0..7).map(|i| store.create_conversation(&format!("c{i}")).unwrap().id).collect();
        assert_eq!(store.count_conversations().unwrap(), 7);
        let all: Vec<i64> = store.list_conversations().unwrap().iter().map(|c| c.id).collect();
        let mut paged = Vec::new();
        for offset in (0..9).step_by(3) {
            let page = store.list_conversations_page(offset, 3).unwrap();
            assert!(page.len() <= 3);
            paged.extend(page.iter().map(|c| c.id));
        }
        assert_eq!(paged, all, "pages put together are the whole list, in order");
        assert_eq!(all.len(), ids.len());
        assert!(store.list_conversations_page(7, 3).unwrap().is_empty());
    }
}
