//! Benchmark of the conversation store (not a test): fills an encrypted store with N messages
//! (default 100,000), then measures single durable appends, streaming updates and searches at
//! that size, and the database size.
//!
//!     cargo run --release -p doctorglm --example store_bench [-- --messages 100000 --dir DIR]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use doctorglm::store::{AppPaths, DbKey, KeySource, Role, Store};

#[derive(Parser)]
struct Args {
    /// Messages in the store before measuring.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Folder for the database (default: a temporary folder, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Single appends to time.
    #[arg(long, default_value_t = 1_000)]
    appends: usize,
    /// Rounds over the search queries.
    #[arg(long, default_value_t = 20)]
    search_rounds: usize,
}

const SYMPTOMS: &[&str] = &[
    "头痛", "发热", "咳嗽", "腹痛", "恶心", "呕吐", "胸闷", "心悸", "失眠", "乏力", "腹泻", "便秘", "皮疹", "关节痛",
    "咽痛", "鼻塞", "气短", "水肿", "头晕", "尿频",
];
const PHRASES: &[&str] = &[
    "患者自述", "持续三天", "伴有", "无明显诱因", "既往体健", "建议完善血常规检查", "考虑上呼吸道感染", "注意休息，多饮水",
    "如症状加重请及时就医", "可口服布洛芬缓解症状", "血压 135/85 mmHg", "体温 38.5 度", "建议复查心电图",
    "The patient reports", "no known allergies", "follow up in two weeks", "consider chest X-ray",
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// Rare phrases: one message in [`RARE_EVERY`] gets one (about 100 each at 100,000 messages).
const RARE: &[&str] = &["皮肤瘙痒", "担心肺癌"];
const RARE_EVERY: u64 = 500;

fn text(rng: &mut Rng, words: usize) -> String {
    let mut s = String::new();
    for i in 0..words {
        s.push_str(if i % 3 == 0 { rng.pick(SYMPTOMS) } else { rng.pick(PHRASES) });
        s.push(if i % 4 == 3 { '。' } else { '，' });
    }
    if rng.next().is_multiple_of(RARE_EVERY) {
        s.push_str(rng.pick(RARE));
    }
    s
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i.min(samples.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn report(name: &str, samples: &mut [Duration]) {
    let mean = samples.iter().sum::<Duration>() / samples.len().max(1) as u32;
    println!(
        "{name:<28} n={:<6} mean {:>10}  p50 {:>10}  p95 {:>10}  max {:>10}",
        samples.len(),
        ms(mean),
        ms(percentile(samples, 0.5)),
        ms(percentile(samples, 0.95)),
        ms(percentile(samples, 1.0))
    );
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let root = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let paths = AppPaths::under(&root);
    let key = DbKey::generate()?;
    let store = Store::open(&paths, KeySource::Key(key.clone()))?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    let fill = args.messages.saturating_sub(args.appends);
    let per_conversation = 20;
    let started = Instant::now();
    let mut conversation = store.create_conversation("bench 0")?.id;
    let mut done = 0;
    while done < fill {
        let n = per_conversation.min(fill - done);
        let texts: Vec<String> = (0..n).map(|i| text(&mut rng, if i % 2 == 0 { 6 } else { 24 })).collect();
        let batch: Vec<(Role, &str)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (if i % 2 == 0 { Role::User } else { Role::Assistant }, t.as_str()))
            .collect();
        store.append_messages(conversation, &batch)?;
        done += n;
        if done < fill {
            conversation = store.create_conversation(&format!("bench {done}"))?.id;
        }
    }
    println!("filled {fill} messages in {:.1} s (one transaction per conversation of {per_conversation})", started.elapsed().as_secs_f64());

    let mut appends = Vec::with_capacity(args.appends);
    let c = store.create_conversation("timed appends")?.id;
    for _ in 0..args.appends {
        let t = text(&mut rng, 6);
        let s = Instant::now();
        store.append_user_message(c, &t)?;
        appends.push(s.elapsed());
    }
    let mut updates = Vec::new();
    let mut finishes = Vec::new();
    for _ in 0..20 {
        let id = store.begin_answer(c, &Default::default())?;
        let mut answer = String::new();
        for _ in 0..10 {
            answer.push_str(&text(&mut rng, 2));
            let s = Instant::now();
            store.update_answer(id, &answer)?;
            updates.push(s.elapsed());
        }
        let s = Instant::now();
        store.finish_answer(id, &doctorglm::store::AnswerEnd::complete(answer))?;
        finishes.push(s.elapsed());
    }
    let total: usize = store.list_conversations()?.iter().map(|c| c.message_count as usize).sum();
    println!("store holds {total} messages");

    // Trigram FTS5 queries (every term >= 3 characters): common, rare, absent, English.
    let fts_queries = ["上呼吸道感染", "布洛芬", "血常规检查", "心电图", "chest X-ray", "allergies", "不存在的词语"];
    // A 3+ character term with a 1-2 character one (FTS5 narrows, LIKE filters).
    let mixed_queries = ["持续三天 恶心", "建议复查心电图 头痛"];
    // Only 1-2 character terms (below what trigrams index; the unigram/bigram index answers
    // CJK ones): common, rare (about 100 messages each), absent.
    let short_queries = ["头痛", "乏力", "肺癌", "痒", "疟疾", "癣"];
    let rare_queries = ["肺癌", "痒", "疟疾", "癣"];
    // A 3+ character term with a rare 1-2 character one (the rare term's messages lead).
    let mixed_rare_queries = ["持续三天 痒", "建议复查心电图 肺癌"];
    // Short terms that are not CJK still fall to LIKE (a scan when alone).
    let like_queries = ["BP"];
    let mut hits = 0;
    let mut run = |queries: &[&str], limit: usize, samples: &mut Vec<Duration>| -> anyhow::Result<()> {
        for _ in 0..args.search_rounds {
            for q in queries {
                let s = Instant::now();
                hits += store.search(q, limit)?.len();
                samples.push(s.elapsed());
            }
        }
        Ok(())
    };
    let (mut fts, mut fts60, mut mixed, mut short) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut rare, mut mixed_rare, mut like) = (Vec::new(), Vec::new(), Vec::new());
    run(&fts_queries, 20, &mut fts)?;
    run(&fts_queries, 60, &mut fts60)?;
    run(&mixed_queries, 20, &mut mixed)?;
    run(&short_queries, 20, &mut short)?;
    run(&rare_queries, 20, &mut rare)?;
    run(&mixed_rare_queries, 20, &mut mixed_rare)?;
    run(&like_queries, 20, &mut like)?;
    let mut per_query = Vec::new();
    for q in fts_queries.iter().chain(&mixed_queries).chain(&short_queries).chain(&mixed_rare_queries).chain(&like_queries) {
        let mut samples = Vec::new();
        run(&[*q], 20, &mut samples)?;
        per_query.push((q.to_string(), percentile(&mut samples, 0.95)));
    }

    // The floor of a durable commit on this disk: write 4 KiB and fsync, in the same folder.
    let mut fsyncs = Vec::new();
    {
        use std::io::Write;
        let probe = root.join("fsync-probe");
        let mut f = std::fs::File::create(&probe)?;
        for _ in 0..200 {
            let s = Instant::now();
            f.write_all(&[0u8; 4096])?;
            f.sync_data()?;
            fsyncs.push(s.elapsed());
        }
        std::fs::remove_file(&probe)?;
    }

    report("append user message", &mut appends);
    report("streaming update", &mut updates);
    report("finish answer (+FTS index)", &mut finishes);
    report("write 4 KiB + fsync (floor)", &mut fsyncs);
    report("search FTS, limit 20", &mut fts);
    report("search FTS, limit 60", &mut fts60);
    report("search FTS + 1-2 char term", &mut mixed);
    report("search 1-2 char terms only", &mut short);
    report("search rare 1-2 char terms", &mut rare);
    report("search FTS + rare short term", &mut mixed_rare);
    report("search short ASCII term alone", &mut like);
    for (q, p95) in &per_query {
        println!("  p95 {:>10}  {q}", ms(*p95));
    }
    println!("search hits returned: {hits}");
    let append95 = percentile(&mut appends, 0.95).as_secs_f64();
    let fsync95 = percentile(&mut fsyncs, 0.95).as_secs_f64();
    println!("ratio append p95 / fsync p95: {:.2} (a durable commit costs this many bare fsyncs)", append95 / fsync95.max(1e-9));
    for (name, samples) in [
        ("FTS", &mut fts),
        ("FTS+short", &mut mixed),
        ("short only", &mut short),
        ("rare short", &mut rare),
        ("FTS+rare short", &mut mixed_rare),
    ] {
        println!("ratio search p95 / 20 ms target ({name}): {:.2}", percentile(samples, 0.95).as_secs_f64() / 0.020);
    }
    let text_bytes: i64 = store.list_conversations()?.iter().map(|c| store.messages(c.id).map(|m| m.iter().map(|m| m.content.len() as i64).sum::<i64>()).unwrap_or(0)).sum();
    drop(store);
    let size = std::fs::metadata(paths.database())?.len();
    println!("database size: {:.1} MiB ({:.0} bytes/message)", size as f64 / 1048576.0, size as f64 / total as f64);

    // The migration from v2 at this size: take the short-term index out again (as a v2
    // database is), then time the open that migrates to the latest version (v3 builds the CJK
    // index, v4 rebuilds it with ASCII letters and digits: both backfill).
    {
        let conn = rusqlite::Connection::open(paths.database())?;
        conn.pragma_update(None, "key", format!("x'{}'", key.to_hex().as_str()))?;
        conn.execute_batch(
            "DROP TRIGGER messages_grams_insert; DROP TRIGGER messages_grams_delete;
             DROP TRIGGER messages_grams_update; DROP TABLE messages_grams; VACUUM; PRAGMA user_version = 2;",
        )?;
    }
    let v2_size = std::fs::metadata(paths.database())?.len();
    let s = Instant::now();
    let store = Store::open(&paths, KeySource::Key(key))?;
    let migrate = s.elapsed();
    assert_eq!(store.schema_version()?, doctorglm::store::schema::LATEST_VERSION);
    assert!(!store.search("痒", 5)?.is_empty() || total < 1000);
    println!(
        "migration v2 -> v{} (index {total} messages' short terms, twice): {:.2} s; the index adds {:.1} MiB ({:.0}% of the v2 database)",
        doctorglm::store::schema::LATEST_VERSION,
        migrate.as_secs_f64(),
        (size as f64 - v2_size as f64) / 1048576.0,
        100.0 * (size as f64 - v2_size as f64) / v2_size as f64
    );
    drop(store);
    println!(
        "database after the migration: {:.1} MiB (v2 without the index, vacuumed: {:.1} MiB)",
        std::fs::metadata(paths.database())?.len() as f64 / 1048576.0,
        v2_size as f64 / 1048576.0
    );
    println!("ratio database size / message text bytes: {:.2} (text {:.1} MiB; trigram and unigram/bigram indexes, metadata, page and cipher overhead)", size as f64 / text_bytes.max(1) as f64, text_bytes as f64 / 1048576.0);
    Ok(())
}
