//! DoctorGLM disease library and prompt designer (the paper's "prompt designer"): the library
//! of disease documents, its importers, a tantivy index, keyword extraction, disease ranking
//! and the prompt with its cited sources. It knows nothing of the engine.
//!
//! Module map:
//! - [`document`]: the disease document and its Markdown + front matter file format.
//! - [`library`]: the library folder (load, add without overwriting).
//! - [`encoding`]: decoding bytes of unknown encoding (UTF-8, UTF-16, GBK/GB18030).
//! - [`import`]: importers (Markdown/text, QASystemOnMedicalKG JSONL, CSV, MedQuAD XML, HTML).
//! - [`segment`]: jieba segmentation and the tantivy tokenizer on it.
//! - [`index`]: the tantivy index (incremental, versioned, rebuildable).
//! - [`lexicon`]: disease and symptom terms with an Aho-Corasick matcher.
//! - [`keywords`]: keyword extraction with negation.
//! - [`rank`]: ranking diseases from keywords.
//! - [`designer`]: the prompt designer and its sources.
//! - [`ner_eval`]: P/R/F1 of keyword extraction on CBLUE NER files.
//! - [`progress`]: progress reports and cancellation for long work.
//! - [`error`]: the crate's error type.
pub mod document;
pub mod encoding;
pub mod error;
pub mod designer;
pub mod import;
pub mod index;
pub mod keywords;
pub mod lexicon;
pub mod library;
pub mod ner_eval;
pub mod progress;
pub mod rank;
pub mod segment;

pub use document::{Document, Section, SectionKind};
pub use error::{KnowledgeError, Result};
pub use library::Library;
pub use progress::{CancelToken, Progress, ProgressSink};
pub use designer::{DesignedPrompt, DesignerOptions, DiseaseNamer, PromptDesigner, PromptStyle, Source};
pub use index::KnowledgeIndex;
pub use keywords::{Keyword, KeywordExtractor};
pub use lexicon::{Lexicon, LexiconBuilder, TermKind};
pub use rank::RankedDisease;
