//! The `doctorglm` binary's subcommands, run as a person would, on a fresh data folder.
mod common;
use common::{fixtures, run, text};

#[test]
fn models_import_then_list() {
    let data = tempfile::tempdir().unwrap();
    let out = run(data.path(), &["models", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no model imported"), "{}", text(&out));

    let model = fixtures().join("models/chatglm3-tiny");
    let out = run(data.path(), &["models", "import", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("imported chatglm3-tiny (ChatGLM2/3"), "{}", text(&out));
    assert!(text(&out).contains("2 adapter(s)"), "{}", text(&out));

    let out = run(data.path(), &["models", "list", "--json"]);
    let registry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(registry["models"].as_array().unwrap().len(), 1);
    assert_eq!(registry["models"][0]["info"]["architecture"], "chatglm3");
    assert_eq!(registry["adapters"].as_array().unwrap().len(), 2);
}

#[test]
fn importing_a_non_model_fails_with_a_reason() {
    let data = tempfile::tempdir().unwrap();
    let out = run(data.path(), &["models", "import", data.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("config.json is missing"), "{}", text(&out));
}

#[test]
fn ask_without_a_model_says_how_to_import_one() {
    let data = tempfile::tempdir().unwrap();
    let out = run(data.path(), &["ask", "What is asthma?"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("doctorglm models import"), "{}", text(&out));
}

#[test]
fn export_of_an_empty_history_is_empty_json() {
    let data = tempfile::tempdir().unwrap();
    let out = run(data.path(), &["export", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(), serde_json::json!([]));
}

#[test]
fn store_status_backup_and_restore() {
    let data = tempfile::tempdir().unwrap();
    let out = run(data.path(), &["store", "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kind = status["key"]["kind"].as_str().unwrap_or("");
    assert!(kind == "keyring" || kind == "keyring_unavailable", "{status}");
    if kind == "keyring_unavailable" {
        assert!(!status["key"]["reason"].as_str().unwrap_or("").is_empty(), "the reason is given: {status}");
    }
    assert!(status["schemaVersion"].as_u64().unwrap() >= 2);
    let out = run(data.path(), &["store", "status"]);
    assert!(text(&out).contains("key:"), "{}", text(&out));

    let backup = data.path().join("backup.db");
    let out = run(data.path(), &["store", "backup", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(backup.exists());
    let out = run(data.path(), &["store", "backup", backup.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("already exists"), "{}", text(&out));
    let out = run(data.path(), &["store", "restore", backup.to_str().unwrap()]);
    assert!(out.status.success() && text(&out).contains("restored from"), "{}", text(&out));
    let out = run(data.path(), &["store", "restore", data.path().join("missing.db").to_str().unwrap()]);
    assert!(!out.status.success());
}

#[test]
fn an_asked_question_is_kept_encrypted_and_exported_by_the_next_process() {
    let data = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/chatglm3-tiny");
    let out = run(data.path(), &["models", "import", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(data.path(), &["ask", "高血压怎么治疗？", "--preset", "conservative", "--max-new-tokens", "4"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(data.path(), &["export", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(docs[0]["messages"][0]["content"], "高血压怎么治疗？", "{docs}");
    assert_eq!(docs[0]["messages"][1]["status"], "complete", "{docs}");
    // Nothing in the data folder holds the question in plaintext.
    for entry in std::fs::read_dir(data.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let needle = "高血压怎么治疗".as_bytes();
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "plaintext in {}", path.display());
        }
    }
}
