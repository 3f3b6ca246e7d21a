//! `doctorglm knowledge ...`: import documents into the library, search it, evaluate keyword
//! extraction on a CBLUE NER file, re-index.
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use doctorglm_knowledge::import::import_path;
use doctorglm_knowledge::ner_eval::evaluate_file;
use doctorglm_knowledge::{CancelToken, KeywordExtractor, KnowledgeIndex, LexiconBuilder, Library, Progress, TermKind};

/// Where the library and its index are, and extra lexicons.
#[derive(Debug, Clone, Args)]
pub struct LibraryArgs {
    /// Library folder of Markdown documents (default: the starter library).
    #[arg(long, value_name = "DIR")]
    pub library: Option<PathBuf>,
    /// Index folder (default: `knowledge-index` under the user's data folder).
    #[arg(long, value_name = "DIR")]
    pub index: Option<PathBuf>,
    /// Extra lexicon file, one term a line; its kind comes from a `dis:` / `sym:` prefix or
    /// the file name (disease*.txt, symptom*.txt). Repeatable.
    #[arg(long = "lexicon", value_name = "[dis:|sym:]FILE")]
    pub lexicons: Vec<String>,
}

impl LibraryArgs {
    /// The library folder to use.
    pub fn library_dir(&self) -> PathBuf {
        self.library.clone().unwrap_or_else(default_library_dir)
    }

    /// The index folder to use.
    pub fn index_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.index {
            Some(d) => Ok(d.clone()),
            None => default_index_dir(),
        }
    }

    /// Extra lexicons with their kinds.
    pub fn lexicon_files(&self) -> anyhow::Result<Vec<(PathBuf, TermKind)>> {
        self.lexicons.iter().map(|s| parse_lexicon_arg(s)).collect()
    }

    /// Loads the library, reporting files it skipped.
    pub fn load_library(&self) -> anyhow::Result<Library> {
        let dir = self.library_dir();
        let lib = Library::load(&dir).with_context(|| format!("cannot load the library at {}", dir.display()))?;
        for s in &lib.skipped {
            eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
        }
        Ok(lib)
    }

    /// Opens the index and brings it up to date with the library.
    pub fn synced_index(&self, library: &Library) -> anyhow::Result<KnowledgeIndex> {
        let dir = self.index_dir()?;
        let mut index = KnowledgeIndex::open(&dir).with_context(|| format!("cannot open the index at {}", dir.display()))?;
        let report = index.sync(library, &mut |p: Progress| tracing::debug!(done = p.done, "indexing"), &CancelToken::new())?;
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

/// The starter library: `$DOCTORGLM_LIBRARY`, else `knowledge/library` beside the executable
/// (or a parent of it), else the source tree's.
pub fn default_library_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCTORGLM_LIBRARY") {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            let candidate = dir.join("knowledge").join("library");
            if candidate.is_dir() {
                return candidate;
            }
        }
    }
    doctorglm_knowledge::library::starter_library_dir()
}

/// `knowledge-index` under the user's data folder.
pub fn default_index_dir() -> anyhow::Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("org", "DoctorGLM", "DoctorGLM")
        .context("cannot find the user's data folder; pass --index DIR")?;
    Ok(dirs.data_dir().join("knowledge-index"))
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
        KnowledgeCommand::EvalNer { file, lib, json } => eval_ner(&file, &lib, json),
        KnowledgeCommand::Reindex { lib, rebuild } => {
            let library = lib.load_library()?;
            let dir = lib.index_dir()?;
            let mut index = KnowledgeIndex::open(&dir)?;
            let cancel = CancelToken::new();
            let mut progress = |p: Progress| eprint!("\rindexing {}/{}", p.done, p.total.unwrap_or(0));
            let report = if rebuild { index.rebuild(&library, &mut progress, &cancel)? } else { index.sync(&library, &mut progress, &cancel)? };
            eprintln!();
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
    let dir = lib.library_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the library folder {}", dir.display()))?;
    let mut library = lib.load_library()?;
    let mut progress = |p: Progress| {
        if p.done % 100 == 0 || Some(p.done) == p.total {
            eprint!("\rimporting {}/{}", p.done, p.total.unwrap_or(0));
        }
    };
    let report = import_path(&mut library, path, &mut progress, &CancelToken::new())?;
    eprintln!();
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
    lib.synced_index(&library)?;
    Ok(())
}

fn eval_ner(file: &Path, lib: &LibraryArgs, json: bool) -> anyhow::Result<()> {
    let library = lib.load_library()?;
    let mut b = LexiconBuilder::new();
    b.add_library(&library);
    for (path, kind) in lib.lexicon_files()? {
        b.add_file(&path, kind)?;
    }
    let extractor = KeywordExtractor::new(b.build()?);
    let r = evaluate_file(&extractor, file)?;
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
