//! Trainable LoRA parameters: `A`/`B` as candle `Var`s registered with a frozen [`Model`], and
//! saving them as a PEFT adapter folder.
use super::TrainError;
use crate::lora::{peft_name, LoraConfig};
use crate::model::Model;
use candle_core::{DType, Device, Tensor, Var};
use rand::distr::{Distribution, Uniform};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// LoRA `A`/`B` matrices as trainable f32 variables, keyed by PEFT name as PEFT saves it
/// (`base_model.model.<module>.lora_A.weight`; an adapter name such as `.default` is dropped).
#[derive(Debug, Clone)]
pub struct LoraParams {
    config: LoraConfig,
    vars: BTreeMap<String, Var>,
}

/// The canonical PEFT name: `….lora_A.default.weight` → `….lora_A.weight`.
fn canonical_name(name: &str) -> String {
    for half in ["lora_A", "lora_B"] {
        let marker = format!(".{half}.");
        if let Some(at) = name.find(&marker) {
            let module = &name[..at];
            let module = module.strip_prefix("base_model.model.").unwrap_or(module);
            return peft_name(module, half == "lora_B");
        }
    }
    name.to_string()
}

impl LoraParams {
    /// Variables initialised from given tensors (e.g. a saved adapter or a reference start),
    /// keyed by PEFT name with or without the `.default` adapter name; stored as f32.
    pub fn from_tensors(config: LoraConfig, tensors: &HashMap<String, Tensor>, device: &Device) -> Result<Self, TrainError> {
        let mut vars = BTreeMap::new();
        for (name, tensor) in tensors {
            let t = tensor.to_dtype(DType::F32)?.to_device(device)?;
            vars.insert(canonical_name(name), Var::from_tensor(&t)?);
        }
        Ok(Self { config, vars })
    }

    /// Fresh variables for every targeted linear layer of `model`, initialised as PEFT does by
    /// default: `A` uniform in ±1/√in (Kaiming-uniform with a = √5), `B` zero, so training
    /// starts from the base model's behaviour. Seeded: the same seed gives the same `A`.
    pub fn init(model: &Model, config: LoraConfig, seed: u64) -> Result<Self, TrainError> {
        let targets: Vec<(String, usize, usize)> = model
            .linear_shapes()
            .into_iter()
            .filter(|(name, _, _)| config.targets(name))
            .collect();
        if targets.is_empty() {
            return Err(TrainError::NoTargets(config.target_modules.clone()));
        }
        let device = model.device();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut vars = BTreeMap::new();
        for (module, inp, out) in targets {
            let bound = 1.0 / (inp as f32).sqrt();
            let uniform = Uniform::new_inclusive(-bound, bound).map_err(|e| TrainError::Init(e.to_string()))?;
            let a: Vec<f32> = (0..config.r * inp).map(|_| uniform.sample(&mut rng)).collect();
            let a = Tensor::from_vec(a, (config.r, inp), device)?;
            vars.insert(peft_name(&module, false), Var::from_tensor(&a)?);
            vars.insert(peft_name(&module, true), Var::zeros((out, config.r), DType::F32, device)?);
        }
        Ok(Self { config, vars })
    }

    /// The adapter's settings.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The variables, in name order.
    pub fn vars(&self) -> Vec<Var> {
        self.vars.values().cloned().collect()
    }

    /// The variable of a PEFT name (with or without `.default`).
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.vars.get(&canonical_name(name))
    }

    /// `(PEFT name, variable)` pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.vars.iter()
    }

    /// Number of trainable scalars.
    pub fn num_parameters(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// Registers the variables with `model` as adapter `name`. The model holds the variables'
    /// own tensors, so optimizer updates show in its next forward pass without re-attaching.
    pub fn attach(&self, model: &mut Model, name: &str) -> Result<(), TrainError> {
        let tensors = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        model.add_lora_tensors(name, self.config.clone(), tensors)?;
        Ok(())
    }

    /// Writes a PEFT adapter folder: `adapter_config.json` and `adapter_model.safetensors`
    /// (f32, PEFT names), loadable by PEFT and by [`Model::load_lora`]. Files are written
    /// under temporary names and renamed, so an existing adapter is never left half-written.
    pub fn save_peft(&self, dir: &Path, base_model: &str) -> Result<(), TrainError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TrainError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.config.r,
            "lora_alpha": self.config.alpha,
            "target_modules": self.config.target_modules,
            "lora_dropout": 0.0,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "use_rslora": self.config.use_rslora,
            "use_dora": false,
            "modules_to_save": null,
        });
        let text = serde_json::to_string_pretty(&config).map_err(|e| TrainError::Init(e.to_string()))?;
        let weights: HashMap<String, Tensor> = self
            .vars
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().to_dtype(DType::F32)?.to_device(&Device::Cpu)?)))
            .collect::<Result<_, candle_core::Error>>()?;
        let weights_tmp = dir.join("adapter_model.safetensors.tmp");
        candle_core::safetensors::save(&weights, &weights_tmp)?;
        let config_tmp = dir.join("adapter_config.json.tmp");
        std::fs::write(&config_tmp, text).map_err(io(&config_tmp))?;
        let weights_path = dir.join("adapter_model.safetensors");
        std::fs::rename(&weights_tmp, &weights_path).map_err(io(&weights_path))?;
        let config_path = dir.join("adapter_config.json");
        std::fs::rename(&config_tmp, &config_path).map_err(io(&config_path))?;
        tracing::info!(dir = %dir.display(), tensors = self.vars.len(), "LoRA adapter saved");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::load_peft_adapter;

    fn config() -> LoraConfig {
        LoraConfig {
            r: 2,
            alpha: 8.0,
            target_modules: vec!["query_key_value".into()],
            use_rslora: false,
        }
    }

    #[test]
    fn saved_adapter_loads_back_with_the_same_tensors_and_settings() {
        let dev = Device::Cpu;
        let mut tensors = HashMap::new();
        let module = "base_model.model.transformer.layers.0.attention.query_key_value";
        let a = Tensor::arange(0f32, 6.0, &dev).unwrap().reshape((2, 3)).unwrap();
        let b = Tensor::arange(0f32, 8.0, &dev).unwrap().reshape((4, 2)).unwrap();
        tensors.insert(format!("{module}.lora_A.default.weight"), a.clone());
        tensors.insert(format!("{module}.lora_B.default.weight"), b.clone());
        let params = LoraParams::from_tensors(config(), &tensors, &dev).unwrap();
        assert_eq!(params.num_parameters(), 14);
        let dir = tempfile::tempdir().unwrap();
        params.save_peft(dir.path(), "chatglm3-6b").unwrap();
        let loaded = load_peft_adapter(dir.path(), DType::F32, &dev).unwrap();
        assert_eq!(loaded.config, config());
        assert_eq!(loaded.tensors.len(), 2);
        let got_a = &loaded.tensors[&format!("{module}.lora_A.weight")];
        let got_b = &loaded.tensors[&format!("{module}.lora_B.weight")];
        assert_eq!(got_a.to_vec2::<f32>().unwrap(), a.to_vec2::<f32>().unwrap());
        assert_eq!(got_b.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap()).unwrap();
        assert_eq!(json["peft_type"], "LORA");
        assert_eq!(json["base_model_name_or_path"], "chatglm3-6b");
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn saving_into_a_file_path_is_an_error() {
        let dev = Device::Cpu;
        let params = LoraParams::from_tensors(config(), &HashMap::new(), &dev).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("occupied");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(params.save_peft(&file, "m"), Err(TrainError::Io { .. })));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    }

    #[test]
    fn names_are_canonical_peft_names() {
        assert_eq!(
            canonical_name("base_model.model.transformer.encoder.layers.0.self_attention.query_key_value.lora_A.default.weight"),
            "base_model.model.transformer.encoder.layers.0.self_attention.query_key_value.lora_A.weight"
        );
        assert_eq!(canonical_name("base_model.model.t.q.lora_B.weight"), "base_model.model.t.q.lora_B.weight");
    }
}
