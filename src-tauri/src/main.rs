// No console window on Windows release builds; the CLI still prints when run from a terminal.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]
use clap::Parser;
use doctorglm::cli::{self, Cli};

fn main() -> anyhow::Result<()> {
    #[cfg(feature = "desktop")]
    let started = std::time::Instant::now();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let parsed = Cli::parse();
    parsed.apply_global_options()?;
    match parsed.command {
        Some(command) => cli::run(command),
        #[cfg(feature = "desktop")]
        None => doctorglm::app::open_and_run(started),
        #[cfg(not(feature = "desktop"))]
        None => {
            anyhow::bail!("this build has no window (it was built without the `desktop` feature); see `doctorglm --help`")
        }
    }
}
