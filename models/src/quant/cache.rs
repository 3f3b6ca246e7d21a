//! The quantized model cache: one GGUF file holding every tensor a quantized model needs (linear
//! weights quantized, embeddings as f16/f32 rows, norms and biases as f32), written while the
//! checkpoint is converted and memory-mapped on later starts. Its metadata names the source
//! files' fingerprint, the quantization and the engine version; a file that differs in any of
//! them is rebuilt.

use std::path::Path;

use super::format::QuantFormat;
use super::gguf::{self, GgufFile};
use super::linear::keys;

/// The engine version written into model caches (the crate version plus the cache layout).
pub const ENGINE: &str = concat!(env!("CARGO_PKG_VERSION"), "+model-cache-1");

/// The metadata of a cache for these sources and this format.
pub fn metadata(fingerprint: &str, format: QuantFormat) -> [(&'static str, String); 3] {
    [
        (keys::SOURCE, fingerprint.to_string()),
        (keys::QUANTIZATION, format.name().to_string()),
        (keys::ENGINE, ENGINE.to_string()),
    ]
}

/// The cache at `path` memory-mapped, if it exists, reads, and was written for these sources,
/// this format and this engine version; otherwise `None` (the reason is logged).
pub fn open_valid(path: &Path, fingerprint: &str, format: QuantFormat) -> Option<GgufFile> {
    open_valid_for(path, fingerprint, format, ENGINE)
}

/// [`open_valid`] for a given engine version (tests use it to stand for an older engine).
pub fn open_valid_for(path: &Path, fingerprint: &str, format: QuantFormat, engine: &str) -> Option<GgufFile> {
    if !path.is_file() {
        return None;
    }
    let file = match gguf::open(path) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("ignoring unreadable quantization cache {}: {e}", path.display());
            return None;
        }
    };
    let meta = |k: &str| file.metadata.get(k).map(String::as_str);
    let stale = [
        (keys::SOURCE, fingerprint, "the model files changed"),
        (keys::QUANTIZATION, format.name(), "another quantization"),
        (keys::ENGINE, engine, "another engine version"),
    ]
    .into_iter()
    .find(|(k, want, _)| meta(k) != Some(*want));
    if let Some((_, _, why)) = stale {
        tracing::info!("quantization cache {} is stale ({why}); rebuilding", path.display());
        return None;
    }
    Some(file)
}
