//! Streams an answer from a model folder (developer tool).
//!
//! `cargo run -p doctorglm-models --example generate -- --model DIR [--adapter DIR]
//!  [--ptuning DIR] --ids 1,2,3 [--max-new-tokens N] [--temperature T] [--top-p P] [--seed S]`
//!
//! Until the tokenizer module lands, prompts are given as token ids and the answer is printed
//! as token ids as they stream.
use clap::Parser;
use doctorglm_models::{generate, GenerationSettings, LoadOptions, Model, PrefixAdapter, Request, SamplingConfig};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Parser)]
struct Args {
    /// Model folder (config.json plus weights).
    #[arg(long)]
    model: PathBuf,
    /// PEFT LoRA adapter folder.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// P-tuning v2 checkpoint folder.
    #[arg(long)]
    ptuning: Option<PathBuf>,
    /// Prompt text (needs the tokenizer module).
    #[arg(long)]
    prompt: Option<String>,
    /// Prompt token ids, comma-separated, already in the model's chat format.
    #[arg(long, value_delimiter = ',')]
    ids: Vec<u32>,
    /// Most new tokens.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 0.8)]
    top_p: f64,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.prompt.is_some() && args.ids.is_empty() {
        anyhow::bail!("--prompt needs the tokenizer module, which is not built in yet; pass --ids instead");
    }
    if args.ids.is_empty() {
        anyhow::bail!("give the prompt with --ids");
    }
    let mut model = Model::load(&args.model, &LoadOptions::default())?;
    let adapter = match &args.adapter {
        Some(dir) => {
            model.load_lora("cli", dir)?;
            Some("cli")
        }
        None => None,
    };
    let prefix = args.ptuning.as_ref().map(|dir| PrefixAdapter::load(dir, &model)).transpose()?;
    let sampling = SamplingConfig {
        do_sample: args.temperature > 0.0,
        temperature: args.temperature as f32,
        top_p: Some(args.top_p as f32),
        seed: args.seed,
        ..SamplingConfig::default()
    };
    let settings = GenerationSettings {
        sampling,
        max_new_tokens: args.max_new_tokens,
        stop_token_ids: model.config().eos_token_ids.clone(),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let request = Request { prompt: &args.ids, adapter, prefix: prefix.as_ref() };
    let started = std::time::Instant::now();
    let mut stdout = std::io::stdout();
    let out = generate(&model, request, &settings, &cancel, |id| {
        let _ = write!(stdout, "{id} ");
        let _ = stdout.flush();
    })?;
    cancel.store(false, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    println!();
    eprintln!("{} tokens in {secs:.2} s ({:?})", out.ids.len(), out.stop);
    Ok(())
}
