//! Decode-step attention benchmark: one new token's attention over the KV cache of every layer
//! (the fused CPU op of `decode_attention`), as GB/s of keys and values read and as a ratio to
//! the read bandwidth measured in the same run.
//!
//! ```text
//! cargo run --release -p doctorglm-models --example bench_attention [-- --positions 512,2048 --layers 24 --kv f32,f16]
//! ```
//!
//! `--kv` names the dtypes of the caches to measure: f32 (full-precision models) and f16 (what
//! quantized models store).
//!
//! Every layer has its own cache buffers (views of the first `t` positions of a buffer with room
//! for more, as `kv_cache` hands them out), so one pass over the layers streams the caches from
//! memory as a decode step does.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use doctorglm_models::decode_attention::try_fused;
use doctorglm_models::quant::bandwidth::read_bandwidth;

#[derive(Parser)]
struct Args {
    /// Cached positions to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [512usize, 2048, 8192])]
    positions: Vec<usize>,
    /// Layers (separate caches) per pass.
    #[arg(long, default_value_t = 24)]
    layers: usize,
    /// Query heads.
    #[arg(long, default_value_t = 32)]
    heads: usize,
    /// Key/value heads (groups).
    #[arg(long, default_value_t = 2)]
    groups: usize,
    /// Head dimension.
    #[arg(long, default_value_t = 128)]
    head_dim: usize,
    /// Timed passes per size (best and median printed).
    #[arg(long, default_value_t = 15)]
    reps: usize,
    /// Cache dtypes to measure: f32, f16.
    #[arg(long, value_delimiter = ',', default_values_t = ["f32".to_string(), "f16".to_string()])]
    kv: Vec<String>,
    /// Bandwidth-test buffer, MiB.
    #[arg(long, default_value_t = 1024)]
    bw_mib: usize,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let bw = read_bandwidth(a.bw_mib, 3);
    println!("threads: {}; read bandwidth {:.1} GB/s (best), {:.1} GB/s (median)", rayon::current_num_threads(), bw.best_gbps, bw.median_gbps);
    println!("{:>4} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9}", "kv", "positions", "MiB/step", "best ms", "median ms", "GB/s", "roofline");
    let dev = Device::Cpu;
    for name in &a.kv {
        let dtype = match name.as_str() {
            "f32" => DType::F32,
            "f16" => DType::F16,
            other => anyhow::bail!("unknown cache dtype {other}: use f32 or f16"),
        };
        for &t in &a.positions {
            let room = t + 64;
            let caches: Vec<(Tensor, Tensor)> = (0..a.layers)
                .map(|_| -> Result<(Tensor, Tensor)> {
                    let k = Tensor::randn(0f32, 1.0, (1, a.groups, room, a.head_dim), &dev)?.to_dtype(dtype)?;
                    let v = Tensor::randn(0f32, 1.0, (1, a.groups, room, a.head_dim), &dev)?.to_dtype(dtype)?;
                    Ok((k, v))
                })
                .collect::<Result<_>>()?;
            let q = Tensor::randn(0f32, 1.0, (1, a.heads, 1, a.head_dim), &dev)?;
            let scale = 1.0 / (a.head_dim as f64).sqrt();
            let bytes = (a.layers * 2 * a.groups * t * a.head_dim * dtype.size_in_bytes()) as f64;
            let mut times = Vec::with_capacity(a.reps);
            for rep in 0..=a.reps {
                let start = Instant::now();
                for (k, v) in &caches {
                    let (k, v) = (k.narrow(2, 0, t)?, v.narrow(2, 0, t)?);
                    let out = try_fused(&q, &k, &v, None, scale, 1.0)?.expect("the fused op applies to f32 and f16 CPU caches");
                    std::hint::black_box(out);
                }
                if rep > 0 {
                    times.push(start.elapsed().as_secs_f64());
                }
            }
            times.sort_by(f64::total_cmp);
            let (best, median) = (times[0], times[times.len() / 2]);
            let gbps = bytes / best / 1e9;
            println!(
                "{name:>4} {t:>9} {:>9.1} {:>10.3} {:>10.3} {gbps:>9.1} {:>8.0}%",
                bytes / (1 << 20) as f64,
                best * 1e3,
                median * 1e3,
                100.0 * gbps / bw.best_gbps
            );
        }
    }
    println!("(roofline: keys and values read once per step at the measured bandwidth)");
    Ok(())
}
