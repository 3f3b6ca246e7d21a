//! Progress reports and cancellation for long work (importing, indexing).
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag that another thread (the UI, a Ctrl-C handler) sets to stop long work.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A new token, not cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the work to stop at the next item.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// One progress report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Items done so far.
    pub done: usize,
    /// Items in all, when known.
    pub total: Option<usize>,
    /// What is being worked on.
    pub message: String,
}

/// Receives progress reports; `()` ignores them.
pub trait ProgressSink {
    /// Called after each item.
    fn report(&mut self, progress: Progress);
}

impl ProgressSink for () {
    fn report(&mut self, _progress: Progress) {}
}

impl<F: FnMut(Progress)> ProgressSink for F {
    fn report(&mut self, progress: Progress) {
        self(progress)
    }
}
