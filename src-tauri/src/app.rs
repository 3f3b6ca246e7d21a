//! The desktop window: builds the Tauri app with its state and commands and runs it.
use crate::commands::{self, AppState};
use crate::services::AppContext;
use std::time::Instant;

/// Opens the store and the main window. Where the store's key is not found (a store made
/// with a passphrase, no key in the keyring or key file) or the given passphrase is wrong, the
/// window opens locked and asks for the passphrase (`store_lock`, `unlock_store`).
pub fn open_and_run(started: Instant) -> anyhow::Result<()> {
    let paths = crate::store::AppPaths::resolve(None)?;
    match AppContext::open_with(paths.clone(), crate::services::context::default_key_source()) {
        Ok(ctx) => run_state(AppState::new(ctx, started)),
        Err(e) if e.store_needs_key() => {
            tracing::warn!(error = %e, "store key not found: the window asks for the passphrase");
            run_state(AppState::locked(paths, e.to_string(), started))
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens the main window and runs until it is closed; `started` is when the process began.
pub fn run(ctx: AppContext, started: Instant) -> anyhow::Result<()> {
    run_state(AppState::new(ctx, started))
}

/// Opens the main window over `state` and runs until it is closed.
pub fn run_state(state: AppState) -> anyhow::Result<()> {
    tauri::Builder::default()
        .manage(state)
        .invoke_handler(tauri::generate_handler![
            commands::ui_ready,
            commands::send_message,
            commands::regenerate,
            commands::cancel_job,
            commands::list_conversations,
            commands::get_conversation,
            commands::delete_conversation,
            commands::export_conversation,
            commands::rename_conversation,
            commands::store_status,
            commands::store_lock,
            commands::unlock_store,
            commands::list_models,
            commands::import_model,
            commands::check_model,
            commands::import_adapter,
            commands::remove_model,
            commands::presets,
            commands::get_settings,
            commands::save_settings,
            commands::about_info,
            commands::knowledge_search,
            commands::knowledge_document,
            commands::knowledge_import,
            commands::finetune_inspect,
            commands::finetune_prepare,
            commands::finetune_defaults,
            commands::finetune_start,
            commands::finetune_resume_job,
            commands::finetune_unfinished,
            commands::finetune_pause,
            commands::finetune_continue,
            commands::finetune_cancel,
        ])
        .run(tauri::generate_context!())
        .map_err(|e| anyhow::anyhow!("the window could not start: {e}"))
}
