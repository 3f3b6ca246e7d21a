//! What a model path is, without loading weights: a Hugging Face folder (safetensors or PyTorch
//! `.bin`, possibly THUDM's int4/int8) or a llama.cpp GGUF file, and which family it holds.
//! The app's model inspection uses it to accept and describe imports.
use std::path::Path;

use crate::config::{Family, ModelConfig};
use crate::error::{ModelError, Result};
use crate::quant::gguf_import;

/// How the weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// `model*.safetensors` (single or sharded).
    Safetensors,
    /// `pytorch_model*.bin` (single or sharded).
    Pytorch,
    /// One llama.cpp `.gguf` file.
    Gguf,
}

/// The model family, as people name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// ChatGLM-6B (v1).
    Chatglm6b,
    /// ChatGLM2-6B / ChatGLM3-6B.
    Chatglm3,
    /// GLM-4 (the ChatGLM layout with `rope_ratio` and the tiktoken vocabulary).
    Glm4,
}

/// What [`detect`] found.
#[derive(Debug, Clone)]
pub struct Detected {
    /// Storage format.
    pub format: WeightFormat,
    /// Family.
    pub architecture: Architecture,
    /// How the stored weights are quantized: `None` for float checkpoints, else e.g.
    /// `THUDM int4`, `THUDM int8`, or the GGUF tensor types (`GGUF Q4_0×98, F32×…`).
    pub quantization: Option<String>,
    /// The model config (from `config.json`, or from the GGUF metadata).
    pub config: ModelConfig,
}

fn architecture(config: &ModelConfig, glm4_hint: bool) -> Architecture {
    match config.family {
        Family::ChatGlm6b => Architecture::Chatglm6b,
        Family::ChatGlm2 if glm4_hint || config.rope_base > 10000.0 || config.vocab_size >= 150_000 => Architecture::Glm4,
        Family::ChatGlm2 => Architecture::Chatglm3,
    }
}

/// Describes a model folder or GGUF file; errors say why it is not one this engine loads.
pub fn detect(path: &Path) -> Result<Detected> {
    if path.is_file() {
        if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
            return Err(ModelError::BadWeightFile {
                path: path.to_path_buf(),
                reason: "a model is a folder with config.json, or a llama.cpp .gguf file".into(),
            });
        }
        let summary = gguf_import::summarize(path)?;
        let (config, _) = gguf_import::open(path)?;
        let types: Vec<String> = summary.tensor_types.iter().map(|(t, n)| format!("{t}×{n}")).collect();
        return Ok(Detected {
            format: WeightFormat::Gguf,
            architecture: architecture(&config, summary.tokenizer_model.as_deref() == Some("gpt2")),
            quantization: Some(format!("GGUF {}", types.join(", "))),
            config,
        });
    }
    let config = ModelConfig::from_path(path)?;
    let file = path.join("config.json");
    let raw: serde_json::Value = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let quantization = match raw.get("quantization_bit").and_then(serde_json::Value::as_u64) {
        Some(bits @ (4 | 8)) => Some(format!("THUDM int{bits}")),
        Some(bits) => {
            return Err(ModelError::Config { path: file, reason: format!("quantization_bit {bits} is not supported (4 or 8)") });
        }
        None => None,
    };
    if raw.get("quantization_embeddings").and_then(serde_json::Value::as_bool) == Some(true) {
        return Err(ModelError::Config {
            path: file,
            reason: "quantized embeddings (THUDM's -qe checkpoints) are not supported; use the int4 checkpoint without -qe".into(),
        });
    }
    let has = |prefix: &str, ext: &str| {
        std::fs::read_dir(path).into_iter().flatten().flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(prefix) && n.ends_with(ext)
        })
    };
    let format = if has("model", ".safetensors") {
        WeightFormat::Safetensors
    } else if has("pytorch_model", ".bin") {
        WeightFormat::Pytorch
    } else {
        return Err(ModelError::NoWeights { dir: path.to_path_buf() });
    };
    let glm4 = raw.get("rope_ratio").is_some();
    Ok(Detected { format, architecture: architecture(&config, glm4), quantization, config })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> std::path::PathBuf {
        match std::env::var_os("DOCTORGLM_FIXTURES") {
            Some(d) => d.into(),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
        }
        .join("models")
    }

    #[test]
    fn folders_are_told_apart() {
        let v1 = detect(&fixtures().join("chatglm-6b-v1-tiny")).unwrap();
        assert_eq!((v1.format, v1.architecture, v1.quantization), (WeightFormat::Pytorch, Architecture::Chatglm6b, None));
        let g3 = detect(&fixtures().join("chatglm3-tiny")).unwrap();
        assert_eq!((g3.format, g3.architecture), (WeightFormat::Safetensors, Architecture::Chatglm3));
        let g4 = detect(&fixtures().join("glm4-tiny")).unwrap();
        assert_eq!(g4.architecture, Architecture::Glm4);
        let tmp = tempfile::tempdir().unwrap();
        assert!(detect(tmp.path()).is_err());
        let f = tmp.path().join("x.txt");
        std::fs::write(&f, "x").unwrap();
        assert!(detect(&f).is_err());
    }
}
