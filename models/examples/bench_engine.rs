//! End-to-end engine benchmark: load (first and cached), prefill, time to first token, decode,
//! peak memory and the memory-bandwidth roofline for f32, F16, Q8_0, Q4_0 and Q4_K; and accuracy
//! (KL divergence, top-1 agreement) of each format against f32.
//!
//! ```text
//! cargo run --release -p doctorglm-models --example make_random_model -- --out target/glm3-1b
//! cargo run --release -p doctorglm-models --example bench_engine -- --model target/glm3-1b
//!     [--formats f32,f16,q8_0,q4_0,q4_k --prompt 512 --new 128 --accuracy-len 64 --bw-mib 1024
//!      --windows 6 --window-tokens 16 --window-mib 1024 --device cpu|cuda]
//! ```
//!
//! Each format runs in its own child process (this binary with `--one FORMAT`), so that its peak
//! resident memory (`VmHWM`) is its own. The f32 child writes its logits over an accuracy prompt;
//! the other children compare theirs with them. The read bandwidth (`quant::bandwidth`) is
//! measured at the start and again by each child right after its decode (this shared machine's
//! bandwidth drifts); the higher of the two is the roofline's: "ratio" is (weight bytes read per
//! token ÷ bandwidth) ÷ measured time per token. "paired" is the same ratio per window of a few
//! more tokens, each divided by a probe run right after it, and its median: on a shared machine
//! whose bandwidth swings within minutes it is the steadier of the two.
//! f32 is the full-precision baseline (candle's f32 matrix products over weights widened on load);
//! F16 keeps the checkpoint's half floats and multiplies them with our F16 kernels (candle's
//! CPU f16 matrix product is far slower than its f32 one).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use doctorglm_models::quant::bandwidth::read_bandwidth;
use doctorglm_models::quant::{Kernel, QuantFormat};
use candle_core::{DType, Device, Tensor};
use doctorglm_models::{select_device, DeviceChoice, LoadOptions, Model, QuantizeOptions};

#[derive(Parser)]
struct Args {
    /// Model folder (e.g. written by `make_random_model`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Formats to run: f32, f16, q8_0, q4_0, q4_k.
    #[arg(long, value_delimiter = ',', default_values_t = ["f32".to_string(), "f16".to_string(), "q8_0".to_string(), "q4_0".to_string(), "q4_k".to_string()])]
    formats: Vec<String>,
    /// Prompt tokens for the prefill.
    #[arg(long, default_value_t = 512)]
    prompt: usize,
    /// Tokens to decode.
    #[arg(long, default_value_t = 128)]
    new: usize,
    /// Prompt length over which logits are compared with f32.
    #[arg(long, default_value_t = 64)]
    accuracy_len: usize,
    /// Bandwidth-test buffer, MiB.
    #[arg(long, default_value_t = 1024)]
    bw_mib: usize,
    /// Windows of the paired ratio: after the decode, this many times `--window-tokens` more
    /// tokens, each window followed at once by a bandwidth probe (0: none).
    #[arg(long, default_value_t = 6)]
    windows: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 16)]
    window_tokens: usize,
    /// Bandwidth-test buffer of each window's probe, MiB (larger than this VM's 300 MiB L3, like `--bw-mib`).
    #[arg(long, default_value_t = 1024)]
    window_mib: usize,
    /// Folder for the quantization caches and the f32 logits (default: a temporary folder).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Fixture root with `models/<name>/` (default `$DOCTORGLM_FIXTURES`, else `../shared/fixtures`).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Skip the fixture-model accuracy table.
    #[arg(long)]
    no_fixtures: bool,
    /// Where the model runs: `cpu`, or `cuda` (a build with the `cuda` feature). On a GPU the
    /// roofline's bandwidth is the device's, probed the same way (see `device_bandwidth`), and
    /// peak RSS is the host's.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Internal: run one format and print its figures as JSON.
    #[arg(long)]
    one: Option<String>,
}

fn open_device(name: &str) -> Result<Device> {
    match name.to_ascii_lowercase().as_str() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(select_device(DeviceChoice::Cuda(0))?),
        other => bail!("unknown device {other}: use cpu or cuda"),
    }
}

/// Read bandwidth in GB/s, best of `repeats`: `quant::bandwidth`'s probe on the CPU; on a GPU
/// the faster of a sum over a `mib` MiB f32 tensor (bytes read) and a scaled copy of it (bytes
/// read and written), each synchronized by reading its result back.
fn bandwidth(device: &Device, mib: usize, repeats: usize) -> Result<f64> {
    if device.is_cpu() {
        return Ok(read_bandwidth(mib, repeats).best_gbps);
    }
    let n = (mib << 20) / 4;
    let t = Tensor::ones(n, DType::F32, device)?;
    let mut best = 0f64;
    for i in 0..=repeats {
        let start = Instant::now();
        t.sum_all()?.to_scalar::<f32>()?;
        let read = (4 * n) as f64 / start.elapsed().as_secs_f64() / 1e9;
        let start = Instant::now();
        let copy = (&t * 0.5)?;
        copy.narrow(0, n - 1, 1)?.to_vec1::<f32>()?;
        let moved = (8 * n) as f64 / start.elapsed().as_secs_f64() / 1e9;
        if i > 0 {
            best = best.max(read).max(moved);
        }
    }
    Ok(best)
}

fn main() -> Result<()> {
    let args = Args::parse();
    match &args.one {
        Some(format) => child(&args, format),
        None => parent(&args),
    }
}

// ---------------------------------------------------------------- figures shared by both sides

/// `VmHWM` / `VmRSS` of this process, bytes (Linux; 0 elsewhere).
fn proc_status(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Nanoseconds all threads of this process have run on a CPU (`/proc/self/task/*/schedstat`,
/// whose first field is the thread's time on a CPU); 0 where the file is missing.
fn cpu_time_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// A deterministic prompt of `len` ordinary token ids below `vocab`.
fn prompt_ids(len: usize, vocab: usize, salt: u64) -> Vec<u32> {
    let span = (vocab.saturating_sub(200)).max(1) as u64;
    (0..len as u64).map(|i| (100 + (i * 7919 + salt * 104_729) % span) as u32).collect()
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32)
}

fn log_softmax(v: &[f32]) -> Vec<f64> {
    let m = v.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let z: f64 = v.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m;
    v.iter().map(|&x| x as f64 - z).collect()
}

/// Mean KL(reference ‖ other) and top-1 agreement over rows of `vocab` logits.
fn compare(reference: &[f32], other: &[f32], vocab: usize) -> (f64, f64, usize) {
    let mut kl = 0.0;
    let mut agree = 0usize;
    let rows = reference.len() / vocab;
    for (r, o) in reference.chunks_exact(vocab).zip(other.chunks_exact(vocab)) {
        let (lp, lq) = (log_softmax(r), log_softmax(o));
        kl += lp.iter().zip(&lq).map(|(p, q)| p.exp() * (p - q)).sum::<f64>();
        agree += usize::from(argmax(r) == argmax(o));
    }
    (kl / rows as f64, agree as f64 / rows as f64, rows)
}

fn parse_format(name: &str) -> Result<Option<QuantFormat>> {
    if name.eq_ignore_ascii_case("f32") {
        return Ok(None);
    }
    QuantFormat::parse(name).map(Some).with_context(|| format!("unknown format {name}: use f32, f16, q8_0, q4_0 or q4_k"))
}

fn all_logits(m: &Model, ids: &[u32]) -> Result<Vec<f32>> {
    let mut cache = m.new_cache(None);
    Ok(m.forward(&mut cache, ids, None, true)?.flatten_all()?.to_vec1::<f32>()?)
}

// ---------------------------------------------------------------- one format (child process)

fn child(args: &Args, format_name: &str) -> Result<()> {
    let dir = args.model.as_deref().context("--model is required")?;
    let work = args.work.as_deref().context("--work is required with --one")?;
    let format = parse_format(format_name)?;
    let device = open_device(&args.device)?;
    let never = AtomicBool::new(false);
    let (model, first_s, cached_s) = match format {
        None => {
            let load = LoadOptions { device: device.clone(), ..LoadOptions::default() };
            let t = Instant::now();
            drop(Model::load(dir, &load)?);
            let first = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let m = Model::load(dir, &load)?;
            (m, first, t.elapsed().as_secs_f64())
        }
        Some(f) => {
            let cache = work.join(format!("model.{}.gguf", f.name().to_ascii_lowercase()));
            let _ = std::fs::remove_file(&cache);
            let opts = QuantizeOptions { device: device.clone(), ..QuantizeOptions::new(f, Some(cache)) };
            let t = Instant::now();
            let (m, used) = Model::load_quantized(dir, &opts, &|_, _| {}, &never)?;
            let first = t.elapsed().as_secs_f64();
            drop(m);
            let t = Instant::now();
            let (m, used2) = Model::load_quantized(dir, &opts, &|_, _| {}, &never)?;
            let cached = t.elapsed().as_secs_f64();
            // The mapping stays valid after the name is gone; free the disk for the next format.
            let _ = std::fs::remove_file(opts.cache.as_deref().unwrap_or(Path::new("")));
            eprintln!("{format_name}: first load {used:?}, second {used2:?}");
            (m, first, cached)
        }
    };
    let rss_loaded = proc_status("VmRSS:");
    let vocab = model.config().vocab_size;
    let bytes_per_token = model.weight_bytes_per_token();

    // Prefill and time to first token: the prompt in one pass, then the first token chosen.
    let prompt = prompt_ids(args.prompt, vocab, 1);
    let mut cache = model.new_cache(None);
    let t = Instant::now();
    let logits = model.forward(&mut cache, &prompt, None, false)?.flatten_all()?.to_vec1::<f32>()?;
    let mut next = argmax(&logits);
    let ttft = t.elapsed().as_secs_f64();

    // Decode: one token at a time over the cache, greedy.
    let cpu_before = cpu_time_ns();
    let t = Instant::now();
    for _ in 0..args.new {
        let logits = model.forward(&mut cache, &[next], None, false)?.flatten_all()?.to_vec1::<f32>()?;
        next = argmax(&logits);
    }
    let decode_s = t.elapsed().as_secs_f64();
    // How busy the threads were: time off the CPU (a worker asleep while the other finishes a
    // product or runs the step's serial work) is time the memory bus may sit idle.
    let decode_busy = cpu_time_ns().saturating_sub(cpu_before) as f64 / 1e9 / (decode_s * rayon::current_num_threads() as f64);
    // Peak memory before the bandwidth probe's buffer; the probe then runs right after the
    // decode, since this shared machine's bandwidth drifts between the parent's probe and here.
    let peak_rss = proc_status("VmHWM:");
    let bw_after = bandwidth(&device, args.bw_mib, 3)?;

    // Paired windows: each a few tokens, then a probe at once, so that every window's ratio
    // divides by the bandwidth of its own minute (this VM's swings by 20–30% within minutes).
    let mut window_ratios = Vec::with_capacity(args.windows);
    for _ in 0..args.windows {
        let t = Instant::now();
        for _ in 0..args.window_tokens.max(1) {
            let logits = model.forward(&mut cache, &[next], None, false)?.flatten_all()?.to_vec1::<f32>()?;
            next = argmax(&logits);
        }
        let per_token = t.elapsed().as_secs_f64() / args.window_tokens.max(1) as f64;
        let bw = bandwidth(&device, args.window_mib, 1)?;
        window_ratios.push(bytes_per_token as f64 / (bw * 1e9) / per_token);
    }
    drop(cache);
    let mut sorted = window_ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let window_median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);

    // Accuracy on this model: logits at every position of a shorter prompt.
    let acc_ids = prompt_ids(args.accuracy_len, vocab, 2);
    let logits = all_logits(&model, &acc_ids)?;
    let ref_path = work.join("f32.logits");
    let (kl, top1) = match format {
        None => {
            let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(&ref_path, bytes)?;
            (0.0, 1.0)
        }
        Some(_) => match std::fs::read(&ref_path) {
            Ok(bytes) if bytes.len() == logits.len() * 4 => {
                let reference: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                let (kl, top1, _) = compare(&reference, &logits, vocab);
                (kl, top1)
            }
            _ => (f64::NAN, f64::NAN),
        },
    };
    let out = serde_json::json!({
        "format": format_name,
        "load_first_s": first_s,
        "load_cached_s": cached_s,
        "ttft_s": ttft,
        "prefill_tps": args.prompt as f64 / ttft,
        "decode_tps": args.new as f64 / decode_s,
        "decode_s_per_token": decode_s / args.new as f64,
        "decode_cpu_busy": decode_busy,
        "peak_rss": peak_rss,
        "bw_after_decode": bw_after,
        "window_ratios": window_ratios,
        "window_ratio_median": window_median,
        "rss_loaded": rss_loaded,
        "bytes_per_token": bytes_per_token,
        "kl": kl,
        "top1": top1,
    });
    println!("RESULT {out}");
    Ok(())
}

// ---------------------------------------------------------------- driver

fn fixture_root(args: &Args) -> PathBuf {
    if let Some(p) = &args.fixtures {
        return p.clone();
    }
    match std::env::var_os("DOCTORGLM_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

/// KL and top-1 agreement of each quantized format against f32 on the tiny fixture models, over
/// every position of every fixture prompt.
fn fixture_accuracy(root: &Path) -> Result<()> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("models"))
        .with_context(|| format!("no fixture models under {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    dirs.sort();
    println!("\naccuracy against f32 on the fixture models (every position of every fixture prompt):");
    println!("{:<22} {:<6} {:>10} {:>8} {:>6}", "model", "format", "KL", "top-1", "rows");
    let never = AtomicBool::new(false);
    for dir in dirs {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json"))?)?;
        let cases: Vec<Vec<u32>> = v["cases"]
            .as_array()
            .context("cases")?
            .iter()
            .map(|c| c["input_ids"].as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect()).unwrap_or_default())
            .collect();
        let f32_model = Model::load(&dir, &LoadOptions::default())?;
        let vocab = f32_model.config().vocab_size;
        let reference: Vec<Vec<f32>> = cases.iter().map(|ids| all_logits(&f32_model, ids)).collect::<Result<_>>()?;
        drop(f32_model);
        for format in QuantFormat::ALL {
            let (m, _) = Model::load_quantized(&dir, &QuantizeOptions::new(format, None), &|_, _| {}, &never)?;
            let (mut kl, mut agree, mut rows) = (0.0, 0.0, 0usize);
            for (ids, r) in cases.iter().zip(&reference) {
                let (k, a, n) = compare(r, &all_logits(&m, ids)?, vocab);
                kl += k * n as f64;
                agree += a * n as f64;
                rows += n;
            }
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            println!("{name:<22} {:<6} {:>10.6} {:>7.1}% {rows:>6}", format.name(), kl / rows as f64, 100.0 * agree / rows as f64);
        }
    }
    Ok(())
}

fn parent(args: &Args) -> Result<()> {
    let dir = args.model.as_deref().context("--model DIR is required (write one with make_random_model)")?;
    let tmp;
    let work = match &args.work {
        Some(w) => {
            std::fs::create_dir_all(w)?;
            w.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let threads = rayon::current_num_threads();
    // The parent's device handle (and its CUDA context) lives only for its probe.
    let bw = {
        let device = open_device(&args.device)?;
        if device.is_cpu() {
            println!("kernel {}, {threads} threads; model {}", Kernel::best().name(), dir.display());
            let probe = read_bandwidth(args.bw_mib, 7);
            println!(
                "read bandwidth (best of 7 over {} MiB on {} pages; per prefetch setting, distance/level: {} GB/s): {:.2} GB/s",
                args.bw_mib,
                if probe.huge_pages { "huge" } else { "4 KiB" },
                probe.per_setting_text(),
                probe.best_gbps
            );
            probe.best_gbps
        } else {
            println!("device {:?} (candle's kernels for every format); model {}", device, dir.display());
            let bw = bandwidth(&device, args.bw_mib, 7)?;
            println!("device read bandwidth (best of 7 sums and scaled copies over {} MiB): {bw:.1} GB/s", args.bw_mib);
            bw
        }
    };
    let exe = std::env::current_exe()?;
    let mut results = Vec::new();
    let mut formats = args.formats.clone();
    // f32 first: it writes the reference logits.
    formats.sort_by_key(|f| !f.eq_ignore_ascii_case("f32"));
    for f in &formats {
        parse_format(f)?;
        eprintln!("running {f} ...");
        let out = Command::new(&exe)
            .arg("--model")
            .arg(dir)
            .arg("--work")
            .arg(&work)
            .args(["--one", f, "--prompt", &args.prompt.to_string(), "--new", &args.new.to_string()])
            .args(["--accuracy-len", &args.accuracy_len.to_string(), "--bw-mib", &args.bw_mib.to_string()])
            .args(["--windows", &args.windows.to_string(), "--window-tokens", &args.window_tokens.to_string()])
            .args(["--window-mib", &args.window_mib.to_string(), "--device", &args.device])
            .output()?;
        std::io::stderr().write_all(&out.stderr)?;
        if !out.status.success() {
            bail!("the {f} run failed");
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find_map(|l| l.strip_prefix("RESULT ")).context("no RESULT line")?;
        results.push(serde_json::from_str::<serde_json::Value>(line)?);
    }
    let gib = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0) / (1u64 << 30) as f64;
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "\n{:<6} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8} {:>8} {:>9} {:>7}",
        "format", "load 1st", "load 2nd", "prefill", "TTFT", "decode", "peakRSS", "weights", "BW", "roofln", "ratio", "paired", "KL", "top-1"
    );
    println!(
        "{:<6} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8} {:>8} {:>9} {:>7}",
        "", "s", "s", "tok/s", "s", "tok/s", "GiB", "GiB/tok", "GB/s", "tok/s", "", "median", "vs f32", ""
    );
    for r in &results {
        let bytes = num(&r["bytes_per_token"]);
        // The higher of the two probes (the stricter ratio): the run's start and right after this decode.
        let bw = bw.max(num(&r["bw_after_decode"]));
        let roofline_tps = bw * 1e9 / bytes;
        let ratio = (bytes / (bw * 1e9)) / num(&r["decode_s_per_token"]);
        println!(
            "{:<6} {:>9.2} {:>9.2} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.3} {:>6.1} {:>8.2} {:>7.0}% {:>7.0}% {:>9.5} {:>6.1}%",
            r["format"].as_str().unwrap_or("?"),
            num(&r["load_first_s"]),
            num(&r["load_cached_s"]),
            num(&r["prefill_tps"]),
            num(&r["ttft_s"]),
            num(&r["decode_tps"]),
            gib(&r["peak_rss"]),
            bytes / (1u64 << 30) as f64,
            bw,
            roofline_tps,
            100.0 * ratio,
            100.0 * num(&r["window_ratio_median"]),
            num(&r["kl"]),
            100.0 * num(&r["top1"]),
        );
    }
    println!(
        "(prefill {} tokens; decode {} tokens after it; TTFT = prefill + first choice; BW = the higher of the probe at the start and the one right after this format's decode; roofline = BW ÷ weight bytes per token; \
         ratio = roofline time ÷ measured time per token; paired = the median over {} windows of {} more tokens of the same ratio, each window against a probe ({} MiB) run right after it; \
         KL / top-1 over {} positions of one prompt against the f32 run)",
        args.prompt, args.new, args.windows, args.window_tokens, args.window_mib, args.accuracy_len
    );
    for r in &results {
        let each: Vec<String> = r["window_ratios"].as_array().map(|a| a.iter().map(|v| format!("{:.0}%", 100.0 * num(v))).collect()).unwrap_or_default();
        println!(
            "paired windows {}: {}; threads on a CPU while decoding: {:.0}% of the time",
            r["format"].as_str().unwrap_or("?"),
            each.join(" "),
            100.0 * num(&r["decode_cpu_busy"]),
        );
    }
    if !args.no_fixtures {
        fixture_accuracy(&fixture_root(args))?;
    }
    Ok(())
}
