//! The lexicon of disease names and symptom phrases, with a multi-pattern matcher
//! (Aho-Corasick, leftmost-longest, ASCII case-insensitive).
use std::collections::HashMap;
use std::path::Path;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};

use crate::error::{KnowledgeError, Result};
use crate::library::Library;

/// What a lexicon term names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TermKind {
    /// A disease.
    Disease,
    /// A symptom or sign.
    Symptom,
}

impl TermKind {
    /// Guesses the kind of an extra lexicon file from its name (`disease.txt`, `symptom.txt`,
    /// `dis-*.txt`, `sym-*.txt`, `疾病*.txt`, `症状*.txt`).
    pub fn from_file_name(path: &Path) -> Option<TermKind> {
        let n = path.file_stem()?.to_string_lossy().to_lowercase();
        if n.starts_with("dis") || n.contains("疾病") {
            Some(TermKind::Disease)
        } else if n.starts_with("sym") || n.contains("症状") {
            Some(TermKind::Symptom)
        } else {
            None
        }
    }
}

/// One lexicon entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The term as written.
    pub text: String,
    /// Disease or symptom.
    pub kind: TermKind,
    /// Library documents this term names (diseases named by a document's name or alias).
    pub doc_ids: Vec<String>,
    /// Whether the term comes from the library (rather than an extra lexicon).
    pub from_library: bool,
    /// Whether some source lists the term as a symptom (even when its kind is disease).
    pub listed_as_symptom: bool,
}

/// A match of a term in a text (byte offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermMatch<'l> {
    /// The term.
    pub term: &'l Term,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset after the last byte.
    pub end: usize,
}

/// Collects terms, then builds a [`Lexicon`].
#[derive(Debug, Default)]
pub struct LexiconBuilder {
    terms: HashMap<String, Term>,
    min_chars: usize,
}

impl LexiconBuilder {
    /// A builder that ignores terms shorter than two characters.
    pub fn new() -> Self {
        LexiconBuilder { terms: HashMap::new(), min_chars: 2 }
    }

    /// Adds a term. A term already present keeps its kind when it came from the library or
    /// named a document; documents accumulate.
    pub fn add(&mut self, text: &str, kind: TermKind, doc_id: Option<&str>, from_library: bool) {
        let text = text.trim();
        if text.chars().count() < self.min_chars || text.len() > 200 {
            return;
        }
        let key = text.to_lowercase();
        let entry = self.terms.entry(key).or_insert_with(|| Term { text: text.to_string(), kind, doc_ids: vec![], from_library, listed_as_symptom: false });
        entry.listed_as_symptom |= kind == TermKind::Symptom;
        let entry_strong = entry.from_library || !entry.doc_ids.is_empty();
        let new_strong = from_library || doc_id.is_some();
        if !entry_strong && new_strong {
            entry.kind = kind;
            entry.from_library = from_library;
        }
        // A document's name is a disease even when someone listed it as a symptom.
        if doc_id.is_some() {
            entry.kind = TermKind::Disease;
        }
        if let Some(id) = doc_id {
            if !entry.doc_ids.iter().any(|d| d == id) {
                entry.doc_ids.push(id.to_string());
            }
        }
    }

    /// Adds every document's names (diseases) and `symptoms` (symptoms).
    pub fn add_library(&mut self, library: &Library) {
        for doc in library.documents() {
            for name in doc.all_names() {
                self.add(name, TermKind::Disease, Some(&doc.id), true);
            }
            for s in &doc.symptoms {
                self.add(s, TermKind::Symptom, None, true);
            }
        }
    }

    /// Adds a file of one term a line (UTF-8/GBK/...; `#` starts a comment). Returns the
    /// number of lines read.
    pub fn add_file(&mut self, path: &Path, kind: TermKind) -> Result<usize> {
        let bytes = std::fs::read(path).map_err(|e| KnowledgeError::io("read lexicon", path, e))?;
        let text = crate::encoding::decode(&bytes)
            .map_err(|e| KnowledgeError::Encoding { path: path.to_path_buf(), reason: e.to_string() })?
            .text;
        let mut n = 0;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.add(line, kind, None, false);
            n += 1;
        }
        Ok(n)
    }

    /// Builds the matcher.
    pub fn build(self) -> Result<Lexicon> {
        let mut terms: Vec<Term> = self.terms.into_values().collect();
        terms.sort_by(|a, b| a.text.cmp(&b.text));
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(true)
            .build(terms.iter().map(|t| t.text.as_str()))
            .map_err(|e| KnowledgeError::Index { path: "lexicon".into(), reason: format!("cannot build the term matcher: {e}") })?;
        Ok(Lexicon { terms, matcher })
    }
}

/// Disease and symptom terms with their matcher.
#[derive(Debug, Clone)]
pub struct Lexicon {
    terms: Vec<Term>,
    matcher: AhoCorasick,
}

impl Lexicon {
    /// Number of terms.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Whether there are no terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Non-overlapping matches, leftmost-longest, in text order. ASCII terms must sit on word
    /// boundaries ("flu" does not match inside "influence").
    pub fn find<'l>(&'l self, text: &str) -> Vec<TermMatch<'l>> {
        self.matcher
            .find_iter(text)
            .filter(|m| {
                let term = &self.terms[m.pattern().as_usize()];
                !term.text.is_ascii() || on_word_boundaries(text, m.start(), m.end())
            })
            .map(|m| TermMatch { term: &self.terms[m.pattern().as_usize()], start: m.start(), end: m.end() })
            .collect()
    }

    /// Looks a term up exactly (case-insensitive).
    pub fn get(&self, text: &str) -> Option<&Term> {
        let key = text.trim().to_lowercase();
        self.terms.iter().find(|t| t.text.to_lowercase() == key)
    }
}

fn on_word_boundaries(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !after.is_some_and(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_leftmost_longest_with_kinds_and_docs() {
        let mut b = LexiconBuilder::new();
        b.add("扁桃体炎", TermKind::Disease, Some("tonsillitis"), true);
        b.add("急性扁桃体炎", TermKind::Disease, Some("tonsillitis"), true);
        b.add("发热", TermKind::Symptom, None, true);
        b.add("热", TermKind::Symptom, None, true); // too short, ignored
        b.add("Flu", TermKind::Disease, Some("flu"), true);
        b.add("发热", TermKind::Disease, None, false); // extra lexicon cannot change a library term
        let lex = b.build().unwrap();
        assert_eq!(lex.len(), 4);
        let m = lex.find("孩子急性扁桃体炎，发热。flu? influence");
        let got: Vec<(&str, TermKind)> = m.iter().map(|m| (m.term.text.as_str(), m.term.kind)).collect();
        assert_eq!(got, vec![("急性扁桃体炎", TermKind::Disease), ("发热", TermKind::Symptom), ("Flu", TermKind::Disease)]);
        assert_eq!(m[0].term.doc_ids, vec!["tonsillitis"]);
    }

    #[test]
    fn reads_lexicon_files_and_guesses_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("symptom.txt");
        let (gbk, _, _) = encoding_rs::GBK.encode("# comment\n咳嗽\n\n流鼻涕\n");
        std::fs::write(&p, &gbk).unwrap();
        assert_eq!(TermKind::from_file_name(&p), Some(TermKind::Symptom));
        assert_eq!(TermKind::from_file_name(Path::new("drug.txt")), None);
        let mut b = LexiconBuilder::new();
        assert_eq!(b.add_file(&p, TermKind::Symptom).unwrap(), 2);
        let lex = b.build().unwrap();
        assert_eq!(lex.get("流鼻涕").unwrap().kind, TermKind::Symptom);
        assert!(LexiconBuilder::new().add_file(&dir.path().join("missing.txt"), TermKind::Symptom).is_err());
    }
}
