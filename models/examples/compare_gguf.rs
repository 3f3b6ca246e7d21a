//! Loads a `chatglm` GGUF file and the Hugging Face folder it came from, runs the folder's
//! `expected.json` prompts (or a fixed one) through both, and prints the weight types found and
//! the logits' RMS difference per prompt (relative to the logits' spread).
//!
//! `cargo run -p doctorglm-models --example compare_gguf -- FILE.gguf MODEL_DIR`
use std::collections::BTreeMap;
use std::path::PathBuf;

use doctorglm_models::{LoadOptions, Model};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [gguf, dir] = args.as_slice() else {
        anyhow::bail!("usage: compare_gguf FILE.gguf MODEL_DIR");
    };
    let (gguf, dir) = (PathBuf::from(gguf), PathBuf::from(dir));
    let detected = doctorglm_models::detect::detect(&gguf)?;
    println!("{}: {:?}, {}", gguf.display(), detected.architecture, detected.quantization.unwrap_or_default());
    let g = Model::load(&gguf, &LoadOptions::default())?;
    let f = Model::load(&dir, &LoadOptions::default())?;
    let mut formats: BTreeMap<String, usize> = BTreeMap::new();
    for (_, fmt) in g.weight_formats() {
        *formats.entry(fmt.map_or("f32".into(), |f| f.to_string())).or_default() += 1;
    }
    println!("linear layers by format: {formats:?}");
    let prompts: Vec<Vec<u32>> = match std::fs::read_to_string(dir.join("expected.json")) {
        Ok(text) => {
            let v: serde_json::Value = serde_json::from_str(&text)?;
            v["cases"]
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["input_ids"].as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect())).collect())
                .unwrap_or_default()
        }
        Err(_) => vec![vec![1, 2, 3, 4, 5]],
    };
    for (i, ids) in prompts.iter().enumerate() {
        let run = |m: &Model| -> anyhow::Result<Vec<f32>> {
            let mut cache = m.new_cache(None);
            Ok(m.forward(&mut cache, ids, None, false)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let (a, b) = (run(&g)?, run(&f)?);
        let rms = |v: &[f32], w: &[f32]| (v.iter().zip(w).map(|(x, y)| (x - y) * (x - y)).sum::<f32>() / v.len() as f32).sqrt();
        let argmax = |v: &[f32]| v.iter().enumerate().fold((0, f32::MIN), |m, (i, &x)| if x > m.1 { (i, x) } else { m }).0;
        let zero = vec![0.0; b.len()];
        println!(
            "prompt {i}: rms difference {:.5}, relative to the spread {:.4}, same top-1: {}",
            rms(&a, &b),
            rms(&a, &b) / rms(&b, &zero),
            argmax(&a) == argmax(&b)
        );
    }
    Ok(())
}
