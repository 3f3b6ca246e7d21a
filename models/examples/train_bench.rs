//! Benchmark of one LoRA training step (developer tool; prints figures, asserts nothing).
//!
//! `cargo run --release -p doctorglm-models --example train_bench -- --model DIR
//!  [--batch 2] [--seq 64] [--steps 5] [--optimizer lion|adamw] [--rank 8]
//!  [--base f32|q8_0|q4_0] [--checkpointing] [--dtype f32|bf16]`
//!
//! Memory: the process's resident set after loading, and its peak over the training steps
//! (measured before the inference forward, whose full-vocabulary logits would dominate it).
//!
//! Runs a seeded random batch (the second half of each row scored) through a fresh LoRA
//! adapter on `query_key_value` and reports, per step: the inference forward (fused kernels,
//! no adapter), the trainable forward (differentiable ops, adapter as `Var`s), and the whole
//! step (forward, loss, backward, update), with ratios to the inference forward so the figures
//! survive a noisy machine.
use clap::Parser;
use doctorglm_models::lora::LoraConfig;
use doctorglm_models::train::{Batch, LoraParams, LoraTrainer, LrSchedule, OptimizerConfig, TrainSettings};
use doctorglm_models::{LoadOptions, Model};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Model folder (config.json and weights).
    #[arg(long)]
    model: PathBuf,
    /// Rows per batch.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Tokens per row.
    #[arg(long, default_value_t = 64)]
    seq: usize,
    /// Timed steps (after one untimed warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// `lion` or `adamw`.
    #[arg(long, default_value = "lion")]
    optimizer: String,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// Base weights: `f32`, or quantized while loading to `q8_0` / `q4_0`.
    #[arg(long, default_value = "f32")]
    base: String,
    /// Gradient checkpointing (recompute each block in the backward pass).
    #[arg(long)]
    checkpointing: bool,
    /// Compute dtype of a full-precision base: `f32` or `bf16`.
    #[arg(long, default_value = "f32")]
    dtype: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dtype = match args.dtype.as_str() {
        "bf16" => candle_core::DType::BF16,
        "f32" => candle_core::DType::F32,
        other => anyhow::bail!("--dtype is f32 or bf16, not {other}"),
    };
    let mut model = match args.base.as_str() {
        "f32" => Model::load(&args.model, &LoadOptions { dtype, ..LoadOptions::default() })?,
        name => {
            let format = doctorglm_models::quant::QuantFormat::parse(name)
                .ok_or_else(|| anyhow::anyhow!("--base is f32, q8_0 or q4_0, not {name}"))?;
            let quant = doctorglm_models::QuantizeOptions::new(format, None);
            Model::load_quantized(&args.model, &quant, &|_, _| {}, &std::sync::atomic::AtomicBool::new(false))?.0
        }
    };
    let loaded_rss = rss_mib("VmRSS:");
    let vocab = model.config().vocab_size as u64;
    // A fixed linear-congruential sequence keeps the batch the same from run to run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % vocab.min(20_000)) as u32 + 100
    };
    let mut ids: Vec<Vec<u32>> = (0..args.batch).map(|_| (0..args.seq).map(|_| next()).collect()).collect();
    // ChatGLM-6B needs `[gMASK] <sop>` between the context and the answer.
    if let (Some(gmask), Some(bos)) = (model.config().gmask_token_id, model.config().bos_token_id) {
        for row in &mut ids {
            row[args.seq / 2 - 2] = gmask;
            row[args.seq / 2 - 1] = bos;
        }
    }
    let labels: Vec<Vec<i64>> = ids
        .iter()
        .map(|row| row.iter().enumerate().map(|(i, &t)| if i < args.seq / 2 { -100 } else { i64::from(t) }).collect())
        .collect();
    let batch = Batch::from_rows(&ids, &labels, 0, model.device())?;
    let config = LoraConfig {
        r: args.rank,
        alpha: 2.0 * args.rank as f64,
        target_modules: vec!["query_key_value".into()],
        use_rslora: false,
    };
    let params = LoraParams::init(&model, config, 0)?;
    let trainable = params.num_parameters();
    let optimizer = match args.optimizer.as_str() {
        "adamw" => OptimizerConfig::AdamW { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 },
        _ => OptimizerConfig::paper_default(),
    };
    let settings = TrainSettings { optimizer, schedule: LrSchedule::constant(), max_grad_norm: Some(1.0) };
    let mut trainer = LoraTrainer::new(&mut model, "bench", params, settings)?;
    trainer.set_gradient_checkpointing(args.checkpointing);
    trainer.step(&model, &batch)?;

    let time = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let start = Instant::now();
        for _ in 0..args.steps {
            f()?;
        }
        Ok(start.elapsed().as_secs_f64() / args.steps as f64)
    };
    let mut last = 0f32;
    let step = time(&mut || {
        last = trainer.step(&model, &batch)?.loss;
        Ok(())
    })?;
    let training_peak = rss_mib("VmHWM:");
    let inference = time(&mut || {
        model.forward_batch(&batch.input_ids, None)?;
        Ok(())
    })?;
    let trainable_forward = time(&mut || {
        trainer.loss(&model, &batch)?;
        Ok(())
    })?;
    let tokens = (args.batch * args.seq) as f64;
    println!(
        "model {} | base {} | dtype {} | checkpointing {} | batch {}x{} | LoRA r {} ({} trainable scalars) | {}",
        args.model.display(),
        args.base,
        args.dtype,
        args.checkpointing,
        args.batch,
        args.seq,
        args.rank,
        trainable,
        args.optimizer
    );
    println!("inference forward   {:>9.1} ms", inference * 1e3);
    println!("trainable forward   {:>9.1} ms  ({:.2}x inference)", trainable_forward * 1e3, trainable_forward / inference);
    println!("training step       {:>9.1} ms  ({:.2}x inference, {:.0} tokens/s)", step * 1e3, step / inference, tokens / step);
    println!("loss after {} steps {last:.4}", trainer.steps_done());
    match (loaded_rss, training_peak) {
        (Some(loaded), Some(peak)) => {
            println!("RSS after load      {loaded:>9.0} MiB (weights)");
            println!("peak RSS training   {peak:>9.0} MiB (whole process; {:.0} MiB over the loaded model)", peak - loaded);
        }
        _ => println!("RSS unknown (no /proc/self/status)"),
    }
    Ok(())
}

/// A line of /proc/self/status (`VmRSS:` now, `VmHWM:` the peak), MiB; Linux only.
fn rss_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
