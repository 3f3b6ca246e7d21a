//! Progress reports and cancellation for long work (large imports, de-identification).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{DatasetError, Result};

/// How far a job has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Units done (rows, records, dialogues).
    pub done: usize,
    /// Units in all, when known.
    pub total: Option<usize>,
}

/// What a caller hands to long work: an optional progress callback and an optional cancel flag.
#[derive(Default)]
pub struct Control<'a> {
    on_progress: Option<Box<dyn FnMut(Progress) + 'a>>,
    cancel: Option<&'a AtomicBool>,
    every: usize,
}

impl<'a> Control<'a> {
    /// No reports, no cancellation.
    pub fn none() -> Self {
        Control { on_progress: None, cancel: None, every: 256 }
    }

    /// Calls `f` as work proceeds (every 256 units and at the end).
    pub fn with_progress(mut self, f: impl FnMut(Progress) + 'a) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    /// Stops the work with [`DatasetError::Cancelled`] once `flag` is set.
    pub fn with_cancel(mut self, flag: &'a AtomicBool) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Reports `done` of `total` (throttled) and fails if cancelled.
    pub fn tick(&mut self, done: usize, total: Option<usize>) -> Result<()> {
        if self.every == 0 {
            self.every = 256;
        }
        if done.is_multiple_of(self.every) {
            self.check()?;
            if let Some(f) = self.on_progress.as_mut() {
                f(Progress { done, total });
            }
        }
        Ok(())
    }

    /// Reports the final count unconditionally.
    pub fn finish(&mut self, done: usize, total: Option<usize>) -> Result<()> {
        self.check()?;
        if let Some(f) = self.on_progress.as_mut() {
            f(Progress { done, total });
        }
        Ok(())
    }

    /// Fails with [`DatasetError::Cancelled`] when the cancel flag is set.
    pub fn check(&self) -> Result<()> {
        match self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(DatasetError::Cancelled),
            _ => Ok(()),
        }
    }
}
