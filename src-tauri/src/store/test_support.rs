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
