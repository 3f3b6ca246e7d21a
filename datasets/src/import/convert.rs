//! Turning one source record into a [`Dialogue`] under a [`Mapping`]; every failure has a reason.

use serde_json::Value;

use super::mapping::{Mapping, Shape};
use super::table::SourceRecord;
use crate::record::{Dialogue, Turn};

/// Converts a record, or says why it cannot be used.
pub fn convert(record: &SourceRecord, mapping: &Mapping) -> Result<Dialogue, String> {
    let turns = match &mapping.shape {
        Shape::QuestionAnswer { question, answer, history, inline_turns } => {
            question_answer(record, question, answer, history.as_deref(), *inline_turns)?
        }
        Shape::Conversation { field } => conversation(record, field)?,
        Shape::MultipleChoice { question, options, answer, explanation } => {
            vec![multiple_choice(record, question, options, answer, explanation.as_deref())?]
        }
    };
    let mut system = optional(record, mapping.system.as_deref())?;
    if system.is_none() {
        system = conversation_system(record, &mapping.shape);
    }
    Ok(Dialogue {
        turns,
        system,
        department: optional(record, mapping.department.as_deref())?,
        title: optional(record, mapping.title.as_deref())?,
        origin: Some(record.location),
    })
}

fn text(record: &SourceRecord, column: &str) -> Result<String, String> {
    match record.fields.get(column) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(other) => Err(format!("field '{column}' is a list or object, not text: {}", short(&other.to_string()))),
    }
}

fn optional(record: &SourceRecord, column: Option<&str>) -> Result<Option<String>, String> {
    match column {
        None => Ok(None),
        Some(c) => Ok(Some(text(record, c)?).filter(|s| !s.is_empty())),
    }
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out
}

fn question_answer(
    record: &SourceRecord,
    question: &[String],
    answer: &str,
    history: Option<&str>,
    inline: bool,
) -> Result<Vec<Turn>, String> {
    let mut parts = Vec::new();
    for c in question {
        if !record.fields.contains_key(c) && question.len() == 1 {
            return Err(format!("the record has no field '{c}'"));
        }
        let t = text(record, c)?;
        if !t.is_empty() {
            parts.push(t);
        }
    }
    let answer_text = text(record, answer)?;
    if !record.fields.contains_key(answer) {
        return Err(format!("the record has no field '{answer}'"));
    }
    let mut turns = match history {
        Some(h) => history_pairs(record, h)?,
        None => Vec::new(),
    };
    let question_text = parts.join("\n");
    let last_question = if inline && question_text.contains("<user>") {
        let (earlier, last) = inline_turns(&question_text)?;
        turns.extend(earlier);
        last
    } else {
        question_text
    };
    if last_question.is_empty() {
        return Err("the question is empty".into());
    }
    if answer_text.is_empty() {
        return Err(format!("the answer ('{answer}') is empty"));
    }
    turns.push(Turn { user: last_question, assistant: answer_text });
    Ok(turns)
}

/// Splits ` <user>: q1 <bot>: a1 <user>: q2` into `[(q1, a1)]` and `q2`.
fn inline_turns(s: &str) -> Result<(Vec<Turn>, String), String> {
    let mut pieces: Vec<(bool, String)> = Vec::new(); // (is_user, text)
    let mut rest = s;
    let marker = |t: &str| -> Option<(usize, usize, bool)> {
        let candidates = [("<user>:", true), ("<user>：", true), ("<bot>:", false), ("<bot>：", false)];
        candidates
            .iter()
            .filter_map(|(m, u)| t.find(m).map(|p| (p, m.len(), *u)))
            .min_by_key(|x| x.0)
    };
    let lead = match marker(rest) {
        Some((p, _, _)) => &rest[..p],
        None => return Err("no <user>: marker in the question".into()),
    };
    if !lead.trim().is_empty() {
        return Err(format!("text before the first <user>: marker: '{}'", short(lead.trim())));
    }
    while let Some((p, len, is_user)) = marker(rest) {
        let after = &rest[p + len..];
        let end = marker(after).map(|m| m.0).unwrap_or(after.len());
        pieces.push((is_user, after[..end].trim().to_string()));
        rest = &after[end..];
    }
    let mut turns = Vec::new();
    let mut expect_user = true;
    let mut pending = String::new();
    for (i, (is_user, t)) in pieces.iter().enumerate() {
        if *is_user != expect_user {
            return Err(format!("turn {} should be {} but is {}", i + 1, role(expect_user), role(*is_user)));
        }
        if t.is_empty() {
            return Err(format!("turn {} ({}) is empty", i + 1, role(*is_user)));
        }
        if *is_user {
            pending = t.clone();
        } else {
            turns.push(Turn { user: std::mem::take(&mut pending), assistant: t.clone() });
        }
        expect_user = !expect_user;
    }
    if expect_user {
        return Err("the question ends with a <bot>: turn instead of the user's last question".into());
    }
    Ok((turns, pending))
}

fn role(user: bool) -> &'static str {
    if user {
        "<user>"
    } else {
        "<bot>"
    }
}

fn history_pairs(record: &SourceRecord, column: &str) -> Result<Vec<Turn>, String> {
    match record.fields.get(column) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, pair)| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(q), Value::String(a)]) if !q.trim().is_empty() && !a.trim().is_empty() => {
                    Ok(Turn { user: q.trim().to_string(), assistant: a.trim().to_string() })
                }
                _ => Err(format!("history entry {} is not a [question, answer] pair of texts", i + 1)),
            })
            .collect(),
        Some(_) => Err(format!("field '{column}' should be a list of [question, answer] pairs")),
    }
}

fn is_user_role(r: &str) -> Option<bool> {
    match r.to_ascii_lowercase().as_str() {
        "human" | "user" | "patient" | "患者" | "用户" => Some(true),
        "gpt" | "assistant" | "bot" | "doctor" | "model" | "chatgpt" | "医生" => Some(false),
        _ => None,
    }
}

fn message(v: &Value, i: usize) -> Result<(String, String), String> {
    let obj = v.as_object().ok_or_else(|| format!("message {} is not an object", i + 1))?;
    let role = obj
        .get("from")
        .or_else(|| obj.get("role"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("message {} has no 'from' or 'role'", i + 1))?;
    let content = obj
        .get("value")
        .or_else(|| obj.get("content"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("message {} has no 'value' or 'content' text", i + 1))?;
    Ok((role.to_string(), content.trim().to_string()))
}

fn conversation(record: &SourceRecord, field: &str) -> Result<Vec<Turn>, String> {
    let list = match record.fields.get(field) {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(format!("field '{field}' is not a list of messages")),
        None => return Err(format!("the record has no field '{field}'")),
    };
    let mut turns = Vec::new();
    let mut pending: Option<String> = None;
    for (i, m) in list.iter().enumerate() {
        let (role, content) = message(m, i)?;
        if role.eq_ignore_ascii_case("system") {
            continue;
        }
        let user = is_user_role(&role).ok_or_else(|| format!("message {} has the unknown role '{role}'", i + 1))?;
        if content.is_empty() {
            return Err(format!("message {} ({role}) is empty", i + 1));
        }
        match (user, pending.take()) {
            (true, None) => pending = Some(content),
            (false, Some(q)) => turns.push(Turn { user: q, assistant: content }),
            (true, Some(_)) => return Err(format!("message {} is a second user message in a row", i + 1)),
            (false, None) => return Err(format!("message {} is an answer with no question before it", i + 1)),
        }
    }
    if pending.is_some() {
        return Err("the conversation ends with an unanswered user message".into());
    }
    if turns.is_empty() {
        return Err("the conversation has no question and answer".into());
    }
    Ok(turns)
}

fn conversation_system(record: &SourceRecord, shape: &Shape) -> Option<String> {
    let Shape::Conversation { field } = shape else { return None };
    let list = record.fields.get(field)?.as_array()?;
    list.iter().find_map(|m| {
        let (role, content) = message(m, 0).ok()?;
        (role.eq_ignore_ascii_case("system") && !content.is_empty()).then_some(content)
    })
}

fn multiple_choice(
    record: &SourceRecord,
    question: &str,
    options: &str,
    answer: &str,
    explanation: Option<&str>,
) -> Result<Turn, String> {
    let stem = text(record, question)?;
    if stem.is_empty() {
        return Err("the question is empty".into());
    }
    let raw_options = text(record, options)?;
    let lines: Vec<String> = raw_options
        .replace("\\n", "\n")
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return Err("the options are empty".into());
    }
    let letters = text(record, answer)?;
    let letters = letters.trim().to_ascii_uppercase();
    if letters.is_empty() {
        return Err("the answer is empty".into());
    }
    let mut chosen = Vec::new();
    for ch in letters.chars().filter(|c| !matches!(c, ',' | '，' | ' ' | '、')) {
        let option = lines
            .iter()
            .find(|l| l.starts_with(ch) && ch.is_ascii_uppercase())
            .ok_or_else(|| format!("the answer '{letters}' is not among the option letters"))?;
        chosen.push(option.clone());
    }
    let mut target = format!("答案：{}", chosen.join("；"));
    if let Some(col) = explanation {
        let e = text(record, col)?;
        if !e.is_empty() && e != "nan" {
            target.push_str("\n解析：");
            target.push_str(&e);
        }
    }
    Ok(Turn { user: format!("{stem}\n{}", lines.join("\n")), assistant: target })
}
