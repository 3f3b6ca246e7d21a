//! The short-term index's tokens: every CJK character of a message (unigram) and every pair
//! of adjacent CJK characters (bigram). FTS5's trigram tokenizer cannot answer terms of one or
//! two characters (痒, 肺癌); the `messages_grams` table (schema v3) indexes these tokens so
//! such terms are a lookup instead of a scan of every message.
//!
//! The tokens are made here in Rust and reach SQLite through the SQL function [`FUNCTION`],
//! which the schema's triggers call; every connection the store opens registers it first.
//! The function must never change what it returns for a text (the index would no longer match
//! its documents): a new token scheme needs a new schema version that rebuilds the table.

use std::collections::HashSet;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::Connection;

/// Name of the SQL function `doctorglm_cjk_grams(text) -> text` the triggers call.
pub(crate) const FUNCTION: &str = "doctorglm_cjk_grams";

/// Whether `c` is a CJK character the short-term index keeps: Han ideographs (unified,
/// extensions, compatibility), kana and Hangul syllables.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF      // CJK Unified Ideographs Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x20000..=0x3FFFF  // Extensions B and later, compatibility supplement
        | 0x3041..=0x3096    // Hiragana
        | 0x30A1..=0x30FA    // Katakana
        | 0xAC00..=0xD7A3    // Hangul syllables
        | 0x3005 | 0x3007    // 々 〇
    )
}

/// Whether the index answers `term` exactly: one or two characters, all CJK.
pub(crate) fn indexable(term: &str) -> bool {
    let n = term.chars().count();
    (1..=2).contains(&n) && term.chars().all(is_cjk)
}

/// The distinct unigrams and bigrams of CJK characters in `text`, in order of first
/// appearance, separated by spaces (FTS5's `ascii` tokenizer splits them there and keeps
/// every non-ASCII character inside a token).
pub(crate) fn grams(text: &str) -> String {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = String::new();
    let mut prev: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if !is_cjk(c) {
            prev = None;
            continue;
        }
        let end = i + c.len_utf8();
        let unigram = &text[i..end];
        let bigram = prev.map(|start| &text[start..end]);
        for g in std::iter::once(unigram).chain(bigram) {
            if seen.insert(g) {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(g);
            }
        }
        prev = Some(i);
    }
    out
}

/// Registers [`FUNCTION`] on `conn` (deterministic and innocuous, so triggers may call it).
pub(crate) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        FUNCTION,
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Text(bytes) => grams(&String::from_utf8_lossy(bytes)),
                _ => String::new(),
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_grams_unigrams_and_bigrams_of_cjk_runs_only() {
        assert_eq!(grams("肺癌"), "肺 癌 肺癌");
        assert_eq!(grams("皮肤痒, itchy 痒痒"), "皮 肤 皮肤 痒 肤痒 痒痒");
        assert_eq!(grams("BP 135/85 mmHg"), "");
        assert_eq!(grams("胸X光"), "胸 光", "no bigram across a non-CJK character");
        assert_eq!(grams("かゆい 가려움"), "か ゆ かゆ い ゆい 가 려 가려 움 려움");
        assert_eq!(grams(""), "");
    }

    #[test]
    fn store_grams_indexable_terms() {
        assert!(indexable("痒"));
        assert!(indexable("肺癌"));
        assert!(!indexable("肺癌晚"), "three characters: the trigram index");
        assert!(!indexable("X光"));
        assert!(!indexable("BP"));
        assert!(!indexable("，"));
        assert!(!indexable(""));
    }

    #[test]
    fn store_grams_sql_function() {
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        let g: String = conn.query_row(&format!("SELECT {FUNCTION}('头痛 headache')"), [], |r| r.get(0)).unwrap();
        assert_eq!(g, "头 痛 头痛");
        let g: String = conn.query_row(&format!("SELECT {FUNCTION}(NULL)"), [], |r| r.get(0)).unwrap();
        assert_eq!(g, "");
    }
}
