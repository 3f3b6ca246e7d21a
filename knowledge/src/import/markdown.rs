//! Markdown and plain-text files: a library document (front matter) is taken as is; other
//! Markdown is split at its `## ` headings, titled by its `# ` heading or the file name.
use std::path::Path;

use super::{has_cjk, make_id, tidy_sections, Parsed, SkippedItem};
use crate::document::{is_valid_id, parse_sections, split_front_matter, Document};

/// Parses one Markdown or text file.
pub fn parse(text: &str, path: &Path) -> Parsed {
    let loc = path.display().to_string();
    let skip = |reason: String| SkippedItem { location: loc.clone(), reason };
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let text = text.trim_start_matches('\u{feff}');
    if split_front_matter(text).is_some() {
        let fallback = if is_valid_id(&stem) { stem.clone() } else { make_id("md", &stem) };
        let mut doc = Document::parse_markdown(text, &fallback).map_err(skip)?;
        if doc.source.is_empty() {
            doc.source = format!("imported from {}", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        }
        return Ok(doc);
    }
    if text.trim().is_empty() {
        return Err(skip("the file is empty".into()));
    }
    let title = text
        .lines()
        .find_map(|l| l.strip_prefix("# ").map(|t| t.trim().to_string()))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| stem.clone());
    if title.is_empty() {
        return Err(skip("no title: add a `# Name` line".into()));
    }
    let sections = tidy_sections(parse_sections(text));
    if sections.is_empty() {
        return Err(skip("no text besides the title".into()));
    }
    let zh = has_cjk(text);
    Ok(Document {
        id: make_id("md", &title),
        name: title,
        name_en: None,
        aliases: vec![],
        department: None,
        symptoms: vec![],
        language: if zh { "zh" } else { "en" }.into(),
        source: format!("imported from {}", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
        attribution: "Imported by a user; verify before clinical use.".into(),
        sections,
    })
}
