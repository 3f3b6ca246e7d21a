//! The app's services: plain Rust functions that do the work. The Tauri commands
//! (`crate::commands`) and the CLI (`crate::cli`) both call these and nothing else, so the
//! window and the terminal always behave the same.
//!
//! Module map:
//! - `context`: `AppContext` (data folder, shared state) and progress/cancellation types;
//! - `inspect`: reads a model or adapter folder and checks it (architecture, size, memory need);
//! - `registry`: the imported models and adapters (kept in the store);
//! - `models`: import/list/remove models and adapters (with progress and cancel);
//! - `conversations`: conversations and messages in the encrypted store (`crate::store`),
//!   full-text search with snippets, audited export;
//! - `generation`: generation settings and presets;
//! - `engine`: loading a model and streaming its answer (`Backend`); `engine_candle`: the
//!   backend over the engine crate (`doctorglm-models`);
//! - `designer`: the bridge to the prompt designer (`doctorglm-knowledge`);
//! - `knowledge`: browse, search and import the disease library;
//! - `chat`: one question → designer → engine → saved answer, streamed;
//! - `finetune`: the fine-tuning wizard's steps (inspect, prepare, train/resume in the
//!   background with pause/resume/cancel, adapter registered);
//! - `settings`: interface language, device and other preferences;
//! - `about`: versions, licences, keyring status;
//! - `storage`: the store's status (where its key is kept), backup and restore;
//! - `legacy`: one-time import of the interim JSON files into the store;
//! - `jsonfile`: atomic JSON files (fine-tuning job files beside their checkpoints).
pub mod about;
pub mod chat;
pub mod context;
pub mod conversations;
pub mod designer;
pub mod engine;
pub mod engine_candle;
pub mod finetune;
pub mod generation;
pub mod inspect;
pub mod jsonfile;
pub mod knowledge;
pub mod legacy;
pub mod models;
pub mod registry;
pub mod settings;
pub mod storage;

pub use context::{AppContext, CancelFlag, Progress};
