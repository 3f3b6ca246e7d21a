//! A training child process is killed with SIGKILL after a checkpoint; a resumed run continues
//! from the checkpoint's step and ends with an adapter that loads.
mod common;

use common::{fast_settings, genmedgpt, tiny_model};
use doctorglm_finetune::checkpoint::latest;
use doctorglm_finetune::{run, Event, FinetuneJob, FinetuneSettings, JobControl, TrainingData};
use doctorglm_models::{LoadOptions, Model};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "DOCTORGLM_FINETUNE_CHILD_OUT";

fn job(out: &Path, max_steps: usize) -> FinetuneJob {
    let settings = FinetuneSettings {
        epochs: 1000,
        max_steps: Some(max_steps),
        eval_every: 0,
        checkpoint_every: 4,
        probe: Vec::new(),
        ..fast_settings()
    };
    FinetuneJob {
        model_dir: tiny_model(),
        out_dir: out.to_path_buf(),
        data: TrainingData { train: genmedgpt(12), validation: genmedgpt(16)[12..].to_vec(), dataset: None },
        settings,
        resume: true,
        load: LoadOptions::default(),
    }
}

/// The child: trains "forever" until the parent kills it. Does nothing unless started by the parent.
#[test]
#[ignore = "run as a child process by resume_after_sigkill"]
fn child_trains_until_killed() {
    let Some(out) = std::env::var_os(CHILD_ENV) else { return };
    let _ = run(&job(Path::new(&out), 100_000), &JobControl::new(), |_| {});
}

#[test]
fn resume_after_sigkill() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out: PathBuf = dir.path().join("run");
    let mut child = Command::new(std::env::current_exe()?)
        .args(["child_trains_until_killed", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let started = Instant::now();
    let killed_at = loop {
        if let Some((_, state)) = latest(&out).ok().flatten() {
            if state.step >= 8 {
                child.kill()?; // SIGKILL on Unix
                child.wait()?;
                break state.step;
            }
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the child ended by itself: {status}");
        }
        if started.elapsed() > Duration::from_secs(600) {
            child.kill()?;
            anyhow::bail!("no checkpoint at step 8 within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The checkpoint on disk after the kill is complete and at or after the one seen.
    let (_, state) = latest(&out)?.expect("a checkpoint survives the kill");
    assert!(state.step >= killed_at && state.step % 4 == 0);
    let resume_from = state.step;
    let mut first_step = None;
    let outcome = run(&job(&out, resume_from + 6), &JobControl::new(), |e| {
        if let Event::Step { step, .. } = e {
            first_step.get_or_insert(*step);
        }
    })?;
    assert_eq!(outcome.start_step, resume_from);
    assert_eq!(first_step, Some(resume_from + 1));
    assert_eq!(outcome.steps, resume_from + 6);
    // The history holds every step once, in order, across the two processes.
    let steps: Vec<usize> = outcome.summary.history.iter().map(|r| r.step).collect();
    assert_eq!(steps, (1..=resume_from + 6).collect::<Vec<_>>());
    let mut model = Model::load(&tiny_model(), &LoadOptions::default())?;
    model.load_lora("resumed", &outcome.adapter_dir)?;
    Ok(())
}
