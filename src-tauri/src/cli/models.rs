//! `doctorglm models import|list|check|import-adapter|remove`.
use crate::services::{models, AppContext, CancelFlag};
use std::path::PathBuf;

/// Model subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// Check a model folder and record it (adapters inside it are imported too).
    Import {
        /// The folder holding config.json, the tokenizer and the weights.
        path: PathBuf,
    },
    /// Check a model folder without importing it.
    Check {
        /// The folder.
        path: PathBuf,
    },
    /// Import an adapter (LoRA or P-tuning v2) for an imported model.
    ImportAdapter {
        /// The base model's id.
        base: String,
        /// The adapter folder.
        path: PathBuf,
    },
    /// List imported models and adapters.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget a model (its files stay on disk).
    Remove {
        /// The model's id.
        id: String,
    },
}

fn gib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

fn bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(1000);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}") {
        bar.set_style(style);
    }
    bar
}

/// Runs a models subcommand.
pub fn run(command: ModelsCommand) -> anyhow::Result<()> {
    let ctx = AppContext::open_default()?;
    match command {
        ModelsCommand::Import { path } => {
            let bar = bar();
            let record = models::import_model(
                &ctx,
                &path,
                &|p| {
                    bar.set_position((p.fraction * 1000.0) as u64);
                    bar.set_message(p.message);
                },
                &CancelFlag::new(),
            )?;
            bar.finish_and_clear();
            let adapters = models::list(&ctx)?.adapters.into_iter().filter(|a| a.base_id == record.id).count();
            println!(
                "imported {} ({}, {} parameters, INT4 needs {}) as {} with {adapters} adapter(s)",
                record.info.name,
                record.info.architecture.label(),
                record.info.parameters,
                gib(record.info.memory_int4_bytes),
                record.id
            );
        }
        ModelsCommand::Check { path } => {
            let info = models::check_model(&path, &|_| {}, &CancelFlag::new())?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        ModelsCommand::ImportAdapter { base, path } => {
            let record = models::import_adapter(&ctx, &base, &path)?;
            println!("imported adapter {} as {}", record.info.name, record.id);
        }
        ModelsCommand::List { json } => {
            let registry = models::list(&ctx)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&registry)?);
            } else if registry.models.is_empty() {
                println!("no model imported: doctorglm models import <folder>");
            } else {
                for m in &registry.models {
                    println!(
                        "{}  {}  {}  {}  {}",
                        m.id,
                        m.info.name,
                        m.info.architecture.label(),
                        gib(m.info.disk_bytes),
                        m.info.path.display()
                    );
                    for a in registry.adapters.iter().filter(|a| a.base_id == m.id) {
                        println!("    {}  {}", a.id, a.info.name);
                    }
                }
            }
        }
        ModelsCommand::Remove { id } => {
            models::remove_model(&ctx, &id)?;
            println!("removed {id}");
        }
    }
    Ok(())
}
