//! Streams an answer from a model folder (developer tool).
//!
//! `cargo run -p doctorglm-models --example generate -- --model DIR [--adapter DIR]
//!  [--ptuning DIR] --prompt TEXT [--system TEXT] [--max-new-tokens N] [--temperature T]
//!  [--top-p P] [--seed S]`
//!
//! The prompt is put in the model's chat format by the folder's tokenizer; `--ids 1,2,3` runs
//! raw token ids instead. The answer streams to stdout as it is generated; timings go to stderr.
use clap::Parser;
use doctorglm_models::tokenizer::Tokenizer;
use doctorglm_models::{generate, GenerationSettings, LoadOptions, Model, PrefixAdapter, Request, SamplingConfig};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

#[derive(Parser)]
struct Args {
    /// Model folder (config.json, weights and tokenizer).
    #[arg(long)]
    model: PathBuf,
    /// PEFT LoRA adapter folder.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// P-tuning v2 checkpoint folder.
    #[arg(long)]
    ptuning: Option<PathBuf>,
    /// The question.
    #[arg(long)]
    prompt: Option<String>,
    /// System message (ChatGLM3 and GLM-4).
    #[arg(long)]
    system: Option<String>,
    /// Raw prompt token ids, comma-separated, instead of --prompt.
    #[arg(long, value_delimiter = ',')]
    ids: Vec<u32>,
    /// Most new tokens.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = 0.7)]
    temperature: f64,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 0.8)]
    top_p: f64,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = 1.1)]
    repetition_penalty: f32,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tokenizer = Tokenizer::load(&args.model)?;
    let prompt = match (&args.prompt, args.ids.is_empty()) {
        (Some(text), _) => tokenizer.build_chat(args.system.as_deref(), &[], text),
        (None, false) => args.ids.clone(),
        (None, true) => anyhow::bail!("give the question with --prompt (or raw ids with --ids)"),
    };
    let started = std::time::Instant::now();
    let mut model = Model::load(&args.model, &LoadOptions::default())?;
    let adapter = match &args.adapter {
        Some(dir) => {
            model.load_lora("cli", dir)?;
            Some("cli")
        }
        None => None,
    };
    let prefix = args.ptuning.as_ref().map(|dir| PrefixAdapter::load(dir, &model)).transpose()?;
    eprintln!("loaded in {:.2} s; prompt of {} tokens", started.elapsed().as_secs_f64(), prompt.len());
    let mut stop_token_ids = tokenizer.special_tokens().eos.clone();
    stop_token_ids.extend(model.config().eos_token_ids.iter().copied());
    let sampling = SamplingConfig {
        do_sample: args.temperature > 0.0,
        temperature: args.temperature as f32,
        top_p: Some(args.top_p as f32),
        top_k: None,
        repetition_penalty: args.repetition_penalty,
        no_repeat_ngram_size: None,
        seed: args.seed,
    };
    let settings = GenerationSettings { sampling, max_new_tokens: args.max_new_tokens, stop_token_ids };
    let request = Request { prompt: &prompt, adapter, prefix: prefix.as_ref() };
    let mut decoder = tokenizer.stream_decoder();
    let mut stdout = std::io::stdout();
    let mut first_token = None;
    let started = std::time::Instant::now();
    let out = generate(&model, request, &settings, &AtomicBool::new(false), |id| {
        first_token.get_or_insert_with(|| started.elapsed().as_secs_f64());
        let _ = write!(stdout, "{}", decoder.push(id));
        let _ = stdout.flush();
    })?;
    println!("{}", decoder.finish());
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} tokens in {secs:.2} s, first after {:.2} s ({:?})",
        out.ids.len(),
        first_token.unwrap_or(secs),
        out.stop
    );
    Ok(())
}
