//! Choosing the next token from logits: repetition penalty, no-repeat n-gram ban, temperature,
//! top-k, top-p (nucleus) and a seeded draw; greedy argmax when sampling is off.
//!
//! The order follows Hugging Face `generate`: the logits processors (repetition penalty, then the
//! n-gram ban) act first and also apply to greedy decoding; the warpers (temperature, top-k,
//! top-p) act only when sampling. The same seed and the same inputs give the same ids.
use candle_core::Tensor;
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// Errors from the sampler: bad settings or logits that cannot be sampled.
#[derive(Debug, thiserror::Error)]
pub enum SamplingError {
    /// A setting is outside its allowed range.
    #[error("invalid sampling setting `{field}`: {reason}")]
    InvalidSetting {
        /// Name of the setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The logits vector has no entries.
    #[error("the model returned no logits (empty vocabulary)")]
    EmptyLogits,
    /// A logit is NaN or +infinity, which usually means the model's weights or inputs are broken.
    #[error("the model returned an invalid logit ({value}) for token {token}; the model output is not usable")]
    InvalidLogit {
        /// Token id of the first bad logit.
        token: usize,
        /// The bad value.
        value: f32,
    },
    /// Every token was excluded (all logits -inf after penalties and bans).
    #[error("every token is excluded by the sampling rules; nothing can be generated")]
    NothingToSample,
    /// The logits tensor has a shape other than `[vocab]` (leading dims of size 1 are allowed).
    #[error("expected logits of shape [vocab], got {0:?}")]
    BadShape(Vec<usize>),
    /// A tensor operation failed.
    #[error("tensor error while reading logits: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Named sampling presets offered in the user interface.
///
/// | preset | temperature | top-p | top-k | repetition penalty | no-repeat n-gram |
/// |---|---|---|---|---|---|
/// | conservative | 0.3 | 0.7 | 20 | 1.10 | 4 |
/// | balanced | 0.7 | 0.8 | 50 | 1.10 | none |
/// | diverse | 0.95 | 0.95 | none | 1.05 | none |
///
/// The DoctorGLM paper (Table 6) compares answers under different top-p and temperature
/// settings; ChatGLM's own `chat()` defaults are temperature 0.95, top-p 0.7. The presets span
/// that range: lower temperature and top-p make answers more deterministic, higher ones more
/// varied. Conservative suits clinical facts; diverse suits rewording and brainstorming. A mild
/// repetition penalty is on in every preset against the "repeater" (复读机) failure the paper
/// reports. These are product choices, not values measured in the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Low temperature, tight nucleus: focused, repeatable answers.
    Conservative,
    /// The default: moderate temperature and nucleus.
    Balanced,
    /// High temperature, wide nucleus: varied wording.
    Diverse,
}

/// Every setting of the sampler.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingConfig {
    /// Draw from the distribution (`true`) or take the argmax (`false`).
    pub do_sample: bool,
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens (`None` or 0: no limit).
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability mass reaches p (`None` or 1: no limit).
    pub top_p: Option<f32>,
    /// Hugging Face repetition penalty (1.0: off): seen tokens' positive logits are divided by
    /// it, negative ones multiplied.
    pub repetition_penalty: f32,
    /// Ban any token that would repeat an n-gram of this size already in the sequence.
    pub no_repeat_ngram_size: Option<usize>,
    /// Seed of the random generator; the same seed gives the same ids.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self::preset(Preset::Balanced)
    }
}

impl SamplingConfig {
    /// Greedy decoding: argmax, no penalty, no ban.
    pub fn greedy() -> Self {
        Self {
            do_sample: false,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: None,
            seed: 0,
        }
    }

    /// The settings of a named preset (see [`Preset`] for the values), seed 0.
    pub fn preset(preset: Preset) -> Self {
        let (temperature, top_p, top_k, repetition_penalty, ngram) = match preset {
            Preset::Conservative => (0.3, 0.7, Some(20), 1.1, Some(4)),
            Preset::Balanced => (0.7, 0.8, Some(50), 1.1, None),
            Preset::Diverse => (0.95, 0.95, None, 1.05, None),
        };
        Self {
            do_sample: true,
            temperature,
            top_k,
            top_p: Some(top_p),
            repetition_penalty,
            no_repeat_ngram_size: ngram,
            seed: 0,
        }
    }

    /// The same settings with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks every setting's range.
    pub fn validate(&self) -> Result<(), SamplingError> {
        let bad = |field, reason: &str| {
            Err(SamplingError::InvalidSetting {
                field,
                reason: reason.to_string(),
            })
        };
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad("temperature", "must be a finite number ≥ 0");
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return bad("top_p", "must be in (0, 1]");
            }
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            return bad("repetition_penalty", "must be a finite number > 0 (1.0 turns it off)");
        }
        if self.no_repeat_ngram_size == Some(0) {
            return bad("no_repeat_ngram_size", "must be ≥ 1 (or unset)");
        }
        Ok(())
    }

    /// Whether this configuration draws at random (otherwise it takes the argmax).
    pub fn is_sampling(&self) -> bool {
        self.do_sample && self.temperature > 0.0
    }
}

/// Picks next tokens under a [`SamplingConfig`], holding its seeded random generator.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplingConfig,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler for these settings; fails on settings out of range.
    pub fn new(config: SamplingConfig) -> Result<Self, SamplingError> {
        config.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Ok(Self { config, rng })
    }

    /// The settings in use.
    pub fn config(&self) -> &SamplingConfig {
        &self.config
    }

    /// Restarts the random generator from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        self.config.seed = seed;
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Picks the next token from logits over the vocabulary, given the tokens so far
    /// (prompt and generated; used by the penalty and the n-gram ban).
    pub fn sample(&mut self, logits: &[f32], tokens: &[u32]) -> Result<u32, SamplingError> {
        if !self.config.is_sampling() {
            let mut work = logits.to_vec();
            self.process(&mut work, tokens)?;
            return argmax(&work);
        }
        let candidates = self.candidates(logits, tokens)?;
        let weights = candidates.iter().map(|&(_, p)| p);
        let index = WeightedIndex::new(weights).map_err(|_| SamplingError::NothingToSample)?;
        Ok(candidates[index.sample(&mut self.rng)].0)
    }

    /// As [`Sampler::sample`], from a candle tensor of shape `[vocab]` (or `[1, vocab]`) of any
    /// float dtype on any device.
    pub fn sample_tensor(&mut self, logits: &Tensor, tokens: &[u32]) -> Result<u32, SamplingError> {
        let values = tensor_to_vec(logits)?;
        self.sample(&values, tokens)
    }

    /// Applies the logits processors in place: validity check, repetition penalty, n-gram ban
    /// (banned tokens become -inf).
    pub fn process(&self, logits: &mut [f32], tokens: &[u32]) -> Result<(), SamplingError> {
        check_logits(logits)?;
        apply_repetition_penalty(logits, tokens, self.config.repetition_penalty);
        if let Some(n) = self.config.no_repeat_ngram_size {
            for banned in banned_ngram_tokens(tokens, n) {
                if let Some(l) = logits.get_mut(banned as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        Ok(())
    }

    /// The tokens a draw can pick and their probabilities (summing to 1), after the processors
    /// and the warpers (temperature, top-k, top-p), most likely first. With sampling off this is
    /// the single argmax token with probability 1.
    pub fn candidates(&self, logits: &[f32], tokens: &[u32]) -> Result<Vec<(u32, f32)>, SamplingError> {
        let mut work = logits.to_vec();
        self.process(&mut work, tokens)?;
        if !self.config.is_sampling() {
            return Ok(vec![(argmax(&work)?, 1.0)]);
        }
        let temperature = self.config.temperature;
        let scaled = || work.iter().enumerate().filter(|(_, l)| **l != f32::NEG_INFINITY).map(|(i, &l)| (i as u32, l / temperature));
        let mut order: Vec<(u32, f32)> = match self.config.top_k.filter(|&k| k > 0) {
            Some(k) => top_k(scaled(), k),
            None => scaled().collect(),
        };
        if order.is_empty() {
            return Err(SamplingError::NothingToSample);
        }
        // Softmax in f64 over the remaining candidates.
        let max = f64::from(order.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.1)));
        let weight = |l: f32| (f64::from(l) - max).exp();
        let total: f64 = order.iter().map(|&(_, l)| weight(l)).sum();
        let keep = match self.config.top_p.filter(|&p| p < 1.0) {
            Some(p) => nucleus(&mut order, |l| weight(l) / total, f64::from(p)),
            None => {
                order.sort_unstable_by(by_logit_desc);
                order.len()
            }
        };
        order.truncate(keep);
        let kept: f64 = order.iter().map(|&(_, l)| weight(l)).sum();
        Ok(order.into_iter().map(|(id, l)| (id, (weight(l) / kept) as f32)).collect())
    }
}

/// Candidates `(id, logit)` by falling logit, ties by rising id.
fn by_logit_desc(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The `k` first candidates by [`by_logit_desc`] (all of them where there are no more than `k`),
/// in no particular order, in one pass: a buffer of up to `2k` is cut back to the best `k`
/// whenever it fills, and a candidate that does not beat the `k`-th kept is skipped. Collecting
/// all 65 024 (ChatGLM3) candidates and selecting among them took most of a draw's time.
fn top_k(candidates: impl Iterator<Item = (u32, f32)>, k: usize) -> Vec<(u32, f32)> {
    // A k from the settings may be anything: no larger than the candidates can be, so that the
    // buffer's size is bounded by the vocabulary and `2k` cannot overflow.
    let k = k.min(candidates.size_hint().1.unwrap_or(usize::MAX / 2)).max(1);
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(2 * k);
    let mut floor: Option<(u32, f32)> = None;
    for c in candidates {
        if floor.is_some_and(|f| by_logit_desc(&c, &f) != std::cmp::Ordering::Less) {
            continue;
        }
        best.push(c);
        if best.len() == 2 * k {
            best.select_nth_unstable_by(k - 1, by_logit_desc);
            best.truncate(k);
            floor = Some(best[k - 1]);
        }
    }
    if best.len() > k {
        best.select_nth_unstable_by(k - 1, by_logit_desc);
        best.truncate(k);
    }
    best
}

/// Top-p: sorts the most likely candidates of `order` to its front and returns how many of
/// them the nucleus keeps: the fewest whose probabilities (`prob` of a logit) reach `p`, or all
/// of them where rounding leaves the whole mass short of it.
///
/// Only a prefix is sorted: 64 candidates, then four times as many until their mass reaches
/// `p`. With a vocabulary of 65 024 (ChatGLM3) or 151 552 (GLM-4) sorting every candidate on
/// every token cost more than the rest of the draw; a model's distribution rarely needs more
/// than a few hundred.
fn nucleus(order: &mut [(u32, f32)], prob: impl Fn(f32) -> f64, p: f64) -> usize {
    let n = order.len();
    let mut k = n.min(64);
    loop {
        if k < n {
            order.select_nth_unstable_by(k - 1, by_logit_desc);
        }
        order[..k].sort_unstable_by(by_logit_desc);
        let mut mass = 0.0;
        for (i, &(_, l)) in order[..k].iter().enumerate() {
            mass += prob(l);
            if mass >= p {
                return i + 1;
            }
        }
        if k == n {
            return n;
        }
        k = n.min(4 * k);
    }
}

/// Copies a logits tensor of shape `[vocab]` (leading dims of size 1 allowed) to f32 values.
pub fn tensor_to_vec(logits: &Tensor) -> Result<Vec<f32>, SamplingError> {
    let dims = logits.dims();
    let vocab = match dims.split_last() {
        Some((&v, lead)) if lead.iter().all(|&d| d == 1) => v,
        _ => return Err(SamplingError::BadShape(dims.to_vec())),
    };
    Ok(logits
        .reshape(vocab)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?)
}

/// Errors on empty logits, NaN or +infinity.
fn check_logits(logits: &[f32]) -> Result<(), SamplingError> {
    if logits.is_empty() {
        return Err(SamplingError::EmptyLogits);
    }
    if let Some((token, &value)) = logits
        .iter()
        .enumerate()
        .find(|(_, l)| l.is_nan() || **l == f32::INFINITY)
    {
        return Err(SamplingError::InvalidLogit { token, value });
    }
    Ok(())
}

/// The index of the largest logit (the first on ties); errors when all are -inf.
fn argmax(logits: &[f32]) -> Result<u32, SamplingError> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if l == f32::NEG_INFINITY {
            continue;
        }
        if best.is_none_or(|(_, b)| l > b) {
            best = Some((i, l));
        }
    }
    best.map(|(i, _)| i as u32)
        .ok_or(SamplingError::NothingToSample)
}

/// Hugging Face repetition penalty over every distinct token seen.
fn apply_repetition_penalty(logits: &mut [f32], tokens: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let seen: HashSet<u32> = tokens.iter().copied().collect();
    for id in seen {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
    }
}

/// Tokens that would complete an n-gram already present in `tokens` (Hugging Face's
/// `no_repeat_ngram_size`): for n = 1, every seen token.
pub fn banned_ngram_tokens(tokens: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || tokens.len() + 1 < n {
        return Vec::new();
    }
    let prefix = &tokens[tokens.len() + 1 - n..];
    let mut banned: Vec<u32> = tokens
        .windows(n)
        .filter(|w| &w[..n - 1] == prefix)
        .map(|w| w[n - 1])
        .collect();
    banned.sort_unstable();
    banned.dedup();
    banned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(config: SamplingConfig) -> Sampler {
        Sampler::new(config).unwrap()
    }

    fn sampling(temperature: f32, top_k: Option<usize>, top_p: Option<f32>) -> SamplingConfig {
        SamplingConfig {
            do_sample: true,
            temperature,
            top_k,
            top_p,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: None,
            seed: 7,
        }
    }

    const LOGITS: [f32; 8] = [1.0, 3.0, -2.0, 2.5, 0.5, 3.5, -1.0, 0.0];

    #[test]
    fn greedy_takes_argmax_and_first_on_ties() {
        let mut s = sampler(SamplingConfig::greedy());
        assert_eq!(s.sample(&LOGITS, &[]).unwrap(), 5);
        assert_eq!(s.sample(&[2.0, 4.0, 4.0, 1.0], &[]).unwrap(), 1);
        // Temperature 0 with do_sample on is also greedy.
        let mut s = sampler(sampling(0.0, None, None));
        assert_eq!(s.sample(&LOGITS, &[]).unwrap(), 5);
    }

    #[test]
    fn top_k_leaves_exactly_k_candidates() {
        let s = sampler(sampling(1.0, Some(3), None));
        let c = s.candidates(&LOGITS, &[]).unwrap();
        let ids: Vec<u32> = c.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, vec![5, 1, 3]);
        let mass: f32 = c.iter().map(|&(_, p)| p).sum();
        assert!((mass - 1.0).abs() < 1e-6);
        let mut s = sampler(sampling(1.0, Some(3), None));
        for _ in 0..200 {
            assert!([5, 1, 3].contains(&s.sample(&LOGITS, &[]).unwrap()));
        }
    }

    /// The warpers as plainly as they can be written: sort every candidate, softmax, cut.
    fn candidates_by_full_sort(logits: &[f32], temperature: f32, top_k: Option<usize>, top_p: f32) -> Vec<(u32, f32)> {
        let mut order: Vec<(u32, f32)> = logits.iter().enumerate().filter(|(_, l)| **l != f32::NEG_INFINITY).map(|(i, &l)| (i as u32, l / temperature)).collect();
        order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(k) = top_k {
            order.truncate(k);
        }
        let max = f64::from(order[0].1);
        let exps: Vec<f64> = order.iter().map(|&(_, l)| (f64::from(l) - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        let mut mass = 0.0;
        let keep = exps.iter().position(|e| {
            mass += e / total;
            mass >= f64::from(top_p)
        });
        let keep = keep.map_or(order.len(), |i| i + 1);
        let kept: f64 = exps[..keep].iter().sum();
        order[..keep].iter().zip(&exps).map(|(&(id, _), e)| (id, (e / kept) as f32)).collect()
    }

    #[test]
    fn top_p_over_a_large_vocabulary_equals_sorting_every_candidate() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let vocab = 20_000;
        // Peaked (a model's usual output), flat (the nucleus needs most of the vocabulary, so the
        // sorted prefix grows to all of it), ties (order by id) and banned tokens (-inf).
        let peaked: Vec<f32> = (0..vocab).map(|_| rand::Rng::random::<f32>(&mut rng) * 30.0).collect();
        let flat: Vec<f32> = (0..vocab).map(|_| rand::Rng::random::<f32>(&mut rng) * 0.01).collect();
        let ties: Vec<f32> = (0..vocab).map(|i| (i % 7) as f32).collect();
        let mut banned = peaked.clone();
        banned.iter_mut().step_by(3).for_each(|l| *l = f32::NEG_INFINITY);
        for (name, logits) in [("peaked", &peaked), ("flat", &flat), ("ties", &ties), ("banned", &banned)] {
            for (temperature, top_k, top_p) in [(0.7, None, 0.8), (1.0, None, 0.95), (0.3, None, 0.7), (1.0, None, 0.999_999), (0.9, Some(500), 0.9), (1.0, Some(40), 0.99)] {
                let got = sampler(sampling(temperature, top_k, Some(top_p))).candidates(logits, &[]).unwrap();
                let want = candidates_by_full_sort(logits, temperature, top_k, top_p);
                let ids = |c: &[(u32, f32)]| c.iter().map(|&(id, _)| id).collect::<Vec<_>>();
                assert_eq!(ids(&got), ids(&want), "{name} t{temperature} k{top_k:?} p{top_p}");
                for (g, w) in got.iter().zip(&want) {
                    assert!((g.1 - w.1).abs() <= 1e-6 * w.1.max(1e-30), "{name} t{temperature} k{top_k:?} p{top_p}: {g:?} {w:?}");
                }
            }
        }
    }

    #[test]
    fn top_k_selection_equals_sorting_at_every_count() {
        // Fewer candidates than k, between k and 2k (the buffer never fills), and many refills;
        // logits with ties, which go to the lower id.
        let k = 5;
        for n in [0, 3, 5, 7, 10, 11, 1000] {
            let candidates: Vec<(u32, f32)> = (0..n as u32).map(|i| (i, ((i * 7919) % 13) as f32)).collect();
            let mut got = top_k(candidates.iter().copied(), k);
            got.sort_unstable_by(by_logit_desc);
            let mut want = candidates.clone();
            want.sort_by(by_logit_desc);
            want.truncate(k);
            assert_eq!(got, want, "{n} candidates");
        }
        // A k far beyond the vocabulary keeps every candidate (and allocates for them only).
        let logits = [1.0f32, f32::NEG_INFINITY, 3.0, 2.0];
        let c = sampler(sampling(1.0, Some(usize::MAX), None)).candidates(&logits, &[]).unwrap();
        assert_eq!(c.iter().map(|&(id, _)| id).collect::<Vec<_>>(), vec![2, 3, 0]);
    }

    #[test]
    fn top_p_keeps_smallest_set_reaching_the_mass() {
        let full = sampler(sampling(1.0, None, None)).candidates(&LOGITS, &[]).unwrap();
        assert_eq!(full.len(), LOGITS.len());
        let p = 0.8;
        let c = sampler(sampling(1.0, None, Some(p))).candidates(&LOGITS, &[]).unwrap();
        let n = c.len();
        let mass_kept: f32 = full[..n].iter().map(|&(_, q)| q).sum();
        let mass_before: f32 = full[..n - 1].iter().map(|&(_, q)| q).sum();
        assert!(mass_kept >= p, "kept mass {mass_kept} below {p}");
        assert!(mass_before < p, "one fewer token already reached {p}");
        assert!(n < LOGITS.len());
        // Renormalised.
        let sum: f32 = c.iter().map(|&(_, q)| q).sum();
        assert!((sum - 1.0).abs() < 1e-6);
        // A tiny p keeps only the most likely token.
        let c = sampler(sampling(1.0, None, Some(1e-6))).candidates(&LOGITS, &[]).unwrap();
        assert_eq!(c, vec![(5, 1.0)]);
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        let cold = sampler(sampling(0.5, None, None)).candidates(&LOGITS, &[]).unwrap();
        let hot = sampler(sampling(2.0, None, None)).candidates(&LOGITS, &[]).unwrap();
        assert_eq!(cold[0].0, 5);
        assert!(cold[0].1 > hot[0].1);
        let exp: f32 = {
            let e: Vec<f32> = LOGITS.iter().map(|l| (l / 0.5).exp()).collect();
            e[5] / e.iter().sum::<f32>()
        };
        assert!((cold[0].1 - exp).abs() < 1e-5);
    }

    #[test]
    fn repetition_penalty_lowers_seen_tokens_both_signs() {
        let mut config = SamplingConfig::greedy();
        config.repetition_penalty = 2.0;
        let s = sampler(config);
        let mut l = LOGITS.to_vec();
        s.process(&mut l, &[5, 2, 5]).unwrap();
        assert_eq!(l[5], 3.5 / 2.0);
        assert_eq!(l[2], -2.0 * 2.0);
        assert_eq!(l[1], 3.0);
        // The penalised token loses the argmax.
        let mut s = s;
        assert_eq!(s.sample(&LOGITS, &[5]).unwrap(), 1);
    }

    #[test]
    fn no_repeat_ngram_bans_completions() {
        assert_eq!(banned_ngram_tokens(&[1, 2, 3, 1, 2], 3), vec![3]);
        assert_eq!(banned_ngram_tokens(&[1, 2, 3, 1, 4], 3), Vec::<u32>::new());
        assert_eq!(banned_ngram_tokens(&[4, 1, 4], 1), vec![1, 4]);
        assert_eq!(banned_ngram_tokens(&[1], 3), Vec::<u32>::new());
        let mut config = SamplingConfig::greedy();
        config.no_repeat_ngram_size = Some(2);
        let mut s = sampler(config);
        // After "... 7 5 ... 7", token 5 would repeat the bigram (7, 5).
        assert_eq!(s.sample(&LOGITS, &[7, 5, 0, 7]).unwrap(), 1);
    }

    #[test]
    fn same_seed_same_ids_other_seed_differs() {
        let flat = vec![0.0f32; 1000];
        let draw = |seed| {
            let mut s = sampler(sampling(1.0, None, None).with_seed(seed));
            (0..50).map(|_| s.sample(&flat, &[]).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
        let mut s = sampler(sampling(1.0, None, None).with_seed(42));
        let first: Vec<u32> = (0..50).map(|_| s.sample(&flat, &[]).unwrap()).collect();
        s.reseed(42);
        let again: Vec<u32> = (0..50).map(|_| s.sample(&flat, &[]).unwrap()).collect();
        assert_eq!(first, again);
    }

    #[test]
    fn draws_follow_the_probabilities() {
        let logits = [0.0f32, (3.0f32).ln()];
        let mut s = sampler(sampling(1.0, None, None));
        let ones = (0..4000).filter(|_| s.sample(&logits, &[]).unwrap() == 1).count();
        let share = ones as f64 / 4000.0;
        assert!((share - 0.75).abs() < 0.03, "share {share}");
    }

    #[test]
    fn invalid_logits_and_settings_are_errors() {
        let mut s = sampler(sampling(1.0, None, None));
        let err = s.sample(&[0.0, f32::NAN, 1.0], &[]).unwrap_err();
        assert!(matches!(err, SamplingError::InvalidLogit { token: 1, .. }));
        let mut g = sampler(SamplingConfig::greedy());
        assert!(matches!(
            g.sample(&[f32::NAN], &[]),
            Err(SamplingError::InvalidLogit { .. })
        ));
        assert!(matches!(s.sample(&[], &[]), Err(SamplingError::EmptyLogits)));
        assert!(matches!(
            s.sample(&[f32::NEG_INFINITY; 3], &[]),
            Err(SamplingError::NothingToSample)
        ));
        for bad in [
            SamplingConfig { temperature: -1.0, ..SamplingConfig::greedy() },
            SamplingConfig { top_p: Some(0.0), ..SamplingConfig::greedy() },
            SamplingConfig { top_p: Some(1.5), ..SamplingConfig::greedy() },
            SamplingConfig { repetition_penalty: 0.0, ..SamplingConfig::greedy() },
            SamplingConfig { no_repeat_ngram_size: Some(0), ..SamplingConfig::greedy() },
        ] {
            assert!(matches!(Sampler::new(bad), Err(SamplingError::InvalidSetting { .. })));
        }
    }

    #[test]
    fn tensor_input_matches_slice_input() {
        let t = Tensor::new(&LOGITS, &candle_core::Device::Cpu).unwrap();
        let mut a = sampler(sampling(1.0, Some(4), Some(0.9)));
        let mut b = a.clone();
        for _ in 0..20 {
            assert_eq!(a.sample_tensor(&t, &[1]).unwrap(), b.sample(&LOGITS, &[1]).unwrap());
        }
        let row = t.unsqueeze(0).unwrap();
        assert_eq!(tensor_to_vec(&row).unwrap(), LOGITS.to_vec());
        let two = Tensor::zeros((2, 4), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        assert!(matches!(tensor_to_vec(&two), Err(SamplingError::BadShape(_))));
    }

    #[test]
    fn presets_are_valid_and_ordered() {
        let c = SamplingConfig::preset(Preset::Conservative);
        let b = SamplingConfig::preset(Preset::Balanced);
        let d = SamplingConfig::preset(Preset::Diverse);
        for p in [&c, &b, &d] {
            p.validate().unwrap();
            assert!(p.is_sampling());
        }
        assert!(c.temperature < b.temperature && b.temperature < d.temperature);
        assert!(c.top_p < b.top_p && b.top_p < d.top_p);
    }
}
