//! `doctorglm finetune`: the fine-tuning wizard's steps on the command line. `prepare` imports
//! exports, de-identifies, cleans and splits them into a prepared dataset directory; `train`
//! and `resume` (module `train`, feature `app`) run a LoRA job and register its adapter.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use doctorglm_datasets::clean::{CleanSettings, Dedup};
use doctorglm_datasets::encoding::TextEncoding;
use doctorglm_datasets::import::{self, Mapping, ReadOptions};
use doctorglm_datasets::prepared::{self, PrepareSettings};
use doctorglm_datasets::Control;

/// The fine-tuning steps.
// Parsed once per run: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum FinetuneCommand {
    /// Import exports (CSV, XLSX, JSON, JSONL), de-identify, clean and split them into a dataset.
    Prepare(PrepareArgs),
    /// Train a LoRA adapter on a prepared dataset (paper defaults) and register it.
    #[cfg(feature = "app")]
    Train(super::finetune_train::TrainArgs),
    /// Continue a job from the last checkpoint of its output folder.
    #[cfg(feature = "app")]
    Resume(super::finetune_train::ResumeArgs),
}

/// Duplicate removal on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DedupArg {
    /// Keep duplicates.
    None,
    /// Remove identical dialogues.
    Exact,
    /// Also remove dialogues identical after normalisation.
    Near,
}

/// Encodings that can be forced.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EncodingArg {
    /// UTF-8.
    Utf8,
    /// GB18030 / GBK.
    Gb18030,
    /// UTF-16 little-endian.
    Utf16le,
    /// UTF-16 big-endian.
    Utf16be,
}

/// Arguments of `finetune prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Export files to import (repeat for several).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Directory for train.jsonl, validation.jsonl and manifest.json.
    #[arg(short, long, required_unless_present = "inspect")]
    pub output: Option<PathBuf>,
    /// Only show what each file looks like (format, encoding, columns, suggested mapping, preview).
    #[arg(long)]
    pub inspect: bool,
    /// A column mapping as JSON (as `--inspect` prints it) for every input, instead of the suggestion.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Force a text encoding instead of detecting it.
    #[arg(long, value_enum)]
    pub encoding: Option<EncodingArg>,
    /// Share held out for validation.
    #[arg(long, default_value_t = 0.05)]
    pub validation: f64,
    /// Seed of the split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Maximum input tokens in training (longer inputs are truncated, or dropped with --drop-over-limits).
    #[arg(long, default_value_t = 512)]
    pub max_source_tokens: usize,
    /// Maximum answer tokens in training.
    #[arg(long, default_value_t = 100)]
    pub max_target_tokens: usize,
    /// Drop dialogues over the token limits instead of truncating them in training.
    #[arg(long)]
    pub drop_over_limits: bool,
    /// Minimum characters of question and answer.
    #[arg(long, default_value_t = 2)]
    pub min_chars: usize,
    /// Duplicate removal.
    #[arg(long, value_enum, default_value_t = DedupArg::Near)]
    pub dedup: DedupArg,
    /// Skip de-identification (only for data that is already anonymous; recorded in the manifest).
    #[arg(long)]
    pub no_deid: bool,
}

/// Runs a `finetune` subcommand.
pub fn run(command: FinetuneCommand) -> anyhow::Result<()> {
    match command {
        FinetuneCommand::Prepare(args) => prepare(args),
        #[cfg(feature = "app")]
        FinetuneCommand::Train(args) => super::finetune_train::train(args),
        #[cfg(feature = "app")]
        FinetuneCommand::Resume(args) => super::finetune_train::resume(args),
    }
}

fn read_options(args: &PrepareArgs) -> ReadOptions {
    ReadOptions {
        encoding: args.encoding.map(|e| match e {
            EncodingArg::Utf8 => TextEncoding::Utf8,
            EncodingArg::Gb18030 => TextEncoding::Gb18030,
            EncodingArg::Utf16le => TextEncoding::Utf16Le,
            EncodingArg::Utf16be => TextEncoding::Utf16Be,
        }),
        ..ReadOptions::default()
    }
}

fn inspect(args: &PrepareArgs) -> anyhow::Result<()> {
    for path in &args.inputs {
        let i = import::inspect(path, &read_options(args), 3, &mut Control::none())
            .with_context(|| format!("inspecting {}", path.display()))?;
        println!("{}", path.display());
        println!("  format {:?}, encoding {}, {} records", i.format, i.encoding.map(|e| e.label()).unwrap_or("-"), i.records);
        println!("  columns: {}", i.columns.join(", "));
        for note in &i.notes {
            println!("  note: {note}");
        }
        for issue in i.unreadable.iter().take(10) {
            println!("  unreadable {issue}");
        }
        match &i.suggested {
            Some((layout, mapping)) => println!("  layout {layout:?}; mapping {}", serde_json::to_string(mapping)?),
            None => println!("  no mapping suggested: write one with --mapping"),
        }
        for (n, row) in i.preview.iter().enumerate() {
            println!("  record {}:", n + 1);
            for (k, v) in row {
                let short: String = v.chars().take(60).collect();
                println!("    {k}: {short}");
            }
        }
    }
    Ok(())
}

fn prepare(args: PrepareArgs) -> anyhow::Result<()> {
    if args.inspect {
        return inspect(&args);
    }
    let output = args.output.clone().context("--output is required")?;
    let mapping: Option<Mapping> = match &args.mapping {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(serde_json::from_str(&text).with_context(|| format!("{} is not a column mapping", p.display()))?)
        }
        None => None,
    };
    let settings = PrepareSettings {
        read: read_options(&args),
        clean: CleanSettings {
            min_source_chars: args.min_chars,
            min_target_chars: args.min_chars,
            max_source_tokens: args.max_source_tokens,
            max_target_tokens: args.max_target_tokens,
            drop_over_token_limits: args.drop_over_limits,
            dedup: match args.dedup {
                DedupArg::None => Dedup::None,
                DedupArg::Exact => Dedup::Exact,
                DedupArg::Near => Dedup::Near,
            },
            validation_fraction: args.validation,
            seed: args.seed,
            ..CleanSettings::default()
        },
        skip_deid: args.no_deid,
    };
    let sources: Vec<(PathBuf, Option<Mapping>)> = args.inputs.iter().map(|p| (p.clone(), mapping.clone())).collect();
    let cancel = AtomicBool::new(false);
    let mut last = 0usize;
    let mut control = Control::none().with_cancel(&cancel).with_progress(|p| {
        if p.done >= last + 5000 || Some(p.done) == p.total {
            last = p.done;
            eprint!("\r  {} / {}      ", p.done, p.total.map(|t| t.to_string()).unwrap_or_else(|| "?".into()));
        }
    });
    let (dataset, report) = prepared::prepare(&sources, &settings, None, &mut control)?;
    eprintln!();
    for s in &dataset.manifest.sources {
        println!(
            "{}: {:?} {}, {} records, {} imported, {} rejected",
            s.name,
            s.format,
            s.encoding.map(|e| e.label()).unwrap_or(""),
            s.records,
            s.imported,
            s.rejected_count
        );
        for issue in s.rejected.iter().take(10) {
            println!("  rejected {issue}");
        }
    }
    if report.dialogues > 0 {
        println!("de-identification: {} replacements in {} of {} dialogues", report.total(), report.dialogues_changed, report.dialogues);
        for (kind, n) in &report.counts {
            println!("  {kind:?}: {n}");
        }
        println!("  review these examples:");
        for e in &report.examples {
            let at = e.origin.map(|o| o.to_string()).unwrap_or_default();
            println!("  {:?} {} ({at}): {}", e.kind, e.masked, e.context);
        }
    } else {
        println!("de-identification skipped (--no-deid)");
    }
    let c = &dataset.manifest.cleaning;
    println!("cleaning: {} in, {} kept", c.input, c.kept);
    for (reason, n) in &c.removed {
        println!("  removed {reason:?}: {n}");
    }
    let h = &dataset.manifest.histograms;
    println!(
        "tokens (approximate): source p50 {} p95 {} max {}, {} over {}; target p50 {} p95 {} max {}, {} over {}",
        h.source.p50, h.source.p95, h.source.max, h.source.over_limit, h.source.limit, h.target.p50, h.target.p95, h.target.max, h.target.over_limit, h.target.limit
    );
    dataset.write(&output).with_context(|| format!("writing {}", output.display()))?;
    println!("wrote {} training and {} validation dialogues to {}", dataset.train.len(), dataset.validation.len(), output.display());
    Ok(())
}
