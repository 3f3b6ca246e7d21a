//! Crash safety of the conversation store: a child process streams answers into the store
//! while this test kills it with SIGKILL at random moments, 200 times. After each kill the
//! database must open, pass `PRAGMA integrity_check`, hold every user message the child
//! reported as committed (with its text), and hold no answer still marked `streaming`.
//!
//! The child is this test binary run again with `--ignored --exact store_crash_child` and
//! the database path in `DOCTORGLM_STORE_CRASH_DB`; it prints `U <id> <seq>` after each user
//! message commits. The random moments come from a fixed seed (override:
//! `DOCTORGLM_STORE_CRASH_SEED`), so a failure can be replayed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use doctorglm::store::{AnswerEnd, AnswerMeta, DbKey, KeySource, MessageStatus, Role, Store};

const DB_ENV: &str = "DOCTORGLM_STORE_CRASH_DB";
const SEQ_ENV: &str = "DOCTORGLM_STORE_CRASH_SEQ";
const KILLS: usize = 200;

fn key() -> KeySource {
    KeySource::Key(DbKey::from_hex(&"c3".repeat(32)).expect("valid hex"))
}

fn user_text(seq: u64) -> String {
    format!("第{seq}条用户消息：头痛发热三天，体温 38.{} 度。", seq % 10)
}

/// Child side: writes conversations until killed.
#[test]
#[ignore = "helper process of store_crash_safety_under_sigkill"]
fn store_crash_child() {
    let Some(db) = std::env::var_os(DB_ENV) else { return };
    let mut seq: u64 = std::env::var(SEQ_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let store = Store::open_file(std::path::Path::new(&db), key()).expect("child opens the store");
    let mut conversation = store.create_conversation("crash test").expect("conversation").id;
    let meta = AnswerMeta { model: Some("test-model".into()), ..Default::default() };
    loop {
        if seq.is_multiple_of(4) {
            conversation = store.create_conversation(&format!("对话 {seq}")).expect("conversation").id;
        }
        let id = store.append_user_message(conversation, &user_text(seq)).expect("user message");
        println!("U {id} {seq}");
        let mut writer = store.answer_writer(conversation, &meta, Duration::ZERO).expect("begin answer");
        for t in 0..12 {
            writer.push(&format!("建议{t}。")).expect("stream");
        }
        writer.finish(AnswerEnd::complete("")).expect("finish");
        seq += 1;
    }
}

/// xorshift64*: a small deterministic generator for kill delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn store_crash_safety_under_sigkill() {
    let seed: u64 = std::env::var("DOCTORGLM_STORE_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_c0ff_ee12_3457);
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("conversations.db");
    drop(Store::open_file(&db, key()).expect("create the store"));
    let exe = std::env::current_exe().expect("test binary path");

    let mut committed: Vec<(i64, u64)> = Vec::new();
    let mut kills_mid_answer = 0usize;
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["store_crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
            .env(DB_ENV, &db)
            .env(SEQ_ENV, (round as u64 * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Half the rounds kill at a random moment after the first commit, half at a random
        // moment after start (which may fall before or while the store opens).
        let mut lines = Vec::new();
        if rng.below(2) == 0 {
            // The harness prints its own lines first: wait for the first commit report.
            while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
                let first_commit = line.starts_with("U ");
                lines.push(line);
                if first_commit {
                    break;
                }
            }
            std::thread::sleep(Duration::from_micros(rng.below(30_000)));
        } else {
            std::thread::sleep(Duration::from_micros(rng.below(80_000)));
        }
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap the child");
        assert!(!status.success(), "round {round}: the child ended by itself: {status}");
        reader.join().expect("reader thread");
        let mut last = None;
        lines.extend(rx.try_iter());
        for line in lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let ["U", id, seq] = parts[..] {
                let entry = (id.parse().expect("id"), seq.parse().expect("seq"));
                committed.push(entry);
                last = Some(entry);
            }
        }

        let store = Store::open_file(&db, key()).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        store.check_integrity().unwrap_or_else(|e| panic!("round {round}: {e}"));
        if store.recovered_messages() > 0 {
            kills_mid_answer += 1;
        }
        // Every committed user message is there: all of this round's, and a sample of earlier ones.
        let check = |(id, seq): (i64, u64)| {
            let m = store.message(id).unwrap_or_else(|e| panic!("round {round}: committed message {id} lost: {e}"));
            assert_eq!(m.role, Role::User);
            assert_eq!(m.content, user_text(seq), "round {round}: message {id} changed");
        };
        if let Some(entry) = last {
            check(entry);
        }
        for _ in 0..5.min(committed.len()) {
            check(committed[rng.below(committed.len() as u64) as usize]);
        }
        for c in store.list_conversations().expect("list") {
            for m in store.messages(c.id).expect("messages") {
                assert_ne!(m.status, MessageStatus::Streaming, "round {round}: message {} still streaming after open", m.id);
            }
        }
    }

    // Finally every message ever reported committed is still there.
    let store = Store::open_file(&db, key()).expect("final open");
    for &(id, seq) in &committed {
        assert_eq!(store.message(id).expect("committed message").content, user_text(seq));
    }
    assert!(committed.len() >= KILLS / 4, "too few commits happened before kills ({}) to test anything", committed.len());
    assert!(kills_mid_answer > 0, "no kill landed while an answer was streaming");
    eprintln!("{KILLS} kills, {} committed user messages checked, {kills_mid_answer} kills mid-answer", committed.len());
}
