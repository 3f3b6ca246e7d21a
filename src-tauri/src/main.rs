use clap::Parser;
use doctorglm::cli::{self, Cli};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let parsed = Cli::parse();
    match parsed.command {
        Some(command) => cli::run(command),
        None => anyhow::bail!("the desktop window is not built yet; see `doctorglm --help`"),
    }
}
