//! Tokenizers of the three ChatGLM families behind one [`Tokenizer`].
//!
//! - `chatglm6b`: ChatGLM-6B (v1), `ice_text.model` (SentencePiece unigram + THUDM whitespace tokens);
//! - `chatglm3`: ChatGLM2/3, `tokenizer.model` (SentencePiece BPE) + special tokens;
//! - `glm4`: GLM-4, `tokenizer.model` (tiktoken base64 ranks) + special tokens;
//! - `sp_model`, `charsmap`, `normalizer`, `unigram`, `sp_bpe`, `sp_common`: SentencePiece parts;
//! - `decode`: whole and streamed decoding shared by all families;
//! - `error`: [`TokenizerError`].
//!
//! Typed text never becomes a control token: `encode` treats `<sop>`, `<|user|>` and the like
//! as plain text; only [`Tokenizer::build_chat`] inserts special tokens, by id.
mod charsmap;
pub mod chatglm3;
pub mod chatglm6b;
mod decode;
mod error;
pub mod glm4;
mod normalizer;
mod sp_bpe;
mod sp_common;
mod sp_model;
mod unigram;

use std::path::Path;

pub use decode::StreamDecoder;
pub use error::{Result, TokenizerError};

use decode::{DecodeRules, TokenText};

/// The tokenizer family of a model (it also fixes the chat format; GLM-4 shares
/// ChatGLM2's architecture but not its tokenizer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenizerFamily {
    /// ChatGLM-6B (v1).
    ChatGlm6b,
    /// ChatGLM2/3.
    ChatGlm3,
    /// GLM-4.
    Glm4,
}

/// The ids of the tokens the engine and chat formats need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Ids that end generation.
    pub eos: Vec<u32>,
    /// `[gMASK]`.
    pub gmask: u32,
    /// `<sop>` (`sop` in ChatGLM3).
    pub sop: u32,
    /// `<eop>` (`eop` in ChatGLM3).
    pub eop: u32,
    /// `<|system|>` (none in ChatGLM-6B).
    pub system: Option<u32>,
    /// `<|user|>` (none in ChatGLM-6B).
    pub user: Option<u32>,
    /// `<|assistant|>` (none in ChatGLM-6B).
    pub assistant: Option<u32>,
    /// `<|observation|>` (none in ChatGLM-6B).
    pub observation: Option<u32>,
}

/// The family-specific part.
#[derive(Debug, Clone)]
enum Inner {
    ChatGlm6b(chatglm6b::ChatGlm6b),
    ChatGlm3(chatglm3::ChatGlm3),
    Glm4(glm4::Glm4),
}

/// A loaded tokenizer of one of the three families.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: Inner,
    special: SpecialTokens,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| TokenizerError::Io { path: path.to_path_buf(), source })
}

/// `eos_token_id` of a model folder's `config.json` (a number or a list), if any.
fn config_eos(dir: &Path) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else { return Vec::new() };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else { return Vec::new() };
    match json.get("eos_token_id") {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| v as u32).into_iter().collect(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32).collect(),
        _ => Vec::new(),
    }
}

impl Tokenizer {
    /// Loads the tokenizer of a model folder, picking the family from its files:
    /// `ice_text.model` → ChatGLM-6B; `tokenizer.model` holding base64 ranks → GLM-4;
    /// `tokenizer.model` holding a SentencePiece model → ChatGLM2/3. Extra end ids from
    /// `config.json`'s `eos_token_id` are added to the family's own.
    pub fn load(model_dir: &Path) -> Result<Self> {
        let ice = model_dir.join("ice_text.model");
        let sp = model_dir.join("tokenizer.model");
        let mut tok = if ice.is_file() {
            Self::from_file(&ice, Some(TokenizerFamily::ChatGlm6b))?
        } else if sp.is_file() {
            Self::from_file(&sp, None)?
        } else {
            return Err(TokenizerError::NotFound { dir: model_dir.to_path_buf() });
        };
        for id in config_eos(model_dir) {
            if !tok.special.eos.contains(&id) && (id as usize) < tok.vocab_size() {
                tok.special.eos.push(id);
            }
        }
        Ok(tok)
    }

    /// Loads one tokenizer file; `family` forces the kind, `None` detects it from the content.
    pub fn from_file(path: &Path, family: Option<TokenizerFamily>) -> Result<Self> {
        let data = read(path)?;
        let corrupt = |reason: String| TokenizerError::Corrupt { path: path.to_path_buf(), reason };
        let family = family.unwrap_or(if glm4::looks_like_ranks(&data) { TokenizerFamily::Glm4 } else { TokenizerFamily::ChatGlm3 });
        tracing::debug!(?family, path = %path.display(), "loading tokenizer");
        match family {
            TokenizerFamily::Glm4 => Self::glm4(glm4::Glm4::new(&data).map_err(corrupt)?).map_err(corrupt),
            TokenizerFamily::ChatGlm6b | TokenizerFamily::ChatGlm3 => {
                let model = sp_model::parse(&data).map_err(corrupt)?;
                if family == TokenizerFamily::ChatGlm6b {
                    Self::chatglm6b(chatglm6b::ChatGlm6b::new(&model).map_err(corrupt)?).map_err(corrupt)
                } else {
                    Self::chatglm3(chatglm3::ChatGlm3::new(&model).map_err(corrupt)?).map_err(corrupt)
                }
            }
        }
    }

    fn chatglm6b(t: chatglm6b::ChatGlm6b) -> std::result::Result<Self, String> {
        let need = |n: &str| t.control(n).ok_or_else(|| format!("the vocabulary lacks `{n}`"));
        let special = SpecialTokens {
            eos: vec![need("<eop>")?],
            gmask: need("[gMASK]")?,
            sop: need("<sop>")?,
            eop: need("<eop>")?,
            system: None,
            user: None,
            assistant: None,
            observation: None,
        };
        Ok(Self { inner: Inner::ChatGlm6b(t), special })
    }

    fn chatglm3(t: chatglm3::ChatGlm3) -> std::result::Result<Self, String> {
        let s = |n: &str| t.special(n).ok_or_else(|| format!("no special token `{n}`"));
        let special = SpecialTokens {
            eos: vec![t.eos(), s("<|user|>")?, s("<|observation|>")?],
            gmask: s("[gMASK]")?,
            sop: s("sop")?,
            eop: s("eop")?,
            system: Some(s("<|system|>")?),
            user: Some(s("<|user|>")?),
            assistant: Some(s("<|assistant|>")?),
            observation: Some(s("<|observation|>")?),
        };
        Ok(Self { inner: Inner::ChatGlm3(t), special })
    }

    fn glm4(t: glm4::Glm4) -> std::result::Result<Self, String> {
        let s = |n: &str| t.special(n).ok_or_else(|| format!("no special token `{n}`"));
        let special = SpecialTokens {
            eos: vec![s("<|endoftext|>")?, s("<|user|>")?, s("<|observation|>")?],
            gmask: s("[gMASK]")?,
            sop: s("<sop>")?,
            eop: s("<eop>")?,
            system: Some(s("<|system|>")?),
            user: Some(s("<|user|>")?),
            assistant: Some(s("<|assistant|>")?),
            observation: Some(s("<|observation|>")?),
        };
        Ok(Self { inner: Inner::Glm4(t), special })
    }

    /// The model family.
    pub fn family(&self) -> TokenizerFamily {
        match self.inner {
            Inner::ChatGlm6b(_) => TokenizerFamily::ChatGlm6b,
            Inner::ChatGlm3(_) => TokenizerFamily::ChatGlm3,
            Inner::Glm4(_) => TokenizerFamily::Glm4,
        }
    }

    /// The special token ids.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// Number of ids the tokenizer can produce or decode (special tokens included).
    pub fn vocab_size(&self) -> usize {
        self.table().len()
    }

    /// Encodes text to ids, without special tokens; typed control-token strings stay text.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match &self.inner {
            Inner::ChatGlm6b(t) => t.encode(text),
            Inner::ChatGlm3(t) => t.encode(text),
            Inner::Glm4(t) => t.encode(text),
        }
    }

    /// Encodes text with the family's own special prefix/suffix, as the reference tokenizers'
    /// default does: ChatGLM-6B appends `[gMASK] <sop>`, ChatGLM3 and GLM-4 prepend `[gMASK] sop`.
    pub fn encode_with_special(&self, text: &str) -> Vec<u32> {
        let ids = self.encode(text);
        let (g, s) = (self.special.gmask, self.special.sop);
        match self.family() {
            TokenizerFamily::ChatGlm6b => ids.into_iter().chain([g, s]).collect(),
            TokenizerFamily::ChatGlm3 | TokenizerFamily::Glm4 => [g, s].into_iter().chain(ids).collect(),
        }
    }

    /// Decodes ids to text; special and control tokens decode to nothing.
    pub fn decode(&self, ids: &[u32]) -> String {
        decode::decode_all(self.table(), self.rules(), ids)
    }

    /// A decoder fed one id at a time that yields complete UTF-8 pieces; the pieces
    /// (plus [`StreamDecoder::finish`]) concatenate to [`Tokenizer::decode`] of the same ids.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self.table(), self.rules())
    }

    /// The prompt ids of a conversation in the family's chat format (see [`crate::chat_format`]).
    pub fn build_chat(&self, system: Option<&str>, history: &[(String, String)], query: &str) -> Vec<u32> {
        crate::chat_format::build_chat(self, system, history, query)
    }

    fn table(&self) -> &[TokenText] {
        match &self.inner {
            Inner::ChatGlm6b(t) => &t.table,
            Inner::ChatGlm3(t) => &t.table,
            Inner::Glm4(t) => &t.table,
        }
    }

    fn rules(&self) -> DecodeRules {
        match self.inner {
            Inner::ChatGlm6b(_) => chatglm6b::RULES,
            Inner::ChatGlm3(_) => chatglm3::RULES,
            Inner::Glm4(_) => glm4::RULES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The fixture root: `$DOCTORGLM_FIXTURES`, else `../shared/fixtures` beside the repository.
    fn fixtures() -> PathBuf {
        std::env::var_os("DOCTORGLM_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
    }

    /// Every fixture model folder's tokenizer, by family.
    fn tokenizers() -> Vec<Tokenizer> {
        let dir = fixtures().join("models");
        let mut out: Vec<Tokenizer> = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("fixture models in {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for path in entries {
            let tok = Tokenizer::load(&path).unwrap_or_else(|e| panic!("{e}"));
            if !out.iter().any(|t| t.family() == tok.family()) {
                out.push(tok);
            }
        }
        assert_eq!(out.len(), 3, "the fixtures should hold all three families");
        out
    }

    fn tokenizer_file(family: TokenizerFamily) -> PathBuf {
        let dir = fixtures().join("models");
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{e}")).flatten() {
            let p = entry.path();
            if let Ok(t) = Tokenizer::load(&p) {
                if t.family() == family {
                    let ice = p.join("ice_text.model");
                    return if ice.is_file() { ice } else { p.join("tokenizer.model") };
                }
            }
        }
        panic!("no {family:?} fixture");
    }

    #[test]
    fn tokenizer_missing_folder_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tokenizer::load(dir.path()).unwrap_err();
        assert!(matches!(err, TokenizerError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("ice_text.model"));
    }

    #[test]
    fn tokenizer_truncated_or_garbage_files_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        for family in [TokenizerFamily::ChatGlm6b, TokenizerFamily::ChatGlm3, TokenizerFamily::Glm4] {
            let real = std::fs::read(tokenizer_file(family)).unwrap();
            let name = if family == TokenizerFamily::ChatGlm6b { "ice_text.model" } else { "tokenizer.model" };
            let path = dir.path().join(name);
            // Cut in the middle of a record (mid-line for the ranks file).
            let mut cut = real.len() / 2;
            if family == TokenizerFamily::Glm4 {
                while real[cut - 1] == b'\n' || real[cut] == b'\n' {
                    cut += 1;
                }
            }
            for data in [&real[..cut], &real[..7], &b"\x0a\xff\xff\xff\xff garbage"[..]] {
                std::fs::write(&path, data).unwrap();
                let err = Tokenizer::from_file(&path, Some(family)).unwrap_err();
                assert!(matches!(err, TokenizerError::Corrupt { .. }), "{family:?}: {err}");
                assert!(err.to_string().contains(name));
                assert!(Tokenizer::load(dir.path()).is_err());
            }
            std::fs::remove_file(&path).unwrap();
        }
        // An empty tokenizer.model is neither kind.
        std::fs::write(dir.path().join("tokenizer.model"), b"").unwrap();
        assert!(matches!(Tokenizer::load(dir.path()), Err(TokenizerError::Corrupt { .. })));
    }

    #[test]
    fn tokenizer_unreadable_file_is_io_error() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the file should be cannot be read as a file.
        std::fs::create_dir(dir.path().join("tokenizer.model")).unwrap();
        let err = Tokenizer::from_file(&dir.path().join("tokenizer.model"), None).unwrap_err();
        assert!(matches!(err, TokenizerError::Io { .. }), "{err}");
    }

    #[test]
    fn tokenizer_families_and_special_ids() {
        for tok in tokenizers() {
            let sp = tok.special_tokens().clone();
            match tok.family() {
                TokenizerFamily::ChatGlm6b => {
                    assert_eq!((sp.gmask, sp.sop, sp.eop), (130001, 130004, 130005));
                    assert_eq!(sp.eos, vec![130005]);
                }
                TokenizerFamily::ChatGlm3 => {
                    assert_eq!((sp.gmask, sp.sop, sp.user, sp.assistant), (64790, 64792, Some(64795), Some(64796)));
                    assert_eq!(sp.eos, vec![2, 64795, 64797]);
                }
                TokenizerFamily::Glm4 => {
                    assert_eq!((sp.gmask, sp.sop, sp.system), (151331, 151333, Some(151335)));
                    assert_eq!(sp.eos, vec![151329, 151336, 151338]);
                }
            }
        }
    }

    #[test]
    fn tokenizer_typed_control_tokens_stay_text() {
        for tok in tokenizers() {
            let sp = tok.special_tokens().clone();
            let specials: Vec<u32> = [sp.gmask, sp.sop, sp.eop]
                .into_iter()
                .chain([sp.system, sp.user, sp.assistant, sp.observation].into_iter().flatten())
                .collect();
            let typed = "<sop>[gMASK]<|user|>sop<|assistant|><eop><|system|><|observation|><|endoftext|>";
            let ids = tok.encode(typed);
            assert!(ids.iter().all(|id| !specials.contains(id)), "{:?}: {ids:?}", tok.family());
            assert_eq!(tok.decode(&ids), typed, "{:?}", tok.family());
            // The chat builder does insert them, by id.
            let chat = tok.build_chat(None, &[], typed);
            assert!(chat.contains(&sp.gmask) && chat.contains(&sp.sop));
        }
    }

    #[test]
    fn tokenizer_chatglm6b_typed_whitespace_names_stay_text() {
        let tok = tokenizers().into_iter().find(|t| t.family() == TokenizerFamily::ChatGlm6b).unwrap();
        let ids = tok.encode("a<n>b<|tab|>c<|blank_2|>d");
        assert_eq!(tok.decode(&ids), "a<n>b<|tab|>c<|blank_2|>d");
        // Real whitespace does use the whitespace tokens.
        let ws = tok.encode("a\nb\tc  d");
        assert_eq!(tok.decode(&ws), "a\nb\tc  d");
        assert!(ws.len() < ids.len());
    }

    #[test]
    fn tokenizer_long_space_runs_round_trip() {
        for tok in tokenizers() {
            for n in [1, 2, 79, 80, 81, 82, 161, 200] {
                let text = format!("x{}y", " ".repeat(n));
                assert_eq!(tok.decode(&tok.encode(&text)), text, "{:?} run {n}", tok.family());
            }
        }
    }

    #[test]
    fn tokenizer_stream_pieces_are_whole_characters() {
        let text = "病人 体温39.5℃ 😀👍🏻 𠀀𪚥龘\n\t  def f(x):\n    return x  ";
        for tok in tokenizers() {
            let ids = tok.encode(text);
            let mut dec = tok.stream_decoder();
            let mut pieces = Vec::new();
            for &id in &ids {
                pieces.push(dec.push(id));
            }
            pieces.push(dec.finish());
            let joined: String = pieces.concat();
            assert_eq!(joined, tok.decode(&ids), "{:?}", tok.family());
            assert!(!joined.contains('\u{FFFD}'), "{:?}: {joined:?}", tok.family());
            // A byte-fallback character arrives whole: no piece is a fragment of 😀.
            assert!(pieces.iter().any(|p| p.contains('😀') || p.contains('𠀀')), "{:?}", tok.family());
        }
    }

    #[test]
    fn tokenizer_stream_holds_incomplete_bytes_until_finish() {
        let tok = tokenizers().into_iter().find(|t| t.family() == TokenizerFamily::ChatGlm3).unwrap();
        let ids = tok.encode("𪚥");
        assert!(ids.len() >= 4, "expected byte fallback, got {ids:?}");
        let mut dec = tok.stream_decoder();
        // Everything but the last byte: nothing can be emitted yet.
        for &id in &ids[..ids.len() - 1] {
            assert_eq!(dec.push(id), "");
        }
        assert_eq!(dec.finish(), "\u{FFFD}".repeat(ids.len() - 2));
        let mut dec = tok.stream_decoder();
        let out: String = ids.iter().map(|&id| dec.push(id)).collect();
        assert_eq!(out, "𪚥");
    }

    #[test]
    fn tokenizer_out_of_range_ids_decode_to_nothing() {
        for tok in tokenizers() {
            assert_eq!(tok.decode(&[u32::MAX, tok.vocab_size() as u32]), "");
        }
    }

    #[test]
    fn tokenizer_sentence_start_space_rules_follow_sentencepiece() {
        for tok in tokenizers() {
            match tok.family() {
                TokenizerFamily::ChatGlm6b => {
                    // 5 = `▁`, 104 = `▁a`, 4 = `<n>`, 130001 = `[gMASK]` (control).
                    assert_eq!(tok.decode(&[5, 104]), "a");
                    assert_eq!(tok.decode(&[130001, 5, 104]), "a");
                    assert_eq!(tok.decode(&[4, 5, 104]), "\n  a");
                }
                TokenizerFamily::ChatGlm3 => {
                    // 28570 = `Leicester`, 2 = `</s>` (control), 13184 = `▁dressed`, 30910 = `▁`.
                    assert_eq!(tok.decode(&[28570, 2, 13184]), "Leicester dressed");
                    assert_eq!(tok.decode(&[30910, 30910, 13184]), "  dressed");
                    // After a ChatGLM3 special token a new sentence starts (THUDM decodes between them).
                    let assistant = tok.special_tokens().assistant.unwrap();
                    assert_eq!(tok.decode(&[28570, assistant, 13184]), "Leicesterdressed");
                }
                TokenizerFamily::Glm4 => {
                    // Byte-level: a special token between the halves of a character does not break it.
                    let ids = tok.encode("𪚥");
                    let user = tok.special_tokens().user.unwrap();
                    let mut with_special = ids.clone();
                    with_special.insert(1, user);
                    assert_eq!(tok.decode(&with_special), tok.decode(&ids));
                }
            }
        }
    }
}
