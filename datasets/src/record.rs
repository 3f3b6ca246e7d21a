//! The common record every importer produces: a dialogue of (user, assistant) turns.

use serde::{Deserialize, Serialize};

/// One exchange: what the patient (user) said and what the doctor (assistant) answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// The user's (patient's) message.
    pub user: String,
    /// The assistant's (doctor's) answer.
    pub assistant: String,
}

/// Where a record came from in its source file, for error reports and reviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "number", rename_all = "snake_case")]
pub enum Location {
    /// 1-based line of a text file (CSV record start, JSONL line, start of a JSON array element).
    Line(usize),
    /// 1-based row of a spreadsheet, as the spreadsheet program numbers it (header is row 1).
    Row(usize),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// A dialogue: one or more turns plus optional context, the unit of training.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialogue {
    /// The turns in order; the last assistant answer is the training target.
    pub turns: Vec<Turn>,
    /// A system prompt, when the export has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The hospital department (科室), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// A title or subject line, when the export has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Where the dialogue came from in its file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Location>,
}

impl Dialogue {
    /// A one-turn dialogue with no context.
    pub fn single(user: impl Into<String>, assistant: impl Into<String>) -> Self {
        Dialogue {
            turns: vec![Turn { user: user.into(), assistant: assistant.into() }],
            system: None,
            department: None,
            title: None,
            origin: None,
        }
    }

    /// The model input side: system, earlier turns and the last question, joined as plain text.
    pub fn source_text(&self) -> String {
        let mut out = String::new();
        if let Some(s) = &self.system {
            out.push_str(s);
            out.push('\n');
        }
        for (i, t) in self.turns.iter().enumerate() {
            out.push_str(&t.user);
            out.push('\n');
            if i + 1 < self.turns.len() {
                out.push_str(&t.assistant);
                out.push('\n');
            }
        }
        out
    }

    /// The training target: the last assistant answer.
    pub fn target_text(&self) -> &str {
        self.turns.last().map(|t| t.assistant.as_str()).unwrap_or("")
    }

    /// Every text of the dialogue, for hashing and searching.
    pub fn all_text(&self) -> String {
        let mut out = self.source_text();
        out.push_str(self.target_text());
        out
    }
}
