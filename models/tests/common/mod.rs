//! Shared helpers for the engine's integration tests: the fixture root and scratch copies.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

/// `$DOCTORGLM_FIXTURES`, else `<repo>/../shared/fixtures`.
pub fn fixture_root() -> PathBuf {
    match std::env::var_os("DOCTORGLM_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

/// The first model folder of the given family marker (`safetensors` or `bin` weights).
pub fn model_dir(with_index: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixture_root().join("models"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(with_index).is_file())
        .collect();
    dirs.sort();
    dirs.into_iter().next()
}

/// Every fixture model folder (one with an `expected.json`), sorted.
pub fn model_dirs() -> Vec<PathBuf> {
    let root = fixture_root().join("models");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("fixture models at {} (set DOCTORGLM_FIXTURES): {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Copies a folder (one level of subfolders) into a fresh temporary folder.
pub fn scratch_copy(src: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_dir(src, tmp.path());
    tmp
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create dir");
    for entry in std::fs::read_dir(src).expect("read fixture dir") {
        let path = entry.expect("entry").path();
        let target = dst.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
            let mut perms = std::fs::metadata(&target).expect("meta").permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).expect("chmod");
        }
    }
}

/// Reads the JSON file, edits it, writes it back.
pub fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read json")).expect("parse json");
    edit(&mut json);
    std::fs::write(path, serde_json::to_string_pretty(&json).expect("json")).expect("write json");
}

/// The `input_ids` of every case in a fixture model's `expected.json`.
pub fn case_ids(dir: &Path) -> Vec<Vec<u32>> {
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("expected.json is JSON");
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| c["input_ids"].as_array().expect("input_ids").iter().map(|x| x.as_u64().expect("id") as u32).collect())
        .collect()
}

/// The last position's logits of one fresh forward pass over `ids`.
pub fn logits(m: &doctorglm_models::Model, ids: &[u32]) -> Vec<f32> {
    let mut cache = m.new_cache(None);
    m.forward(&mut cache, ids, None, false).expect("forward").flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Root-mean-square difference of two equally long slices.
pub fn rms(a: &[f32], b: &[f32]) -> f32 {
    (a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>() / a.len() as f32).sqrt()
}
