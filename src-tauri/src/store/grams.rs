//! The short-term index's tokens: every character of a message that is CJK or an ASCII letter or
//! digit (unigram, ASCII folded to lower case) and every pair of adjacent such characters
//! (bigram). FTS5's trigram tokenizer cannot answer terms of one or two characters (痒, 肺癌,
//! BP, X光); the `messages_grams` table indexes these tokens so such terms are a lookup instead
//! of a scan of every message. Schema v3 indexed CJK characters only ([`FUNCTION`], kept so a
//! v3 database can still be opened and migrated); v4 indexes both ([`FUNCTION_V4`]).
//!
//! The tokens are made here in Rust and reach SQLite through the SQL function [`FUNCTION`],
//! which the schema's triggers call; every connection the store opens registers it first.
//! The function must never change what it returns for a text (the index would no longer match
//! its documents): a new token scheme needs a new schema version that rebuilds the table.

use std::collections::HashSet;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::Connection;

/// Name of the v3 SQL function `doctorglm_cjk_grams(text) -> text` ([`grams`]).
pub(crate) const FUNCTION: &str = "doctorglm_cjk_grams";

/// Name of the v4 SQL function `doctorglm_short_grams(text) -> text` ([`short_grams`]) the
/// triggers call.
pub(crate) const FUNCTION_V4: &str = "doctorglm_short_grams";

/// Whether `c` is a character of the v4 index: CJK, or an ASCII letter or digit.
pub(crate) fn is_gram_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || is_cjk(c)
}

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

/// Whether the (v4) index answers `term` exactly: one or two characters, each CJK or an ASCII
/// letter or digit.
pub(crate) fn indexable(term: &str) -> bool {
    let n = term.chars().count();
    (1..=2).contains(&n) && term.chars().all(is_gram_char)
}

/// The distinct unigrams and bigrams of CJK characters in `text`, in order of first
/// appearance, separated by spaces (FTS5's `ascii` tokenizer splits them there and keeps
/// every non-ASCII character inside a token). The v3 scheme.
pub(crate) fn grams(text: &str) -> String {
    uni_and_bigrams(text, is_cjk)
}

/// The v4 tokens of `text`: distinct unigrams and bigrams of runs of CJK characters and ASCII
/// letters and digits (ASCII folded to lower case), in order of first appearance, separated by
/// spaces. A bigram may join an ASCII character and a CJK one (X光).
pub(crate) fn short_grams(text: &str) -> String {
    uni_and_bigrams(&text.to_ascii_lowercase(), is_gram_char)
}

/// The distinct unigrams and bigrams of the runs of characters that `keep` accepts.
fn uni_and_bigrams(text: &str, keep: fn(char) -> bool) -> String {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = String::new();
    let mut prev: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if !keep(c) {
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

/// Registers [`FUNCTION`] and [`FUNCTION_V4`] on `conn` (deterministic and innocuous, so
/// triggers may call them).
pub(crate) fn register(conn: &Connection) -> rusqlite::Result<()> {
    register_one(conn, FUNCTION, grams)?;
    register_one(conn, FUNCTION_V4, short_grams)
}

fn register_one(conn: &Connection, name: &str, tokens: fn(&str) -> String) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        name,
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS,
        move |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Text(bytes) => tokens(&String::from_utf8_lossy(bytes)),
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
    fn store_short_grams_add_ascii_letters_and_digits_folded() {
        assert_eq!(short_grams("肺癌"), "肺 癌 肺癌");
        assert_eq!(short_grams("BP 135"), "b p bp 1 3 13 5 35");
        assert_eq!(short_grams("胸X光"), "胸 x 胸x 光 x光");
        assert_eq!(short_grams("CT, ct"), "c t ct", "case folded, repeats once");
        assert_eq!(short_grams("°C/µg"), "c g", "no non-ASCII letters outside CJK");
        assert_eq!(short_grams(""), "");
    }

    #[test]
    fn store_grams_indexable_terms() {
        assert!(indexable("痒"));
        assert!(indexable("肺癌"));
        assert!(!indexable("肺癌晚"), "three characters: the trigram index");
        assert!(indexable("X光"));
        assert!(indexable("BP"));
        assert!(indexable("5"));
        assert!(!indexable("，"));
        assert!(!indexable("µ"));
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
        let g: String = conn.query_row(&format!("SELECT {FUNCTION_V4}('头痛 HA')"), [], |r| r.get(0)).unwrap();
        assert_eq!(g, "头 痛 头痛 h a ha");
    }
}
