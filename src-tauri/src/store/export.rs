//! Export of a conversation to Markdown or JSON. Every export is written to the audit log.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::audit::{self, AuditAction};
use super::conversations::{Conversation, ConversationId};
use super::error::{Result, StoreError};
use super::keys::sync_dir;
use super::messages::{Message, MessageStatus, Role};
use super::time::rfc3339;
use super::Store;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// Markdown for people.
    Markdown,
    /// JSON for programs (every stored field).
    Json,
}

impl ExportFormat {
    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Markdown => "md",
            ExportFormat::Json => "json",
        }
    }

    /// The name written to the audit log.
    fn name(self) -> &'static str {
        match self {
            ExportFormat::Markdown => "markdown",
            ExportFormat::Json => "json",
        }
    }
}

/// The JSON export document.
#[derive(Serialize)]
struct ExportDoc<'a> {
    format: &'static str,
    version: u32,
    conversation: &'a Conversation,
    messages: &'a [Message],
}

fn render(conversation: &Conversation, messages: &[Message], format: ExportFormat) -> Result<String> {
    match format {
        ExportFormat::Json => Ok(serde_json::to_string_pretty(&ExportDoc {
            format: "doctorglm-conversation",
            version: 1,
            conversation,
            messages,
        })?),
        ExportFormat::Markdown => Ok(markdown(conversation, messages)),
    }
}

fn markdown(conversation: &Conversation, messages: &[Message]) -> String {
    let mut out = format!("# {}\n\n", conversation.title);
    out.push_str(&format!("_Created {} · exported from DoctorGLM Desktop_\n", rfc3339(conversation.created_at)));
    for m in messages {
        let who = match m.role {
            Role::User => "Doctor",
            Role::Assistant => "DoctorGLM",
            Role::System => "System",
        };
        out.push_str(&format!("\n## {who} · {}\n\n", rfc3339(m.created_at)));
        out.push_str(m.content.trim_end());
        out.push('\n');
        if m.status != MessageStatus::Complete {
            out.push_str(&format!("\n_(answer {})_\n", m.status.as_str()));
        }
        let mut facts = Vec::new();
        if let Some(model) = &m.model {
            facts.push(format!("model {model}"));
        }
        if let Some(adapter) = &m.adapter {
            facts.push(format!("adapter {adapter}"));
        }
        if let Some(t) = m.completion_tokens {
            facts.push(format!("{t} tokens"));
        }
        if let Some(ms) = m.total_ms {
            facts.push(format!("{:.1} s", ms as f64 / 1000.0));
        }
        if !facts.is_empty() {
            out.push_str(&format!("\n> {}\n", facts.join(" · ")));
        }
        if let Some(sources) = &m.sources {
            out.push_str(&sources_markdown(sources));
        }
    }
    out
}

/// The designer's record of an answer (`{keywords, diseases, sections: [{disease, title, text}]}`)
/// as quoted lines a reader can follow: keywords, then one line per library section used.
/// Anything of another shape is written as compact JSON, so nothing stored is left out.
fn sources_markdown(sources: &serde_json::Value) -> String {
    let empty = sources.is_null() || sources.as_array().is_some_and(|a| a.is_empty());
    if empty {
        return String::new();
    }
    if !sources.is_object() || sources.get("sections").is_none() {
        return format!("> Sources: {sources}\n");
    }
    let mut out = String::new();
    let keywords: Vec<&str> = sources
        .get("keywords")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|k| k.as_str()).collect())
        .unwrap_or_default();
    if !keywords.is_empty() {
        out.push_str(&format!("> Keywords: {}\n", keywords.join("、")));
    }
    let sections = sources.get("sections").and_then(|v| v.as_array()).map(Vec::as_slice).unwrap_or_default();
    if !sections.is_empty() {
        out.push_str(">\n> Sources (disease library, reference material to be verified):\n");
        for section in sections {
            let field = |f: &str| section.get(f).and_then(|v| v.as_str()).unwrap_or("?");
            out.push_str(&format!("> - {} — {}\n", field("disease"), field("title")));
        }
    }
    out
}

impl Store {
    /// Renders a conversation in `format` and records the export in the audit log.
    pub fn export_conversation(&self, id: ConversationId, format: ExportFormat) -> Result<String> {
        let (text, count) = self.render_conversation(id, format)?;
        audit::record(
            &self.conn,
            AuditAction::Export,
            &format!("conversation {id}"),
            &serde_json::json!({ "format": format.name(), "messages": count, "to": "caller" }),
        )?;
        Ok(text)
    }

    /// Writes a conversation to the file `path` (written whole or not at all) and records the
    /// export, with the file's path, in the audit log.
    pub fn export_conversation_to(&self, id: ConversationId, format: ExportFormat, path: &Path) -> Result<()> {
        let (text, count) = self.render_conversation(id, format)?;
        let tmp = path.with_extension(format!("{}.partial", format.extension()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::io(path, e));
        }
        if let Some(dir) = path.parent() {
            sync_dir(dir);
        }
        audit::record(
            &self.conn,
            AuditAction::Export,
            &format!("conversation {id}"),
            &serde_json::json!({ "format": format.name(), "messages": count, "to": path.display().to_string() }),
        )?;
        Ok(())
    }

    fn render_conversation(&self, id: ConversationId, format: ExportFormat) -> Result<(String, usize)> {
        let conversation = self.conversation(id)?;
        let messages = self.messages(id)?;
        Ok((render(&conversation, &messages, format)?, messages.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;
    use crate::store::{AnswerEnd, AnswerMeta};

    #[test]
    fn store_export_markdown_and_json_are_audited() {
        let (dir, store) = temp_store();
        let c = store.create_conversation("腹痛").unwrap();
        store.append_user_message(c.id, "右下腹痛一天").unwrap();
        let meta = AnswerMeta { model: Some("chatglm-6b".into()), ..Default::default() };
        let a = store.begin_answer(c.id, &meta).unwrap();
        store.finish_answer(a, &AnswerEnd { completion_tokens: Some(12), ..AnswerEnd::complete("考虑阑尾炎。") }).unwrap();

        let md = store.export_conversation(c.id, ExportFormat::Markdown).unwrap();
        assert!(md.starts_with("# 腹痛\n"));
        assert!(md.contains("## Doctor"));
        assert!(md.contains("右下腹痛一天"));
        assert!(md.contains("考虑阑尾炎。"));
        assert!(md.contains("model chatglm-6b · 12 tokens"));
        assert!(!md.contains("Sources"), "an answer without sources lists none");

        let path = dir.path().join("out.json");
        store.export_conversation_to(c.id, ExportFormat::Json, &path).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["format"], "doctorglm-conversation");
        assert_eq!(doc["messages"].as_array().unwrap().len(), 2);
        assert_eq!(doc["messages"][1]["content"], "考虑阑尾炎。");
        assert_eq!(doc["messages"][1]["status"], "complete");

        let log = store.audit_log(10).unwrap();
        let exports: Vec<_> = log.iter().filter(|e| e.action == "export").collect();
        assert_eq!(exports.len(), 2);
        assert_eq!(exports[0].detail["format"], "json");
        assert_eq!(exports[1].detail["format"], "markdown");
        assert!(store.export_conversation(9999, ExportFormat::Json).is_err());
    }

    #[test]
    fn markdown_lists_the_designer_sources_readably() {
        let sources = serde_json::json!({
            "keywords": ["右下腹痛", "发热"],
            "diseases": [{"name": "急性阑尾炎", "score": 3.2}],
            "sections": [
                {"disease": "急性阑尾炎", "title": "症状", "text": "转移性右下腹痛……"},
                {"disease": "急性阑尾炎", "title": "治疗", "text": "手术……"}
            ]
        });
        let md = sources_markdown(&sources);
        assert!(md.contains("> Keywords: 右下腹痛、发热\n"), "{md}");
        assert!(md.contains("> - 急性阑尾炎 — 症状\n> - 急性阑尾炎 — 治疗\n"), "{md}");
        assert!(!md.contains('{'), "no raw JSON: {md}");
        assert_eq!(sources_markdown(&serde_json::json!([])), "");
        assert_eq!(sources_markdown(&serde_json::Value::Null), "");
        let other = sources_markdown(&serde_json::json!(["a"]));
        assert_eq!(other, "> Sources: [\"a\"]\n");
    }
}
