//! Progress events of a job and the handle that pauses, resumes or cancels it from another thread.
use crate::probe::ProbeAnswer;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Pause/resume/cancel flags, shared (in an `Arc`) between the job and the app or CLI.
#[derive(Debug, Default)]
pub struct JobControl {
    pause: AtomicBool,
    cancel: AtomicBool,
}

impl JobControl {
    /// A control with nothing requested.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the job to pause after the current step.
    pub fn pause(&self) {
        self.pause.store(true, Ordering::SeqCst);
    }
    /// Lets a paused job go on.
    pub fn resume(&self) {
        self.pause.store(false, Ordering::SeqCst);
    }
    /// Asks the job to stop after the current step (it writes a checkpoint first).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
    /// Whether a pause is requested.
    pub fn is_paused(&self) -> bool {
        self.pause.load(Ordering::SeqCst)
    }
    /// Whether cancellation is requested.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

/// What a job reports while it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Training begins (or resumes at `start_step`).
    Started {
        /// Total optimizer steps planned.
        total_steps: usize,
        /// First step to run minus one (0 for a fresh run).
        start_step: usize,
        /// Training examples.
        train_examples: usize,
        /// Validation examples.
        validation_examples: usize,
        /// Dialogues skipped (no usable answer).
        skipped: usize,
    },
    /// One optimizer step is done.
    Step {
        /// Steps done.
        step: usize,
        /// Total steps planned.
        total_steps: usize,
        /// Epoch (0-based).
        epoch: usize,
        /// Training loss of the step.
        loss: f32,
        /// Learning rate used.
        lr: f64,
        /// Training tokens per second (recent average).
        tokens_per_sec: f64,
        /// Estimated seconds left.
        eta_secs: f64,
    },
    /// An evaluation is done.
    Evaluation {
        /// Steps done.
        step: usize,
        /// Validation loss.
        validation_loss: Option<f64>,
        /// Whether this is the best so far (the best adapter was updated).
        best: bool,
        /// Probe answers.
        probe: Vec<ProbeAnswer>,
        /// Whether a probe answer looks collapsed.
        collapse: bool,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Steps done.
        step: usize,
        /// Its folder.
        dir: PathBuf,
    },
    /// The job is paused.
    Paused,
    /// The job goes on after a pause.
    Resumed,
}
