//! Keyword extraction on CMeEE (CBLUE) dev: P/R/F1 for dis and sym, with the starter library
//! alone and with the QASystemOnMedicalKG lexicon added, on the first half of the file (where
//! the rules were developed), the second half (held out) and all of it.
//!
//! `cargo run --release -p doctorglm-knowledge --example eval_ner [-- FILE] [--dump OUT.jsonl]`
//!
//! `--dump` writes, for the configuration with the extra lexicon, one JSON line a text with
//! the gold and predicted dis/sym spans (for error analysis on the first half).
use std::io::Write;
use std::path::{Path, PathBuf};

use doctorglm_knowledge::keywords::ExtractOptions;
use doctorglm_knowledge::library::starter_library_dir;
use doctorglm_knowledge::ner_eval::{evaluate_records, read_records, NerRecord, NerReport};
use doctorglm_knowledge::{KeywordExtractor, LexiconBuilder, Library, TermKind};

fn print(label: &str, r: &NerReport) {
    println!("  {label} ({} texts)", r.texts);
    for (name, s) in [("dis", r.dis), ("sym", r.sym), ("dis+sym", r.all)] {
        println!(
            "    {name:<8} P {:.3}  R {:.3}  F1 {:.3}  (tp {} / predicted {} / gold {})",
            s.precision(),
            s.recall(),
            s.f1(),
            s.true_positives,
            s.predicted,
            s.gold
        );
    }
}

fn dump(x: &KeywordExtractor, records: &[NerRecord], out: &Path) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
    for (i, r) in records.iter().enumerate() {
        let gold: Vec<_> = r
            .entities
            .iter()
            .filter(|e| e.kind == "dis" || e.kind == "sym")
            .map(|e| serde_json::json!([e.start_idx, e.end_idx + 1, e.kind]))
            .collect();
        let pred: Vec<_> = x
            .extract(&r.text)
            .into_iter()
            .map(|k| serde_json::json!([k.start, k.end, if k.kind == TermKind::Disease { "dis" } else { "sym" }, k.negated]))
            .collect();
        writeln!(f, "{}", serde_json::json!({"i": i, "text": r.text, "gold": gold, "pred": pred}))?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let mut file = shared.join("eval/cmeee-dev-500.cblue.json");
    let mut dump_to: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--dump" {
            dump_to = args.next().map(PathBuf::from);
        } else {
            file = PathBuf::from(a);
        }
    }
    let records = read_records(&file)?;
    let half = records.len() / 2;
    let library = Library::load(starter_library_dir())?;
    println!("starter library: {} documents ({} files skipped)", library.len(), library.skipped.len());
    let lexicon_dir = shared.join("knowledge/qasystem-lexicon");
    let configs: [(&str, bool, bool); 4] = [
        ("starter library", false, true),
        ("starter library, lexicon only (no segmentation)", false, false),
        ("starter library + QASystemOnMedicalKG lexicon", true, true),
        ("starter library + QASystemOnMedicalKG lexicon, lexicon only", true, false),
    ];
    for (label, extra, seg) in configs {
        let mut b = LexiconBuilder::new();
        b.add_library(&library);
        if extra {
            b.add_file(&lexicon_dir.join("disease.txt"), TermKind::Disease)?;
            b.add_file(&lexicon_dir.join("symptom.txt"), TermKind::Symptom)?;
        }
        let lexicon = b.build()?;
        println!("{label} ({} terms)", lexicon.len());
        let x = KeywordExtractor::new(lexicon).with_options(ExtractOptions { segmentation: seg });
        print("first half (development)", &evaluate_records(&x, &records[..half]));
        print("second half (held out)", &evaluate_records(&x, &records[half..]));
        print("all", &evaluate_records(&x, &records));
        if extra && seg {
            if let Some(out) = &dump_to {
                dump(&x, &records[..half], out)?;
                println!("  predictions on the first half written to {}", out.display());
            }
        }
    }
    Ok(())
}
