//! `doctorglm chat`, the terminal conversation, run as a person would: lines typed on stdin
//! are answered by the tiny ChatGLM3 fixture, the conversation is saved in the store and
//! exported, and end of input, an empty line or `/quit` end it cleanly.
mod common;
use common::{command, json, run, s, text, tiny_model};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

/// Small and deterministic: the conservative preset, a few tokens.
const FAST: &[&str] = &["--preset", "conservative", "--max-new-tokens", "4"];

fn import_tiny(data: &Path) {
    let out = run(data, &["models", "import", s(&tiny_model("chatglm3-tiny"))]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Runs `doctorglm chat` with `extra` arguments, typing `input` and then closing stdin.
fn chat(data: &Path, extra: &[&str], input: &str) -> Output {
    let mut args = vec!["chat"];
    args.extend_from_slice(FAST);
    args.extend_from_slice(extra);
    let mut child = command(data, &args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the doctorglm binary starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.as_bytes()).expect("chat reads its input");
    drop(stdin); // end of input
    child.wait_with_output().expect("chat ends")
}

/// Every conversation, exported as JSON.
fn exported(data: &Path) -> Vec<Value> {
    json(&run(data, &["export", "--format", "json"])).as_array().cloned().expect("an array of conversations")
}

fn messages(conversation: &Value) -> Vec<Value> {
    conversation["messages"].as_array().cloned().unwrap_or_default()
}

fn saved_id(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("saved")).unwrap_or_else(|| panic!("no `saved` line: {}", text(out)));
    line.split_whitespace().nth(2).unwrap_or_else(|| panic!("{line}")).to_string()
}

#[test]
fn each_line_is_answered_and_the_conversation_is_saved_and_exported() {
    let data = tempfile::tempdir().unwrap();
    import_tiny(data.path());
    let out = chat(data.path(), &[], "高血压怎么治疗？\n头痛怎么办\n");
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("clinician"), "the reminder is shown: {err}");
    assert!(err.contains("[sources: 高血压"), "the designer's sources are shown: {err}");
    assert!(!err.contains("error"), "{err}");

    let conversations = exported(data.path());
    assert_eq!(conversations.len(), 1, "both questions went into one conversation: {conversations:#?}");
    let m = messages(&conversations[0]);
    let roles: Vec<&str> = m.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!((m[0]["content"].as_str(), m[2]["content"].as_str()), (Some("高血压怎么治疗？"), Some("头痛怎么办")));
    for answer in [&m[1], &m[3]] {
        assert_eq!(answer["status"], "complete", "{answer}");
        assert_eq!(answer["model"], "chatglm3-tiny", "{answer}");
        let tokens = answer["completion_tokens"].as_i64().unwrap_or(0);
        assert!((1..=4).contains(&tokens), "{answer}");
        assert!(!answer["content"].as_str().unwrap_or("").is_empty(), "{answer}");
    }
    // What was printed is what was saved: each answer streamed, then a line end.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed, format!("{}\n{}\n", m[1]["content"].as_str().unwrap(), m[3]["content"].as_str().unwrap()));

    // The id it reports is the saved conversation's; Markdown export of it to a file.
    let id = saved_id(&out);
    assert_eq!(conversations[0]["conversation"]["id"].to_string(), id);
    let file = data.path().join("conversation.md");
    let out = run(data.path(), &["export", "--conversation", &id, "--format", "markdown", "-o", s(&file)]);
    assert!(out.status.success(), "{}", text(&out));
    let md = std::fs::read_to_string(&file).unwrap();
    assert!(md.starts_with("# 高血压怎么治疗？"), "{md}");
    assert!(md.contains("头痛怎么办") && md.contains(m[3]["content"].as_str().unwrap()), "{md}");
}

#[test]
fn quit_ends_the_conversation_and_is_not_a_question() {
    let data = tempfile::tempdir().unwrap();
    import_tiny(data.path());
    let out = chat(data.path(), &[], "发热\n/quit\n咳嗽\n");
    assert!(out.status.success(), "{}", text(&out));
    let m = messages(&exported(data.path())[0]);
    let questions: Vec<&str> = m.iter().filter(|m| m["role"] == "user").filter_map(|m| m["content"].as_str()).collect();
    assert_eq!(questions, ["发热"], "nothing after /quit is asked");
    assert_eq!(m.len(), 2);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1, "one answer: {}", text(&out));

    // An empty line ends it too.
    let out = chat(data.path(), &[], "胸痛\n\n腹泻\n");
    assert!(out.status.success(), "{}", text(&out));
    let all = exported(data.path());
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|c| messages(c).len() == 2), "{all:#?}");
}

#[test]
fn end_of_input_at_once_saves_nothing() {
    let data = tempfile::tempdir().unwrap();
    import_tiny(data.path());
    let out = chat(data.path(), &[], "");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("saved"), "{}", text(&out));
    assert!(exported(data.path()).is_empty());
}

#[test]
fn a_saved_conversation_continues_with_its_history() {
    let data = tempfile::tempdir().unwrap();
    import_tiny(data.path());
    // The same question asked first in a new conversation and then after an earlier turn:
    // the second prompt holds the earlier exchange, so it is longer.
    let fresh = chat(data.path(), &[], "头痛怎么办\n");
    assert!(fresh.status.success(), "{}", text(&fresh));
    let first = chat(data.path(), &[], "高血压怎么治疗？\n");
    let id = saved_id(&first);
    let more = chat(data.path(), &["--conversation", &id], "头痛怎么办\n");
    assert!(more.status.success(), "{}", text(&more));
    assert_eq!(saved_id(&more), id);

    let all = exported(data.path());
    assert_eq!(all.len(), 2, "no third conversation: {all:#?}");
    // The id as the export writes it (a JSON number).
    let id_value: Value = serde_json::from_str(&id).expect("a conversation id");
    let continued = all.iter().find(|c| c["conversation"]["id"] == id_value).expect("the continued conversation");
    let m = messages(continued);
    let questions: Vec<&str> = m.iter().filter(|m| m["role"] == "user").filter_map(|m| m["content"].as_str()).collect();
    assert_eq!(questions, ["高血压怎么治疗？", "头痛怎么办"]);
    let other = all.iter().find(|c| c["conversation"]["id"] != id_value).unwrap();
    let prompt = |m: &Value| m["prompt_tokens"].as_i64().unwrap_or(0);
    let (alone, after) = (prompt(&messages(other)[1]), prompt(&m[3]));
    assert!(alone > 0 && after > alone, "with history {after} tokens, alone {alone}");
}

#[test]
fn without_a_model_it_says_how_to_import_one() {
    let data = tempfile::tempdir().unwrap();
    let out = chat(data.path(), &[], "发热\n");
    assert!(!out.status.success(), "nothing can be answered: {}", text(&out));
    assert!(text(&out).contains("doctorglm models import"), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.lines().any(|l| l.starts_with('>')), "no prompt for a question: {err}");
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
    assert!(exported(data.path()).is_empty(), "nothing is saved without a model");
}
