//! Column mappings (which field is the question, the answer, …) and the suggested mapping.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::table::SourceRecord;

/// A recognised export layout, shown to the user next to the suggested mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Single-turn alpaca: `instruction`, `input`, `output`.
    Alpaca,
    /// Alpaca fields whose question carries earlier turns inline as `<user>:` / `<bot>:` (Huatuo).
    HuatuoMultiTurn,
    /// ShareGPT: `conversations` as a list of `{from, value}` (or `{role, content}`).
    ShareGpt,
    /// The CMD layout: `department, title, ask, answer`.
    Cmd,
    /// A multiple-choice exam (CMExam): `Question, Options, Answer, Explanation`.
    MultipleChoice,
    /// Any other question/answer columns.
    Generic,
}

/// How the fields of a record become a dialogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Shape {
    /// One question and one answer per record.
    QuestionAnswer {
        /// Columns joined with a newline to form the question (alpaca: instruction, input).
        question: Vec<String>,
        /// The answer column.
        answer: String,
        /// Optional column with earlier turns as a list of `[question, answer]` pairs.
        #[serde(default)]
        history: Option<String>,
        /// Split the question at inline `<user>:` / `<bot>:` markers into earlier turns.
        #[serde(default)]
        inline_turns: bool,
    },
    /// A list of messages with roles in one field.
    Conversation {
        /// The field holding the list.
        field: String,
    },
    /// Multiple choice: question and options form the prompt; the answer letters and the
    /// explanation form the target.
    MultipleChoice {
        /// The question stem column.
        question: String,
        /// The options column (one option per line or per literal `\n`).
        options: String,
        /// The answer letters column.
        answer: String,
        /// Optional explanation column.
        #[serde(default)]
        explanation: Option<String>,
    },
}

/// Which fields of the source map to which parts of a [`crate::record::Dialogue`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// The dialogue fields.
    pub shape: Shape,
    /// Optional department column.
    #[serde(default)]
    pub department: Option<String>,
    /// Optional title column.
    #[serde(default)]
    pub title: Option<String>,
    /// Optional system-prompt column.
    #[serde(default)]
    pub system: Option<String>,
}

impl Mapping {
    /// Every column the mapping reads.
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = match &self.shape {
            Shape::QuestionAnswer { question, answer, history, .. } => {
                let mut v: Vec<&str> = question.iter().map(String::as_str).collect();
                v.push(answer);
                v.extend(history.as_deref());
                v
            }
            Shape::Conversation { field } => vec![field.as_str()],
            Shape::MultipleChoice { question, options, answer, explanation } => {
                let mut v = vec![question.as_str(), options.as_str(), answer.as_str()];
                v.extend(explanation.as_deref());
                v
            }
        };
        out.extend(self.department.as_deref());
        out.extend(self.title.as_deref());
        out.extend(self.system.as_deref());
        out
    }
}

const QUESTION: &[&str] = &["ask", "question", "query", "prompt", "问题", "提问", "咨询", "咨询内容", "患者提问", "病情描述", "q"];
const ANSWER: &[&str] = &["answer", "output", "response", "reply", "回答", "答案", "医生回复", "回复", "医生回答", "a"];
const DEPARTMENT: &[&str] = &["department", "dept", "科室", "部门", "就诊科室"];
const TITLE: &[&str] = &["title", "subject", "标题", "主题"];
const SYSTEM: &[&str] = &["system", "system_prompt", "系统提示"];
const HISTORY: &[&str] = &["history", "历史", "对话历史"];
const CONVERSATION: &[&str] = &["conversations", "conversation", "messages", "dialogue", "对话"];
const OPTIONS: &[&str] = &["options", "选项"];
const EXPLANATION: &[&str] = &["explanation", "analysis", "解析"];

fn find<'a>(columns: &'a [String], names: &[&str]) -> Option<&'a String> {
    names
        .iter()
        .find_map(|n| columns.iter().find(|c| c.trim().eq_ignore_ascii_case(n)))
}

/// Suggests a layout and mapping from the columns and a few records; None when no question
/// and answer columns can be told apart (the user maps them by hand).
pub fn suggest(columns: &[String], sample: &[SourceRecord]) -> Option<(Layout, Mapping)> {
    let department = find(columns, DEPARTMENT).cloned();
    let title = find(columns, TITLE).cloned();
    let system = find(columns, SYSTEM).cloned();
    if let Some(field) = find(columns, CONVERSATION) {
        let is_list = sample.iter().any(|r| matches!(r.fields.get(field), Some(Value::Array(_))));
        if is_list {
            let mapping = Mapping { shape: Shape::Conversation { field: field.clone() }, department, title, system };
            return Some((Layout::ShareGpt, mapping));
        }
    }
    if let (Some(instruction), Some(output)) = (find(columns, &["instruction"]), find(columns, &["output"])) {
        let mut question = vec![instruction.clone()];
        if let Some(input) = find(columns, &["input"]) {
            question.push(input.clone());
        }
        let inline = sample.iter().any(|r| {
            r.fields.get(instruction).and_then(Value::as_str).is_some_and(|s| s.contains("<user>:") || s.contains("<user>："))
        });
        let history = find(columns, HISTORY).cloned();
        let layout = if inline { Layout::HuatuoMultiTurn } else { Layout::Alpaca };
        let shape = Shape::QuestionAnswer { question, answer: output.clone(), history, inline_turns: inline };
        return Some((layout, Mapping { shape, department, title, system }));
    }
    let question = find(columns, QUESTION)?;
    let answer = find(columns, ANSWER)?;
    if let Some(options) = find(columns, OPTIONS) {
        let explanation = find(columns, EXPLANATION).cloned();
        let shape = Shape::MultipleChoice {
            question: question.clone(),
            options: options.clone(),
            answer: answer.clone(),
            explanation,
        };
        return Some((Layout::MultipleChoice, Mapping { shape, department, title, system }));
    }
    let layout = if question.eq_ignore_ascii_case("ask") && department.is_some() && title.is_some() {
        Layout::Cmd
    } else {
        Layout::Generic
    };
    let history = find(columns, HISTORY).cloned();
    let shape = Shape::QuestionAnswer { question: vec![question.clone()], answer: answer.clone(), history, inline_turns: false };
    Some((layout, Mapping { shape, department, title, system }))
}
