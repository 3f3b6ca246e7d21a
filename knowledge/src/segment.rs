//! Chinese word segmentation (jieba-rs), shared by the index tokenizer and the keyword
//! extractor, and the tantivy tokenizer built on it.
use std::sync::{Arc, LazyLock};

use jieba_rs::Jieba;
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

static JIEBA: LazyLock<Arc<Jieba>> = LazyLock::new(|| Arc::new(Jieba::new()));

/// The process-wide jieba segmenter with its default dictionary (loaded on first use).
pub fn jieba() -> Arc<Jieba> {
    JIEBA.clone()
}

/// Whether a token carries a word (letters, digits or ideographs), not only punctuation/space.
pub fn is_word(token: &str) -> bool {
    token.chars().any(char::is_alphanumeric)
}

/// A tantivy tokenizer: jieba in search mode (long words plus their sub-words), punctuation and
/// blanks dropped. Cheap to clone (shares one dictionary).
#[derive(Clone)]
pub struct JiebaTokenizer {
    jieba: Arc<Jieba>,
}

impl JiebaTokenizer {
    /// A tokenizer on the shared segmenter.
    pub fn new() -> Self {
        JiebaTokenizer { jieba: jieba() }
    }
}

impl Default for JiebaTokenizer {
    fn default() -> Self {
        Self::new()
    }
}

/// The tokens of one text.
pub struct JiebaTokenStream {
    tokens: Vec<Token>,
    index: usize,
    empty: Token,
}

impl Tokenizer for JiebaTokenizer {
    type TokenStream<'a> = JiebaTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> JiebaTokenStream {
        let mut tokens = Vec::new();
        for (position, t) in self
            .jieba
            .tokenize(text, jieba_rs::TokenizeMode::Search, true)
            .into_iter()
            .filter(|t| is_word(t.word))
            .enumerate()
        {
            tokens.push(Token {
                offset_from: t.byte_start,
                offset_to: t.byte_end,
                position,
                text: t.word.to_string(),
                position_length: 1,
            });
        }
        JiebaTokenStream { tokens, index: 0, empty: Token::default() }
    }
}

impl TokenStream for JiebaTokenStream {
    fn advance(&mut self) -> bool {
        if self.index < self.tokens.len() {
            self.index += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        match self.index.checked_sub(1) {
            Some(i) => &self.tokens[i],
            None => &self.empty,
        }
    }

    fn token_mut(&mut self) -> &mut Token {
        match self.index.checked_sub(1) {
            Some(i) => &mut self.tokens[i],
            None => &mut self.empty,
        }
    }
}
