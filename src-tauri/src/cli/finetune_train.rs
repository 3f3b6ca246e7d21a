//! `doctorglm finetune train|resume`: a LoRA job on a prepared dataset with a progress bar
//! (loss, validation loss, ETA) and probe answers; Ctrl-C stops after the current step and
//! leaves a checkpoint that `resume` continues. Calls `services::finetune`, as the app does.
use crate::services::engine::Device;
use crate::services::finetune::{self, ResumeOverrides, TrainRequest, TrainResult};
use crate::services::AppContext;
use anyhow::Context;
use clap::{Args, ValueEnum};
use doctorglm_finetune::probe::ProbeQuestion;
use doctorglm_finetune::{BaseQuantization, ComputeDtype, Event, FinetuneSettings, JobControl, OptimizerKind, StopReason};
use std::path::PathBuf;
use std::sync::Arc;

/// Optimizers on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OptimizerArg {
    /// Lion (the paper's).
    Lion,
    /// AdamW.
    Adamw,
}

/// How the frozen base is held, on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BaseQuantArg {
    /// Full precision.
    F32,
    /// Half floats (CPU).
    #[value(name = "f16")]
    F16,
    /// 8-bit blocks (CPU).
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit blocks (CPU).
    #[value(name = "q4_0")]
    Q4_0,
}

/// Compute dtype on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DtypeArg {
    /// bf16 on CUDA, f32 on the CPU.
    Auto,
    /// f32.
    F32,
    /// bf16 (LoRA weights and optimizer state stay f32).
    Bf16,
}

/// Arguments of `finetune train`. Every setting defaults to the DoctorGLM paper's.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Base model: a registered model's id or name, or a model folder (imported if new).
    #[arg(long)]
    pub base: String,
    /// The prepared dataset folder (from `doctorglm finetune prepare`).
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (adapter/, best/, checkpoints/, training_summary.json); default under the data folder.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The adapter's name in the registry.
    #[arg(long)]
    pub name: Option<String>,
    /// Settings as JSON (as in training_summary.json); the flags below override it.
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// LoRA rank [paper: 8].
    #[arg(long)]
    pub rank: Option<usize>,
    /// LoRA alpha [paper: 16].
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Target modules, comma-separated [paper: query_key_value].
    #[arg(long, value_delimiter = ',')]
    pub target_modules: Option<Vec<String>>,
    /// Optimizer [paper: lion].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// Learning rate [paper: 2e-5].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Examples per batch [paper: 4].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Batches per optimizer step [1].
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Passes over the data [paper: 1].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Max prompt tokens [paper: 512].
    #[arg(long)]
    pub max_source: Option<usize>,
    /// Max answer tokens [paper: 100].
    #[arg(long)]
    pub max_target: Option<usize>,
    /// Warm-up steps [paper: 0].
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// Weight decay [paper: 0].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Clip gradients to this norm [1.0].
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// Evaluate (validation loss + probe) every N steps, 0 = only at the end [100].
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Stop after N evaluations without improvement [3].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Never stop early.
    #[arg(long, conflicts_with = "patience")]
    pub no_early_stop: bool,
    /// Checkpoint every N steps [50].
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Validate on at most N examples [200].
    #[arg(long)]
    pub eval_max_examples: Option<usize>,
    /// Seed of the adapter's initialisation and the data order [42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// A probe question with expected words: "中国的首都是哪座城市？=北京" (repeat; replaces the default probe).
    #[arg(long)]
    pub probe: Vec<String>,
    /// No probe questions.
    #[arg(long, conflicts_with = "probe")]
    pub no_probe: bool,
    /// Most tokens of a probe answer [32].
    #[arg(long)]
    pub probe_max_tokens: Option<usize>,
    /// Base weights: f32, or f16 / q8_0 / q4_0 while loading (less memory; CPU) [f32].
    #[arg(long, value_enum)]
    pub base_quantization: Option<BaseQuantArg>,
    /// Recompute activations in the backward pass (less memory, slower).
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// Compute dtype of the base and activations [auto: bf16 on CUDA, f32 on the CPU].
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// Where to train.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// Do not register the adapter.
    #[arg(long)]
    pub no_register: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `finetune resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The job's output folder.
    pub output: PathBuf,
    /// Stop after this many steps in all.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Passes over the data.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Evaluate every N steps.
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Evaluations without improvement before stopping.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_probe(text: &str) -> anyhow::Result<ProbeQuestion> {
    let (q, words) = text.split_once('=').context("a probe is QUESTION=WORD[|WORD...], e.g. 中国的首都是哪座城市？=北京")?;
    let expected: Vec<String> = words.split('|').map(str::trim).filter(|w| !w.is_empty()).map(String::from).collect();
    anyhow::ensure!(!q.trim().is_empty() && !expected.is_empty(), "the probe '{text}' needs a question and at least one expected word");
    Ok(ProbeQuestion { question: q.trim().to_string(), expected })
}

/// The settings of `args`: the file (or the paper's defaults), then each flag given.
pub fn settings_from(args: &TrainArgs) -> anyhow::Result<FinetuneSettings> {
    let mut s = match &args.settings {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not a settings file", p.display()))?
        }
        None => FinetuneSettings::default(),
    };
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = args.$field.clone() { s.$field = v; } )* };
    }
    set!(rank, alpha, target_modules, lr, batch_size, grad_accum, epochs, max_source, max_target, warmup_steps, weight_decay, eval_every, checkpoint_every, seed, probe_max_tokens);
    if let Some(o) = args.optimizer {
        s.optimizer = match o {
            OptimizerArg::Lion => OptimizerKind::Lion,
            OptimizerArg::Adamw => OptimizerKind::AdamW,
        };
    }
    if args.max_steps.is_some() {
        s.max_steps = args.max_steps;
    }
    if args.max_grad_norm.is_some() {
        s.max_grad_norm = args.max_grad_norm;
    }
    if args.eval_max_examples.is_some() {
        s.eval_max_examples = args.eval_max_examples;
    }
    if args.patience.is_some() {
        s.patience = args.patience;
    }
    if args.no_early_stop {
        s.patience = None;
    }
    if let Some(q) = args.base_quantization {
        s.base_quantization = match q {
            BaseQuantArg::F32 => BaseQuantization::F32,
            BaseQuantArg::F16 => BaseQuantization::F16,
            BaseQuantArg::Q8_0 => BaseQuantization::Q8_0,
            BaseQuantArg::Q4_0 => BaseQuantization::Q4_0,
        };
    }
    if args.gradient_checkpointing {
        s.gradient_checkpointing = true;
    }
    if let Some(d) = args.dtype {
        s.dtype = match d {
            DtypeArg::Auto => ComputeDtype::Auto,
            DtypeArg::F32 => ComputeDtype::F32,
            DtypeArg::Bf16 => ComputeDtype::Bf16,
        };
    }
    if args.no_probe {
        s.probe.clear();
    } else if !args.probe.is_empty() {
        s.probe = args.probe.iter().map(|p| parse_probe(p)).collect::<anyhow::Result<_>>()?;
    }
    s.validate()?;
    Ok(s)
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Draws the runner's events: a bar with loss, validation loss, tokens/s and ETA; probe answers above it.
struct Reporter {
    bar: indicatif::ProgressBar,
    val: Option<f64>,
}

impl Reporter {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}") {
            bar.set_style(style);
        }
        Self { bar, val: None }
    }

    fn on(&mut self, e: &Event) {
        match e {
            Event::Started { total_steps, start_step, train_examples, validation_examples, skipped } => {
                self.bar.set_length(*total_steps as u64);
                self.bar.set_position(*start_step as u64);
                let from = if *start_step > 0 { format!(", resuming after step {start_step}") } else { String::new() };
                self.bar.println(format!(
                    "training on {train_examples} dialogues, validating on {validation_examples} ({skipped} skipped), {total_steps} steps{from}"
                ));
            }
            Event::Step { step, loss, lr, tokens_per_sec, eta_secs, .. } => {
                self.bar.set_position(*step as u64);
                let val = self.val.map(|v| format!("  val {v:.4}")).unwrap_or_default();
                self.bar.set_message(format!("loss {loss:.4}{val}  lr {lr:.2e}  {tokens_per_sec:.0} tok/s  ETA {}", duration(*eta_secs)));
                tracing::debug!(step, loss, "step");
            }
            Event::Evaluation { step, validation_loss, best, probe, collapse } => {
                self.val = *validation_loss;
                let v = validation_loss.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
                let mark = if *best { " (best so far, saved)" } else { "" };
                self.bar.println(format!("step {step}: validation loss {v}{mark}"));
                for p in probe {
                    let flags = if p.collapse.is_empty() { String::new() } else { format!("  [{:?}]", p.collapse) };
                    let answer: String = p.answer.chars().take(80).collect::<String>().replace('\n', " ");
                    self.bar.println(format!("  probe {} → {answer}{flags}", p.question));
                }
                if *collapse {
                    self.bar.println("  warning: a probe answer looks collapsed (general knowledge lost); consider stopping");
                }
            }
            Event::Checkpoint { step, .. } => tracing::info!(step, "checkpoint written"),
            Event::Paused => self.bar.println("paused"),
            Event::Resumed => self.bar.println("resumed"),
        }
    }
}

/// Ctrl-C asks the job to stop after the current step (a checkpoint is written).
fn cancel_on_ctrl_c(control: &Arc<JobControl>) {
    let c = control.clone();
    let installed = ctrlc::set_handler(move || {
        if !c.is_cancelled() {
            eprintln!("\nstopping after the current step; a checkpoint is written (continue with `doctorglm finetune resume`)");
        }
        c.cancel();
    });
    if let Err(e) = installed {
        tracing::warn!("Ctrl-C will not stop training cleanly: {e}");
    }
}

fn report(result: &TrainResult, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(result)?);
        return Ok(());
    }
    let best = result.best.map(|(s, l)| format!(", best validation loss {l:.4} at step {s}")).unwrap_or_default();
    match result.reason {
        StopReason::Cancelled => {
            println!(
                "cancelled at step {}/{}; continue with: doctorglm finetune resume {}",
                result.steps,
                result.total_steps,
                result.output.display()
            );
        }
        reason => {
            let why = if reason == StopReason::EarlyStopped { "stopped early (validation loss no longer falls)" } else { "completed" };
            println!("{why} after {}/{} steps{best}", result.steps, result.total_steps);
            let speed = result.tokens_per_sec.map(|t| format!(", {t:.0} training tokens/s at the end")).unwrap_or_default();
            println!("{} tokens seen in all; this run took {}{speed}", result.tokens_seen, duration(result.elapsed_secs));
            if result.collapse_seen {
                println!("warning: a probe answer looked collapsed at some evaluation; check training_summary.json");
            }
            println!("adapter (PEFT): {}", result.adapter_dir.display());
            match &result.adapter_id {
                Some(id) => println!("registered as {} ({id}); pick it in chat or `doctorglm ask --adapter {id}`", result.name),
                None => println!("not registered (--no-register)"),
            }
        }
    }
    Ok(())
}

/// Runs `finetune train`.
pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let settings = settings_from(&args)?;
    let ctx = AppContext::open_default()?;
    let request = TrainRequest {
        base: args.base.clone(),
        dataset: args.data.clone(),
        output: args.output.clone(),
        name: args.name.clone(),
        settings,
        device: args.device,
        register: !args.no_register,
    };
    let control = Arc::new(JobControl::new());
    cancel_on_ctrl_c(&control);
    let mut reporter = Reporter::new();
    let result = finetune::train(&ctx, &request, &control, &mut |e| reporter.on(e));
    reporter.bar.finish_and_clear();
    report(&result?, args.json)
}

/// Runs `finetune resume`.
pub fn resume(args: ResumeArgs) -> anyhow::Result<()> {
    let ctx = AppContext::open_default()?;
    let overrides =
        ResumeOverrides { max_steps: args.max_steps, epochs: args.epochs, eval_every: args.eval_every, patience: args.patience };
    let control = Arc::new(JobControl::new());
    cancel_on_ctrl_c(&control);
    let mut reporter = Reporter::new();
    let result = finetune::resume(&ctx, &args.output, &overrides, &control, &mut |e| reporter.on(e));
    reporter.bar.finish_and_clear();
    report(&result?, args.json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: TrainArgs,
    }

    #[test]
    fn flags_override_the_paper_defaults() {
        let w = Wrap::try_parse_from(["x", "--base", "m", "--data", "d"]).unwrap();
        assert_eq!(settings_from(&w.args).unwrap(), FinetuneSettings::default());
        let w = Wrap::try_parse_from([
            "x", "--base", "m", "--data", "d", "--rank", "4", "--optimizer", "adamw", "--lr", "1e-4", "--max-steps", "7",
            "--target-modules", "query_key_value,dense", "--probe", "1+1等于几？=2|二", "--no-early-stop",
        ])
        .unwrap();
        let s = settings_from(&w.args).unwrap();
        assert_eq!((s.rank, s.optimizer, s.lr, s.max_steps, s.patience), (4, OptimizerKind::AdamW, 1e-4, Some(7), None));
        assert_eq!(s.target_modules, vec!["query_key_value".to_string(), "dense".to_string()]);
        assert_eq!(s.probe, vec![ProbeQuestion { question: "1+1等于几？".into(), expected: vec!["2".into(), "二".into()] }]);
        assert_eq!(s.alpha, 16.0);
        let w = Wrap::try_parse_from([
            "x", "--base", "m", "--data", "d", "--base-quantization", "q4_0", "--gradient-checkpointing", "--dtype", "f32",
        ])
        .unwrap();
        let s = settings_from(&w.args).unwrap();
        assert_eq!((s.base_quantization, s.gradient_checkpointing, s.dtype), (BaseQuantization::Q4_0, true, ComputeDtype::F32));
        let w = Wrap::try_parse_from(["x", "--base", "m", "--data", "d", "--base-quantization", "q4_0", "--dtype", "bf16"]).unwrap();
        assert!(settings_from(&w.args).unwrap_err().to_string().contains("quantized base"));
    }

    #[test]
    fn bad_probe_and_bad_values_are_refused() {
        let w = Wrap::try_parse_from(["x", "--base", "m", "--data", "d", "--probe", "no equals sign"]).unwrap();
        assert!(settings_from(&w.args).unwrap_err().to_string().contains("QUESTION=WORD"));
        let w = Wrap::try_parse_from(["x", "--base", "m", "--data", "d", "--rank", "0"]).unwrap();
        assert!(settings_from(&w.args).unwrap_err().to_string().contains("rank"));
    }
}
