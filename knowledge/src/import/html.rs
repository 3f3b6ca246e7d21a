//! HTML pages in the style of the MSD manual: the title from `<h1>` (or `<title>`), the text
//! split into sections at `<h2>`/`<h3>` headings (症状和体征, 诊断, 治疗, 预防 ...).
use std::path::Path;

use scraper::{ElementRef, Html, Node};

use super::{has_cjk, make_id, Parsed, SkippedItem};
use crate::document::{Document, Section, SectionKind};

const SKIPPED_TAGS: [&str; 8] = ["script", "style", "nav", "header", "footer", "noscript", "template", "svg"];
const BLOCK_TAGS: [&str; 14] = ["p", "div", "li", "ul", "ol", "br", "tr", "table", "section", "article", "blockquote", "dd", "dt", "pre"];

struct Walker {
    title: Option<String>,
    sections: Vec<(String, String)>,
}

impl Walker {
    fn current(&mut self) -> &mut String {
        if self.sections.is_empty() {
            self.sections.push((String::new(), String::new()));
        }
        let last = self.sections.len() - 1;
        &mut self.sections[last].1
    }

    fn walk(&mut self, el: ElementRef<'_>) {
        for child in el.children() {
            match child.value() {
                Node::Text(t) => {
                    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !t.is_empty() {
                        let cur = self.current();
                        if !cur.is_empty() && !cur.ends_with('\n') && t.is_ascii() {
                            cur.push(' ');
                        }
                        cur.push_str(&t);
                    }
                }
                Node::Element(e) => {
                    let Some(child_el) = ElementRef::wrap(child) else { continue };
                    let tag = e.name();
                    if SKIPPED_TAGS.contains(&tag) {
                        continue;
                    }
                    if matches!(tag, "h1" | "h2" | "h3" | "h4") {
                        let text = child_el.text().collect::<Vec<_>>().join("").split_whitespace().collect::<Vec<_>>().join(" ");
                        if text.is_empty() {
                            continue;
                        }
                        if tag == "h1" && self.title.is_none() {
                            self.title = Some(text);
                        } else {
                            self.sections.push((text, String::new()));
                        }
                        continue;
                    }
                    self.walk(child_el);
                    if BLOCK_TAGS.contains(&tag) {
                        let cur = self.current();
                        if !cur.is_empty() && !cur.ends_with('\n') {
                            cur.push('\n');
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Parses one HTML page.
pub fn parse(text: &str, path: &Path) -> Parsed {
    let loc = path.display().to_string();
    let skip = |reason: String| SkippedItem { location: loc.clone(), reason };
    let html = Html::parse_document(text);
    let mut walker = Walker { title: None, sections: Vec::new() };
    let body_sel = scraper::Selector::parse("body").map_err(|e| skip(format!("internal selector error: {e}")))?;
    let start = html.select(&body_sel).next().unwrap_or_else(|| html.root_element());
    walker.walk(start);
    let title = walker.title.clone().or_else(|| {
        let sel = scraper::Selector::parse("title").ok()?;
        html.select(&sel).next().map(|t| t.text().collect::<String>().trim().to_string()).filter(|t| !t.is_empty())
    });
    let Some(name) = title else {
        return Err(skip("no title: the page has neither <h1> nor <title>".into()));
    };
    let mut sections: Vec<Section> = Vec::new();
    for (heading, body) in walker.sections {
        let body = body.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
        if body.is_empty() {
            continue;
        }
        let kind = if heading.is_empty() { SectionKind::Overview } else { SectionKind::from_heading(&heading) };
        let heading = if heading.is_empty() { kind.heading_zh().to_string() } else { heading };
        // Sub-headings of one kind (e.g. several 治疗 subsections) are merged.
        if let Some(prev) = sections.last_mut().filter(|p| p.kind == kind && kind != SectionKind::Other) {
            prev.body.push('\n');
            prev.body.push_str(&body);
        } else {
            sections.push(Section { kind, heading, body });
        }
    }
    if sections.is_empty() {
        return Err(skip(format!("{name}: the page has no text")));
    }
    let zh = has_cjk(&name) || sections.iter().any(|s| has_cjk(&s.body));
    Ok(Document {
        id: make_id("html", &name),
        name,
        name_en: None,
        aliases: vec![],
        department: None,
        symptoms: vec![],
        language: if zh { "zh" } else { "en" }.into(),
        source: format!("imported from {}", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
        attribution: "Imported from an HTML page; check its licence; verify before clinical use.".into(),
        sections,
    })
}
