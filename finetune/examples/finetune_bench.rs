//! Training throughput on CPU: tokens/s of the job runner on the tiny fixture model over a
//! slice of the GenMedGPT export, and the process's peak memory.
//!
//! `cargo run --release -p doctorglm-finetune --example finetune_bench [-- MODEL_DIR [STEPS [WORD...]]]`
//!
//! Words after STEPS pick the memory settings: `q8_0` / `q4_0` (quantized base), `ckpt`
//! (gradient checkpointing), `bf16`, and `512` (only the paper's 512/100 lengths). The peak RSS
//! is the process's, so compare settings in separate runs.
use doctorglm_datasets::import::{import, ReadOptions};
use doctorglm_datasets::Control;
use doctorglm_finetune::{run, BaseQuantization, ComputeDtype, Event, FinetuneJob, FinetuneSettings, JobControl, TrainingData};
use doctorglm_models::LoadOptions;
use std::path::PathBuf;
use std::time::Instant;

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("shared");
    let fixtures = std::env::var_os("DOCTORGLM_FIXTURES").map(PathBuf::from).unwrap_or_else(|| root.join("fixtures"));
    let mut args = std::env::args().skip(1);
    let model_dir = args.next().map(PathBuf::from).unwrap_or_else(|| fixtures.join("models").join("chatglm3-tiny"));
    let steps: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    let words: Vec<String> = args.collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    let base_quantization = if has("q4_0") {
        BaseQuantization::Q4_0
    } else if has("q8_0") {
        BaseQuantization::Q8_0
    } else {
        BaseQuantization::F32
    };
    let dtype = if has("bf16") { ComputeDtype::Bf16 } else { ComputeDtype::Auto };
    let configs: &[(usize, usize, usize)] = if has("512") { &[(4, 512, 100)] } else { &[(4, 128, 64), (4, 512, 100)] };
    println!("base {base_quantization:?}, dtype {dtype:?}, gradient checkpointing {}", has("ckpt"));
    let export = root.join("data").join("exports").join("genmedgpt-5k.zh.alpaca.json");
    let dialogues = import(&export, None, &ReadOptions::default(), &mut Control::none())?.dialogues;
    let train = dialogues.into_iter().take(256).collect::<Vec<_>>();
    let rss_before = peak_rss_mib();
    for &(batch, max_source, max_target) in configs {
        let out = tempfile::tempdir()?;
        let settings = FinetuneSettings {
            lr: 1e-3,
            batch_size: batch,
            max_source,
            max_target,
            epochs: 100,
            max_steps: Some(steps),
            eval_every: 0,
            checkpoint_every: 0,
            probe: Vec::new(),
            base_quantization,
            dtype,
            gradient_checkpointing: has("ckpt"),
            ..Default::default()
        };
        let job = FinetuneJob {
            model_dir: model_dir.clone(),
            out_dir: out.path().to_path_buf(),
            data: TrainingData { train: train.clone(), validation: Vec::new(), dataset: None },
            settings,
            resume: false,
            load: LoadOptions::default(),
        };
        let mut first_loss = None;
        let mut last_loss = 0.0;
        let t = Instant::now();
        let outcome = run(&job, &JobControl::new(), |e| {
            if let Event::Step { loss, .. } = e {
                first_loss.get_or_insert(*loss);
                last_loss = *loss;
            }
        })?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "batch {batch}, max source {max_source}, max target {max_target}: {} steps, {} tokens in {secs:.1} s = {:.0} tokens/s ({:.3} s/step), loss {:.3} -> {:.3}, peak RSS {:.0} MiB (before: {:.0} MiB)",
            outcome.steps,
            outcome.summary.tokens_seen,
            outcome.summary.tokens_seen as f64 / secs,
            secs / outcome.steps as f64,
            first_loss.unwrap_or(f32::NAN),
            last_loss,
            peak_rss_mib().unwrap_or(f64::NAN),
            rss_before.unwrap_or(f64::NAN),
        );
    }
    Ok(())
}
