//! Memory for the weights a decode step streams, on 2 MiB pages where the OS gives them.
//!
//! Streaming a matrix through 4 KiB pages costs a page walk every 4 KiB (on a VM a two-level
//! one), and the hardware prefetchers stop at every page edge. Linux backs anonymous memory
//! with 2 MiB pages where asked (`madvise(MADV_HUGEPAGE)`, transparent huge pages) even when
//! the system default is `madvise` rather than `always`. On this project's 2-core VM a read
//! over 1 GiB on both cores went from 28 to 37 GB/s (ARCHITECTURE.md, Quantization).
//!
//! [`PageBuffer`] maps its bytes anonymously with room to start them on a 2 MiB boundary and
//! asks for huge pages over the whole 2 MiB pages inside them only, so the tail of a buffer
//! never takes (and counts in memory as) a huge page it mostly does not use. The slack
//! around the bytes is address space only: nothing touches it. Where huge pages are not
//! available (another OS, THP off, no free huge pages) the same bytes sit on ordinary pages.

/// Size of a huge page (x86-64 and most aarch64 kernels).
pub const HUGE_PAGE: usize = 2 << 20;

/// Zero-initialized bytes starting on a [`HUGE_PAGE`] boundary, backed by huge pages where the
/// OS gives them.
pub struct PageBuffer {
    map: memmap2::MmapMut,
    start: usize,
    len: usize,
}

impl PageBuffer {
    /// `len` zero bytes. Fails only where the OS refuses the mapping (out of address space or
    /// memory).
    pub fn zeroed(len: usize) -> std::io::Result<PageBuffer> {
        let span = len.checked_add(HUGE_PAGE).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::OutOfMemory, format!("{len} bytes")))?;
        let map = memmap2::MmapMut::map_anon(span)?;
        let start = map.as_ptr().align_offset(HUGE_PAGE);
        let whole = len / HUGE_PAGE * HUGE_PAGE;
        #[cfg(unix)]
        if whole > 0 {
            if let Err(e) = map.advise_range(memmap2::Advice::HugePage, start, whole) {
                tracing::debug!("no huge pages for {whole} bytes of weights: {e}");
            }
        }
        let _ = whole;
        Ok(PageBuffer { map, start, len })
    }

    /// A copy of `bytes` in a new buffer.
    pub fn copy_of(bytes: &[u8]) -> std::io::Result<PageBuffer> {
        let mut b = PageBuffer::zeroed(bytes.len())?;
        b.as_mut_slice().copy_from_slice(bytes);
        Ok(b)
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.map[self.start..self.start + self.len]
    }

    /// The bytes, to write.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map[self.start..self.start + self.len]
    }
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
}
