//! Helpers for the store's unit tests.

use super::{AppPaths, DbKey, KeySource, Store};

/// The fixed key of test stores.
pub(crate) fn test_key() -> DbKey {
    DbKey::from_hex(&"5a".repeat(32)).unwrap()
}

/// A new store in a temporary folder, keyed with [`test_key`].
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = reopen(&dir);
    (dir, store)
}

/// Opens the store of `dir` again.
pub(crate) fn reopen(dir: &tempfile::TempDir) -> Store {
    Store::open(&AppPaths::under(dir.path()), KeySource::Key(test_key())).unwrap()
}

/// Every file in `dir` (recursively) with its bytes.
pub(crate) fn snapshot(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}
