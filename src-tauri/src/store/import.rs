//! Importing history written elsewhere (the app's interim JSON files, other tools): a whole
//! conversation with its timestamps and answer details, in one transaction, audited.

use rusqlite::params;

use super::audit::{self, AuditAction};
use super::conversations::ConversationId;
use super::error::{Result, StoreError};
use super::messages::{MessageStatus, Role};
use super::Store;

/// One message of a conversation being imported.
#[derive(Debug, Clone)]
pub struct ImportedMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// `Complete`, `Cancelled`, `Error` or `Interrupted` (never `Streaming`).
    pub status: MessageStatus,
    /// When it was written, Unix milliseconds.
    pub created_at: i64,
    /// Model that wrote an answer.
    pub model: Option<String>,
    /// Adapter that was active.
    pub adapter: Option<String>,
    /// Generation settings.
    pub settings: Option<serde_json::Value>,
    /// Prompt designer keywords.
    pub keywords: Option<serde_json::Value>,
    /// Prompt designer sources.
    pub sources: Option<serde_json::Value>,
    /// Answer length in tokens.
    pub completion_tokens: Option<i64>,
    /// Time to the first token, milliseconds.
    pub first_token_ms: Option<i64>,
    /// Total generation time, milliseconds.
    pub total_ms: Option<i64>,
}

impl ImportedMessage {
    /// A finished message with only a role, text and time.
    pub fn new(role: Role, content: impl Into<String>, created_at: i64) -> Self {
        Self {
            role,
            content: content.into(),
            status: MessageStatus::Complete,
            created_at,
            model: None,
            adapter: None,
            settings: None,
            keywords: None,
            sources: None,
            completion_tokens: None,
            first_token_ms: None,
            total_ms: None,
        }
    }
}

fn json_text(v: &Option<serde_json::Value>) -> Result<Option<String>> {
    v.as_ref().map(serde_json::to_string).transpose().map_err(Into::into)
}

impl Store {
    /// Imports a conversation with its messages and timestamps in one transaction (all or
    /// nothing), recorded in the audit log as an import from `source`.
    pub fn import_conversation(
        &self,
        title: &str,
        created_at: i64,
        updated_at: i64,
        messages: &[ImportedMessage],
        source: &str,
    ) -> Result<ConversationId> {
        let title = title.trim();
        let title: String = if title.is_empty() { "Imported conversation".into() } else { title.chars().take(200).collect() };
        if messages.iter().any(|m| m.status == MessageStatus::Streaming) {
            return Err(StoreError::Invalid("an imported message cannot be 'streaming'".into()));
        }
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO conversations (title, created_at, updated_at) VALUES (?1, ?2, ?3)",
            params![title, created_at, updated_at.max(created_at)],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO messages (conversation_id, role, content, status, model, adapter, settings_json,
                                       keywords_json, sources_json, completion_tokens, first_token_ms, total_ms,
                                       created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
            )?;
            for m in messages {
                stmt.execute(params![
                    id,
                    m.role.as_str(),
                    m.content,
                    m.status.as_str(),
                    m.model,
                    m.adapter,
                    json_text(&m.settings)?,
                    json_text(&m.keywords)?,
                    json_text(&m.sources)?,
                    m.completion_tokens,
                    m.first_token_ms,
                    m.total_ms,
                    m.created_at
                ])?;
            }
        }
        audit::record(
            &tx,
            AuditAction::Import,
            &format!("conversation {id}"),
            &serde_json::json!({ "messages": messages.len(), "from": source }),
        )?;
        tx.commit()?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    #[test]
    fn store_import_keeps_times_details_and_is_searchable() {
        let (_dir, store) = temp_store();
        let mut answer = ImportedMessage::new(Role::Assistant, "建议测量血压并低盐饮食", 2_000);
        answer.model = Some("chatglm3-tiny".into());
        answer.status = MessageStatus::Cancelled;
        answer.total_ms = Some(1500);
        let msgs = [ImportedMessage::new(Role::User, "高血压怎么办", 1_000), answer];
        let id = store.import_conversation("高血压", 1_000, 2_000, &msgs, "conversations.json").unwrap();
        let c = store.conversation(id).unwrap();
        assert_eq!((c.created_at, c.updated_at, c.message_count), (1_000, 2_000, 2));
        let m = store.messages(id).unwrap();
        assert_eq!(m[1].status, MessageStatus::Cancelled);
        assert_eq!(m[1].created_at, 2_000);
        assert_eq!(m[1].model.as_deref(), Some("chatglm3-tiny"));
        assert_eq!(store.search("低盐饮食", 5).unwrap().len(), 1);
        assert_eq!(store.audit_log(1).unwrap()[0].action, "import");
        let mut bad = ImportedMessage::new(Role::Assistant, "x", 1);
        bad.status = MessageStatus::Streaming;
        assert!(store.import_conversation("t", 1, 1, &[bad], "x").is_err());
        assert_eq!(store.list_conversations().unwrap().len(), 1, "a refused import leaves nothing");
    }
}
