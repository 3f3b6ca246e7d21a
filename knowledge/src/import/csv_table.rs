//! CSV tables of diseases, one row a disease, columns recognised by their header:
//! 39.net style (`name, alias, department, checklist, symptom, complication, treatment, drug,
//! period, rate, ...`, lists separated by spaces or commas, values cut with "[详细]") and
//! ChatDoctor style (`disease, Symptom, reason, TestsAndProcedures, commonMedications`, lists
//! written as Python lists).
use super::{has_cjk, make_id, section, tidy_sections, Parsed, SkippedItem, MAX_RECORD_BYTES};
use crate::document::{Document, SectionKind};

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Name,
    Alias,
    Department,
    Symptoms,
    Overview,
    Causes,
    Diagnosis,
    Treatment,
    Drugs,
    Complications,
    Extra(&'static str),
    Ignored,
}

fn column(header: &str) -> Column {
    match header.trim().trim_start_matches('\u{feff}').to_ascii_lowercase().as_str() {
        "name" | "disease" | "disease_name" | "疾病" | "疾病名称" | "名称" => Column::Name,
        "alias" | "aliases" | "别名" => Column::Alias,
        "department" | "科室" | "就诊科室" => Column::Department,
        "symptom" | "symptoms" | "症状" | "典型症状" => Column::Symptoms,
        "desc" | "description" | "reason" | "overview" | "简介" | "概述" => Column::Overview,
        "cause" | "causes" | "病因" => Column::Causes,
        "checklist" | "check" | "testsandprocedures" | "tests" | "检查" => Column::Diagnosis,
        "treatment" | "cure_way" | "治疗" | "治疗方法" => Column::Treatment,
        "drug" | "drugs" | "commonmedications" | "medications" | "常用药品" | "药物" => Column::Drugs,
        "complication" | "complications" | "并发症" => Column::Complications,
        "part" => Column::Extra("发病部位"),
        "age" => Column::Extra("易感人群"),
        "infection" => Column::Extra("传染性"),
        "period" => Column::Extra("治疗周期"),
        "rate" => Column::Extra("治愈率"),
        _ => Column::Ignored,
    }
}

/// Removes the "[详细]" cut marks of 39.net and surrounding blanks.
fn clean(value: &str) -> String {
    value.replace("[详细]", "").trim().to_string()
}

/// Splits a list cell: a Python list literal (`['a', 'b']`) or items separated by spaces,
/// commas or 、.
fn split_list(value: &str) -> Vec<String> {
    let v = clean(value);
    let items: Vec<String> = if v.starts_with('[') && v.ends_with(']') {
        python_list(&v[1..v.len() - 1])
    } else {
        v.split([' ', ',', '，', '、', ';', '；'])
            .map(|s| s.trim().to_string())
            .collect()
    };
    items
        .into_iter()
        .map(|s| s.trim_end_matches("...").trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Items of the inside of a Python list literal of quoted strings.
fn python_list(inner: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in inner.chars() {
        match quote {
            Some(q) if c == q => {
                items.push(std::mem::take(&mut cur));
                quote = None;
            }
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == ',' => {
                if !cur.trim().is_empty() {
                    items.push(std::mem::take(&mut cur));
                }
                cur.clear();
            }
            None => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        items.push(cur);
    }
    items.into_iter().map(|s| s.trim().to_string()).collect()
}

/// Parses a whole table. Fails (with a reason) when the header has no name column.
pub fn parse(text: &str, location: &str) -> Result<Vec<Parsed>, String> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).has_headers(true).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| format!("cannot read the CSV header: {e}"))?.clone();
    let columns: Vec<Column> = headers.iter().map(column).collect();
    if !columns.contains(&Column::Name) {
        return Err(format!(
            "no disease-name column in the header ({}); expected one named `name` or `disease`",
            headers.iter().filter(|h| !h.is_empty()).collect::<Vec<_>>().join(", ")
        ));
    }
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let loc = format!("{location}:row {}", i + 2);
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                out.push(Err(SkippedItem { location: loc, reason: format!("unreadable CSV row: {e}") }));
                continue;
            }
        };
        let size: usize = row.iter().map(str::len).sum();
        if size > MAX_RECORD_BYTES {
            out.push(Err(SkippedItem { location: loc, reason: format!("row is {size} bytes, longer than the {MAX_RECORD_BYTES} byte limit") }));
            continue;
        }
        out.push(record(&columns, &row).map_err(|reason| SkippedItem { location: loc, reason }));
    }
    Ok(out)
}

fn record(columns: &[Column], row: &csv::StringRecord) -> Result<Document, String> {
    let mut name = String::new();
    let (mut aliases, mut symptoms, mut complications, mut drugs, mut checks) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut department, mut overview, mut causes, mut treatment) = (None, String::new(), String::new(), String::new());
    let mut extras = Vec::new();
    for (col, value) in columns.iter().zip(row.iter()) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match col {
            Column::Name => name = clean(value),
            Column::Alias => aliases = split_list(value),
            Column::Department => department = split_list(value).last().cloned(),
            Column::Symptoms => symptoms = split_list(value),
            Column::Overview => overview = clean(value),
            Column::Causes => causes = clean(value),
            Column::Diagnosis => checks = split_list(value),
            Column::Treatment => treatment = clean(value),
            Column::Drugs => drugs = split_list(value),
            Column::Complications => complications = split_list(value),
            Column::Extra(label) => extras.push(format!("{label}：{}", clean(value))),
            Column::Ignored => {}
        }
    }
    if name.is_empty() {
        return Err("row has no disease name".into());
    }
    if name.chars().count() > 100 {
        return Err(format!("name is {} characters long; not a disease name", name.chars().count()));
    }
    let zh = has_cjk(&name);
    let (sep, colon) = if zh { ("、", "：") } else { (", ", ": ") };
    let mut symptom_text = String::new();
    if !symptoms.is_empty() {
        symptom_text = format!("{}{colon}{}", if zh { "常见症状" } else { "Common symptoms" }, symptoms.join(sep));
    }
    if !complications.is_empty() {
        symptom_text.push_str(&format!("\n{}{colon}{}", if zh { "并发症" } else { "Complications" }, complications.join(sep)));
    }
    let diagnosis = if checks.is_empty() { String::new() } else { format!("{}{colon}{}", if zh { "常用检查" } else { "Tests" }, checks.join(sep)) };
    if !drugs.is_empty() {
        treatment.push_str(&format!("\n{}{colon}{}", if zh { "常用药物" } else { "Common medications" }, drugs.join(sep)));
    }
    if !extras.is_empty() {
        overview.push_str(&format!("\n{}", extras.join("\n")));
    }
    aliases.retain(|a| a != &name);
    let sections = tidy_sections(vec![
        section(SectionKind::Overview, zh, overview.trim()),
        section(SectionKind::Causes, zh, causes),
        section(SectionKind::Symptoms, zh, symptom_text.trim()),
        section(SectionKind::Diagnosis, zh, diagnosis),
        section(SectionKind::Treatment, zh, treatment.trim()),
    ]);
    if sections.is_empty() {
        return Err(format!("{name}: row has no text besides the name"));
    }
    Ok(Document {
        id: make_id("csv", &name),
        name,
        name_en: None,
        aliases,
        department,
        symptoms: if zh { symptoms } else { symptoms.into_iter().map(|s| s.to_lowercase()).collect() },
        language: if zh { "zh" } else { "en" }.into(),
        source: "CSV disease table (imported)".into(),
        attribution: "Imported from a CSV disease table; check its licence; verify before clinical use.".into(),
        sections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lists_of_both_styles() {
        assert_eq!(split_list("['Cough', 'Sharp chest pain', \"Kid's fever\"]"), vec!["Cough", "Sharp chest pain", "Kid's fever"]);
        assert_eq!(split_list("外生殖器检查 前列腺B超 [详细]"), vec!["外生殖器检查", "前列腺B超"]);
        assert_eq!(split_list("枸橼酸西地那非... 他达拉非片"), vec!["枸橼酸西地那非", "他达拉非片"]);
    }

    #[test]
    fn refuses_a_table_without_a_name_column() {
        let err = parse("a,b\n1,2\n", "t.csv").unwrap_err();
        assert!(err.contains("disease-name column"), "{err}");
    }
}
