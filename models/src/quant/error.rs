//! Errors of the quantization module.

/// What went wrong while quantizing, multiplying or caching quantized weights.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// A row length is not a whole number of quantization blocks.
    #[error("a row of {cols} weights cannot be split into {format} blocks of {block}; use a format with smaller blocks (Q8_0 or Q4_0 take multiples of 32)")]
    NotBlockMultiple {
        /// Row length.
        cols: usize,
        /// Weights per block of the format.
        block: usize,
        /// The format's name.
        format: &'static str,
    },
    /// The data handed in does not have the size the shape asks for.
    #[error("{what}: expected {expected} elements, got {got}")]
    Size {
        /// Which buffer.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// A weight is NaN or infinite, so it cannot be quantized.
    #[error("row {row} holds a non-finite weight; the checkpoint is damaged")]
    NonFinite {
        /// The row holding it.
        row: usize,
    },
    /// A weight is finite but beyond what F16 holds (±65504): it would become infinite.
    #[error("row {row} holds a weight beyond the F16 range (±65504); keep this model in f32 or a block format")]
    OutOfF16Range {
        /// The row holding it.
        row: usize,
    },
    /// An error from candle (tensor conversion, GGUF reading or writing).
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A cache or GGUF file exists but is not what we expect.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The caller cancelled the work.
    #[error("quantization cancelled")]
    Cancelled,
}

/// Result alias of the module.
pub type Result<T> = std::result::Result<T, QuantError>;
