//! DoctorGLM Desktop application crate.
//!
//! Module map:
//! - `services`: the work itself, as plain functions (models, conversations, chat, settings);
//! - `commands`: Tauri commands and events over `services` (the window's API; feature `desktop`);
//! - `app`: builds and runs the Tauri window (feature `desktop`);
//! - `cli`: the `doctorglm` subcommands, calling the same `services` functions;
//! - `error`: `AppError`, messages a person can act on;
//! - `resources`: where an installed app finds the files its installer put beside it (starter library);
//! - `store`: the encrypted conversation store (SQLCipher), its key, paths, backup and search.
#[cfg(feature = "desktop")]
pub mod app;
pub mod cli;
#[cfg(feature = "desktop")]
pub mod commands;
#[cfg(feature = "app")]
pub mod error;
pub mod resources;
#[cfg(feature = "app")]
pub mod services;
pub mod store;
