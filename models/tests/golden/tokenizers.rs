//! Golden cases: tokenizers and chat formats against `tokenizers/goldens.json` and every
//! model folder's `expected.json` `input_ids`.
//!
//! Each family's tokenizer comes from a model folder under `models/` (the family is read from
//! the folder's tokenizer file); golden keys map to families: `chatglm_6b`, `chatglm3`, `glm4`.
use crate::report::Report;
use doctorglm_models::tokenizer::{TokenizerFamily, Tokenizer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The family a golden key names.
fn family_of_key(key: &str) -> Option<TokenizerFamily> {
    match key {
        "chatglm_6b" => Some(TokenizerFamily::ChatGlm6b),
        "chatglm3" => Some(TokenizerFamily::ChatGlm3),
        "glm4" => Some(TokenizerFamily::Glm4),
        _ => None,
    }
}

fn ids(v: &Value) -> Result<Vec<u32>, String> {
    v.as_array()
        .ok_or("ids are not a list")?
        .iter()
        .map(|x| x.as_u64().map(|n| n as u32).ok_or_else(|| "an id is not a number".to_string()))
        .collect()
}

fn history(v: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    let Some(Value::Array(turns)) = v else { return Ok(Vec::new()) };
    turns
        .iter()
        .map(|t| match t.as_array().map(|a| a.as_slice()) {
            Some([Value::String(q), Value::String(a)]) => Ok((q.clone(), a.clone())),
            _ => Err("a history turn is not [question, answer]".to_string()),
        })
        .collect()
}

/// Shows where two id lists first differ.
fn diff(what: &str, got: &[u32], want: &[u32]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    let lo = at.saturating_sub(3);
    Err(format!(
        "{what}: first difference at {at} (lengths {} vs {}): got {:?} want {:?}",
        got.len(),
        want.len(),
        &got[lo..(at + 4).min(got.len())],
        &want[lo..(at + 4).min(want.len())]
    ))
}

/// Streams the ids one at a time and checks the pieces join to the full decode.
fn stream_matches(tok: &Tokenizer, ids: &[u32], full: &str) -> Result<(), String> {
    let mut dec = tok.stream_decoder();
    let mut joined = String::new();
    for &id in ids {
        joined.push_str(&dec.push(id));
    }
    joined.push_str(&dec.finish());
    if joined == full {
        Ok(())
    } else {
        Err(format!("streamed decode {joined:?} differs from decode {full:?}"))
    }
}

fn model_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("models"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Adds this group's cases to the report.
pub fn run(root: &Path, report: &mut Report) {
    // One tokenizer per family, from the model folders.
    let mut by_family: BTreeMap<String, Tokenizer> = BTreeMap::new();
    for dir in model_dirs(root) {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut loaded = None;
        report.check(&format!("tokenizer/load/{name}"), || {
            let tok = Tokenizer::load(&dir).map_err(|e| e.to_string())?;
            loaded = Some(tok);
            Ok(())
        });
        let Some(tok) = loaded else { continue };
        by_family.entry(format!("{:?}", tok.family())).or_insert_with(|| tok.clone());
        model_cases(&dir, &name, &tok, report);
    }

    let path = root.join("tokenizers/goldens.json");
    let goldens: Value = match std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|t| {
        serde_json::from_str(&t).map_err(|e| e.to_string())
    }) {
        Ok(v) => v,
        Err(e) => {
            report.check("tokenizer/goldens.json", || Err(format!("cannot read {}: {e}", path.display())));
            return;
        }
    };
    let tokenizer_for = |key: &str| -> Result<&Tokenizer, String> {
        let family = family_of_key(key).ok_or_else(|| format!("unknown golden family `{key}`"))?;
        by_family
            .get(&format!("{family:?}"))
            .ok_or_else(|| format!("no model folder provides a {family:?} tokenizer"))
    };

    let texts = goldens.get("texts").and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, case) in texts.iter().enumerate() {
        let Some(obj) = case.as_object() else { continue };
        let text = obj.get("text").and_then(Value::as_str).unwrap_or_default();
        for (key, want) in obj.iter().filter(|(k, _)| *k != "text") {
            report.check(&format!("tokenizer/{key}/text{i}"), || {
                let tok = tokenizer_for(key)?;
                let want_ids = ids(want.get("ids").ok_or("no ids")?)?;
                diff("encode", &tok.encode(text), &want_ids)?;
                let decoded = tok.decode(&want_ids);
                if let Some(want_text) = want.get("decoded").and_then(Value::as_str) {
                    if decoded != want_text {
                        return Err(format!("decode gave {decoded:?}, want {want_text:?}"));
                    }
                }
                stream_matches(tok, &want_ids, &decoded)?;
                if let Some(with) = want.get("ids_with_special") {
                    diff("encode with special tokens", &tok.encode_with_special(text), &ids(with)?)?;
                }
                Ok(())
            });
        }
    }

    let chats = goldens.get("chats").and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, chat) in chats.iter().enumerate() {
        let Some(obj) = chat.as_object() else { continue };
        let system = obj.get("system").and_then(Value::as_str);
        let query = obj.get("query").and_then(Value::as_str).unwrap_or_default();
        for (key, want) in obj.iter().filter(|(k, _)| family_of_key(k).is_some()) {
            report.check(&format!("tokenizer/{key}/chat{i}"), || {
                let tok = tokenizer_for(key)?;
                let hist = history(obj.get("history"))?;
                diff("chat prompt", &tok.build_chat(system, &hist, query), &ids(want)?)
            });
        }
    }
}

/// The prompt ids of every case of a model folder's `expected.json`.
fn model_cases(dir: &Path, name: &str, tok: &Tokenizer, report: &mut Report) {
    let Ok(text) = std::fs::read_to_string(dir.join("expected.json")) else { return };
    let expected: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            report.check(&format!("tokenizer/{name}/expected.json"), || Err(e.to_string()));
            return;
        }
    };
    let cases = expected.get("cases").and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, case) in cases.iter().enumerate() {
        report.check(&format!("tokenizer/{name}/case{i}/input_ids"), || {
            let query = case.get("query").and_then(Value::as_str).ok_or("case has no query")?;
            let system = case.get("system").and_then(Value::as_str);
            let hist = history(case.get("history"))?;
            let want = ids(case.get("input_ids").ok_or("case has no input_ids")?)?;
            diff("input_ids", &tok.build_chat(system, &hist, query), &want)
        });
    }
}
