//! Splitting a decode product's rows over the threads: one contiguous stretch per thread,
//! balanced at the end by stealing halves.
//!
//! A matrix-vector product streams its weights from memory, and each stream a core starts
//! costs it a few round trips to memory before its prefetches run ahead. rayon's
//! `par_chunks_mut` cuts the rows into a fixed number of chunks and balances by whole chunks,
//! so the faster thread waits up to a chunk at the end of every product. Here each thread
//! owns one stretch of rows from the start and takes it a few units at a time from the front
//! (the kernel's prefetches run on into the next units: one stream); a thread whose stretch is
//! done takes the back half of what another has left, so the threads finish within a few
//! units of each other, and each steal starts one new stream. Measured against
//! `par_chunks_mut` with four chunks a thread (ARCHITECTURE.md, Quantization, stop 20): the
//! small products of a layer (2048–2304 × 2048) took 7–32% less time in `bench_quant`, the
//! engine's paired ratios 0–6 points higher; on 4 KiB pages, with heavier kernels, no difference.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// What is left of one thread's stretch: units `next..end`, packed as `next << 32 | end`.
/// Each on cache lines of its own (128 bytes: the pair the adjacent-line prefetcher fetches
/// together): the owners take their claims from their stretches at once, and stretches sharing
/// a line made every claim move the line from one core to the other.
#[repr(align(128))]
struct Stretch(AtomicU64);

fn pack(r: Range<usize>) -> u64 {
    (r.start as u64) << 32 | r.end as u64
}

fn unpack(v: u64) -> Range<usize> {
    (v >> 32) as usize..(v & u32::MAX as u64) as usize
}

impl Stretch {
    /// Takes up to `n` units from the front (the owner's side).
    fn take_front(&self, n: usize) -> Option<Range<usize>> {
        let mut v = self.0.load(Ordering::Acquire);
        loop {
            let r = unpack(v);
            if r.is_empty() {
                return None;
            }
            let cut = r.start + n.min(r.len());
            match self.0.compare_exchange_weak(v, pack(cut..r.end), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(r.start..cut),
                Err(now) => v = now,
            }
        }
    }

    /// Takes the back half of what is left (all of it when one unit is left).
    fn take_back_half(&self) -> Option<Range<usize>> {
        let mut v = self.0.load(Ordering::Acquire);
        loop {
            let r = unpack(v);
            if r.is_empty() {
                return None;
            }
            let cut = r.start + r.len() / 2;
            match self.0.compare_exchange_weak(v, pack(r.start..cut), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(cut..r.end),
                Err(now) => v = now,
            }
        }
    }
}

/// A count on cache lines of its own.
#[derive(Default)]
#[repr(align(128))]
struct Counter(AtomicUsize);

/// Counts its thread's part finished when dropped (also when the part panics).
struct Finish<'a>(&'a Counter);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_add(1, Ordering::Release);
    }
}

/// The output's address, shared by the threads that write its disjoint parts.
struct Out<T>(*mut T);

impl<T> Clone for Out<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Out<T> {}
// SAFETY: each part of the output is handed to exactly one thread (see `for_each_stretch`).
unsafe impl<T: Send> Send for Out<T> {}
unsafe impl<T: Send> Sync for Out<T> {}

impl<T> Out<T> {
    /// `len` elements from element `at`. Safety: the caller's, as for `from_raw_parts_mut`.
    unsafe fn part<'a>(self, at: usize, len: usize) -> &'a mut [T] {
        // SAFETY: passed on to the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
    }
}

/// Calls `work(first, part)` for disjoint parts covering `out`, on every thread of the current
/// rayon pool: `part` is `out[first * unit..]` for a whole number of units (`unit` elements
/// each), at most `claim` units unless a thread works alone. Each thread starts on its own
/// stretch of about `units / threads` units and moves through it front to back; see the module
/// documentation. Panics unless `out.len()` is a whole number of units; a panic in `work`
/// reaches the caller once the other threads are done. The calling thread waits for the others
/// spinning (a product's end is microseconds away), so `work` must not wait on other parallel work.
pub(crate) fn for_each_stretch<T: Send>(out: &mut [T], unit: usize, claim: usize, work: impl Fn(usize, &mut [T]) + Sync) {
    assert!(unit > 0 && out.len().is_multiple_of(unit), "{} elements are not whole units of {unit}", out.len());
    let units = out.len() / unit;
    assert!(units < u32::MAX as usize, "{units} units");
    let threads = rayon::current_num_threads().min(units);
    if threads <= 1 {
        if units > 0 {
            work(0, out);
        }
        return;
    }
    let claim = claim.max(1);
    let stretches: Vec<Stretch> = (0..threads).map(|t| Stretch(AtomicU64::new(pack(units * t / threads..units * (t + 1) / threads)))).collect();
    let base = Out(out.as_mut_ptr());
    let (started, finished) = (Counter::default(), Counter::default());
    let run = |me: usize| {
        started.0.fetch_add(1, Ordering::AcqRel);
        let _finish = Finish(&finished);
        let mut taken = stretches[me].take_front(claim);
        loop {
            while let Some(r) = taken {
                // SAFETY: every unit lies in exactly one stretch, and a unit leaves a stretch
                // (by a successful compare-exchange) to exactly one thread: the parts handed
                // out are disjoint pieces of `out`, which outlives the scope below.
                let part = unsafe { base.part(r.start * unit, r.len() * unit) };
                work(r.start, part);
                taken = stretches[me].take_front(claim);
            }
            // This thread's stretch is done: take the back half of another's. The stolen units
            // become this thread's stretch (its own is empty, so no other thread takes from it
            // in between: a compare-exchange against its old value fails).
            let stolen = (1..threads).find_map(|k| stretches[(me + k) % threads].take_back_half());
            match stolen {
                Some(r) => {
                    stretches[me].0.store(pack(r.end.min(r.start + claim)..r.end), Ordering::Release);
                    taken = Some(r.start..r.end.min(r.start + claim));
                }
                None => return,
            }
        }
    };
    rayon::scope(|s| {
        for t in 1..threads {
            let run = &run;
            s.spawn(move |_| run(t));
        }
        run(0);
        // Wait here, spinning, for the threads that took part: rayon's own wait at the end of
        // the scope yields the CPU to the system between looks, which cost microseconds a
        // product. A spawned job no thread has started is not waited for: the scope runs it
        // (there is nothing left to take by then).
        while finished.0.load(Ordering::Acquire) < started.0.load(Ordering::Acquire) {
            // Meanwhile, pull the next product's weights toward the cache (`warm`).
            if !crate::warm::pull() {
                std::hint::spin_loop();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_unit_is_handed_out_once_on_any_pool() {
        for threads in [1, 2, 3, 8] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for (units, unit, claim) in [(0, 4, 3), (1, 4, 3), (7, 1, 1), (100, 8, 3), (1000, 2, 16), (5, 3, 100)] {
                let mut out = vec![0u32; units * unit];
                let calls = AtomicUsize::new(0);
                pool.install(|| {
                    for_each_stretch(&mut out, unit, claim, |first, part| {
                        assert_eq!(part.len() % unit, 0);
                        calls.fetch_add(1, Ordering::Relaxed);
                        for (i, v) in part.iter_mut().enumerate() {
                            *v += (first * unit + i) as u32 + 1;
                        }
                    })
                });
                let want: Vec<u32> = (1..=out.len() as u32).collect();
                assert_eq!(out, want, "{threads} threads, {units} units of {unit}, claim {claim}");
                if units > 0 {
                    assert!(calls.load(Ordering::Relaxed) >= 1);
                }
            }
        }
    }

    #[test]
    fn uneven_work_is_balanced_by_stealing() {
        // One thread's first unit is slow: the others must take over most of its stretch.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut out = vec![usize::MAX; 64];
        pool.install(|| {
            for_each_stretch(&mut out, 1, 1, |first, part| {
                if first == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                part.fill(rayon::current_thread_index().unwrap());
            })
        });
        // The thread that got unit 0 did few of the 32 units of its own stretch.
        let slow = out[0];
        let by_slow = out.iter().filter(|&&t| t == slow).count();
        assert!(by_slow < 16, "the slow thread did {by_slow} of 64 units");
    }

    #[test]
    fn a_panic_in_the_work_reaches_the_caller() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut out = vec![0u8; 40];
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| for_each_stretch(&mut out, 1, 2, |first, part| assert!(!(first..first + part.len()).contains(&13), "unit 13")))
        }));
        assert!(r.is_err());
        assert_eq!(pool.install(rayon::current_num_threads), 2);
    }
}
