//! Decoding benchmark: tokens per second with the KV cache against recomputing the whole
//! sequence for every token, on one model folder (the ratio survives a noisy machine).
//!
//! `cargo run --release -p doctorglm-models --example bench_decode -- --model DIR [--prompt-len N] [--new N]`
use clap::Parser;
use doctorglm_models::{LoadOptions, Model};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Model folder.
    #[arg(long)]
    model: PathBuf,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 64)]
    prompt_len: usize,
    /// Tokens to decode.
    #[arg(long, default_value_t = 32)]
    new: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let model = Model::load(&args.model, &LoadOptions::default())?;
    let c = model.config();
    // A prompt the ChatGLM-6B layout accepts too: context, then [gMASK] <sop>.
    let mut prompt: Vec<u32> = (0..args.prompt_len.saturating_sub(2)).map(|i| 100 + i as u32).collect();
    prompt.extend(c.gmask_token_id.into_iter().chain(c.bos_token_id));
    let next = |i: usize| 200 + i as u32;

    let started = Instant::now();
    let mut cache = model.new_cache(None);
    model.forward(&mut cache, &prompt, None, false)?;
    let prompt_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for i in 0..args.new {
        model.forward(&mut cache, &[next(i)], None, false)?;
    }
    let cached_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut seq = prompt.clone();
    for i in 0..args.new {
        seq.push(next(i));
        model.forward(&mut model.new_cache(None), &seq, None, false)?;
    }
    let recompute_s = started.elapsed().as_secs_f64();

    println!("prompt: {} tokens in {prompt_s:.3} s ({:.1} tokens/s)", prompt.len(), prompt.len() as f64 / prompt_s);
    println!("decode with KV cache: {:.1} tokens/s", args.new as f64 / cached_s);
    println!("decode by recomputation: {:.1} tokens/s", args.new as f64 / recompute_s);
    println!("cache speed-up: {:.1}x", recompute_s / cached_s);
    Ok(())
}
