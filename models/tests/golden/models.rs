//! Golden cases: every model folder under `<root>/models/` against its `expected.*`: logits of
//! each case (base, LoRA, P-tuning v2), logits at chosen positions, and greedy generation with
//! the KV cache.
use crate::report::Report;
use candle_core::{DType, Device, Tensor};
use doctorglm_models::{generate, GenerationSettings, Model, PrefixAdapter, Request, StopReason};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

const TOLERANCE: f32 = 1e-3;
const LORA: &str = "golden-lora";

struct Case {
    input_ids: Vec<u32>,
    greedy_new_ids: Vec<u32>,
}

struct Fixture {
    cases: Vec<Case>,
    eos_token_ids: Vec<u32>,
    tensors: HashMap<String, Tensor>,
}

fn read_fixture(dir: &Path) -> Result<Fixture, String> {
    let text = std::fs::read_to_string(dir.join("expected.json")).map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect()).unwrap_or_default()
    };
    let cases = json["cases"]
        .as_array()
        .ok_or("expected.json has no cases")?
        .iter()
        .map(|c| Case { input_ids: ids(&c["input_ids"]), greedy_new_ids: ids(&c["greedy_new_ids"]) })
        .collect();
    let tensors = candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu)
        .map_err(|e| e.to_string())?;
    Ok(Fixture { cases, eos_token_ids: ids(&json["eos_token_ids"]), tensors })
}

fn expected<'a>(fx: &'a Fixture, name: &str) -> Result<&'a Tensor, String> {
    fx.tensors.get(name).ok_or_else(|| format!("expected.safetensors has no {name}"))
}

fn compare(got: &Tensor, want: &Tensor) -> Result<(), String> {
    let got = got.to_dtype(DType::F32).map_err(|e| e.to_string())?;
    if got.dims() != want.dims() {
        return Err(format!("shape {:?}, expected {:?}", got.dims(), want.dims()));
    }
    let diff: f32 = (got - want)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar())
        .map_err(|e| e.to_string())?;
    if diff.is_nan() || diff > TOLERANCE {
        return Err(format!("max |difference| {diff:.2e} > {TOLERANCE:.0e}"));
    }
    Ok(())
}

fn last_logits(model: &Model, ids: &[u32], adapter: Option<&str>, prefix: Option<&PrefixAdapter>) -> Result<Tensor, String> {
    let mut cache = model.new_cache(prefix);
    let logits = model.forward(&mut cache, ids, adapter, false).map_err(|e| e.to_string())?;
    logits.squeeze(0).map_err(|e| e.to_string())
}

/// Adds this group's cases to the report.
pub fn run(root: &Path, report: &mut Report) {
    let Ok(entries) = std::fs::read_dir(root.join("models")) else {
        report.check("models folder", || Err(format!("cannot read {}", root.join("models").display())));
        return;
    };
    let mut dirs: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for dir in dirs {
        run_model(&dir, report);
    }
}

fn run_model(dir: &Path, report: &mut Report) {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let fixture = match read_fixture(dir) {
        Ok(f) => f,
        Err(e) => return report.check(&format!("{name} fixture"), || Err(e)),
    };
    let mut model = match Model::load(dir, &Default::default()) {
        Ok(m) => m,
        Err(e) => return report.check(&format!("{name} load"), || Err(e.to_string())),
    };
    for (i, case) in fixture.cases.iter().enumerate() {
        report.check(&format!("{name} case{i} logits"), || {
            compare(&last_logits(&model, &case.input_ids, None, None)?, expected(&fixture, &format!("case{i}.logits"))?)
        });
    }
    if let Some(case) = fixture.cases.first() {
        report.check(&format!("{name} case0 logits_at_positions"), || {
            let mut cache = model.new_cache(None);
            let all = model.forward(&mut cache, &case.input_ids, None, true).map_err(|e| e.to_string())?;
            let positions = expected(&fixture, "case0.positions")?.to_dtype(DType::U32).map_err(|e| e.to_string())?;
            let picked = all.index_select(&positions, 0).map_err(|e| e.to_string())?;
            compare(&picked, expected(&fixture, "case0.logits_at_positions")?)
        });
    }
    for (i, case) in fixture.cases.iter().enumerate() {
        report.check(&format!("{name} case{i} greedy ids (KV cache)"), || {
            // The references generate 12 tokens, fewer when an end token comes first.
            let budget = case.greedy_new_ids.len().max(12);
            let settings = GenerationSettings::greedy(budget, fixture.eos_token_ids.clone());
            let request = Request { prompt: &case.input_ids, adapter: None, prefix: None };
            let out = generate(&model, request, &settings, &AtomicBool::new(false), |_| {}).map_err(|e| e.to_string())?;
            let mut ids = out.ids;
            if let StopReason::StopToken(t) = out.stop {
                ids.push(t);
            }
            let want = &case.greedy_new_ids;
            if ids != *want {
                return Err(format!("got {ids:?}, expected {want:?}"));
            }
            Ok(())
        });
    }
    let lora_dir = dir.join("lora-adapter");
    if lora_dir.is_dir() {
        let loaded = model.load_lora(LORA, &lora_dir).map_err(|e| e.to_string());
        for (i, case) in fixture.cases.iter().enumerate() {
            report.check(&format!("{name} lora case{i} logits"), || {
                loaded.clone()?;
                let got = last_logits(&model, &case.input_ids, Some(LORA), None)?;
                compare(&got, expected(&fixture, &format!("lora.case{i}.logits"))?)
            });
        }
    }
    let ptuning_dir = dir.join("ptuning-v2");
    if ptuning_dir.is_dir() {
        let prefix = PrefixAdapter::load(&ptuning_dir, &model).map_err(|e| e.to_string());
        for (i, case) in fixture.cases.iter().enumerate() {
            report.check(&format!("{name} ptuning case{i} logits"), || {
                let prefix = prefix.as_ref().map_err(|e| e.clone())?;
                let got = last_logits(&model, &case.input_ids, None, Some(prefix))?;
                compare(&got, expected(&fixture, &format!("ptuning.case{i}.logits"))?)
            });
        }
    }
}
