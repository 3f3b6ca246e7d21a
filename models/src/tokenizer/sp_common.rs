//! Pieces shared by the two SentencePiece families: byte-fallback ids and decode tables.
use std::collections::HashMap;

use super::decode::TokenText;
use super::sp_model::{PieceKind, SpModel};

/// The ids of the 256 `<0xNN>` pieces, when the model has them all.
pub fn byte_ids(model: &SpModel) -> Option<[u32; 256]> {
    let mut ids = [u32::MAX; 256];
    for (id, p) in model.pieces.iter().enumerate() {
        if p.kind == PieceKind::Byte {
            let hex = p.text.strip_prefix("<0x")?.strip_suffix('>')?;
            let b = u8::from_str_radix(hex, 16).ok()?;
            ids[b as usize] = id as u32;
        }
    }
    ids.iter().all(|&i| i != u32::MAX).then_some(ids)
}

/// The decode table of a model: `▁` restored to spaces, bytes, controls skipped;
/// `replace` overrides the surface of some user-defined pieces.
pub fn decode_table(model: &SpModel, replace: &HashMap<u32, String>) -> Vec<TokenText> {
    model
        .pieces
        .iter()
        .enumerate()
        .map(|(id, p)| {
            if let Some(text) = replace.get(&(id as u32)) {
                return TokenText::Text { text: text.clone(), strip_space: false };
            }
            match p.kind {
                PieceKind::Control => TokenText::Skip,
                PieceKind::Unknown => TokenText::Text { text: " \u{2047} ".into(), strip_space: false },
                PieceKind::Byte => {
                    let hex = p.text.trim_start_matches("<0x").trim_end_matches('>');
                    u8::from_str_radix(hex, 16).map_or(TokenText::Skip, TokenText::Byte)
                }
                _ => TokenText::Text {
                    text: p.text.replace('▁', " "),
                    strip_space: p.text.starts_with('▁'),
                },
            }
        })
        .collect()
}

/// The id of a piece with exactly this text.
pub fn piece_id(model: &SpModel, text: &str) -> Option<u32> {
    model.pieces.iter().position(|p| p.text == text).map(|i| i as u32)
}
