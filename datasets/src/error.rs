//! The error type of the datasets crate: every message says what went wrong and what to do.

use std::path::PathBuf;

/// Everything that can stop an import, a de-identification run or the writing of a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be read from disk.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A file of the prepared dataset could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The file holds no bytes (or only a byte-order mark / whitespace).
    #[error("the file is empty: export the records again and check that the export finished")]
    Empty,
    /// The bytes are not text in any encoding an export uses (a binary file, an image, a database).
    #[error("this is not a text export (binary data at byte {offset}); choose a CSV, XLSX, JSON or JSONL file")]
    Binary {
        /// Offset of the first byte that gave it away.
        offset: usize,
    },
    /// The text could not be decoded with the chosen or detected encoding.
    #[error("the text is not valid {encoding} (first bad byte at offset {offset}, line {line}){hint}")]
    Decode {
        /// The encoding that was tried.
        encoding: String,
        /// Byte offset of the first undecodable sequence.
        offset: usize,
        /// 1-based line of that byte.
        line: usize,
        /// A suggestion (for example the encoding the bytes look like), with a leading separator.
        hint: String,
    },
    /// The file format could not be recognised.
    #[error("unrecognised file format: {0}")]
    UnknownFormat(String),
    /// A JSON file is not valid JSON as a whole (for example truncated).
    #[error("invalid JSON at line {line}, column {column}: {message} (is the file complete?)")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde_json reported.
        message: String,
    },
    /// The JSON holds no list of records.
    #[error("the JSON file holds no list of records: {0}")]
    JsonShape(String),
    /// A spreadsheet could not be opened or read.
    #[error("cannot read the spreadsheet: {0}")]
    Spreadsheet(String),
    /// A CSV file could not be read as a whole (its header, for example).
    #[error("cannot read the CSV file: {0}")]
    Csv(String),
    /// The column mapping names a column that the file does not have, or misses a required one.
    #[error("column mapping: {0}")]
    Mapping(String),
    /// The user cancelled the job.
    #[error("cancelled")]
    Cancelled,
    /// Settings that cannot work together (for example a validation fraction of 1.5).
    #[error("invalid settings: {0}")]
    Settings(String),
    /// The prepared dataset on disk is damaged.
    #[error("the prepared dataset at {path} is damaged: {message}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Result with [`DatasetError`].
pub type Result<T> = std::result::Result<T, DatasetError>;
