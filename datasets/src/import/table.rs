//! Readers that turn a CSV, XLSX, JSON or JSONL export into a table of source records.

use std::io::Cursor;

use calamine::{Data, Reader};
use serde_json::{value::RawValue, Map, Value};

use super::format::FileFormat;
use super::RowIssue;
use crate::encoding::{self, TextEncoding};
use crate::error::{DatasetError, Result};
use crate::progress::Control;
use crate::record::Location;

/// One record of the source file: its fields by name, and where it starts.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    /// Where the record starts in the file.
    pub location: Location,
    /// Field values (strings for CSV/XLSX; any JSON for JSON/JSONL).
    pub fields: Map<String, Value>,
}

/// A whole file read into records, with the records that could not be read.
#[derive(Debug, Clone)]
pub struct SourceTable {
    /// The format it was read as.
    pub format: FileFormat,
    /// The text encoding (None for spreadsheets).
    pub encoding: Option<TextEncoding>,
    /// Column names (header order for CSV/XLSX; first-seen order of keys for JSON).
    pub columns: Vec<String>,
    /// The records read.
    pub records: Vec<SourceRecord>,
    /// Records that could not be read, with the reason.
    pub issues: Vec<RowIssue>,
}

/// Reads `bytes` as `format`; `forced` overrides encoding detection.
pub(crate) fn read(
    bytes: &[u8],
    format: FileFormat,
    forced: Option<TextEncoding>,
    sheet: Option<&str>,
    max_field_chars: usize,
    control: &mut Control<'_>,
) -> Result<SourceTable> {
    if bytes.is_empty() {
        return Err(DatasetError::Empty);
    }
    let mut table = if format == FileFormat::Xlsx {
        read_spreadsheet(bytes, sheet, control)?
    } else {
        let (text, enc) = match forced {
            Some(enc) => (encoding::decode(bytes, enc)?, enc),
            None => encoding::decode_detected(bytes)?,
        };
        if text.trim().is_empty() {
            return Err(DatasetError::Empty);
        }
        let mut t = match format {
            FileFormat::Csv => read_csv(&text, control)?,
            FileFormat::Json => read_json(&text, control)?,
            FileFormat::Jsonl => read_jsonl(&text, control)?,
            FileFormat::Xlsx => unreachable_format()?,
        };
        t.encoding = Some(enc);
        t
    };
    enforce_field_limit(&mut table, max_field_chars);
    Ok(table)
}

fn unreachable_format() -> Result<SourceTable> {
    Err(DatasetError::UnknownFormat("spreadsheet bytes reached the text reader".into()))
}

/// Moves records with a field longer than `max` characters to the issues.
fn enforce_field_limit(table: &mut SourceTable, max: usize) {
    let mut kept = Vec::with_capacity(table.records.len());
    for rec in table.records.drain(..) {
        let long = rec.fields.iter().find_map(|(k, v)| {
            let n = value_chars(v);
            (n > max).then(|| (k.clone(), n))
        });
        match long {
            Some((k, n)) => table.issues.push(RowIssue {
                location: rec.location,
                reason: format!("field '{k}' has {n} characters, over the limit of {max}; split or shorten it"),
            }),
            None => kept.push(rec),
        }
    }
    table.records = kept;
    table.issues.sort_by_key(|i| location_key(i.location));
}

fn location_key(l: Location) -> usize {
    match l {
        Location::Line(n) | Location::Row(n) => n,
    }
}

fn value_chars(v: &Value) -> usize {
    match v {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.iter().map(value_chars).sum(),
        Value::Object(o) => o.values().map(value_chars).sum(),
        _ => 0,
    }
}

fn sniff_delimiter(text: &str) -> u8 {
    let header = text.lines().next().unwrap_or("");
    let mut best = (b',', 0usize);
    for d in [b',', b'\t', b';', b'|'] {
        let n = header.bytes().filter(|&b| b == d).count();
        if n > best.1 {
            best = (d, n);
        }
    }
    best.0
}

fn read_csv(text: &str, control: &mut Control<'_>) -> Result<SourceTable> {
    let delimiter = sniff_delimiter(text);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| DatasetError::Csv(format!("header row: {e}")))?.clone();
    let columns: Vec<String> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| if h.trim().is_empty() { format!("column {}", i + 1) } else { h.trim().to_string() })
        .collect();
    if columns.len() < 2 {
        return Err(DatasetError::Csv(format!(
            "the header row has {} column; an export needs at least a question and an answer column",
            columns.len()
        )));
    }
    let mut records = Vec::new();
    let mut issues = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut n = 0usize;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                n += 1;
                control.tick(n, None)?;
                let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
                if record.len() != columns.len() {
                    if record.len() == 1 && record.get(0).is_some_and(|f| f.trim().is_empty()) {
                        continue; // a blank line
                    }
                    issues.push(RowIssue {
                        location: Location::Line(line),
                        reason: format!(
                            "row has {} fields, the header has {} (an unbalanced quote or a stray delimiter?)",
                            record.len(),
                            columns.len()
                        ),
                    });
                    continue;
                }
                let fields = columns
                    .iter()
                    .zip(record.iter())
                    .map(|(c, v)| (c.clone(), Value::String(v.to_string())))
                    .collect();
                records.push(SourceRecord { location: Location::Line(line), fields });
            }
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                issues.push(RowIssue { location: Location::Line(line), reason: format!("unreadable CSV row: {e}") });
                if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. } | csv::ErrorKind::Utf8 { .. }) {
                    break;
                }
            }
        }
    }
    control.finish(n, Some(n))?;
    Ok(SourceTable { format: FileFormat::Csv, encoding: None, columns, records, issues })
}

fn cell_text(cell: &Data) -> std::result::Result<String, String> {
    Ok(match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) => d.to_string(),
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => return Err(format!("the cell holds the spreadsheet error {e}")),
    })
}

fn read_spreadsheet(bytes: &[u8], sheet: Option<&str>, control: &mut Control<'_>) -> Result<SourceTable> {
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes.to_vec()))
        .map_err(|e| DatasetError::Spreadsheet(format!("{e} (is it a complete .xlsx/.xls file?)")))?;
    let range = match sheet {
        Some(name) => book
            .worksheet_range(name)
            .map_err(|e| DatasetError::Spreadsheet(format!("sheet '{name}': {e}")))?,
        None => book
            .worksheet_range_at(0)
            .ok_or_else(|| DatasetError::Spreadsheet("the workbook has no sheet".into()))?
            .map_err(|e| DatasetError::Spreadsheet(e.to_string()))?,
    };
    let (first_row, _) = range.start().unwrap_or((0, 0));
    let mut rows = range.rows();
    let header = rows.next().ok_or(DatasetError::Empty)?;
    let columns: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, c)| match cell_text(c) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => format!("column {}", i + 1),
        })
        .collect();
    let total = range.height().saturating_sub(1);
    let mut records = Vec::with_capacity(total);
    let mut issues = Vec::new();
    for (i, row) in rows.enumerate() {
        control.tick(i + 1, Some(total))?;
        let number = first_row as usize + i + 2;
        if row.iter().all(|c| matches!(c, Data::Empty)) {
            continue;
        }
        let mut fields = Map::new();
        let mut bad = None;
        for (col, cell) in columns.iter().zip(row.iter()) {
            match cell_text(cell) {
                Ok(s) => {
                    fields.insert(col.clone(), Value::String(s));
                }
                Err(reason) => {
                    bad = Some(format!("column '{col}': {reason}"));
                    break;
                }
            }
        }
        match bad {
            Some(reason) => issues.push(RowIssue { location: Location::Row(number), reason }),
            None => records.push(SourceRecord { location: Location::Row(number), fields }),
        }
    }
    control.finish(total, Some(total))?;
    Ok(SourceTable { format: FileFormat::Xlsx, encoding: None, columns, records, issues })
}

fn json_error(e: &serde_json::Error) -> DatasetError {
    DatasetError::Json { line: e.line(), column: e.column(), message: e.to_string() }
}

fn read_json(text: &str, control: &mut Control<'_>) -> Result<SourceTable> {
    let body = text.trim_start_matches('\u{feff}');
    let elements: Vec<&RawValue> = if body.trim_start().starts_with('[') {
        serde_json::from_str(body).map_err(|e| json_error(&e))?
    } else {
        let object: std::collections::BTreeMap<String, &RawValue> =
            serde_json::from_str(body).map_err(|e| json_error(&e))?;
        let (key, raw) = object
            .iter()
            .find(|(_, v)| v.get().trim_start().starts_with('['))
            .ok_or_else(|| DatasetError::JsonShape("the top-level object has no list in it".into()))?;
        tracing::debug!(key = key.as_str(), "records read from a list inside the top-level object");
        serde_json::from_str(raw.get()).map_err(|e| json_error(&e))?
    };
    let total = elements.len();
    if total == 0 {
        return Err(DatasetError::JsonShape("the list is empty: the export holds no records".into()));
    }
    let base = body.as_ptr() as usize;
    let bytes = body.as_bytes();
    let (mut line, mut scanned) = (1usize, 0usize);
    let mut records = Vec::with_capacity(total);
    let mut issues = Vec::new();
    let mut keys = KeyOrder::default();
    for (i, raw) in elements.into_iter().enumerate() {
        control.tick(i + 1, Some(total))?;
        let offset = (raw.get().as_ptr() as usize).saturating_sub(base).min(bytes.len());
        if offset >= scanned {
            line += bytes[scanned..offset].iter().filter(|&&b| b == b'\n').count();
            scanned = offset;
        }
        let location = Location::Line(line);
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Object(fields)) => {
                keys.add(&fields);
                records.push(SourceRecord { location, fields });
            }
            Ok(other) => issues.push(RowIssue {
                location,
                reason: format!("record {} is a {}, not an object with named fields", i + 1, kind_of(&other)),
            }),
            Err(e) => issues.push(RowIssue { location, reason: format!("invalid JSON: {e}") }),
        }
    }
    control.finish(total, Some(total))?;
    Ok(SourceTable { format: FileFormat::Json, encoding: None, columns: keys.columns, records, issues })
}

fn read_jsonl(text: &str, control: &mut Control<'_>) -> Result<SourceTable> {
    let mut records = Vec::new();
    let mut issues = Vec::new();
    let mut keys = KeyOrder::default();
    for (i, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        control.tick(i + 1, None)?;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let location = Location::Line(i + 1);
        match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Object(fields)) => {
                keys.add(&fields);
                records.push(SourceRecord { location, fields });
            }
            Ok(other) => issues.push(RowIssue {
                location,
                reason: format!("the line holds a {}, not an object with named fields", kind_of(&other)),
            }),
            Err(e) => issues.push(RowIssue {
                location,
                reason: format!("invalid JSON at column {}: {e}", e.column()),
            }),
        }
    }
    control.finish(records.len() + issues.len(), None)?;
    if records.is_empty() && !issues.is_empty() {
        let first = &issues[0];
        return Err(DatasetError::JsonShape(format!("no line is a JSON record ({}: {})", first.location, first.reason)));
    }
    Ok(SourceTable { format: FileFormat::Jsonl, encoding: None, columns: keys.columns, records, issues })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Keys in first-seen order (looked at in the first 1,000 records).
#[derive(Default)]
struct KeyOrder {
    columns: Vec<String>,
    seen: usize,
}

impl KeyOrder {
    fn add(&mut self, fields: &Map<String, Value>) {
        if self.seen >= 1000 {
            return;
        }
        self.seen += 1;
        for k in fields.keys() {
            if !self.columns.contains(k) {
                self.columns.push(k.clone());
            }
        }
    }
}
