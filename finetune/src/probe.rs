//! The probe: general questions answered by greedy decoding at each evaluation, so that a
//! collapse of the model's general abilities (the paper's Table 7) shows while training.
use doctorglm_models::tokenizer::Tokenizer;
use doctorglm_models::{generate, GenerationSettings, Model, Request};
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicBool;

/// A general question and words a sound answer contains (any one of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeQuestion {
    /// The question.
    pub question: String,
    /// Expected keywords.
    pub expected: Vec<String>,
}

impl ProbeQuestion {
    /// The default probe: a capital, arithmetic and a common fact.
    pub fn defaults() -> Vec<Self> {
        let q = |question: &str, expected: &[&str]| ProbeQuestion {
            question: question.into(),
            expected: expected.iter().map(|s| s.to_string()).collect(),
        };
        vec![
            q("中国的首都是哪座城市？", &["北京"]),
            q("1+1等于几？", &["2", "二"]),
            q("一年有几个月？", &["12", "十二"]),
        ]
    }
}

/// Why an answer looks collapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Collapse {
    /// Nothing was generated.
    Empty,
    /// A short pattern repeats, or very few distinct tokens.
    Repetitive,
    /// The base model's answer had an expected keyword; this one has none.
    KeywordLost,
}

/// A probe answer at one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeAnswer {
    /// The question.
    pub question: String,
    /// The greedy answer.
    pub answer: String,
    /// Whether it holds an expected keyword.
    pub has_keyword: bool,
    /// Collapse signs.
    pub collapse: Vec<Collapse>,
}

/// Whether the token ids repeat: a 1- to 4-token pattern four times in a row at the end, or
/// (for 12+ tokens) fewer than a quarter of the tokens distinct.
pub fn is_repetitive(ids: &[u32]) -> bool {
    for period in 1..=4 {
        let need = period * 4;
        if ids.len() >= need {
            let tail = &ids[ids.len() - need..];
            if (period..need).all(|i| tail[i] == tail[i - period]) {
                return true;
            }
        }
    }
    if ids.len() >= 12 {
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        return distinct.len() * 4 < ids.len();
    }
    false
}

/// Answers each question greedily with `adapter` (none = the base model). `baseline` (the base
/// model's answers, same order) decides [`Collapse::KeywordLost`].
pub fn run_probe(
    model: &Model,
    tok: &Tokenizer,
    questions: &[ProbeQuestion],
    adapter: Option<&str>,
    max_tokens: usize,
    baseline: Option<&[ProbeAnswer]>,
) -> doctorglm_models::Result<Vec<ProbeAnswer>> {
    let settings = GenerationSettings::greedy(max_tokens, tok.special_tokens().eos.clone());
    let never = AtomicBool::new(false);
    let mut out = Vec::with_capacity(questions.len());
    for (i, q) in questions.iter().enumerate() {
        let prompt = tok.build_chat(None, &[], &q.question);
        let generated = generate(model, Request { prompt: &prompt, adapter, prefix: None }, &settings, &never, |_| {})?;
        let answer = tok.decode(&generated.ids).trim().to_string();
        let has_keyword = q.expected.iter().any(|k| answer.contains(k.as_str()));
        let mut collapse = Vec::new();
        if answer.is_empty() {
            collapse.push(Collapse::Empty);
        }
        if is_repetitive(&generated.ids) {
            collapse.push(Collapse::Repetitive);
        }
        if !has_keyword && baseline.and_then(|b| b.get(i)).is_some_and(|b| b.has_keyword) {
            collapse.push(Collapse::KeywordLost);
        }
        out.push(ProbeAnswer { question: q.question.clone(), answer, has_keyword, collapse });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_is_seen() {
        assert!(is_repetitive(&[5, 5, 5, 5]));
        assert!(is_repetitive(&[1, 2, 3, 7, 8, 7, 8, 7, 8, 7, 8]));
        assert!(!is_repetitive(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]));
        assert!(!is_repetitive(&[1, 1, 1]));
        assert!(is_repetitive(&[1, 2, 1, 2, 1, 3, 1, 2, 1, 2, 1, 3, 2]));
    }
}
