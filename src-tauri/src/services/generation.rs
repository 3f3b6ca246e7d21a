//! Generation settings and the three presets (the paper's Table 6 studied top-p and temperature;
//! a repetition penalty and no-repeat n-gram answer its "复读机" repetition problem).
use serde::{Deserialize, Serialize};

/// Named presets.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Low temperature, narrow top-p: stable, repeatable answers.
    Conservative,
    /// The default.
    Balanced,
    /// Higher temperature, wide top-p: more varied wording.
    Diverse,
}

/// Everything that steers one generation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct GenerationSettings {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass.
    pub top_p: f32,
    /// Keep only the k most likely tokens (0: off).
    pub top_k: u32,
    /// Penalty on tokens already generated (1.0: off).
    pub repetition_penalty: f32,
    /// Forbid repeating any n-gram of this size (0: off).
    pub no_repeat_ngram: u32,
    /// Most new tokens.
    pub max_new_tokens: u32,
    /// Random seed (same seed, same settings → same answer).
    pub seed: u64,
    /// Use the prompt designer (disease library) for this question.
    pub use_designer: bool,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Preset::Balanced.settings()
    }
}

impl Preset {
    /// The settings of this preset.
    pub fn settings(self) -> GenerationSettings {
        let (temperature, top_p, repetition_penalty) = match self {
            Preset::Conservative => (0.3, 0.7, 1.15),
            Preset::Balanced => (0.7, 0.8, 1.1),
            Preset::Diverse => (0.95, 0.95, 1.05),
        };
        GenerationSettings {
            temperature,
            top_p,
            top_k: 0,
            repetition_penalty,
            no_repeat_ngram: 0,
            max_new_tokens: 512,
            seed: 42,
            use_designer: true,
        }
    }
}

impl GenerationSettings {
    /// Checks ranges; returns a message a person can act on.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(format!("temperature must be between 0 and 2, not {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top-p must be above 0 and at most 1, not {}", self.top_p));
        }
        if !(1.0..=2.0).contains(&self.repetition_penalty) {
            return Err(format!("repetition penalty must be between 1 and 2, not {}", self.repetition_penalty));
        }
        if self.max_new_tokens == 0 || self.max_new_tokens > 8192 {
            return Err(format!("max new tokens must be between 1 and 8192, not {}", self.max_new_tokens));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_order_by_temperature_and_are_valid() {
        let [c, b, d] = [Preset::Conservative, Preset::Balanced, Preset::Diverse].map(Preset::settings);
        assert!(c.temperature < b.temperature && b.temperature < d.temperature);
        assert!(c.repetition_penalty > d.repetition_penalty);
        for s in [c, b, d] {
            s.validate().unwrap();
        }
    }

    #[test]
    fn out_of_range_is_refused_and_missing_fields_default() {
        let s = GenerationSettings { top_p: 0.0, ..Default::default() };
        assert!(s.validate().unwrap_err().contains("top-p"));
        let partial: GenerationSettings = serde_json::from_str(r#"{"temperature":0.2}"#).unwrap();
        assert_eq!(partial.temperature, 0.2);
        assert_eq!(partial.top_p, Preset::Balanced.settings().top_p);
    }
}
