//! The user's preferences: interface language, device, default preset. Kept in
//! `settings.json` in the data folder.
use super::engine::Device;
use super::generation::Preset;
use super::{jsonfile, AppContext};
use crate::error::AppResult;
use serde::{Deserialize, Serialize};

/// Interface languages.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum Language {
    /// 中文 (simplified Chinese).
    #[serde(rename = "zh")]
    #[default]
    Chinese,
    /// English.
    #[serde(rename = "en")]
    English,
}

/// Preferences.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// Interface language.
    pub language: Language,
    /// Where the engine runs.
    pub device: Device,
    /// Preset chosen for new questions.
    pub preset: Preset,
}

impl Default for Settings {
    fn default() -> Self {
        Self { language: Language::Chinese, device: Device::Cpu, preset: Preset::Balanced }
    }
}

/// Loads the preferences (defaults when never saved).
pub fn load(ctx: &AppContext) -> AppResult<Settings> {
    jsonfile::load_or_default(&ctx.data_dir().join("settings.json"))
}

/// Saves the preferences.
pub fn save(ctx: &AppContext, settings: &Settings) -> AppResult<()> {
    jsonfile::save(&ctx.data_dir().join("settings.json"), settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        assert_eq!(load(&ctx).unwrap(), Settings::default());
        let s = Settings { language: Language::English, device: Device::Cpu, preset: Preset::Diverse };
        save(&ctx, &s).unwrap();
        assert_eq!(load(&ctx).unwrap(), s);
        let raw = std::fs::read_to_string(dir.path().join("settings.json")).unwrap();
        assert!(raw.contains("\"language\": \"en\""), "{raw}");
    }
}
