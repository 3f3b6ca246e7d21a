//! Tauri commands: thin wrappers that run a service off the UI thread and turn its result into
//! JSON. Long work returns a job id at once and reports through events:
//! - `chat` — `{ jobId, event }` with a `services::chat::ChatEvent`, or `{ jobId, error }`;
//! - `progress` — `{ jobId, fraction, message }`;
//! - `job-done` — `{ jobId, result }` or `{ jobId, error }`.
use crate::error::{AppError, AppResult};
use crate::services::chat::{self, AskRequest, ChatEvent};
use crate::services::conversations::{self, Conversation, ConversationPage, ExportFormat};
use crate::services::generation::{GenerationSettings, Preset};
use crate::services::inspect::ModelInfo;
use crate::services::registry::{new_id, AdapterRecord, Registry};
use crate::services::knowledge::{DocumentSummary, ImportSummary};
use crate::services::{about, finetune, knowledge, models, settings, storage, AppContext, CancelFlag, Progress};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use zeroize::Zeroizing;
use crate::store::{AppPaths, KeySource};
use std::time::Instant;
use tauri::{AppHandle, Emitter, State};

/// State shared by all commands.
pub struct AppState {
    /// The services' context: set at start, or by `unlock_store` when the window started
    /// locked (see [`AppState::locked`]).
    ctx: OnceLock<Arc<AppContext>>,
    /// Where the store is and why it could not be opened, when the window started locked.
    locked: Option<Locked>,
    /// Held while a passphrase is being tried (key derivation takes a moment).
    unlocking: Mutex<()>,
    /// Cancellation flags of running jobs, by job id.
    pub jobs: Mutex<HashMap<String, CancelFlag>>,
    /// When the process started (`main`), for the start-up time `ui_ready` reports.
    pub started: Instant,
    /// Whether the interface has reported ready once.
    ready_reported: AtomicBool,
}

impl AppState {
    /// State over a context; `started` is when the process began.
    pub fn new(ctx: AppContext, started: Instant) -> Self {
        let state = Self::empty(None, started);
        let _ = state.ctx.set(Arc::new(ctx));
        state
    }

    /// State of a window whose store could not be opened for want of its key (`reason`): every
    /// command answers [`AppError::Locked`] until [`AppState::unlock`] opens `paths`' store.
    pub fn locked(paths: AppPaths, reason: String, started: Instant) -> Self {
        Self::empty(Some(Locked { paths, reason }), started)
    }

    fn empty(locked: Option<Locked>, started: Instant) -> Self {
        Self {
            ctx: OnceLock::new(),
            locked,
            unlocking: Mutex::new(()),
            jobs: Mutex::new(HashMap::new()),
            started,
            ready_reported: AtomicBool::new(false),
        }
    }

    /// The services' context, or [`AppError::Locked`] while the store waits for its passphrase.
    pub fn ctx(&self) -> AppResult<Arc<AppContext>> {
        self.ctx.get().cloned().ok_or(AppError::Locked)
    }

    /// Whether the store waits for its passphrase, and why.
    pub fn lock_state(&self) -> LockState {
        let locked = self.ctx.get().is_none();
        LockState { locked, reason: if locked { self.locked.as_ref().map(|l| l.reason.clone()) } else { None } }
    }

    /// Opens the store with `passphrase` (SQLCipher derives the key). A wrong passphrase is an
    /// error ([`crate::store::StoreError::WrongKey`]) that changes nothing: the window stays
    /// locked and may try again. Unlocking an open store does nothing.
    pub fn unlock(&self, passphrase: Zeroizing<String>) -> AppResult<()> {
        let _one_at_a_time = self.unlocking.lock().unwrap_or_else(|p| p.into_inner());
        if self.ctx.get().is_some() {
            return Ok(());
        }
        let locked = self.locked.as_ref().ok_or(AppError::Locked)?;
        let ctx = AppContext::open_with(locked.paths.clone(), KeySource::Passphrase(passphrase))?;
        tracing::info!("store unlocked with its passphrase");
        let _ = self.ctx.set(Arc::new(ctx));
        Ok(())
    }

    fn start_job(&self) -> (String, CancelFlag) {
        let id = new_id("job");
        let flag = CancelFlag::new();
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), flag.clone());
        (id, flag)
    }

    /// Registers a job under an id the window chose. The window listens for that id before it
    /// calls the command, so no event is missed: a job can report (and even finish) before the
    /// command's answer reaches the window.
    fn register_job(&self, job_id: &str) -> AppResult<CancelFlag> {
        check_job_id(job_id)?;
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.contains_key(job_id) {
            return Err(AppError::Invalid(format!("job id {job_id} is already in use")));
        }
        let flag = CancelFlag::new();
        jobs.insert(job_id.to_owned(), flag.clone());
        Ok(flag)
    }
}

/// Where a locked store is and why it could not be opened.
struct Locked {
    paths: AppPaths,
    reason: String,
}

/// Whether the store waits for its passphrase (the window then shows the unlock screen).
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LockState {
    /// True until the passphrase has opened the store.
    pub locked: bool,
    /// Why the store could not be opened at start (no key found, wrong passphrase).
    pub reason: Option<String>,
}

/// A job id from the window: 1 to 100 characters of ASCII letters, digits, `-` and `_`.
fn check_job_id(job_id: &str) -> AppResult<()> {
    let ok = !job_id.is_empty()
        && job_id.len() <= 100
        && job_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AppError::Invalid(format!("invalid job id {job_id:?}: use 1 to 100 letters, digits, - or _")))
    }
}

fn finish_job(app: &AppHandle, job_id: &str) {
    use tauri::Manager;
    let state = app.state::<AppState>();
    state.jobs.lock().unwrap_or_else(|p| p.into_inner()).remove(job_id);
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChatPayload {
    job_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<ChatEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProgressPayload {
    job_id: String,
    #[serde(flatten)]
    progress: Progress,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct DonePayload<T: Serialize> {
    job_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    cancelled: bool,
}

/// Runs `work` on its own thread as job `job_id`: its progress goes out as `progress` events,
/// its outcome as one `job-done` event (`cancelled` from `was_cancelled` or a cancelled error),
/// and the job is forgotten at the end.
fn spawn_progress_job<T: Serialize + Clone + Send + 'static>(
    app: AppHandle,
    job_id: String,
    was_cancelled: fn(&T) -> bool,
    work: impl FnOnce(&dyn Fn(Progress)) -> AppResult<T> + Send + 'static,
) {
    std::thread::spawn(move || {
        let report = |progress: Progress| {
            let _ = app.emit("progress", ProgressPayload { job_id: job_id.clone(), progress });
        };
        let payload = match work(&report) {
            Ok(result) => DonePayload { job_id: job_id.clone(), cancelled: was_cancelled(&result), result: Some(result), error: None },
            Err(e) => DonePayload {
                job_id: job_id.clone(),
                result: None,
                cancelled: matches!(e, AppError::Cancelled),
                error: Some(e.to_string()),
            },
        };
        let _ = app.emit("job-done", payload);
        finish_job(&app, &job_id);
    });
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> AppResult<T> + Send + 'static) -> AppResult<T> {
    tauri::async_runtime::spawn_blocking(f).await.map_err(|e| AppError::Invalid(format!("background task failed: {e}")))?
}

fn spawn_chat(app: AppHandle, state: &AppState, request: AskRequest, job_id: String, regenerate: bool) -> AppResult<String> {
    let ctx = state.ctx()?;
    let cancel = state.register_job(&job_id)?;
    let id = job_id.clone();
    std::thread::spawn(move || {
        let emit = |payload: ChatPayload| {
            if let Err(e) = app.emit("chat", payload) {
                tracing::warn!("could not send a chat event: {e}");
            }
        };
        let mut on_event = |event| emit(ChatPayload { job_id: id.clone(), event: Some(event), error: None });
        let result = if regenerate {
            chat::regenerate(&ctx, request, &mut on_event, &cancel)
        } else {
            chat::ask(&ctx, &request, &mut on_event, &cancel)
        };
        if let Err(e) = result {
            emit(ChatPayload { job_id: id.clone(), event: None, error: Some(e.to_string()) });
        }
        finish_job(&app, &id);
    });
    Ok(job_id)
}

/// The interface has mounted and loaded its first data: logs the time since the process started
/// (target `doctorglm::startup`, the first call only) and returns it in milliseconds.
/// `scripts/measure-startup.mjs` reads this line.
#[tauri::command]
pub fn ui_ready(state: State<'_, AppState>) -> u64 {
    let elapsed_ms = u64::try_from(state.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if !state.ready_reported.swap(true, Ordering::SeqCst) {
        tracing::info!(target: "doctorglm::startup", elapsed_ms, "interface ready");
    }
    elapsed_ms
}

/// Starts answering a question as job `job_id` (chosen by the window, see
/// `AppState::register_job`); its `chat` events follow. Returns the job id.
#[tauri::command]
pub fn send_message(app: AppHandle, state: State<'_, AppState>, request: AskRequest, job_id: String) -> AppResult<String> {
    spawn_chat(app, &state, request, job_id, false)
}

/// Answers the last question of a conversation again, as job `job_id`.
#[tauri::command]
pub fn regenerate(app: AppHandle, state: State<'_, AppState>, request: AskRequest, job_id: String) -> AppResult<String> {
    spawn_chat(app, &state, request, job_id, true)
}

/// Asks a running job to stop (answer generation, import). Unknown ids are ignored.
#[tauri::command]
pub fn cancel_job(state: State<'_, AppState>, job_id: String) -> bool {
    let jobs = state.jobs.lock().unwrap_or_else(|p| p.into_inner());
    jobs.get(&job_id).map(CancelFlag::cancel).is_some()
}

/// A page of conversations (`limit`, default 50, after `offset`), newest first, filtered by a
/// search query; `nextOffset` is the next page's offset, null after the last.
#[tauri::command]
pub async fn list_conversations(
    state: State<'_, AppState>,
    query: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
) -> AppResult<ConversationPage> {
    let ctx = state.ctx()?;
    let (offset, limit) = (offset.unwrap_or(0), limit.unwrap_or(conversations::DEFAULT_PAGE));
    blocking(move || conversations::list_page(&ctx, query.as_deref(), offset, limit)).await
}

/// One conversation with its messages.
#[tauri::command]
pub async fn get_conversation(state: State<'_, AppState>, id: String) -> AppResult<Conversation> {
    let ctx = state.ctx()?;
    blocking(move || conversations::get(&ctx, &id)).await
}

/// Deletes a conversation.
#[tauri::command]
pub async fn delete_conversation(state: State<'_, AppState>, id: String) -> AppResult<()> {
    let ctx = state.ctx()?;
    blocking(move || conversations::delete(&ctx, &id)).await
}

/// Exports a conversation as Markdown or JSON text.
#[tauri::command]
pub async fn export_conversation(state: State<'_, AppState>, id: String, format: ExportFormat) -> AppResult<String> {
    let ctx = state.ctx()?;
    blocking(move || conversations::export(&ctx, Some(&id), format)).await
}

/// Renames a conversation.
#[tauri::command]
pub async fn rename_conversation(state: State<'_, AppState>, id: String, title: String) -> AppResult<()> {
    let ctx = state.ctx()?;
    blocking(move || conversations::rename(&ctx, &id, &title)).await
}

/// Where the store's key is kept (OS keyring, key file with the reason, passphrase), the
/// database's path and size.
#[tauri::command]
pub async fn store_status(state: State<'_, AppState>) -> AppResult<storage::StoreStatus> {
    let ctx = state.ctx()?;
    blocking(move || storage::status(&ctx)).await
}

/// Whether the store waits for its passphrase (the window shows the unlock screen first).
#[tauri::command]
pub fn store_lock(state: State<'_, AppState>) -> LockState {
    state.lock_state()
}

/// Opens a locked store with the passphrase the user typed; a wrong one is an error and the
/// store stays locked (the database is not changed).
#[tauri::command]
pub async fn unlock_store(app: AppHandle, passphrase: String) -> AppResult<()> {
    use tauri::Manager;
    let passphrase = Zeroizing::new(passphrase);
    blocking(move || app.state::<AppState>().unlock(passphrase)).await
}

/// Imported models and adapters.
#[tauri::command]
pub async fn list_models(state: State<'_, AppState>) -> AppResult<Registry> {
    let ctx = state.ctx()?;
    blocking(move || models::list(&ctx)).await
}

/// Starts importing a model folder as job `job_id` (chosen by the window); `progress` then
/// `job-done` events follow. Returns the job id.
#[tauri::command]
pub fn import_model(app: AppHandle, state: State<'_, AppState>, path: String, job_id: String) -> AppResult<String> {
    let ctx = state.ctx()?;
    let cancel = state.register_job(&job_id)?;
    spawn_progress_job(app, job_id.clone(), |_| false, move |report| {
        models::import_model(&ctx, &PathBuf::from(path.trim()), report, &cancel)
    });
    Ok(job_id)
}

/// Checks a model folder without importing it.
#[tauri::command]
pub async fn check_model(path: String) -> AppResult<ModelInfo> {
    blocking(move || models::check_model(&PathBuf::from(path.trim()), &|_| {}, &CancelFlag::new())).await
}

/// Imports an adapter for an imported base, after checking it fits.
#[tauri::command]
pub async fn import_adapter(state: State<'_, AppState>, base_id: String, path: String) -> AppResult<AdapterRecord> {
    let ctx = state.ctx()?;
    blocking(move || models::import_adapter(&ctx, &base_id, &PathBuf::from(path.trim()))).await
}

/// Forgets a model (files stay on disk).
#[tauri::command]
pub async fn remove_model(state: State<'_, AppState>, id: String) -> AppResult<()> {
    let ctx = state.ctx()?;
    blocking(move || models::remove_model(&ctx, &id)).await
}

/// The presets' settings, by name.
#[tauri::command]
pub fn presets() -> HashMap<&'static str, GenerationSettings> {
    HashMap::from([
        ("conservative", Preset::Conservative.settings()),
        ("balanced", Preset::Balanced.settings()),
        ("diverse", Preset::Diverse.settings()),
    ])
}

/// The user's preferences.
#[tauri::command]
pub async fn get_settings(state: State<'_, AppState>) -> AppResult<settings::Settings> {
    let ctx = state.ctx()?;
    blocking(move || settings::load(&ctx)).await
}

/// Saves the user's preferences.
#[tauri::command]
pub async fn save_settings(state: State<'_, AppState>, value: settings::Settings) -> AppResult<()> {
    let ctx = state.ctx()?;
    blocking(move || settings::save(&ctx, &value)).await
}

/// Versions, licences, data folder, keyring status.
#[tauri::command]
pub fn about_info(state: State<'_, AppState>) -> AppResult<about::About> {
    let ctx = state.ctx()?;
    Ok(about::about(&ctx))
}

/// Library documents matching a query (all for an empty one).
#[tauri::command]
pub async fn knowledge_search(state: State<'_, AppState>, query: String) -> AppResult<Vec<DocumentSummary>> {
    let ctx = state.ctx()?;
    blocking(move || knowledge::search(&ctx, &query, 500)).await
}

/// One library document with its sections.
#[tauri::command]
pub async fn knowledge_document(state: State<'_, AppState>, id: String) -> AppResult<doctorglm_knowledge::Document> {
    let ctx = state.ctx()?;
    blocking(move || knowledge::document(&ctx, &id)).await
}

/// Starts importing documents as job `job_id` (chosen by the window); `progress` then `job-done`
/// events follow. Returns the job id.
#[tauri::command]
pub fn knowledge_import(app: AppHandle, state: State<'_, AppState>, path: String, job_id: String) -> AppResult<String> {
    let ctx = state.ctx()?;
    let cancel = state.register_job(&job_id)?;
    spawn_progress_job(app, job_id.clone(), |summary: &ImportSummary| summary.cancelled, move |report| {
        knowledge::import(&ctx, &PathBuf::from(path.trim()), report, &cancel)
    });
    Ok(job_id)
}

// ---- Fine-tuning (services::finetune). Training jobs report through the `finetune` event:
// `{ jobId, update }` with a `services::finetune::JobUpdate` (an event, then `done` or `error`).

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct FinetunePayload {
    job_id: String,
    update: finetune::JobUpdate,
}

/// An export file's format, columns, preview and suggested mapping.
#[tauri::command]
pub async fn finetune_inspect(path: String) -> AppResult<finetune::FileInspection> {
    blocking(move || finetune::inspect_file(&PathBuf::from(path.trim()), 5)).await
}

/// Starts preparing a dataset; returns the job id (`progress` then `job-done` with a `PrepareResult`).
#[tauri::command]
pub fn finetune_prepare(app: AppHandle, state: State<'_, AppState>, request: finetune::PrepareRequest) -> AppResult<String> {
    let ctx = state.ctx()?;
    let (job_id, cancel) = state.start_job();
    spawn_progress_job(app, job_id.clone(), |_| false, move |report| finetune::prepare(&ctx, &request, report, &cancel));
    Ok(job_id)
}

/// The paper's training settings, for the wizard's defaults.
#[tauri::command]
pub fn finetune_defaults() -> doctorglm_finetune::FinetuneSettings {
    finetune::default_settings()
}

fn spawn_training(app: AppHandle, state: &AppState, start: finetune::JobStart) -> AppResult<String> {
    let (job_id, _) = finetune::jobs().start(state.ctx()?, start, move |job_id, update| {
        if let Err(e) = app.emit("finetune", FinetunePayload { job_id: job_id.to_string(), update }) {
            tracing::warn!("could not send a fine-tuning event: {e}");
        }
    });
    Ok(job_id)
}

/// Starts a training job; returns its id (`finetune` events follow).
#[tauri::command]
pub fn finetune_start(app: AppHandle, state: State<'_, AppState>, request: finetune::TrainRequest) -> AppResult<String> {
    spawn_training(app, &state, finetune::JobStart::New(request))
}

/// Continues a job from the last checkpoint of its output folder; returns the new job id.
#[tauri::command]
pub fn finetune_resume_job(
    app: AppHandle,
    state: State<'_, AppState>,
    output: String,
    overrides: Option<finetune::ResumeOverrides>,
) -> AppResult<String> {
    let start = finetune::JobStart::Resume { output: PathBuf::from(output.trim()), overrides: overrides.unwrap_or_default() };
    spawn_training(app, &state, start)
}

/// Training runs that stopped before their end and can be continued.
#[tauri::command]
pub async fn finetune_unfinished(state: State<'_, AppState>) -> AppResult<Vec<finetune::UnfinishedRun>> {
    let ctx = state.ctx()?;
    blocking(move || finetune::unfinished_runs(&ctx)).await
}

/// Pauses a training job after its current step.
#[tauri::command]
pub fn finetune_pause(job_id: String) -> bool {
    finetune::jobs().pause(&job_id)
}

/// Lets a paused training job go on.
#[tauri::command]
pub fn finetune_continue(job_id: String) -> bool {
    finetune::jobs().resume(&job_id)
}

/// Cancels a training job (a resumable checkpoint is written first).
#[tauri::command]
pub fn finetune_cancel(job_id: String) -> bool {
    finetune::jobs().cancel(&job_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::test_support::snapshot;

    #[test]
    fn a_locked_store_opens_only_with_its_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let paths = AppPaths::under(dir.path());
        let pass = || Zeroizing::new("mein geheimes 口令".to_string());
        {
            let ctx = AppContext::open_with(paths.clone(), KeySource::Passphrase(pass())).unwrap();
            conversations::save_question(&ctx, None, "locked question").unwrap();
        }
        // No key in a key file or keyring: the window starts locked.
        let err = AppContext::open(dir.path()).err().unwrap();
        assert!(err.store_needs_key(), "{err}");
        let state = AppState::locked(paths, err.to_string(), Instant::now());
        assert!(matches!(state.ctx(), Err(AppError::Locked)));
        let lock = state.lock_state();
        assert!(lock.locked);
        assert!(lock.reason.unwrap().contains("key was not found"));
        let before = snapshot(dir.path());
        let err = state.unlock(Zeroizing::new("wrong".into())).unwrap_err();
        assert!(err.to_string().contains("wrong") && err.to_string().contains("Nothing was changed"), "{err}");
        assert!(state.lock_state().locked, "a wrong passphrase leaves the store locked");
        assert_eq!(snapshot(dir.path()), before, "a wrong passphrase changes no file");
        state.unlock(pass()).unwrap();
        assert!(!state.lock_state().locked);
        let ctx = state.ctx().unwrap();
        assert_eq!(conversations::list(&ctx, Some("locked")).unwrap().len(), 1);
        state.unlock(Zeroizing::new("anything".into())).unwrap();
        assert_eq!(state.lock_state(), LockState { locked: false, reason: None });
    }

    #[test]
    fn job_ids_from_the_window_are_checked_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let state = AppState::new(AppContext::open(dir.path()).unwrap(), Instant::now());
        let flag = state.register_job("job-1a_Z").unwrap();
        assert!(matches!(state.register_job("job-1a_Z"), Err(AppError::Invalid(_))), "an id in use is refused");
        for bad in ["", "a b", "../x", "job\u{e9}", &"x".repeat(101)] {
            assert!(matches!(state.register_job(bad), Err(AppError::Invalid(_))), "{bad:?} is refused");
        }
        // The registered flag is the one cancel_job reaches.
        state.jobs.lock().unwrap()["job-1a_Z"].cancel();
        assert!(flag.is_cancelled());
        state.jobs.lock().unwrap().remove("job-1a_Z");
        assert!(state.register_job("job-1a_Z").is_ok(), "a finished job's id can be used again");
    }
}
