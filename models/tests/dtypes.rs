//! The stored fp16/bf16 weights run in any compute dtype: half-precision logits stay close to
//! the f32 ones for every fixture model.
mod common;
use candle_core::{DType, Device, Tensor};
use doctorglm_models::{LoadOptions, Model};

fn last_logits(model: &Model, ids: &[u32]) -> Tensor {
    model.forward(&mut model.new_cache(None), ids, None, false).unwrap().squeeze(0).unwrap()
}

#[test]
fn half_precision_compute_stays_close_to_f32() {
    let Ok(entries) = std::fs::read_dir(common::fixture_root().join("models")) else { return };
    for dir in entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()) {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        let ids: Vec<u32> = json["cases"][0]["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let reference = last_logits(&Model::load(&dir, &LoadOptions::default()).unwrap(), &ids);
        for dtype in [DType::F16, DType::BF16] {
            let model = Model::load(&dir, &LoadOptions { dtype, device: Device::Cpu }).unwrap();
            let logits = last_logits(&model, &ids);
            assert_eq!(logits.dtype(), DType::F32);
            let diff: f32 = (&logits - &reference).unwrap().abs().unwrap().mean_all().unwrap().to_scalar().unwrap();
            let limit = if dtype == DType::F16 { 0.1 } else { 0.5 };
            assert!(diff < limit, "{} in {dtype:?}: mean |difference| {diff}", dir.display());
        }
    }
}
