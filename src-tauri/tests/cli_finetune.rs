//! `doctorglm finetune prepare|train|resume` as a person runs them: a real export is prepared,
//! the tiny ChatGLM3 fixture is trained for a few steps, the PEFT adapter loads in the engine
//! and is registered (app registry and encrypted store); Ctrl-C leaves a checkpoint that
//! `resume` continues.
mod common;
use common::{command as cmd, run, s, shared, text};
use doctorglm::store::{AppPaths, KeySource, Store, TrainingStatus};
use doctorglm_models::{LoadOptions, Model};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn tiny_model() -> PathBuf {
    common::tiny_model("chatglm3-tiny")
}

fn export() -> PathBuf {
    shared().join("data/exports/medicalgpt-sft-1k.sharegpt.jsonl")
}

/// Settings small enough for the tiny model on two shared cores.
const FAST: &[&str] = &[
    "--lr", "1e-3", "--max-source", "40", "--max-target", "16", "--eval-max-examples", "8", "--probe",
    "中国的首都是哪座城市？=北京", "--probe-max-tokens", "4",
];

fn prepare(data: &Path) -> PathBuf {
    let ds = data.join("prepared");
    let out = run(data, &["finetune", "prepare", s(&export()), "-o", s(&ds), "--validation", "0.05"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("wrote"), "{}", text(&out));
    ds
}

#[test]
fn train_registers_an_adapter_that_loads() {
    let data = tempfile::tempdir().unwrap();
    let ds = prepare(data.path());
    let output = data.path().join("run");
    let model = tiny_model();
    let mut args = vec![
        "finetune", "train", "--base", s(&model), "--data", s(&ds), "-o", s(&output), "--name", "dept-test",
        "--max-steps", "6", "--eval-every", "3", "--json",
    ];
    args.extend_from_slice(FAST);
    let out = run(data.path(), &args);
    assert!(out.status.success(), "{}", text(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(result["reason"], "completed", "{result}");
    assert_eq!(result["steps"], 6);
    let adapter_id = result["adapterId"].as_str().expect("registered").to_string();

    // PEFT files, and they load in the engine over the base.
    let adapter = output.join("adapter");
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        assert!(adapter.join(f).is_file(), "{f} missing");
    }
    assert!(output.join("training_summary.json").is_file());
    let mut model = Model::load(&tiny_model(), &LoadOptions::default()).unwrap();
    model.load_lora("trained", &adapter).unwrap();

    // In the app's registry (models list / chat picker), under its name, on its base.
    let out = run(data.path(), &["models", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let registry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let adapters = registry["adapters"].as_array().unwrap();
    let a = adapters.iter().find(|a| a["id"] == adapter_id.as_str()).expect("the adapter is listed");
    assert_eq!(a["info"]["name"], "dept-test");
    assert_eq!(a["baseId"], registry["models"][0]["id"]);
    let out = run(data.path(), &["models", "list"]);
    assert!(text(&out).contains("dept-test"), "{}", text(&out));

    // In the encrypted store: adapter tied to its run; run completed with metrics and evaluations.
    let store = Store::open(&AppPaths::under(data.path()), KeySource::Auto).unwrap();
    let stored = store.adapter_by_name("dept-test").unwrap().expect("the adapter is in the store");
    let run_id = stored.training_run_id.expect("tied to its training run");
    assert_eq!(result["runId"], run_id);
    let record = store.training_run(run_id).unwrap();
    assert_eq!(record.status, TrainingStatus::Completed);
    assert_eq!(record.config["settings"]["rank"], 8);
    assert_eq!(record.config["settings"]["optimizer"], "lion");
    assert!(record.base_model_id.is_some() && record.dataset_id.is_some());
    let metrics = store.training_metrics(run_id).unwrap();
    assert_eq!(metrics.iter().map(|m| m.step).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
    assert!(metrics.iter().all(|m| m.loss.is_some_and(f64::is_finite)));
    let evaluated: Vec<i64> = metrics.iter().filter(|m| m.eval_loss.is_some()).map(|m| m.step).collect();
    assert_eq!(evaluated, vec![3, 6]);

    // A second train into the same folder is refused: it holds a checkpoint.
    let out = run(data.path(), &args);
    assert!(!out.status.success());
    assert!(text(&out).contains("resume"), "{}", text(&out));
}

#[cfg(unix)]
#[test]
fn ctrl_c_leaves_a_checkpoint_that_resume_continues() {
    let data = tempfile::tempdir().unwrap();
    let ds = prepare(data.path());
    let output = data.path().join("run");
    let model = tiny_model();
    let mut args = vec![
        "finetune", "train", "--base", s(&model), "--data", s(&ds), "-o", s(&output), "--name", "interrupted",
        "--epochs", "1000", "--eval-every", "0", "--checkpoint-every", "2",
    ];
    args.extend_from_slice(FAST);
    let mut child = cmd(data.path(), &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let latest = output.join("checkpoints/LATEST");
    while !latest.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("training ended before its first checkpoint: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("cancelled at step"), "{}", text(&out));
    assert!(text(&out).contains("finetune resume"), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(output.join("training_summary.json")).unwrap()).unwrap();
    let stopped_at = summary["steps"].as_u64().unwrap();
    assert!(stopped_at >= 2);
    assert_eq!(summary["stop_reason"], "cancelled");

    // Not registered while cancelled; the run says so.
    let out = run(data.path(), &["models", "list"]);
    assert!(!text(&out).contains("interrupted"), "{}", text(&out));
    {
        let store = Store::open(&AppPaths::under(data.path()), KeySource::Auto).unwrap();
        let runs = store.list_training_runs().unwrap();
        assert_eq!(runs[0].status, TrainingStatus::Cancelled);
    }

    // Resume to a few steps more: continues from the checkpoint, completes and registers.
    let target = (stopped_at + 2).to_string();
    let out = run(data.path(), &["finetune", "resume", s(&output), "--max-steps", &target, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(result["reason"], "completed");
    assert_eq!(result["steps"].as_u64(), Some(stopped_at + 2));
    assert!(result["adapterId"].is_string());
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(output.join("training_summary.json")).unwrap()).unwrap();
    assert_eq!(summary["history"].as_array().unwrap().len() as u64, stopped_at + 2, "one history across the two runs");
    let out = run(data.path(), &["models", "list"]);
    assert!(text(&out).contains("interrupted"), "{}", text(&out));
}

#[test]
fn train_with_a_missing_dataset_says_what_is_wrong() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("nothing-here");
    let out = run(data.path(), &["finetune", "train", "--base", s(&tiny_model()), "--data", s(&missing)]);
    assert!(!out.status.success());
    assert!(text(&out).contains("manifest.json"), "{}", text(&out));
    let out = run(data.path(), &["finetune", "resume", s(&missing)]);
    assert!(!out.status.success());
    assert!(text(&out).contains("finetune_job.json"), "{}", text(&out));
}
