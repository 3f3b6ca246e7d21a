//! Fine-tuning for the wizard and the CLI, over the `doctorglm-datasets` and
//! `doctorglm-finetune` crates:
//! - `inspect_file`: format, encoding, columns, a preview and the suggested column mapping;
//! - `prepare`: import → de-identify (report with examples to review) → clean → split, written
//!   as a prepared dataset folder;
//! - `train` / `resume`: a LoRA job (paper defaults) that records its run and metrics in the
//!   encrypted store and, when it ends (completed or stopped early), registers the adapter so
//!   that it shows in `models list` and the chat picker;
//! - `TrainingJobs` (`jobs()`): the same jobs on background threads, paused, resumed and
//!   cancelled by id (the Tauri commands use it).
//!
//! A job's output folder holds `finetune_job.json` (base model, dataset, settings, run id), so
//! `resume` needs only the folder.
use super::engine::Device;
use super::models;
use super::registry::{new_id, ModelRecord, Registry};
use super::{AppContext, CancelFlag, Progress};
use crate::error::{AppError, AppResult};
use crate::store::{self, AdapterKind, NewDataset, TrainingMetric, TrainingStatus};
use doctorglm_datasets::clean::{CleanSettings, Dedup, TokenHistograms};
use doctorglm_datasets::deid::DeidReport;
use doctorglm_datasets::encoding::TextEncoding;
use doctorglm_datasets::import::{self, FileFormat, Layout, Mapping, ReadOptions, RowIssue};
use doctorglm_datasets::prepared::{self, Manifest, PrepareSettings, PreparedDataset};
use doctorglm_datasets::{Control, Dialogue};
use doctorglm_finetune::{Event, FinetuneJob, FinetuneSettings, JobControl, StopReason, TrainingData};
use doctorglm_models::{select_device, DeviceChoice, LoadOptions};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// File (in a job's output folder) that lets `resume` find the job's inputs.
pub const JOB_FILE: &str = "finetune_job.json";

fn dataset_err(e: doctorglm_datasets::DatasetError) -> AppError {
    match e {
        doctorglm_datasets::DatasetError::Cancelled => AppError::Cancelled,
        other => AppError::Invalid(other.to_string()),
    }
}

fn store_err(e: store::StoreError) -> AppError {
    AppError::Invalid(format!("the encrypted store: {e}"))
}

/// What an export file looks like, for the wizard's preview and column mapping.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInspection {
    /// The file.
    pub path: PathBuf,
    /// Its container format.
    pub format: FileFormat,
    /// Its text encoding (none for spreadsheets).
    pub encoding: Option<TextEncoding>,
    /// Column (field) names.
    pub columns: Vec<String>,
    /// Records read.
    pub records: usize,
    /// Records that could not be read, with their line or row.
    pub unreadable: Vec<RowIssue>,
    /// The first records as (column, value) pairs.
    pub preview: Vec<Vec<(String, String)>>,
    /// The recognised layout, if any.
    pub layout: Option<Layout>,
    /// The suggested mapping, if the question and answer columns were recognised.
    pub mapping: Option<Mapping>,
    /// Remarks (e.g. the file name says CSV but the content is JSON).
    pub notes: Vec<String>,
}

/// Reads an export file and suggests a column mapping.
pub fn inspect_file(path: &Path, preview_rows: usize) -> AppResult<FileInspection> {
    let i = import::inspect(path, &ReadOptions::default(), preview_rows, &mut Control::none()).map_err(dataset_err)?;
    let (layout, mapping) = match i.suggested {
        Some((l, m)) => (Some(l), Some(m)),
        None => (None, None),
    };
    Ok(FileInspection {
        path: path.to_path_buf(),
        format: i.format,
        encoding: i.encoding,
        columns: i.columns,
        records: i.records,
        unreadable: i.unreadable.into_iter().take(100).collect(),
        preview: i.preview,
        layout,
        mapping,
        notes: i.notes,
    })
}

/// One export file and the mapping chosen for it (none = the suggestion).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// The file.
    pub path: PathBuf,
    /// Its column mapping.
    #[serde(default)]
    pub mapping: Option<Mapping>,
}

/// Cleaning and split options of the wizard (defaults: the paper's limits, 5% validation).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PrepareOptions {
    /// Share of dialogues held out for validation.
    pub validation_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// Max prompt tokens (histogram limit; longer prompts are truncated in training).
    pub max_source_tokens: usize,
    /// Max answer tokens.
    pub max_target_tokens: usize,
    /// Drop dialogues over the token limits instead of truncating them.
    pub drop_over_limits: bool,
    /// Minimum characters of question and answer.
    pub min_chars: usize,
    /// Duplicate removal.
    pub dedup: Dedup,
    /// Skip de-identification (only for data that is already anonymous).
    pub skip_deid: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            validation_fraction: 0.05,
            seed: 42,
            max_source_tokens: 512,
            max_target_tokens: 100,
            drop_over_limits: false,
            min_chars: 2,
            dedup: Dedup::Near,
            skip_deid: false,
        }
    }
}

impl PrepareOptions {
    /// The datasets crate's settings.
    pub fn settings(&self) -> PrepareSettings {
        PrepareSettings {
            read: ReadOptions::default(),
            clean: CleanSettings {
                min_source_chars: self.min_chars,
                min_target_chars: self.min_chars,
                max_source_tokens: self.max_source_tokens,
                max_target_tokens: self.max_target_tokens,
                drop_over_token_limits: self.drop_over_limits,
                dedup: self.dedup,
                validation_fraction: self.validation_fraction,
                seed: self.seed,
                ..CleanSettings::default()
            },
            skip_deid: self.skip_deid,
        }
    }
}

/// What to prepare.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareRequest {
    /// The export files.
    pub sources: Vec<SourceSpec>,
    /// Where to write the dataset (default: a new folder under the data folder's `datasets/`).
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// Options.
    #[serde(default)]
    pub options: PrepareOptions,
    /// A model (id, name or folder) whose tokenizer counts tokens exactly for the histogram.
    #[serde(default)]
    pub tokenizer_model: Option<String>,
}

/// A prepared dataset and its reports.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareResult {
    /// The dataset folder (train.jsonl, validation.jsonl, manifest.json).
    pub dir: PathBuf,
    /// Sources, cleaning report, split sizes and token histograms.
    pub manifest: Manifest,
    /// What de-identification found and replaced, with examples to review.
    pub deid: DeidReport,
    /// The first training dialogues after de-identification, as they will be trained on.
    pub sample: Vec<Dialogue>,
}

/// Imports, de-identifies, cleans and splits the sources into a dataset folder.
pub fn prepare(
    ctx: &AppContext,
    request: &PrepareRequest,
    progress: &dyn Fn(Progress),
    cancel: &CancelFlag,
) -> AppResult<PrepareResult> {
    if request.sources.is_empty() {
        return Err(AppError::Invalid("choose at least one export file".into()));
    }
    let f = request.options.validation_fraction;
    if !(0.0..0.9).contains(&f) {
        return Err(AppError::Invalid("the validation share must be between 0 and 0.9".into()));
    }
    let tokenizer = match &request.tokenizer_model {
        Some(m) => {
            let record = find_model(ctx, m)?;
            Some(doctorglm_models::tokenizer::Tokenizer::load(&record.info.path).map_err(|e| AppError::Engine(e.to_string()))?)
        }
        None => None,
    };
    let count = |text: &str| tokenizer.as_ref().map(|t| t.encode(text).len()).unwrap_or(0);
    let counter: Option<&dyn Fn(&str) -> usize> = if tokenizer.is_some() { Some(&count) } else { None };
    let sources: Vec<(PathBuf, Option<Mapping>)> = request.sources.iter().map(|s| (s.path.clone(), s.mapping.clone())).collect();
    let settings = request.options.settings();
    progress(Progress::new(0.0, "importing"));
    let mut control = Control::none().with_cancel(cancel.as_atomic()).with_progress(|p| {
        let fraction = p.total.map(|t| p.done as f32 / t.max(1) as f32).unwrap_or(0.0);
        progress(Progress::new(fraction * 0.95, format!("{} records", p.done)));
    });
    let (dataset, deid) = prepared::prepare(&sources, &settings, counter, &mut control).map_err(dataset_err)?;
    cancel.check()?;
    let dir = match &request.output {
        Some(d) => d.clone(),
        None => ctx.data_dir().join("datasets").join(new_id("dataset")),
    };
    dataset.write(&dir).map_err(dataset_err)?;
    progress(Progress::new(1.0, "prepared"));
    let sample = dataset.train.iter().take(5).cloned().collect();
    Ok(PrepareResult { dir, manifest: dataset.manifest, deid, sample })
}

/// Reads a prepared dataset folder's manifest (sizes, histograms) for the wizard.
pub fn dataset_manifest(dir: &Path) -> AppResult<(Manifest, TokenHistograms)> {
    let ds = PreparedDataset::read(dir).map_err(dataset_err)?;
    let h = ds.manifest.histograms.clone();
    Ok((ds.manifest, h))
}

/// A training job to start.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainRequest {
    /// Base model: a registered model's id or name, or a model folder (imported if new).
    pub base: String,
    /// The prepared dataset folder.
    pub dataset: PathBuf,
    /// Output folder (default: `adapters/<name>` in the data folder). Must not hold a checkpoint.
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// The adapter's name in the registry (default from the dataset and time).
    #[serde(default)]
    pub name: Option<String>,
    /// Training settings (default: the paper's).
    #[serde(default)]
    pub settings: FinetuneSettings,
    /// CPU or GPU.
    #[serde(default)]
    pub device: Device,
    /// Register the adapter when the job ends (default true).
    #[serde(default = "yes")]
    pub register: bool,
}

fn yes() -> bool {
    true
}

/// Settings a resumed job may change.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeOverrides {
    /// Stop after this many steps in all.
    pub max_steps: Option<usize>,
    /// Passes over the data.
    pub epochs: Option<usize>,
    /// Evaluation interval in steps.
    pub eval_every: Option<usize>,
    /// Evaluations without improvement before stopping.
    pub patience: Option<usize>,
}

/// What `finetune_job.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFile {
    /// The registered base model's id.
    pub base_id: String,
    /// The base model folder.
    pub base_path: PathBuf,
    /// The prepared dataset folder.
    pub dataset: PathBuf,
    /// The adapter's name.
    pub name: String,
    /// Settings.
    pub settings: FinetuneSettings,
    /// CPU or GPU.
    pub device: Device,
    /// Register the adapter at the end.
    pub register: bool,
    /// The training run in the encrypted store.
    pub run_id: Option<i64>,
}

/// How a job ended, and the adapter it registered.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainResult {
    /// Why it ended.
    pub reason: StopReason,
    /// Steps done in all.
    pub steps: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// Best validation loss and its step.
    pub best: Option<(usize, f64)>,
    /// Whether a probe answer looked collapsed at some evaluation.
    pub collapse_seen: bool,
    /// The output folder.
    pub output: PathBuf,
    /// The adapter folder (PEFT format).
    pub adapter_dir: PathBuf,
    /// The adapter's name.
    pub name: String,
    /// The adapter's id in the app's registry (selectable in chat), when registered.
    pub adapter_id: Option<String>,
    /// The base model's id.
    pub base_id: String,
    /// The training run in the encrypted store.
    pub run_id: Option<i64>,
    /// Training tokens per second at the last step (recent average), when a step ran.
    pub tokens_per_sec: Option<f64>,
    /// Seconds this run took (loading, training, evaluation, saving).
    pub elapsed_secs: f64,
    /// Training tokens seen in all (without padding).
    pub tokens_seen: u64,
}

/// Finds a registered model by id, then name; a folder path is imported when new.
pub fn find_model(ctx: &AppContext, base: &str) -> AppResult<ModelRecord> {
    let registry = models::list(ctx)?;
    if let Some(m) = registry.models.iter().find(|m| m.id == base).or_else(|| registry.models.iter().find(|m| m.info.name == base)) {
        return Ok(m.clone());
    }
    let path = Path::new(base);
    if path.is_dir() {
        if let Ok(canonical) = std::fs::canonicalize(path) {
            if let Some(m) = registry.models.iter().find(|m| m.info.path == canonical) {
                return Ok(m.clone());
            }
        }
        return models::import_model(ctx, path, &|_| {}, &CancelFlag::new());
    }
    Err(AppError::NotFound(format!("model '{base}' (give a registered model's id or name, or a model folder)")))
}

fn read_job_file(out: &Path) -> AppResult<JobFile> {
    let path = out.join(JOB_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            AppError::Invalid(format!("{} is not a fine-tuning output folder ({JOB_FILE} is missing)", out.display()))
        } else {
            AppError::io(&path, e)
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|source| AppError::Corrupt { path, source })
}

fn write_job_file(out: &Path, job: &JobFile) -> AppResult<()> {
    std::fs::create_dir_all(out).map_err(|e| AppError::io(out, e))?;
    super::jsonfile::save(&out.join(JOB_FILE), job)
}

fn has_checkpoint(out: &Path) -> bool {
    out.join("checkpoints").join("LATEST").exists()
}

fn safe_name(s: &str) -> String {
    s.chars().map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect()
}

/// Starts a new job and runs it to its end on this thread.
pub fn train(ctx: &AppContext, request: &TrainRequest, control: &JobControl, on_event: &mut dyn FnMut(&Event)) -> AppResult<TrainResult> {
    request.settings.validate().map_err(|e| AppError::Invalid(e.to_string()))?;
    let base = find_model(ctx, &request.base)?;
    let data = TrainingData::read_prepared(&request.dataset).map_err(|e| AppError::Invalid(e.to_string()))?;
    let dataset_name = request.dataset.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dataset".into());
    let name = match &request.name {
        Some(n) if !n.trim().is_empty() => n.trim().to_string(),
        _ => format!("{}-{}-lora-{}", base.info.name, safe_name(&dataset_name), super::registry::now_ms() / 1000),
    };
    let out = match &request.output {
        Some(o) => o.clone(),
        None => ctx.data_dir().join("adapters").join(safe_name(&name)),
    };
    std::fs::create_dir_all(&out).map_err(|e| AppError::io(&out, e))?;
    let _busy = BusyOutput::claim(&out)?;
    if has_checkpoint(&out) {
        return Err(AppError::Invalid(format!(
            "{} already holds a training checkpoint: resume it (`doctorglm finetune resume`) or choose another folder",
            out.display()
        )));
    }
    let store = ctx.store();
    let ds = data.dataset.clone();
    let record = store
        .add_dataset(&NewDataset {
            name: dataset_name,
            source: Some(request.dataset.display().to_string()),
            format: "prepared".into(),
            records: ds.as_ref().map(|d| (d.train + d.validation) as i64).unwrap_or(0),
            deidentified: ds.as_ref().is_some_and(|d| d.deidentified),
            sha256: ds.as_ref().and_then(|d| d.sources.first().map(|s| s.sha256.clone())),
        })
        .map_err(store_err)?;
    let base_store_id = store_model_id(&base)?;
    let config = serde_json::json!({
        "name": name,
        "base": base.info.path.display().to_string(),
        "dataset": request.dataset.display().to_string(),
        "output": out.display().to_string(),
        "settings": request.settings,
    });
    let run = store.create_training_run(Some(record.id), Some(base_store_id), AdapterKind::Lora, &config).map_err(store_err)?;
    let job = JobFile {
        base_id: base.id.clone(),
        base_path: base.info.path.clone(),
        dataset: request.dataset.clone(),
        name,
        settings: request.settings.clone(),
        device: request.device,
        register: request.register,
        run_id: Some(run.id),
    };
    drop(store);
    write_job_file(&out, &job)?;
    run_job(ctx, &out, job, data, false, control, on_event)
}

/// Continues the job in `out` from its latest checkpoint.
pub fn resume(
    ctx: &AppContext,
    out: &Path,
    overrides: &ResumeOverrides,
    control: &JobControl,
    on_event: &mut dyn FnMut(&Event),
) -> AppResult<TrainResult> {
    let _busy = BusyOutput::claim(out)?;
    let mut job = read_job_file(out)?;
    if !has_checkpoint(out) {
        return Err(AppError::Invalid(format!("{} has no checkpoint to resume from yet; start the job again", out.display())));
    }
    let s = &mut job.settings;
    if let Some(v) = overrides.max_steps {
        s.max_steps = Some(v);
    }
    if let Some(v) = overrides.epochs {
        s.epochs = v;
    }
    if let Some(v) = overrides.eval_every {
        s.eval_every = v;
    }
    if let Some(v) = overrides.patience {
        s.patience = Some(v);
    }
    job.settings.validate().map_err(|e| AppError::Invalid(e.to_string()))?;
    let data = TrainingData::read_prepared(&job.dataset).map_err(|e| AppError::Invalid(e.to_string()))?;
    {
        let store = ctx.store();
        let run_known = job.run_id.is_some_and(|id| store.training_run(id).is_ok());
        if !run_known {
            let config = serde_json::json!({ "name": job.name, "base": job.base_path, "dataset": job.dataset, "output": out, "settings": job.settings, "resumed": true });
            job.run_id = Some(store.create_training_run(None, None, AdapterKind::Lora, &config).map_err(store_err)?.id);
        }
    }
    write_job_file(out, &job)?;
    run_job(ctx, out, job, data, true, control, on_event)
}

/// The store's id of a base model (registry records carry it).
fn store_model_id(base: &ModelRecord) -> AppResult<i64> {
    super::conversations::parse_id("model", &base.id)
}

#[allow(clippy::too_many_arguments)]
fn run_job(
    ctx: &AppContext,
    out: &Path,
    job: JobFile,
    data: TrainingData,
    resume: bool,
    control: &JobControl,
    on_event: &mut dyn FnMut(&Event),
) -> AppResult<TrainResult> {
    let device = match job.device {
        Device::Cpu => candle_core::Device::Cpu,
        Device::Gpu => select_device(DeviceChoice::Best).map_err(|e| AppError::Engine(e.to_string()))?,
    };
    let finetune_job = FinetuneJob {
        model_dir: job.base_path.clone(),
        out_dir: out.to_path_buf(),
        data,
        settings: job.settings.clone(),
        resume,
        load: LoadOptions { dtype: candle_core::DType::F32, device },
    };
    let run_id = job.run_id;
    let set_status = |status: TrainingStatus, error: Option<&str>| {
        if let Some(id) = run_id {
            if let Err(e) = ctx.store().set_training_status(id, status, error, Some(&out.display().to_string())) {
                tracing::warn!("could not record the training status: {e}");
            }
        }
    };
    set_status(TrainingStatus::Running, None);
    let started = std::time::Instant::now();
    let mut tokens_per_sec: Option<f64> = None;
    let mut last_step: Option<TrainingMetric> = None;
    let mut record = |event: &Event| {
        let Some(id) = run_id else { return };
        let metric = match event {
            Event::Step { step, total_steps, loss, lr, .. } => {
                let m = TrainingMetric {
                    step: *step as i64,
                    epoch: Some(*step as f64 * job.settings.epochs as f64 / (*total_steps).max(1) as f64),
                    loss: Some(*loss as f64),
                    eval_loss: None,
                    learning_rate: Some(*lr),
                };
                last_step = Some(m.clone());
                Some(m)
            }
            Event::Evaluation { step, validation_loss, .. } => {
                let mut m = last_step.clone().filter(|m| m.step == *step as i64).unwrap_or(TrainingMetric {
                    step: *step as i64,
                    epoch: None,
                    loss: None,
                    eval_loss: None,
                    learning_rate: None,
                });
                m.eval_loss = *validation_loss;
                Some(m)
            }
            Event::Paused => {
                set_status(TrainingStatus::Paused, None);
                None
            }
            Event::Resumed => {
                set_status(TrainingStatus::Running, None);
                None
            }
            _ => None,
        };
        if let Some(m) = metric {
            if let Err(e) = ctx.store().add_training_metric(id, &m) {
                tracing::warn!("could not record a training metric: {e}");
            }
        }
    };
    let outcome = doctorglm_finetune::run(&finetune_job, control, |e| {
        if let Event::Step { tokens_per_sec: t, .. } = e {
            tokens_per_sec = Some(*t);
        }
        record(e);
        on_event(e);
    });
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let message = e.to_string();
            set_status(TrainingStatus::Failed, Some(&message));
            return Err(AppError::Invalid(format!("training failed: {message}")));
        }
    };
    let mut result = TrainResult {
        reason: outcome.reason,
        steps: outcome.steps,
        total_steps: outcome.summary.total_steps,
        best: outcome.best,
        collapse_seen: outcome.summary.collapse_seen,
        output: out.to_path_buf(),
        adapter_dir: outcome.adapter_dir.clone(),
        name: job.name.clone(),
        adapter_id: None,
        base_id: job.base_id.clone(),
        run_id,
        tokens_per_sec,
        elapsed_secs: started.elapsed().as_secs_f64(),
        tokens_seen: outcome.summary.tokens_seen,
    };
    if outcome.reason == StopReason::Cancelled {
        set_status(TrainingStatus::Cancelled, None);
        return Ok(result);
    }
    if job.register {
        match register_adapter(ctx, &job, &outcome.adapter_dir) {
            Ok(id) => result.adapter_id = Some(id),
            Err(e) => {
                set_status(TrainingStatus::Failed, Some(&e.to_string()));
                return Err(e);
            }
        }
    }
    set_status(TrainingStatus::Completed, None);
    Ok(result)
}

/// Output folders with a job running in this process; a second job on one is refused.
fn busy_outputs() -> std::sync::MutexGuard<'static, std::collections::HashSet<PathBuf>> {
    static BUSY: OnceLock<Mutex<std::collections::HashSet<PathBuf>>> = OnceLock::new();
    BUSY.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// Marks an output folder busy while it lives.
struct BusyOutput(PathBuf);

impl BusyOutput {
    fn claim(out: &Path) -> AppResult<Self> {
        let key = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf());
        if !busy_outputs().insert(key.clone()) {
            return Err(AppError::Invalid(format!("a training job is already running in {}", out.display())));
        }
        Ok(Self(key))
    }
}

impl Drop for BusyOutput {
    fn drop(&mut self) {
        busy_outputs().remove(&self.0);
    }
}

/// A training run that stopped before its end and can be continued from its checkpoint.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnfinishedRun {
    /// The run in the encrypted store.
    pub run_id: i64,
    /// The adapter's name.
    pub name: String,
    /// The output folder (give it to `resume`).
    pub output: PathBuf,
    /// Its state (cancelled, interrupted, paused, failed).
    pub status: TrainingStatus,
    /// Steps done at the checkpoint.
    pub step: usize,
    /// When the run was created, Unix milliseconds.
    pub created_at: i64,
}

/// Runs that stopped early (cancelled, interrupted by a crash or exit, failed) and still have a
/// checkpoint and a job file, newest first; runs going on in this process are left out.
pub fn unfinished_runs(ctx: &AppContext) -> AppResult<Vec<UnfinishedRun>> {
    let runs = ctx.store().list_training_runs().map_err(store_err)?;
    let mut out = Vec::new();
    for run in runs {
        if !matches!(run.status, TrainingStatus::Cancelled | TrainingStatus::Interrupted | TrainingStatus::Paused | TrainingStatus::Failed) {
            continue;
        }
        let Some(dir) = run.output_path.as_deref().map(PathBuf::from) else { continue };
        let key = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        if busy_outputs().contains(&key) || !dir.join(JOB_FILE).is_file() {
            continue;
        }
        let Ok(Some((_, state))) = doctorglm_finetune::checkpoint::latest(&dir) else { continue };
        let name = run.config.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
        out.push(UnfinishedRun { run_id: run.id, name, output: dir, status: run.status, step: state.step, created_at: run.created_at });
    }
    Ok(out)
}

/// Registers the trained adapter (checked against its base, named after the job, tied to
/// its training run) in the registry of the encrypted store.
fn register_adapter(ctx: &AppContext, job: &JobFile, adapter_dir: &Path) -> AppResult<String> {
    let path = std::fs::canonicalize(adapter_dir).map_err(|e| AppError::io(adapter_dir, e))?;
    let registry = Registry::load(ctx)?;
    let base = registry.model(&job.base_id)?.clone();
    let mut info = super::inspect::inspect_adapter(&path)?;
    super::inspect::check_adapter_against(&info, &base.info)?;
    info.name = job.name.clone();
    let record = super::registry::upsert_adapter(&ctx.store(), store_model_id(&base)?, &info, job.run_id)?;
    tracing::info!(adapter = %job.name, "fine-tuned adapter registered");
    Ok(record.id)
}

/// A message from a background job.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum JobUpdate {
    /// A progress event of the runner.
    Event {
        /// The event.
        event: Event,
    },
    /// The job ended (completed, stopped early or cancelled).
    Done {
        /// The outcome.
        result: TrainResult,
    },
    /// The job failed.
    Error {
        /// Why.
        message: String,
    },
}

/// What a background job does.
// One per job started: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum JobStart {
    /// A new job.
    New(TrainRequest),
    /// Resume the job in an output folder.
    Resume {
        /// The output folder.
        output: PathBuf,
        /// Changed settings.
        overrides: ResumeOverrides,
    },
}

/// The training jobs running in the background of this process, by id.
#[derive(Default)]
pub struct TrainingJobs {
    jobs: Mutex<HashMap<String, Arc<JobControl>>>,
}

/// The process's training jobs.
pub fn jobs() -> &'static TrainingJobs {
    static JOBS: OnceLock<TrainingJobs> = OnceLock::new();
    JOBS.get_or_init(TrainingJobs::default)
}

impl TrainingJobs {
    /// Starts a job on a new thread; `emit` gets the job id with each of its events and then
    /// one `Done` or `Error`. Returns the job id and the thread's handle.
    pub fn start(
        &self,
        ctx: Arc<AppContext>,
        start: JobStart,
        mut emit: impl FnMut(&str, JobUpdate) + Send + 'static,
    ) -> (String, std::thread::JoinHandle<()>) {
        let id = new_id("train");
        let control = Arc::new(JobControl::new());
        self.lock().insert(id.clone(), control.clone());
        let job_id = id.clone();
        let handle = std::thread::spawn(move || {
            let mut on_event = |e: &Event| emit(&job_id, JobUpdate::Event { event: e.clone() });
            let result = match &start {
                JobStart::New(request) => train(&ctx, request, &control, &mut on_event),
                JobStart::Resume { output, overrides } => resume(&ctx, output, overrides, &control, &mut on_event),
            };
            jobs().lock().remove(&job_id);
            match result {
                Ok(result) => emit(&job_id, JobUpdate::Done { result }),
                Err(e) => emit(&job_id, JobUpdate::Error { message: e.to_string() }),
            }
        });
        (id, handle)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<JobControl>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with(&self, id: &str, f: impl FnOnce(&JobControl)) -> bool {
        self.lock().get(id).map(|c| f(c)).is_some()
    }

    /// Pauses a job after its current step; false when no such job runs.
    pub fn pause(&self, id: &str) -> bool {
        self.with(id, JobControl::pause)
    }
    /// Lets a paused job go on.
    pub fn resume(&self, id: &str) -> bool {
        self.with(id, JobControl::resume)
    }
    /// Cancels a job (it writes a resumable checkpoint first).
    pub fn cancel(&self, id: &str) -> bool {
        self.with(id, JobControl::cancel)
    }
    /// Ids of the running jobs.
    pub fn running(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

/// The paper's settings (LoRA r 8, alpha 16 on query_key_value, Lion 2e-5, batch 4, 1 epoch,
/// max 512/100, no warm-up, no weight decay) with this app's evaluation defaults.
pub fn default_settings() -> FinetuneSettings {
    FinetuneSettings::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use doctorglm_finetune::probe::ProbeQuestion;
    use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
    use std::time::Duration;

    fn shared() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
    }

    fn tiny_model() -> PathBuf {
        std::env::var_os("DOCTORGLM_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| shared().join("fixtures"))
            .join("models/chatglm3-tiny")
    }

    fn export() -> PathBuf {
        shared().join("data/exports/medicalgpt-sft-1k.sharegpt.jsonl")
    }

    fn fast() -> FinetuneSettings {
        FinetuneSettings {
            lr: 1e-3,
            max_source: 40,
            max_target: 16,
            eval_max_examples: Some(8),
            probe: vec![ProbeQuestion { question: "1+1等于几？".into(), expected: vec!["2".into()] }],
            probe_max_tokens: 4,
            ..FinetuneSettings::default()
        }
    }

    fn prepared(ctx: &AppContext) -> PrepareResult {
        let request = PrepareRequest {
            sources: vec![SourceSpec { path: export(), mapping: None }],
            output: None,
            options: PrepareOptions::default(),
            tokenizer_model: Some(tiny_model().display().to_string()),
        };
        prepare(ctx, &request, &|_| {}, &CancelFlag::new()).unwrap()
    }

    /// The next update that `pick` accepts (others are skipped); panics on an error or a long silence.
    fn wait_for<T>(rx: &Receiver<JobUpdate>, mut pick: impl FnMut(&JobUpdate) -> Option<T>) -> T {
        loop {
            match rx.recv_timeout(Duration::from_secs(300)) {
                Ok(JobUpdate::Error { message }) => panic!("the job failed: {message}"),
                Ok(u) => {
                    if let Some(v) = pick(&u) {
                        return v;
                    }
                }
                Err(e) => panic!("no update from the job: {e}"),
            }
        }
    }

    #[test]
    fn inspect_and_prepare_a_real_export() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let i = inspect_file(&export(), 3).unwrap();
        assert_eq!(i.format, FileFormat::Jsonl);
        assert_eq!(i.layout, Some(Layout::ShareGpt));
        assert_eq!(i.preview.len(), 3);
        assert!(i.mapping.is_some());

        let p = prepared(&ctx);
        assert!(p.dir.starts_with(dir.path().join("datasets")));
        for f in ["train.jsonl", "validation.jsonl", "manifest.json"] {
            assert!(p.dir.join(f).is_file(), "{f}");
        }
        let m = &p.manifest;
        assert_eq!(m.train + m.validation, m.cleaning.kept);
        assert_eq!(p.deid.dialogues, m.sources[0].imported);
        assert!(m.histograms.exact_tokenizer, "the tiny model's tokenizer counted the tokens");
        assert_eq!((m.histograms.source.limit, m.histograms.target.limit), (512, 100));
        assert_eq!(p.sample.len(), 5);

        let bad = PrepareRequest { sources: vec![], output: None, options: PrepareOptions::default(), tokenizer_model: None };
        assert!(prepare(&ctx, &bad, &|_| {}, &CancelFlag::new()).unwrap_err().to_string().contains("export file"));
    }

    #[test]
    fn background_job_pauses_resumes_cancels_and_continues_from_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Arc::new(AppContext::open(dir.path()).unwrap());
        let p = prepared(&ctx);
        let output = dir.path().join("job");
        let request = TrainRequest {
            base: tiny_model().display().to_string(),
            dataset: p.dir.clone(),
            output: Some(output.clone()),
            name: Some("ward-7".into()),
            settings: FinetuneSettings { epochs: 1000, eval_every: 0, checkpoint_every: 1, ..fast() },
            device: Device::Cpu,
            register: true,
        };
        let (tx, rx) = channel();
        let (id, handle) = jobs().start(ctx.clone(), JobStart::New(request), move |_, u| {
            let _ = tx.send(u);
        });
        assert!(jobs().running().contains(&id));
        wait_for(&rx, |u| matches!(u, JobUpdate::Event { event: Event::Step { .. } }).then_some(()));

        // Pause: the runner says so, the store says so, and no step runs while paused.
        assert!(jobs().pause(&id));
        wait_for(&rx, |u| matches!(u, JobUpdate::Event { event: Event::Paused }).then_some(()));
        let run_id = ctx.store().list_training_runs().unwrap()[0].id;
        assert_eq!(ctx.store().training_run(run_id).unwrap().status, TrainingStatus::Paused);
        let err = resume(&ctx, &output, &ResumeOverrides::default(), &JobControl::new(), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("already running"), "{err}");
        match rx.recv_timeout(Duration::from_millis(300)) {
            Err(RecvTimeoutError::Timeout) => {}
            other => panic!("an update arrived while paused: {other:?}"),
        }

        // Resume, then cancel after a step: a checkpoint is left, nothing is registered.
        assert!(jobs().resume(&id));
        wait_for(&rx, |u| matches!(u, JobUpdate::Event { event: Event::Resumed }).then_some(()));
        wait_for(&rx, |u| matches!(u, JobUpdate::Event { event: Event::Step { .. } }).then_some(()));
        assert!(jobs().cancel(&id));
        let result = wait_for(&rx, |u| match u {
            JobUpdate::Done { result } => Some(result.clone()),
            _ => None,
        });
        handle.join().unwrap();
        assert_eq!(result.reason, StopReason::Cancelled);
        assert_eq!(result.adapter_id, None);
        assert!(!jobs().running().contains(&id), "a finished job is forgotten");
        assert!(!jobs().pause(&id));
        assert!(output.join("checkpoints/LATEST").is_file());
        assert_eq!(ctx.store().training_run(run_id).unwrap().status, TrainingStatus::Cancelled);
        assert!(models::list(&ctx).unwrap().adapters.iter().all(|a| a.info.name != "ward-7"));
        let unfinished = unfinished_runs(&ctx).unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!((unfinished[0].run_id, unfinished[0].step, unfinished[0].name.as_str()), (run_id, result.steps, "ward-7"));

        // Resume in the background for two more steps: completes, registers, same run.
        let (tx, rx) = channel();
        let overrides = ResumeOverrides { max_steps: Some(result.steps + 2), ..Default::default() };
        let (_, handle) = jobs().start(ctx.clone(), JobStart::Resume { output: output.clone(), overrides }, move |_, u| {
            let _ = tx.send(u);
        });
        let start = wait_for(&rx, |u| match u {
            JobUpdate::Event { event: Event::Started { start_step, .. } } => Some(*start_step),
            _ => None,
        });
        assert_eq!(start, result.steps);
        let done = wait_for(&rx, |u| match u {
            JobUpdate::Done { result } => Some(result.clone()),
            _ => None,
        });
        handle.join().unwrap();
        assert_eq!(done.reason, StopReason::Completed);
        assert_eq!(done.steps, result.steps + 2);
        assert_eq!(done.run_id, Some(run_id));
        let adapter_id = done.adapter_id.expect("registered");
        let registry = models::list(&ctx).unwrap();
        let a = registry.adapter(&adapter_id).unwrap();
        assert_eq!(a.info.name, "ward-7");
        assert_eq!(a.base_id, done.base_id);
        assert_eq!(ctx.store().training_run(run_id).unwrap().status, TrainingStatus::Completed);
        assert_eq!(ctx.store().adapter_by_name("ward-7").unwrap().and_then(|a| a.training_run_id), Some(run_id));
        assert_eq!(ctx.store().training_metrics(run_id).unwrap().len(), done.steps);
        assert!(unfinished_runs(&ctx).unwrap().is_empty(), "a completed run is not offered again");
    }
}
