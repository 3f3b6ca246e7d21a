//! Decode-step attention benchmark: one new token's attention over the KV cache of every layer
//! (the fused CPU op of `decode_attention`), as GB/s of keys and values read and as a ratio to
//! the read bandwidth measured in the same run.
//!
//! ```text
//! cargo run --release -p doctorglm-models --example bench_attention [-- --positions 512,2048 --layers 24 --kv f32,f16]
//! ```
//!
//! `--kv` names the dtypes of the caches to measure: f32 (full-precision models) and f16 (what
//! quantized models store). They hold the same values and take turns pass by pass, so that the
//! `paired` column (time against the first dtype's pass right before) survives a machine whose
//! speed swings from minute to minute.
//!
//! The layers of a pass run with the pool's workers kept awake, as a decode step runs them
//! (`awake`). Every layer has its own cache buffers (views of the first `t` positions of a buffer with room
//! for more, as `kv_cache` hands them out), so one pass over the layers streams the caches from
//! memory as a decode step does.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use doctorglm_models::awake::run_with_workers_awake;
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
    /// MiB read between passes, untimed (0: none). A decode step streams the weights between two
    /// passes over the same cache (670 MB a token for the 1.3 B model at Q4_0), so its keys and
    /// values come from memory; without this, this VM's 300 MiB L3 holds them between passes.
    #[arg(long, default_value_t = 0)]
    flush_mib: usize,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let bw = read_bandwidth(a.bw_mib, 3);
    println!("threads: {}; read bandwidth {:.1} GB/s (best), {:.1} GB/s (median)", rayon::current_num_threads(), bw.best_gbps, bw.median_gbps);
    let dtypes = a
        .kv
        .iter()
        .map(|name| match name.as_str() {
            "f32" => Ok((name.as_str(), DType::F32)),
            "f16" => Ok((name.as_str(), DType::F16)),
            other => anyhow::bail!("unknown cache dtype {other}: use f32 or f16"),
        })
        .collect::<Result<Vec<_>>>()?;
    println!("{:>4} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9}", "kv", "positions", "MiB/step", "best ms", "median ms", "GB/s", "roofline", "paired");
    let dev = Device::Cpu;
    for &t in &a.positions {
        let room = t + 64;
        // The same keys and values in every dtype; the dtypes take turns pass by pass, so that
        // each pass of one is compared with the pass of the first right before it.
        let values: Vec<(Tensor, Tensor)> = (0..a.layers)
            .map(|_| -> Result<(Tensor, Tensor)> {
                let k = Tensor::randn(0f32, 1.0, (1, a.groups, room, a.head_dim), &dev)?;
                let v = Tensor::randn(0f32, 1.0, (1, a.groups, room, a.head_dim), &dev)?;
                Ok((k, v))
            })
            .collect::<Result<_>>()?;
        let caches: Vec<Vec<(Tensor, Tensor)>> = dtypes
            .iter()
            .map(|&(_, dtype)| values.iter().map(|(k, v)| Ok((k.to_dtype(dtype)?, v.to_dtype(dtype)?))).collect::<Result<_>>())
            .collect::<Result<_>>()?;
        drop(values);
        let q = Tensor::randn(0f32, 1.0, (1, a.heads, 1, a.head_dim), &dev)?;
        let scale = 1.0 / (a.head_dim as f64).sqrt();
        let mut times = vec![Vec::with_capacity(a.reps); dtypes.len()];
        let flush = vec![1u64; a.flush_mib << 17];
        for rep in 0..=a.reps {
            for (layers, times) in caches.iter().zip(times.iter_mut()) {
                std::hint::black_box(flush.iter().fold(0u64, |s, &x| s.wrapping_add(x)));
                let start = Instant::now();
                // As a decode step runs it: the pool's other workers spinning, not asleep.
                run_with_workers_awake(|| -> Result<()> {
                    for (k, v) in layers {
                        let (k, v) = (k.narrow(2, 0, t)?, v.narrow(2, 0, t)?);
                        let out = try_fused(&q, &k, &v, None, scale, 1.0)?.expect("the fused op applies to f32 and f16 CPU caches");
                        std::hint::black_box(out);
                    }
                    Ok(())
                })?;
                if rep > 0 {
                    times.push(start.elapsed().as_secs_f64());
                }
            }
        }
        for (i, &(name, dtype)) in dtypes.iter().enumerate() {
            // The median over passes of this dtype's time against the first dtype's.
            let mut paired: Vec<f64> = times[i].iter().zip(&times[0]).map(|(x, first)| x / first).collect();
            paired.sort_by(f64::total_cmp);
            let mut sorted = times[i].clone();
            sorted.sort_by(f64::total_cmp);
            let (best, median) = (sorted[0], sorted[sorted.len() / 2]);
            let bytes = (a.layers * 2 * a.groups * t * a.head_dim * dtype.size_in_bytes()) as f64;
            let gbps = bytes / best / 1e9;
            println!(
                "{name:>4} {t:>9} {:>9.1} {:>10.3} {:>10.3} {gbps:>9.1} {:>8.0}% {:>9.2}",
                bytes / (1 << 20) as f64,
                best * 1e3,
                median * 1e3,
                100.0 * gbps / bw.best_gbps,
                paired[paired.len() / 2]
            );
        }
    }
    println!("(roofline: keys and values read once per step at the measured bandwidth; paired: the median over passes of the time against the first dtype's pass right before)");
    Ok(())
}
