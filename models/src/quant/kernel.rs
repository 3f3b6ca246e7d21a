//! Run-time choice of the dot-product kernels (scalar, AVX2, AVX-VNNI, AVX-512, AVX-512 VNNI, NEON).

use std::sync::OnceLock;

use super::activation::ActQ8;
use super::format::QuantFormat;
use super::interleaved::Layout;
use super::reference;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

/// A set of dot-product kernels this CPU can run.
///
/// Invariant: a `Kernel` naming an instruction set is only built after run-time detection found
/// that instruction set (its field is private; [`Kernel::available`] and [`Kernel::best`] are the
/// only ways to get one), which is what makes calling the SIMD functions sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel(Isa);

impl Kernel {
    /// The portable scalar kernels (always available).
    pub fn scalar() -> Kernel {
        Kernel(Isa::Scalar)
    }

    /// Every kernel set this CPU can run, slowest first (scalar always included).
    pub fn available() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut v = vec![Kernel(Isa::Scalar)];
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
            if avx2 {
                v.push(Kernel(Isa::Avx2));
                if is_x86_feature_detected!("avxvnni") {
                    v.push(Kernel(Isa::AvxVnni));
                }
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                    v.push(Kernel(Isa::Avx512));
                    if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vbmi") {
                        v.push(Kernel(Isa::Avx512Vnni));
                    }
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                v.push(Kernel(Isa::Neon));
            }
        }
        v
    }

    /// The fastest kernel set of this CPU (detected once). `DOCTORGLM_KERNEL=scalar|avx2|avxvnni|avx512|avx512vnni|neon`
    /// picks a slower one when it is available (for comparisons).
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            let all = Kernel::available();
            if let Ok(want) = std::env::var("DOCTORGLM_KERNEL") {
                if let Some(k) = all.iter().find(|k| k.name().eq_ignore_ascii_case(want.trim())) {
                    return *k;
                }
                tracing::warn!("DOCTORGLM_KERNEL={want} is not available on this CPU; using the fastest kernel");
            }
            *all.last().unwrap_or(&Kernel(Isa::Scalar))
        })
    }

    /// The kernel set's name: `scalar`, `avx2`, `avxvnni`, `avx512`, `avx512vnni` or `neon`.
    pub fn name(self) -> &'static str {
        match self.0 {
            Isa::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => "avxvnni",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => "avx512vnni",
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => "neon",
        }
    }

    /// Quantizes the activation `x` for products with `format` weights, in the layout this kernel
    /// set reads fastest (the VNNI kernels want it rearranged; see [`ActQ8`]). Done once per
    /// matrix product, never per row.
    pub fn prepare(self, format: QuantFormat, x: &[f32]) -> ActQ8 {
        if format == QuantFormat::F16 {
            return ActQ8::keep_float(x);
        }
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut act = ActQ8::quantize(x);
        #[cfg(target_arch = "x86_64")]
        match (self.0, format) {
            (Isa::Avx512Vnni, QuantFormat::Q4_0 | QuantFormat::Q4K) => act.pack_for(format, 4),
            // The 256-bit pair kernel beat the AVX-512 Q4_0 kernel without VNNI (bench_quant).
            (Isa::Avx2 | Isa::AvxVnni | Isa::Avx512, QuantFormat::Q4_0) => act.pack_for(format, 2),
            _ => {}
        }
        let _ = format;
        act
    }

    /// Dot product of one weight row (`format` bytes) with an activation of the same length from
    /// [`Kernel::prepare`] (8-bit for the block formats, f32 for F16). Panics if the lengths disagree (a programming error, checked before any read).
    /// The packed Q4 kernels need the activation from [`Kernel::prepare`]; without its layout
    /// the plain kernels of the same instruction set run.
    #[inline]
    pub fn dot(self, format: QuantFormat, row: &[u8], act: &ActQ8) -> f32 {
        match self.0 {
            Isa::Scalar => reference::dot_row(format, row, act),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Kernel(Isa::Avx2) exists only where avx2, fma and f16c were detected.
            Isa::Avx2 => unsafe {
                match (format, act.packed_for(format, 2)) {
                    (QuantFormat::Q8_0, _) => super::x86::dot_q8_0_avx2(row, act),
                    (QuantFormat::Q4_0, Some(p)) => super::x86_avx_vnni::dot_q4_0_avx2(row, act, p),
                    (QuantFormat::Q4_0, None) => super::x86::dot_q4_0_avx2(row, act),
                    (QuantFormat::Q4K, _) => super::x86_avx_vnni::dot_q4k_avx2(row, act),
                    (QuantFormat::F16, _) => super::x86_f16::dot_f16_avx2(row, &act.float),
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Kernel(Isa::AvxVnni) exists only where avx2, fma, f16c and avxvnni were detected.
            Isa::AvxVnni => unsafe {
                match (format, act.packed_for(format, 2)) {
                    (QuantFormat::Q8_0, _) => super::x86::dot_q8_0_avx2(row, act),
                    (QuantFormat::Q4_0, Some(p)) => super::x86_avx_vnni::dot_q4_0_vnni(row, act, p),
                    (QuantFormat::Q4_0, None) => super::x86::dot_q4_0_avx2(row, act),
                    (QuantFormat::Q4K, _) => super::x86_avx_vnni::dot_q4k_vnni(row, act),
                    (QuantFormat::F16, _) => super::x86_f16::dot_f16_avx2(row, &act.float),
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Kernel(Isa::Avx512) exists only where avx2, fma, f16c, avx512f and avx512bw were detected.
            Isa::Avx512 => unsafe {
                match (format, act.packed_for(format, 2)) {
                    (QuantFormat::Q8_0, _) => super::x86::dot_q8_0_avx512(row, act),
                    (QuantFormat::Q4_0, Some(p)) => super::x86_avx_vnni::dot_q4_0_avx2(row, act, p),
                    (QuantFormat::Q4_0, None) => super::x86::dot_q4_0_avx512(row, act),
                    (QuantFormat::Q4K, _) => super::x86_avx_vnni::dot_q4k_avx2(row, act),
                    (QuantFormat::F16, _) => super::x86_f16::dot_f16_avx512(row, &act.float),
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Kernel(Isa::Avx512Vnni) exists only where avx2, fma, f16c, avx512f, avx512bw,
            // avx512vnni and avx512vbmi were detected (a superset of what the AVX-512 kernels need).
            Isa::Avx512Vnni => unsafe {
                match (format, act.packed_for(format, 4)) {
                    (QuantFormat::Q8_0, _) => super::x86::dot_q8_0_avx512(row, act),
                    (QuantFormat::Q4_0, Some(p)) => super::x86_vnni::dot_q4_0(row, act, p),
                    (QuantFormat::Q4K, Some(p)) => super::x86_vnni::dot_q4k(row, act, p),
                    (QuantFormat::Q4_0, None) => super::x86::dot_q4_0_avx512(row, act),
                    (QuantFormat::Q4K, None) => super::x86_avx_vnni::dot_q4k_avx2(row, act),
                    (QuantFormat::F16, _) => super::x86_f16::dot_f16_avx512(row, &act.float),
                }
            },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: Kernel(Isa::Neon) exists only where NEON was detected.
            Isa::Neon => unsafe {
                match format {
                    QuantFormat::Q8_0 => super::neon::dot_q8_0_neon(row, act),
                    QuantFormat::Q4_0 => super::neon::dot_q4_0_neon(row, act),
                    QuantFormat::Q4K => super::neon::dot_q4k_neon(row, act),
                    QuantFormat::F16 => super::neon::dot_f16_neon(row, &act.float),
                }
            },
        }
    }
}

impl Kernel {
    /// The row-interleaved layout in which this kernel set multiplies `format` matrices
    /// ([`Kernel::dot_interleaved`], `quant::interleaved`), if any; a matrix takes that layout
    /// for decoding only where the fastest kernel set has one.
    pub(crate) fn interleaved_layout(self, format: QuantFormat) -> Option<Layout> {
        #[cfg(target_arch = "x86_64")]
        match (self.0, format) {
            (Isa::Scalar, _) => None,
            (Isa::Avx512Vnni, QuantFormat::Q4_0) => Some(Layout::Q4_0Lanes),
            (Isa::Avx512Vnni, QuantFormat::Q8_0) => Some(Layout::Q8_0Lanes),
            (_, QuantFormat::Q4_0) => Some(Layout::Q4_0Octets),
            (_, QuantFormat::Q4K) => Some(Layout::Q4kLanes),
            _ => None,
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = format;
            None
        }
    }

    /// Whether this kernel set has an interleaved layout for `format` ([`Kernel::interleaved_layout`]).
    pub fn has_interleaved(self, format: QuantFormat) -> bool {
        self.interleaved_layout(format).is_some()
    }

    /// `out[i]` = row `i` · `act` for whole tiles of rows in `layout` (`data`: `out.len()` rows).
    /// Panics unless `layout` is this kernel set's layout for its format and the lengths agree.
    pub(crate) fn dot_interleaved(self, layout: Layout, data: &[u8], act: &ActQ8, out: &mut [f32]) {
        assert!(self.interleaved_layout(layout.format()) == Some(layout), "{} has no kernel for {layout:?}", self.name());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a Kernel naming an instruction set exists only where run-time detection found
        // it (see the type's invariant), and each arm calls only the functions compiled for the
        // features of its instruction set (AVX-512 without VNNI runs the AVX2 ones).
        unsafe {
            use super::{x86_interleaved_256 as k256, x86_vnni};
            match (self.0, layout) {
                // The assert above leaves each kernel set only its own layouts.
                (Isa::Avx512Vnni, Layout::Q8_0Lanes) => x86_vnni::dot_block_lanes::<true>(data, act, out),
                (Isa::Avx512Vnni, Layout::Q4kLanes) => x86_vnni::dot_q4k_lanes(data, act, out),
                (Isa::Avx512Vnni, _) => x86_vnni::dot_block_lanes::<false>(data, act, out),
                (Isa::AvxVnni, Layout::Q4kLanes) => k256::dot_q4k_lanes_vnni(data, act, out),
                (Isa::AvxVnni, _) => k256::dot_q4_0_octets_vnni(data, act, out),
                (_, Layout::Q4kLanes) => k256::dot_q4k_lanes_avx2(data, act, out),
                _ => k256::dot_q4_0_octets_avx2(data, act, out),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (data, act, out);
    }
}

impl Kernel {
    /// Dequantizes (F16: widens) one row of `format` bytes into `out`, vectorized where this
    /// kernel set allows (the prompt path's conversion; the block formats use the reference).
    pub fn dequantize_row(self, format: QuantFormat, row: &[u8], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if format == QuantFormat::F16 && self.0 != Isa::Scalar {
            // SAFETY: every kernel set but the scalar one exists only where avx2, fma and f16c were detected.
            return unsafe { super::x86_f16::widen_f16_avx2(row, out) };
        }
        #[cfg(target_arch = "aarch64")]
        if format == QuantFormat::F16 && self.0 == Isa::Neon {
            // SAFETY: Kernel(Isa::Neon) exists only where NEON was detected.
            return unsafe { super::neon::widen_f16_neon(row, out) };
        }
        reference::dequantize_row(format, row, out)
    }
}

/// Weight rows and activations that [`Kernel::dot_tile`] multiplies at once.
pub const TILE_ROWS: usize = 3;
/// See [`TILE_ROWS`].
pub const TILE_ACTS: usize = 4;

impl Kernel {
    /// Whether this kernel set has a tiled kernel ([`Kernel::dot_tile`]) for `format`: prompts
    /// then run on the integer kernels instead of dequantizing into a float matrix product.
    pub fn has_tile(self, format: QuantFormat) -> bool {
        #[cfg(target_arch = "x86_64")]
        if format == QuantFormat::Q4_0 {
            // AVX2 alone gained nothing over the dequantized f32 product (bench_quant).
            return matches!(self.0, Isa::Avx512Vnni | Isa::AvxVnni);
        }
        let _ = format;
        false
    }

    /// `out[r][t] = rows[r] · acts[t]` for [`TILE_ROWS`] rows and [`TILE_ACTS`] activations from
    /// [`Kernel::prepare`]. Where [`Kernel::has_tile`] holds, each weight group is unpacked once
    /// for every activation; elsewhere (or for an activation without this kernel's layout) the
    /// products are [`Kernel::dot`]'s. Panics if the lengths disagree.
    pub fn dot_tile(self, format: QuantFormat, rows: [&[u8]; TILE_ROWS], acts: [&ActQ8; TILE_ACTS]) -> [[f32; TILE_ACTS]; TILE_ROWS] {
        #[cfg(target_arch = "x86_64")]
        if self.has_tile(format) {
            let group = if self.0 == Isa::Avx512Vnni { 4 } else { 2 };
            if let [Some(p0), Some(p1), Some(p2), Some(p3)] = acts.map(|a| a.packed_for(format, group)) {
                let pairs = [(acts[0], p0), (acts[1], p1), (acts[2], p2), (acts[3], p3)];
                match self.0 {
                    // SAFETY (both arms): a Kernel naming an instruction set exists only where
                    // run-time detection found it (see the type's invariant), and each arm calls only
                    // the functions compiled for the features of its instruction set.
                    Isa::Avx512Vnni => return unsafe { super::x86_vnni::dot_q4_0_tile::<TILE_ROWS, TILE_ACTS>(rows, pairs) },
                    Isa::AvxVnni => return rows.map(|row| unsafe { super::x86_avx_vnni::dot_q4_0_tile_vnni::<TILE_ACTS>(row, pairs) }),
                    _ => {}
                }
            }
        }
        rows.map(|row| acts.map(|act| self.dot(format, row, act)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::format::QK_K;
    use crate::quant::testutil::random_vec;

    #[test]
    fn every_kernel_agrees_with_the_scalar_reference() {
        let kernels = Kernel::available();
        assert_eq!(kernels[0], Kernel::scalar());
        // NEON is part of every aarch64 Linux CPU (and of qemu's), so its kernels are tested there.
        #[cfg(target_arch = "aarch64")]
        assert!(kernels.iter().any(|k| k.name() == "neon"), "NEON not detected");
        for format in QuantFormat::QUANTIZED {
            let bl = format.block_len();
            // Odd block counts exercise the one-block tails of the two-block loops.
            for (seed, nblocks) in [(1u64, 1usize), (2, 3), (3, 7), (4, 16), (5, 33)] {
                let cols = bl * nblocks;
                let w = random_vec(seed, cols, 1.0);
                let x = random_vec(seed + 100, cols, 3.0);
                let mut row = vec![0u8; format.row_bytes(cols).unwrap()];
                reference::quantize_row(format, &w, &mut row);
                let act = ActQ8::quantize(&x);
                let want = reference::dot_row(format, &row, &act);
                // The reference itself against the plain float product of the dequantized values.
                let mut wd = vec![0f32; cols];
                reference::dequantize_row(format, &row, &mut wd);
                let exact: f32 = (0..cols).map(|i| wd[i] * act.d[i / 32] * act.qs[i] as f32).sum();
                let tol = 1e-4 * (1.0 + exact.abs()) + 1e-5 * cols as f32;
                assert!((want - exact).abs() <= tol, "{format} reference {want} vs {exact}");
                for k in &kernels {
                    let prepared = k.prepare(format, &x);
                    for a in [&act, &prepared] {
                        let got = k.dot(format, &row, a);
                        assert!((got - want).abs() <= tol, "{} {format} cols {cols}: {got} vs scalar {want}", k.name());
                    }
                }
            }
        }
        assert!(QK_K.is_multiple_of(32));
    }

    #[test]
    fn every_kernel_agrees_on_arbitrary_bytes() {
        // Bytes a quantizer never writes (Q8_0 −128, every nibble and 6-bit scale pattern) can come
        // from imported files; every kernel must still compute exactly what the reference does.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut byte = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        };
        for format in QuantFormat::QUANTIZED {
            for nblocks in [1usize, 2, 3, 4, 5, 6, 9, 13] {
                let cols = format.block_len() * nblocks;
                let mut row: Vec<u8> = (0..format.row_bytes(cols).unwrap()).map(|_| byte()).collect();
                // Finite f16 scales: 2^-8 ·(1 + m), either sign (Q4_K: d and dmin).
                let scale_at: Vec<usize> = match format {
                    QuantFormat::Q4K => (0..nblocks).flat_map(|b| [b * format.block_bytes(), b * format.block_bytes() + 2]).collect(),
                    _ => (0..nblocks).map(|b| b * format.block_bytes()).collect(),
                };
                for at in scale_at {
                    let h = half::f16::from_f32((1.0 + (byte() as f32) / 256.0) / 256.0 * if byte() & 1 == 0 { 1.0 } else { -1.0 });
                    row[at..at + 2].copy_from_slice(&h.to_le_bytes());
                }
                let x: Vec<f32> = (0..cols).map(|_| byte() as f32 - 127.5).collect();
                let act = ActQ8::quantize(&x);
                let want = reference::dot_row(format, &row, &act);
                let tol = 1e-4 * (1.0 + want.abs()) + 1e-3;
                for k in Kernel::available() {
                    let got = k.dot(format, &row, &k.prepare(format, &x));
                    assert!((got - want).abs() <= tol, "{} {format} {nblocks} blocks: {got} vs scalar {want}", k.name());
                }
            }
        }
    }

    #[test]
    fn f16_widening_is_exact_for_every_half() {
        // All 65 536 bit patterns: zeros, subnormals, normals, infinities and NaNs of both signs.
        let row: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
        for k in Kernel::available() {
            let mut out = vec![0f32; 1 << 16];
            k.dequantize_row(QuantFormat::F16, &row, &mut out);
            for (h, got) in (0..=u16::MAX).zip(&out) {
                let want = half::f16::from_bits(h).to_f32();
                assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{} {h:#06x}: {got} vs {want}", k.name());
            }
        }
    }

    #[test]
    fn f16_kernels_equal_the_float_product_at_every_length() {
        // Lengths around the 8-, 16-, 32- and 64-value steps and their scalar tails; weights that
        // are exactly half floats, so the float product of the widened values is the answer.
        for n in [1usize, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 200, 4096 + 13] {
            let w: Vec<f32> = random_vec(n as u64, n, 2.0).iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
            let x = random_vec(n as u64 + 1, n, 3.0);
            let mut row = vec![0u8; QuantFormat::F16.row_bytes(n).unwrap()];
            reference::quantize_row(QuantFormat::F16, &w, &mut row);
            let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            let size: f64 = w.iter().zip(&x).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
            for k in Kernel::available() {
                let act = k.prepare(QuantFormat::F16, &x);
                assert_eq!(act.float, x, "F16 activations stay unrounded");
                let got = k.dot(QuantFormat::F16, &row, &act) as f64;
                assert!((got - exact).abs() <= 1e-6 * size + 1e-6, "{} n {n}: {got} vs {exact}", k.name());
                let mut widened = vec![0f32; n];
                k.dequantize_row(QuantFormat::F16, &row, &mut widened);
                assert_eq!(widened, w, "{} n {n}: widening", k.name());
            }
        }
    }
}
