//! Quantized block formats (ggml layouts) and their sizes.

use half::f16;

/// Weights per Q8_0 / Q4_0 block (and per activation block).
pub const QK: usize = 32;
/// Weights per Q4_K super-block.
pub const QK_K: usize = 256;
/// Bytes of one Q8_0 block: f16 scale + 32 × i8.
pub const Q8_0_BYTES: usize = 2 + QK;
/// Bytes of one Q4_0 block: f16 scale + 16 bytes of nibbles.
pub const Q4_0_BYTES: usize = 2 + QK / 2;
/// Bytes of one Q4_K super-block: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles.
pub const Q4_K_BYTES: usize = 2 + 2 + 12 + QK_K / 2;

/// Bytes of one F16 weight.
pub const F16_BYTES: usize = 2;

/// A weight format of our kernels, with ggml's byte layout: IEEE half floats or a quantized block format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    /// 16-bit IEEE half floats (ggml's F16), multiplied with the activation in f32: exact for f16
    /// checkpoints, half the memory of f32.
    F16,
    /// 8-bit: blocks of 32 signed bytes and one f16 scale (8.5 bits per weight).
    Q8_0,
    /// 4-bit: blocks of 32 nibbles (offset 8) and one f16 scale (4.5 bits per weight).
    Q4_0,
    /// 4-bit k-quant: super-blocks of 256, eight 32-weight sub-blocks with 6-bit scales and mins (4.5 bits per weight).
    Q4K,
}

impl QuantFormat {
    /// Every format, in the order benchmarks print them.
    pub const ALL: [QuantFormat; 4] = [QuantFormat::F16, QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Q4K];

    /// The block formats (8 or 4 bits per weight, activations quantized to 8 bits).
    pub const QUANTIZED: [QuantFormat; 3] = [QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Q4K];

    /// Whether the format is a block format (its products quantize the activation to 8 bits).
    pub fn is_quantized(self) -> bool {
        self != QuantFormat::F16
    }

    /// Weights per block.
    pub fn block_len(self) -> usize {
        match self {
            QuantFormat::F16 => 1,
            QuantFormat::Q8_0 | QuantFormat::Q4_0 => QK,
            QuantFormat::Q4K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            QuantFormat::F16 => F16_BYTES,
            QuantFormat::Q8_0 => Q8_0_BYTES,
            QuantFormat::Q4_0 => Q4_0_BYTES,
            QuantFormat::Q4K => Q4_K_BYTES,
        }
    }

    /// Short name as llama.cpp writes it.
    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::F16 => "F16",
            QuantFormat::Q8_0 => "Q8_0",
            QuantFormat::Q4_0 => "Q4_0",
            QuantFormat::Q4K => "Q4_K",
        }
    }

    /// Parses a name such as `f16`, `q4_0`, `Q8_0`, `q4_k` (case-insensitive).
    pub fn parse(name: &str) -> Option<QuantFormat> {
        match name.to_ascii_lowercase().as_str() {
            "f16" | "fp16" | "half" => Some(QuantFormat::F16),
            "q8_0" | "q8" | "int8" => Some(QuantFormat::Q8_0),
            "q4_0" | "q4" | "int4" => Some(QuantFormat::Q4_0),
            "q4_k" | "q4k" => Some(QuantFormat::Q4K),
            _ => None,
        }
    }

    /// Bytes of one row of `cols` weights, or an error when `cols` is not a whole number of blocks.
    pub fn row_bytes(self, cols: usize) -> crate::quant::Result<usize> {
        let b = self.block_len();
        if cols == 0 || !cols.is_multiple_of(b) {
            return Err(crate::quant::QuantError::NotBlockMultiple { cols, block: b, format: self.name() });
        }
        Ok(cols / b * self.block_bytes())
    }

    /// The matching candle/ggml dtype (for GGUF files and candle's own kernels).
    pub fn ggml_dtype(self) -> candle_core::quantized::GgmlDType {
        use candle_core::quantized::GgmlDType;
        match self {
            QuantFormat::F16 => GgmlDType::F16,
            QuantFormat::Q8_0 => GgmlDType::Q8_0,
            QuantFormat::Q4_0 => GgmlDType::Q4_0,
            QuantFormat::Q4K => GgmlDType::Q4K,
        }
    }

    /// The block format of a candle/ggml dtype, if we have kernels for it (F16 is not one: GGUF
    /// files' F16 tensors are plain tensors until a layer takes them as its weight).
    pub fn from_ggml_dtype(d: candle_core::quantized::GgmlDType) -> Option<QuantFormat> {
        use candle_core::quantized::GgmlDType;
        match d {
            GgmlDType::Q8_0 => Some(QuantFormat::Q8_0),
            GgmlDType::Q4_0 => Some(QuantFormat::Q4_0),
            GgmlDType::Q4K => Some(QuantFormat::Q4K),
            _ => None,
        }
    }
}

impl std::fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads the little-endian f16 at `b[0..2]` as f32.
#[inline(always)]
pub(crate) fn read_f16(b: &[u8]) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
}

/// Unpacks the 6-bit scale and min of sub-block `j` (0..8) from a Q4_K `scales` field.
#[inline(always)]
pub(crate) fn q4k_scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Packs eight 6-bit scales and mins into a Q4_K `scales` field (inverse of [`q4k_scale_min`]).
pub(crate) fn q4k_pack_scales(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = sc[j] & 63;
            s[j + 4] = m[j] & 63;
        } else {
            s[j + 4] = (sc[j] & 0x0F) | ((m[j] & 0x0F) << 4);
            s[j - 4] |= (sc[j] >> 4) << 6;
            s[j] |= (m[j] >> 4) << 6;
        }
    }
    s
}
