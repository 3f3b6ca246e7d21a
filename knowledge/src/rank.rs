//! Ranking diseases for a question: a disease named in the question comes first; otherwise
//! diseases are scored from the symptoms (BM25 over symptom lists and sections, plus matches
//! of the question's symptoms against each document's `symptoms` list).
use std::collections::HashMap;

use serde::Serialize;

use crate::error::Result;
use crate::index::KnowledgeIndex;
use crate::keywords::Keyword;
use crate::lexicon::TermKind;
use crate::library::Library;

/// A disease and why it was ranked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankedDisease {
    /// Document id.
    pub id: String,
    /// Disease name.
    pub name: String,
    /// Score (named diseases score 100 and more; symptom scores are lower).
    pub score: f32,
    /// The keywords that matched (never negated ones).
    pub evidence: Vec<String>,
}

/// Score of a disease named in the question (above any symptom score).
pub const NAMED_SCORE: f32 = 100.0;
/// Weight of each question symptom found in a document's `symptoms` list.
pub const LEXICON_WEIGHT: f32 = 1.0;

/// Maps each symptom phrase of the library to the documents listing it.
#[derive(Debug, Clone, Default)]
pub struct SymptomMap {
    by_symptom: HashMap<String, Vec<usize>>,
    ids: Vec<(String, String)>,
}

impl SymptomMap {
    /// Builds the map from the library's `symptoms` lists.
    pub fn new(library: &Library) -> Self {
        let mut m = SymptomMap::default();
        for (i, d) in library.documents().enumerate() {
            m.ids.push((d.id.clone(), d.name.clone()));
            for s in &d.symptoms {
                let list = m.by_symptom.entry(s.to_lowercase()).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        m
    }
}

/// Ranks diseases for the keywords of a question; `index` adds BM25 over symptom text.
pub fn rank(library: &Library, symptoms_map: &SymptomMap, index: Option<&KnowledgeIndex>, keywords: &[Keyword], top_k: usize) -> Result<Vec<RankedDisease>> {
    let mut out: Vec<RankedDisease> = Vec::new();
    // 1. Diseases named in the question, in order of mention.
    for k in keywords.iter().filter(|k| k.kind == TermKind::Disease && !k.negated) {
        for id in &k.doc_ids {
            if let Some(r) = out.iter_mut().find(|r| &r.id == id) {
                if !r.evidence.contains(&k.text) {
                    r.evidence.push(k.text.clone());
                }
                continue;
            }
            if let Some(d) = library.get(id) {
                let score = NAMED_SCORE - out.len() as f32;
                out.push(RankedDisease { id: id.clone(), name: d.name.clone(), score, evidence: vec![k.text.clone()] });
            }
        }
    }
    // 2. Symptoms.
    let mut symptoms: Vec<&str> = Vec::new();
    for k in keywords.iter().filter(|k| k.kind == TermKind::Symptom && !k.negated) {
        if !symptoms.contains(&k.text.as_str()) {
            symptoms.push(&k.text);
        }
    }
    if !symptoms.is_empty() && out.len() < top_k {
        let mut scores: HashMap<String, (f32, Vec<String>)> = HashMap::new();
        for s in &symptoms {
            if let Some(docs) = symptoms_map.by_symptom.get(&s.to_lowercase()) {
                for &i in docs {
                    let e = scores.entry(symptoms_map.ids[i].0.clone()).or_default();
                    e.0 += LEXICON_WEIGHT;
                    e.1.push(s.to_string());
                }
            }
        }
        if let Some(index) = index {
            let hits = index.search_symptoms(&symptoms, (top_k * 5).max(20))?;
            let max = hits.first().map(|h| h.score).unwrap_or(0.0);
            for h in hits {
                let e = scores.entry(h.id.clone()).or_default();
                if max > 0.0 {
                    e.0 += h.score / max;
                }
                if let Some(d) = library.get(&h.id) {
                    let text = d.section(crate::SectionKind::Symptoms).map(|s| s.body.to_lowercase()).unwrap_or_default();
                    for s in &symptoms {
                        if text.contains(&s.to_lowercase()) && !e.1.iter().any(|x| x == s) {
                            e.1.push(s.to_string());
                        }
                    }
                }
            }
        }
        let mut ranked: Vec<(String, f32, Vec<String>)> =
            scores.into_iter().filter(|(id, _)| !out.iter().any(|r| &r.id == id)).map(|(id, (s, ev))| (id, s, ev)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (id, score, evidence) in ranked.into_iter().take(top_k.saturating_sub(out.len())) {
            let name = library.get(&id).map(|d| d.name.clone()).unwrap_or_default();
            out.push(RankedDisease { id, name, score, evidence });
        }
    }
    out.truncate(top_k);
    Ok(out)
}
