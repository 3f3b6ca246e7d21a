//! Checkpoints that survive a kill. Each is written into a temporary folder (the engine's
//! adapter, optimizer moments and step count, plus the runner's [`RunnerState`]), every file
//! and the folder are fsynced, and the folder is renamed into place; then the `LATEST` pointer
//! is replaced the same way (temporary file, fsync, rename). A kill at any moment leaves either
//! the previous checkpoint or the new one, never a half-written one under a real name.
use crate::error::{io_err, FinetuneError, Result};
use crate::probe::ProbeAnswer;
use doctorglm_models::train::LoraTrainer;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Folder of the checkpoints inside the output folder.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// File naming the latest complete checkpoint.
pub const LATEST_FILE: &str = "LATEST";
/// The runner's state file inside a checkpoint.
pub const RUNNER_STATE_FILE: &str = "runner_state.json";

/// One evaluation in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Optimizer steps done.
    pub step: usize,
    /// Validation loss (`None` without a validation set).
    pub validation_loss: Option<f64>,
    /// Probe answers.
    pub probe: Vec<ProbeAnswer>,
    /// Whether any probe answer looked collapsed.
    pub collapse: bool,
}

/// One training step in the history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Optimizer steps done, this one included.
    pub step: usize,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean training loss over the step's micro-batches.
    pub loss: f32,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
}

/// Everything besides the engine's state that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerState {
    /// Optimizer steps done.
    pub step: usize,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Examples of the current epoch's order already consumed.
    pub position: usize,
    /// Seed of the data order (the order of epoch `e` is `epoch_order(n, seed, e)`).
    pub seed: u64,
    /// [`crate::FinetuneSettings::resume_fingerprint`] of the run.
    pub fingerprint: String,
    /// Best validation loss so far and its step.
    pub best: Option<(usize, f64)>,
    /// Evaluations since the best one.
    pub evals_without_improvement: usize,
    /// Step history.
    pub steps: Vec<StepRecord>,
    /// Evaluation history.
    pub evals: Vec<EvalRecord>,
    /// The base model's probe answers (before training).
    pub baseline_probe: Vec<ProbeAnswer>,
    /// Training tokens seen (not counting padding).
    pub tokens_seen: u64,
}

fn fsync_path(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(io_err(path))
}

/// Fsyncs every file of a folder, then the folder.
fn fsync_dir(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_type().map_err(io_err(dir))?.is_file() {
            fsync_path(&entry.path())?;
        }
    }
    fsync_path(dir)
}

/// Writes `bytes` to `path` via a temporary file, fsync and rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    fsync_path(&tmp)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(parent) = path.parent() {
        fsync_path(parent)?;
    }
    Ok(())
}

/// Writes a complete checkpoint for `state.step` under `out/checkpoints/step-NNNNNNNN`, points
/// `LATEST` at it and removes older ones. Returns its folder.
pub fn save(out: &Path, trainer: &LoraTrainer, base_model: &str, state: &RunnerState) -> Result<PathBuf> {
    let root = out.join(CHECKPOINTS_DIR);
    std::fs::create_dir_all(&root).map_err(io_err(&root))?;
    let name = format!("step-{:08}", state.step);
    let tmp = root.join(format!("{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    trainer.save_checkpoint(&tmp, base_model)?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| io_err(&tmp)(std::io::Error::other(e)))?;
    std::fs::write(tmp.join(RUNNER_STATE_FILE), json).map_err(io_err(&tmp))?;
    fsync_dir(&tmp)?;
    let dir = root.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
    fsync_path(&root)?;
    write_atomic(&root.join(LATEST_FILE), name.as_bytes())?;
    // Older checkpoints are no longer needed once LATEST points at the new one.
    for entry in std::fs::read_dir(&root).map_err(io_err(&root))?.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with("step-") && file != name {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    tracing::info!(dir = %dir.display(), step = state.step, "checkpoint written");
    Ok(dir)
}

/// The latest complete checkpoint of an output folder, if any, with its runner state.
pub fn latest(out: &Path) -> Result<Option<(PathBuf, RunnerState)>> {
    let root = out.join(CHECKPOINTS_DIR);
    let pointer = root.join(LATEST_FILE);
    let name = match std::fs::read_to_string(&pointer) {
        Ok(n) => n.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&pointer)(e)),
    };
    let dir = root.join(&name);
    let path = dir.join(RUNNER_STATE_FILE);
    let bytes = std::fs::read(&path)
        .map_err(|e| FinetuneError::Checkpoint { dir: dir.clone(), reason: format!("{RUNNER_STATE_FILE}: {e}") })?;
    let state: RunnerState = serde_json::from_slice(&bytes)
        .map_err(|e| FinetuneError::Checkpoint { dir: dir.clone(), reason: format!("{RUNNER_STATE_FILE}: {e}") })?;
    Ok(Some((dir, state)))
}

/// Copies a PEFT adapter (the two files) from `src` into `dst` atomically: a temporary folder,
/// fsync, then renames (the previous `dst` is moved aside first and removed last).
pub fn publish_adapter(src: &Path, dst: &Path) -> Result<()> {
    let tmp = dst.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(src.join(file), tmp.join(file)).map_err(io_err(&src.join(file)))?;
    }
    fsync_dir(&tmp)?;
    let old = dst.with_extension("old");
    if dst.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        std::fs::rename(dst, &old).map_err(io_err(dst))?;
    }
    std::fs::rename(&tmp, dst).map_err(io_err(dst))?;
    if let Some(parent) = dst.parent() {
        fsync_path(parent)?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }
    Ok(())
}
