//! The bridge to the engine (`doctorglm-models`): load a registered model (+ adapter) on a
//! device and stream tokens. One model stays loaded in `AppContext` and is reused while the
//! same model, adapter and device are asked for.
use super::generation::GenerationSettings;
use super::registry::{AdapterRecord, ModelRecord};
use super::{AppContext, CancelFlag, Progress};
use crate::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};

/// Where the engine runs.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The processor (always available).
    #[default]
    Cpu,
    /// The first GPU, when the build has CUDA or Metal.
    Gpu,
}

/// How the model's weights are held on the CPU: quantized on load (the result kept as a cache
/// file in the data folder and memory-mapped on later loads) or in full precision.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Weights {
    /// 32-bit floats: the reference, about 4 bytes per parameter.
    #[serde(rename = "f32")]
    #[value(name = "f32")]
    F32,
    /// 16-bit half floats, 2 bytes per parameter: the checkpoint's own values for fp16 models.
    #[serde(rename = "f16")]
    #[value(name = "f16")]
    F16,
    /// 8-bit blocks (Q8_0), about 1.06 bytes per parameter.
    #[serde(rename = "q8_0")]
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit blocks (Q4_0), about 0.56 bytes per parameter: the default, as in the paper's INT4.
    #[default]
    #[serde(rename = "q4_0")]
    #[value(name = "q4_0")]
    Q4_0,
    /// 4-bit k-quant super-blocks (Q4_K), about 0.56 bytes per parameter, a little more accurate.
    #[serde(rename = "q4_k")]
    #[value(name = "q4_k")]
    Q4K,
}

impl Weights {
    /// Every variant (e.g. to remove a model's cache files in all formats).
    pub const ALL: [Weights; 5] = [Weights::F32, Weights::F16, Weights::Q8_0, Weights::Q4_0, Weights::Q4K];

    /// The engine's quantization format; None for full precision.
    pub fn format(self) -> Option<doctorglm_models::quant::QuantFormat> {
        use doctorglm_models::quant::QuantFormat;
        match self {
            Weights::F32 => None,
            Weights::F16 => Some(QuantFormat::F16),
            Weights::Q8_0 => Some(QuantFormat::Q8_0),
            Weights::Q4_0 => Some(QuantFormat::Q4_0),
            Weights::Q4K => Some(QuantFormat::Q4K),
        }
    }

    /// The name used in cache file names and settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Weights::F32 => "f32",
            Weights::F16 => "f16",
            Weights::Q8_0 => "q8_0",
            Weights::Q4_0 => "q4_0",
            Weights::Q4K => "q4_k",
        }
    }
}

/// The folder of quantized-weight cache files (`<data>/model-cache`).
pub fn cache_dir(ctx: &AppContext) -> std::path::PathBuf {
    ctx.data_dir().join("model-cache")
}

/// The cache file of one registered model in one format.
pub fn cache_file(cache_dir: &std::path::Path, model_id: &str, weights: Weights) -> std::path::PathBuf {
    cache_dir.join(format!("{model_id}.{}.gguf", weights.as_str()))
}

/// One earlier exchange of the conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    /// The question.
    pub user: String,
    /// The answer.
    pub assistant: String,
}

/// What a finished generation reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationStats {
    /// Tokens generated.
    pub tokens: u64,
    /// Tokens of the prompt (history, system text and question as the template built them).
    pub prompt_tokens: u64,
}

/// A loaded model that can answer.
pub trait Backend: Send {
    /// Generates an answer to `prompt` after `history`, calling `on_token` with each piece of
    /// text as it is decoded; stops early when `cancel` is set.
    fn generate(
        &mut self,
        history: &[Turn],
        system: Option<&str>,
        prompt: &str,
        settings: &GenerationSettings,
        on_token: &mut dyn FnMut(&str),
        cancel: &CancelFlag,
    ) -> AppResult<GenerationStats>;
}

/// The model currently loaded.
pub struct LoadedModel {
    /// (model id, adapter id, device, weights) it was loaded for.
    pub key: (String, Option<String>, Device, Weights),
    /// The engine session.
    pub backend: Box<dyn Backend>,
}

/// Whether this build can run on a GPU.
pub fn gpu_available() -> bool {
    candle_core::utils::cuda_is_available() || candle_core::utils::metal_is_available()
}

/// Loads a model (and adapter) for generation on `device`, its weights as `weights` says, the
/// quantized ones through the cache file in `cache_dir` (written on the first load).
pub fn load(
    model: &ModelRecord,
    adapter: Option<&AdapterRecord>,
    device: Device,
    weights: Weights,
    cache_dir: &std::path::Path,
    progress: &dyn Fn(Progress),
    cancel: &CancelFlag,
) -> AppResult<Box<dyn Backend>> {
    cancel.check()?;
    if device == Device::Gpu && !gpu_available() {
        return Err(AppError::Engine("this build has no GPU support: choose CPU in the Models tab".into()));
    }
    progress(Progress::new(0.0, format!("loading {}", model.info.name)));
    #[cfg(any(debug_assertions, feature = "e2e-hooks"))]
    if let Some(answer) = std::env::var_os("DOCTORGLM_TEST_ANSWER") {
        return Ok(Box::new(ScriptedBackend { answer: answer.to_string_lossy().into_owned() }));
    }
    let backend = super::engine_candle::load(model, adapter, device, weights, cache_dir, progress, cancel)?;
    progress(Progress::new(1.0, "loaded"));
    Ok(Box::new(backend))
}

/// Runs `f` with the loaded backend for this model/adapter/device/weights, loading it first if
/// needed (`progress` hears about a load, which can take minutes when a model is first quantized).
#[allow(clippy::too_many_arguments)]
pub fn with_backend<T>(
    ctx: &AppContext,
    model: &ModelRecord,
    adapter: Option<&AdapterRecord>,
    device: Device,
    weights: Weights,
    progress: &dyn Fn(Progress),
    cancel: &CancelFlag,
    f: impl FnOnce(&mut dyn Backend) -> AppResult<T>,
) -> AppResult<T> {
    let key = (model.id.clone(), adapter.map(|a| a.id.clone()), device, weights);
    let mut slot = ctx.engine.lock().unwrap_or_else(|p| p.into_inner());
    if slot.as_ref().is_none_or(|l| l.key != key) {
        *slot = None; // free the old model before loading the next
        let backend = load(model, adapter, device, weights, &cache_dir(ctx), progress, cancel)?;
        *slot = Some(LoadedModel { key, backend });
    }
    let loaded = slot.as_mut().ok_or_else(|| AppError::Engine("no model loaded".into()))?;
    f(loaded.backend.as_mut())
}

/// A test backend that streams a fixed answer (end-to-end tests of rendering and sanitizing).
#[cfg(any(debug_assertions, feature = "e2e-hooks"))]
struct ScriptedBackend {
    answer: String,
}

#[cfg(any(debug_assertions, feature = "e2e-hooks"))]
impl Backend for ScriptedBackend {
    fn generate(
        &mut self,
        _history: &[Turn],
        _system: Option<&str>,
        _prompt: &str,
        _settings: &GenerationSettings,
        on_token: &mut dyn FnMut(&str),
        cancel: &CancelFlag,
    ) -> AppResult<GenerationStats> {
        let mut tokens = 0;
        for piece in self.answer.split_inclusive(' ') {
            if cancel.is_cancelled() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            on_token(piece);
            tokens += 1;
        }
        Ok(GenerationStats { tokens, prompt_tokens: 0 })
    }
}
