//! The disease document: its model, and its Markdown-with-front-matter file format
//! (see `knowledge/library/README` and the crate docs).
use serde::{Deserialize, Serialize};
use serde_norway::Value;

/// The kinds of section a disease document has, in their canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionKind {
    /// 概述: what the disease is.
    Overview,
    /// 病因: causes and risk factors.
    Causes,
    /// 症状: symptoms and signs.
    Symptoms,
    /// 诊断: diagnosis.
    Diagnosis,
    /// 治疗: treatment.
    Treatment,
    /// 预防: prevention.
    Prevention,
    /// 预后: prognosis.
    Prognosis,
    /// Any other heading (kept, shown, indexed as text).
    Other,
}

impl SectionKind {
    /// The seven known kinds in canonical order.
    pub const KNOWN: [SectionKind; 7] = [
        SectionKind::Overview,
        SectionKind::Causes,
        SectionKind::Symptoms,
        SectionKind::Diagnosis,
        SectionKind::Treatment,
        SectionKind::Prevention,
        SectionKind::Prognosis,
    ];

    /// The Chinese heading the library format uses.
    pub fn heading_zh(self) -> &'static str {
        match self {
            SectionKind::Overview => "概述",
            SectionKind::Causes => "病因",
            SectionKind::Symptoms => "症状",
            SectionKind::Diagnosis => "诊断",
            SectionKind::Treatment => "治疗",
            SectionKind::Prevention => "预防",
            SectionKind::Prognosis => "预后",
            SectionKind::Other => "其他",
        }
    }

    /// The English heading (for English documents).
    pub fn heading_en(self) -> &'static str {
        match self {
            SectionKind::Overview => "Overview",
            SectionKind::Causes => "Causes",
            SectionKind::Symptoms => "Symptoms",
            SectionKind::Diagnosis => "Diagnosis",
            SectionKind::Treatment => "Treatment",
            SectionKind::Prevention => "Prevention",
            SectionKind::Prognosis => "Prognosis",
            SectionKind::Other => "Other",
        }
    }

    /// Recognises a heading, Chinese or English, exact or by a telling word it contains
    /// ("症状和体征", "Signs and symptoms", "Treatment options" ...).
    pub fn from_heading(heading: &str) -> SectionKind {
        let h = heading.trim().to_lowercase();
        let rules: [(SectionKind, &[&str]); 7] = [
            (SectionKind::Symptoms, &["症状", "体征", "表现", "symptom", "sign"]),
            (SectionKind::Diagnosis, &["诊断", "检查", "鉴别", "diagnos", "exam", "test"]),
            (SectionKind::Treatment, &["治疗", "用药", "处理", "疗法", "treat", "therap", "management"]),
            (SectionKind::Prevention, &["预防", "prevent"]),
            (SectionKind::Prognosis, &["预后", "转归", "prognos", "outlook"]),
            (SectionKind::Causes, &["病因", "原因", "发病机制", "病理", "cause", "etiolog", "risk"]),
            (SectionKind::Overview, &["概述", "简介", "概况", "定义", "overview", "summary", "introduction", "what is", "information"]),
        ];
        for (kind, words) in rules {
            if words.iter().any(|w| h.contains(w)) {
                return kind;
            }
        }
        SectionKind::Other
    }
}

/// One section of a document: its kind, its heading as written, its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// What the section is about.
    pub kind: SectionKind,
    /// The heading as written in the file.
    pub heading: String,
    /// The text (Markdown), trimmed.
    pub body: String,
}

/// A disease document of the library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// Unique id: lowercase ASCII kebab-case, equal to the file name without `.md`.
    pub id: String,
    /// The disease's name (Chinese for Chinese documents).
    pub name: String,
    /// English name, when known.
    pub name_en: Option<String>,
    /// Other names, Chinese or English.
    pub aliases: Vec<String>,
    /// The department that treats it (e.g. 耳鼻喉科).
    pub department: Option<String>,
    /// Short symptom phrases, used as lexicon entries by the keyword extractor.
    pub symptoms: Vec<String>,
    /// Language code of the text ("zh", "en").
    pub language: String,
    /// Where the text comes from.
    pub source: String,
    /// Attribution / licence / caution line to show with citations.
    pub attribution: String,
    /// The sections in file order.
    pub sections: Vec<Section>,
}

impl Document {
    /// The first section of a kind, if any.
    pub fn section(&self, kind: SectionKind) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }

    /// Name, English name and aliases: every name the disease goes by.
    pub fn all_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str())
            .chain(self.name_en.as_deref())
            .chain(self.aliases.iter().map(String::as_str))
    }

    /// Parses a library file's text. `fallback_id` (the file stem) is used when the front
    /// matter has no `id`.
    pub fn parse_markdown(text: &str, fallback_id: &str) -> Result<Document, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let (front, body) = split_front_matter(text).ok_or_else(|| {
            "no front matter: the file must start with a line `---`, the YAML keys, and a closing `---`"
                .to_string()
        })?;
        let value: Value =
            serde_norway::from_str(front).map_err(|e| format!("front matter is not valid YAML: {e}"))?;
        let map = match value {
            Value::Mapping(m) => m,
            _ => return Err("front matter must be a mapping of `key: value` lines".into()),
        };
        let get = |key: &str| map.get(Value::String(key.to_string()));
        let name = get("name").and_then(scalar_string).filter(|s| !s.is_empty()).ok_or("front matter has no `name`")?;
        let id = match get("id").and_then(scalar_string) {
            Some(id) => id,
            None => fallback_id.to_string(),
        };
        if !is_valid_id(&id) {
            return Err(format!("id `{id}` must be lowercase ASCII letters, digits and dashes"));
        }
        for key in map.keys() {
            if let Some(k) = key.as_str() {
                if !KNOWN_KEYS.contains(&k) {
                    tracing::debug!(id = %id, key = k, "ignoring unknown front matter key");
                }
            }
        }
        let sections = parse_sections(body);
        Ok(Document {
            id,
            name,
            name_en: get("name_en").and_then(scalar_string).filter(|s| !s.is_empty()),
            aliases: get("aliases").map(string_list).unwrap_or_default(),
            department: get("department").and_then(scalar_string).filter(|s| !s.is_empty()),
            symptoms: get("symptoms").map(string_list).unwrap_or_default(),
            language: get("language").and_then(scalar_string).unwrap_or_else(|| "zh".into()),
            source: get("source").and_then(scalar_string).unwrap_or_default(),
            attribution: get("attribution").and_then(scalar_string).unwrap_or_default(),
            sections,
        })
    }

    /// Writes the document in the library format (parses back to an equal document).
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("---\n");
        out.push_str(&format!("id: {}\n", yaml_scalar(&self.id)));
        out.push_str(&format!("name: {}\n", yaml_scalar(&self.name)));
        if let Some(en) = &self.name_en {
            out.push_str(&format!("name_en: {}\n", yaml_scalar(en)));
        }
        out.push_str(&format!("aliases: {}\n", yaml_list(&self.aliases)));
        if let Some(d) = &self.department {
            out.push_str(&format!("department: {}\n", yaml_scalar(d)));
        }
        out.push_str(&format!("symptoms: {}\n", yaml_list(&self.symptoms)));
        out.push_str(&format!("language: {}\n", yaml_scalar(&self.language)));
        out.push_str(&format!("source: {}\n", yaml_scalar(&self.source)));
        out.push_str(&format!("attribution: {}\n", yaml_scalar(&self.attribution)));
        out.push_str("---\n");
        for s in &self.sections {
            let heading = s.heading.replace('\n', " ");
            out.push_str(&format!("\n## {}\n\n{}\n", heading.trim(), s.body.trim()));
        }
        out
    }
}

const KNOWN_KEYS: [&str; 10] =
    ["id", "name", "name_en", "aliases", "department", "symptoms", "language", "source", "attribution", "title"];

/// Whether `id` is lowercase ASCII kebab-case (letters, digits, dashes; not starting with a dash).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('-')
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Splits `---\n<yaml>\n---\n<body>`; None when the text has no front matter.
pub fn split_front_matter(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("---\n").or_else(|| text.strip_prefix("---\r\n"))?;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Some((&rest[..offset], &rest[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

/// Splits a Markdown body at `## ` headings. Text before the first heading becomes an overview.
/// A `# ` title line is dropped (the name lives in the front matter).
pub fn parse_sections(body: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut heading: Option<String> = None;
    let mut buf = String::new();
    let flush = |heading: &Option<String>, buf: &mut String, sections: &mut Vec<Section>| {
        let text = buf.trim().to_string();
        buf.clear();
        match heading {
            Some(h) => sections.push(Section { kind: SectionKind::from_heading(h), heading: h.clone(), body: text }),
            None if !text.is_empty() => sections.push(Section {
                kind: SectionKind::Overview,
                heading: SectionKind::Overview.heading_zh().into(),
                body: text,
            }),
            None => {}
        }
    };
    for line in body.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            flush(&heading, &mut buf, &mut sections);
            heading = Some(h.trim().to_string());
        } else if line.starts_with("# ") && heading.is_none() && buf.trim().is_empty() {
            continue;
        } else {
            buf.push_str(line);
            buf.push('\n');
        }
    }
    flush(&heading, &mut buf, &mut sections);
    sections
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn string_list(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().filter_map(scalar_string).filter(|s| !s.is_empty()).collect(),
        Value::String(s) => s
            .split([',', '，', '、'])
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        _ => scalar_string(v).into_iter().collect(),
    }
}

/// A YAML scalar: plain when that reads back as the same string, double-quoted otherwise.
fn yaml_scalar(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && s.trim() == s
        && !s.chars().any(|c| ",[]{}:#&*!|>'\"%@`\n\r\t\\".contains(c) || c.is_control())
        && !s.starts_with(['-', '?', '~'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
        && s.parse::<f64>().is_err()
        && !s.starts_with(|c: char| c.is_ascii_digit() && s.chars().all(|c| c.is_ascii_digit() || "._:-+eE".contains(c)));
    if plain_ok {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
    }
}

fn yaml_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| yaml_scalar(s)).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "---\nid: tonsillitis\nname: 扁桃体炎\nname_en: Tonsillitis\naliases: [急性扁桃体炎, 扁桃腺炎, acute tonsillitis]\ndepartment: 耳鼻喉科\nsymptoms: [咽痛, 吞咽痛, 发热]\nlanguage: zh\nsource: DoctorGLM starter library\nattribution: Written for DoctorGLM Desktop. Reference material for clinicians; verify before clinical use.\n---\n\n## 概述\n扁桃体的急性炎症。\n\n## 症状\n咽痛，发热。\n\n## 诊断\n查体。\n\n## 治疗\n对症治疗。\n";

    #[test]
    fn parses_the_library_format() {
        let d = Document::parse_markdown(SAMPLE, "x").unwrap();
        assert_eq!(d.id, "tonsillitis");
        assert_eq!(d.name, "扁桃体炎");
        assert_eq!(d.name_en.as_deref(), Some("Tonsillitis"));
        assert_eq!(d.aliases, vec!["急性扁桃体炎", "扁桃腺炎", "acute tonsillitis"]);
        assert_eq!(d.symptoms, vec!["咽痛", "吞咽痛", "发热"]);
        assert_eq!(d.department.as_deref(), Some("耳鼻喉科"));
        assert!(d.attribution.contains("verify before clinical use"));
        let kinds: Vec<_> = d.sections.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec![SectionKind::Overview, SectionKind::Symptoms, SectionKind::Diagnosis, SectionKind::Treatment]);
        assert_eq!(d.section(SectionKind::Symptoms).unwrap().body, "咽痛，发热。");
    }

    #[test]
    fn round_trips_awkward_values() {
        let mut d = Document::parse_markdown(SAMPLE, "x").unwrap();
        d.aliases = vec!["a, b".into(), "[x]".into(), "yes".into(), "2型糖尿病".into(), "123".into(), "key: v".into()];
        d.attribution = "\"quoted\" # not a comment".into();
        let text = d.to_markdown();
        let back = Document::parse_markdown(&text, "x").unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn rejects_missing_front_matter_and_bad_ids() {
        assert!(Document::parse_markdown("## 概述\ntext", "x").unwrap_err().contains("front matter"));
        let bad = SAMPLE.replace("id: tonsillitis", "id: Tonsil Itis");
        assert!(Document::parse_markdown(&bad, "x").unwrap_err().contains("kebab") || Document::parse_markdown(&bad, "x").unwrap_err().contains("lowercase"));
        let unclosed = "---\nid: a\nname: b\n";
        assert!(Document::parse_markdown(unclosed, "a").is_err());
        let not_map = "---\n- a\n- b\n---\n";
        assert!(Document::parse_markdown(not_map, "a").unwrap_err().contains("mapping"));
    }

    #[test]
    fn recognises_headings() {
        assert_eq!(SectionKind::from_heading("症状和体征"), SectionKind::Symptoms);
        assert_eq!(SectionKind::from_heading("What are the treatments for A1C ?"), SectionKind::Treatment);
        assert_eq!(SectionKind::from_heading("预后"), SectionKind::Prognosis);
        assert_eq!(SectionKind::from_heading("参考文献"), SectionKind::Other);
    }
}
