//! Memory for the weights a decode step streams, on 2 MiB pages where the OS gives them.
//!
//! Streaming a matrix through 4 KiB pages costs a page walk every 4 KiB (on a VM a two-level
//! one), and the hardware prefetchers stop at every page edge. Linux backs anonymous memory
//! with 2 MiB pages where asked (`madvise(MADV_HUGEPAGE)`, transparent huge pages) even when
//! the system default is `madvise` rather than `always`. On this project's 2-core VM a read
//! over 1 GiB on both cores went from 28 to 37 GB/s (ARCHITECTURE.md, Quantization).
//!
//! A [`PageBuffer`] is a range of an anonymous mapping that starts on a 2 MiB boundary and asks
//! for huge pages over the whole 2 MiB pages inside it. Alone ([`PageBuffer::zeroed`]) a buffer
//! has a mapping of its own, and its tail past the last whole huge page stays on small pages,
//! so that it never takes (and counts in memory as) a huge page it mostly does not use — which
//! left a third of a 2.95 MB query-key-value matrix on small pages. While a model loads, its
//! weight buffers are instead packed one after another into shared mappings ([`packed`],
//! [`PageBuffer::for_weights`]): only the last huge page of a mapping is part-used. The slack
//! around the bytes is address space only: nothing touches it, so the OS gives it no memory.
//! Where huge pages are not available (another OS, THP off, no free huge pages) the same bytes
//! sit on ordinary pages.

use std::cell::RefCell;
use std::sync::Arc;

/// Size of a huge page (x86-64 and most aarch64 kernels).
pub const HUGE_PAGE: usize = 2 << 20;

/// Address space of one shared mapping of [`packed`] weight buffers; a buffer larger than a
/// quarter of it gets a mapping of its own. Only what the buffers use takes memory.
pub const PACKED_MAPPING: usize = 256 << 20;

/// Where each packed buffer starts: a multiple of this (a page, so that the kernels' loads never
/// straddle two cache lines and no page holds bytes of two buffers).
const PACKED_ALIGN: usize = 4096;

/// One anonymous mapping, shared by the buffers placed in it.
struct Mapping {
    /// Held for its lifetime: dropping it unmaps the memory.
    _map: memmap2::MmapMut,
    /// The mapping's first byte (kept apart from `_map` so that buffers sharing it write through
    /// a raw pointer, each to its own range).
    base: *mut u8,
    /// Offset of the first 2 MiB boundary in the mapping.
    start: usize,
}

// SAFETY: the mapping is only read and written through `PageBuffer`s, whose ranges do not overlap
// (see `PageBuffer::as_mut_slice`); the pointer stays valid while `_map` lives.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// A zeroed mapping with `len` bytes from a 2 MiB boundary, huge pages asked for over the
    /// whole huge pages among them.
    fn new(len: usize) -> std::io::Result<Mapping> {
        let span = len.checked_add(HUGE_PAGE).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::OutOfMemory, format!("{len} bytes")))?;
        let mut map = memmap2::MmapMut::map_anon(span)?;
        let start = map.as_ptr().align_offset(HUGE_PAGE);
        let whole = len / HUGE_PAGE * HUGE_PAGE;
        #[cfg(unix)]
        if whole > 0 {
            if let Err(e) = map.advise_range(memmap2::Advice::HugePage, start, whole) {
                tracing::debug!("no huge pages for {whole} bytes of weights: {e}");
            }
        }
        let _ = whole;
        let base = map.as_mut_ptr();
        Ok(Mapping { _map: map, base, start })
    }
}

/// Zero-initialized bytes starting on a [`HUGE_PAGE`] boundary (a page boundary when packed),
/// backed by huge pages where the OS gives them.
pub struct PageBuffer {
    mapping: Arc<Mapping>,
    /// Offset of the bytes in the mapping.
    at: usize,
    len: usize,
}

impl PageBuffer {
    /// `len` zero bytes in a mapping of their own, the tail past the last whole huge page on
    /// small pages. Fails only where the OS refuses the mapping (out of address space or memory).
    pub fn zeroed(len: usize) -> std::io::Result<PageBuffer> {
        let mapping = Mapping::new(len)?;
        let at = mapping.start;
        Ok(PageBuffer { mapping: Arc::new(mapping), at, len })
    }

    /// `len` zero bytes for a weight matrix: packed after the previous ones where this thread is
    /// inside [`packed`] (and the buffer is at most a quarter of [`PACKED_MAPPING`]), else as
    /// [`PageBuffer::zeroed`].
    pub fn for_weights(len: usize) -> std::io::Result<PageBuffer> {
        if len > PACKED_MAPPING / 4 {
            return PageBuffer::zeroed(len);
        }
        PACKING.with(|p| match p.borrow_mut().as_mut() {
            Some(packing) => packing.take(len),
            None => PageBuffer::zeroed(len),
        })
    }

    /// A copy of `bytes` in a new buffer (of its own).
    pub fn copy_of(bytes: &[u8]) -> std::io::Result<PageBuffer> {
        let mut b = PageBuffer::zeroed(bytes.len())?;
        b.as_mut_slice().copy_from_slice(bytes);
        Ok(b)
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `at..at + len` lies inside the mapping (checked where the buffer was made),
        // which lives as long as `self` holds it; no other buffer writes this range.
        unsafe { std::slice::from_raw_parts(self.mapping.base.add(self.at), self.len) }
    }

    /// The bytes, to write.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; the ranges of the buffers sharing a mapping do not overlap
        // (`Packing::take` hands each range out once), and `&mut self` is the only access to this one.
        unsafe { std::slice::from_raw_parts_mut(self.mapping.base.add(self.at), self.len) }
    }
}

/// The shared mapping weight buffers are being packed into, and where the next one goes.
struct Packing {
    mapping: Option<Arc<Mapping>>,
    next: usize,
}

impl Packing {
    fn take(&mut self, len: usize) -> std::io::Result<PageBuffer> {
        let at = self.next.next_multiple_of(PACKED_ALIGN);
        let (mapping, at) = match &self.mapping {
            Some(m) if at + len <= m.start + PACKED_MAPPING => (m.clone(), at),
            // A fresh mapping holds it: `for_weights` packs at most a quarter of one.
            _ => {
                let m = Arc::new(Mapping::new(PACKED_MAPPING)?);
                self.mapping = Some(m.clone());
                let start = m.start;
                (m, start)
            }
        };
        self.next = at + len;
        Ok(PageBuffer { mapping, at, len })
    }
}

thread_local! {
    static PACKING: RefCell<Option<Packing>> = const { RefCell::new(None) };
}

/// Runs `f` with the weight buffers this thread makes ([`PageBuffer::for_weights`]) packed one
/// after another into shared mappings. A model's loading runs inside it: its matrices then leave
/// no part-used huge page each, and their memory goes back to the OS once every buffer of a
/// mapping is dropped. Nested calls pack into the outer call's mappings.
pub fn packed<R>(f: impl FnOnce() -> R) -> R {
    let outer = PACKING.with(|p| p.borrow().is_some());
    if outer {
        return f();
    }
    /// Ends the packing when dropped (also when `f` panics).
    struct End;
    impl Drop for End {
        fn drop(&mut self) {
            PACKING.with(|p| p.borrow_mut().take());
        }
    }
    PACKING.with(|p| *p.borrow_mut() = Some(Packing { mapping: None, next: 0 }));
    let _end = End;
    f()
}

impl std::fmt::Debug for PageBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageBuffer").field("len", &self.len).finish_non_exhaustive()
    }
}

/// Bytes of this process's memory on transparent huge pages (`AnonHugePages` in
/// `/proc/self/smaps_rollup`); `None` where the system does not say (not Linux).
pub fn huge_page_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = text.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_aligned_and_hold_what_is_written() {
        for len in [0, 1, 4095, HUGE_PAGE, 3 * HUGE_PAGE + 77] {
            let mut b = PageBuffer::zeroed(len).unwrap();
            assert_eq!(b.as_slice().len(), len);
            assert_eq!(b.as_slice().as_ptr() as usize % HUGE_PAGE, 0);
            assert!(b.as_slice().iter().all(|&x| x == 0));
            for (i, x) in b.as_mut_slice().iter_mut().enumerate() {
                *x = (i * 7) as u8;
            }
            let c = PageBuffer::copy_of(b.as_slice()).unwrap();
            assert_eq!(c.as_slice(), b.as_slice());
        }
    }

    #[test]
    fn packed_buffers_follow_each_other_and_keep_their_bytes() {
        const Q: usize = PACKED_MAPPING / 4;
        let sizes = [3 * HUGE_PAGE + 77, 1, 5000, HUGE_PAGE, Q + 1, 0, Q, Q, Q, Q];
        let mut bufs: Vec<PageBuffer> = packed(|| sizes.iter().map(|&n| PageBuffer::for_weights(n).unwrap()).collect());
        // The first and last 8 KiB of each buffer (all of the small ones).
        let ends = |n: usize| (0..n.min(8192)).chain(n.saturating_sub(8192).max(8192)..n);
        for (i, b) in bufs.iter_mut().enumerate() {
            assert_eq!(b.as_slice().len(), sizes[i]);
            assert_eq!(b.as_slice().as_ptr() as usize % PACKED_ALIGN, 0, "buffer {i}");
            let bytes = b.as_mut_slice();
            for j in ends(sizes[i]) {
                assert_eq!(bytes[j], 0);
                bytes[j] = i as u8 + 1;
            }
        }
        for (i, b) in bufs.iter().enumerate() {
            assert!(ends(sizes[i]).all(|j| b.as_slice()[j] == i as u8 + 1), "buffer {i} was overwritten");
        }
        let shared = |a: usize, b: usize| Arc::ptr_eq(&bufs[a].mapping, &bufs[b].mapping);
        // One after the other in a mapping, the one over a quarter in its own, and the fourth
        // quarter past the first 8 MiB no longer fits: a new mapping.
        assert!([1, 2, 3, 5, 6, 7, 8].iter().all(|&i| shared(0, i)));
        assert!(!shared(4, 0) && !shared(9, 0) && !shared(9, 4));
        assert!(bufs[1].at >= bufs[0].at + sizes[0] && bufs[2].at > bufs[1].at && bufs[3].at >= bufs[2].at + 5000);
        assert!(bufs[7].at >= bufs[6].at + Q && bufs[8].at >= bufs[7].at + Q);
        assert_eq!(bufs[0].as_slice().as_ptr() as usize % HUGE_PAGE, 0, "a mapping's first buffer starts on a huge page");
        // Outside `packed`, and after it, each buffer has its own mapping.
        let (x, y) = (PageBuffer::for_weights(10).unwrap(), PageBuffer::for_weights(10).unwrap());
        assert!(!Arc::ptr_eq(&x.mapping, &y.mapping));
        // Nested: the inner call packs into the outer one's mapping.
        let (p, q) = packed(|| (PageBuffer::for_weights(10).unwrap(), packed(|| PageBuffer::for_weights(10).unwrap())));
        assert!(Arc::ptr_eq(&p.mapping, &q.mapping));
    }
}
