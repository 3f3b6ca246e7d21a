//! The `doctorglm` command line. Each subcommand lives in its own module.
use clap::{Parser, Subcommand};

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
pub enum Command {}

/// Runs a parsed subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {}
}
