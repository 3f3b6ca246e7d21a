//! Cleaning: length filters (characters, and tokens through a caller's counter), exact and
//! near-duplicate removal, a seeded train/validation split and token-length histograms.

use std::collections::{BTreeMap, HashSet};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DatasetError, Result};
use crate::record::{Dialogue, Location};

/// Which duplicates to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dedup {
    /// Keep duplicates.
    None,
    /// Remove dialogues whose text is identical.
    Exact,
    /// Also remove dialogues identical after normalisation (case, full-width forms, spaces, punctuation).
    Near,
}

/// Cleaning settings; the defaults follow the paper (max source 512 tokens, max target 100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleanSettings {
    /// Dialogues whose input side is shorter (characters) are removed.
    pub min_source_chars: usize,
    /// Dialogues whose input side is longer (characters) are removed, when set.
    pub max_source_chars: Option<usize>,
    /// Dialogues whose answer is shorter (characters) are removed.
    pub min_target_chars: usize,
    /// Dialogues whose answer is longer (characters) are removed, when set.
    pub max_target_chars: Option<usize>,
    /// Training truncates the input side to this many tokens (paper: 512).
    pub max_source_tokens: usize,
    /// Training truncates the answer to this many tokens (paper: 100).
    pub max_target_tokens: usize,
    /// Remove dialogues over the token limits instead of letting training truncate them.
    pub drop_over_token_limits: bool,
    /// Duplicate removal.
    pub dedup: Dedup,
    /// Share of dialogues held out for validation (0 ≤ f < 1).
    pub validation_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
}

impl Default for CleanSettings {
    fn default() -> Self {
        CleanSettings {
            min_source_chars: 2,
            max_source_chars: None,
            min_target_chars: 2,
            max_target_chars: None,
            max_source_tokens: 512,
            max_target_tokens: 100,
            drop_over_token_limits: false,
            dedup: Dedup::Near,
            validation_fraction: 0.05,
            seed: 42,
        }
    }
}

/// Why a dialogue was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Removal {
    /// Input side shorter than `min_source_chars`.
    SourceTooShort,
    /// Input side longer than `max_source_chars`.
    SourceTooLong,
    /// Answer shorter than `min_target_chars`.
    TargetTooShort,
    /// Answer longer than `max_target_chars`.
    TargetTooLong,
    /// Over a token limit with `drop_over_token_limits`.
    OverTokenLimit,
    /// Same text as an earlier dialogue.
    ExactDuplicate,
    /// Same normalised text as an earlier dialogue.
    NearDuplicate,
}

/// What cleaning removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanReport {
    /// Dialogues in.
    pub input: usize,
    /// Dialogues kept.
    pub kept: usize,
    /// Removed dialogues by reason.
    pub removed: BTreeMap<Removal, usize>,
    /// Up to 5 removed dialogues per reason, by where they came from.
    pub examples: Vec<(Removal, Option<Location>)>,
}

/// Counts tokens of a text (the base model's tokenizer, supplied by the caller).
pub type TokenCounter<'a> = &'a dyn Fn(&str) -> usize;

/// A rough token count when no tokenizer is at hand: one per CJK character, one per other word.
pub fn approximate_tokens(text: &str) -> usize {
    let mut n = 0;
    let mut in_word = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if !in_word {
                n += 1;
            }
            in_word = true;
        } else {
            in_word = false;
            if !c.is_whitespace() {
                n += 1;
            }
        }
    }
    n
}

/// Text normalised for near-duplicate detection: lower case, half-width, no spaces or punctuation.
pub fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| match c as u32 {
            0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            0x3000 => ' ',
            _ => c,
        })
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn digest(text: &str) -> [u8; 16] {
    let full = Sha256::digest(text.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn exact_key(d: &Dialogue) -> String {
    let mut s = d.system.clone().unwrap_or_default();
    for t in &d.turns {
        s.push('\u{1}');
        s.push_str(&t.user);
        s.push('\u{2}');
        s.push_str(&t.assistant);
    }
    s
}

/// Applies the length filters and duplicate removal; order of the kept dialogues is preserved.
pub fn clean(dialogues: Vec<Dialogue>, settings: &CleanSettings, tokens: Option<TokenCounter<'_>>) -> (Vec<Dialogue>, CleanReport) {
    let mut report = CleanReport { input: dialogues.len(), ..Default::default() };
    let mut exact = HashSet::new();
    let mut near = HashSet::new();
    let mut kept = Vec::with_capacity(dialogues.len());
    for d in dialogues {
        let source = d.source_text();
        let target = d.target_text();
        let (sc, tc) = (source.trim().chars().count(), target.trim().chars().count());
        let mut reason = if sc < settings.min_source_chars {
            Some(Removal::SourceTooShort)
        } else if settings.max_source_chars.is_some_and(|m| sc > m) {
            Some(Removal::SourceTooLong)
        } else if tc < settings.min_target_chars {
            Some(Removal::TargetTooShort)
        } else if settings.max_target_chars.is_some_and(|m| tc > m) {
            Some(Removal::TargetTooLong)
        } else {
            None
        };
        if reason.is_none() && settings.drop_over_token_limits {
            let count = tokens.unwrap_or(&approximate_tokens);
            if count(&source) > settings.max_source_tokens || count(target) > settings.max_target_tokens {
                reason = Some(Removal::OverTokenLimit);
            }
        }
        if reason.is_none() && settings.dedup != Dedup::None {
            if !exact.insert(digest(&exact_key(&d))) {
                reason = Some(Removal::ExactDuplicate);
            } else if settings.dedup == Dedup::Near && !near.insert(digest(&normalize(&d.all_text()))) {
                reason = Some(Removal::NearDuplicate);
            }
        }
        match reason {
            Some(r) => {
                *report.removed.entry(r).or_insert(0) += 1;
                if report.examples.iter().filter(|e| e.0 == r).count() < 5 {
                    report.examples.push((r, d.origin));
                }
            }
            None => kept.push(d),
        }
    }
    report.kept = kept.len();
    (kept, report)
}

/// Shuffles with `seed` and holds out `fraction` for validation (at least one when
/// `fraction > 0` and there are two or more dialogues).
pub fn split(mut dialogues: Vec<Dialogue>, fraction: f64, seed: u64) -> Result<(Vec<Dialogue>, Vec<Dialogue>)> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(DatasetError::Settings(format!("the validation fraction must be at least 0 and below 1, not {fraction}")));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    dialogues.shuffle(&mut rng);
    let n = dialogues.len();
    let mut v = (n as f64 * fraction).round() as usize;
    if fraction > 0.0 && n >= 2 {
        v = v.clamp(1, n - 1);
    }
    let validation = dialogues.split_off(n - v);
    Ok((dialogues, validation))
}

/// One bar of a histogram: lengths in `from..to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bin {
    /// Smallest length in the bar.
    pub from: usize,
    /// One past the largest length (the last bar is open: `to` is the largest length seen + 1).
    pub to: usize,
    /// Dialogues in the bar.
    pub count: usize,
}

/// Token lengths against a limit, for the UI to plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// The limit (max source or target tokens).
    pub limit: usize,
    /// Bars of equal width from 0 to twice the limit, then one open bar.
    pub bins: Vec<Bin>,
    /// Values over the limit (truncated in training).
    pub over_limit: usize,
    /// Values in all.
    pub total: usize,
    /// Largest value.
    pub max: usize,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: usize,
    /// 95th percentile.
    pub p95: usize,
}

/// A histogram of `values` with 16 bars up to the limit and 16 more up to twice the limit.
pub fn histogram(values: &[usize], limit: usize) -> Histogram {
    let width = (limit / 16).max(1);
    let edge = width * 32;
    let mut bins: Vec<Bin> = (0..32).map(|i| Bin { from: i * width, to: (i + 1) * width, count: 0 }).collect();
    let max = values.iter().copied().max().unwrap_or(0);
    let mut open = Bin { from: edge, to: max.max(edge) + 1, count: 0 };
    for &v in values {
        if v >= edge {
            open.count += 1;
        } else {
            bins[v / width].count += 1;
        }
    }
    bins.push(open);
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let pct = |p: f64| sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
    Histogram {
        limit,
        bins,
        over_limit: values.iter().filter(|&&v| v > limit).count(),
        total: values.len(),
        max,
        mean: if values.is_empty() { 0.0 } else { values.iter().sum::<usize>() as f64 / values.len() as f64 },
        p50: pct(0.5),
        p95: pct(0.95),
    }
}

/// Source and target token-length histograms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenHistograms {
    /// Input side against `max_source_tokens`.
    pub source: Histogram,
    /// Answers against `max_target_tokens`.
    pub target: Histogram,
    /// True when counted by the caller's tokenizer; false for [`approximate_tokens`].
    pub exact_tokenizer: bool,
}

/// Histograms of the dialogues' source and target lengths in tokens.
pub fn token_histograms(dialogues: &[Dialogue], settings: &CleanSettings, tokens: Option<TokenCounter<'_>>) -> TokenHistograms {
    let count = tokens.unwrap_or(&approximate_tokens);
    let source: Vec<usize> = dialogues.iter().map(|d| count(&d.source_text())).collect();
    let target: Vec<usize> = dialogues.iter().map(|d| count(d.target_text())).collect();
    TokenHistograms {
        source: histogram(&source, settings.max_source_tokens),
        target: histogram(&target, settings.max_target_tokens),
        exact_tokenizer: tokens.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(q: &str, a: &str) -> Dialogue {
        Dialogue::single(q, a)
    }

    #[test]
    fn duplicates_and_lengths() {
        let input = vec![
            d("头痛怎么办？", "多休息，必要时就医。"),
            d("头痛怎么办？", "多休息，必要时就医。"),
            d("头痛 怎么办?", "多休息,必要时就医."),
            d("?", "多休息。"),
            d("发烧怎么办？", "好"),
            d("Headache?", "Rest."),
        ];
        let (kept, report) = clean(input.clone(), &CleanSettings::default(), None);
        assert_eq!(kept.len(), 2);
        assert_eq!(report.removed.get(&Removal::ExactDuplicate), Some(&1));
        assert_eq!(report.removed.get(&Removal::NearDuplicate), Some(&1));
        assert_eq!(report.removed.get(&Removal::TargetTooShort), Some(&1));
        assert_eq!(report.removed.get(&Removal::SourceTooShort), Some(&1));
        let exact_only = CleanSettings { dedup: Dedup::Exact, min_source_chars: 0, min_target_chars: 0, ..Default::default() };
        assert_eq!(clean(input, &exact_only, None).0.len(), 5);
    }

    #[test]
    fn token_limits_use_the_callers_counter() {
        let input = vec![d("一二三四五", "六七八"), d("一二", "三")];
        let settings = CleanSettings { max_source_tokens: 4, drop_over_token_limits: true, min_target_chars: 0, ..Default::default() };
        let by_char = |s: &str| s.trim().chars().count();
        let (kept, report) = clean(input.clone(), &settings, Some(&by_char));
        assert_eq!(kept.len(), 1);
        assert_eq!(report.removed.get(&Removal::OverTokenLimit), Some(&1));
        let h = token_histograms(&input, &settings, Some(&by_char));
        assert_eq!((h.source.over_limit, h.source.max, h.target.max), (1, 5, 3));
        assert!(h.exact_tokenizer);
    }

    #[test]
    fn split_is_seeded_and_disjoint() {
        let all: Vec<Dialogue> = (0..100).map(|i| d(&format!("问题{i}"), &format!("回答{i}"))).collect();
        let (t1, v1) = split(all.clone(), 0.1, 7).unwrap_or_default();
        let (t2, v2) = split(all.clone(), 0.1, 7).unwrap_or_default();
        let (_, v3) = split(all.clone(), 0.1, 8).unwrap_or_default();
        assert_eq!((t1.len(), v1.len()), (90, 10));
        assert_eq!(v1, v2);
        assert_eq!(t1, t2);
        assert_ne!(v1, v3);
        assert!(v1.iter().all(|v| !t1.contains(v)));
        assert_eq!(split(all[..3].to_vec(), 0.01, 1).map(|x| x.1.len()).ok(), Some(1));
        assert!(matches!(split(all, 1.0, 1), Err(DatasetError::Settings(_))));
    }

    #[test]
    fn histogram_bins() {
        let h = histogram(&[0, 15, 16, 100, 512, 513, 2000], 512);
        assert_eq!(h.bins.len(), 33);
        assert_eq!(h.bins[0].count, 3, "0, 15 and 16 are under the bar width of 32");
        assert_eq!(h.bins[3].count, 1);
        assert_eq!(h.bins[16].count, 2);
        assert_eq!(h.bins[32].count, 1);
        assert_eq!(h.bins.iter().map(|b| b.count).sum::<usize>(), 7);
        assert_eq!((h.over_limit, h.max, h.p50), (2, 2000, 100));
    }

    #[test]
    fn approximate_counts() {
        assert_eq!(approximate_tokens("头痛 three days，怎么办"), 2 + 2 + 1 + 3);
    }
}
