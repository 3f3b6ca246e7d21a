//! Conversations and their messages: create, append, list with search, export.
//!
//! Interim storage: one `conversations.json` in the data folder, until the encrypted store
//! (`crate::store`) takes over behind these same functions.
use super::designer::Sources;
use super::generation::GenerationSettings;
use super::registry::{new_id, now_ms};
use super::{jsonfile, AppContext};
use crate::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Mutex;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The doctor.
    User,
    /// The model.
    Assistant,
}

/// One message, with what produced it when it is an answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Stable id.
    pub id: String,
    /// Who wrote it.
    pub role: Role,
    /// The text (Markdown for answers; shown sanitized).
    pub content: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// The designer's keywords, diseases and sections behind an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Sources>,
    /// Model name used for an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Adapter name used for an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// Generation settings used for an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<GenerationSettings>,
    /// Milliseconds to the first token and in all, for an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// Whether the answer was stopped before its end.
    #[serde(default)]
    pub stopped: bool,
}

/// How long an answer took.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// Milliseconds until the first token.
    pub first_token_ms: u64,
    /// Milliseconds in all.
    pub total_ms: u64,
    /// Tokens generated.
    pub tokens: u64,
}

/// A conversation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    /// Stable id.
    pub id: String,
    /// Title (the first question, shortened).
    pub title: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Last change.
    pub updated_at: u64,
    /// Messages, oldest first.
    pub messages: Vec<Message>,
}

/// A conversation in a list, without its messages.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSummary {
    /// Stable id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Last change.
    pub updated_at: u64,
    /// Number of messages.
    pub message_count: usize,
    /// A piece of the text that matched the search, if searching.
    pub snippet: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct Book {
    conversations: Vec<Conversation>,
}

static LOCK: Mutex<()> = Mutex::new(());

fn path(ctx: &AppContext) -> PathBuf {
    ctx.data_dir().join("conversations.json")
}

fn with_book<T>(ctx: &AppContext, write: bool, f: impl FnOnce(&mut Book) -> AppResult<T>) -> AppResult<T> {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut book: Book = jsonfile::load_or_default(&path(ctx))?;
    let out = f(&mut book)?;
    if write {
        jsonfile::save(&path(ctx), &book)?;
    }
    Ok(out)
}

fn title_of(question: &str) -> String {
    let line = question.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let mut title: String = line.chars().take(40).collect();
    if line.chars().count() > 40 {
        title.push('…');
    }
    if title.is_empty() {
        "New conversation".into()
    } else {
        title
    }
}

/// A new message (not yet saved).
pub fn new_message(role: Role, content: impl Into<String>) -> Message {
    Message {
        id: new_id("msg"),
        role,
        content: content.into(),
        created_at: now_ms(),
        sources: None,
        model: None,
        adapter: None,
        settings: None,
        timings: None,
        stopped: false,
    }
}

/// Appends a message to a conversation, creating the conversation when `conversation_id` is None.
/// Returns the conversation's id.
pub fn append(ctx: &AppContext, conversation_id: Option<&str>, message: Message) -> AppResult<String> {
    with_book(ctx, true, |book| {
        let now = now_ms();
        let conv = match conversation_id {
            Some(id) => book
                .conversations
                .iter_mut()
                .find(|c| c.id == id)
                .ok_or_else(|| AppError::NotFound(format!("conversation {id}")))?,
            None => {
                book.conversations.push(Conversation {
                    id: new_id("conv"),
                    title: title_of(&message.content),
                    created_at: now,
                    updated_at: now,
                    messages: Vec::new(),
                });
                book.conversations.last_mut().ok_or_else(|| AppError::Invalid("no conversation".into()))?
            }
        };
        conv.updated_at = now;
        conv.messages.push(message);
        Ok(conv.id.clone())
    })
}

/// Removes the last answer of a conversation (for "regenerate") and returns the question before it.
pub fn pop_last_answer(ctx: &AppContext, conversation_id: &str) -> AppResult<String> {
    with_book(ctx, true, |book| {
        let conv = book
            .conversations
            .iter_mut()
            .find(|c| c.id == conversation_id)
            .ok_or_else(|| AppError::NotFound(format!("conversation {conversation_id}")))?;
        if conv.messages.last().is_some_and(|m| m.role == Role::Assistant) {
            conv.messages.pop();
        }
        let question = conv
            .messages
            .pop()
            .filter(|m| m.role == Role::User)
            .ok_or_else(|| AppError::Invalid("there is no question to answer again".into()))?;
        Ok(question.content)
    })
}

/// One conversation with its messages.
pub fn get(ctx: &AppContext, id: &str) -> AppResult<Conversation> {
    with_book(ctx, false, |book| {
        book.conversations.iter().find(|c| c.id == id).cloned().ok_or_else(|| AppError::NotFound(format!("conversation {id}")))
    })
}

/// Deletes a conversation.
pub fn delete(ctx: &AppContext, id: &str) -> AppResult<()> {
    with_book(ctx, true, |book| {
        let before = book.conversations.len();
        book.conversations.retain(|c| c.id != id);
        if book.conversations.len() == before {
            return Err(AppError::NotFound(format!("conversation {id}")));
        }
        Ok(())
    })
}

/// Conversations, newest first; with a query, only those whose title or messages contain every
/// word of it (case-insensitive), with a snippet around the first match.
pub fn list(ctx: &AppContext, query: Option<&str>) -> AppResult<Vec<ConversationSummary>> {
    let words: Vec<String> = query.unwrap_or("").split_whitespace().map(str::to_lowercase).collect();
    with_book(ctx, false, |book| {
        let mut out: Vec<ConversationSummary> = book
            .conversations
            .iter()
            .filter_map(|c| {
                let haystack: Vec<String> = std::iter::once(c.title.to_lowercase())
                    .chain(c.messages.iter().map(|m| m.content.to_lowercase()))
                    .collect();
                let all = haystack.join("\n");
                if !words.iter().all(|w| all.contains(w.as_str())) {
                    return None;
                }
                let snippet = words.first().and_then(|w| {
                    c.messages.iter().find(|m| m.content.to_lowercase().contains(w.as_str())).map(|m| snippet_of(&m.content, w))
                });
                Some(ConversationSummary {
                    id: c.id.clone(),
                    title: c.title.clone(),
                    updated_at: c.updated_at,
                    message_count: c.messages.len(),
                    snippet,
                })
            })
            .collect();
        out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
        Ok(out)
    })
}

fn snippet_of(text: &str, word: &str) -> String {
    let lower = text.to_lowercase();
    let chars: Vec<char> = text.chars().collect();
    let at = lower.find(word).map(|b| lower[..b].chars().count()).unwrap_or(0);
    let start = at.saturating_sub(20);
    let end = (at + word.chars().count() + 40).min(chars.len());
    chars[start..end].iter().collect()
}

/// Export formats.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Markdown for people.
    Markdown,
    /// JSON with every field.
    Json,
}

/// Exports one conversation, or all when `id` is None.
pub fn export(ctx: &AppContext, id: Option<&str>, format: ExportFormat) -> AppResult<String> {
    let conversations: Vec<Conversation> = with_book(ctx, false, |book| {
        Ok(book.conversations.iter().filter(|c| id.is_none_or(|id| c.id == id)).cloned().collect())
    })?;
    if let Some(id) = id {
        if conversations.is_empty() {
            return Err(AppError::NotFound(format!("conversation {id}")));
        }
    }
    Ok(match format {
        ExportFormat::Json => serde_json::to_string_pretty(&conversations).map_err(|e| AppError::Invalid(e.to_string()))?,
        ExportFormat::Markdown => {
            let mut out = String::new();
            for c in &conversations {
                out.push_str(&format!("# {}\n\n", c.title));
                for m in &c.messages {
                    let who = match m.role {
                        Role::User => "Question",
                        Role::Assistant => "Answer",
                    };
                    out.push_str(&format!("**{who}**\n\n{}\n\n", m.content));
                    if let Some(s) = &m.sources {
                        if !s.diseases.is_empty() {
                            let names: Vec<&str> = s.diseases.iter().map(|d| d.name.as_str()).collect();
                            out.push_str(&format!("_Sources: {}_\n\n", names.join(", ")));
                        }
                    }
                }
            }
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_list_search_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let a = append(&ctx, None, new_message(Role::User, "What causes Hypertension in adults?")).unwrap();
        append(&ctx, Some(&a), new_message(Role::Assistant, "Several factors.")).unwrap();
        let b = append(&ctx, None, new_message(Role::User, "糖尿病的症状有哪些？")).unwrap();
        assert_ne!(a, b);

        let ctx = AppContext::open(dir.path()).unwrap();
        assert_eq!(list(&ctx, None).unwrap().len(), 2);
        let hits = list(&ctx, Some("hypertension ADULTS")).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id, a);
        assert_eq!(hits[0].message_count, 2);
        assert!(hits[0].snippet.as_deref().unwrap().contains("Hypertension"));
        assert_eq!(list(&ctx, Some("糖尿病")).unwrap()[0].id, b);
        assert!(list(&ctx, Some("asthma")).unwrap().is_empty());
    }

    #[test]
    fn regenerate_pops_answer_and_question() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let a = append(&ctx, None, new_message(Role::User, "q1")).unwrap();
        append(&ctx, Some(&a), new_message(Role::Assistant, "a1")).unwrap();
        assert_eq!(pop_last_answer(&ctx, &a).unwrap(), "q1");
        assert!(get(&ctx, &a).unwrap().messages.is_empty());
        assert!(pop_last_answer(&ctx, &a).is_err());
    }

    #[test]
    fn export_markdown_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let a = append(&ctx, None, new_message(Role::User, "What is asthma?")).unwrap();
        let md = export(&ctx, Some(&a), ExportFormat::Markdown).unwrap();
        assert!(md.starts_with("# What is asthma?") && md.contains("**Question**"), "{md}");
        let json: serde_json::Value = serde_json::from_str(&export(&ctx, None, ExportFormat::Json).unwrap()).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 1);
        assert!(export(&ctx, Some("nope"), ExportFormat::Json).is_err());
    }

    #[test]
    fn a_damaged_file_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("conversations.json"), b"{not json").unwrap();
        assert!(matches!(append(&ctx, None, new_message(Role::User, "x")), Err(AppError::Corrupt { .. })));
        assert_eq!(std::fs::read(dir.path().join("conversations.json")).unwrap(), b"{not json");
    }
}
