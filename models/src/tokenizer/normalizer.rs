//! SentencePiece's normalizer (`Normalizer::Normalize`), over text interleaved with symbols
//! that pass through untouched (ChatGLM-6B's `<n>`, `<|tab|>`, `<|blank_N|>`).

use super::charsmap::CharsMap;
use super::sp_model::NormalizerSpec;

/// One piece of input to normalize.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment<'a> {
    /// Text, normalized with the character map.
    Text(&'a str),
    /// A user-defined symbol (by id), kept whole.
    Symbol(u32),
}

/// One piece of normalized output.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalized {
    /// Normalized text with spaces written as `▁`.
    Text(String),
    /// A user-defined symbol.
    Symbol(u32),
}

/// A compiled normalizer.
#[derive(Debug, Clone)]
pub struct Normalizer {
    map: CharsMap,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
}

/// A unit produced while walking the input.
enum Step<'s> {
    Text(&'s str),
    Symbol(u32),
}

impl Normalizer {
    /// Builds the normalizer of a model.
    pub fn new(spec: &NormalizerSpec) -> Result<Self, String> {
        Ok(Self {
            map: CharsMap::parse(&spec.charsmap)?,
            add_dummy_prefix: spec.add_dummy_prefix,
            remove_extra_whitespaces: spec.remove_extra_whitespaces,
            escape_whitespaces: spec.escape_whitespaces,
        })
    }

    /// Normalizes the prefix of `text`: (replacement, bytes consumed).
    fn prefix<'s>(&'s self, text: &'s str) -> (&'s str, usize) {
        if let Some((len, out)) = self.map.longest_prefix(text.as_bytes()) {
            if text.is_char_boundary(len) {
                return (out, len);
            }
        }
        let len = text.chars().next().map_or(1, char::len_utf8);
        (&text[..len], len)
    }

    /// Normalizes a sequence of segments exactly as SentencePiece normalizes their concatenation
    /// when the symbols are user-defined pieces.
    pub fn normalize(&self, segments: &[Segment<'_>]) -> Vec<Normalized> {
        // Walk the input as a flat stream of normalized units.
        let mut units: Vec<Step<'_>> = Vec::new();
        for seg in segments {
            match seg {
                Segment::Symbol(id) => units.push(Step::Symbol(*id)),
                Segment::Text(t) => {
                    let mut rest = *t;
                    while !rest.is_empty() {
                        let (out, used) = self.prefix(rest);
                        units.push(Step::Text(out));
                        rest = &rest[used..];
                    }
                }
            }
        }
        let mut start = 0;
        if self.remove_extra_whitespaces {
            while let Some(Step::Text(" ")) = units.get(start) {
                start += 1;
            }
        }
        let mut out: Vec<Normalized> = Vec::new();
        if start >= units.len() {
            return out;
        }
        let space = if self.escape_whitespaces { "▁" } else { " " };
        let mut current = String::new();
        if self.add_dummy_prefix {
            current.push_str(space);
        }
        let mut prev_space = self.remove_extra_whitespaces;
        for unit in &units[start..] {
            match unit {
                Step::Symbol(id) => {
                    if !current.is_empty() {
                        out.push(Normalized::Text(std::mem::take(&mut current)));
                    }
                    out.push(Normalized::Symbol(*id));
                    prev_space = false;
                }
                Step::Text(s) => {
                    let mut s = *s;
                    while prev_space && s.starts_with(' ') {
                        s = &s[1..];
                    }
                    if !s.is_empty() {
                        for c in s.chars() {
                            if c == ' ' {
                                current.push_str(space);
                            } else {
                                current.push(c);
                            }
                        }
                        prev_space = s.ends_with(' ');
                    }
                }
            }
            if !self.remove_extra_whitespaces {
                prev_space = false;
            }
        }
        if !current.is_empty() {
            out.push(Normalized::Text(current));
        }
        if self.remove_extra_whitespaces {
            if let Some(Normalized::Text(last)) = out.last_mut() {
                while last.ends_with(space) {
                    last.truncate(last.len() - space.len());
                }
                if last.is_empty() {
                    out.pop();
                }
            }
        }
        out
    }
}
