//! Importers: turn files of other formats into library documents, with a report of what was
//! imported and what was skipped (and why), progress reports and cancellation.
//!
//! Formats: Markdown / plain text ([`markdown`]), QASystemOnMedicalKG JSON lines
//! ([`qasystem`]), 39.net-style and ChatDoctor-style CSV tables ([`csv_table`]), MedQuAD XML
//! ([`medquad`]), MSD-manual-style HTML pages ([`html`]). Every file is decoded with
//! [`crate::encoding::decode`] first.
pub mod csv_table;
pub mod html;
pub mod markdown;
pub mod medquad;
pub mod qasystem;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::document::{is_valid_id, Document, Section, SectionKind};
use crate::error::{KnowledgeError, Result};
use crate::library::{hash_hex, Library};
use crate::progress::{CancelToken, Progress, ProgressSink};

/// Largest file an importer reads (bigger files are refused with a message).
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Largest single record (a JSON line, a CSV row); longer ones are skipped with a reason.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// The formats the importers understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Markdown, with or without library front matter, or plain text.
    Markdown,
    /// QASystemOnMedicalKG `medical.json`: one JSON object a line.
    QaSystemJsonl,
    /// A CSV table of diseases (39.net or ChatDoctor columns).
    Csv,
    /// A MedQuAD XML document.
    MedQuadXml,
    /// An HTML page split by its section headings (MSD manual style).
    Html,
}

impl Format {
    /// Guesses the format from the extension, then from the first bytes of the text.
    pub fn detect(path: &Path, text: &str) -> Option<Format> {
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let head = text.trim_start_matches('\u{feff}').trim_start();
        match ext.as_str() {
            "md" | "markdown" | "txt" | "text" => Some(Format::Markdown),
            "jsonl" | "ndjson" => Some(Format::QaSystemJsonl),
            "json" if head.starts_with('{') => Some(Format::QaSystemJsonl),
            "csv" | "tsv" => Some(Format::Csv),
            "xml" => Some(Format::MedQuadXml),
            "html" | "htm" | "xhtml" => Some(Format::Html),
            _ => {
                let lower: String = head.chars().take(200).collect::<String>().to_ascii_lowercase();
                if lower.starts_with("<?xml") && lower.contains("<document") {
                    Some(Format::MedQuadXml)
                } else if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
                    Some(Format::Html)
                } else if head.starts_with('{') {
                    Some(Format::QaSystemJsonl)
                } else if head.starts_with("---") || head.starts_with('#') {
                    Some(Format::Markdown)
                } else {
                    None
                }
            }
        }
    }

    /// Library sub-folder that documents imported from this format go to.
    pub fn folder(self) -> &'static str {
        match self {
            Format::Markdown => "imported/markdown",
            Format::QaSystemJsonl => "imported/qasystem",
            Format::Csv => "imported/csv",
            Format::MedQuadXml => "imported/medquad",
            Format::Html => "imported/html",
        }
    }
}

/// One document written to the library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportedItem {
    /// Its id.
    pub id: String,
    /// The disease name.
    pub name: String,
    /// The file written.
    pub path: PathBuf,
}

/// One record not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedItem {
    /// Where it was: a file, "file:line N", "file:row N".
    pub location: String,
    /// Why it was skipped, in words.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// Documents written to the library.
    pub imported: Vec<ImportedItem>,
    /// Records or files skipped, with reasons.
    pub skipped: Vec<SkippedItem>,
    /// Files read, with the format and encoding found.
    pub files: Vec<FileSummary>,
    /// Whether the import stopped early because it was cancelled (what was written stays).
    pub cancelled: bool,
}

/// One file read by an import.
#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Its encoding.
    pub encoding: String,
}

/// A record parsed from a file: a document, or the reason it is not one.
pub type Parsed = std::result::Result<Document, SkippedItem>;

/// Reads and decodes a file, refusing huge ones.
pub fn read_text(path: &Path) -> Result<crate::encoding::Decoded> {
    let meta = std::fs::metadata(path).map_err(|e| KnowledgeError::io("read", path, e))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(KnowledgeError::UnsupportedFormat {
            path: path.to_path_buf(),
            reason: format!("file is {} MB; the importer reads at most {} MB a file — split it", meta.len() >> 20, MAX_FILE_BYTES >> 20),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| KnowledgeError::io("read", path, e))?;
    crate::encoding::decode(&bytes).map_err(|e| KnowledgeError::Encoding { path: path.to_path_buf(), reason: e.to_string() })
}

/// Parses one file into candidate documents (nothing is written).
pub fn parse_file(path: &Path) -> Result<(Format, crate::encoding::Decoded, Vec<Parsed>)> {
    let decoded = read_text(path)?;
    let format = Format::detect(path, &decoded.text).ok_or_else(|| KnowledgeError::UnsupportedFormat {
        path: path.to_path_buf(),
        reason: "unknown format: use .md/.txt, .jsonl (QASystemOnMedicalKG), .csv, .xml (MedQuAD) or .html".into(),
    })?;
    let loc = path.display().to_string();
    let records = match format {
        Format::Markdown => vec![markdown::parse(&decoded.text, path)],
        Format::QaSystemJsonl => qasystem::parse(&decoded.text, &loc),
        Format::Csv => csv_table::parse(&decoded.text, &loc).map_err(|reason| KnowledgeError::UnsupportedFormat {
            path: path.to_path_buf(),
            reason,
        })?,
        Format::MedQuadXml => vec![medquad::parse(&decoded.text, &loc)],
        Format::Html => vec![html::parse(&decoded.text, path)],
    };
    Ok((format, decoded, records))
}

/// Imports a file, or every file of a folder (recursively), into the library. Existing
/// documents are never overwritten: a clash is reported as skipped. Progress is reported per
/// record; cancelling stops at the next record and keeps what was written.
pub fn import_path(library: &mut Library, path: &Path, progress: &mut dyn ProgressSink, cancel: &CancelToken) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = walkdir::WalkDir::new(path)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .collect();
        v.sort();
        v
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        return Err(KnowledgeError::io("read", path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder")));
    };
    let single = files.len() == 1;
    let mut done = 0usize;
    for (fi, file) in files.iter().enumerate() {
        if cancel.is_cancelled() {
            report.cancelled = true;
            break;
        }
        let stem = file.file_stem().map(|s| s.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if !single && matches!(stem.as_str(), "license" | "licence" | "readme" | "copying" | "notice") {
            report.skipped.push(SkippedItem { location: file.display().to_string(), reason: "a licence or readme file, not a document".into() });
            progress.report(Progress { done: fi + 1, total: Some(files.len()), message: file.display().to_string() });
            continue;
        }
        let (format, decoded, records) = match parse_file(file) {
            Ok(x) => x,
            Err(e) if !single => {
                report.skipped.push(SkippedItem { location: file.display().to_string(), reason: e.to_string() });
                continue;
            }
            Err(e) => return Err(e),
        };
        report.files.push(FileSummary { path: file.clone(), format, encoding: decoded.encoding.to_string() });
        let total = if single { Some(records.len()) } else { Some(files.len()) };
        for record in records {
            if cancel.is_cancelled() {
                report.cancelled = true;
                break;
            }
            match record {
                Ok(doc) => {
                    let (id, name) = (doc.id.clone(), doc.name.clone());
                    match library.add(doc, format.folder()) {
                        Ok(path) => report.imported.push(ImportedItem { id, name, path }),
                        Err(reason) => report.skipped.push(SkippedItem { location: format!("{} ({name})", file.display()), reason }),
                    }
                }
                Err(skip) => report.skipped.push(skip),
            }
            if single {
                done += 1;
                progress.report(Progress { done, total, message: file.display().to_string() });
            }
        }
        if !single {
            progress.report(Progress { done: fi + 1, total, message: file.display().to_string() });
        }
    }
    tracing::info!(imported = report.imported.len(), skipped = report.skipped.len(), cancelled = report.cancelled, "import finished");
    Ok(report)
}

/// Makes a library id: a slug of `name` when it has ASCII letters, else `prefix-<hash>`.
pub fn make_id(prefix: &str, name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    let ascii_only = name.is_ascii();
    if !slug.is_empty() && ascii_only && slug.len() <= 80 {
        let id = format!("{prefix}-{slug}");
        if is_valid_id(&id) {
            return id;
        }
    }
    format!("{prefix}-{}", &hash_hex(name.as_bytes())[..10])
}

/// Whether the text has Chinese characters (used to set a document's language).
pub fn has_cjk(text: &str) -> bool {
    text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3400}'..='\u{4dbf}').contains(&c))
}

/// A section with the format's standard heading for a language.
pub fn section(kind: SectionKind, zh: bool, body: impl Into<String>) -> Section {
    Section { kind, heading: if zh { kind.heading_zh() } else { kind.heading_en() }.to_string(), body: body.into() }
}

/// Orders sections canonically (overview, causes, symptoms, ..., other) and drops empty ones.
pub fn tidy_sections(mut sections: Vec<Section>) -> Vec<Section> {
    sections.retain(|s| !s.body.trim().is_empty());
    sections.sort_by_key(|s| s.kind);
    sections
}

#[cfg(test)]
mod tests;
