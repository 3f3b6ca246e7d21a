//! The `doctorglm` command line. Each subcommand lives in its own module and calls the same
//! `crate::services` functions the Tauri commands call.
use clap::{Parser, Subcommand};

#[cfg(feature = "app")]
pub mod ask;
#[cfg(feature = "app")]
pub mod chat;
pub mod designer;
#[cfg(feature = "app")]
pub mod export;
pub mod knowledge;
#[cfg(feature = "app")]
pub mod store;
#[cfg(feature = "app")]
pub mod models;
pub mod finetune;
#[cfg(feature = "app")]
pub mod finetune_train;

/// DoctorGLM Desktop: with no subcommand the window opens.
#[derive(Debug, Parser)]
#[command(name = "doctorglm", version, about)]
pub struct Cli {
    /// Read the store's passphrase from the first line of standard input (for stores made with
    /// a passphrase instead of the OS keyring; a new store is made with it). The variable
    /// DOCTORGLM_PASSPHRASE does the same; a passphrase is never taken as an argument.
    #[arg(long, global = true)]
    pub passphrase_stdin: bool,
    /// What to do; none opens the desktop window.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Applies the global options before a command runs: `--passphrase-stdin` reads the
    /// passphrase now, so later opens of the store use it.
    pub fn apply_global_options(&self) -> anyhow::Result<()> {
        if self.passphrase_stdin {
            #[cfg(feature = "app")]
            {
                let passphrase = crate::services::context::read_passphrase(&mut std::io::stdin().lock())?;
                crate::services::context::use_passphrase(passphrase);
            }
            #[cfg(not(feature = "app"))]
            anyhow::bail!("--passphrase-stdin needs a build with the app feature (this one has no store)");
        }
        Ok(())
    }
}

/// The subcommands.
// Parsed once per run: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    #[cfg(feature = "app")]
    /// Answer one question and print the answer (and its sources).
    Ask(ask::AskArgs),
    #[cfg(feature = "app")]
    /// A conversation in the terminal (an empty line, `/quit` or Ctrl-D ends it).
    Chat(chat::ChatArgs),
    #[cfg(feature = "app")]
    /// Import and list models and adapters.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    #[cfg(feature = "app")]
    /// Export conversations as Markdown or JSON.
    Export(export::ExportArgs),
    #[cfg(feature = "app")]
    /// The encrypted store: status (where its key is kept), backup, restore.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Show what the prompt designer makes of a question (keywords, diseases, prompt, sources).
    Designer(designer::DesignerArgs),
    /// The disease library: import, search, evaluate keyword extraction, re-index.
    #[command(subcommand)]
    Knowledge(knowledge::KnowledgeCommand),
    /// Fine-tuning: `prepare` a de-identified dataset from exports, `train` an adapter, `resume` a job.
    #[command(subcommand)]
    Finetune(finetune::FinetuneCommand),
}

/// Runs a parsed subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        #[cfg(feature = "app")]
        Command::Ask(args) => ask::run(args),
        #[cfg(feature = "app")]
        Command::Chat(args) => chat::run(args),
        #[cfg(feature = "app")]
        Command::Models(cmd) => models::run(cmd),
        #[cfg(feature = "app")]
        Command::Export(args) => export::run(args),
        #[cfg(feature = "app")]
        Command::Store(cmd) => store::run(cmd),
        Command::Designer(args) => designer::run(args),
        Command::Knowledge(cmd) => knowledge::run(cmd),
        Command::Finetune(cmd) => finetune::run(cmd),
    }
}
