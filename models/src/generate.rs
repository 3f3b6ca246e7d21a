//! The generation loop: run the prompt once, then one token at a time over the KV cache,
//! choosing each token, streaming it to a callback, and stopping on a stop token, the token
//! limit, the context limit or a cancellation flag set from another thread.
//!
//! Text streaming: feed each id from the callback to
//! [`crate::tokenizer::Tokenizer::stream_decoder`]'s `push`, which returns complete UTF-8 text
//! pieces; the stop ids are usually the tokenizer's `special_tokens().eos` (chat role tokens
//! such as `<|user|>` included) plus the config's `eos_token_ids`.
use crate::error::Result;
use crate::model::Model;
use crate::ptuning::PrefixAdapter;
use crate::sampling::{Sampler, SamplingConfig};
use std::sync::atomic::{AtomicBool, Ordering};

/// How to choose tokens and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationSettings {
    /// Token choice: temperature, top-p, top-k, repetition penalty, n-gram ban, seed
    /// (the same seed and settings give the same answer).
    pub sampling: SamplingConfig,
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// Token ids that end the answer (not emitted).
    pub stop_token_ids: Vec<u32>,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Self { sampling: SamplingConfig::default(), max_new_tokens: 512, stop_token_ids: Vec::new() }
    }
}

impl GenerationSettings {
    /// Greedy decoding (always the most likely token).
    pub fn greedy(max_new_tokens: usize, stop_token_ids: Vec<u32>) -> Self {
        Self { sampling: SamplingConfig::greedy(), max_new_tokens, stop_token_ids }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token came (its id).
    StopToken(u32),
    /// `max_new_tokens` were generated.
    MaxTokens,
    /// The model's context is full.
    ContextFull,
    /// The cancellation flag was set.
    Cancelled,
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The new token ids (without the stop token).
    pub ids: Vec<u32>,
    /// Why it ended.
    pub stop: StopReason,
}

/// What to generate from.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// Prompt token ids (already in the model's chat format).
    pub prompt: &'a [u32],
    /// LoRA adapter by name, if any.
    pub adapter: Option<&'a str>,
    /// P-tuning v2 prefix, if any.
    pub prefix: Option<&'a PrefixAdapter>,
}

/// Generates an answer, calling `on_token` with each new token id as soon as it is chosen.
/// `cancel` is checked before every step; set it from any thread to stop early.
pub fn generate(
    model: &Model,
    request: Request,
    settings: &GenerationSettings,
    cancel: &AtomicBool,
    mut on_token: impl FnMut(u32),
) -> Result<Generated> {
    let mut cache = model.new_cache(request.prefix);
    let mut sampler = Sampler::new(settings.sampling.clone())?;
    let mut ids = Vec::new();
    let limit = model.config().max_sequence_length;
    let mut next_input: Vec<u32> = request.prompt.to_vec();
    let mut history: Vec<u32> = request.prompt.to_vec();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(Generated { ids, stop: StopReason::Cancelled });
        }
        if ids.len() >= settings.max_new_tokens {
            return Ok(Generated { ids, stop: StopReason::MaxTokens });
        }
        if cache.tokens().len() + next_input.len() > limit {
            return Ok(Generated { ids, stop: StopReason::ContextFull });
        }
        let logits = model.forward(&mut cache, &next_input, request.adapter, false)?.squeeze(0)?;
        let token = sampler.sample_tensor(&logits, &history)?;
        if settings.stop_token_ids.contains(&token) {
            return Ok(Generated { ids, stop: StopReason::StopToken(token) });
        }
        on_token(token);
        ids.push(token);
        history.push(token);
        next_input = vec![token];
    }
}
