//! Memory read bandwidth of this machine: the denominator of the roofline ratios that the
//! benchmarks print (bytes of weights a decode step reads ÷ bandwidth = the fastest possible step).
//!
//! A plain summing loop leaves the hardware prefetcher to find the stream and, measured here,
//! read 15–16 GB/s where the matrix-vector kernels (which prefetch a few KiB ahead) streamed
//! 17–20 GB/s. A roofline below what real code reaches overstates every ratio, so the probe runs
//! the same sum with software prefetching at several distances and keeps the fastest.

use std::time::Instant;

use rayon::prelude::*;

/// Software-prefetch distances the probe tries, bytes (0: hardware prefetching only).
pub const PROBE_DISTANCES: [usize; 4] = [0, 1024, 4096, 16384];

/// The result of [`read_bandwidth`].
#[derive(Debug, Clone)]
pub struct Bandwidth {
    /// Fastest read over every distance and repetition, GB/s (10⁹ bytes per second).
    pub best_gbps: f64,
    /// Median over the repetitions of the fastest distance, GB/s.
    pub median_gbps: f64,
    /// The prefetch distance that gave `best_gbps`, bytes.
    pub distance: usize,
    /// Best GB/s of each distance of [`PROBE_DISTANCES`], in order.
    pub per_distance: Vec<f64>,
    /// Bytes read per pass.
    pub bytes: usize,
}

/// Sums a `mib`-MiB buffer on every rayon thread (one contiguous part each, as the matrix
/// products split their rows), `reps` timed passes per prefetch distance after one warm-up.
pub fn read_bandwidth(mib: usize, reps: usize) -> Bandwidth {
    let n = (mib.max(1) << 20) / 8;
    let buf: Vec<u64> = (0..n as u64).into_par_iter().map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    let part = n.div_ceil(rayon::current_num_threads().max(1)).max(8);
    let mut check = 0u64;
    let mut best = (0.0f64, 0.0f64, 0usize);
    let mut per_distance = Vec::with_capacity(PROBE_DISTANCES.len());
    for distance in PROBE_DISTANCES {
        let mut gbps = Vec::with_capacity(reps);
        for rep in 0..=reps.max(1) {
            let t = Instant::now();
            let s = buf
                .par_chunks(part)
                .map(|c| sum_with_prefetch(c, distance))
                .reduce(|| 0, |a, b| a.wrapping_add(b));
            let secs = t.elapsed().as_secs_f64();
            check ^= s;
            if rep > 0 {
                gbps.push((n * 8) as f64 / secs / 1e9);
            }
        }
        gbps.sort_by(|a, b| b.total_cmp(a));
        per_distance.push(gbps[0]);
        if gbps[0] > best.0 {
            best = (gbps[0], gbps[gbps.len() / 2], distance);
        }
    }
    std::hint::black_box(check);
    Bandwidth { best_gbps: best.0, median_gbps: best.1, distance: best.2, per_distance, bytes: n * 8 }
}

/// Wrapping sum of `c`, asking for the cache line `distance` bytes ahead of each line read.
fn sum_with_prefetch(c: &[u64], distance: usize) -> u64 {
    let mut acc = [0u64; 8];
    let lines = c.chunks_exact(8);
    let tail = lines.remainder().iter().fold(0u64, |a, &v| a.wrapping_add(v));
    for line in lines {
        #[cfg(target_arch = "x86_64")]
        if distance > 0 {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: SSE is part of every x86-64 CPU, and a prefetch is a hint that never faults,
            // even for an address past the buffer.
            unsafe { _mm_prefetch::<_MM_HINT_T0>((line.as_ptr() as *const i8).wrapping_add(distance)) };
        }
        // Elsewhere the probe reads without hints (every distance measures the same loop).
        #[cfg(not(target_arch = "x86_64"))]
        let _ = distance;
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
    fn the_sum_is_the_same_at_every_distance() {
        let v: Vec<u64> = (0..1001u64).map(|i| i * 7 + 3).collect();
        let want = v.iter().fold(0u64, |a, &b| a.wrapping_add(b));
        for d in PROBE_DISTANCES {
            assert_eq!(sum_with_prefetch(&v, d), want);
        }
        let b = read_bandwidth(1, 1);
        assert_eq!(b.per_distance.len(), PROBE_DISTANCES.len());
        assert!(b.best_gbps > 0.0 && b.best_gbps >= b.median_gbps && PROBE_DISTANCES.contains(&b.distance));
    }
}
