//! `doctorglm export`: conversations as Markdown or JSON.
use crate::services::conversations::{self, ExportFormat};
use crate::services::AppContext;
use std::path::PathBuf;

/// `doctorglm export` options.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// One conversation's id; all when omitted.
    #[arg(long)]
    pub conversation: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: ExportFormat,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Runs `doctorglm export`.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let ctx = AppContext::open_default()?;
    let text = conversations::export(&ctx, args.conversation.as_deref(), args.format)?;
    match args.output {
        Some(path) => std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
