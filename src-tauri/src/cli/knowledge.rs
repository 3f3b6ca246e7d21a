//! `doctorglm knowledge ...`: import documents into the library, search it, evaluate keyword
//! extraction on a CBLUE NER file, re-index.
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use doctorglm_knowledge::import::import_path;
use doctorglm_knowledge::ner_eval::{evaluate_records, read_records};
use doctorglm_knowledge::{CancelToken, KeywordExtractor, KnowledgeIndex, LexiconBuilder, Library, Progress, TermKind};

/// Where the library and its index are, and extra lexicons.
#[derive(Debug, Clone, Args)]
pub struct LibraryArgs {
    /// Use this library folder alone (imports are written into it). Default: the starter
    /// library plus your own library (`knowledge-library` in the data folder), where imports go.
    #[arg(long, value_name = "DIR")]
    pub library: Option<PathBuf>,
    /// Index folder (default: `knowledge-index` in the data folder, `$DOCTORGLM_DATA_DIR` or
    /// the platform's).
    #[arg(long, value_name = "DIR")]
    pub index: Option<PathBuf>,
    /// Extra lexicon file, one term a line; its kind comes from a `dis:` / `sym:` prefix or
    /// the file name (disease*.txt, symptom*.txt). Repeatable.
    #[arg(long = "lexicon", value_name = "[dis:|sym:]FILE")]
    pub lexicons: Vec<String>,
}

impl LibraryArgs {
    /// The folder imports are written to: `--library`, else the user's library.
    pub fn library_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.library {
            Some(d) => Ok(d.clone()),
            None => user_library_dir(),
        }
    }

    /// The index folder to use.
    pub fn index_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.index {
            Some(d) => Ok(d.clone()),
            None => default_index_dir(),
        }
    }

    /// Extra lexicons with their kinds; a missing file is an error that names it.
    pub fn lexicon_files(&self) -> anyhow::Result<Vec<(PathBuf, TermKind)>> {
        let files: Vec<(PathBuf, TermKind)> = self.lexicons.iter().map(|s| parse_lexicon_arg(s)).collect::<anyhow::Result<_>>()?;
        for (path, _) in &files {
            anyhow::ensure!(path.is_file(), "lexicon file {} does not exist", path.display());
        }
        Ok(files)
    }

    /// Loads the library (`--library` alone, else the starter library plus the user's),
    /// reporting files it skipped.
    pub fn load_library(&self) -> anyhow::Result<Library> {
        let lib = match &self.library {
            Some(dir) => Library::load(dir).with_context(|| format!("cannot load the library at {}", dir.display()))?,
            None => {
                let starter = default_library_dir();
                let user = user_library_dir()?;
                Library::load_with_user(&starter, &user).with_context(|| {
                    format!("cannot load the starter library at {} with your library at {}", starter.display(), user.display())
                })?
            }
        };
        for s in &lib.skipped {
            eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
        }
        Ok(lib)
    }

    /// Opens the index and brings it up to date with the library (incrementally), with a
    /// progress bar when there is work; Ctrl-C stops it and leaves the index as it was.
    pub fn synced_index(&self, library: &Library) -> anyhow::Result<KnowledgeIndex> {
        let dir = self.index_dir()?;
        let mut index = KnowledgeIndex::open(&dir).with_context(|| format!("cannot open the index at {}", dir.display()))?;
        let bar = progress_bar("indexing");
        let report = index.sync(library, &mut |p: Progress| update_bar(&bar, &p), &ctrl_c_token());
        bar.finish_and_clear();
        let report = report.map_err(cancelled_or)?;
        tracing::info!(?report, "index ready");
        Ok(index)
    }
}

fn parse_lexicon_arg(arg: &str) -> anyhow::Result<(PathBuf, TermKind)> {
    let (kind, path) = if let Some(p) = arg.strip_prefix("dis:") {
        (Some(TermKind::Disease), p)
    } else if let Some(p) = arg.strip_prefix("sym:") {
        (Some(TermKind::Symptom), p)
    } else {
        (None, arg)
    };
    let path = PathBuf::from(path);
    let kind = match kind.or_else(|| TermKind::from_file_name(&path)) {
        Some(k) => k,
        None => anyhow::bail!(
            "cannot tell whether {} lists diseases or symptoms: prefix it with `dis:` or `sym:`",
            path.display()
        ),
    };
    Ok((path, kind))
}

/// The starter library: `$DOCTORGLM_LIBRARY`, else the installed one (the package's resource
/// folder, see `crate::resources`), else `knowledge/library` beside the executable or a parent
/// of it (a build in the repository), else the source tree's. It is only read, never written.
pub fn default_library_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCTORGLM_LIBRARY") {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = crate::resources::find_resource_dir(&exe, crate::resources::STARTER_LIBRARY) {
            return dir;
        }
        for dir in exe.ancestors().skip(1).take(4) {
            let candidate = dir.join("knowledge").join("library");
            if candidate.is_dir() {
                return candidate;
            }
        }
    }
    doctorglm_knowledge::library::starter_library_dir()
}

/// The data folder: `$DOCTORGLM_DATA_DIR`, else the platform's per-user folder.
pub fn data_dir() -> anyhow::Result<PathBuf> {
    Ok(crate::store::AppPaths::resolve(None)?.data_dir)
}

/// Name of the user's library folder inside the data folder.
pub const USER_LIBRARY: &str = "knowledge-library";
/// Name of the index folder inside the data folder.
pub const INDEX: &str = "knowledge-index";

/// The user's own library (imports go here): `knowledge-library` in the data folder.
pub fn user_library_dir() -> anyhow::Result<PathBuf> {
    Ok(data_dir()?.join(USER_LIBRARY))
}

/// `knowledge-index` in the data folder.
pub fn default_index_dir() -> anyhow::Result<PathBuf> {
    Ok(data_dir()?.join(INDEX))
}

/// A token that Ctrl-C cancels (the handler is installed once per process).
fn ctrl_c_token() -> CancelToken {
    static TOKEN: std::sync::OnceLock<CancelToken> = std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| {
            let token = CancelToken::new();
            let t = token.clone();
            if let Err(e) = ctrlc::set_handler(move || t.cancel()) {
                tracing::warn!("Ctrl-C will not stop the work cleanly: {e}");
            }
            token
        })
        .clone()
}

fn cancelled_or(e: doctorglm_knowledge::KnowledgeError) -> anyhow::Error {
    match e {
        doctorglm_knowledge::KnowledgeError::Cancelled => anyhow::anyhow!("cancelled (Ctrl-C); the index is as it was"),
        e => e.into(),
    }
}

fn progress_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{prefix} {bar:40} {pos}/{len} {wide_msg}") {
        bar.set_style(style);
    }
    bar.set_prefix(what.to_string());
    bar
}

fn update_bar(bar: &indicatif::ProgressBar, p: &Progress) {
    if let Some(total) = p.total {
        bar.set_length(total as u64);
    }
    bar.set_position(p.done as u64);
    bar.set_message(p.message.clone());
}

/// `doctorglm knowledge` subcommands.
#[derive(Debug, Subcommand)]
pub enum KnowledgeCommand {
    /// Import a file or folder (Markdown/text, QASystemOnMedicalKG JSONL, CSV, MedQuAD XML,
    /// HTML) into the library; existing documents are never overwritten.
    Import {
        /// File or folder to import.
        path: PathBuf,
        #[command(flatten)]
        lib: LibraryArgs,
        /// Print the full report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Search the library (names and aliases count most).
    Search {
        /// Words to look for, any language.
        query: String,
        #[command(flatten)]
        lib: LibraryArgs,
        /// How many results.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Score keyword extraction on a CBLUE (CMeEE) NER file: P/R/F1 for dis and sym.
    EvalNer {
        /// The CBLUE JSON file.
        file: PathBuf,
        /// Only the records START..END of the file (0-based, END excluded), e.g. `0..250`.
        #[arg(long, value_name = "START..END")]
        records: Option<String>,
        #[command(flatten)]
        lib: LibraryArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bring the index up to date with the library (`--rebuild` to start over).
    Reindex {
        #[command(flatten)]
        lib: LibraryArgs,
        /// Delete the index and build it again.
        #[arg(long)]
        rebuild: bool,
    },
}

/// Runs a `knowledge` subcommand.
pub fn run(command: KnowledgeCommand) -> anyhow::Result<()> {
    match command {
        KnowledgeCommand::Import { path, lib, json } => import(&path, &lib, json),
        KnowledgeCommand::Search { query, lib, limit, json } => {
            let library = lib.load_library()?;
            let index = lib.synced_index(&library)?;
            let hits = index.search(&query, limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&hits)?);
            } else if hits.is_empty() {
                println!("no documents match");
            } else {
                for h in hits {
                    println!("{:8.3}  {}  {}", h.score, h.id, h.name);
                }
            }
            Ok(())
        }
        KnowledgeCommand::EvalNer { file, records, lib, json } => eval_ner(&file, records.as_deref(), &lib, json),
        KnowledgeCommand::Reindex { lib, rebuild } => {
            let library = lib.load_library()?;
            let dir = lib.index_dir()?;
            let mut index = KnowledgeIndex::open(&dir).with_context(|| format!("cannot open the index at {}", dir.display()))?;
            let cancel = ctrl_c_token();
            let bar = progress_bar("indexing");
            let mut progress = |p: Progress| update_bar(&bar, &p);
            let report = if rebuild { index.rebuild(&library, &mut progress, &cancel) } else { index.sync(&library, &mut progress, &cancel) };
            bar.finish_and_clear();
            let report = report.map_err(cancelled_or)?;
            println!(
                "index {}: {} added, {} updated, {} removed, {} unchanged{}",
                dir.display(),
                report.added,
                report.updated,
                report.removed,
                report.unchanged,
                if report.rebuilt { " (rebuilt)" } else { "" }
            );
            Ok(())
        }
    }
}

fn import(path: &Path, lib: &LibraryArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(path.exists(), "{} does not exist: give a file or folder of documents to import", path.display());
    let dir = lib.library_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the library folder {}", dir.display()))?;
    let mut library = lib.load_library()?;
    let cancel = ctrl_c_token();
    let bar = progress_bar("importing");
    let report = import_path(&mut library, path, &mut |p: Progress| update_bar(&bar, &p), &cancel);
    bar.finish_and_clear();
    let report = report.with_context(|| format!("cannot import {}", path.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.files {
            println!("read {} ({:?}, {})", f.path.display(), f.format, f.encoding);
        }
        for s in report.skipped.iter().take(50) {
            println!("skipped {}: {}", s.location, s.reason);
        }
        if report.skipped.len() > 50 {
            println!("... and {} more skipped (use --json for all)", report.skipped.len() - 50);
        }
        println!("{} imported, {} skipped into {}", report.imported.len(), report.skipped.len(), dir.display());
    }
    if report.cancelled {
        anyhow::bail!(
            "import cancelled (Ctrl-C): the {} documents written before it are complete and stay in {}; the index is updated on the next search",
            report.imported.len(),
            dir.display()
        );
    }
    lib.synced_index(&library)?;
    Ok(())
}

fn parse_range(range: &str, len: usize) -> anyhow::Result<std::ops::Range<usize>> {
    let bad = || anyhow::anyhow!("--records takes START..END (0-based, END excluded, at most {len}), e.g. 0..250; got `{range}`");
    let (a, b) = range.split_once("..").ok_or_else(bad)?;
    let start: usize = if a.trim().is_empty() { 0 } else { a.trim().parse().map_err(|_| bad())? };
    let end: usize = if b.trim().is_empty() { len } else { b.trim().parse().map_err(|_| bad())? };
    if start >= end || end > len {
        return Err(bad());
    }
    Ok(start..end)
}

fn eval_ner(file: &Path, records: Option<&str>, lib: &LibraryArgs, json: bool) -> anyhow::Result<()> {
    let library = lib.load_library()?;
    let mut b = LexiconBuilder::new();
    b.add_library(&library);
    for (path, kind) in lib.lexicon_files()? {
        b.add_file(&path, kind)?;
    }
    let extractor = KeywordExtractor::new(b.build()?);
    let all = read_records(file).with_context(|| format!("cannot evaluate on {}", file.display()))?;
    let range = match records {
        Some(r) => parse_range(r, all.len())?,
        None => 0..all.len(),
    };
    let r = evaluate_records(&extractor, &all[range]);
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{} texts, lexicon of {} terms", r.texts, extractor.lexicon().len());
        println!("type  precision  recall  F1     (tp/predicted/gold)");
        for (name, s) in [("dis", r.dis), ("sym", r.sym), ("all", r.all)] {
            println!("{name:<5} {:.3}      {:.3}   {:.3}  ({}/{}/{})", s.precision(), s.recall(), s.f1(), s.true_positives, s.predicted, s.gold);
        }
    }
    Ok(())
}
