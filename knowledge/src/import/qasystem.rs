//! QASystemOnMedicalKG `medical.json`: one JSON object a line (MongoDB export), fields
//! `name, desc, cause, symptom[], acompany[], check[], cure_way[], common_drug[], prevent,
//! cure_department[], ...`.
use serde_json::Value;

use super::{make_id, section, tidy_sections, Parsed, SkippedItem, MAX_RECORD_BYTES};
use crate::document::{Document, SectionKind};

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Array(items)) => list(items).join("、"),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn list(items: &[Value]) -> Vec<String> {
    items.iter().filter_map(|i| i.as_str()).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    match v.get(key) {
        Some(Value::Array(items)) => list(items),
        Some(Value::String(s)) if !s.trim().is_empty() => vec![s.trim().to_string()],
        _ => vec![],
    }
}

/// Parses every line; bad lines become skipped items with their line numbers.
pub fn parse(text: &str, location: &str) -> Vec<Parsed> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let loc = format!("{location}:line {}", i + 1);
        if line.len() > MAX_RECORD_BYTES {
            out.push(Err(SkippedItem { location: loc, reason: format!("line is {} bytes, longer than the {} byte limit", line.len(), MAX_RECORD_BYTES) }));
            continue;
        }
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                out.push(Err(SkippedItem { location: loc, reason: format!("not a JSON object: {e}") }));
                continue;
            }
        };
        out.push(record(&value).map_err(|reason| SkippedItem { location: loc, reason }));
    }
    out
}

fn record(v: &Value) -> Result<Document, String> {
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let name = text(v, "name");
    if name.is_empty() {
        return Err("record has no `name`".into());
    }
    let symptoms = strings(v, "symptom");
    let mut symptom_text = String::new();
    if !symptoms.is_empty() {
        symptom_text.push_str(&format!("常见症状：{}。", symptoms.join("、")));
    }
    let acompany = text(v, "acompany");
    if !acompany.is_empty() {
        symptom_text.push_str(&format!("\n并发症：{acompany}。"));
    }
    let check = text(v, "check");
    let mut treatment = String::new();
    for (label, key) in [("治疗方式", "cure_way"), ("常用药物", "common_drug"), ("治疗周期", "cure_lasttime"), ("治愈率", "cured_prob")] {
        let t = text(v, key);
        if !t.is_empty() {
            treatment.push_str(&format!("{label}：{t}。\n"));
        }
    }
    let departments = strings(v, "cure_department");
    let sections = tidy_sections(vec![
        section(SectionKind::Overview, true, text(v, "desc")),
        section(SectionKind::Causes, true, text(v, "cause")),
        section(SectionKind::Symptoms, true, symptom_text),
        section(SectionKind::Diagnosis, true, if check.is_empty() { String::new() } else { format!("常用检查：{check}。") }),
        section(SectionKind::Treatment, true, treatment.trim().to_string()),
        section(SectionKind::Prevention, true, text(v, "prevent")),
    ]);
    if sections.is_empty() {
        return Err(format!("{name}: record has no text (desc, cause, symptom, ... all empty)"));
    }
    Ok(Document {
        id: make_id("qasystem", &name),
        name,
        name_en: None,
        aliases: vec![],
        department: departments.last().cloned(),
        symptoms,
        language: "zh".into(),
        source: "QASystemOnMedicalKG medical.json (imported)".into(),
        attribution: "Imported from QASystemOnMedicalKG; no licence stated, no commercial use; verify before clinical use.".into(),
        sections,
    })
}
