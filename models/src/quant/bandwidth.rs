//! Memory read bandwidth of this machine: the denominator of the roofline ratios that the
//! benchmarks print (bytes of weights a decode step reads ÷ bandwidth = the fastest possible step).
//!
//! A plain summing loop leaves the hardware prefetcher to find the stream and, measured here,
//! read 15–16 GB/s where the matrix-vector kernels (which prefetch a few KiB ahead) streamed
//! 17–20 GB/s. A roofline below what real code reaches overstates every ratio, so the probe runs
//! the same sum with software prefetching at several distances, into L1 and into L2 (the
//! kernels fill L2), and keeps the fastest. Its buffer sits on huge pages where the OS gives
//! them, as the decode's weights do (`crate::pages`): on 4 KiB pages this VM read 28 GB/s where
//! it reads 37 on huge pages, so a probe on 4 KiB pages measured the page walks, not the memory.

use std::time::Instant;

use rayon::prelude::*;

use crate::pages::{huge_page_bytes, PageBuffer};

/// The cache level a software prefetch fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// L1 and below (`T0`).
    L1,
    /// L2 and below (`T1`).
    L2,
}

/// What the probe tries, `(distance in bytes, level)`: hardware prefetching alone (distance 0),
/// then three distances, each into L1 and into L2.
pub const PROBE_SETTINGS: [(usize, Fill); 7] =
    [(0, Fill::L1), (1024, Fill::L1), (1024, Fill::L2), (4096, Fill::L1), (4096, Fill::L2), (16384, Fill::L1), (16384, Fill::L2)];

/// The result of [`read_bandwidth`].
#[derive(Debug, Clone)]
pub struct Bandwidth {
    /// Fastest read over every setting and repetition, GB/s (10⁹ bytes per second).
    pub best_gbps: f64,
    /// Median over the repetitions of the fastest setting, GB/s.
    pub median_gbps: f64,
    /// The setting of [`PROBE_SETTINGS`] that gave `best_gbps`.
    pub setting: (usize, Fill),
    /// Best GB/s of each setting of [`PROBE_SETTINGS`], in order.
    pub per_setting: Vec<f64>,
    /// Bytes read per pass.
    pub bytes: usize,
    /// Whether most of the buffer sat on huge pages (Linux only; `false` where the system does not say).
    pub huge_pages: bool,
}

impl Bandwidth {
    /// Every setting's best, as `0: 27.3, 1024/L1: 27.6, 1024/L2: 28.1, …` GB/s.
    pub fn per_setting_text(&self) -> String {
        PROBE_SETTINGS
            .iter()
            .zip(&self.per_setting)
            .map(|(s, g)| format!("{}: {g:.1}", setting_name(*s)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `0` for hardware prefetching alone, else `distance/L1` or `distance/L2`.
pub fn setting_name((distance, fill): (usize, Fill)) -> String {
    if distance == 0 {
        "0".into()
    } else {
        format!("{distance}/{fill:?}")
    }
}

/// Sums a `mib`-MiB buffer on every rayon thread (one contiguous part each, as the matrix
/// products split their rows), `reps` timed passes per setting after one warm-up.
pub fn read_bandwidth(mib: usize, reps: usize) -> Bandwidth {
    let n = (mib.max(1) << 20) / 8;
    // The weights the decode streams sit on huge pages where the OS gives them (`pages`), and
    // so does the probe: on 4 KiB pages it reads less than the kernels can stream.
    let before = huge_page_bytes();
    let mut pages = PageBuffer::zeroed(n * 8).unwrap_or_else(|e| panic!("cannot map {mib} MiB for the bandwidth probe: {e}"));
    // SAFETY: the buffer starts on a 2 MiB boundary and every bit pattern is a u64.
    let (head, buf, _) = unsafe { pages.as_mut_slice().align_to_mut::<u64>() };
    assert!(head.is_empty() && buf.len() == n);
    buf.par_chunks_mut(1 << 16).enumerate().for_each(|(c, part)| {
        for (i, v) in part.iter_mut().enumerate() {
            *v = (((c << 16) + i) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    });
    let huge_pages = match (before, huge_page_bytes()) {
        (Some(b), Some(a)) => a.saturating_sub(b) >= (n * 8 / 2) as u64,
        _ => false,
    };
    let buf: &[u64] = buf;
    let part = n.div_ceil(rayon::current_num_threads().max(1)).max(8);
    let mut check = 0u64;
    let mut best = (0.0f64, 0.0f64, PROBE_SETTINGS[0]);
    let mut per_setting = Vec::with_capacity(PROBE_SETTINGS.len());
    for setting in PROBE_SETTINGS {
        let mut gbps = Vec::with_capacity(reps);
        for rep in 0..=reps.max(1) {
            let t = Instant::now();
            let s = buf
                .par_chunks(part)
                .map(|c| sum_with_prefetch(c, setting))
                .reduce(|| 0, |a, b| a.wrapping_add(b));
            let secs = t.elapsed().as_secs_f64();
            check ^= s;
            if rep > 0 {
                gbps.push((n * 8) as f64 / secs / 1e9);
            }
        }
        gbps.sort_by(|a, b| b.total_cmp(a));
        per_setting.push(gbps[0]);
        if gbps[0] > best.0 {
            best = (gbps[0], gbps[gbps.len() / 2], setting);
        }
    }
    std::hint::black_box(check);
    Bandwidth { best_gbps: best.0, median_gbps: best.1, setting: best.2, per_setting, bytes: n * 8, huge_pages }
}

/// Wrapping sum of `c`, asking for the cache line `distance` bytes ahead of each line read into
/// the level `fill`.
fn sum_with_prefetch(c: &[u64], (distance, fill): (usize, Fill)) -> u64 {
    let mut acc = [0u64; 8];
    let lines = c.chunks_exact(8);
    let tail = lines.remainder().iter().fold(0u64, |a, &v| a.wrapping_add(v));
    for line in lines {
        #[cfg(target_arch = "x86_64")]
        if distance > 0 {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
            let ahead = (line.as_ptr() as *const i8).wrapping_add(distance);
            // SAFETY: SSE is part of every x86-64 CPU, and a prefetch is a hint that never faults,
            // even for an address past the buffer.
            unsafe {
                match fill {
                    Fill::L1 => _mm_prefetch::<_MM_HINT_T0>(ahead),
                    Fill::L2 => _mm_prefetch::<_MM_HINT_T1>(ahead),
                }
            }
        }
        // Elsewhere the probe reads without hints (every setting measures the same loop).
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (distance, fill);
        for (a, v) in acc.iter_mut().zip(line) {
            *a = a.wrapping_add(*v);
        }
    }
    acc.iter().fold(tail, |a, &v| a.wrapping_add(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_is_the_same_at_every_setting() {
        let v: Vec<u64> = (0..1001u64).map(|i| i * 7 + 3).collect();
        let want = v.iter().fold(0u64, |a, &b| a.wrapping_add(b));
        for s in PROBE_SETTINGS {
            assert_eq!(sum_with_prefetch(&v, s), want);
        }
        let b = read_bandwidth(1, 1);
        assert_eq!(b.per_setting.len(), PROBE_SETTINGS.len());
        assert!(b.best_gbps > 0.0 && b.best_gbps >= b.median_gbps && PROBE_SETTINGS.contains(&b.setting));
        assert_eq!(b.per_setting_text().matches(", ").count(), PROBE_SETTINGS.len() - 1);
        assert_eq!(setting_name((4096, Fill::L2)), "4096/L2");
    }
}
