//! PEFT LoRA adapters: `adapter_config.json` plus `adapter_model.safetensors` (or `.bin`).
//!
//! Adapters stay unmerged: each targeted [`crate::layers::LoraLinear`] keeps every loaded
//! adapter's `A`/`B` and adds `scale · B A x` for the adapter a request names, so several
//! adapters share one base (and an INT4 base never touches them). The tensors may be backed by
//! `candle_core::Var`s, which makes the same forward trainable.
use crate::error::{ModelError, Result};
use crate::weights::WeightStore;
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The settings of a LoRA adapter that matter for inference.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank.
    pub r: usize,
    /// Alpha (the update is scaled by `alpha / r`).
    pub alpha: f64,
    /// Module names (suffixes) the adapter targets, e.g. `query_key_value`.
    pub target_modules: Vec<String>,
    /// rsLoRA scaling (`alpha / sqrt(r)`).
    pub use_rslora: bool,
}

impl LoraConfig {
    /// The factor applied to `B A x`.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// Whether a full module name is targeted (PEFT rule: equal, or ends with `.target`).
    pub fn targets(&self, module: &str) -> bool {
        self.target_modules
            .iter()
            .any(|t| module == t || module.ends_with(&format!(".{t}")))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Targets {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawAdapterConfig {
    peft_type: Option<String>,
    r: usize,
    lora_alpha: f64,
    target_modules: Targets,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    fan_in_fan_out: bool,
}

/// One adapter's matrices in one layer.
#[derive(Clone)]
pub struct LoraPair {
    /// `A` `[r, in]`.
    pub a: Tensor,
    /// `B` `[out, r]`.
    pub b: Tensor,
    /// `alpha / r`.
    pub scale: f64,
}

/// An adapter read from disk: its config and its tensors keyed by PEFT name.
pub struct PeftAdapter {
    /// Settings.
    pub config: LoraConfig,
    /// Tensors by their PEFT names (`base_model.model.….lora_A.weight`).
    pub tensors: HashMap<String, Tensor>,
}

/// Reads a PEFT adapter folder; tensors land in `dtype` on `device`.
pub fn load_peft_adapter(dir: &Path, dtype: DType, device: &Device) -> Result<PeftAdapter> {
    let config_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|source| ModelError::Io { path: config_path.clone(), source })?;
    let bad = |reason: String| ModelError::Config { path: config_path.clone(), reason };
    let raw: RawAdapterConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if let Some(kind) = &raw.peft_type {
        if kind != "LORA" {
            return Err(bad(format!("peft_type is {kind}, only LORA adapters are supported")));
        }
    }
    if raw.use_dora || raw.fan_in_fan_out {
        return Err(bad("DoRA and fan_in_fan_out adapters are not supported".into()));
    }
    if raw.r == 0 {
        return Err(bad("r must be positive".into()));
    }
    let config = LoraConfig {
        r: raw.r,
        alpha: raw.lora_alpha,
        target_modules: match raw.target_modules {
            Targets::One(t) => vec![t],
            Targets::Many(ts) => ts,
        },
        use_rslora: raw.use_rslora,
    };
    let file = ["adapter_model.safetensors", "adapter_model.bin"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| ModelError::NoWeights { dir: dir.to_path_buf() })?;
    let store = WeightStore::open_files(dir, &[file])?;
    let mut tensors = HashMap::new();
    for name in store.names() {
        tensors.insert(name.clone(), store.get_any_shape(&name, dtype, device)?);
    }
    Ok(PeftAdapter { config, tensors })
}

/// Which half of a LoRA pair a tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    A,
    B,
}

/// Splits a PEFT tensor name into the base module name and `A`/`B`.
/// `base_model.model.transformer.x.query_key_value.lora_A.default.weight` →
/// (`transformer.x.query_key_value`, A).
fn split_peft_name(name: &str) -> Option<(String, Half)> {
    let name = name.strip_prefix("base_model.model.").unwrap_or(name);
    let name = name.strip_suffix(".weight").unwrap_or(name);
    let name = name.strip_suffix(".default").unwrap_or(name);
    if let Some(module) = name.strip_suffix(".lora_A") {
        Some((module.to_string(), Half::A))
    } else {
        name.strip_suffix(".lora_B").map(|module| (module.to_string(), Half::B))
    }
}

/// The PEFT name of a module's `A` (or `B`) as PEFT saves it (without `.default`).
pub fn peft_name(module: &str, b: bool) -> String {
    let half = if b { "lora_B" } else { "lora_A" };
    format!("base_model.model.{module}.{half}.weight")
}

/// Checks an adapter against the model's linear layers `(name, in, out)` and pairs its tensors.
pub(crate) fn match_adapter(
    adapter: &str,
    config: &LoraConfig,
    tensors: &HashMap<String, Tensor>,
    linears: &[(String, usize, usize)],
) -> Result<BTreeMap<String, LoraPair>> {
    let mismatch = |reason: String| ModelError::AdapterMismatch { adapter: adapter.to_string(), reason };
    let mut halves: BTreeMap<String, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
    for (name, tensor) in tensors {
        let (module, half) = split_peft_name(name)
            .ok_or_else(|| mismatch(format!("tensor {name} is not a LoRA A/B matrix")))?;
        let entry = halves.entry(module).or_default();
        match half {
            Half::A => entry.0 = Some(tensor.clone()),
            Half::B => entry.1 = Some(tensor.clone()),
        }
    }
    let mut pairs = BTreeMap::new();
    for (module, (a, b)) in halves {
        let Some((_, inp, out)) = linears.iter().find(|(n, _, _)| *n == module) else {
            return Err(mismatch(format!("it has weights for {module}, which this model does not have")));
        };
        if !config.targets(&module) {
            return Err(mismatch(format!("{module} is not among target_modules {:?}", config.target_modules)));
        }
        let a = a.ok_or_else(|| mismatch(format!("lora_A of {module} is missing")))?;
        let b = b.ok_or_else(|| mismatch(format!("lora_B of {module} is missing")))?;
        if a.dims() != [config.r, *inp] {
            return Err(mismatch(format!(
                "lora_A of {module} has shape {:?}, this model needs [{}, {inp}] (r {})",
                a.dims(),
                config.r,
                config.r
            )));
        }
        if b.dims() != [*out, config.r] {
            return Err(mismatch(format!(
                "lora_B of {module} has shape {:?}, this model needs [{out}, {}] (r {})",
                b.dims(),
                config.r,
                config.r
            )));
        }
        pairs.insert(module, LoraPair { a, b, scale: config.scale() });
    }
    let targeted: Vec<&String> = linears.iter().map(|(n, _, _)| n).filter(|n| config.targets(n)).collect();
    if targeted.is_empty() {
        return Err(mismatch(format!("this model has no module named {:?}", config.target_modules)));
    }
    if let Some(missing) = targeted.iter().find(|n| !pairs.contains_key(n.as_str())) {
        return Err(mismatch(format!("it targets {missing} but holds no weights for it")));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_names_split_with_and_without_default() {
        let a = split_peft_name("base_model.model.transformer.layers.0.attention.query_key_value.lora_A.default.weight");
        assert_eq!(a, Some(("transformer.layers.0.attention.query_key_value".into(), Half::A)));
        let b = split_peft_name("base_model.model.t.dense.lora_B.weight");
        assert_eq!(b, Some(("t.dense".into(), Half::B)));
        assert_eq!(split_peft_name("base_model.model.t.dense.weight"), None);
    }

    #[test]
    fn targets_follow_the_peft_suffix_rule() {
        let c = LoraConfig { r: 8, alpha: 16.0, target_modules: vec!["query_key_value".into()], use_rslora: false };
        assert!(c.targets("transformer.layers.0.attention.query_key_value"));
        assert!(!c.targets("transformer.layers.0.attention.xquery_key_value"));
        assert_eq!(c.scale(), 2.0);
    }

    #[test]
    fn a_wrong_rank_is_refused() {
        let dev = Device::Cpu;
        let c = LoraConfig { r: 2, alpha: 4.0, target_modules: vec!["q".into()], use_rslora: false };
        let mut t = HashMap::new();
        t.insert(peft_name("m.q", false), Tensor::zeros((3, 4), DType::F32, &dev).unwrap());
        t.insert(peft_name("m.q", true), Tensor::zeros((5, 3), DType::F32, &dev).unwrap());
        let err = match_adapter("x", &c, &t, &[("m.q".into(), 4, 5)]).err().unwrap();
        assert!(err.to_string().contains("lora_A of m.q"), "{err}");
    }
}
