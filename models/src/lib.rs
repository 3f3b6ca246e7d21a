//! DoctorGLM engine: the ChatGLM family on candle.
//!
//! Module map (filled in as modules land):
//! - `error`: the crate's error type.
