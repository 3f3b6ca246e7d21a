//! DoctorGLM fine-tuning job runner: the loop the app and the CLI both call to train a LoRA
//! adapter on a prepared dialogue dataset, on top of the engine's trainer
//! (`doctorglm_models::train`).
//!
//! Module map:
//! - [`settings`]: [`FinetuneSettings`] (paper defaults: Lion 2e-5, batch 4, 1 epoch, r 8,
//!   alpha 16 on `query_key_value`, max source 512, max target 100).
//! - [`encode`]: a dialogue → ids in the model's chat format with labels (-100 on the prompt).
//! - [`batches`]: seeded per-epoch data order and padded micro-batches.
//! - [`probe`]: general questions answered greedily at each evaluation; collapse flags.
//! - [`checkpoint`]: crash-safe checkpoints (temporary folder, fsync, atomic rename) and the
//!   runner's own state (epoch, position in the data order, best loss, history).
//! - [`events`]: progress events and the pause/resume/cancel [`JobControl`].
//! - [`summary`]: the `training_summary.json` file.
//! - [`runner`]: [`run`], the job itself.
//! - [`error`]: the crate's error type.

pub mod batches;
pub mod checkpoint;
pub mod encode;
pub mod error;
pub mod events;
pub mod probe;
pub mod runner;
pub mod settings;
pub mod summary;

pub use error::FinetuneError;
pub use events::{Event, JobControl};
pub use runner::{run, FinetuneJob, Outcome, StopReason, TrainingData};
pub use settings::{BaseQuantization, ComputeDtype, FinetuneSettings, OptimizerKind};
