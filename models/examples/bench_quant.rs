//! Matrix-vector throughput of f32, f16, candle's quantized matmul and ours, against the memory
//! bandwidth measured in the same run (the roofline of a decode step).
//!
//! `cargo run --release -p doctorglm-models --example bench_quant -- [--reps 9] [--stream-mib 1024]`
//!
//! Each configuration multiplies a vector by a rotation of copies of the matrix whose total size
//! is at least `--stream-mib`, so that the weights come from memory as they do when decoding a
//! model larger than the caches (`--stream-mib 0`: one copy, hot in cache). Figures are GB/s of
//! weight bytes read; "roofline" is that divided by the measured read bandwidth.

use std::time::Instant;

use anyhow::Result;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use clap::Parser;
use doctorglm_models::awake::run_with_workers_awake;
use doctorglm_models::quant::bandwidth::{read_bandwidth, setting_name};
use doctorglm_models::quant::{Kernel, QBytes, QMatrix, QuantFormat};
use rand::{rngs::StdRng, Rng, SeedableRng};

#[derive(Parser)]
struct Args {
    /// Timed repetitions per configuration (best and median are printed).
    #[arg(long, default_value_t = 9)]
    reps: usize,
    /// Minimum total size of the rotated matrix copies, MiB (0: a single hot copy).
    #[arg(long, default_value_t = 1024)]
    stream_mib: usize,
    /// Size of the bandwidth-test buffer, MiB.
    #[arg(long, default_value_t = 2048)]
    bw_mib: usize,
    /// Shapes rows×cols to measure.
    #[arg(long, default_values_t = ["16384x4096".to_string(), "4096x4096".to_string()])]
    shape: Vec<String>,
    /// Also time the slower kernels of this CPU (scalar, avx2) for comparison.
    #[arg(long)]
    all_kernels: bool,
    /// Prompt length for the prompt-product comparison (0: skip it).
    #[arg(long, default_value_t = 256)]
    prompt: usize,
    /// Skip candle's f32/f16/quantized baselines.
    #[arg(long)]
    no_candle: bool,
}

struct Stats {
    best: f64,
    median: f64,
}

fn stats(mut secs: Vec<f64>) -> Stats {
    secs.sort_by(|a, b| a.total_cmp(b));
    Stats { best: secs[0], median: secs[secs.len() / 2] }
}

/// Times `f(copy)` over a rotation of `copies` copies; returns per-call seconds, best and median
/// over reps. The calls run as a model step runs them: on a rayon worker with the other workers
/// kept awake (`awake`), not from a thread outside the pool that sleeps through every call.
fn time_rotation(copies: usize, reps: usize, mut f: impl FnMut(usize) + Send) -> Stats {
    run_with_workers_awake(|| {
        for c in 0..copies {
            f(c);
        }
        let mut times = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            for c in 0..copies {
                f(c);
            }
            times.push(t.elapsed().as_secs_f64() / copies as f64);
        }
        stats(times)
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let threads = rayon::current_num_threads();
    println!("threads: {threads}; our kernel: {} (available: {})", Kernel::best().name(),
        Kernel::available().iter().map(|k| k.name()).collect::<Vec<_>>().join(", "));
    let bw = read_bandwidth(args.bw_mib, args.reps);
    println!(
        "read bandwidth over {:.0} MiB ({} pages): best {:.1} GB/s, median {:.1} GB/s (prefetch {}; per setting, distance/level: {})",
        bw.bytes as f64 / 1048576.0,
        if bw.huge_pages { "huge" } else { "4 KiB" },
        bw.best_gbps,
        bw.median_gbps,
        setting_name(bw.setting),
        bw.per_setting_text()
    );
    println!("{:<12} {:<22} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}", "shape", "method", "MiB", "copies", "best ms", "GB/s", "med GB/s", "roofline");
    let dev = Device::Cpu;
    for shape in &args.shape {
        let (rows, cols) = parse_shape(shape)?;
        let mut rng = StdRng::seed_from_u64(7);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-0.05f32..0.05)).collect();
        let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-1f32..1.0)).collect();
        let wt = Tensor::from_vec(w.clone(), (rows, cols), &dev)?;
        let xt = Tensor::from_vec(x.clone(), (1, cols), &dev)?;
        let report = |method: &str, bytes: usize, copies: usize, s: Stats| {
            let gbs = bytes as f64 / s.best / 1e9;
            println!("{:<12} {:<22} {:>9.1} {:>7} {:>9.3} {:>9.1} {:>9.1} {:>8.0}%", shape, method, bytes as f64 / 1048576.0, copies,
                s.best * 1e3, gbs, bytes as f64 / s.median / 1e9, 100.0 * gbs / bw.best_gbps);
        };
        let copies_for = |bytes: usize| (args.stream_mib * 1048576).div_ceil(bytes).max(1);
        if !args.no_candle {
            for (name, dtype) in [("candle f32", DType::F32), ("candle f16", DType::F16)] {
                let wd = wt.to_dtype(dtype)?;
                let bytes = rows * cols * dtype.size_in_bytes();
                let copies = copies_for(bytes);
                let ws: Vec<Tensor> = (0..copies).map(|_| wd.copy()).collect::<candle_core::Result<_>>()?;
                let xd = xt.to_dtype(dtype)?;
                let s = time_rotation(copies, args.reps, |c| {
                    std::hint::black_box(xd.matmul(&ws[c].t().expect("transpose")).expect("matmul"));
                });
                report(name, bytes, copies, s);
            }
            for (name, dtype) in [("candle QMatMul Q8_0", GgmlDType::Q8_0), ("candle QMatMul Q4_0", GgmlDType::Q4_0), ("candle QMatMul Q4_K", GgmlDType::Q4K)] {
                if cols % dtype.block_size() != 0 {
                    skipped(shape, name, cols, dtype.block_size());
                    continue;
                }
                let q = QTensor::quantize(&wt, dtype)?;
                let data = q.data()?.to_vec();
                let bytes = data.len();
                let copies = copies_for(bytes);
                let ms: Vec<QMatMul> = (0..copies)
                    .map(|_| candle_core::quantized::ggml_file::qtensor_from_ggml(dtype, &data, vec![rows, cols], &dev).and_then(QMatMul::from_qtensor))
                    .collect::<candle_core::Result<_>>()?;
                let s = time_rotation(copies, args.reps, |c| {
                    std::hint::black_box(ms[c].forward(&xt).expect("qmatmul"));
                });
                report(name, bytes, copies, s);
            }
        }
        for format in QuantFormat::ALL {
            if format.row_bytes(cols).is_err() {
                skipped(shape, &format!("ours {}", format.name()), cols, format.block_len());
                continue;
            }
            // In the layout the engine decodes with (`for_decoding`: row-interleaved where this CPU has kernels for it).
            let m = QMatrix::quantize(&w, rows, cols, format)?;
            let bytes = m.byte_len();
            let copies = copies_for(bytes);
            // Copies of their own (a clone may share the bytes), each in the layout and memory
            // the engine decodes from (`for_decoding`).
            let ms: Vec<QMatrix> = (0..copies)
                .map(|_| Ok(QMatrix::from_bytes(format, rows, cols, QBytes::Owned(m.bytes().into_owned()))?.for_decoding()))
                .collect::<Result<_>>()?;
            let mut y = vec![0f32; rows];
            let kernels = if args.all_kernels { Kernel::available() } else { vec![Kernel::best()] };
            for k in kernels {
                let reps = if k == Kernel::scalar() { 1.max(args.reps / 3) } else { args.reps };
                let s = time_rotation(copies, reps, |c| ms[c].matvec_with(k, &x, &mut y).expect("matvec"));
                report(&format!("ours {} {}", format.name(), k.name()), bytes, copies, s);
            }
        }
    }
    if args.prompt > 0 {
        prompt_products(&args)?;
    }
    println!("(this machine is shared: figures are noisy; compare ratios measured in the same run)");
    Ok(())
}

/// Says that `method` cannot hold rows of `cols` weights (its blocks are `block` long) and is
/// left out for this shape; the others still run.
fn skipped(shape: &str, method: &str, cols: usize, block: usize) {
    println!("{shape:<12} {method:<24} skipped: a row of {cols} weights is not a whole number of {block}-weight blocks");
}

/// `ROWSxCOLS` → (rows, cols).
fn parse_shape(shape: &str) -> Result<(usize, usize)> {
    shape
        .split_once('x')
        .and_then(|(r, c)| Some((r.parse::<usize>().ok()?, c.parse::<usize>().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("--shape takes ROWSxCOLS, got {shape}"))
}

/// Prompt-sized products (`--prompt` vectors) of every format: the path `QMatrix::forward` takes
/// (the tiled integer kernel where the kernel set has one) against dequantizing into candle's f32
/// matrix product, alternated in the same run; figures are prompt tokens per second.
fn prompt_products(args: &Args) -> Result<()> {
    let n = args.prompt;
    println!("\nprompt products, {n} vectors (tokens/s through one matrix; ratio = forward / dequantize+f32 matmul)");
    println!("{:<12} {:<6} {:>8} {:>14} {:>22} {:>7}", "shape", "format", "tiled", "forward tok/s", "dequant+matmul tok/s", "ratio");
    for shape in &args.shape {
        let (rows, cols) = parse_shape(shape)?;
        let mut rng = StdRng::seed_from_u64(9);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-0.05f32..0.05)).collect();
        let x = Tensor::from_vec((0..n * cols).map(|_| rng.random_range(-1f32..1.0)).collect::<Vec<f32>>(), (n, cols), &Device::Cpu)?;
        for format in QuantFormat::ALL {
            if format.row_bytes(cols).is_err() {
                skipped(shape, format.name(), cols, format.block_len());
                continue;
            }
            let m = QMatrix::quantize(&w, rows, cols, format)?;
            let (mut fwd, mut deq) = (f64::MAX, f64::MAX);
            for _ in 0..args.reps.clamp(1, 5) {
                let t = Instant::now();
                std::hint::black_box(m.forward(&x)?);
                fwd = fwd.min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                std::hint::black_box(m.dequantized_product(&x, n)?);
                deq = deq.min(t.elapsed().as_secs_f64());
            }
            println!("{:<12} {:<6} {:>8} {:>14.0} {:>22.0} {:>6.2}x", shape, format.name(), Kernel::best().has_tile(format),
                n as f64 / fwd, n as f64 / deq, deq / fwd);
        }
    }
    Ok(())
}
