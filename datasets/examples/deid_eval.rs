//! Prints the de-identification recall and precision per kind on the synthetic corpus, then what
//! it replaces in a real export (CMD, if `../shared/data` is beside the repository) as a check
//! on false positives in real clinical text.
//!
//! `cargo run --release -p doctorglm-datasets --example deid_eval [-- N_TEXTS SEED]`

use std::path::PathBuf;

use doctorglm_datasets::deid::{synthetic, Deidentifier};
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
    let misses = synthetic::mistakes(deid, corpus);
    for (text, what) in misses.iter().take(8) {
        println!("  {what}  in: {text}");
    }
    println!();
}

fn real(deid: &Deidentifier) {

    let cmd = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/exports/cmd-internal-medicine-sample.gbk.csv");
    match import::import(&cmd, None, &ReadOptions::default(), &mut Control::none()) {
        Ok(mut outcome) => {
            let report = match deid.dialogues(&mut outcome.dialogues, &mut Control::none()) {
                Ok(r) => r,
                Err(e) => {
                    println!("real export: {e}");
                    return;
                }
            };
            println!(
                "\nreal export (CMD internal medicine, {} dialogues, public and already anonymised): {} replacements in {} dialogues",
                report.dialogues,
                report.total(),
                report.dialogues_changed
            );
            for (kind, count) in &report.counts {
                println!("  {kind:?}: {count} ({:.2} per 1,000 dialogues)", *count as f64 * 1000.0 / report.dialogues as f64);
            }
            for ex in &report.examples {
                println!("  {:?} {} … {}", ex.kind, ex.masked, ex.context);
            }
        }
        Err(e) => println!("real export not read ({e}); skipped"),
    }
}
