//! Messages: the user's message is committed before generation starts; the answer is streamed
//! into the store (begin → periodic updates → finish). A crash leaves the answer `streaming`,
//! and the next open marks it `interrupted`; committed user messages are never lost.

use std::time::{Duration, Instant};

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::conversations::ConversationId;
use super::error::{Result, StoreError};
use super::time::now_ms;
use super::Store;

/// Identifier of a message.
pub type MessageId = i64;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// System prompt.
    System,
    /// The doctor.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            _ => return None,
        })
    }
}

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// The answer is being generated.
    Streaming,
    /// Finished normally.
    Complete,
    /// Stopped by the user.
    Cancelled,
    /// Generation failed (see `error`).
    Error,
    /// The app stopped (crash, power loss) while the answer was being generated.
    Interrupted,
}

impl MessageStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Streaming => "streaming",
            MessageStatus::Complete => "complete",
            MessageStatus::Cancelled => "cancelled",
            MessageStatus::Error => "error",
            MessageStatus::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "streaming" => MessageStatus::Streaming,
            "complete" => MessageStatus::Complete,
            "cancelled" => MessageStatus::Cancelled,
            "error" => MessageStatus::Error,
            "interrupted" => MessageStatus::Interrupted,
            _ => return None,
        })
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Identifier.
    pub id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// Where it is in its life.
    pub status: MessageStatus,
    /// Why generation failed, for `Error`.
    pub error: Option<String>,
    /// Model that wrote the answer.
    pub model: Option<String>,
    /// Adapter that was active.
    pub adapter: Option<String>,
    /// Generation settings.
    pub settings: Option<serde_json::Value>,
    /// The prompt designer's keywords.
    pub keywords: Option<serde_json::Value>,
    /// The library sources the prompt designer used.
    pub sources: Option<serde_json::Value>,
    /// Prompt length in tokens.
    pub prompt_tokens: Option<i64>,
    /// Answer length in tokens.
    pub completion_tokens: Option<i64>,
    /// Time to the first token, milliseconds.
    pub first_token_ms: Option<i64>,
    /// Total generation time, milliseconds.
    pub total_ms: Option<i64>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Last change, Unix milliseconds.
    pub updated_at: i64,
}

/// What is known about an answer when generation starts.
#[derive(Debug, Clone, Default)]
pub struct AnswerMeta {
    /// Model name.
    pub model: Option<String>,
    /// Adapter name.
    pub adapter: Option<String>,
    /// Generation settings.
    pub settings: Option<serde_json::Value>,
    /// Prompt designer keywords.
    pub keywords: Option<serde_json::Value>,
    /// Prompt designer sources.
    pub sources: Option<serde_json::Value>,
}

/// How an answer ended.
#[derive(Debug, Clone)]
pub struct AnswerEnd {
    /// `Complete`, `Cancelled` or `Error`.
    pub status: MessageStatus,
    /// The final text.
    pub content: String,
    /// Error text for `Error`.
    pub error: Option<String>,
    /// Prompt length in tokens.
    pub prompt_tokens: Option<i64>,
    /// Answer length in tokens.
    pub completion_tokens: Option<i64>,
    /// Time to the first token, milliseconds.
    pub first_token_ms: Option<i64>,
    /// Total generation time, milliseconds.
    pub total_ms: Option<i64>,
}

impl AnswerEnd {
    /// A normal end with the final text.
    pub fn complete(content: impl Into<String>) -> Self {
        Self {
            status: MessageStatus::Complete,
            content: content.into(),
            error: None,
            prompt_tokens: None,
            completion_tokens: None,
            first_token_ms: None,
            total_ms: None,
        }
    }
}

const MESSAGE_COLUMNS: &str = "id, conversation_id, role, content, status, error, model, adapter, settings_json, \
     keywords_json, sources_json, prompt_tokens, completion_tokens, first_token_ms, total_ms, created_at, updated_at";

fn json_text(v: &Option<serde_json::Value>) -> Result<Option<String>> {
    Ok(match v {
        Some(v) => Some(serde_json::to_string(v)?),
        None => None,
    })
}

fn json_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    let text: Option<String> = r.get(i)?;
    match text {
        None => Ok(None),
        Some(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))),
    }
}

fn bad_value(i: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        Box::new(std::io::Error::other(format!("unknown {what} in the database"))),
    )
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let role: String = r.get(2)?;
    let status: String = r.get(4)?;
    Ok(Message {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        role: Role::parse(&role).ok_or_else(|| bad_value(2, "role"))?,
        content: r.get(3)?,
        status: MessageStatus::parse(&status).ok_or_else(|| bad_value(4, "status"))?,
        error: r.get(5)?,
        model: r.get(6)?,
        adapter: r.get(7)?,
        settings: json_column(r, 8)?,
        keywords: json_column(r, 9)?,
        sources: json_column(r, 10)?,
        prompt_tokens: r.get(11)?,
        completion_tokens: r.get(12)?,
        first_token_ms: r.get(13)?,
        total_ms: r.get(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
    })
}

impl Store {
    /// Appends the doctor's message and commits it (durably) before returning: call this
    /// before generation starts.
    pub fn append_user_message(&self, conversation: ConversationId, content: &str) -> Result<MessageId> {
        self.insert_message(conversation, Role::User, content, MessageStatus::Complete, &AnswerMeta::default())
    }

    /// Appends a finished message with any role (system prompts, imported history).
    pub fn append_message(&self, conversation: ConversationId, role: Role, content: &str) -> Result<MessageId> {
        self.insert_message(conversation, role, content, MessageStatus::Complete, &AnswerMeta::default())
    }

    /// Appends finished messages in one transaction (importing a conversation's history).
    pub fn append_messages(&self, conversation: ConversationId, messages: &[(Role, &str)]) -> Result<Vec<MessageId>> {
        let now = now_ms();
        let tx = self.conn.unchecked_transaction()?;
        let n = tx.execute("UPDATE conversations SET updated_at = ?1 WHERE id = ?2", params![now, conversation])?;
        if n == 0 {
            return Err(StoreError::ConversationNotFound(conversation));
        }
        let mut ids = Vec::with_capacity(messages.len());
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO messages (conversation_id, role, content, status, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'complete', ?4, ?4)",
            )?;
            for (role, content) in messages {
                stmt.execute(params![conversation, role.as_str(), content, now])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Starts an assistant answer (empty, `streaming`) and commits it.
    pub fn begin_answer(&self, conversation: ConversationId, meta: &AnswerMeta) -> Result<MessageId> {
        self.insert_message(conversation, Role::Assistant, "", MessageStatus::Streaming, meta)
    }

    fn insert_message(
        &self,
        conversation: ConversationId,
        role: Role,
        content: &str,
        status: MessageStatus,
        meta: &AnswerMeta,
    ) -> Result<MessageId> {
        let now = now_ms();
        let tx = self.conn.unchecked_transaction()?;
        let n = tx.execute("UPDATE conversations SET updated_at = ?1 WHERE id = ?2", params![now, conversation])?;
        if n == 0 {
            return Err(StoreError::ConversationNotFound(conversation));
        }
        tx.prepare_cached(
            "INSERT INTO messages (conversation_id, role, content, status, model, adapter, settings_json,
                                   keywords_json, sources_json, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        )?
        .execute(params![
            conversation,
            role.as_str(),
            content,
            status.as_str(),
            meta.model,
            meta.adapter,
            json_text(&meta.settings)?,
            json_text(&meta.keywords)?,
            json_text(&meta.sources)?,
            now
        ])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Saves the text generated so far of a streaming answer (one durable commit).
    pub fn update_answer(&self, id: MessageId, content: &str) -> Result<()> {
        let n = self
            .conn
            .prepare_cached("UPDATE messages SET content = ?1, updated_at = ?2 WHERE id = ?3 AND status = 'streaming'")?
            .execute(params![content, now_ms(), id])?;
        if n == 0 {
            return Err(self.not_streaming(id));
        }
        Ok(())
    }

    /// Finishes a streaming answer with its final text, status, token counts and timings.
    pub fn finish_answer(&self, id: MessageId, end: &AnswerEnd) -> Result<()> {
        if end.status == MessageStatus::Streaming {
            return Err(StoreError::Invalid("an answer cannot finish as 'streaming'".into()));
        }
        let n = self.conn.prepare_cached(
            "UPDATE messages SET content = ?1, status = ?2, error = ?3, prompt_tokens = ?4, completion_tokens = ?5,
                    first_token_ms = ?6, total_ms = ?7, updated_at = ?8
             WHERE id = ?9 AND status = 'streaming'",
        )?
        .execute(params![
            end.content,
            end.status.as_str(),
            end.error,
            end.prompt_tokens,
            end.completion_tokens,
            end.first_token_ms,
            end.total_ms,
            now_ms(),
            id
        ])?;
        if n == 0 {
            return Err(self.not_streaming(id));
        }
        Ok(())
    }

    fn not_streaming(&self, id: MessageId) -> StoreError {
        match self.message(id) {
            Ok(m) => StoreError::NotStreaming { id, status: m.status.as_str().into() },
            Err(e) => e,
        }
    }

    /// One message.
    pub fn message(&self, id: MessageId) -> Result<Message> {
        self.conn
            .query_row(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"), [id], row_to_message)
            .optional()?
            .ok_or(StoreError::MessageNotFound(id))
    }

    /// The messages of a conversation, oldest first.
    pub fn messages(&self, conversation: ConversationId) -> Result<Vec<Message>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([conversation], row_to_message)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes one message (regenerating an answer); the text is removed as for a
    /// conversation's deletion, and the audit entry names only the ids.
    pub fn delete_message(&self, id: MessageId) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let conversation: Option<ConversationId> =
            tx.query_row("SELECT conversation_id FROM messages WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        let conversation = conversation.ok_or(StoreError::MessageNotFound(id))?;
        tx.execute("DELETE FROM messages WHERE id = ?1", [id])?;
        super::audit::record(
            &tx,
            super::audit::AuditAction::Delete,
            &format!("message {id}"),
            &serde_json::json!({ "conversation": conversation }),
        )?;
        tx.commit()?;
        self.checkpoint_truncate()?;
        Ok(())
    }

    /// A writer that streams an answer into the store, committing at most every `interval`.
    pub fn answer_writer(&self, conversation: ConversationId, meta: &AnswerMeta, interval: Duration) -> Result<AnswerWriter<'_>> {
        let id = self.begin_answer(conversation, meta)?;
        Ok(AnswerWriter { store: self, id, text: String::new(), saved_len: 0, last_save: Instant::now(), interval, done: false })
    }
}

/// Streams one answer into the store: [`push`](AnswerWriter::push) tokens, then
/// [`finish`](AnswerWriter::finish). Dropped unfinished (an error path, a panic), it saves what
/// it has as `cancelled`.
pub struct AnswerWriter<'s> {
    store: &'s Store,
    id: MessageId,
    text: String,
    saved_len: usize,
    last_save: Instant,
    interval: Duration,
    done: bool,
}

impl AnswerWriter<'_> {
    /// The answer's message id.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Adds generated text; commits if `interval` has passed since the last commit.
    pub fn push(&mut self, delta: &str) -> Result<()> {
        self.text.push_str(delta);
        if self.last_save.elapsed() >= self.interval {
            self.save()?;
        }
        Ok(())
    }

    /// Commits the text so far now.
    pub fn save(&mut self) -> Result<()> {
        if self.text.len() != self.saved_len {
            self.store.update_answer(self.id, &self.text)?;
            self.saved_len = self.text.len();
        }
        self.last_save = Instant::now();
        Ok(())
    }

    /// Finishes the answer with the text pushed so far and `end`'s status, counts and timings
    /// (`end.content` is replaced by the pushed text).
    pub fn finish(mut self, mut end: AnswerEnd) -> Result<MessageId> {
        self.done = true;
        end.content = std::mem::take(&mut self.text);
        self.store.finish_answer(self.id, &end)?;
        Ok(self.id)
    }
}

impl Drop for AnswerWriter<'_> {
    fn drop(&mut self) {
        if !self.done {
            let end = AnswerEnd { status: MessageStatus::Cancelled, ..AnswerEnd::complete(std::mem::take(&mut self.text)) };
            if let Err(e) = self.store.finish_answer(self.id, &end) {
                tracing::warn!(id = self.id, error = %e, "could not mark an abandoned answer cancelled");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    #[test]
    fn store_messages_stream_an_answer() {
        let (_dir, store) = temp_store();
        let c = store.create_conversation("t").unwrap();
        let u = store.append_user_message(c.id, "咳嗽一周").unwrap();
        let meta = AnswerMeta {
            model: Some("chatglm-6b".into()),
            adapter: Some("doctor-lora".into()),
            settings: Some(serde_json::json!({"temperature": 0.7})),
            keywords: Some(serde_json::json!(["咳嗽"])),
            sources: Some(serde_json::json!([{"disease": "急性支气管炎"}])),
        };
        let mut w = store.answer_writer(c.id, &meta, Duration::ZERO).unwrap();
        let a = w.id();
        w.push("可能是").unwrap();
        assert_eq!(store.message(a).unwrap().content, "可能是");
        assert_eq!(store.message(a).unwrap().status, MessageStatus::Streaming);
        w.push("支气管炎。").unwrap();
        let end = AnswerEnd { completion_tokens: Some(7), total_ms: Some(1234), ..AnswerEnd::complete("") };
        w.finish(end).unwrap();
        let m = store.message(a).unwrap();
        assert_eq!(m.content, "可能是支气管炎。");
        assert_eq!(m.status, MessageStatus::Complete);
        assert_eq!(m.model.as_deref(), Some("chatglm-6b"));
        assert_eq!(m.keywords, meta.keywords);
        assert_eq!(m.completion_tokens, Some(7));
        assert!(matches!(store.update_answer(a, "x"), Err(StoreError::NotStreaming { .. })));
        let all = store.messages(c.id).unwrap();
        assert_eq!(all.iter().map(|m| m.id).collect::<Vec<_>>(), vec![u, a]);
        assert!(store.append_user_message(9999, "x").is_err());
    }

    #[test]
    fn store_messages_abandoned_writer_is_cancelled() {
        let (_dir, store) = temp_store();
        let c = store.create_conversation("t").unwrap();
        let id = {
            let mut w = store.answer_writer(c.id, &AnswerMeta::default(), Duration::from_secs(3600)).unwrap();
            w.push("partial").unwrap();
            w.id()
        };
        let m = store.message(id).unwrap();
        assert_eq!(m.status, MessageStatus::Cancelled);
        assert_eq!(m.content, "partial");
    }

    #[test]
    fn store_messages_streaming_answers_become_interrupted_on_reopen() {
        let (dir, store) = temp_store();
        let c = store.create_conversation("t").unwrap();
        let id = store.begin_answer(c.id, &AnswerMeta::default()).unwrap();
        store.update_answer(id, "half an ans").unwrap();
        drop(store);
        let store = crate::store::test_support::reopen(&dir);
        assert_eq!(store.recovered_messages(), 1);
        let m = store.message(id).unwrap();
        assert_eq!(m.status, MessageStatus::Interrupted);
        assert_eq!(m.content, "half an ans");
        assert_eq!(store.search("half an", 10).unwrap().len(), 1, "interrupted answers are searchable");
    }
}
