//! Pulling the next product's weights toward the cache while a thread would otherwise wait.
//!
//! Between two products of a decode step the calling thread runs serial work (norms, RoPE, the
//! cache append, quantizing the next activation) while the pool's other threads spin
//! ([`crate::awake`]) and the memory bus idles; at a product's end the thread that finishes
//! first waits for the others; then the next product streams its weights at the bus's pace. So
//! the model posts, just before each product, the weights of the product after it ([`post`]);
//! a thread with nothing else to do — a spinning helper between parallel jobs, the caller
//! waiting at a product's end (`split`) — asks the memory system for the front of each thread's
//! share of them, a slice at a time ([`pull`]), and each thread's stream of the next product
//! starts on lines already in cache. The step's end withdraws the post ([`clear`]).
//!
//! Everything here is a hint: a prefetch never faults and reads nothing into the program, so a
//! stale or racing post (another model's step, matrices dropped since) costs only bus time.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes asked for per [`pull`]: a thread looks for its own work between pulls, so this bounds
/// how long a product's start or end can wait on a pull (4 KiB at one core's share of the
/// bus, about a quarter of a microsecond here).
const PULL_BYTES: usize = 4096;

/// How far into each thread's share the threads pull. The waits and the serial work between
/// two products take a few to a few tens of microseconds, in which one core pulls some 16–300
/// KiB; pulling further would only push earlier lines out of its L2 (2 MiB here) before their
/// product reads them.
const AHEAD_PER_PART: usize = 384 * 1024;

/// The posted weights: `len` bytes from `base`, read by `parts` threads in equal contiguous
/// shares (as `split::for_each_stretch` starts them); `cursor` counts the pulls handed out. Each
/// field is read on its own: a pull racing a post may mix two posts' fields, which only makes it
/// prefetch addresses nobody reads.
struct Post {
    base: AtomicUsize,
    len: AtomicUsize,
    parts: AtomicUsize,
    cursor: AtomicUsize,
}

static POST: Post = Post::new();

/// Posts `bytes`, the weights of the next product, to be read by `parts` threads.
pub(crate) fn post(bytes: &[u8], parts: usize) {
    POST.post(bytes, parts);
}

/// Withdraws the post (the step is over).
pub(crate) fn clear() {
    POST.len.store(0, Ordering::Relaxed);
}

/// Asks for the next slice of the posted weights (into L2 where the CPU has such a hint);
/// false when nothing is posted or every part has been pulled as far as [`AHEAD_PER_PART`].
pub(crate) fn pull() -> bool {
    POST.pull(prefetch_l2)
}

impl Post {
    const fn new() -> Post {
        Post { base: AtomicUsize::new(0), len: AtomicUsize::new(0), parts: AtomicUsize::new(1), cursor: AtomicUsize::new(0) }
    }

    fn post(&self, bytes: &[u8], parts: usize) {
        self.len.store(0, Ordering::Relaxed);
        self.base.store(bytes.as_ptr() as usize, Ordering::Relaxed);
        self.parts.store(parts.max(1), Ordering::Relaxed);
        self.cursor.store(0, Ordering::Relaxed);
        self.len.store(bytes.len(), Ordering::Release);
    }

    /// Hands the lines of the next slice to `hint`, one address per 64-byte line.
    fn pull(&self, hint: impl Fn(usize)) -> bool {
        let len = self.len.load(Ordering::Acquire);
        if len == 0 {
            return false;
        }
        let (base, parts) = (self.base.load(Ordering::Relaxed), self.parts.load(Ordering::Relaxed).max(1));
        let k = self.cursor.fetch_add(1, Ordering::Relaxed);
        let Some(range) = slice_of(k, len, parts) else {
            // Every part is pulled: stop the others looking (a new post resets the length).
            let _ = self.len.compare_exchange(len, 0, Ordering::Relaxed, Ordering::Relaxed);
            return false;
        };
        for at in range.step_by(64) {
            hint(base.wrapping_add(at));
        }
        true
    }
}

/// The byte range of pull `k` of a post: pulls go round the parts (split on cache lines), each
/// part front to back.
fn slice_of(k: usize, len: usize, parts: usize) -> Option<std::ops::Range<usize>> {
    let bound = |p: usize| if p == parts { len } else { (len * p / parts) & !63 };
    let (part, step) = (k % parts, k / parts);
    let start = bound(part);
    let end = bound(part + 1).min(start + AHEAD_PER_PART);
    let from = start + step * PULL_BYTES;
    (from < end).then(|| from..(from + PULL_BYTES).min(end))
}

/// A hint to bring the line at `addr` into L2; never faults.
#[inline(always)]
fn prefetch_l2(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of every x86-64 CPU, and a prefetch only names an address: it never
    // faults and reads nothing into the program.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(addr as *const i8)
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: PRFM is a hint: it never faults, whatever the address, and changes no register
    // or memory the program sees.
    unsafe {
        std::arch::asm!("prfm pldl2keep, [{0}]", in(reg) addr, options(nostack, preserves_flags, readonly))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = addr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_go_round_the_parts_and_stop_at_the_limit() {
        let len = 10 * PULL_BYTES + 128;
        let slices: Vec<_> = (0..).map_while(|k| slice_of(k, len, 2)).collect();
        // Two parts of 5 pulls and a line each: 6 pulls a part, alternating.
        assert_eq!(slices.len(), 12);
        assert_eq!(slices[0], 0..PULL_BYTES);
        assert_eq!(slices[1].start, len / 2);
        assert_eq!(slices[10], 5 * PULL_BYTES..len / 2);
        assert_eq!(slices[11].end, len);
        // A large matrix is pulled only AHEAD_PER_PART into each part.
        let big = 64 << 20;
        let n = (0..).map_while(|k| slice_of(k, big, 2)).count();
        assert_eq!(n, 2 * AHEAD_PER_PART / PULL_BYTES);
        assert!(slice_of(0, 0, 1).is_none());
    }

    #[test]
    fn a_post_is_pulled_line_by_line_once_and_clearing_withdraws_it() {
        let bytes = vec![1u8; 3 * PULL_BYTES + 64];
        let post = Post::new();
        let lines = std::sync::Mutex::new(Vec::new());
        let hint = |addr: usize| lines.lock().unwrap().push(addr - bytes.as_ptr() as usize);
        assert!(!post.pull(hint), "nothing posted yet");
        post.post(&bytes, 2);
        let mut pulls = 0;
        while post.pull(hint) {
            pulls += 1;
        }
        assert_eq!(pulls, 4, "two parts of 1.5 slices each");
        let mut got = lines.lock().unwrap().clone();
        got.sort_unstable();
        assert_eq!(got, (0..bytes.len()).step_by(64).collect::<Vec<_>>(), "every line once");
        // A new post starts over; withdrawn, it yields nothing.
        post.post(&bytes, 1);
        assert!(post.pull(hint));
        post.len.store(0, Ordering::Relaxed);
        assert!(!post.pull(hint));
    }
}
