//! Training on the tiny fixture model: the loss falls on a real export; early stopping on a
//! crafted case keeps the adapter with the lowest validation loss.
mod common;

use candle_core::Tensor;
use common::{fast_settings, genmedgpt, tiny_model};
use doctorglm_datasets::Dialogue;
use doctorglm_finetune::encode::encode_all;
use doctorglm_finetune::summary::{TrainingSummary, SUMMARY_FILE};
use doctorglm_finetune::{run, BaseQuantization, ComputeDtype, Event, FinetuneJob, FinetuneSettings, JobControl, OptimizerKind, StopReason, TrainingData};
use doctorglm_models::tokenizer::Tokenizer;
use doctorglm_models::train::causal_lm_loss;
use doctorglm_models::{LoadOptions, Model};

#[test]
fn loss_falls_on_a_real_export() -> anyhow::Result<()> {
    let dialogues = genmedgpt(40);
    let (train, validation) = dialogues.split_at(32);
    let out = tempfile::tempdir()?;
    let settings = FinetuneSettings { epochs: 100, max_steps: Some(120), eval_every: 40, checkpoint_every: 0, patience: None, ..fast_settings() };
    let job = FinetuneJob {
        model_dir: tiny_model(),
        out_dir: out.path().to_path_buf(),
        data: TrainingData { train: train.to_vec(), validation: validation.to_vec(), dataset: None },
        settings,
        resume: false,
        load: LoadOptions::default(),
    };
    let mut events = Vec::new();
    let outcome = run(&job, &JobControl::new(), |e| events.push(e.clone()))?;
    assert_eq!(outcome.reason, StopReason::Completed);
    assert_eq!(outcome.steps, 120);
    let losses: Vec<f32> = outcome.summary.history.iter().map(|r| r.loss).collect();
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[losses.len() - 10..].iter().sum::<f32>() / 10.0;
    assert!(last < first * 0.8, "train loss {first} → {last}");
    // Evaluations at 40, 80, 120 with probe answers, validation loss falling from the first.
    let evals: Vec<_> = events.iter().filter_map(|e| match e {
        Event::Evaluation { step, validation_loss, probe, .. } => Some((*step, validation_loss.unwrap_or(f64::NAN), probe.len())),
        _ => None,
    }).collect();
    assert_eq!(evals.iter().map(|e| e.0).collect::<Vec<_>>(), vec![40, 80, 120]);
    assert!(evals.iter().all(|e| e.2 == 1 && e.1.is_finite()));
    let steps = events.iter().filter(|e| matches!(e, Event::Step { .. })).count();
    assert_eq!(steps, 120);
    // Output: PEFT adapter and summary.
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        assert!(out.path().join("adapter").join(f).is_file(), "{f}");
    }
    let summary: TrainingSummary = serde_json::from_slice(&std::fs::read(out.path().join(SUMMARY_FILE))?)?;
    assert_eq!(summary.steps, 120);
    assert_eq!(summary.history.len(), 120);
    assert_eq!(summary.evaluations.len(), 3);
    let mut model = Model::load(&tiny_model(), &LoadOptions::default())?;
    model.load_lora("trained", &out.path().join("adapter"))?;
    Ok(())
}

#[test]
fn memory_saving_settings_train_too() -> anyhow::Result<()> {
    // An INT4 base with gradient checkpointing, an F16 base, then the same data in bf16: all
    // learn, and the adapter over the INT4 or F16 base loads onto the full-precision model.
    let dialogues = genmedgpt(16);
    for (base_quantization, dtype, checkpointing) in [
        (BaseQuantization::Q4_0, ComputeDtype::Auto, true),
        (BaseQuantization::F16, ComputeDtype::F32, false),
        (BaseQuantization::F32, ComputeDtype::Bf16, false),
    ] {
        let out = tempfile::tempdir()?;
        let settings = FinetuneSettings {
            epochs: 100,
            max_steps: Some(40),
            eval_every: 0,
            checkpoint_every: 0,
            patience: None,
            probe: Vec::new(),
            base_quantization,
            dtype,
            gradient_checkpointing: checkpointing,
            ..fast_settings()
        };
        let job = FinetuneJob {
            model_dir: tiny_model(),
            out_dir: out.path().to_path_buf(),
            data: TrainingData { train: dialogues.clone(), validation: Vec::new(), dataset: None },
            settings,
            resume: false,
            load: LoadOptions::default(),
        };
        let outcome = run(&job, &JobControl::new(), |_| {})?;
        let losses: Vec<f32> = outcome.summary.history.iter().map(|r| r.loss).collect();
        let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
        let last: f32 = losses[losses.len() - 5..].iter().sum::<f32>() / 5.0;
        assert!(last < first * 0.9, "{base_quantization:?} {dtype:?}: train loss {first} → {last}");
        let mut model = Model::load(&tiny_model(), &LoadOptions::default())?;
        model.load_lora("trained", &out.path().join("adapter"))?;
    }
    Ok(())
}

/// Loss of `dialogues` under a saved adapter, weighted as the runner weights it.
fn loss_with_adapter(dir: &std::path::Path, dialogues: &[Dialogue], settings: &FinetuneSettings) -> anyhow::Result<f64> {
    let tok = Tokenizer::load(&tiny_model())?;
    let mut model = Model::load(&tiny_model(), &LoadOptions::default())?;
    model.load_lora("best", dir)?;
    let (examples, _) = encode_all(&tok, dialogues, settings.max_source, settings.max_target);
    let (mut total, mut weight) = (0f64, 0f64);
    for chunk in examples.chunks(settings.batch_size) {
        let refs: Vec<_> = chunk.iter().collect();
        let batch = doctorglm_finetune::batches::make_batch(&refs, tok.special_tokens().eos[0], model.device())?;
        let logits = model.forward_batch(&batch.input_ids, Some("best"))?;
        let loss: Tensor = causal_lm_loss(&logits, &batch.labels)?;
        let w = chunk.iter().map(|e| e.targets()).sum::<usize>() as f64;
        total += loss.to_scalar::<f32>()? as f64 * w;
        weight += w;
    }
    Ok(total / weight)
}

#[test]
fn early_stopping_keeps_the_best_adapter() -> anyhow::Result<()> {
    // Validation asks the same questions as training but expects other answers: once the
    // adapter learns the training answers, validation loss rises.
    let qs = ["头痛怎么办？", "发烧吃什么药？", "咳嗽要紧吗？", "胃疼怎么回事？"];
    let train: Vec<Dialogue> = qs.iter().map(|q| Dialogue::single(*q, "多喝热水注意休息")).collect();
    let validation: Vec<Dialogue> = qs.iter().map(|q| Dialogue::single(*q, "立即去医院急诊科就诊")).collect();
    let out = tempfile::tempdir()?;
    let settings = FinetuneSettings {
        optimizer: OptimizerKind::AdamW,
        lr: 2e-2,
        epochs: 1000,
        max_steps: Some(200),
        eval_every: 2,
        patience: Some(3),
        checkpoint_every: 0,
        probe: Vec::new(),
        ..fast_settings()
    };
    let job = FinetuneJob {
        model_dir: tiny_model(),
        out_dir: out.path().to_path_buf(),
        data: TrainingData { train, validation: validation.clone(), dataset: None },
        settings: settings.clone(),
        resume: false,
        load: LoadOptions::default(),
    };
    let outcome = run(&job, &JobControl::new(), |_| {})?;
    assert_eq!(outcome.reason, StopReason::EarlyStopped);
    assert!(outcome.steps < 200);
    let evals = &outcome.summary.evaluations;
    let (min_step, min_loss) = evals
        .iter()
        .map(|e| (e.step, e.validation_loss.unwrap_or(f64::INFINITY)))
        .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
    assert_eq!(outcome.best, Some((min_step, min_loss)));
    // Three evaluations after the best, none better.
    assert_eq!(evals.last().map(|e| e.step), Some(min_step + 3 * 2));
    let reloaded = loss_with_adapter(&outcome.adapter_dir, &validation, &settings)?;
    assert!((reloaded - min_loss).abs() < 1e-4 * min_loss.max(1.0), "best adapter gives {reloaded}, recorded {min_loss}");
    Ok(())
}

#[test]
fn cancel_stops_with_a_checkpoint_and_pause_waits() -> anyhow::Result<()> {
    let dialogues = genmedgpt(8);
    let out = tempfile::tempdir()?;
    let settings = FinetuneSettings { epochs: 100, max_steps: Some(50), eval_every: 0, checkpoint_every: 0, probe: Vec::new(), ..fast_settings() };
    let job = FinetuneJob {
        model_dir: tiny_model(),
        out_dir: out.path().to_path_buf(),
        data: TrainingData { train: dialogues, validation: Vec::new(), dataset: None },
        settings,
        resume: false,
        load: LoadOptions::default(),
    };
    let control = std::sync::Arc::new(JobControl::new());
    let ctl = control.clone();
    let mut seen = Vec::new();
    let outcome = run(&job, &control, |e| {
        if let Event::Step { step: 3, .. } = e {
            ctl.pause();
            let c = ctl.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                c.resume();
            });
        }
        if let Event::Step { step: 5, .. } = e {
            ctl.cancel();
        }
        seen.push(e.clone());
    })?;
    assert_eq!(outcome.reason, StopReason::Cancelled);
    assert_eq!(outcome.steps, 5);
    assert!(seen.contains(&Event::Paused) && seen.contains(&Event::Resumed));
    let (_, state) = doctorglm_finetune::checkpoint::latest(out.path())?.expect("a checkpoint after cancel");
    assert_eq!(state.step, 5);
    Ok(())
}
