//! Tests of what the store promises about its file: no plaintext on disk, a wrong or missing
//! key changes nothing, deleted text is gone from the pages, and every older schema migrates.


use super::connection;
use super::keys::tests::FakeVault;
use super::keys::Secret;
use super::schema;
use super::test_support::{snapshot, temp_store, test_key};
use super::{AnswerEnd, AnswerMeta, AppPaths, DbKey, KeySource, KeyStorage, NewModel, Store, StoreError};


fn contains(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    hay.windows(n.len()).any(|w| w == n)
}

const CANARIES: &[&str] = &["CANARY-TITLE-7731", "患者张三的病历", "CANARY-ANSWER-5521", "CANARY-SETTING-9", "CANARY-MODEL-PATH"];

#[test]
fn store_file_holds_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let paths = AppPaths::under(dir.path());
    let store = Store::open_with_vault(&paths, KeySource::Auto, &FakeVault::unavailable()).unwrap();
    assert!(matches!(store.key_storage(), KeyStorage::KeyringUnavailable { .. }));
    let c = store.create_conversation(CANARIES[0]).unwrap();
    store.append_user_message(c.id, &format!("{} 主诉头痛", CANARIES[1])).unwrap();
    let a = store.begin_answer(c.id, &AnswerMeta::default()).unwrap();
    store.update_answer(a, CANARIES[2]).unwrap();
    store.finish_answer(a, &AnswerEnd::complete(format!("{} done", CANARIES[2]))).unwrap();
    store.set_setting("note", &CANARIES[3]).unwrap();
    store.register_model(&NewModel { name: "m".into(), family: "glm4".into(), path: CANARIES[4].into(), ..Default::default() }).unwrap();
    assert_eq!(store.search(CANARIES[1], 5).unwrap().len(), 1);

    let check = |when: &str| {
        let files = snapshot(dir.path());
        assert!(files.keys().any(|k| k.ends_with("conversations.db")));
        for (name, bytes) in &files {
            if name.ends_with(".key") {
                continue;
            }
            assert!(!bytes.starts_with(b"SQLite format 3"), "{when}: {name} has a plaintext header");
            for canary in CANARIES {
                assert!(!contains(bytes, canary), "{when}: {name} contains plaintext {canary:?}");
            }
        }
    };
    check("while open (WAL in use)");
    drop(store);
    check("after close");
}

#[test]
fn store_deletion_leaves_no_text_in_the_pages() {
    let (_dir, store) = temp_store();
    let keep = store.create_conversation("keep").unwrap();
    store.append_user_message(keep.id, "KEEP-TEXT-0042 仍在").unwrap();
    let gone = store.create_conversation("GONE-TITLE-1187").unwrap();
    store.append_user_message(gone.id, &format!("GONE-TEXT-9931 {}", "需要删除的病历".repeat(20))).unwrap();
    store.delete_conversation(gone.id).unwrap();
    // The decrypted image of every page (free pages included).
    let image = store.conn().serialize("main").unwrap();
    assert!(contains(&image, "KEEP-TEXT-0042"), "control: live text is in the image");
    for gone_text in ["GONE-TITLE-1187", "GONE-TEXT-9931", "需要删除的病历"] {
        assert!(!contains(&image, gone_text), "deleted text {gone_text:?} is still in the database pages");
    }
    // Nor in the full-text index's vocabulary.
    store.conn().execute_batch("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, messages_fts, 'row')").unwrap();
    let n: i64 = store.conn().query_row("SELECT count(*) FROM temp.vocab WHERE term = 'gon'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0);
    let n: i64 = store.conn().query_row("SELECT count(*) FROM temp.vocab WHERE term = 'kee'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1, "control: live text is indexed");
}

#[test]
fn store_deletion_leaves_no_short_term_tokens() {
    let (_dir, store) = temp_store();
    let keep = store.create_conversation("keep").unwrap();
    store.append_user_message(keep.id, "仍在").unwrap();
    let gone = store.create_conversation("gone").unwrap();
    // Characters that appear nowhere else in the database, so any copy of them is the index's.
    store.append_user_message(gone.id, "鼹鼠 饕餮").unwrap();
    let tokens = |store: &Store| -> Vec<String> {
        let mut stmt = store.conn().prepare("SELECT term FROM temp.gvocab ORDER BY term").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    };
    store.conn().execute_batch("CREATE VIRTUAL TABLE temp.gvocab USING fts5vocab(main, messages_grams, 'row')").unwrap();
    assert!(tokens(&store).contains(&"饕餮".to_string()), "control: the bigram is indexed");
    store.delete_conversation(gone.id).unwrap();
    assert_eq!(tokens(&store), vec!["仍", "仍在", "在"]);
    // The index's own storage (its segment leaves and their b-tree keys). Single characters:
    // FTS5 leaves store a term as its difference from the term before, so a bigram's bytes
    // need not appear whole even while indexed; a term that shares no first byte with the one
    // before it is stored whole.
    let blobs = |table: &str| -> Vec<u8> {
        let sql = format!("SELECT block FROM {table}_data UNION ALL SELECT term FROM {table}_idx");
        let mut stmt = store.conn().prepare(&sql).unwrap();
        let rows: Vec<Vec<u8>> = stmt.query_map([], |r| r.get::<_, Option<Vec<u8>>>(0)).unwrap().map(|r| r.unwrap().unwrap_or_default()).collect();
        rows.concat()
    };
    let index = blobs("messages_grams");
    assert!(contains(&index, "仍"), "control: a live token is in the index's storage");
    for gone_text in ["鼹", "鼠", "饕", "餮"] {
        assert!(!contains(&index, gone_text), "deleted token {gone_text:?} is still in the index's storage");

    }
}

#[test]
fn store_wrong_or_missing_key_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let paths = AppPaths::under(dir.path());
    let store = Store::open(&paths, KeySource::Key(test_key())).unwrap();
    let c = store.create_conversation("x").unwrap();
    store.append_user_message(c.id, "hello").unwrap();
    drop(store);
    let before = snapshot(dir.path());

    let other = DbKey::from_hex(&"01".repeat(32)).unwrap();
    let err = Store::open(&paths, KeySource::Key(other)).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    assert!(err.to_string().contains("Nothing was changed"));
    let err = Store::open(&paths, KeySource::Passphrase("guess".to_string().into())).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    for vault in [FakeVault::unavailable(), FakeVault::empty()] {
        let err = Store::open_with_vault(&paths, KeySource::Auto, &vault).unwrap_err();
        assert!(matches!(err, StoreError::MissingKey { .. }), "{err}");
    }
    assert_eq!(snapshot(dir.path()), before, "files changed after failed opens");

    // The right key still opens it, with the data.
    let store = Store::open(&paths, KeySource::Key(test_key())).unwrap();
    assert_eq!(store.messages(c.id).unwrap()[0].content, "hello");
}

#[test]
fn store_refuses_a_plaintext_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let paths = AppPaths::under(dir.path());
    {
        // A database written with an empty key is a plain SQLite file.
        let conn = rusqlite::Connection::open(paths.database()).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES ('plain');").unwrap();
    }
    let before = snapshot(dir.path());
    assert!(before.values().any(|b| b.starts_with(b"SQLite format 3")));
    let err = Store::open(&paths, KeySource::Key(test_key())).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn store_passphrase_database_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let paths = AppPaths::under(dir.path());
    let pass = || KeySource::Passphrase("correct horse 电池".to_string().into());
    let store = Store::open(&paths, pass()).unwrap();
    assert_eq!(store.key_storage(), &KeyStorage::Passphrase);
    store.create_conversation("p").unwrap();
    drop(store);
    assert!(Store::open(&paths, KeySource::Passphrase("wrong".to_string().into())).is_err());
    assert!(matches!(Store::open(&paths, KeySource::Passphrase(String::new().into())), Err(StoreError::EmptyPassphrase)));
    assert_eq!(Store::open(&paths, pass()).unwrap().list_conversations().unwrap().len(), 1);
}

/// Writes rows valid at schema `version` (the tables that version has).
fn seed(conn: &rusqlite::Connection, version: usize) {
    if version >= 1 {
        conn.execute_batch(
            "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (1, '旧对话', 1, 1);
             INSERT INTO messages (conversation_id, role, content, status, created_at, updated_at)
                 VALUES (1, 'user', '旧版本的消息 old message', 'complete', 1, 1);
             INSERT INTO messages (conversation_id, role, content, status, created_at, updated_at)
                 VALUES (1, 'assistant', 'half', 'streaming', 2, 2);
             INSERT INTO messages (id, conversation_id, role, content, status, created_at, updated_at)
                 VALUES (45000, 1, 'user', '很远的消息', 'complete', 3, 3);
             INSERT INTO settings (key, value_json, updated_at) VALUES ('theme', '\"dark\"', 1);
             INSERT INTO models (id, name, family, path, added_at) VALUES (1, 'old-model', 'chatglm3', 'm', 1);",
        )
        .unwrap();
    }
    if version >= 2 {
        conn.execute_batch(
            "INSERT INTO adapters (id, name, kind, base_model_id, path, created_at, info_json)
                 VALUES (1, 'v2-lora', 'lora', 1, 'a', 1, '{\"r\": 8}');",
        )
        .unwrap();
    }
}

#[test]
fn store_migrates_from_every_earlier_schema_version() {
    for start in 0..=schema::LATEST_VERSION {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("old.db");
        {
            let mut conn = connection::open_keyed(&db, &Secret::Raw(test_key()), true).unwrap();
            schema::migrations().to_version(&mut conn, start).unwrap();
            seed(&conn, start);
        }
        let store = Store::open_file(&db, KeySource::Key(test_key())).unwrap_or_else(|e| panic!("from v{start}: {e}"));
        assert_eq!(store.schema_version().unwrap(), schema::LATEST_VERSION, "from v{start}");
        store.check_integrity().unwrap();
        let fk: i64 = store.conn().query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 0);
        if start >= 1 {
            let msgs = store.messages(1).unwrap();
            assert_eq!(msgs[0].content, "旧版本的消息 old message", "from v{start}");
            assert_eq!(msgs[1].status, crate::store::MessageStatus::Interrupted);
            assert_eq!(store.search("旧版本", 5).unwrap().len(), 1, "from v{start}: search index kept");
            assert_eq!(store.search("旧", 5).unwrap().len(), 1, "from v{start}: one-character terms indexed");
            assert_eq!(store.search("消息 old", 5).unwrap().len(), 1, "from v{start}: two-character terms indexed");
            let ol: Vec<i64> = store
                .conn()
                .prepare("SELECT rowid FROM messages_grams WHERE messages_grams MATCH '\"ol\"'")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            assert_eq!(ol, vec![1], "from v{start}: ASCII pairs indexed (v4)");
            assert_eq!(store.search("OL", 5).unwrap().len(), 1, "from v{start}: two-letter terms found");
            let far: Vec<i64> = store
                .conn()
                .prepare("SELECT rowid FROM messages_grams WHERE messages_grams MATCH '\"远\"'")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            assert_eq!(far, vec![45_000], "from v{start}: ids past the first backfill chunk are indexed");
            assert_eq!(store.setting::<String>("theme").unwrap().as_deref(), Some("dark"));
            let models = store.list_models().unwrap();
            assert_eq!(models[0].name, "old-model", "from v{start}");
            assert_eq!(models[0].info, None, "from v{start}: a v1 model has no recorded check");
            store.set_model_info(models[0].id, &serde_json::json!({"architecture": "chatglm3"})).unwrap();
        }
        if start >= 2 {
            assert_eq!(store.list_adapters().unwrap()[0].info, Some(serde_json::json!({"r": 8})), "from v{start}");
        }
        // The migrated store works for new data.
        let c = store.create_conversation("new").unwrap();
        store.append_user_message(c.id, "after migration").unwrap();
    }
}

#[test]
fn store_refuses_a_newer_schema_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new.db");
    {
        let mut conn = connection::open_keyed(&db, &Secret::Raw(test_key()), true).unwrap();
        schema::migrations().to_latest(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", schema::LATEST_VERSION as i64 + 1).unwrap();
    }
    let before = snapshot(dir.path());
    let err = Store::open_file(&db, KeySource::Key(test_key())).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    assert_eq!(snapshot(dir.path()), before);
}
