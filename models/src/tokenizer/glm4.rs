//! GLM-4 tokenizer: tiktoken-style byte-level BPE. `tokenizer.model` lists base64 token bytes
//! and their rank; text is split with THUDM's pattern, each piece merged by lowest pair rank;
//! fourteen special tokens are numbered after the ranks.
use std::collections::HashMap;

use base64::Engine as _;

use super::decode::{DecodeRules, SkipRule, TokenText};

/// THUDM's split pattern for GLM-4 (`tokenization_chatglm.py` of glm-4-9b-chat).
pub const SPLIT_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The special tokens after the ranks, in id order.
pub const SPECIAL_TOKENS: [&str; 14] = [
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
    "<|end_of_video|>",
];

/// The decode rules of this family.
pub const RULES: DecodeRules =
    DecodeRules { keep_bos_while_empty: false, replace_per_byte: false, on_special: SkipRule::Transparent };

/// The GLM-4 tokenizer.
#[derive(Debug, Clone)]
pub struct Glm4 {
    ranks: HashMap<Vec<u8>, u32>,
    split: fancy_regex::Regex,
    specials: HashMap<&'static str, u32>,
    pub(crate) table: Vec<TokenText>,
}

/// Whether a file's start looks like a tiktoken ranks file (`<base64> <rank>` lines).
pub fn looks_like_ranks(data: &[u8]) -> bool {
    let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(first) else { return false };
    let mut parts = line.trim_end_matches('\r').split(' ');
    matches!((parts.next(), parts.next(), parts.next()), (Some(tok), Some(rank), None)
        if !tok.is_empty() && base64::engine::general_purpose::STANDARD.decode(tok).is_ok() && rank.parse::<u32>().is_ok())
}

impl Glm4 {
    /// Parses a ranks file.
    pub fn new(data: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(data).map_err(|_| "the ranks file is not UTF-8 text")?;
        let mut by_rank: Vec<Option<Vec<u8>>> = Vec::new();
        let mut ranks = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bad = || format!("line {}: expected `<base64 token> <rank>`", n + 1);
            let (tok, rank) = line.split_once(' ').ok_or_else(bad)?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(tok).map_err(|_| bad())?;
            let rank: u32 = rank.trim().parse().map_err(|_| bad())?;
            let slot = rank as usize;
            if slot > 10_000_000 {
                return Err(format!("line {}: rank {rank} is implausibly large", n + 1));
            }
            if by_rank.len() <= slot {
                by_rank.resize(slot + 1, None);
            }
            if by_rank[slot].is_some() {
                return Err(format!("line {}: rank {rank} appears twice", n + 1));
            }
            by_rank[slot] = Some(bytes.clone());
            ranks.insert(bytes, rank);
        }
        if ranks.is_empty() {
            return Err("the ranks file is empty".into());
        }
        if let Some(gap) = by_rank.iter().position(Option::is_none) {
            return Err(format!("the ranks file has no token of rank {gap}"));
        }
        for b in 0..=255u8 {
            if !ranks.contains_key(&vec![b]) {
                return Err(format!("the ranks file has no token for byte {b:#04x}"));
            }
        }
        let mut table: Vec<TokenText> = by_rank.into_iter().map(|b| TokenText::Bytes(b.unwrap_or_default())).collect();
        let mut specials = HashMap::new();
        for name in SPECIAL_TOKENS {
            specials.insert(name, table.len() as u32);
            table.push(TokenText::Special);
        }
        let split = fancy_regex::Regex::new(SPLIT_PATTERN).map_err(|e| format!("split pattern: {e}"))?;
        Ok(Self { ranks, split, specials, table })
    }

    /// The id of a special token (`[gMASK]`, `<sop>`, `<|user|>`, ...).
    pub fn special(&self, name: &str) -> Option<u32> {
        self.specials.get(name).copied()
    }

    /// Encodes text to ids (no special tokens; a typed special token is plain text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut pos = 0;
        for m in self.split.find_iter(text) {
            match m {
                Ok(m) => {
                    self.encode_piece(m.as_str().as_bytes(), &mut ids);
                    pos = m.end();
                }
                Err(e) => {
                    tracing::warn!("GLM-4 split pattern failed ({e}); encoding the rest as one piece");
                    self.encode_piece(&text.as_bytes()[pos..], &mut ids);
                    return ids;
                }
            }
        }
        ids
    }

    fn rank(&self, bytes: &[u8]) -> Option<u32> {
        self.ranks.get(bytes).copied()
    }

    /// Byte-pair merges one piece: repeatedly join the adjacent pair of lowest rank (leftmost on ties).
    fn encode_piece(&self, piece: &[u8], ids: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        if let Some(r) = self.rank(piece) {
            ids.push(r);
            return;
        }
        // parts[i] = (start offset, rank of the pair starting here).
        let mut parts: Vec<(usize, Option<u32>)> = (0..=piece.len()).map(|i| (i, None)).collect();
        let pair_rank = |parts: &[(usize, Option<u32>)], i: usize| -> Option<u32> {
            if i + 2 < parts.len() {
                self.rank(&piece[parts[i].0..parts[i + 2].0])
            } else {
                None
            }
        };
        for i in 0..parts.len() {
            parts[i].1 = pair_rank(&parts, i);
        }
        loop {
            let mut best: Option<(u32, usize)> = None;
            for (i, &(_, r)) in parts.iter().enumerate().take(parts.len().saturating_sub(1)) {
                if let Some(r) = r {
                    if best.is_none_or(|(b, _)| r < b) {
                        best = Some((r, i));
                    }
                }
            }
            let Some((_, i)) = best else { break };
            parts.remove(i + 1);
            parts[i].1 = pair_rank(&parts, i);
            if i > 0 {
                parts[i - 1].1 = pair_rank(&parts, i - 1);
            }
        }
        for w in parts.windows(2) {
            let bytes = &piece[w[0].0..w[1].0];
            // Every single byte has a rank (checked at load), so merged pieces do too.
            ids.extend(self.rank(bytes));
        }
    }
}
