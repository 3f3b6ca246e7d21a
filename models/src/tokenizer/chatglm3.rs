//! ChatGLM2/3 tokenizer: `tokenizer.model`, a SentencePiece BPE model (identity normalizer,
//! dummy prefix, byte fallback) plus nine special tokens numbered after the vocabulary.
use std::collections::HashMap;

use super::decode::{DecodeRules, SkipRule, TokenText};
use super::normalizer::{Normalized, Normalizer, Segment};
use super::sp_bpe::SpBpe;
use super::sp_common::{byte_ids, decode_table, piece_id};
use super::sp_model::{ModelType, SpModel};

/// The special tokens after the SentencePiece vocabulary, in id order.
pub const SPECIAL_TOKENS: [&str; 9] = [
    "[MASK]", "[gMASK]", "[sMASK]", "sop", "eop", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>",
];

/// The ChatGLM2/3 tokenizer.
#[derive(Debug, Clone)]
pub struct ChatGlm3 {
    normalizer: Normalizer,
    bpe: SpBpe,
    bytes: Option<[u32; 256]>,
    unk: u32,
    eos: u32,
    specials: HashMap<&'static str, u32>,
    pub(crate) table: Vec<TokenText>,
}

/// The decode rules of this family.
pub const RULES: DecodeRules =
    DecodeRules { keep_bos_while_empty: false, replace_per_byte: true, on_special: SkipRule::NewSentence };

impl ChatGlm3 {
    /// Builds the tokenizer from a parsed `tokenizer.model`.
    pub fn new(model: &SpModel) -> Result<Self, String> {
        if model.model_type != ModelType::Bpe {
            return Err("a ChatGLM2/3 tokenizer.model should be a BPE model".into());
        }
        let unk = piece_id(model, "<unk>").ok_or("the vocabulary lacks `<unk>`")?;
        let eos = piece_id(model, "</s>").ok_or("the vocabulary lacks `</s>`")?;
        let mut table = decode_table(model, &HashMap::new());
        let mut specials = HashMap::new();
        for name in SPECIAL_TOKENS {
            specials.insert(name, table.len() as u32);
            table.push(TokenText::Special);
        }
        Ok(Self {
            normalizer: Normalizer::new(&model.normalizer)?,
            bpe: SpBpe::new(model),
            bytes: if model.byte_fallback { byte_ids(model) } else { None },
            unk,
            eos,
            specials,
            table,
        })
    }

    /// The id of a special token (`[gMASK]`, `sop`, `<|user|>`, ...).
    pub fn special(&self, name: &str) -> Option<u32> {
        self.specials.get(name).copied()
    }

    /// The end-of-sequence id (`</s>`).
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// Encodes text to ids (no special tokens).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        for part in self.normalizer.normalize(&[Segment::Text(text)]) {
            let Normalized::Text(t) = part else { continue };
            for (s, e) in self.bpe.segment(&t) {
                let piece = &t[s..e];
                match (self.bpe.id(piece), &self.bytes) {
                    (Some(id), _) => ids.push(id),
                    (None, Some(bytes)) => ids.extend(piece.bytes().map(|b| bytes[b as usize])),
                    (None, None) => ids.push(self.unk),
                }
            }
        }
        ids
    }
}
