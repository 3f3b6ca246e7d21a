//! ChatGLM-6B (v1) tokenizer: `ice_text.model`, a SentencePiece unigram model with NFKC
//! normalization, byte fallback, and THUDM's whitespace handling layered on top
//! (newline → `<n>`, tab → `<|tab|>`, runs of 2–80 spaces → `<|blank_N|>`).
//!
//! THUDM's code does this by string replacement before SentencePiece, which also turns a
//! typed `<n>` or `<sop>` into that token. Here the whitespace symbols are inserted by id
//! while scanning the text, so typed text always stays text.
use std::collections::HashMap;

use super::decode::{DecodeRules, SkipRule, TokenText};
use super::normalizer::{Normalized, Normalizer, Segment};
use super::sp_common::{byte_ids, decode_table};
use super::sp_model::{ModelType, SpModel};
use super::unigram::Unigram;

/// The ChatGLM-6B tokenizer.
#[derive(Debug, Clone)]
pub struct ChatGlm6b {
    normalizer: Normalizer,
    unigram: Unigram,
    bytes: Option<[u32; 256]>,
    newline: u32,
    tab: u32,
    /// `blanks[n]` is the id of `<|blank_n|>` (entries 0 and 1 unused).
    blanks: Vec<u32>,
    pub(crate) table: Vec<TokenText>,
    vocab: HashMap<&'static str, u32>,
}

/// The decode rules of this family.
pub const RULES: DecodeRules = DecodeRules { keep_bos_while_empty: true, replace_per_byte: true, on_special: SkipRule::Flush };

impl ChatGlm6b {
    /// Builds the tokenizer from a parsed `ice_text.model`.
    pub fn new(model: &SpModel) -> Result<Self, String> {
        if model.model_type != ModelType::Unigram {
            return Err("ice_text.model should be a unigram model".into());
        }
        let index: HashMap<&str, u32> =
            model.pieces.iter().enumerate().map(|(i, p)| (p.text.as_str(), i as u32)).collect();
        let need = |t: &str| index.get(t).copied().ok_or_else(|| format!("the vocabulary lacks `{t}`"));
        let newline = need("<n>")?;
        let tab = need("<|tab|>")?;
        let mut blanks = vec![u32::MAX, u32::MAX];
        while let Some(&id) = index.get(format!("<|blank_{}|>", blanks.len()).as_str()) {
            blanks.push(id);
        }
        if blanks.len() < 3 {
            return Err("the vocabulary lacks `<|blank_2|>`".into());
        }
        let mut replace = HashMap::new();
        replace.insert(newline, "\n".to_string());
        replace.insert(tab, "\t".to_string());
        for (n, &id) in blanks.iter().enumerate().skip(2) {
            replace.insert(id, " ".repeat(n));
        }
        let mut vocab = HashMap::new();
        for name in ["[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<pad>", "</s>"] {
            vocab.insert(name, need(name)?);
        }
        Ok(Self {
            normalizer: Normalizer::new(&model.normalizer)?,
            unigram: Unigram::new(model)?,
            bytes: if model.byte_fallback { byte_ids(model) } else { None },
            newline,
            tab,
            blanks,
            table: decode_table(model, &replace),
            vocab,
        })
    }

    /// The id of a named control token (`[gMASK]`, `<sop>`, `<eop>`, ...).
    pub fn control(&self, name: &str) -> Option<u32> {
        self.vocab.get(name).copied()
    }

    /// Splits text into plain text and whitespace symbols, as THUDM's preprocessing does.
    fn segments<'a>(&self, text: &'a str) -> Vec<Segment<'a>> {
        let max_blank = self.blanks.len() - 1;
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let run = if b == b' ' { bytes[i..].iter().take_while(|&&c| c == b' ').count() } else { 0 };
            if b != b'\n' && b != b'\t' && run < 2 {
                i += 1;
                continue;
            }
            if start < i {
                out.push(Segment::Text(&text[start..i]));
            }
            match b {
                b'\n' => {
                    out.push(Segment::Symbol(self.newline));
                    i += 1;
                    start = i;
                }
                b'\t' => {
                    out.push(Segment::Symbol(self.tab));
                    i += 1;
                    start = i;
                }
                _ => {
                    for _ in 0..run / max_blank {
                        out.push(Segment::Symbol(self.blanks[max_blank]));
                    }
                    let rest = run % max_blank;
                    if rest >= 2 {
                        out.push(Segment::Symbol(self.blanks[rest]));
                    }
                    i += run;
                    // A single leftover space stays text.
                    start = if rest == 1 { i - 1 } else { i };
                }
            }
        }
        if start < bytes.len() {
            out.push(Segment::Text(&text[start..]));
        }
        out
    }

    /// Encodes text to ids (no special tokens).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut pieces = Vec::new();
        for part in self.normalizer.normalize(&self.segments(text)) {
            match part {
                Normalized::Symbol(id) => ids.push(id),
                Normalized::Text(t) => {
                    pieces.clear();
                    self.unigram.encode(&t, &mut pieces);
                    for &(s, e, id) in &pieces {
                        match (&self.bytes, id == self.unigram.unk_id()) {
                            (Some(bytes), true) => ids.extend(t[s..e].bytes().map(|b| bytes[b as usize])),
                            _ => ids.push(id),
                        }
                    }
                }
            }
        }
        ids
    }
}
