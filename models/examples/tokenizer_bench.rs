//! Tokenizer throughput: encodes and decodes a ~2,000-character clinical prompt with each
//! family's tokenizer and prints the time per call.
//!
//! `cargo run --release -p doctorglm-models --example tokenizer_bench -- [FIXTURE_ROOT]`
//! (default `$DOCTORGLM_FIXTURES`, else `../shared/fixtures`).
use std::path::PathBuf;
use std::time::Instant;

use doctorglm_models::tokenizer::Tokenizer;

fn main() -> anyhow::Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .or_else(|| std::env::var_os("DOCTORGLM_FIXTURES"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    let unit = "患者男，45岁，头痛三天，血压 150/95 mmHg，心率 88 次/分。既往有高血压病史，\
                服用氨氯地平 5mg qd。Patient reports dizziness and blurred vision;  no fever.\n";
    let mut prompt = String::new();
    while prompt.chars().count() < 2000 {
        prompt.push_str(unit);
    }
    let chars = prompt.chars().count();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("models"))?.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let t0 = Instant::now();
        let tok = Tokenizer::load(&dir)?;
        let load = t0.elapsed();
        let rounds = 50;
        let t0 = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..rounds {
            ids = tok.encode(&prompt);
        }
        let encode = t0.elapsed() / rounds;
        let t0 = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(tok.decode(&ids));
        }
        let decode = t0.elapsed() / rounds;
        println!(
            "{:?} ({}): load {:.0} ms; encode {chars} chars -> {} ids in {:.2} ms; decode {:.3} ms",
            tok.family(),
            dir.file_name().unwrap_or_default().to_string_lossy(),
            load.as_secs_f64() * 1e3,
            ids.len(),
            encode.as_secs_f64() * 1e3,
            decode.as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
