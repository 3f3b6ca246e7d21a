//! Shared helpers of the integration tests: fixture paths, a small real dataset, fast settings.
#![allow(dead_code)]
use doctorglm_datasets::import::{import, ReadOptions};
use doctorglm_datasets::{Control, Dialogue};
use doctorglm_finetune::probe::ProbeQuestion;
use doctorglm_finetune::FinetuneSettings;
use std::path::PathBuf;

/// The repository's `../shared` folder.
pub fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("shared")
}

/// The tiny ChatGLM3 fixture model (`$DOCTORGLM_FIXTURES`, else `../shared/fixtures`).
pub fn tiny_model() -> PathBuf {
    let root = std::env::var_os("DOCTORGLM_FIXTURES").map(PathBuf::from).unwrap_or_else(|| shared().join("fixtures"));
    root.join("models").join("chatglm3-tiny")
}

/// The first `n` dialogues of the real GenMedGPT export (Chinese, alpaca layout), imported
/// by the datasets crate.
pub fn genmedgpt(n: usize) -> Vec<Dialogue> {
    let path = shared().join("data").join("exports").join("genmedgpt-5k.zh.alpaca.json");
    let outcome = import(&path, None, &ReadOptions::default(), &mut Control::none()).expect("the GenMedGPT export imports");
    assert!(outcome.dialogues.len() >= n, "the export has {} dialogues", outcome.dialogues.len());
    outcome.dialogues.into_iter().take(n).collect()
}

/// Settings small enough for two slow shared cores on the tiny model.
pub fn fast_settings() -> FinetuneSettings {
    FinetuneSettings {
        lr: 1e-3,
        max_source: 40,
        max_target: 16,
        batch_size: 4,
        eval_max_examples: Some(8),
        probe: vec![ProbeQuestion { question: "中国的首都是哪座城市？".into(), expected: vec!["北京".into()] }],
        probe_max_tokens: 6,
        ..Default::default()
    }
}
