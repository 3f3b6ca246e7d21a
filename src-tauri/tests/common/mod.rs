//! What the CLI integration tests share: where `../shared` is, and running the built
//! `doctorglm` binary on a given data folder (`$DOCTORGLM_DATA_DIR`) as a person would.
// Each test file uses part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `../shared` beside the repository.
pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// `../shared/data`: real public files.
pub fn shared_data() -> PathBuf {
    shared().join("data")
}

/// The reference fixtures (`$DOCTORGLM_FIXTURES`, else `../shared/fixtures`).
pub fn fixtures() -> PathBuf {
    std::env::var_os("DOCTORGLM_FIXTURES").map(PathBuf::from).unwrap_or_else(|| shared().join("fixtures"))
}

/// A tiny fixture model folder: `chatglm3-tiny`, `glm4-tiny` or `chatglm-6b-v1-tiny`.
pub fn tiny_model(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

/// The binary with `args`, on the data folder `data`; the environment that changes what it
/// does (scripted test answers, another library, log level) is removed.
pub fn command(data: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_doctorglm"));
    c.args(args)
        .env("DOCTORGLM_DATA_DIR", data)
        .env_remove("DOCTORGLM_TEST_ANSWER")
        .env_remove("DOCTORGLM_LIBRARY")
        .env_remove("RUST_LOG");
    c
}

/// Runs the binary to its end.
pub fn run(data: &Path, args: &[&str]) -> Output {
    command(data, args).output().expect("the doctorglm binary runs")
}

/// stdout and stderr together, for messages.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// stdout of a successful run as JSON.
pub fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

/// A temporary path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Every file under `dir` (recursively) with its bytes, to show that a refused command changed nothing.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}
