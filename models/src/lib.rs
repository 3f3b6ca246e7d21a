//! DoctorGLM engine: the ChatGLM family on candle.
//!
//! Module map (filled in as modules land):
//! - `error`: the crate's error type.
//! - `sampling`: next-token choice (repetition penalty, n-gram ban, temperature, top-k, top-p, seeded draw, presets).
//! - `train`: LoRA training (loss, AdamW/Lion, clipping, schedules).

pub mod sampling;
pub mod train;
