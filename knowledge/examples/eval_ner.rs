//! Keyword extraction on CMeEE (CBLUE) dev: P/R/F1 for dis and sym, with the starter library
//! alone and with the QASystemOnMedicalKG lexicon added.
//!
//! `cargo run --release -p doctorglm-knowledge --example eval_ner [-- FILE]`
use std::path::{Path, PathBuf};

use doctorglm_knowledge::keywords::ExtractOptions;
use doctorglm_knowledge::library::starter_library_dir;
use doctorglm_knowledge::ner_eval::{evaluate_file, NerReport};
use doctorglm_knowledge::{KeywordExtractor, LexiconBuilder, Library, TermKind};

fn print(label: &str, terms: usize, r: &NerReport) {
    println!("{label} ({terms} terms, {} texts)", r.texts);
    for (name, s) in [("dis", r.dis), ("sym", r.sym), ("dis+sym", r.all)] {
        println!(
            "  {name:<8} P {:.3}  R {:.3}  F1 {:.3}  (tp {} / predicted {} / gold {})",
            s.precision(),
            s.recall(),
            s.f1(),
            s.true_positives,
            s.predicted,
            s.gold
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let file = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| shared.join("eval/cmeee-dev-500.cblue.json"));
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
        let terms = lexicon.len();
        let x = KeywordExtractor::new(lexicon).with_options(ExtractOptions { segmentation: seg });
        let r = evaluate_file(&x, &file)?;
        print(label, terms, &r);
    }
    Ok(())
}
