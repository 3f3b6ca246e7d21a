//! Full-text search over all messages: FTS5 with the trigram tokenizer (substring matching,
//! so Chinese works without a word segmenter). Terms of one or two characters are below what
//! a trigram index can answer; they are matched with `LIKE` (alone, a scan of the messages,
//! newest first, stopping at the limit).

use rusqlite::{params_from_iter, OptionalExtension};
use serde::Serialize;

use super::conversations::ConversationId;
use super::error::Result;
use super::messages::{MessageId, Role};
use super::Store;

/// Start of a highlighted span in FTS5 snippets (a private-use character).
const HL_START: char = '\u{E000}';
/// End of a highlighted span.
const HL_END: char = '\u{E001}';
/// Characters of context on each side in snippets made for short terms.
const CONTEXT_CHARS: usize = 24;

/// A piece of a snippet; `hit` pieces match the query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SnippetSpan {
    /// The text.
    pub text: String,
    /// Whether it matches the query (to be highlighted).
    pub hit: bool,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// The message.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// The conversation's title.
    pub conversation_title: String,
    /// Who wrote the message.
    pub role: Role,
    /// When, Unix milliseconds.
    pub created_at: i64,
    /// The matching part of the text, with hits marked.
    pub snippet: Vec<SnippetSpan>,
}

impl SearchHit {
    /// The snippet as plain text with hits in `[` `]` (for the CLI and logs).
    pub fn snippet_text(&self) -> String {
        self.snippet
            .iter()
            .map(|s| if s.hit { format!("[{}]", s.text) } else { s.text.clone() })
            .collect()
    }
}

/// A query split into terms the trigram index can answer and shorter ones.
struct Terms {
    long: Vec<String>,
    short: Vec<String>,
}

fn split_terms(query: &str) -> Terms {
    let mut terms = Terms { long: Vec::new(), short: Vec::new() };
    for t in query.split_whitespace() {
        if t.chars().count() >= 3 {
            terms.long.push(t.to_owned());
        } else {
            terms.short.push(t.to_owned());
        }
    }
    terms
}

/// An FTS5 query: every term as a quoted phrase, all required.
fn fts_query(terms: &[String]) -> String {
    terms.iter().map(|t| format!("\"{}\"", t.replace('"', "\"\""))).collect::<Vec<_>>().join(" AND ")
}

/// A `LIKE` pattern matching `term` anywhere, with `\` escaping.
fn like_pattern(term: &str) -> String {
    let mut p = String::from("%");
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn role_of(s: &str) -> Role {
    match s {
        "user" => Role::User,
        "system" => Role::System,
        _ => Role::Assistant,
    }
}

impl Store {
    /// Searches all finished messages; at most `limit` hits, newest first. An empty query
    /// finds nothing.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let terms = split_terms(query);
        let limit = i64::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
        if terms.long.is_empty() && terms.short.is_empty() {
            return Ok(Vec::new());
        }
        // Step 1: the matching messages, newest first. FTS5 walks its doclists in rowid order
        // and stops at the LIMIT, so the cost follows the limit, not the number of matches
        // (ranking by bm25 scored every match: ~100 ms for common terms at 100,000 messages).
        let mut sql = String::new();
        let mut args: Vec<String> = Vec::new();
        if !terms.long.is_empty() {
            args.push(fts_query(&terms.long));
            sql.push_str(
                "SELECT m.id, m.conversation_id, c.title, m.role, m.created_at, m.content
                 FROM messages_fts f
                 JOIN messages m ON m.id = f.rowid
                 JOIN conversations c ON c.id = m.conversation_id
                 WHERE messages_fts MATCH ?1",
            );
        } else {
            sql.push_str(
                "SELECT m.id, m.conversation_id, c.title, m.role, m.created_at, m.content
                 FROM messages m JOIN conversations c ON c.id = m.conversation_id
                 WHERE m.status <> 'streaming'",
            );
        }
        for t in &terms.short {
            args.push(like_pattern(t));
            sql.push_str(&format!(" AND m.content LIKE ?{} ESCAPE '\\'", args.len()));
        }
        sql.push_str(if terms.long.is_empty() { " ORDER BY m.id DESC" } else { " ORDER BY f.rowid DESC" });
        sql.push_str(&format!(" LIMIT {limit}"));
        let mut hits = Vec::new();
        {
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(args.iter()))?;
            while let Some(r) = rows.next()? {
                let role: String = r.get(3)?;
                let content: String = r.get(5)?;
                hits.push(SearchHit {
                    message_id: r.get(0)?,
                    conversation_id: r.get(1)?,
                    conversation_title: r.get(2)?,
                    role: role_of(&role),
                    created_at: r.get(4)?,
                    snippet: if terms.long.is_empty() { like_snippet(&content, &terms.short) } else { Vec::new() },
                });
            }
        }
        // Step 2: FTS5 snippets for the hits only.
        if !terms.long.is_empty() {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT snippet(messages_fts, 0, char({}), char({}), '…', 24) FROM messages_fts
                 WHERE messages_fts MATCH ?1 AND rowid = ?2",
                HL_START as u32, HL_END as u32
            ))?;
            for hit in &mut hits {
                let snippet: Option<String> =
                    stmt.query_row(rusqlite::params![args[0], hit.message_id], |r| r.get(0)).optional()?;
                hit.snippet = parse_snippet(&snippet.unwrap_or_default());
            }
        }
        Ok(hits)
    }
}

/// Splits an FTS5 snippet at the highlight markers.
fn parse_snippet(s: &str) -> Vec<SnippetSpan> {
    let mut spans = Vec::new();
    let mut cur = String::new();
    let mut hit = false;
    for c in s.chars() {
        if c == HL_START || c == HL_END {
            if !cur.is_empty() {
                spans.push(SnippetSpan { text: std::mem::take(&mut cur), hit });
            }
            hit = c == HL_START;
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        spans.push(SnippetSpan { text: cur, hit });
    }
    spans
}

/// A snippet around the first occurrence of any of `terms` (ASCII case-insensitive, like
/// SQLite's `LIKE`), with every occurrence in the window marked.
fn like_snippet(content: &str, terms: &[String]) -> Vec<SnippetSpan> {
    let chars: Vec<char> = content.chars().collect();
    let needles: Vec<Vec<char>> = terms.iter().map(|t| t.chars().collect()).filter(|t: &Vec<char>| !t.is_empty()).collect();
    let matches_at = |i: usize| -> Option<usize> {
        needles
            .iter()
            .find(|n| i + n.len() <= chars.len() && n.iter().zip(&chars[i..]).all(|(a, b)| a.eq_ignore_ascii_case(b)))
            .map(|n| n.len())
    };
    let first = (0..chars.len()).find(|&i| matches_at(i).is_some()).unwrap_or(0);
    let start = first.saturating_sub(CONTEXT_CHARS);
    let end = (first + CONTEXT_CHARS * 2).min(chars.len());
    let mut spans = Vec::new();
    if start > 0 {
        spans.push(SnippetSpan { text: "…".into(), hit: false });
    }
    let mut plain = String::new();
    let mut i = start;
    while i < end {
        if let Some(len) = matches_at(i) {
            if !plain.is_empty() {
                spans.push(SnippetSpan { text: std::mem::take(&mut plain), hit: false });
            }
            spans.push(SnippetSpan { text: chars[i..i + len].iter().collect(), hit: true });
            i += len;
        } else {
            plain.push(chars[i]);
            i += 1;
        }
    }
    if end < chars.len() {
        plain.push('…');
    }
    if !plain.is_empty() {
        spans.push(SnippetSpan { text: plain, hit: false });
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;
    use crate::store::AnswerMeta;

    #[test]
    fn store_search_finds_chinese_and_english_with_highlights() {
        let (_dir, store) = temp_store();
        let c = store.create_conversation("头痛").unwrap();
        let u = store.append_user_message(c.id, "我最近经常头痛，伴有恶心和呕吐，怎么办？").unwrap();
        store.append_user_message(c.id, "The patient reports Chest Pain after exercise.").unwrap();
        let hits = store.search("恶心和", 10).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].message_id, u);
        assert_eq!(hits[0].conversation_title, "头痛");
        assert!(hits[0].snippet.iter().any(|s| s.hit && s.text == "恶心和"), "{:?}", hits[0].snippet);
        assert!(hits[0].snippet_text().contains("[恶心和]"));
        let hits = store.search("chest pain", 10).unwrap();
        assert_eq!(hits.len(), 1, "case-insensitive, both terms required");
        assert!(store.search("chest fever", 10).unwrap().is_empty());
        assert!(store.search("   ", 10).unwrap().is_empty());
        assert!(store.search("\"quoted\" AND OR", 10).unwrap().is_empty(), "FTS syntax is not interpreted");
    }

    #[test]
    fn store_search_short_terms_use_like() {
        let (_dir, store) = temp_store();
        let c = store.create_conversation("t").unwrap();
        let a = store.append_user_message(c.id, "他头痛了三天").unwrap();
        store.append_user_message(c.id, "发烧 38.5 度").unwrap();
        let hits = store.search("头痛", 10).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].message_id, a);
        assert_eq!(hits[0].snippet_text(), "他[头痛]了三天");
        let hits = store.search("三天 头", 10).unwrap();
        assert_eq!(hits.len(), 1, "short terms combine with long ones");
        assert!(store.search("50%", 10).unwrap().is_empty(), "LIKE wildcards are escaped");
        assert_eq!(store.search("%", 10).unwrap().len(), 0);
    }

    #[test]
    fn store_search_skips_streaming_and_forgets_deleted() {
        let (_dir, store) = temp_store();
        let c = store.create_conversation("t").unwrap();
        let id = store.begin_answer(c.id, &AnswerMeta::default()).unwrap();
        store.update_answer(id, "肺炎链球菌感染").unwrap();
        assert!(store.search("链球菌", 10).unwrap().is_empty());
        assert!(store.search("肺炎", 10).unwrap().is_empty());
        store.finish_answer(id, &crate::store::AnswerEnd::complete("肺炎链球菌感染，建议")).unwrap();
        assert_eq!(store.search("链球菌", 10).unwrap().len(), 1);
        store.delete_conversation(c.id).unwrap();
        assert!(store.search("链球菌", 10).unwrap().is_empty());
    }

    #[test]
    fn store_search_like_snippet_marks_all_hits_in_window() {
        let s = like_snippet("ab AB xx", &["ab".into()]);
        assert_eq!(s.iter().filter(|s| s.hit).count(), 2);
    }
}
