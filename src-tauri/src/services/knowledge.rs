//! The Knowledge tab's services: browse and search the disease library, read a document,
//! import documents (with progress, cancellable) into the library the designer uses.
use super::{AppContext, CancelFlag, Progress};
use crate::error::{AppError, AppResult};
use doctorglm_knowledge::import::import_path;
use doctorglm_knowledge::{CancelToken, Document, Library};
use serde::Serialize;

/// A document in a list.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DocumentSummary {
    /// Document id.
    pub id: String,
    /// Disease name.
    pub name: String,
    /// English name, if known.
    pub name_en: Option<String>,
    /// Department.
    pub department: Option<String>,
    /// Number of sections.
    pub sections: usize,
}

/// What an import did.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImportSummary {
    /// Names of the documents added.
    pub imported: Vec<String>,
    /// Items skipped, with reasons.
    pub skipped: Vec<String>,
    /// Files read.
    pub files: usize,
    /// Whether it stopped early.
    pub cancelled: bool,
}

fn load() -> AppResult<Library> {
    let dir = crate::cli::knowledge::default_library_dir();
    Library::load(&dir).map_err(|e| AppError::Designer(format!("cannot load the library at {}: {e}", dir.display())))
}

fn matches(doc: &Document, words: &[String]) -> bool {
    let hay = format!(
        "{} {} {} {} {}",
        doc.name,
        doc.name_en.as_deref().unwrap_or(""),
        doc.aliases.join(" "),
        doc.symptoms.join(" "),
        doc.department.as_deref().unwrap_or("")
    )
    .to_lowercase();
    words.iter().all(|w| hay.contains(w.as_str()))
}

/// Documents whose names, aliases, symptoms or department contain every word of `query`
/// (all documents for an empty query), by name.
pub fn search(query: &str, limit: usize) -> AppResult<Vec<DocumentSummary>> {
    let library = load()?;
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let mut out: Vec<DocumentSummary> = library
        .documents()
        .filter(|d| matches(d, &words))
        .map(|d| DocumentSummary {
            id: d.id.clone(),
            name: d.name.clone(),
            name_en: d.name_en.clone(),
            department: d.department.clone(),
            sections: d.sections.len(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.truncate(limit);
    Ok(out)
}

/// One document with its sections.
pub fn document(id: &str) -> AppResult<Document> {
    load()?.get(id).cloned().ok_or_else(|| AppError::NotFound(format!("document {id}")))
}

/// Imports a file or folder into the library; the designer reloads it on the next question.
pub fn import(ctx: &AppContext, path: &std::path::Path, progress: &dyn Fn(Progress), cancel: &CancelFlag) -> AppResult<ImportSummary> {
    let mut library = load()?;
    let token = CancelToken::new();
    let report = import_path(
        &mut library,
        path,
        &mut |p: doctorglm_knowledge::Progress| {
            if cancel.is_cancelled() {
                token.cancel();
            }
            let fraction = p.total.map(|t| p.done as f32 / t.max(1) as f32).unwrap_or(0.5);
            progress(Progress::new(fraction, p.message));
        },
        &token,
    )
    .map_err(|e| AppError::Designer(e.to_string()))?;
    *ctx.designer.lock().unwrap_or_else(|p| p.into_inner()) = None;
    Ok(ImportSummary {
        imported: report.imported.iter().map(|i| i.name.clone()).collect(),
        skipped: report.skipped.iter().map(|s| format!("{}: {}", s.location, s.reason)).collect(),
        files: report.files.len(),
        cancelled: report.cancelled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browse_and_search_the_starter_library() {
        let all = search("", 10_000).unwrap();
        assert!(all.len() > 50, "{}", all.len());
        let hits = search("高血压", 50).unwrap();
        assert!(hits.iter().any(|h| h.id == "hypertension"), "{hits:?}");
        assert!(hits.len() < all.len());
        let doc = document("hypertension").unwrap();
        assert!(!doc.sections.is_empty());
        assert!(matches!(document("no-such-disease"), Err(AppError::NotFound(_))));
    }
}
