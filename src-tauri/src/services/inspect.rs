//! Reads a model or adapter folder without loading weights: which architecture it is, how
//! many parameters, how much disk and memory it needs, and whether an adapter fits a base.
//! Safetensors headers are read (8-byte length + JSON) to count parameters exactly.
use super::{CancelFlag, Progress};
use crate::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The model families the engine runs.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// ChatGLM-6B (v1): 2D RoPE, GeLU, `ice_text.model`.
    Chatglm6b,
    /// ChatGLM2-6B / ChatGLM3-6B: multi-query attention, RMSNorm, SwiGLU.
    Chatglm3,
    /// GLM-4-9B-chat layout (ChatGLM3 with `rope_ratio`, tiktoken vocabulary).
    Glm4,
}

impl Architecture {
    /// A name for people.
    pub fn label(self) -> &'static str {
        match self {
            Architecture::Chatglm6b => "ChatGLM-6B (v1)",
            Architecture::Chatglm3 => "ChatGLM2/3",
            Architecture::Glm4 => "GLM-4",
        }
    }
}

/// What the app knows about a model folder after checking it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    /// The folder.
    pub path: PathBuf,
    /// The folder's name.
    pub name: String,
    /// The model family.
    pub architecture: Architecture,
    /// Width of the hidden state.
    pub hidden_size: u64,
    /// Number of transformer layers.
    pub num_layers: u64,
    /// Vocabulary size (padded as stored).
    pub vocab_size: u64,
    /// Storage dtype from `config.json` (`float16`, `bfloat16`, ...).
    pub dtype: String,
    /// Number of parameters (exact for safetensors, estimated from bytes otherwise).
    pub parameters: u64,
    /// Bytes of weight files on disk.
    pub disk_bytes: u64,
    /// Weight file format: `safetensors`, `pytorch` or `gguf`.
    pub weight_format: String,
    /// Weight files found.
    pub weight_files: Vec<String>,
    /// The tokenizer file found.
    pub tokenizer_file: String,
    /// Memory needed to run with the base quantized to INT4 (weights + 10% working space).
    pub memory_int4_bytes: u64,
    /// Memory needed to run in fp16 (weights + 10% working space).
    pub memory_f16_bytes: u64,
    /// Sub-folders that look like adapters (LoRA or P-tuning v2).
    pub adapters_found: Vec<PathBuf>,
}

/// The two adapter kinds the engine loads.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AdapterKind {
    /// A PEFT LoRA adapter.
    Lora {
        /// Rank.
        r: u64,
        /// Scaling numerator.
        alpha: f64,
        /// Module names it applies to.
        target_modules: Vec<String>,
    },
    /// A THUDM P-tuning v2 prefix.
    PtuningV2 {
        /// Number of virtual prefix tokens.
        pre_seq_len: u64,
    },
}

/// What the app knows about an adapter folder.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdapterInfo {
    /// The folder.
    pub path: PathBuf,
    /// The folder's name.
    pub name: String,
    /// LoRA or P-tuning v2, with its hyper-parameters.
    pub adapter: AdapterKind,
    /// The base model the adapter says it was trained on, if it says.
    pub base_model_hint: Option<String>,
    /// Bytes on disk.
    pub disk_bytes: u64,
}

fn read_json(path: &Path) -> AppResult<Value> {
    let bytes = std::fs::read(path).map_err(|e| AppError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| AppError::Corrupt { path: path.to_path_buf(), source })
}

fn u(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn folder_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// Decides the architecture from a `config.json`.
pub fn detect_architecture(config: &Value) -> Option<Architecture> {
    if config.get("position_encoding_2d").is_some() || config.get("inner_hidden_size").is_some() {
        return Some(Architecture::Chatglm6b);
    }
    if config.get("multi_query_attention").is_some() || config.get("padded_vocab_size").is_some() {
        let glm4 = config.get("rope_ratio").is_some() || u(config, "padded_vocab_size").is_some_and(|v| v >= 150_000);
        return Some(if glm4 { Architecture::Glm4 } else { Architecture::Chatglm3 });
    }
    None
}

/// Reads the tensor table of a safetensors file: name → shape. A file shorter than its
/// header says (cut short by a copy or a download) is refused.
pub fn safetensors_shapes(path: &Path) -> AppResult<BTreeMap<String, Vec<u64>>> {
    let bad = |reason: String| AppError::NotAModel { path: path.to_path_buf(), reason };
    let read_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad("it is truncated: the file ends inside its safetensors header".into()),
        _ => AppError::io(path, e),
    };
    let mut f = std::fs::File::open(path).map_err(|e| AppError::io(path, e))?;
    let file_len = f.metadata().map_err(|e| AppError::io(path, e))?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(read_err)?;
    let n = u64::from_le_bytes(len);
    if n > 100 * 1024 * 1024 {
        return Err(bad(format!("not a safetensors file (its header length, {n} bytes, is implausible)")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(read_err)?;
    let table: BTreeMap<String, Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("unreadable safetensors header: {e}")))?;
    let mut shapes = BTreeMap::new();
    let mut data_end = 0u64;
    for (name, entry) in table {
        if name == "__metadata__" {
            continue;
        }
        let shape = entry
            .get("shape")
            .and_then(Value::as_array)
            .map(|dims| dims.iter().filter_map(Value::as_u64).collect::<Vec<_>>())
            .ok_or_else(|| bad(format!("tensor {name} has no shape")))?;
        let end = entry
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|o| o.get(1))
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(format!("tensor {name} has no data offsets")))?;
        data_end = data_end.max(end);
        shapes.insert(name, shape);
    }
    let needed = 8 + n + data_end;
    if file_len < needed {
        return Err(bad(format!("it is truncated: its tensors need {needed} bytes, the file holds {file_len}")));
    }
    Ok(shapes)
}

fn file_len(path: &Path) -> AppResult<u64> {
    Ok(std::fs::metadata(path).map_err(|e| AppError::io(path, e))?.len())
}

/// Checks a model folder and describes it. Reports progress per weight file; cancellable.
pub fn inspect_model(path: &Path, progress: &dyn Fn(Progress), cancel: &CancelFlag) -> AppResult<ModelInfo> {
    let not_model = |reason: &str| AppError::NotAModel { path: path.to_path_buf(), reason: reason.to_string() };
    if path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        return inspect_gguf(path, progress, cancel);
    }
    if !path.is_dir() {
        return Err(not_model("it is not a folder (choose the folder that holds config.json)"));
    }
    let config_path = path.join("config.json");
    if !config_path.is_file() {
        return Err(not_model("config.json is missing"));
    }
    let config = read_json(&config_path)?;
    let architecture = detect_architecture(&config)
        .ok_or_else(|| not_model("config.json does not describe a ChatGLM-6B, ChatGLM2/3 or GLM-4 model"))?;
    let hidden_size = u(&config, "hidden_size").ok_or_else(|| not_model("config.json has no hidden_size"))?;
    let num_layers = u(&config, "num_layers").ok_or_else(|| not_model("config.json has no num_layers"))?;
    let vocab_size = u(&config, "padded_vocab_size").or_else(|| u(&config, "vocab_size")).unwrap_or(0);
    let dtype = config.get("torch_dtype").and_then(Value::as_str).unwrap_or("float16").to_string();

    let tokenizer_file = ["tokenizer.model", "ice_text.model", "tokenizer.json"]
        .into_iter()
        .find(|f| path.join(f).is_file())
        .ok_or_else(|| not_model("no tokenizer file (tokenizer.model, ice_text.model or tokenizer.json)"))?
        .to_string();

    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| AppError::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    // Hugging Face names weight shards `model*.safetensors`; other safetensors files in the
    // folder (reference outputs, adapters) are not weights.
    let safetensors: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors") && folder_name(p).starts_with("model"))
        .collect();
    let pytorch: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "bin") && folder_name(p).starts_with("pytorch_model"))
        .collect();
    let (weight_format, weights) = if !safetensors.is_empty() {
        ("safetensors", safetensors)
    } else if !pytorch.is_empty() {
        ("pytorch", pytorch)
    } else {
        return Err(not_model("no weight files (model*.safetensors or pytorch_model*.bin)"));
    };

    // THUDM int4/int8 checkpoints (`quantization_bit`) store most weights at 0.5 / 1 byte each.
    let bytes_per_param: u64 = if dtype.contains("32") { 4 } else { 2 };
    let quant_bits = u(&config, "quantization_bit");
    let dtype = match quant_bits {
        Some(bits) => format!("int{bits} (THUDM)"),
        None => dtype,
    };
    let mut parameters = 0u64;
    let mut disk_bytes = 0u64;
    let total = weights.len() as f32;
    for (i, file) in weights.iter().enumerate() {
        cancel.check()?;
        progress(Progress::new(i as f32 / total, format!("checking {}", folder_name(file))));
        let len = file_len(file)?;
        disk_bytes += len;
        if weight_format == "safetensors" {
            let shapes = safetensors_shapes(file)?;
            parameters += shapes.values().map(|s| s.iter().product::<u64>()).sum::<u64>();
        } else {
            parameters += match quant_bits {
                Some(4) => len * 2,
                Some(8) => len,
                _ => len / bytes_per_param,
            };
        }
    }
    progress(Progress::new(1.0, "checked"));

    let adapters_found = entries.iter().filter(|p| p.is_dir() && looks_like_adapter(p)).cloned().collect();
    let with_margin = |b: u64| b + b / 10;
    Ok(ModelInfo {
        path: path.to_path_buf(),
        name: folder_name(path),
        architecture,
        hidden_size,
        num_layers,
        vocab_size,
        dtype,
        parameters,
        disk_bytes,
        weight_format: weight_format.to_string(),
        weight_files: weights.iter().map(|p| folder_name(p)).collect(),
        tokenizer_file,
        // INT4 with one f16 scale per 32 weights: 4.5 bits per parameter.
        memory_int4_bytes: with_margin(parameters * 9 / 16),
        memory_f16_bytes: with_margin(parameters * 2),
        adapters_found,
    })
}

/// Describes a llama.cpp GGUF file of the `chatglm` architecture (ChatGLM3, GLM-4); its
/// tokenizer (`tokenizer.model`) must sit beside it.
fn inspect_gguf(path: &Path, progress: &dyn Fn(Progress), cancel: &CancelFlag) -> AppResult<ModelInfo> {
    use doctorglm_models::detect::{self, Architecture as A};
    let not_model = |reason: String| AppError::NotAModel { path: path.to_path_buf(), reason };
    cancel.check()?;
    progress(Progress::new(0.0, format!("checking {}", folder_name(path))));
    let found = detect::detect(path).map_err(|e| not_model(e.to_string()))?;
    doctorglm_models::quant::gguf_import::tokenizer_dir(path).map_err(|e| not_model(e.to_string()))?;
    let c = &found.config;
    let (h, ffn) = (c.hidden_size as u64, c.ffn_hidden_size as u64);
    let per_layer = h * c.qkv_size() as u64 + (c.num_heads * c.head_dim) as u64 * h + 3 * h * ffn + 2 * h;
    let parameters = 2 * c.vocab_size as u64 * h + c.num_layers as u64 * per_layer + h;
    let disk_bytes = file_len(path)?;
    progress(Progress::new(1.0, "checked"));
    let with_margin = |b: u64| b + b / 10;
    Ok(ModelInfo {
        path: path.to_path_buf(),
        name: folder_name(path),
        architecture: match found.architecture {
            A::Chatglm6b => Architecture::Chatglm6b,
            A::Chatglm3 => Architecture::Chatglm3,
            A::Glm4 => Architecture::Glm4,
        },
        hidden_size: h,
        num_layers: c.num_layers as u64,
        vocab_size: c.vocab_size as u64,
        dtype: found.quantization.unwrap_or_else(|| "gguf".into()),
        parameters,
        disk_bytes,
        weight_format: "gguf".into(),
        weight_files: vec![folder_name(path)],
        tokenizer_file: "tokenizer.model".into(),
        // The file's own blocks are used as stored: its size is the weights' memory.
        memory_int4_bytes: with_margin(disk_bytes),
        memory_f16_bytes: with_margin(parameters * 2),
        adapters_found: Vec::new(),
    })
}

/// Whether a folder looks like a LoRA or P-tuning v2 adapter.
pub fn looks_like_adapter(path: &Path) -> bool {
    path.join("adapter_config.json").is_file()
        || (path.join("config.json").is_file() && path.join("pytorch_model.bin").is_file() && {
            read_json(&path.join("config.json")).ok().is_some_and(|c| c.get("pre_seq_len").is_some())
        })
}

/// Reads an adapter folder.
pub fn inspect_adapter(path: &Path) -> AppResult<AdapterInfo> {
    let bad = |reason: &str| AppError::NotAModel { path: path.to_path_buf(), reason: reason.to_string() };
    if !path.is_dir() {
        return Err(bad("an adapter is a folder (with adapter_config.json, or config.json + pytorch_model.bin)"));
    }
    let mut disk_bytes = 0;
    for entry in std::fs::read_dir(path).map_err(|e| AppError::io(path, e))?.flatten() {
        disk_bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
    }
    let peft = path.join("adapter_config.json");
    if peft.is_file() {
        let c = read_json(&peft)?;
        let peft_type = c.get("peft_type").and_then(Value::as_str).unwrap_or("LORA");
        if peft_type != "LORA" {
            return Err(bad(&format!("PEFT type {peft_type} is not supported (LoRA is)")));
        }
        if !path.join("adapter_model.safetensors").is_file() && !path.join("adapter_model.bin").is_file() {
            return Err(bad("adapter_model.safetensors is missing"));
        }
        let target_modules = match c.get("target_modules") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        return Ok(AdapterInfo {
            path: path.to_path_buf(),
            name: folder_name(path),
            adapter: AdapterKind::Lora {
                r: u(&c, "r").ok_or_else(|| bad("adapter_config.json has no rank r"))?,
                alpha: c.get("lora_alpha").and_then(Value::as_f64).unwrap_or(16.0),
                target_modules,
            },
            base_model_hint: c.get("base_model_name_or_path").and_then(Value::as_str).map(str::to_string),
            disk_bytes,
        });
    }
    let config = path.join("config.json");
    if config.is_file() && path.join("pytorch_model.bin").is_file() {
        let c = read_json(&config)?;
        let pre_seq_len = u(&c, "pre_seq_len").ok_or_else(|| bad("config.json has no pre_seq_len: not a P-tuning v2 prefix"))?;
        return Ok(AdapterInfo {
            path: path.to_path_buf(),
            name: folder_name(path),
            adapter: AdapterKind::PtuningV2 { pre_seq_len },
            base_model_hint: None,
            disk_bytes,
        });
    }
    Err(bad("neither adapter_config.json (LoRA) nor config.json + pytorch_model.bin (P-tuning v2) is there"))
}

/// Checks that an adapter fits a base model: LoRA matrix shapes against the hidden size and
/// layer count; a P-tuning prefix's config against the base's.
pub fn check_adapter_against(adapter: &AdapterInfo, base: &ModelInfo) -> AppResult<()> {
    let mismatch = |reason: String| AppError::AdapterMismatch { path: adapter.path.clone(), reason };
    if let Some(hint) = &adapter.base_model_hint {
        if let Some(family) = family_named(hint).filter(|f| *f != base.architecture) {
            return Err(mismatch(format!(
                "it says it was trained on {hint} ({}), this base is {}",
                family.label(),
                base.architecture.label()
            )));
        }
    }
    // ChatGLM-6B (v1) names its layers `transformer.layers.N.attention`, ChatGLM2/3 and
    // GLM-4 `transformer.encoder.layers.N.self_attention`.
    let layout = match base.architecture {
        Architecture::Chatglm6b => "transformer.layers.",
        Architecture::Chatglm3 | Architecture::Glm4 => "transformer.encoder.layers.",
    };
    match &adapter.adapter {
        AdapterKind::Lora { r, .. } => {
            let file = adapter.path.join("adapter_model.safetensors");
            if !file.is_file() {
                return Ok(()); // a .bin adapter: shapes are checked by the engine when it loads
            }
            let shapes = safetensors_shapes(&file)?;
            if shapes.is_empty() {
                return Err(mismatch("the adapter holds no tensors".into()));
            }
            for (name, shape) in &shapes {
                if let Some(layer) = layer_index(name) {
                    if !name.contains(layout) {
                        return Err(mismatch(format!(
                            "{name} is laid out for another architecture ({} layers are `{layout}N`)",
                            base.architecture.label()
                        )));
                    }
                    if layer >= base.num_layers {
                        return Err(mismatch(format!("{name} is for layer {layer}, the base has {} layers", base.num_layers)));
                    }
                }
                if name.contains("lora_A") {
                    if shape.len() != 2 || shape[0] != *r || shape[1] != base.hidden_size {
                        return Err(mismatch(format!(
                            "{name} has shape {shape:?}, expected [{r}, {}] for this base",
                            base.hidden_size
                        )));
                    }
                } else if name.contains("lora_B") && (shape.len() != 2 || shape[1] != *r) {
                    return Err(mismatch(format!("{name} has shape {shape:?}, expected [_, {r}]")));
                }
            }
            Ok(())
        }
        AdapterKind::PtuningV2 { .. } => {
            let c = read_json(&adapter.path.join("config.json"))?;
            for key in ["hidden_size", "num_layers"] {
                let (a, b) = (u(&c, key), match key {
                    "hidden_size" => Some(base.hidden_size),
                    _ => Some(base.num_layers),
                });
                if a.is_some() && a != b {
                    return Err(mismatch(format!("its {key} is {}, the base's is {}", a.unwrap_or(0), b.unwrap_or(0))));
                }
            }
            if detect_architecture(&c).is_some_and(|arch| arch != base.architecture) {
                return Err(mismatch("it was trained for another architecture".into()));
            }
            Ok(())
        }
    }
}

/// The model family a base model name or path names (`THUDM/chatglm3-6b`, `glm-4-9b-chat`,
/// `chatglm-6b`), if it names one.
fn family_named(hint: &str) -> Option<Architecture> {
    let last = hint.trim_end_matches(['/', '\\']).rsplit(['/', '\\']).next()?.to_ascii_lowercase();
    if last.contains("glm-4") || last.contains("glm4") {
        Some(Architecture::Glm4)
    } else if last.contains("chatglm3") || last.contains("chatglm2") {
        Some(Architecture::Chatglm3)
    } else if last.contains("chatglm-6b") || last.contains("chatglm6b") {
        Some(Architecture::Chatglm6b)
    } else {
        None
    }
}

fn layer_index(name: &str) -> Option<u64> {
    let rest = name.split("layers.").nth(1)?;
    rest.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        std::env::var_os("DOCTORGLM_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
            .join("models")
    }

    #[test]
    fn inspects_the_tiny_chatglm3() {
        let path = fixtures().join("chatglm3-tiny");
        let seen = std::cell::RefCell::new(Vec::new());
        let info = inspect_model(&path, &|p| seen.borrow_mut().push(p.fraction), &CancelFlag::new()).unwrap();
        assert_eq!(info.architecture, Architecture::Chatglm3);
        assert_eq!((info.hidden_size, info.num_layers, info.vocab_size), (64, 2, 65024));
        assert_eq!(info.weight_format, "safetensors");
        assert_eq!(info.weight_files.len(), 2);
        // Embedding and output layer alone are 2 × 65024 × 64 parameters.
        assert!(info.parameters > 2 * 65024 * 64, "{}", info.parameters);
        assert!(info.memory_int4_bytes < info.memory_f16_bytes);
        assert_eq!(seen.borrow().last(), Some(&1.0));
        assert_eq!(info.adapters_found.len(), 2);
    }

    #[test]
    fn detects_v1_and_glm4() {
        let none = CancelFlag::new();
        let v1 = inspect_model(&fixtures().join("chatglm-6b-v1-tiny"), &|_| {}, &none).unwrap();
        assert_eq!((v1.architecture, v1.weight_format.as_str(), v1.tokenizer_file.as_str()), (Architecture::Chatglm6b, "pytorch", "ice_text.model"));
        let g4 = inspect_model(&fixtures().join("glm4-tiny"), &|_| {}, &none).unwrap();
        assert_eq!(g4.architecture, Architecture::Glm4);
    }

    #[test]
    fn cancel_stops_the_check() {
        let flag = CancelFlag::new();
        flag.cancel();
        let err = inspect_model(&fixtures().join("chatglm3-tiny"), &|_| {}, &flag).unwrap_err();
        assert!(matches!(err, AppError::Cancelled));
    }

    #[test]
    fn rejects_a_folder_without_config() {
        let dir = tempfile::tempdir().unwrap();
        let err = inspect_model(dir.path(), &|_| {}, &CancelFlag::new()).unwrap_err();
        assert!(err.to_string().contains("config.json is missing"), "{err}");
    }

    #[test]
    fn adapters_fit_their_base_and_not_another() {
        let none = CancelFlag::new();
        let base3 = inspect_model(&fixtures().join("chatglm3-tiny"), &|_| {}, &none).unwrap();
        let lora3 = inspect_adapter(&fixtures().join("chatglm3-tiny/lora-adapter")).unwrap();
        assert!(matches!(lora3.adapter, AdapterKind::Lora { r: 8, .. }));
        check_adapter_against(&lora3, &base3).unwrap();
        let pt3 = inspect_adapter(&fixtures().join("chatglm3-tiny/ptuning-v2")).unwrap();
        assert_eq!(pt3.adapter, AdapterKind::PtuningV2 { pre_seq_len: 4 });
        check_adapter_against(&pt3, &base3).unwrap();

        // A base with another hidden size must reject the adapter.
        let mut other = base3.clone();
        other.hidden_size = 128;
        let err = check_adapter_against(&lora3, &other).unwrap_err();
        assert!(matches!(err, AppError::AdapterMismatch { .. }), "{err}");
        let mut shallow = base3.clone();
        shallow.num_layers = 1;
        assert!(check_adapter_against(&lora3, &shallow).is_err());
        // A ChatGLM3 prefix does not fit the v1 base.
        let v1 = inspect_model(&fixtures().join("chatglm-6b-v1-tiny"), &|_| {}, &none).unwrap();
        assert!(check_adapter_against(&pt3, &v1).is_err());
    }

    #[test]
    fn a_lora_for_another_family_is_refused_by_its_layout_or_its_base_name() {
        let none = CancelFlag::new();
        let base3 = inspect_model(&fixtures().join("chatglm3-tiny"), &|_| {}, &none).unwrap();
        // The tiny models share hidden size and depth: only the tensor names tell v1 apart.
        let mut lora_v1 = inspect_adapter(&fixtures().join("chatglm-6b-v1-tiny/lora-adapter")).unwrap();
        lora_v1.base_model_hint = None;
        let err = check_adapter_against(&lora_v1, &base3).unwrap_err();
        assert!(err.to_string().contains("another architecture"), "{err}");
        let v1 = inspect_model(&fixtures().join("chatglm-6b-v1-tiny"), &|_| {}, &none).unwrap();
        check_adapter_against(&lora_v1, &v1).unwrap();
        // GLM-4 and ChatGLM3 LoRA tensors look alike; the base the adapter names differs.
        let lora4 = inspect_adapter(&fixtures().join("glm4-tiny/lora-adapter")).unwrap();
        let err = check_adapter_against(&lora4, &base3).unwrap_err();
        assert!(err.to_string().contains("glm4-tiny (GLM-4)"), "{err}");
        assert_eq!(family_named("THUDM/chatglm3-6b"), Some(Architecture::Chatglm3));
        assert_eq!(family_named("/models/glm-4-9b-chat/"), Some(Architecture::Glm4));
        assert_eq!(family_named("chatglm-6b-int4"), Some(Architecture::Chatglm6b));
        assert_eq!(family_named("/data/my-model"), None);
    }

    #[test]
    fn a_truncated_safetensors_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("adapter_model.safetensors");
        let bytes = std::fs::read(fixtures().join("chatglm3-tiny/lora-adapter/adapter_model.safetensors")).unwrap();
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(safetensors_shapes(&file).unwrap().len(), 4);
        for len in [bytes.len() - 1, 100, 4] {
            std::fs::write(&file, &bytes[..len]).unwrap();
            let err = safetensors_shapes(&file).unwrap_err();
            assert!(err.to_string().contains("truncated"), "{len}: {err}");
        }
    }
}
