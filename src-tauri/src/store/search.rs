//! Full-text search over all messages: FTS5 with the trigram tokenizer (substring matching,
//! so Chinese works without a word segmenter). Terms of one or two characters are below what a
//! trigram index can answer; a second FTS5 index of unigrams and bigrams of CJK characters and
//! ASCII letters and digits (`messages_grams`, see `grams`) answers them (痒, 肺癌, BP, X光).
//! Other short terms (punctuation, other scripts: `µg`) are matched with `LIKE` (alone, a scan
//! of the messages, newest first, stopping at the limit).

use rusqlite::types::Value;
use rusqlite::{params_from_iter, OptionalExtension};
use serde::Serialize;

use super::conversations::ConversationId;
use super::error::Result;
use super::grams;
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

/// A query split by what can answer each term.
struct Terms {
    /// Three characters or more: the trigram index.
    long: Vec<String>,
    /// One or two CJK characters or ASCII letters/digits: the unigram/bigram index (`messages_grams`).
    grams: Vec<String>,
    /// Other short terms (`µg`, `+1`): `LIKE`.
    other: Vec<String>,
}

impl Terms {
    fn is_empty(&self) -> bool {
        self.long.is_empty() && self.grams.is_empty() && self.other.is_empty()
    }
}

fn split_terms(query: &str) -> Terms {
    let mut terms = Terms { long: Vec::new(), grams: Vec::new(), other: Vec::new() };
    for t in query.split_whitespace() {
        if t.chars().count() >= 3 {
            terms.long.push(t.to_owned());
        } else if grams::indexable(t) {
            terms.grams.push(t.to_owned());
        } else {
            terms.other.push(t.to_owned());
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

/// With long terms and short CJK terms together: if the short terms match at most this many
/// messages, those (newest first) are checked one by one for the rest of the query; else the
/// trigram index leads and the short terms are checked with `LIKE`.
const GRAM_CANDIDATES: usize = 500;

/// The columns every search query selects, in the order [`hit_from_row`] reads them.
const HIT_COLUMNS: &str = "m.id, m.conversation_id, c.title, m.role, m.created_at";

fn hit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SearchHit> {
    let role: String = r.get(3)?;
    Ok(SearchHit {
        message_id: r.get(0)?,
        conversation_id: r.get(1)?,
        conversation_title: r.get(2)?,
        role: role_of(&role),
        created_at: r.get(4)?,
        snippet: Vec::new(),
    })
}

/// ` AND m.content LIKE ?n` for each of `terms`, numbering from `args.len() + 1`.
fn push_likes(sql: &mut String, args: &mut Vec<String>, terms: &[String]) {
    for t in terms {
        args.push(like_pattern(t));
        sql.push_str(&format!(" AND m.content LIKE ?{} ESCAPE '\\'", args.len()));
    }
}

impl Store {
    /// Searches all finished messages; at most `limit` hits, newest first. An empty query
    /// finds nothing. Every whitespace-separated term must occur (case-insensitive for ASCII).
    ///
    /// Which index leads: terms of 3+ characters go to the trigram index, terms of one or two
    /// CJK characters or ASCII letters/digits to the unigram/bigram index, other short terms (`µg`) are checked with
    /// `LIKE` on the messages the indexes give (alone, they scan the messages newest first).
    /// Every plan walks message ids downwards and stops at the limit.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let mut hits = self.search_without_snippets(query, limit)?;
        self.add_snippets(query, &mut hits)?;
        Ok(hits)
    }

    /// Like [`Store::search`] with every snippet left empty: for callers that show only some
    /// of the hits (a page of conversations), then call [`Store::add_snippets`] for those.
    pub fn search_without_snippets(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let terms = split_terms(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let limit = limit.clamp(1, 1000);
        let grams_query = (!terms.grams.is_empty()).then(|| fts_query(&terms.grams));
        let mut found: Vec<SearchHit> = Vec::new();
        let candidates = match (&grams_query, terms.long.is_empty()) {
            (Some(q), false) => self.gram_candidates(q)?,
            _ => None,
        };
        if let Some(ids) = candidates {
            // Few messages hold the short terms: check each (newest first) for the rest.
            let mut sql = format!(
                "SELECT {HIT_COLUMNS} FROM messages m JOIN conversations c ON c.id = m.conversation_id
                 WHERE m.id = ?1 AND m.status <> 'streaming'"
            );
            let mut args = vec![String::new()];
            push_likes(&mut sql, &mut args, &terms.long);
            push_likes(&mut sql, &mut args, &terms.other);
            let mut values: Vec<Value> = args.into_iter().map(Value::Text).collect();
            let mut stmt = self.conn.prepare_cached(&sql)?;
            for id in ids {
                values[0] = Value::Integer(id);
                if let Some(hit) = stmt.query_row(params_from_iter(values.iter()), hit_from_row).optional()? {
                    found.push(hit);
                    if found.len() == limit {
                        break;
                    }
                }
            }
        } else {
            // One index leads in id order, newest first; the other terms filter. FTS5 walks
            // its doclists in rowid order and stops at the LIMIT, so the cost follows the
            // limit, not the number of matches (ranking by bm25 scored every match: ~100 ms for
            // common terms at 100,000 messages).
            let mut args: Vec<String> = Vec::new();
            let mut sql = format!("SELECT {HIT_COLUMNS} ");
            let order;
            if !terms.long.is_empty() {
                args.push(fts_query(&terms.long));
                sql.push_str(
                    "FROM messages_fts f JOIN messages m ON m.id = f.rowid
                     JOIN conversations c ON c.id = m.conversation_id
                     WHERE messages_fts MATCH ?1",
                );
                push_likes(&mut sql, &mut args, &terms.grams);
                order = " ORDER BY f.rowid DESC";
            } else if let Some(q) = &grams_query {
                args.push(q.clone());
                sql.push_str(
                    "FROM messages_grams g JOIN messages m ON m.id = g.rowid
                     JOIN conversations c ON c.id = m.conversation_id
                     WHERE messages_grams MATCH ?1",
                );
                order = " ORDER BY g.rowid DESC";
            } else {
                sql.push_str(
                    "FROM messages m JOIN conversations c ON c.id = m.conversation_id
                     WHERE m.status <> 'streaming'",
                );
                order = " ORDER BY m.id DESC";
            }
            push_likes(&mut sql, &mut args, &terms.other);
            sql.push_str(order);
            sql.push_str(&format!(" LIMIT {limit}"));
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args.iter()), hit_from_row)?;
            for row in rows {
                found.push(row?);
            }
        }
        Ok(found)
    }

    /// Fills the snippets of `hits` (from a search for `query`): the trigram index's
    /// `snippet()` when the query has terms of 3+ characters, else a window around the first
    /// short-term hit.
    pub fn add_snippets(&self, query: &str, hits: &mut [SearchHit]) -> Result<()> {
        let terms = split_terms(query);
        if terms.long.is_empty() {
            let short: Vec<String> = terms.grams.iter().chain(&terms.other).cloned().collect();
            let mut stmt = self.conn.prepare_cached("SELECT content FROM messages WHERE id = ?1")?;
            for hit in hits {
                let content: Option<String> = stmt.query_row([hit.message_id], |r| r.get(0)).optional()?;
                hit.snippet = like_snippet(&content.unwrap_or_default(), &short);
            }
        } else {
            let long = fts_query(&terms.long);
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT snippet(messages_fts, 0, char({}), char({}), '…', 24) FROM messages_fts
                 WHERE messages_fts MATCH ?1 AND rowid = ?2",
                HL_START as u32, HL_END as u32
            ))?;
            for hit in hits {
                let snippet: Option<String> =
                    stmt.query_row(rusqlite::params![long, hit.message_id], |r| r.get(0)).optional()?;
                hit.snippet = parse_snippet(&snippet.unwrap_or_default());
            }
        }
        Ok(())
    }

    /// The messages holding every short CJK term of `grams_query`, newest first, if there are
    /// at most [`GRAM_CANDIDATES`] of them.
    fn gram_candidates(&self, grams_query: &str) -> Result<Option<Vec<MessageId>>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT rowid FROM messages_grams WHERE messages_grams MATCH ?1 ORDER BY rowid DESC LIMIT {}",
            GRAM_CANDIDATES + 1
        ))?;
        let ids = stmt.query_map([grams_query], |r| r.get(0))?.collect::<rusqlite::Result<Vec<MessageId>>>()?;
        Ok((ids.len() <= GRAM_CANDIDATES).then_some(ids))
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

    /// Message ids the short-term index holds for `term`.
    fn grams_ids(store: &Store, term: &str) -> Vec<MessageId> {
        let mut stmt = store.conn().prepare("SELECT rowid FROM messages_grams WHERE messages_grams MATCH ?1 ORDER BY rowid").unwrap();
        stmt.query_map([fts_query(&[term.to_owned()])], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn store_search_short_cjk_terms_use_the_grams_index() {
        let (_dir, store) = temp_store();
        let c = store.create_conversation("皮肤").unwrap();
        let a = store.append_user_message(c.id, "皮肤瘙痒两周，夜间加重").unwrap();
        let b = store.append_user_message(c.id, "吸烟史三十年，担心肺癌").unwrap();
        let e = store.append_user_message(c.id, "BP 150/95, itchy skin 痒").unwrap();
        assert_eq!(grams_ids(&store, "痒"), vec![a, e], "the index holds the unigram");
        assert_eq!(grams_ids(&store, "肺癌"), vec![b], "and the bigram");
        assert!(grams_ids(&store, "癌吸").is_empty(), "no bigram that is not in the text");

        let hits = store.search("痒", 10).unwrap();
        assert_eq!(hits.iter().map(|h| h.message_id).collect::<Vec<_>>(), vec![e, a], "newest first");
        assert_eq!(hits[1].snippet_text(), "皮肤瘙[痒]两周，夜间加重");
        let hits = store.search("肺癌", 10).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].snippet_text(), "吸烟史三十年，担心[肺癌]");
        assert!(store.search("癌吸", 10).unwrap().is_empty());
        assert!(store.search("胃癌", 10).unwrap().is_empty());
        assert_eq!(store.search("痒 皮肤", 10).unwrap().len(), 1, "two short terms, both required");
        assert_eq!(grams_ids(&store, "BP"), vec![e], "ASCII pairs are indexed, case folded");
        assert_eq!(store.search("痒 BP", 10).unwrap()[0].message_id, e, "two short indexed terms");
        assert_eq!(store.search("bp", 10).unwrap()[0].message_id, e, "either case");
        let f = store.append_user_message(c.id, "胸X光示右下肺纹理增粗，SBP 150").unwrap();
        assert_eq!(store.search("X光", 10).unwrap()[0].message_id, f, "a letter and a CJK character");
        let bp: Vec<_> = store.search("BP", 10).unwrap().iter().map(|h| h.message_id).collect();
        assert_eq!(bp, vec![f, e], "inside a word too (SBP), as the trigram index matches substrings");
        assert_eq!(store.search("µ", 10).unwrap().len(), 0, "other short terms still go to LIKE");
        assert_eq!(store.search("痒 两周", 1).unwrap().len(), 1);
        assert_eq!(store.search("痒", 1).unwrap()[0].message_id, e, "the limit keeps the newest");
    }

    #[test]
    fn store_search_mixed_queries_agree_on_both_plans() {
        let (_dir, store) = temp_store();
        let c = store.create_conversation("t").unwrap();
        // Rare short term: few messages hold 痒, so they lead and are checked for the rest.
        let itchy = store.append_user_message(c.id, "皮疹伴瘙痒，考虑湿疹").unwrap();
        store.append_user_message(c.id, "考虑湿疹样皮炎").unwrap();
        let hits = store.search("考虑湿疹 痒", 10).unwrap();
        assert_eq!(hits.iter().map(|h| h.message_id).collect::<Vec<_>>(), vec![itchy]);
        assert_eq!(hits[0].snippet_text(), "皮疹伴瘙痒，[考虑湿疹]", "the trigram index makes the snippet");
        // Common short term (more than GRAM_CANDIDATES messages): the trigram index leads.
        let filler: Vec<String> = (0..GRAM_CANDIDATES + 5).map(|i| format!("头痛第{i}天")).collect();
        let rows: Vec<(crate::store::Role, &str)> = filler.iter().map(|t| (crate::store::Role::User, t.as_str())).collect();
        store.append_messages(c.id, &rows).unwrap();
        let both = store.append_user_message(c.id, "头痛伴呕吐，考虑偏头痛").unwrap();
        store.append_user_message(c.id, "偏头疼").unwrap();
        assert!(store.gram_candidates(&fts_query(&["头痛".into()])).unwrap().is_none());
        let hits = store.search("头痛 考虑偏头", 10).unwrap();
        assert_eq!(hits.iter().map(|h| h.message_id).collect::<Vec<_>>(), vec![both]);
        let hits = store.search("湿疹 皮疹伴瘙", 10).unwrap();
        assert_eq!(hits.iter().map(|h| h.message_id).collect::<Vec<_>>(), vec![itchy]);
        assert_eq!(store.search("头痛", 3).unwrap().len(), 3);
        assert_eq!(store.search("头痛", 3).unwrap()[0].message_id, both);
    }

    #[test]
    fn store_search_grams_follow_streaming_finish_and_delete() {
        let (dir, store) = temp_store();
        let c = store.create_conversation("t").unwrap();
        let id = store.begin_answer(c.id, &AnswerMeta::default()).unwrap();
        store.update_answer(id, "可能是肺癌").unwrap();
        assert!(grams_ids(&store, "肺癌").is_empty(), "streaming text is not indexed");
        assert!(store.search("肺癌", 10).unwrap().is_empty());
        store.finish_answer(id, &crate::store::AnswerEnd::complete("排除肺炎")).unwrap();
        assert!(grams_ids(&store, "肺癌").is_empty(), "only the final text is indexed");
        assert_eq!(grams_ids(&store, "肺炎"), vec![id]);
        let other = store.begin_answer(c.id, &AnswerMeta::default()).unwrap();
        store.update_answer(other, "瘙痒").unwrap();
        drop(store);
        let store = crate::store::test_support::reopen(&dir);
        assert_eq!(grams_ids(&store, "痒"), vec![other], "an interrupted answer is indexed when recovered");
        store.delete_message(other).unwrap();
        assert!(grams_ids(&store, "痒").is_empty());
        store.delete_conversation(c.id).unwrap();
        assert!(grams_ids(&store, "肺炎").is_empty());
        assert!(store.search("炎", 10).unwrap().is_empty());
        let n: i64 = store.conn().query_row("SELECT count(*) FROM messages_grams", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0, "no rows left in the index");
    }

    #[test]
    fn store_search_like_snippet_marks_all_hits_in_window() {
        let s = like_snippet("ab AB xx", &["ab".into()]);
        assert_eq!(s.iter().filter(|s| s.hit).count(), 2);
    }
}
