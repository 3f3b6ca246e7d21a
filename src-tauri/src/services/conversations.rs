//! Conversations and their messages over the encrypted store (`crate::store`): create, list,
//! rename, delete, full-text search with highlighted snippets, and audited export.
//!
//! Ids cross the UI and the CLI as strings (the store's integer ids written out), so the
//! window's API did not change when the store replaced the interim JSON file.
use super::designer::Sources;
use super::generation::GenerationSettings;
use super::AppContext;
use crate::error::{AppError, AppResult};
use crate::store::{self, ConversationId, MessageId, MessageStatus, SnippetSpan, Store};
use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The doctor.
    User,
    /// The model.
    Assistant,
}

impl Role {
    fn to_store(self) -> store::Role {
        match self {
            Role::User => store::Role::User,
            Role::Assistant => store::Role::Assistant,
        }
    }
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
    /// Where the message is in its life (`complete`, `streaming`, `cancelled`, `error`,
    /// `interrupted` when the app stopped while it was being written).
    #[serde(default = "complete")]
    pub status: MessageStatus,
    /// Why generation failed, for `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn complete() -> MessageStatus {
    MessageStatus::Complete
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
    /// The piece of text that matched the search (plain text), if searching.
    pub snippet: Option<String>,
    /// The same snippet in pieces, `hit` on the parts that match (for highlighting).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub highlights: Vec<SnippetSpan>,
}

/// Parses an id given as text; a malformed id is simply not found.
pub(crate) fn parse_id(what: &str, id: &str) -> AppResult<i64> {
    id.trim().parse::<i64>().map_err(|_| AppError::NotFound(format!("{what} {id}")))
}

fn ms(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

/// The title of a new conversation: the first line of its first question, shortened.
pub fn title_of(question: &str) -> String {
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

/// A stored message as the UI sees it; `None` for system messages (never shown).
pub(crate) fn from_store(m: store::Message) -> Option<Message> {
    let role = match m.role {
        store::Role::User => Role::User,
        store::Role::Assistant => Role::Assistant,
        store::Role::System => return None,
    };
    let timings = m.total_ms.map(|total| Timings {
        first_token_ms: m.first_token_ms.map(ms).unwrap_or(0),
        total_ms: ms(total),
        tokens: m.completion_tokens.map(ms).unwrap_or(0),
    });
    Some(Message {
        id: m.id.to_string(),
        role,
        content: m.content,
        created_at: ms(m.created_at),
        sources: m.sources.and_then(|v| serde_json::from_value(v).ok()),
        model: m.model,
        adapter: m.adapter,
        settings: m.settings.and_then(|v| serde_json::from_value(v).ok()),
        timings,
        stopped: m.status == MessageStatus::Cancelled,
        status: m.status,
        error: m.error,
    })
}

/// One stored message.
pub fn message(ctx: &AppContext, id: MessageId) -> AppResult<Message> {
    let m = ctx.store().message(id)?;
    from_store(m).ok_or_else(|| AppError::NotFound(format!("message {id}")))
}

/// Creates an empty conversation.
pub fn create(ctx: &AppContext, title: &str) -> AppResult<ConversationSummary> {
    let c = ctx.store().create_conversation(title)?;
    Ok(summary(c))
}

/// Commits the doctor's question (durably, before any generation starts) to a conversation,
/// creating the conversation (titled after the question) when `conversation_id` is None.
/// Returns the conversation's id and the saved message.
pub fn save_question(ctx: &AppContext, conversation_id: Option<&str>, question: &str) -> AppResult<(String, Message)> {
    let store = ctx.store();
    let conversation = match conversation_id {
        Some(id) => {
            let id = parse_id("conversation", id)?;
            store.conversation(id)?.id
        }
        None => store.create_conversation(&title_of(question))?.id,
    };
    let id = store.append_user_message(conversation, question)?;
    let m = store.message(id)?;
    drop(store);
    let m = from_store(m).ok_or_else(|| AppError::Invalid("the saved question is not a user message".into()))?;
    Ok((conversation.to_string(), m))
}

/// Removes the last answer of a conversation and the question before it (for "regenerate")
/// and returns that question. The removed text is deleted from the store for good.
pub fn pop_last_answer(ctx: &AppContext, conversation_id: &str) -> AppResult<String> {
    let id = parse_id("conversation", conversation_id)?;
    let store = ctx.store();
    let mut messages = store.messages(id)?;
    messages.retain(|m| m.role != store::Role::System);
    let mut drop_ids = Vec::new();
    if messages.last().is_some_and(|m| m.role == store::Role::Assistant) {
        drop_ids.extend(messages.pop().map(|m| m.id));
    }
    let question = messages
        .pop()
        .filter(|m| m.role == store::Role::User)
        .ok_or_else(|| AppError::Invalid("there is no question to answer again".into()))?;
    drop_ids.push(question.id);
    for m in drop_ids {
        store.delete_message(m)?;
    }
    Ok(question.content)
}

/// One conversation with its messages.
pub fn get(ctx: &AppContext, id: &str) -> AppResult<Conversation> {
    let id = parse_id("conversation", id)?;
    let store = ctx.store();
    let c = store.conversation(id)?;
    let messages = store.messages(id)?;
    drop(store);
    Ok(Conversation {
        id: c.id.to_string(),
        title: c.title,
        created_at: ms(c.created_at),
        updated_at: ms(c.updated_at),
        messages: messages.into_iter().filter_map(from_store).collect(),
    })
}

/// Renames a conversation.
pub fn rename(ctx: &AppContext, id: &str, title: &str) -> AppResult<()> {
    let id = parse_id("conversation", id)?;
    ctx.store().rename_conversation(id, title)?;
    Ok(())
}

/// Deletes a conversation; its text is removed from the database for good (audited, without
/// the text).
pub fn delete(ctx: &AppContext, id: &str) -> AppResult<()> {
    let id = parse_id("conversation", id)?;
    ctx.store().delete_conversation(id)?;
    Ok(())
}

fn summary(c: store::Conversation) -> ConversationSummary {
    ConversationSummary {
        id: c.id.to_string(),
        title: c.title,
        updated_at: ms(c.updated_at),
        message_count: usize::try_from(c.message_count).unwrap_or(0),
        snippet: None,
        highlights: Vec::new(),
    }
}

/// Conversations in a page of the list when the caller does not say.
pub const DEFAULT_PAGE: usize = 50;
/// The most conversations one page may hold.
pub const MAX_PAGE: usize = 200;
/// Most message hits a search looks at (they are grouped by conversation); the store's limit.
const MAX_SEARCH_HITS: usize = 1000;

/// One page of the conversation list.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConversationPage {
    /// The conversations of this page, in list order.
    pub items: Vec<ConversationSummary>,
    /// The offset of the next page; `None` when this is the last.
    pub next_offset: Option<usize>,
}

/// The first page ([`DEFAULT_PAGE`] conversations) of [`list_page`].
pub fn list(ctx: &AppContext, query: Option<&str>) -> AppResult<Vec<ConversationSummary>> {
    Ok(list_page(ctx, query, 0, DEFAULT_PAGE)?.items)
}

/// A page of conversations: `limit` (1 to [`MAX_PAGE`]) after the first `offset`. Without a
/// query, most recently changed first. With one: those with a message matching it (full-text
/// search over every message, Chinese included; newest match first, with a highlighted
/// snippet), then those whose title contains every word of it.
pub fn list_page(ctx: &AppContext, query: Option<&str>, offset: usize, limit: usize) -> AppResult<ConversationPage> {
    let limit = limit.clamp(1, MAX_PAGE);
    let query = query.map(str::trim).filter(|q| !q.is_empty());
    let store = ctx.store();
    let Some(query) = query else {
        // One more than asked, to know whether another page follows.
        let mut items: Vec<ConversationSummary> =
            store.list_conversations_page(offset, limit + 1)?.into_iter().map(summary).collect();
        let next_offset = (items.len() > limit).then(|| offset + limit);
        items.truncate(limit);
        return Ok(ConversationPage { items, next_offset });
    };
    // Message hits, newest first, grouped by conversation: ask for more hits until there are
    // enough conversations for this page and one more (or the search has no more to give).
    let want = offset.saturating_add(limit).saturating_add(1);
    let mut asked = want.saturating_mul(3).clamp(60, MAX_SEARCH_HITS);
    let (mut found, exhausted) = loop {
        let hits = store.search_without_snippets(query, asked)?;
        let exhausted = hits.len() < asked;
        let mut found: Vec<store::SearchHit> = Vec::new();
        for hit in hits {
            if !found.iter().any(|f| f.conversation_id == hit.conversation_id) {
                found.push(hit);
            }
        }
        if found.len() >= want || exhausted || asked >= MAX_SEARCH_HITS {
            break (found, exhausted);
        }
        asked = asked.saturating_mul(2).min(MAX_SEARCH_HITS);
    };
    let all = store.list_conversations()?;
    // Snippets only for the hits this page shows.
    let page_end = found.len().min(offset.saturating_add(limit));
    if offset < page_end {
        store.add_snippets(query, &mut found[offset..page_end])?;
    }
    drop(store);
    let by_id: std::collections::HashMap<ConversationId, &store::Conversation> = all.iter().map(|c| (c.id, c)).collect();
    let mut out: Vec<ConversationSummary> = Vec::new();
    for hit in found {
        if let Some(c) = by_id.get(&hit.conversation_id) {
            let mut s = summary((*c).clone());
            s.snippet = Some(hit.snippet.iter().map(|p| p.text.as_str()).collect());
            s.highlights = hit.snippet;
            out.push(s);
        }
    }
    // Title matches follow the message hits; only once those are all known is the order of
    // the whole list settled, which is when pages reach past the hits anyway.
    if out.len() < want || exhausted {
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let listed: std::collections::HashSet<String> = out.iter().map(|s| s.id.clone()).collect();
        for c in &all {
            let title = c.title.to_lowercase();
            if words.iter().all(|w| title.contains(w.as_str())) && !listed.contains(&c.id.to_string()) {
                out.push(summary(c.clone()));
            }
        }
    }
    let next_offset = (out.len() > offset + limit).then(|| offset + limit);
    let items = out.into_iter().skip(offset).take(limit).collect();
    Ok(ConversationPage { items, next_offset })
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

impl ExportFormat {
    fn to_store(self) -> store::ExportFormat {
        match self {
            ExportFormat::Markdown => store::ExportFormat::Markdown,
            ExportFormat::Json => store::ExportFormat::Json,
        }
    }
}

/// Exports one conversation, or all when `id` is None (JSON: an array of conversation
/// documents; Markdown: one after the other). Each conversation's export is audited.
pub fn export(ctx: &AppContext, id: Option<&str>, format: ExportFormat) -> AppResult<String> {
    let store = ctx.store();
    let ids: Vec<ConversationId> = match id {
        Some(id) => vec![parse_id("conversation", id)?],
        None => store.list_conversations()?.into_iter().rev().map(|c| c.id).collect(),
    };
    let texts = ids
        .iter()
        .map(|&id| store.export_conversation(id, format.to_store()))
        .collect::<Result<Vec<String>, _>>()?;
    drop(store);
    Ok(match (format, id) {
        (ExportFormat::Json, Some(_)) => texts.into_iter().next().unwrap_or_default(),
        (ExportFormat::Json, None) => {
            let docs = texts
                .iter()
                .map(|t| serde_json::from_str::<serde_json::Value>(t))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| AppError::Invalid(format!("export: {e}")))?;
            serde_json::to_string_pretty(&docs).map_err(|e| AppError::Invalid(e.to_string()))?
        }
        (ExportFormat::Markdown, _) => texts.join("\n---\n\n"),
    })
}

/// Imports conversations (the interim JSON format) into the store, one transaction each.
pub(crate) fn import_legacy(store: &Store, conversations: &[Conversation], source: &str) -> AppResult<usize> {
    let mut n = 0;
    for c in conversations {
        let messages: Vec<store::ImportedMessage> = c
            .messages
            .iter()
            .map(|m| {
                let mut out = store::ImportedMessage::new(m.role.to_store(), m.content.clone(), m.created_at as i64);
                out.status = match m.status {
                    MessageStatus::Streaming => MessageStatus::Interrupted,
                    _ if m.stopped => MessageStatus::Cancelled,
                    s => s,
                };
                out.model = m.model.clone();
                out.adapter = m.adapter.clone();
                out.settings = m.settings.as_ref().and_then(|s| serde_json::to_value(s).ok());
                out.keywords = m.sources.as_ref().and_then(|s| serde_json::to_value(&s.keywords).ok());
                out.sources = m.sources.as_ref().and_then(|s| serde_json::to_value(s).ok());
                if let Some(t) = &m.timings {
                    out.completion_tokens = Some(t.tokens as i64);
                    out.first_token_ms = Some(t.first_token_ms as i64);
                    out.total_ms = Some(t.total_ms as i64);
                }
                out
            })
            .collect();
        store.import_conversation(&c.title, c.created_at as i64, c.updated_at as i64, &messages, source)?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_pages_with_and_without_a_query() {
        let (_dir, ctx) = ctx();
        // 7 conversations with a matching message, 2 matching only by title, 1 not at all.
        for i in 0..7 {
            save_question(&ctx, None, &format!("问题 {i}：皮肤瘙痒怎么办")).unwrap();
        }
        let titled: Vec<String> = (0..2).map(|i| create(&ctx, &format!("瘙痒 notes {i}")).unwrap().id).collect();
        save_question(&ctx, None, "unrelated").unwrap();

        let mut all = Vec::new();
        let mut offset = Some(0);
        while let Some(o) = offset {
            let page = list_page(&ctx, None, o, 3).unwrap();
            assert!(page.items.len() <= 3);
            all.extend(page.items.into_iter().map(|c| c.id));
            offset = page.next_offset;
        }
        assert_eq!(all.len(), 10, "every conversation once: {all:?}");
        assert_eq!(all.iter().collect::<std::collections::HashSet<_>>().len(), 10);

        let mut found = Vec::new();
        let mut offset = Some(0);
        while let Some(o) = offset {
            let page = list_page(&ctx, Some("瘙痒"), o, 4).unwrap();
            found.extend(page.items);
            offset = page.next_offset;
        }
        assert_eq!(found.len(), 9, "7 by message, 2 by title");
        assert!(found[..7].iter().all(|c| c.highlights.iter().any(|s| s.hit && s.text == "瘙痒")));
        assert_eq!(found[7..].iter().map(|c| c.id.clone()).collect::<std::collections::HashSet<_>>(), titled.into_iter().collect());
        let first = list_page(&ctx, Some("瘙痒"), 0, 4).unwrap();
        assert_eq!(first.next_offset, Some(4));
        let last = list_page(&ctx, Some("瘙痒"), 8, 4).unwrap();
        assert_eq!((last.items.len(), last.next_offset), (1, None));
        assert_eq!(list_page(&ctx, None, 0, 0).unwrap().items.len(), 1, "a limit of 0 is raised to 1");
        assert_eq!(list(&ctx, None).unwrap().len(), 10);
    }

    fn ctx() -> (tempfile::TempDir, AppContext) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        (dir, ctx)
    }

    #[test]
    fn save_list_search_and_reopen() {
        let (dir, ctx) = ctx();
        let (a, q) = save_question(&ctx, None, "What causes Hypertension in adults?").unwrap();
        assert_eq!(q.role, Role::User);
        save_question(&ctx, Some(&a), "And in children?").unwrap();
        let (b, _) = save_question(&ctx, None, "糖尿病的症状有哪些？").unwrap();
        assert_ne!(a, b);
        drop(ctx);

        let ctx = AppContext::open(dir.path()).unwrap();
        assert_eq!(list(&ctx, None).unwrap().len(), 2);
        let hits = list(&ctx, Some("hypertension ADULTS")).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id, a);
        assert_eq!(hits[0].message_count, 2);
        assert!(hits[0].snippet.as_deref().unwrap().contains("Hypertension"), "{:?}", hits[0]);
        assert!(hits[0].highlights.iter().any(|s| s.hit && s.text == "Hypertension"), "{:?}", hits[0].highlights);
        assert_eq!(list(&ctx, Some("糖尿病")).unwrap()[0].id, b);
        assert_eq!(list(&ctx, Some("症状")).unwrap()[0].id, b, "two-character Chinese terms are found");
        assert!(list(&ctx, Some("asthma")).unwrap().is_empty());
        rename(&ctx, &b, "Diabetes follow-up").unwrap();
        assert_eq!(list(&ctx, Some("follow-up")).unwrap()[0].id, b, "titles are searched too");
        assert!(get(&ctx, "nope").is_err());
    }

    #[test]
    fn regenerate_pops_answer_and_question() {
        let (_dir, ctx) = ctx();
        let (a, _) = save_question(&ctx, None, "q1").unwrap();
        let store = ctx.store();
        let id = store.begin_answer(parse_id("c", &a).unwrap(), &Default::default()).unwrap();
        store.finish_answer(id, &store::AnswerEnd::complete("a1")).unwrap();
        drop(store);
        assert_eq!(pop_last_answer(&ctx, &a).unwrap(), "q1");
        assert!(get(&ctx, &a).unwrap().messages.is_empty());
        assert!(pop_last_answer(&ctx, &a).is_err());
    }

    #[test]
    fn export_markdown_and_json_are_audited() {
        let (_dir, ctx) = ctx();
        let (a, _) = save_question(&ctx, None, "What is asthma?").unwrap();
        let md = export(&ctx, Some(&a), ExportFormat::Markdown).unwrap();
        assert!(md.starts_with("# What is asthma?") && md.contains("## Doctor"), "{md}");
        let json: serde_json::Value = serde_json::from_str(&export(&ctx, None, ExportFormat::Json).unwrap()).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 1);
        assert_eq!(json[0]["messages"][0]["content"], "What is asthma?");
        assert!(export(&ctx, Some("nope"), ExportFormat::Json).is_err());
        assert!(export(&ctx, Some("9999"), ExportFormat::Json).is_err());
        let exports = ctx.store().audit_log(10).unwrap().into_iter().filter(|e| e.action == "export").count();
        assert_eq!(exports, 2);
    }

    #[test]
    fn delete_removes_the_text_for_good() {
        let (dir, ctx) = ctx();
        let (a, _) = save_question(&ctx, None, "患者王某某右下腹剧痛伴发热").unwrap();
        let (b, _) = save_question(&ctx, None, "another question stays").unwrap();
        delete(&ctx, &a).unwrap();
        assert!(get(&ctx, &a).is_err());
        assert!(list(&ctx, Some("右下腹剧痛")).unwrap().is_empty());
        assert_eq!(list(&ctx, None).unwrap().len(), 1);
        assert!(delete(&ctx, &a).is_err());
        let log = ctx.store().audit_log(5).unwrap();
        assert_eq!(log[0].action, "delete");
        assert!(!serde_json::to_string(&log).unwrap().contains("右下腹"));
        // The database's own pages (decrypted) hold the text no longer; the file is encrypted.
        let image = ctx.store().conn().serialize("main").unwrap().to_vec();
        assert!(!contains(&image, "右下腹剧痛".as_bytes()), "deleted text left in the database pages");
        assert!(contains(&image, "another question stays".as_bytes()), "the check can see text that is there");
        drop(ctx);
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let p = f.unwrap().path();
            if p.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                assert!(!contains(&bytes, "another question".as_bytes()), "plaintext in {}", p.display());
            }
        }
        let ctx = AppContext::open(dir.path()).unwrap();
        assert_eq!(get(&ctx, &b).unwrap().messages.len(), 1);
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }
}
