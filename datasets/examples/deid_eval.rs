//! Prints the de-identification recall and precision per kind on the synthetic corpus, then what
//! it replaces in the real exports (CMD, Huatuo, GenMedGPT, MedicalGPT, if `../shared/data` is
//! beside the repository) as a check on false positives in real clinical text.
//!
//! `cargo run --release -p doctorglm-datasets --example deid_eval [-- N_TEXTS SEED]`
//! (`DEID_EXAMPLES=N` sets how many real-data replacements of each kind are printed for review.)

use std::path::PathBuf;

use doctorglm_datasets::deid::{heldout, synthetic, Deidentifier, PiiKind};
use doctorglm_datasets::import::{self, ReadOptions};
use doctorglm_datasets::Control;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_261_125);
    let deid = Deidentifier::new();
    for (label, corpus) in [
        ("synthetic corpus (templates written with the detectors)", synthetic::corpus(seed, n)),
        ("held-out hard templates (never tuned against)", synthetic::hard_corpus(seed, n)),
        ("held-out realistic set (deid::heldout, written before the detector work of issue 7)", heldout::heldout_corpus(seed, n)),
    ] {
        table(&deid, label, &corpus, n, seed);
    }
    real(&deid);
}

fn table(deid: &Deidentifier, label: &str, corpus: &[synthetic::LabelledText], n: usize, seed: u64) {
    let scores = synthetic::evaluate(deid, corpus);
    println!("{label}: {n} texts, seed {seed}");
    println!("{:<22} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}", "kind", "entities", "found", "reported", "correct", "recall", "precision");
    let (mut e, mut f, mut r, mut c) = (0, 0, 0, 0);
    for (kind, s) in &scores {
        println!(
            "{:<22} {:>8} {:>8} {:>8} {:>8} {:>9.4} {:>9.4}",
            format!("{kind:?}"),
            s.entities,
            s.found,
            s.reported,
            s.correct,
            s.recall(),
            s.precision()
        );
        e += s.entities;
        f += s.found;
        r += s.reported;
        c += s.correct;
    }
    println!("{:<22} {e:>8} {f:>8} {r:>8} {c:>8} {:>9.4} {:>9.4}", "all", f as f64 / e as f64, c as f64 / r as f64);
    // DEID_MISSES=N prints up to N mistakes of each kind (default 8 in all).
    let per_kind: Option<usize> = std::env::var("DEID_MISSES").ok().and_then(|s| s.parse().ok());
    let misses = synthetic::mistakes(deid, corpus);
    match per_kind {
        None => misses.iter().take(8).for_each(|(text, what)| println!("  {what}  in: {text}")),
        Some(n) => {
            for kind in PiiKind::ALL {
                let tag = format!(" {kind:?} ");
                misses.iter().filter(|(_, w)| w.contains(&tag)).take(n).for_each(|(text, what)| println!("  {what}  in: {text}"));
            }
        }
    }
    println!();
}

fn real(deid: &Deidentifier) {
    let exports = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/exports");
    let examples: usize = std::env::var("DEID_EXAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    println!("real exports (public, already anonymised: nearly every replacement is a false positive; review the examples)");
    for file in [
        "cmd-internal-medicine-sample.gbk.csv",
        "huatuo-liver-cancer-multiturn.json",
        "genmedgpt-5k.zh.alpaca.json",
        "medicalgpt-sft-1k.sharegpt.jsonl",
        "genmedgpt-5k.en.alpaca.json",
    ] {
        let path = exports.join(file);
        let mut outcome = match import::import(&path, None, &ReadOptions::default(), &mut Control::none()) {
            Ok(o) => o,
            Err(e) => {
                println!("\n{file}: not read ({e}); skipped");
                continue;
            }
        };
        let mut samples: Vec<(PiiKind, String)> = Vec::new();
        for d in &outcome.dialogues {
            for t in &d.turns {
                for text in [&t.user, &t.assistant] {
                    for sp in deid.find(text) {
                        if samples.iter().filter(|(k, _)| *k == sp.kind).count() < examples {
                            samples.push((sp.kind, around(text, sp.start, sp.end)));
                        }
                    }
                }
            }
        }
        samples.sort_by_key(|(k, _)| *k);
        let chars: usize = outcome.dialogues.iter().flat_map(|d| &d.turns).map(|t| t.user.chars().count() + t.assistant.chars().count()).sum();
        let report = match deid.dialogues(&mut outcome.dialogues, &mut Control::none()) {
            Ok(r) => r,
            Err(e) => {
                println!("\n{file}: {e}");
                continue;
            }
        };
        println!(
            "\n{file}: {} dialogues, {:.1} M characters: {} replacements in {} dialogues",
            report.dialogues,
            chars as f64 / 1e6,
            report.total(),
            report.dialogues_changed
        );
        for (kind, count) in &report.counts {
            println!("  {kind:?}: {count} ({:.2} per 1,000 dialogues)", *count as f64 * 1000.0 / report.dialogues as f64);
        }
        for (kind, s) in &samples {
            println!("    {kind:?}: {s}");
        }
    }
}

/// The text around a span, the span in 【】.
fn around(text: &str, start: usize, end: usize) -> String {
    let before: String = text[..start].chars().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
    let after: String = text[end..].chars().take(12).collect();
    format!("{before}【{}】{after}", &text[start..end]).replace('\n', " ")
}
