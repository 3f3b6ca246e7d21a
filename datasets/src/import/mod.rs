//! Import of dialogue exports: inspect a file (format, encoding, columns, preview, suggested
//! mapping), then import it with a mapping into [`Dialogue`]s plus a list of rejected rows.

pub mod convert;
pub mod format;
pub mod mapping;
pub mod table;

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use format::FileFormat;
pub use mapping::{Layout, Mapping, Shape};
pub use table::{SourceRecord, SourceTable};

use crate::encoding::TextEncoding;
use crate::error::{DatasetError, Result};
use crate::progress::Control;
use crate::record::{Dialogue, Location};

/// A record that could not be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowIssue {
    /// Where it is in the file.
    pub location: Location,
    /// Why it was not imported.
    pub reason: String,
}

impl std::fmt::Display for RowIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.reason)
    }
}

/// How to read a file; the defaults detect everything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadOptions {
    /// Use this encoding instead of detecting one.
    #[serde(default)]
    pub encoding: Option<TextEncoding>,
    /// Use this format instead of detecting one.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// The spreadsheet sheet to read (default: the first).
    #[serde(default)]
    pub sheet: Option<String>,
    /// Records with a longer field are reported instead of imported.
    #[serde(default = "default_max_field_chars")]
    pub max_field_chars: usize,
}

fn default_max_field_chars() -> usize {
    100_000
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { encoding: None, format: None, sheet: None, max_field_chars: default_max_field_chars() }
    }
}

/// What a file looks like, for the mapping step of the wizard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inspection {
    /// The detected format.
    pub format: FileFormat,
    /// The detected text encoding (None for spreadsheets).
    pub encoding: Option<TextEncoding>,
    /// Column names or JSON keys.
    pub columns: Vec<String>,
    /// Records read.
    pub records: usize,
    /// Records that could not even be read (bad JSON line, wrong number of CSV fields).
    pub unreadable: Vec<RowIssue>,
    /// The first records, as (column, shortened text) pairs.
    pub preview: Vec<Vec<(String, String)>>,
    /// The recognised layout and the mapping it suggests, when one was recognised.
    pub suggested: Option<(Layout, Mapping)>,
    /// Remarks for the user (for example a file named `.csv` that holds JSON).
    pub notes: Vec<String>,
}

/// The result of an import: dialogues and every record that was not imported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportOutcome {
    /// The format read.
    pub format: FileFormat,
    /// The text encoding (None for spreadsheets).
    pub encoding: Option<TextEncoding>,
    /// Records in the file (imported + rejected).
    pub records: usize,
    /// The imported dialogues, in file order.
    pub dialogues: Vec<Dialogue>,
    /// The rejected records, in file order, each with its line or row and the reason.
    pub rejected: Vec<RowIssue>,
}

/// Reads a file from disk into a [`SourceTable`].
pub fn read_file(path: &Path, options: &ReadOptions, control: &mut Control<'_>) -> Result<SourceTable> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Read { path: path.to_path_buf(), source })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    read_bytes(&name, &bytes, options, control).map(|(t, _)| t)
}

/// Reads in-memory bytes named `name` (the name is a format hint) into a [`SourceTable`], with notes.
pub fn read_bytes(
    name: &str,
    bytes: &[u8],
    options: &ReadOptions,
    control: &mut Control<'_>,
) -> Result<(SourceTable, Vec<String>)> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DatasetError::Empty);
    }
    let (sniffed, note) = format::sniff(name, bytes);
    let format = options.format.unwrap_or(sniffed);
    let table = table::read(bytes, format, options.encoding, options.sheet.as_deref(), options.max_field_chars, control)?;
    tracing::info!(name, ?format, encoding = ?table.encoding, records = table.records.len(), issues = table.issues.len(), "export read");
    Ok((table, note.into_iter().collect()))
}

/// Describes a table for the mapping step: columns, a preview of `preview_rows`, a suggestion.
pub fn inspect_table(table: &SourceTable, notes: Vec<String>, preview_rows: usize) -> Inspection {
    let preview = table
        .records
        .iter()
        .take(preview_rows)
        .map(|r| {
            table
                .columns
                .iter()
                .map(|c| (c.clone(), preview_text(r.fields.get(c).unwrap_or(&Value::Null))))
                .collect()
        })
        .collect();
    let sample_end = table.records.len().min(50);
    let suggested = mapping::suggest(&table.columns, &table.records[..sample_end]);
    let mut notes = notes;
    if suggested.is_none() {
        notes.push("no question and answer columns were recognised: choose them by hand".into());
    }
    Inspection {
        format: table.format,
        encoding: table.encoding,
        columns: table.columns.clone(),
        records: table.records.len() + table.issues.len(),
        unreadable: table.issues.clone(),
        preview,
        suggested,
        notes,
    }
}

fn preview_text(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut out: String = s.chars().take(200).collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// Inspects a file on disk.
pub fn inspect(path: &Path, options: &ReadOptions, preview_rows: usize, control: &mut Control<'_>) -> Result<Inspection> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Read { path: path.to_path_buf(), source })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (table, notes) = read_bytes(&name, &bytes, options, control)?;
    Ok(inspect_table(&table, notes, preview_rows))
}

/// Applies a mapping to a table: every record becomes a dialogue or a [`RowIssue`].
pub fn import_table(table: &SourceTable, mapping: &Mapping, control: &mut Control<'_>) -> Result<ImportOutcome> {
    for column in mapping.columns() {
        if !table.columns.iter().any(|c| c == column) {
            return Err(DatasetError::Mapping(format!(
                "the file has no column '{column}' (its columns are: {})",
                table.columns.join(", ")
            )));
        }
    }
    let total = table.records.len();
    let mut dialogues = Vec::with_capacity(total);
    let mut rejected = table.issues.clone();
    for (i, record) in table.records.iter().enumerate() {
        control.tick(i + 1, Some(total))?;
        match convert::convert(record, mapping) {
            Ok(d) => dialogues.push(d),
            Err(reason) => rejected.push(RowIssue { location: record.location, reason }),
        }
    }
    control.finish(total, Some(total))?;
    rejected.sort_by_key(|r| match r.location {
        Location::Line(n) | Location::Row(n) => n,
    });
    Ok(ImportOutcome {
        format: table.format,
        encoding: table.encoding,
        records: total + table.issues.len(),
        dialogues,
        rejected,
    })
}

/// Reads and imports a file on disk with `mapping` (None: the suggested mapping).
pub fn import(
    path: &Path,
    mapping: Option<&Mapping>,
    options: &ReadOptions,
    control: &mut Control<'_>,
) -> Result<ImportOutcome> {
    let table = read_file(path, options, control)?;
    let suggested;
    let mapping = match mapping {
        Some(m) => m,
        None => {
            suggested = mapping::suggest(&table.columns, &table.records[..table.records.len().min(50)])
                .ok_or_else(|| DatasetError::Mapping("no question and answer columns were recognised; choose them".into()))?
                .1;
            &suggested
        }
    };
    import_table(&table, mapping, control)
}
