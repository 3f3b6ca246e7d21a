//! DoctorGLM Desktop application crate.
//!
//! Module map:
//! - `cli`: the `doctorglm` subcommands (same functions the Tauri commands call).
pub mod cli;
