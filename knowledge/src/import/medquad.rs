//! MedQuAD XML documents (English): `<Document url=…><Focus/><FocusAnnotations><Synonyms/>
//! </FocusAnnotations><QAPairs><QAPair><Question qtype=…/><Answer/></QAPair>…` — each answer
//! becomes a section chosen by its question type.
use super::{make_id, section, tidy_sections, Parsed, SkippedItem};
use crate::document::{Document, SectionKind};

fn kind_of(qtype: &str) -> Option<SectionKind> {
    Some(match qtype.trim().to_ascii_lowercase().as_str() {
        "information" => SectionKind::Overview,
        "causes" | "susceptibility" => SectionKind::Causes,
        "symptoms" | "complications" => SectionKind::Symptoms,
        "exams and tests" => SectionKind::Diagnosis,
        "treatment" => SectionKind::Treatment,
        "prevention" => SectionKind::Prevention,
        "outlook" => SectionKind::Prognosis,
        _ => return None,
    })
}

/// Collapses the runs of blanks MedQuAD uses for line breaks.
fn tidy(text: &str) -> String {
    let mut out = String::new();
    for part in text.split("   ") {
        let p = part.split_whitespace().collect::<Vec<_>>().join(" ");
        if !p.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&p);
        }
    }
    out
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|n| n.has_tag_name(tag))
}

/// Parses one MedQuAD document.
pub fn parse(text: &str, location: &str) -> Parsed {
    let skip = |reason: String| SkippedItem { location: location.to_string(), reason };
    let xml = roxmltree::Document::parse(text).map_err(|e| skip(format!("not well-formed XML: {e}")))?;
    let root = xml.root_element();
    if !root.has_tag_name("Document") {
        return Err(skip(format!("root element is <{}>, not a MedQuAD <Document>", root.tag_name().name())));
    }
    let name = child(root, "Focus").and_then(|n| n.text()).map(|t| t.trim().to_string()).unwrap_or_default();
    if name.is_empty() {
        return Err(skip("no <Focus> (topic name)".into()));
    }
    let aliases: Vec<String> = root
        .descendants()
        .filter(|n| n.has_tag_name("Synonym"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && t != &name)
        .collect();
    let mut sections = Vec::new();
    for pair in root.descendants().filter(|n| n.has_tag_name("QAPair")) {
        let q = child(pair, "Question");
        let qtype = q.and_then(|q| q.attribute("qtype")).unwrap_or("");
        let answer = child(pair, "Answer").map(|a| a.text().unwrap_or("")).unwrap_or("");
        let Some(kind) = kind_of(qtype) else { continue };
        if sections.iter().any(|s: &crate::document::Section| s.kind == kind) {
            continue;
        }
        let body = tidy(answer);
        let body = body.strip_prefix("Summary : ").unwrap_or(&body).to_string();
        sections.push(section(kind, false, body));
    }
    let sections = tidy_sections(sections);
    if sections.is_empty() {
        return Err(skip(format!("{name}: no answers of a known kind (information, symptoms, treatment ...)")));
    }
    let url = root.attribute("url").unwrap_or("");
    Ok(Document {
        id: make_id("medquad", &name),
        name: name.clone(),
        name_en: Some(name),
        aliases,
        department: None,
        symptoms: vec![],
        language: "en".into(),
        source: format!("MedQuAD {} {}", root.attribute("source").unwrap_or(""), url).trim().to_string(),
        attribution: "MedQuAD (U.S. National Library of Medicine MedlinePlus), CC BY 4.0; verify before clinical use.".into(),
        sections,
    })
}
