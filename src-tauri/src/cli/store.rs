//! `doctorglm store status|backup|restore`: the encrypted conversation store for
//! administrators — where its key is kept, and encrypted backups.
use crate::services::storage::{self, StoreStatus};
use crate::services::{AppContext, CancelFlag};
use crate::store::KeyStorage;
use std::path::PathBuf;

/// Store subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Where the database and its key are kept (OS keyring, key file, passphrase), its size.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write an encrypted backup (same key as the database) to a new file.
    Backup {
        /// The backup file; it must not exist yet.
        path: PathBuf,
    },
    /// Replace the database with a backup made with the same key (the current database is
    /// first copied beside it).
    Restore {
        /// The backup file.
        path: PathBuf,
    },
}

fn print_status(s: &StoreStatus) {
    let key = match &s.key {
        KeyStorage::Keyring => "OS keyring".to_string(),
        KeyStorage::KeyringUnavailable { reason, key_file } => {
            format!("key file {} (no OS keyring: {reason})", key_file.display())
        }
        KeyStorage::Passphrase => "passphrase".into(),
        KeyStorage::Provided => "key given by the caller".into(),
    };
    println!("database:       {}", s.database.display());
    println!("key:            {key}");
    println!("size:           {:.1} MiB", s.database_bytes as f64 / 1_048_576.0);
    println!("schema version: {}", s.schema_version);
    println!("conversations:  {} ({} messages)", s.conversations, s.messages);
    if s.recovered_messages > 0 {
        println!("recovered:      {} answer(s) left unfinished by a crash, marked interrupted", s.recovered_messages);
    }
    if let Some(l) = &s.legacy_import {
        for p in &l.renamed {
            println!("imported:       {} (a plaintext copy: delete it once checked)", p.display());
        }
        for p in &l.problems {
            println!("not imported:   {p}");
        }
    }
    println!("{}", s.key_description);
}

/// Runs a store subcommand.
pub fn run(command: StoreCommand) -> anyhow::Result<()> {
    let ctx = AppContext::open_default()?;
    match command {
        StoreCommand::Status { json } => {
            let s = storage::status(&ctx)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_status(&s);
            }
        }
        StoreCommand::Backup { path } => {
            storage::backup(&ctx, &path, &|_| {}, &CancelFlag::new())?;
            println!("backup written to {}", path.display());
        }
        StoreCommand::Restore { path } => {
            let before = storage::restore(&ctx, &path, &|_| {})?;
            println!("restored from {}; the database as it was is kept in {}", path.display(), before.display());
        }
    }
    Ok(())
}
