//! Versions, licences of bundled parts, data folder and keyring status for the Settings tab.
use super::AppContext;
use serde::Serialize;

/// A bundled part and its licence.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Component {
    /// Name.
    pub name: &'static str,
    /// Licence (SPDX).
    pub license: &'static str,
}

/// What the About box shows.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct About {
    /// App version.
    pub version: &'static str,
    /// Tauri version.
    pub tauri_version: &'static str,
    /// Data folder.
    pub data_dir: String,
    /// Where the store's key is kept, as a sentence (see `storage::status` for the details).
    pub keyring: String,
    /// Whether this build can use a GPU.
    pub gpu: bool,
    /// Bundled parts and their licences.
    pub components: Vec<Component>,
}

/// Collects the About information.
pub fn about(ctx: &AppContext) -> About {
    About {
        version: env!("CARGO_PKG_VERSION"),
        #[cfg(feature = "desktop")]
        tauri_version: tauri::VERSION,
        #[cfg(not(feature = "desktop"))]
        tauri_version: "none (CLI build)",
        data_dir: ctx.data_dir().display().to_string(),
        keyring: ctx.store().key_storage().describe(),
        gpu: super::engine::gpu_available(),
        components: vec![
            Component { name: "DoctorGLM Desktop", license: "Apache-2.0" },
            Component { name: "Tauri", license: "Apache-2.0 OR MIT" },
            Component { name: "candle", license: "Apache-2.0 OR MIT" },
            Component { name: "tokenizers", license: "Apache-2.0" },
            Component { name: "tantivy", license: "MIT" },
            Component { name: "Svelte", license: "MIT" },
            Component { name: "marked", license: "MIT" },
            Component { name: "DOMPurify", license: "MPL-2.0 OR Apache-2.0" },
            Component { name: "ChatGLM / GLM-4 model weights", license: "the model's own licence (see its folder)" },
        ],
    }
}
