//! SentencePiece unigram segmentation: the Viterbi best path over all vocabulary pieces,
//! scored in `f32` as SentencePiece does, with its tie order and unknown-character rule.
use std::collections::HashMap;

use super::sp_model::{PieceKind, SpModel};

/// A unigram segmenter over the normal pieces of a model.
#[derive(Debug, Clone)]
pub struct Unigram {
    pieces: HashMap<String, (u32, f32)>,
    max_chars: usize,
    unk_id: u32,
    unk_score: f32,
}

impl Unigram {
    /// Builds the segmenter from a model's vocabulary.
    pub fn new(model: &SpModel) -> Result<Self, String> {
        let mut pieces = HashMap::new();
        let mut max_chars = 1;
        let mut min_score = f32::MAX;
        let mut unk_id = None;
        for (id, p) in model.pieces.iter().enumerate() {
            let id = id as u32;
            match p.kind {
                PieceKind::Normal => {
                    min_score = min_score.min(p.score);
                    max_chars = max_chars.max(p.text.chars().count());
                    pieces.insert(p.text.clone(), (id, p.score));
                }
                PieceKind::Unknown => unk_id = Some(id),
                _ => {}
            }
        }
        let unk_id = unk_id.ok_or("the model has no <unk> piece")?;
        Ok(Self { pieces, max_chars, unk_id, unk_score: min_score - 10.0 })
    }

    /// The id of the unknown piece.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// Segments normalized text into (byte range, id) pieces; unknown characters get `unk_id`.
    pub fn encode(&self, text: &str, out: &mut Vec<(usize, usize, u32)>) {
        let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        let n = bounds.len() - 1;
        // best[i] = (score, start char index, id) of the best path ending at char i.
        let mut best: Vec<Option<(f32, usize, u32)>> = vec![None; n + 1];
        let mut score_at = vec![0f32; n + 1];
        for begin in 0..n {
            if begin > 0 && best[begin].is_none() {
                continue;
            }
            let base = score_at[begin];
            let mut has_single = false;
            for len in 1..=self.max_chars.min(n - begin) {
                let piece = &text[bounds[begin]..bounds[begin + len]];
                if let Some(&(id, score)) = self.pieces.get(piece) {
                    if len == 1 {
                        has_single = true;
                    }
                    relax(&mut best, &mut score_at, begin, begin + len, base + score, id);
                }
            }
            if !has_single {
                relax(&mut best, &mut score_at, begin, begin + 1, base + self.unk_score, self.unk_id);
            }
        }
        let mut path = Vec::new();
        let mut end = n;
        while end > 0 {
            let Some((_, start, id)) = best[end] else { break };
            path.push((bounds[start], bounds[end], id));
            end = start;
        }
        out.extend(path.into_iter().rev());
    }
}

/// Keeps the first best path into `end` (strictly greater scores replace it).
fn relax(best: &mut [Option<(f32, usize, u32)>], score_at: &mut [f32], begin: usize, end: usize, score: f32, id: u32) {
    if best[end].is_none_or(|(s, _, _)| score > s) {
        best[end] = Some((score, begin, id));
        score_at[end] = score;
    }
}
