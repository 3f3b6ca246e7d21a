//! `doctorglm models check|import-adapter|remove` run as a person would, with the tiny
//! fixture models and their PEFT/P-tuning adapters: a good adapter is registered and used,
//! an adapter for another base or a damaged one is refused with a reason and leaves the
//! registry as it was, and removing an unknown model or one already used in conversations
//! behaves (nothing saved is lost).
mod common;
use common::{json, run, s, text, tiny_model};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn registry(data: &Path) -> Value {
    json(&run(data, &["models", "list", "--json"]))
}

/// Imports a tiny model and returns its id.
fn import(data: &Path, name: &str) -> String {
    let out = run(data, &["models", "import", s(&tiny_model(name))]);
    assert!(out.status.success(), "{}", text(&out));
    let r = registry(data);
    let m = r["models"].as_array().unwrap().iter().find(|m| m["info"]["name"] == name).expect("the imported model");
    m["id"].as_str().unwrap().to_string()
}

/// A copy of a fixture adapter folder under `dir/name` (to damage it, or to import it as new).
fn copy_adapter(from: &Path, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to
}

/// Runs a command that must fail: its message holds `expected`, no panic, and the registry
/// is as it was.
fn refused(data: &Path, args: &[&str], expected: &str) -> String {
    let before = registry(data);
    let out = run(data, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} should fail: {}", text(&out));
    assert!(err.contains(expected), "{args:?}: expected {expected:?} in {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_eq!(registry(data), before, "{args:?} changed the registry");
    err
}

#[test]
fn check_describes_a_model_without_importing_it() {
    let data = tempfile::tempdir().unwrap();
    let v = json(&run(data.path(), &["models", "check", s(&tiny_model("glm4-tiny"))]));
    assert_eq!(v["architecture"], "glm4");
    assert_eq!((v["hiddenSize"].as_u64(), v["numLayers"].as_u64(), v["vocabSize"].as_u64()), (Some(64), Some(2), Some(151552)));
    assert_eq!(v["weightFormat"], "safetensors");
    assert!(v["parameters"].as_u64().unwrap() > 2 * 151552 * 64, "{v}");
    assert!(v["memoryInt4Bytes"].as_u64() < v["memoryF16Bytes"].as_u64(), "{v}");
    assert_eq!(v["adaptersFound"].as_array().map(Vec::len), Some(2));
    let v1 = json(&run(data.path(), &["models", "check", s(&tiny_model("chatglm-6b-v1-tiny"))]));
    assert_eq!((v1["architecture"].as_str(), v1["weightFormat"].as_str()), (Some("chatglm6b"), Some("pytorch")));
    // Nothing was imported.
    assert_eq!(registry(data.path())["models"].as_array().map(Vec::len), Some(0));
    let out = run(data.path(), &["models", "list"]);
    assert!(text(&out).contains("no model imported"), "{}", text(&out));
}

#[test]
fn check_refuses_what_is_not_a_model() {
    let data = tempfile::tempdir().unwrap();
    let adapter = tiny_model("chatglm3-tiny").join("lora-adapter");
    refused(data.path(), &["models", "check", s(&adapter)], "config.json is missing");
    refused(data.path(), &["models", "check", s(&data.path().join("nothing-here"))], "not a folder");
    // A model folder whose weight shard was cut short.
    let cut = data.path().join("cut-model");
    std::fs::create_dir(&cut).unwrap();
    let original = tiny_model("chatglm3-tiny");
    for e in std::fs::read_dir(&original).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), cut.join(e.file_name())).unwrap();
        }
    }
    let shard = cut.join("model-00001-of-00002.safetensors");
    let len = std::fs::metadata(&shard).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&shard).unwrap().set_len(len / 2).unwrap();
    refused(data.path(), &["models", "check", s(&cut)], "truncated");
    refused(data.path(), &["models", "import", s(&cut)], "truncated");
}

#[test]
fn a_good_adapter_is_registered_on_its_base_and_answers() {
    let data = tempfile::tempdir().unwrap();
    let base = import(data.path(), "chatglm3-tiny");
    let before = registry(data.path())["adapters"].as_array().unwrap().len();
    let mine = copy_adapter(&tiny_model("chatglm3-tiny").join("lora-adapter"), data.path(), "cardiology-lora");
    let out = run(data.path(), &["models", "import-adapter", &base, s(&mine)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("imported adapter cardiology-lora as"), "{}", text(&out));
    let r = registry(data.path());
    let adapters = r["adapters"].as_array().unwrap();
    assert_eq!(adapters.len(), before + 1);
    let a = adapters.iter().find(|a| a["info"]["name"] == "cardiology-lora").expect("listed");
    assert_eq!(a["baseId"].as_str(), Some(base.as_str()));
    assert_eq!((a["info"]["adapter"]["kind"].as_str(), a["info"]["adapter"]["r"].as_u64()), (Some("lora"), Some(8)));
    let out = run(data.path(), &["models", "list"]);
    assert!(text(&out).contains("cardiology-lora"), "{}", text(&out));

    // Importing the same folder again refreshes it; no second record.
    let out = run(data.path(), &["models", "import-adapter", &base, s(&mine)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(registry(data.path())["adapters"].as_array().unwrap().len(), before + 1);

    // The engine answers with it over the base.
    let id = a["id"].as_str().unwrap();
    let answer = json(&run(
        data.path(),
        &["ask", "高血压怎么治疗？", "--adapter", id, "--preset", "conservative", "--max-new-tokens", "3", "--json", "--no-save"],
    ));
    assert_eq!((answer["model"].as_str(), answer["adapter"].as_str()), (Some("chatglm3-tiny"), Some("cardiology-lora")), "{answer}");
    assert_eq!(answer["status"], "complete", "{answer}");
}

#[test]
fn an_adapter_for_another_base_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let chatglm3 = import(data.path(), "chatglm3-tiny");
    let v1 = import(data.path(), "chatglm-6b-v1-tiny");
    let import_adapter = |base: &str, model: &str, adapter: &str| {
        let path = tiny_model(model).join(adapter);
        vec!["models".to_string(), "import-adapter".into(), base.to_string(), path.display().to_string()]
    };
    for (base, model, adapter) in [
        (&chatglm3, "chatglm-6b-v1-tiny", "lora-adapter"),
        (&chatglm3, "glm4-tiny", "lora-adapter"),
        (&v1, "chatglm3-tiny", "lora-adapter"),
        (&v1, "chatglm3-tiny", "ptuning-v2"),
        (&chatglm3, "chatglm-6b-v1-tiny", "ptuning-v2"),
    ] {
        let args = import_adapter(base, model, adapter);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(data.path(), &args, "does not fit the base model");
    }
    // An unknown base.
    let args = import_adapter("999", "chatglm3-tiny", "lora-adapter");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(data.path(), &args, "model 999 was not found");
}

#[test]
fn a_damaged_adapter_is_refused_and_the_registry_is_unchanged() {
    let data = tempfile::tempdir().unwrap();
    let base = import(data.path(), "chatglm3-tiny");
    let lora = tiny_model("chatglm3-tiny").join("lora-adapter");

    // Cut short after its header: the tensors are not all there.
    let cut = copy_adapter(&lora, data.path(), "cut");
    let file = cut.join("adapter_model.safetensors");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len - 100).unwrap();
    refused(data.path(), &["models", "import-adapter", &base, s(&cut)], "truncated");

    // Cut short inside its header.
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(20).unwrap();
    refused(data.path(), &["models", "import-adapter", &base, s(&cut)], "truncated");

    // Not a safetensors file at all.
    let garbage = copy_adapter(&lora, data.path(), "garbage");
    std::fs::write(garbage.join("adapter_model.safetensors"), "this is not a tensor file, just some text\n".repeat(50)).unwrap();
    refused(data.path(), &["models", "import-adapter", &base, s(&garbage)], "adapter_model.safetensors");

    // A damaged adapter_config.json.
    let config = copy_adapter(&lora, data.path(), "bad-config");
    std::fs::write(config.join("adapter_config.json"), "{\"r\": 8, \"peft_type\": ").unwrap();
    refused(data.path(), &["models", "import-adapter", &base, s(&config)], "adapter_config.json");

    // Its weights missing.
    let empty = copy_adapter(&lora, data.path(), "no-weights");
    std::fs::remove_file(empty.join("adapter_model.safetensors")).unwrap();
    refused(data.path(), &["models", "import-adapter", &base, s(&empty)], "adapter_model.safetensors is missing");
}

#[test]
fn remove_an_unknown_model_or_one_used_in_conversations() {
    let data = tempfile::tempdir().unwrap();
    refused(data.path(), &["models", "remove", "999"], "model 999 was not found");
    let id = import(data.path(), "chatglm3-tiny");
    refused(data.path(), &["models", "remove", "999"], "model 999 was not found");
    refused(data.path(), &["models", "remove", "chatglm3-tiny"], "was not found");

    // The model answers a saved question with one of its adapters, then is removed.
    let adapter = registry(data.path())["adapters"][0]["id"].as_str().unwrap().to_string();
    let out = run(data.path(), &["ask", "发热三天怎么办", "--adapter", &adapter, "--preset", "conservative", "--max-new-tokens", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    // The answer came from Q4_0 weights quantized on load and cached in the data folder.
    let cache = data.path().join("model-cache").join(format!("{id}.q4_0.gguf"));
    assert!(cache.is_file(), "no weight cache at {}", cache.display());
    let out = run(data.path(), &["models", "remove", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("removed {id}")), "{}", text(&out));
    let r = registry(data.path());
    assert_eq!((r["models"].as_array().map(Vec::len), r["adapters"].as_array().map(Vec::len)), (Some(0), Some(0)), "{r}");
    assert!(!cache.exists(), "the removed model's weight cache is left behind");
    // Its files stay on disk; the conversation and what answered it are kept.
    assert!(tiny_model("chatglm3-tiny").join("config.json").is_file());
    let docs = json(&run(data.path(), &["export", "--format", "json"]));
    let answer = &docs[0]["messages"][1];
    assert_eq!((answer["status"].as_str(), answer["model"].as_str()), (Some("complete"), Some("chatglm3-tiny")), "{docs}");
    assert!(answer["adapter"].is_string(), "{answer}");
    // Now it is unknown, and a question says how to import a model.
    refused(data.path(), &["models", "remove", &id], "was not found");
    let out = run(data.path(), &["ask", "发热三天怎么办"]);
    assert!(!out.status.success() && text(&out).contains("doctorglm models import"), "{}", text(&out));
    // Imported again, it answers again.
    import(data.path(), "chatglm3-tiny");
    let out = run(data.path(), &["ask", "发热三天怎么办", "--max-new-tokens", "2", "--no-save"]);
    assert!(out.status.success(), "{}", text(&out));
}
