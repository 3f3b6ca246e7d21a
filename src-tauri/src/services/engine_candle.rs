//! The engine backend: a model of `doctorglm-models` (candle) with its tokenizer, an optional
//! LoRA adapter (kept unmerged) or P-tuning v2 prefix, streaming decoded text.
use super::engine::{cache_file, Backend, Device, GenerationStats, Turn, Weights};
use super::generation::GenerationSettings;
use super::inspect::AdapterKind;
use super::registry::{AdapterRecord, ModelRecord};
use super::{CancelFlag, Progress};
use crate::error::{AppError, AppResult};
use doctorglm_models::tokenizer::Tokenizer;
use doctorglm_models::{
    generate, CacheUse, DeviceChoice, LoadOptions, Model, ModelError, PrefixAdapter, QuantizeOptions, Request, SamplingConfig,
};

const LORA_NAME: &str = "adapter";

/// A loaded model, tokenizer and adapter.
pub struct CandleBackend {
    model: Model,
    tokenizer: Tokenizer,
    lora: bool,
    prefix: Option<PrefixAdapter>,
}

fn engine_err(e: impl std::fmt::Display) -> AppError {
    AppError::Engine(e.to_string())
}

/// Loads the model folder (and adapter) of a registry record. A quantized `weights` goes through
/// the cache file in `cache_dir` (quantized while read on the first load, then memory-mapped):
/// on the CPU our kernels multiply the blocks, on a GPU they are uploaded as they are and
/// candle's quantized kernels multiply them (a 6B model's 4-bit weights are about 3.5 GB there).
/// Full-precision weights load as f32.
pub fn load(
    model: &ModelRecord,
    adapter: Option<&AdapterRecord>,
    device: Device,
    weights: Weights,
    cache_dir: &std::path::Path,
    progress: &dyn Fn(Progress),
    cancel: &CancelFlag,
) -> AppResult<CandleBackend> {
    let path = &model.info.path;
    let tokenizer = Tokenizer::load(path).map_err(engine_err)?;
    let candle_device = match device {
        Device::Cpu => candle_core::Device::Cpu,
        Device::Gpu => doctorglm_models::select_device(DeviceChoice::Best).map_err(engine_err)?,
    };
    let mut loaded = match weights.format() {
        Some(format) => {
            std::fs::create_dir_all(cache_dir).map_err(|e| AppError::io(cache_dir, e))?;
            let quant = QuantizeOptions { device: candle_device, ..QuantizeOptions::new(format, Some(cache_file(cache_dir, &model.id, weights))) };
            let report = |done: usize, total: usize| {
                let fraction = if total == 0 { 0.0 } else { done as f32 / total as f32 };
                progress(Progress::new(fraction, format!("quantizing {} to {} ({done}/{total})", model.info.name, weights.as_str())));
            };
            let (m, used) = Model::load_quantized(path, &quant, &report, cancel.as_atomic()).map_err(|e| match e {
                ModelError::Cancelled => AppError::Cancelled,
                e => engine_err(e),
            })?;
            if used == CacheUse::Written {
                tracing::info!(model = %model.id, weights = weights.as_str(), "quantized weights cached");
            }
            m
        }
        None => Model::load(path, &LoadOptions { dtype: candle_core::DType::F32, device: candle_device }).map_err(engine_err)?,
    };
    let mut lora = false;
    let mut prefix = None;
    if let Some(a) = adapter {
        match a.info.adapter {
            AdapterKind::Lora { .. } => {
                loaded.load_lora(LORA_NAME, &a.info.path).map_err(engine_err)?;
                lora = true;
            }
            AdapterKind::PtuningV2 { .. } => {
                prefix = Some(PrefixAdapter::load(&a.info.path, &loaded).map_err(engine_err)?);
            }
        }
    }
    Ok(CandleBackend { model: loaded, tokenizer, lora, prefix })
}

impl Backend for CandleBackend {
    fn generate(
        &mut self,
        history: &[Turn],
        system: Option<&str>,
        prompt: &str,
        settings: &GenerationSettings,
        on_token: &mut dyn FnMut(&str),
        cancel: &CancelFlag,
    ) -> AppResult<GenerationStats> {
        let history: Vec<(String, String)> = history.iter().map(|t| (t.user.clone(), t.assistant.clone())).collect();
        let ids = self.tokenizer.build_chat(system, &history, prompt);
        let sampling = SamplingConfig {
            do_sample: settings.temperature > 0.0,
            temperature: settings.temperature,
            top_k: (settings.top_k > 0).then_some(settings.top_k as usize),
            top_p: Some(settings.top_p),
            repetition_penalty: settings.repetition_penalty,
            no_repeat_ngram_size: (settings.no_repeat_ngram > 0).then_some(settings.no_repeat_ngram as usize),
            seed: settings.seed,
        };
        let gen = doctorglm_models::GenerationSettings {
            sampling,
            max_new_tokens: settings.max_new_tokens as usize,
            stop_token_ids: self.tokenizer.special_tokens().eos.clone(),
        };
        let mut decoder = self.tokenizer.stream_decoder();
        let request = Request { prompt: &ids, adapter: self.lora.then_some(LORA_NAME), prefix: self.prefix.as_ref() };
        let out = generate(&self.model, request, &gen, cancel.as_atomic(), |id| {
            let text = decoder.push(id);
            if !text.is_empty() {
                on_token(&text);
            }
        })
        .map_err(engine_err)?;
        let rest = decoder.finish();
        if !rest.is_empty() {
            on_token(&rest);
        }
        Ok(GenerationStats { tokens: out.ids.len() as u64, prompt_tokens: ids.len() as u64 })
    }
}
