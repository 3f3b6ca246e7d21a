//! The desktop window: builds the Tauri app with its state and commands and runs it.
use crate::commands::{self, AppState};
use crate::services::AppContext;
use std::time::Instant;

/// Opens the main window and runs until it is closed; `started` is when the process began.
pub fn run(ctx: AppContext, started: Instant) -> anyhow::Result<()> {
    tauri::Builder::default()
        .manage(AppState::new(ctx, started))
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
