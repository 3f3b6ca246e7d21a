//! Width normalisation before detection: full-width ASCII forms (０-９, Ａ-Ｚ, ＠, －, ＋, （, ：)
//! become ASCII and the ideographic space a space, with a map back to the original byte offsets
//! so that spans found in the normalised text replace the right bytes of the original.

/// A normalised text and, for each of its byte offsets (and its end), the original offset.
pub struct Normalized {
    /// The text with full-width forms folded to ASCII.
    pub text: String,
    map: Vec<usize>,
}

impl Normalized {
    /// Folds `original`; the map has one entry per byte of the result plus one for its end.
    pub fn new(original: &str) -> Self {
        let mut text = String::with_capacity(original.len());
        let mut map = Vec::with_capacity(original.len() + 1);
        for (i, c) in original.char_indices() {
            let folded = match c as u32 {
                0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFF01 + 0x21).unwrap_or(c),
                0x3000 => ' ',
                _ => c,
            };
            for _ in 0..folded.len_utf8() {
                map.push(i);
            }
            text.push(folded);
        }
        map.push(original.len());
        Normalized { text, map }
    }

    /// The original byte offset of normalised offset `i` (a char boundary of the normalised text).
    pub fn original(&self, i: usize) -> usize {
        self.map.get(i).copied().unwrap_or_else(|| self.map.last().copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_digits_fold_and_map_back() {
        let original = "电话：１３８ １２３４　５６７８。";
        let n = Normalized::new(original);
        assert_eq!(n.text, "电话:138 1234 5678。");
        let start = n.text.find('1').unwrap_or(0);
        let end = n.text.find('。').unwrap_or(0);
        assert_eq!(&original[n.original(start)..n.original(end)], "１３８ １２３４　５６７８");
    }
}
