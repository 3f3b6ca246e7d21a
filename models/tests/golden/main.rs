//! Golden tests: the engine against the reference fixtures.
//!
//! The fixture root is `$DOCTORGLM_FIXTURES`, else `../shared/fixtures` beside the repository.
//! Every model folder under `models/` and `tokenizers/goldens.json` is checked; sizes are read
//! from each folder's `config.json`, so any fixture root with the same layout passes unchanged.
//! Prints one line per case and a closing `N passed, M failed`.
mod models;
mod report;
mod tokenizers;
mod training;

fn main() {
    let root = report::fixture_root();
    let mut report = report::Report::default();
    tokenizers::run(&root, &mut report);
    models::run(&root, &mut report);
    training::run(&root, &mut report);
    report.finish();
}
