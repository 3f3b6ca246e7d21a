//! Decoding, whole or streamed: one state machine turns ids into text for every family, so a
//! streamed decode always concatenates to the full decode.
//!
//! SentencePiece rules reproduced: `▁` is a space; the leading `▁` of the first text piece is
//! dropped (ChatGLM-6B, whose model removes extra whitespace, keeps dropping it while pieces
//! decode to nothing); byte pieces are joined into UTF-8, each byte of a broken sequence
//! becoming U+FFFD. GLM-4 joins all token bytes and replaces each broken sequence once.

/// What one id decodes to.
#[derive(Debug, Clone)]
pub enum TokenText {
    /// Text; `strip_space` when it came from a piece starting with `▁`.
    Text {
        /// The surface, spaces already restored.
        text: String,
        /// Whether the first character is a `▁` the sentence start may drop.
        strip_space: bool,
    },
    /// One byte of a byte-fallback sequence.
    Byte(u8),
    /// Raw bytes (byte-level BPE).
    Bytes(Vec<u8>),
    /// A SentencePiece control piece (`<s>`, `[gMASK]`, ...): decodes to nothing and ends a
    /// run of byte pieces.
    Skip,
    /// A special token numbered after the vocabulary: decodes to nothing; see [`DecodeRules::on_special`].
    Special,
}

/// How a family treats the edges of its pieces.
#[derive(Debug, Clone, Copy)]
pub struct DecodeRules {
    /// The leading-space drop goes on while pieces decode to nothing (`remove_extra_whitespaces`).
    pub keep_bos_while_empty: bool,
    /// Broken UTF-8: one U+FFFD per byte (SentencePiece) instead of one per broken sequence.
    pub replace_per_byte: bool,
    /// What a special token after the vocabulary does to pending bytes and the sentence start.
    pub on_special: SkipRule,
}

/// The effect of a special token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipRule {
    /// Flushes pending bytes; the sentence start is unchanged (SentencePiece control pieces).
    Flush,
    /// Flushes pending bytes and starts a new sentence (ChatGLM3 decodes between specials).
    NewSentence,
    /// No effect at all (byte-level BPE).
    Transparent,
}

/// Incremental decoder: feed ids one at a time, get the text that is complete so far.
#[derive(Debug, Clone)]
pub struct StreamDecoder<'t> {
    table: &'t [TokenText],
    rules: DecodeRules,
    pending: Vec<u8>,
    bos: bool,
}

impl<'t> StreamDecoder<'t> {
    /// A decoder over a family's table.
    pub(crate) fn new(table: &'t [TokenText], rules: DecodeRules) -> Self {
        Self { table, rules, pending: Vec::new(), bos: true }
    }

    /// Adds one id; returns the text it completes (often empty while UTF-8 bytes are pending).
    /// Ids outside the vocabulary decode to nothing.
    pub fn push(&mut self, id: u32) -> String {
        let mut out = String::new();
        match self.table.get(id as usize).unwrap_or(&TokenText::Skip) {
            TokenText::Byte(b) => {
                self.pending.push(*b);
                self.drain_complete(&mut out);
            }
            TokenText::Bytes(bytes) => {
                self.pending.extend_from_slice(bytes);
                self.drain_complete(&mut out);
            }
            TokenText::Skip => self.flush_into(&mut out),
            TokenText::Special => match self.rules.on_special {
                SkipRule::Flush => self.flush_into(&mut out),
                SkipRule::NewSentence => {
                    self.flush_into(&mut out);
                    self.bos = true;
                }
                SkipRule::Transparent => {}
            },
            TokenText::Text { text, strip_space } => {
                self.flush_into(&mut out);
                let surface = if self.bos && *strip_space { &text[1..] } else { text.as_str() };
                out.push_str(surface);
                self.bos = self.rules.keep_bos_while_empty && self.bos && surface.is_empty();
            }
        }
        out
    }

    /// Ends the stream: returns whatever pending bytes decode to.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        self.flush_into(&mut out);
        out
    }

    /// Emits every complete character of the pending bytes; keeps an unfinished tail.
    fn drain_complete(&mut self, out: &mut String) {
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Safe: from_utf8 vouched for these bytes.
                    out.push_str(std::str::from_utf8(&self.pending[start..start + valid]).unwrap_or_default());
                    start += valid;
                    match e.error_len() {
                        Some(n) => {
                            self.replacement(out, n);
                            start += n;
                        }
                        None => break,
                    }
                }
            }
        }
        if start > 0 {
            self.bos = false;
        }
        self.pending.drain(..start);
    }

    /// Emits pending bytes, an unfinished tail included (as replacement characters).
    fn flush_into(&mut self, out: &mut String) {
        self.drain_complete(out);
        if !self.pending.is_empty() {
            let n = self.pending.len();
            self.replacement(out, n);
            self.pending.clear();
            self.bos = false;
        }
    }

    fn replacement(&self, out: &mut String, broken: usize) {
        let count = if self.rules.replace_per_byte { broken } else { 1 };
        out.extend(std::iter::repeat_n('\u{FFFD}', count));
    }
}

/// Decodes a whole id sequence with the stream decoder.
pub(crate) fn decode_all(table: &[TokenText], rules: DecodeRules, ids: &[u32]) -> String {
    let mut dec = StreamDecoder::new(table, rules);
    let mut out = String::new();
    for &id in ids {
        out.push_str(&dec.push(id));
    }
    out.push_str(&dec.finish());
    out
}
