//! The Knowledge tab's services: browse and search the disease library (the starter library
//! plus the user's own), read a document, import documents (with progress, cancellable) into
//! the user's library (`knowledge-library` in the data folder, never the starter library).
use super::{AppContext, CancelFlag, Progress};
use crate::error::{AppError, AppResult};
use doctorglm_knowledge::import::import_path;
use doctorglm_knowledge::{CancelToken, Document};
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

fn summary(d: &Document) -> DocumentSummary {
    DocumentSummary { id: d.id.clone(), name: d.name.clone(), name_en: d.name_en.clone(), department: d.department.clone(), sections: d.sections.len() }
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

/// Documents of the starter and user libraries for `query`: the search index's hits first
/// (names and aliases count most; any language), then documents whose names, aliases,
/// symptoms or department contain every word. An empty query lists all documents by name.
pub fn search(ctx: &AppContext, query: &str, limit: usize) -> AppResult<Vec<DocumentSummary>> {
    super::designer::with_designer(ctx, |designer| {
        let library = designer.library();
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        if words.is_empty() {
            let mut all: Vec<DocumentSummary> = library.documents().map(summary).collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            all.truncate(limit);
            return Ok(all);
        }
        let mut out: Vec<DocumentSummary> = Vec::new();
        if let Some(index) = designer.index() {
            let hits = index.search(query, limit).map_err(|e| AppError::Designer(e.to_string()))?;
            out.extend(hits.iter().filter_map(|h| library.get(&h.id)).map(summary));
        }
        let mut rest: Vec<DocumentSummary> =
            library.documents().filter(|d| matches(d, &words) && !out.iter().any(|o| o.id == d.id)).map(summary).collect();
        rest.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(rest);
        out.truncate(limit);
        Ok(out)
    })?
}

/// One document with its sections.
pub fn document(ctx: &AppContext, id: &str) -> AppResult<Document> {
    super::designer::with_designer(ctx, |d| d.library().get(id).cloned())?.ok_or_else(|| AppError::NotFound(format!("document {id}")))
}

/// Imports a file or folder into the user's library; the designer reloads the libraries and
/// updates the index incrementally on the next question or search. Cancelling stops between
/// documents; each document file is written whole or not at all.
pub fn import(ctx: &AppContext, path: &std::path::Path, progress: &dyn Fn(Progress), cancel: &CancelFlag) -> AppResult<ImportSummary> {
    let mut library = super::designer::load_library(ctx)?;
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
    super::designer::invalidate(ctx);
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
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let all = search(&ctx, "", 10_000).unwrap();
        assert!(all.len() > 50, "{}", all.len());
        let hits = search(&ctx, "高血压", 50).unwrap();
        assert_eq!(hits[0].id, "hypertension", "{hits:?}");
        assert!(hits.len() < all.len());
        let hits = search(&ctx, "hypertension", 50).unwrap();
        assert!(hits.iter().any(|h| h.id == "hypertension"), "English names are searched: {hits:?}");
        let doc = document(&ctx, "hypertension").unwrap();
        assert!(!doc.sections.is_empty());
        assert!(matches!(document(&ctx, "no-such-disease"), Err(AppError::NotFound(_))));
    }

    #[test]
    fn imports_go_to_the_user_library_and_are_searched() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let before = search(&ctx, "", 100_000).unwrap().len();
        let src = tempfile::tempdir().unwrap();
        let file = src.path().join("wilson.md");
        std::fs::write(&file, "# 肝豆状核变性\n\n## 症状\n\n角膜色素环，震颤，肝功能异常。\n").unwrap();
        let starter = crate::cli::knowledge::default_library_dir();
        let starter_files = walk(&starter);
        let summary = import(&ctx, &file, &|_| {}, &CancelFlag::new()).unwrap();
        assert_eq!(summary.imported, vec!["肝豆状核变性"], "{summary:?}");
        assert_eq!(walk(&starter), starter_files, "the starter library is never written");
        assert_eq!(walk(&super::super::designer::user_library_dir(&ctx)).len(), 1);
        assert_eq!(search(&ctx, "", 100_000).unwrap().len(), before + 1);
        let hits = search(&ctx, "肝豆状核变性", 5).unwrap();
        assert_eq!(hits[0].name, "肝豆状核变性", "{hits:?}");
        // Importing again skips the document (never overwritten).
        let again = import(&ctx, &file, &|_| {}, &CancelFlag::new()).unwrap();
        assert!(again.imported.is_empty() && again.skipped.len() == 1, "{again:?}");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .flat_map(|p| if p.is_dir() { walk(&p) } else { vec![p] })
            .collect();
        v.sort();
        v
    }
}
