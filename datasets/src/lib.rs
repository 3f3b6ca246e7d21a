//! DoctorGLM fine-tuning data: everything between a hospital's export and the training loop.
//!
//! Module map:
//! - [`encoding`]: detect and decode UTF-8 (± BOM), GB18030/GBK, UTF-16.
//! - [`import`]: inspect a CSV / XLSX / JSON / JSONL export (format, columns, preview,
//!   suggested mapping), then import it with a [`import::Mapping`] into [`Dialogue`]s;
//!   malformed rows come back as [`import::RowIssue`]s with their line or row.
//! - [`deid`]: de-identification (names, resident ID numbers, phones, addresses, birth dates,
//!   medical record numbers, emails) with a report for review; [`deid::synthetic`] makes the
//!   labelled corpus that measures it.
//! - [`clean`]: length filters, exact and near-duplicate removal, seeded train/validation split,
//!   token-length histograms.
//! - [`prepared`]: the [`prepared::PreparedDataset`] written as JSONL plus a manifest.
//! - [`record`], [`progress`], [`error`]: the common record, progress/cancel, the error type.
//!
//! The crate depends on neither the engine nor the app: data preparation is pure and testable alone.

pub mod clean;
pub mod deid;
pub mod encoding;
pub mod error;
pub mod import;
pub mod prepared;
pub mod progress;
pub mod record;

pub use error::{DatasetError, Result};
pub use progress::{Control, Progress};
pub use record::{Dialogue, Location, Turn};
