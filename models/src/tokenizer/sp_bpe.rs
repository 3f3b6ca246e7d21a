//! SentencePiece BPE segmentation (`bpe_model.cc`): start from characters and repeatedly
//! merge the adjacent pair whose concatenation is the highest-scoring vocabulary piece
//! (leftmost on ties), until no pair is in the vocabulary.
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::sp_model::{PieceKind, SpModel};

/// A BPE segmenter over the mergeable pieces of a model.
#[derive(Debug, Clone)]
pub struct SpBpe {
    pieces: HashMap<String, (u32, f32)>,
}

/// A candidate merge in the agenda.
struct Pair {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pair {}
impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pair {
    fn cmp(&self, other: &Self) -> Ordering {
        // Highest score first, then leftmost.
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

/// A symbol of the working segmentation: a byte range of the text and its neighbours.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    end: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl SpBpe {
    /// Builds the segmenter from a model's vocabulary.
    pub fn new(model: &SpModel) -> Self {
        let pieces = model
            .pieces
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.kind, PieceKind::Normal | PieceKind::UserDefined | PieceKind::Unused))
            .map(|(id, p)| (p.text.clone(), (id as u32, p.score)))
            .collect();
        Self { pieces }
    }

    /// The id of a mergeable piece.
    pub fn id(&self, piece: &str) -> Option<u32> {
        self.pieces.get(piece).map(|&(id, _)| id)
    }

    /// Segments normalized text into byte ranges of final pieces.
    pub fn segment(&self, text: &str) -> Vec<(usize, usize)> {
        let mut symbols: Vec<Symbol> = Vec::new();
        for (i, (start, c)) in text.char_indices().enumerate() {
            symbols.push(Symbol {
                start,
                end: start + c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if i > 0 {
                symbols[i - 1].next = Some(i);
            }
        }
        let mut agenda = BinaryHeap::new();
        let push = |agenda: &mut BinaryHeap<Pair>, symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
            let (Some(l), Some(r)) = (left, right) else { return };
            let (a, b) = (symbols[l], symbols[r]);
            if let Some(&(_, score)) = self.pieces.get(&text[a.start..b.end]) {
                agenda.push(Pair { score, left: l, right: r, size: b.end - a.start });
            }
        };
        for i in 1..symbols.len() {
            push(&mut agenda, &symbols, Some(i - 1), Some(i));
        }
        while let Some(top) = agenda.pop() {
            let (l, r) = (symbols[top.left], symbols[top.right]);
            let alive = l.end > l.start && r.end > r.start && l.next == Some(top.right);
            if !alive || r.end - l.start != top.size {
                continue;
            }
            symbols[top.left].end = r.end;
            symbols[top.left].next = r.next;
            if let Some(n) = r.next {
                symbols[n].prev = Some(top.left);
            }
            symbols[top.right].end = symbols[top.right].start;
            let prev = symbols[top.left].prev;
            let next = symbols[top.left].next;
            push(&mut agenda, &symbols, prev, Some(top.left));
            push(&mut agenda, &symbols, Some(top.left), next);
        }
        let mut out = Vec::new();
        let mut cur = if symbols.is_empty() { None } else { Some(0) };
        while let Some(i) = cur {
            out.push((symbols[i].start, symbols[i].end));
            cur = symbols[i].next;
        }
        out
    }
}
