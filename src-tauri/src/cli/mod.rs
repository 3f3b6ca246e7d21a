//! The `doctorglm` command line. Each subcommand lives in its own module.
use clap::{Parser, Subcommand};

pub mod designer;
pub mod knowledge;

/// DoctorGLM Desktop: with no subcommand the window opens.
#[derive(Debug, Parser)]
#[command(name = "doctorglm", version, about)]
pub struct Cli {
    /// What to do; none opens the desktop window.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what the prompt designer makes of a question (keywords, diseases, prompt, sources).
    Designer(designer::DesignerArgs),
    /// The disease library: import, search, evaluate keyword extraction, re-index.
    #[command(subcommand)]
    Knowledge(knowledge::KnowledgeCommand),
}

/// Runs a parsed subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Designer(args) => designer::run(args),
        Command::Knowledge(cmd) => knowledge::run(cmd),
    }
}
