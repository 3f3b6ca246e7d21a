//! `training_summary.json`: what was trained on, how, and what happened.
use crate::checkpoint::{EvalRecord, StepRecord};
use crate::settings::FinetuneSettings;
use serde::{Deserialize, Serialize};

/// File name of the summary in the output folder.
pub const SUMMARY_FILE: &str = "training_summary.json";

/// A source file of the dataset, by name and content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRef {
    /// File name.
    pub name: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
}

/// Which data the adapter was trained on (from the prepared dataset's manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRef {
    /// The prepared dataset's folder, when it came from one.
    pub dir: Option<String>,
    /// Source files.
    pub sources: Vec<SourceRef>,
    /// Training dialogues in the dataset.
    pub train: usize,
    /// Validation dialogues in the dataset.
    pub validation: usize,
    /// Whether de-identification was applied.
    pub deidentified: bool,
}

/// The summary written at the end of a job (also after early stopping or cancellation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// The base model folder.
    pub base_model: String,
    /// The dataset.
    pub dataset: Option<DatasetRef>,
    /// The settings.
    pub settings: FinetuneSettings,
    /// Why training ended.
    pub stop_reason: String,
    /// Steps done.
    pub steps: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// Best validation loss and its step.
    pub best: Option<(usize, f64)>,
    /// Training examples used / dialogues skipped.
    pub train_examples: usize,
    /// Dialogues skipped because they had no usable answer.
    pub skipped: usize,
    /// Training tokens seen (without padding).
    pub tokens_seen: u64,
    /// Training steps.
    pub history: Vec<StepRecord>,
    /// Evaluations (validation loss and probe answers).
    pub evaluations: Vec<EvalRecord>,
    /// Whether any evaluation flagged a collapse.
    pub collapse_seen: bool,
    /// The adapter folder to use (relative to the output folder).
    pub adapter: String,
}
