//! The `doctorglm` binary's subcommands, run as a person would, on a fresh data folder.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    std::env::var_os("DOCTORGLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}

fn run(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_doctorglm"))
        .args(args)
        .env("DOCTORGLM_DATA_DIR", data)
        .env_remove("DOCTORGLM_TEST_ANSWER")
        .output()
        .expect("the doctorglm binary runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

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
