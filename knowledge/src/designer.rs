//! The prompt designer (after DoctorGLM): keywords → ranked diseases → the top disease as a
//! label with a brief description (symptoms, diagnosis, treatment, prevention) within a token
//! budget → the prompt, as a system message (ChatGLM3, GLM-4) or as leading text (ChatGLM-6B),
//! with the sources the UI cites.
use std::path::PathBuf;

use serde::Serialize;

use crate::document::{Document, SectionKind};
use crate::error::Result;
use crate::index::KnowledgeIndex;
use crate::keywords::{Keyword, KeywordExtractor};
use crate::lexicon::{LexiconBuilder, TermKind};
use crate::library::Library;
use crate::rank::{rank, RankedDisease, SymptomMap};

/// Where the description goes in the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptStyle {
    /// As a system message (ChatGLM3, GLM-4).
    SystemMessage,
    /// As text before the question in the user turn (ChatGLM-6B, ChatGLM2).
    LeadingText,
}

/// Options of one design.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesignerOptions {
    /// When false the question passes through unchanged.
    pub enabled: bool,
    /// Budget of the description, in approximate tokens (see [`approx_tokens`]).
    pub token_budget: usize,
    /// System message or leading text.
    pub style: PromptStyle,
    /// How many diseases to rank.
    pub top_k: usize,
    /// Sections of the top disease put into the prompt, in order.
    pub sections: Vec<SectionKind>,
}

impl Default for DesignerOptions {
    fn default() -> Self {
        DesignerOptions {
            enabled: true,
            token_budget: 400,
            style: PromptStyle::SystemMessage,
            top_k: 5,
            sections: vec![SectionKind::Symptoms, SectionKind::Diagnosis, SectionKind::Treatment, SectionKind::Prevention],
        }
    }
}

/// A passage of the library put into the prompt, for the UI to cite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// Document id.
    pub doc_id: String,
    /// Disease name (document title).
    pub title: String,
    /// Which section.
    pub section: SectionKind,
    /// Character range `[start, end)` of the section text used (Unicode scalar values).
    pub span: (usize, usize),
}

/// The designed prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesignedPrompt {
    /// The system message, for models that have one (style [`PromptStyle::SystemMessage`]).
    pub system: Option<String>,
    /// The text of the user turn (the question, after the description for leading-text style).
    pub user_text: String,
    /// Passages used.
    pub sources: Vec<Source>,
    /// Keywords found in the question.
    pub keywords: Vec<Keyword>,
    /// Diseases ranked.
    pub diseases: Vec<RankedDisease>,
}

impl DesignedPrompt {
    /// The whole prompt as one text (system message, blank line, user text).
    pub fn full_text(&self) -> String {
        match &self.system {
            Some(s) => format!("{s}\n\n{}", self.user_text),
            None => self.user_text.clone(),
        }
    }
}

/// Lets the engine name the disease first (as the DoctorGLM repository did). The app
/// implements it with a short generation; errors and unknown names fall back to ranking.
pub trait DiseaseNamer {
    /// The disease the question is most likely about, or None.
    fn name_disease(&self, question: &str) -> std::result::Result<Option<String>, String>;
}

/// Approximate token count: one per CJK character, one per four other characters.
pub fn approx_tokens(text: &str) -> usize {
    let (mut cjk, mut other) = (0usize, 0usize);
    for c in text.chars() {
        if c as u32 >= 0x2e80 {
            cjk += 1;
        } else {
            other += 1;
        }
    }
    cjk + other.div_ceil(4)
}

/// The longest prefix of `text` within `budget` approximate tokens, cut after a sentence end
/// when one falls in the second half. Returns the prefix length in characters.
fn cut_to_budget(text: &str, budget: usize) -> usize {
    if approx_tokens(text) <= budget {
        return text.chars().count();
    }
    let (mut used, mut other, mut n, mut last_stop) = (0usize, 0usize, 0usize, None);
    for c in text.chars() {
        if c as u32 >= 0x2e80 {
            used += 1;
        } else {
            other += 1;
        }
        if used + other.div_ceil(4) > budget {
            break;
        }
        n += 1;
        if "。；！？.;!?\n".contains(c) {
            last_stop = Some(n);
        }
    }
    match last_stop {
        Some(s) if s * 2 >= n => s,
        _ => n,
    }
}

/// The designer: a library, its lexicon and (optionally) its index.
pub struct PromptDesigner {
    library: Library,
    index: Option<KnowledgeIndex>,
    extractor: KeywordExtractor,
    symptoms: SymptomMap,
}

impl std::fmt::Debug for PromptDesigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptDesigner").field("docs", &self.library.len()).field("index", &self.index).finish()
    }
}

impl PromptDesigner {
    /// A designer over a library, an optional index (BM25 over symptoms), and extra lexicon
    /// files (one term a line) of diseases or symptoms.
    pub fn new(library: Library, index: Option<KnowledgeIndex>, extra_lexicons: &[(PathBuf, TermKind)]) -> Result<PromptDesigner> {
        let mut b = LexiconBuilder::new();
        b.add_library(&library);
        for (path, kind) in extra_lexicons {
            let n = b.add_file(path, *kind)?;
            tracing::info!(path = %path.display(), terms = n, "extra lexicon added");
        }
        let extractor = KeywordExtractor::new(b.build()?);
        let symptoms = SymptomMap::new(&library);
        Ok(PromptDesigner { library, index, extractor, symptoms })
    }

    /// The library.
    pub fn library(&self) -> &Library {
        &self.library
    }

    /// The search index, if the designer has one.
    pub fn index(&self) -> Option<&KnowledgeIndex> {
        self.index.as_ref()
    }

    /// The keyword extractor.
    pub fn extractor(&self) -> &KeywordExtractor {
        &self.extractor
    }

    /// Designs the prompt for a question.
    pub fn design(&self, question: &str, options: &DesignerOptions, namer: Option<&dyn DiseaseNamer>) -> Result<DesignedPrompt> {
        if !options.enabled {
            return Ok(DesignedPrompt { system: None, user_text: question.to_string(), sources: vec![], keywords: vec![], diseases: vec![] });
        }
        let keywords = self.extractor.extract(question);
        let mut diseases = rank(&self.library, &self.symptoms, self.index.as_ref(), &keywords, options.top_k.max(1))?;
        if let Some(namer) = namer {
            self.apply_namer(namer, question, &mut diseases, options.top_k.max(1));
        }
        let top = diseases.first().and_then(|d| self.library.get(&d.id));
        let (description, sources) = match top {
            Some(doc) => self.describe(doc, options),
            None => (None, vec![]),
        };
        let (system, user_text) = match (description, options.style) {
            (None, _) => (None, question.to_string()),
            (Some(d), PromptStyle::SystemMessage) => (Some(d), question.to_string()),
            (Some(d), PromptStyle::LeadingText) => (None, format!("{d}\n\n{question}")),
        };
        Ok(DesignedPrompt { system, user_text, sources, keywords, diseases })
    }

    fn apply_namer(&self, namer: &dyn DiseaseNamer, question: &str, diseases: &mut Vec<RankedDisease>, top_k: usize) {
        let named = match namer.name_disease(question) {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "the disease namer failed; using the ranking alone");
                return;
            }
        };
        // The name itself, or the first library disease its text mentions.
        let doc = self.library.find_by_name(&named).or_else(|| {
            self.extractor
                .extract(&named)
                .into_iter()
                .filter(|k| k.kind == TermKind::Disease)
                .find_map(|k| k.doc_ids.first().and_then(|id| self.library.get(id)))
        });
        let Some(doc) = doc else {
            tracing::info!(named = %named, "the namer's disease is not in the library");
            return;
        };
        let evidence = format!("named by the model: {named}");
        diseases.retain(|d| d.id != doc.id);
        let score = diseases.first().map_or(crate::rank::NAMED_SCORE, |d| d.score.max(crate::rank::NAMED_SCORE) + 1.0);
        diseases.insert(0, RankedDisease { id: doc.id.clone(), name: doc.name.clone(), score, evidence: vec![evidence] });
        diseases.truncate(top_k);
    }

    /// The label and brief description of a disease within the budget, with its sources.
    fn describe(&self, doc: &Document, options: &DesignerOptions) -> (Option<String>, Vec<Source>) {
        let zh = doc.language != "en";
        let mut text = if zh {
            let en = doc.name_en.as_deref().map(|e| format!("（{e}）")).unwrap_or_default();
            format!("以下是与问题可能相关的疾病资料，仅供参考，请结合问题作答：\n疾病：{}{en}\n", doc.name)
        } else {
            format!("Reference notes on a disease that may be relevant; use them with judgement:\nDisease: {}\n", doc.name)
        };
        let mut budget = options.token_budget.saturating_sub(approx_tokens(&text));
        let present: Vec<&crate::document::Section> =
            options.sections.iter().filter_map(|k| doc.section(*k)).filter(|s| !s.body.trim().is_empty()).collect();
        let mut sources = Vec::new();
        for (i, s) in present.iter().enumerate() {
            let label = if zh { format!("{}：", s.kind.heading_zh()) } else { format!("{}: ", s.kind.heading_en()) };
            let share = budget / (present.len() - i);
            let label_cost = approx_tokens(&label);
            if share <= label_cost + 4 {
                continue;
            }
            let body = s.body.trim();
            let n = cut_to_budget(body, share - label_cost);
            if n == 0 {
                continue;
            }
            let part: String = body.chars().take(n).collect();
            let part_one_line = part.split_whitespace().collect::<Vec<_>>().join(" ");
            text.push_str(&label);
            text.push_str(&part_one_line);
            text.push('\n');
            budget = budget.saturating_sub(label_cost + approx_tokens(&part));
            // Span in the section's stored (untrimmed) body.
            let lead = s.body.chars().count() - s.body.trim_start().chars().count();
            sources.push(Source { doc_id: doc.id.clone(), title: doc.name.clone(), section: s.kind, span: (lead, lead + n) });
        }
        if sources.is_empty() {
            return (None, vec![]);
        }
        (Some(text.trim_end().to_string()), sources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::tests::doc;
    use crate::progress::CancelToken;

    fn designer(with_index: bool) -> PromptDesigner {
        let mut lib = Library::empty("mem");
        lib.insert_in_memory(doc("tonsillitis", "扁桃体炎", &["急性扁桃体炎"], &["咽痛", "吞咽痛", "发热"], "咽痛，吞咽痛，发热，扁桃体红肿。")).unwrap();
        lib.insert_in_memory(doc("gastroenteritis", "急性胃肠炎", &["胃肠炎"], &["腹泻", "呕吐", "腹痛", "发热"], "腹泻，呕吐，腹痛，可有发热。")).unwrap();
        lib.insert_in_memory(doc("cold", "普通感冒", &["感冒"], &["流涕", "咳嗽", "咽痛"], "流涕，咳嗽，咽痛，低热。")).unwrap();
        let index = if with_index {
            let mut i = KnowledgeIndex::in_memory().unwrap();
            i.sync(&lib, &mut (), &CancelToken::new()).unwrap();
            Some(i)
        } else {
            None
        };
        PromptDesigner::new(lib, index, &[]).unwrap()
    }

    #[test]
    fn a_named_disease_comes_first_and_is_described() {
        let d = designer(true);
        let p = d.design("急性扁桃体炎，腹泻，怎么治疗？", &DesignerOptions::default(), None).unwrap();
        assert_eq!(p.diseases[0].id, "tonsillitis");
        assert!(p.diseases[0].score >= crate::rank::NAMED_SCORE);
        let system = p.system.as_deref().unwrap();
        assert!(system.contains("疾病：扁桃体炎"), "{system}");
        assert!(system.contains("治疗：对症治疗"), "{system}");
        assert_eq!(p.user_text, "急性扁桃体炎，腹泻，怎么治疗？");
        assert!(p.sources.iter().all(|s| s.doc_id == "tonsillitis"));
        assert!(p.sources.iter().any(|s| s.section == SectionKind::Symptoms));
        let sym = d.library().get("tonsillitis").unwrap().section(SectionKind::Symptoms).unwrap();
        let s = p.sources.iter().find(|s| s.section == SectionKind::Symptoms).unwrap();
        assert_eq!(s.span, (0, sym.body.chars().count()));
    }

    #[test]
    fn symptoms_rank_and_negated_ones_do_not_count() {
        let d = designer(true);
        let p = d.design("拉肚子，腹泻呕吐，发热", &DesignerOptions::default(), None).unwrap();
        assert_eq!(p.diseases[0].id, "gastroenteritis", "{:?}", p.diseases);
        assert!(p.diseases[0].evidence.contains(&"腹泻".to_string()));
        let p = d.design("咽痛，没有腹泻，无呕吐", &DesignerOptions::default(), None).unwrap();
        assert!(p.keywords.iter().any(|k| k.text == "腹泻" && k.negated));
        assert_ne!(p.diseases[0].id, "gastroenteritis", "{:?}", p.diseases);
        assert!(p.diseases.iter().all(|d| !d.evidence.contains(&"腹泻".to_string())));
        // Without an index, the lexicon alone still ranks.
        let p = designer(false).design("腹泻呕吐", &DesignerOptions::default(), None).unwrap();
        assert_eq!(p.diseases[0].id, "gastroenteritis");
    }

    #[test]
    fn styles_budget_and_off_switch() {
        let d = designer(true);
        let q = "扁桃体炎怎么办";
        let lead = d.design(q, &DesignerOptions { style: PromptStyle::LeadingText, ..Default::default() }, None).unwrap();
        assert!(lead.system.is_none());
        assert!(lead.user_text.starts_with("以下是") && lead.user_text.ends_with(q));
        let small = d.design(q, &DesignerOptions { token_budget: 50, ..Default::default() }, None).unwrap();
        assert!(approx_tokens(small.system.as_deref().unwrap()) <= 50, "{:?}", small.system);
        let big = d.design(q, &DesignerOptions::default(), None).unwrap();
        assert!(small.sources.len() < big.sources.len() || small.sources.iter().zip(&big.sources).any(|(a, b)| a.span.1 < b.span.1));
        let off = d.design(q, &DesignerOptions { enabled: false, ..Default::default() }, None).unwrap();
        assert_eq!((off.system, off.user_text.as_str(), off.sources.len()), (None, q, 0));
        let none = d.design("今天天气很好", &DesignerOptions::default(), None).unwrap();
        assert_eq!((none.system, none.user_text.as_str()), (None, "今天天气很好"));
    }

    struct Namer(std::result::Result<Option<String>, String>);
    impl DiseaseNamer for Namer {
        fn name_disease(&self, _q: &str) -> std::result::Result<Option<String>, String> {
            self.0.clone()
        }
    }

    #[test]
    fn the_engine_can_name_the_disease_first() {
        let d = designer(true);
        let o = DesignerOptions::default();
        let p = d.design("咽痛，咳嗽，流涕", &o, Some(&Namer(Ok(Some("可能是急性胃肠炎".into()))))).unwrap();
        assert_eq!(p.diseases[0].id, "gastroenteritis");
        assert!(p.system.unwrap().contains("急性胃肠炎"));
        let p = d.design("咽痛，咳嗽，流涕", &o, Some(&Namer(Err("engine not loaded".into())))).unwrap();
        assert_eq!(p.diseases[0].id, "cold");
        let p = d.design("咽痛，咳嗽，流涕", &o, Some(&Namer(Ok(Some("不认识的病".into()))))).unwrap();
        assert_eq!(p.diseases[0].id, "cold");
    }

    #[test]
    fn cuts_at_sentence_ends_within_budget() {
        assert_eq!(approx_tokens("发热abcd"), 3);
        let t = "第一句话。第二句话很长很长很长。";
        assert_eq!(cut_to_budget(t, 100), t.chars().count());
        assert_eq!(cut_to_budget(t, 8), 5);
    }
}
