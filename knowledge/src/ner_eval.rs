//! Entity-level evaluation of keyword extraction on a CBLUE (CMeEE) NER file: precision,
//! recall and F1 for diseases (`dis`) and symptoms (`sym`), exact span match.
use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{KnowledgeError, Result};
use crate::keywords::KeywordExtractor;
use crate::lexicon::TermKind;

/// One text of a CBLUE NER file with its gold entities.
#[derive(Debug, Clone, Deserialize)]
pub struct NerRecord {
    /// The text.
    pub text: String,
    /// Gold entities.
    #[serde(default)]
    pub entities: Vec<NerEntity>,
}

/// A gold entity: character offsets, `end_idx` inclusive.
#[derive(Debug, Clone, Deserialize)]
pub struct NerEntity {
    /// First character.
    pub start_idx: usize,
    /// Last character (inclusive).
    pub end_idx: usize,
    /// CBLUE type (`dis`, `sym`, `bod`, ...).
    #[serde(rename = "type")]
    pub kind: String,
}

/// Counts and scores of one entity type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Scores {
    /// Predicted entities that are gold entities.
    pub true_positives: usize,
    /// Predicted entities.
    pub predicted: usize,
    /// Gold entities.
    pub gold: usize,
}

impl Scores {
    /// Precision (0 when nothing was predicted).
    pub fn precision(&self) -> f64 {
        if self.predicted == 0 { 0.0 } else { self.true_positives as f64 / self.predicted as f64 }
    }
    /// Recall (0 when there is no gold entity).
    pub fn recall(&self) -> f64 {
        if self.gold == 0 { 0.0 } else { self.true_positives as f64 / self.gold as f64 }
    }
    /// F1.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }
    fn add(&mut self, o: &Scores) {
        self.true_positives += o.true_positives;
        self.predicted += o.predicted;
        self.gold += o.gold;
    }
}

/// The evaluation's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NerReport {
    /// Texts evaluated.
    pub texts: usize,
    /// Diseases (`dis`).
    pub dis: Scores,
    /// Symptoms (`sym`).
    pub sym: Scores,
    /// Both together (micro-averaged).
    pub all: Scores,
}

/// Reads a CBLUE NER file (a JSON array of `{text, entities:[{start_idx, end_idx (inclusive),
/// type, entity}]}`) and scores the extractor on `dis` and `sym`.
pub fn evaluate_file(extractor: &KeywordExtractor, path: &Path) -> Result<NerReport> {
    Ok(evaluate_records(extractor, &read_records(path)?))
}

/// Scores the extractor on records read by [`read_records`].
pub fn evaluate_records(extractor: &KeywordExtractor, records: &[NerRecord]) -> NerReport {
    evaluate(extractor, records.iter().map(|r| (r.text.as_str(), r.entities.iter().map(|e| (e.start_idx, e.end_idx, e.kind.as_str())))))
}

/// Reads a CBLUE NER file: a JSON array of `{text, entities:[{start_idx, end_idx (inclusive),
/// type, entity}]}`.
pub fn read_records(path: &Path) -> Result<Vec<NerRecord>> {
    let bytes = std::fs::read(path).map_err(|e| KnowledgeError::io("read", path, e))?;
    let text = crate::encoding::decode(&bytes).map_err(|e| KnowledgeError::Encoding { path: path.to_path_buf(), reason: e.to_string() })?.text;
    serde_json::from_str(&text).map_err(|e| KnowledgeError::EvalFormat {
        path: path.to_path_buf(),
        reason: format!("not a CBLUE NER file (a JSON array of {{text, entities}}): {e}"),
    })
}

/// Scores the extractor on texts with gold entities `(start, end inclusive, type)` in characters.
pub fn evaluate<'a, I, E>(extractor: &KeywordExtractor, records: I) -> NerReport
where
    I: IntoIterator<Item = (&'a str, E)>,
    E: IntoIterator<Item = (usize, usize, &'a str)>,
{
    let mut report = NerReport::default();
    for (text, gold) in records {
        report.texts += 1;
        let gold: HashSet<(usize, usize, &str)> = gold.into_iter().filter(|g| g.2 == "dis" || g.2 == "sym").collect();
        let predicted: HashSet<(usize, usize, &str)> = extractor
            .extract(text)
            .into_iter()
            .filter(|k| k.end > k.start)
            .map(|k| (k.start, k.end - 1, if k.kind == TermKind::Disease { "dis" } else { "sym" }))
            .collect();
        for (kind, scores) in [("dis", &mut report.dis), ("sym", &mut report.sym)] {
            let g: HashSet<_> = gold.iter().filter(|x| x.2 == kind).collect();
            let p: HashSet<_> = predicted.iter().filter(|x| x.2 == kind).collect();
            scores.gold += g.len();
            scores.predicted += p.len();
            scores.true_positives += p.intersection(&g).count();
        }
    }
    let (dis, sym) = (report.dis, report.sym);
    report.all.add(&dis);
    report.all.add(&sym);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexicon::LexiconBuilder;

    #[test]
    fn scores_exact_spans_per_type() {
        let mut b = LexiconBuilder::new();
        b.add("发热", TermKind::Symptom, None, true);
        b.add("咳嗽", TermKind::Symptom, None, true);
        b.add("肺炎", TermKind::Disease, None, true);
        let x = KeywordExtractor::new(b.build().unwrap());
        // Gold: 发热 (sym, 2..3), 肺炎 (dis, 5..6), 咳嗽 typed as dis (a type mismatch), 头痛 missed.
        let text = "患儿发热，肺炎，咳嗽，头痛";
        let gold = vec![(2, 3, "sym"), (5, 6, "dis"), (8, 9, "dis"), (11, 12, "sym"), (0, 1, "bod")];
        let r = evaluate(&x, [(text, gold)]);
        assert_eq!(r.dis, Scores { true_positives: 1, predicted: 1, gold: 2 });
        assert_eq!(r.sym, Scores { true_positives: 1, predicted: 2, gold: 2 });
        assert_eq!(r.all, Scores { true_positives: 2, predicted: 3, gold: 4 });
        assert!((r.all.f1() - 2.0 * (2.0 / 3.0) * 0.5 / (2.0 / 3.0 + 0.5)).abs() < 1e-9);
    }

    #[test]
    fn refuses_a_file_of_the_wrong_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        std::fs::write(&p, "{\"not\": \"an array\"}").unwrap();
        let x = KeywordExtractor::new(LexiconBuilder::new().build().unwrap());
        let err = evaluate_file(&x, &p).unwrap_err().to_string();
        assert!(err.contains("CBLUE"), "{err}");
    }
}
