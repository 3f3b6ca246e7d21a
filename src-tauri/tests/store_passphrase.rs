//! A store made with a passphrase instead of the OS keyring, from the command line: the
//! passphrase comes on standard input (`--passphrase-stdin`) or in `DOCTORGLM_PASSPHRASE`,
//! never as an argument; without it, or with a wrong one, the store is refused unchanged.
mod common;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{snapshot, text};

fn doctorglm(data: &Path, args: &[&str], passphrase_env: Option<&str>, stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_doctorglm"));
    cmd.args(args)
        .env("DOCTORGLM_DATA_DIR", data)
        .env_remove("DOCTORGLM_PASSPHRASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = passphrase_env {
        cmd.env("DOCTORGLM_PASSPHRASE", p);
    }
    let mut child = cmd.spawn().expect("the doctorglm binary runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn passphrase_store_from_stdin_or_environment() {
    let data = tempfile::tempdir().unwrap();
    let status = ["--passphrase-stdin", "store", "status", "--json"];

    // A new store made with the passphrase typed on standard input.
    let out = doctorglm(data.path(), &status, None, "correct horse 电池\nrest of the input\n");
    assert!(out.status.success(), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["key"]["kind"], "passphrase", "{s}");
    assert!(!data.path().join("config/store.key").exists(), "no key file for a passphrase store");
    let before = snapshot(data.path());

    // Without the passphrase: refused, with a reason, and nothing is written.
    let out = doctorglm(data.path(), &["store", "status"], None, "");
    assert!(!out.status.success());
    assert!(text(&out).contains("key was not found"), "{}", text(&out));
    assert!(text(&out).contains("passphrase"), "{}", text(&out));
    // A wrong passphrase (environment): refused, nothing changed.
    let out = doctorglm(data.path(), &["store", "status"], Some("wrong horse"), "");
    assert!(!out.status.success());
    assert!(text(&out).contains("key or passphrase is wrong"), "{}", text(&out));
    // An empty first line on standard input.
    let out = doctorglm(data.path(), &status, None, "\n");
    assert!(!out.status.success());
    assert!(text(&out).contains("no passphrase was given"), "{}", text(&out));
    assert_eq!(snapshot(data.path()), before, "failed opens changed files");

    // The right passphrase, from the environment and from standard input.
    let out = doctorglm(data.path(), &["store", "status", "--json"], Some("correct horse 电池"), "");
    assert!(out.status.success(), "{}", text(&out));
    let out = doctorglm(data.path(), &status, None, "correct horse 电池\r\n");
    assert!(out.status.success(), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["key"]["kind"], "passphrase");
}
