//! The user's preferences: interface language, device, weights, default preset. Kept in the store's
//! settings table, one key per preference, so each change is its own audit entry.
use super::engine::{Device, Weights};
use super::generation::Preset;
use super::AppContext;
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
    /// How the weights are held on the CPU.
    pub weights: Weights,
    /// Preset chosen for new questions.
    pub preset: Preset,
}

impl Default for Settings {
    fn default() -> Self {
        Self { language: Language::Chinese, device: Device::Cpu, weights: Weights::Q4_0, preset: Preset::Balanced }
    }
}

const LANGUAGE: &str = "language";
const DEVICE: &str = "device";
const PRESET: &str = "preset";
const WEIGHTS: &str = "weights";

/// Loads the preferences (defaults for those never saved, or saved by an incompatible build).
pub fn load(ctx: &AppContext) -> AppResult<Settings> {
    let store = ctx.store();
    let d = Settings::default();
    // A value this build cannot read falls back to its default instead of locking the user out.
    let get = |key: &str| store.setting::<serde_json::Value>(key);
    Ok(Settings {
        language: get(LANGUAGE)?.and_then(|v| serde_json::from_value(v).ok()).unwrap_or(d.language),
        device: get(DEVICE)?.and_then(|v| serde_json::from_value(v).ok()).unwrap_or(d.device),
        weights: get(WEIGHTS)?.and_then(|v| serde_json::from_value(v).ok()).unwrap_or(d.weights),
        preset: get(PRESET)?.and_then(|v| serde_json::from_value(v).ok()).unwrap_or(d.preset),
    })
}

/// Saves the preferences; each value that changed is written to the audit log.
pub fn save(ctx: &AppContext, settings: &Settings) -> AppResult<()> {
    save_to(&ctx.store(), settings)
}

/// Saves the preferences into `store` (audited per changed value).
pub(crate) fn save_to(store: &crate::store::Store, settings: &Settings) -> AppResult<()> {
    store.set_setting(LANGUAGE, &settings.language)?;
    store.set_setting(DEVICE, &settings.device)?;
    store.set_setting(WEIGHTS, &settings.weights)?;
    store.set_setting(PRESET, &settings.preset)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        assert_eq!(load(&ctx).unwrap(), Settings::default());
        let s = Settings { language: Language::English, device: Device::Cpu, weights: Weights::Q8_0, preset: Preset::Diverse };
        save(&ctx, &s).unwrap();
        save(&ctx, &s).unwrap();
        drop(ctx);
        let ctx = AppContext::open(dir.path()).unwrap();
        assert_eq!(load(&ctx).unwrap(), s);
        let log = ctx.store().audit_log(10).unwrap();
        let changes: Vec<&str> = log.iter().filter(|e| e.action == "settings").map(|e| e.subject.as_str()).collect();
        assert_eq!(
            changes,
            ["setting preset", "setting weights", "setting device", "setting language"],
            "a second save of the same values is not audited"
        );
        assert_eq!(log[0].detail["new"], "diverse");
    }
}
