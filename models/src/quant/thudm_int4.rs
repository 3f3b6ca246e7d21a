//! THUDM's own int4 / int8 checkpoints (`chatglm-6b-int4`, `chatglm-6b-int8`, `chatglm2-6b-int4`)
//! mapped onto our Q4_0 / Q8_0 matrices without loss.
//!
//! What THUDM's `quantization.py` (and its CPU kernels in `quantization_kernels.c`) store, per
//! quantized linear layer — every layer's `query_key_value`, `dense`, `dense_h_to_4h` and
//! `dense_4h_to_h`; the word embeddings and the output layer stay fp16 (`config.json` names the
//! width in `quantization_bit`):
//! - `<layer>.weight_scale`: fp16 `[out]`, `max |w| of the row / (2^(bits-1) - 1)` (7 or 127);
//! - `<layer>.weight`: int8, `q = round(w / scale)` (ties to even, computed in fp16), so
//!   `q ∈ [-7, 7]` or `[-127, 127]` and `w ≈ scale · q`. 8-bit: `[out, in]`, one value per byte.
//!   4-bit: `[out, in / 2]`, two per byte — column `2k` in the high nibble, `2k + 1` in the low
//!   nibble, each a two's-complement 4-bit value (the kernels sign-extend with `(int8)b >> 4` and
//!   `(int8)(b << 4) >> 4`);
//! - `<layer>.bias`: fp16, unchanged.
//!
//! A per-row scale is a per-block scale that happens to repeat, so a Q4_0 block of 32 weights
//! with `d = scale` (the f16 bits copied) and nibble `q + 8` dequantizes to exactly `scale · q`;
//! Q8_0 with `d = scale` and the bytes copied likewise. Rows whose width is not a multiple of 32
//! cannot be blocked; [`dequantize`] then gives the exact f32 values instead.
//!
//! `pth_int8_tensors` finds the int8 tensors of a PyTorch `.bin` file, which candle's reader
//! skips (it knows no `CharStorage`).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use half::f16;

use super::format::{QuantFormat, QK, Q4_0_BYTES, Q8_0_BYTES};
use super::matrix::{QBytes, QMatrix};

/// Suffix of THUDM's per-row scale tensor, next to `<layer>.weight`.
pub const SCALE_SUFFIX: &str = "weight_scale";

/// Bits per weight of a THUDM quantized layer, told from the stored width: `cols / 2` bytes per
/// row → 4, `cols` bytes → 8.
pub fn bits_from_shape(stored: &[usize], rows: usize, cols: usize) -> Result<u8, String> {
    match stored {
        [r, c] if *r == rows && *c == cols => Ok(8),
        [r, c] if *r == rows && cols.is_multiple_of(2) && *c == cols / 2 => Ok(4),
        _ => Err(format!(
            "int8 weight has shape {stored:?}; a THUDM quantized layer of {rows}×{cols} stores [{rows}, {cols}] (int8) or [{rows}, {}] (int4, two per byte)",
            cols / 2
        )),
    }
}

/// The signed 4-bit value of column `c` in a packed row (high nibble for even columns).
#[inline]
fn nibble(packed: &[u8], c: usize) -> i8 {
    let b = packed[c / 2] as i8;
    if c.is_multiple_of(2) {
        b >> 4
    } else {
        (b << 4) >> 4
    }
}

fn check(bits: u8, weight: &[u8], scales: &[f16], rows: usize, cols: usize) -> Result<(), String> {
    let per_row = if bits == 4 { cols / 2 } else { cols };
    if bits != 4 && bits != 8 {
        return Err(format!("quantization_bit {bits} is not supported (4 or 8)"));
    }
    if bits == 4 && !cols.is_multiple_of(2) {
        return Err(format!("an int4 row of {cols} weights cannot be packed two per byte"));
    }
    if scales.len() != rows {
        return Err(format!("weight_scale holds {} values, expected one per row ({rows})", scales.len()));
    }
    if weight.len() != rows * per_row {
        return Err(format!("weight holds {} bytes, expected {rows}×{per_row}", weight.len()));
    }
    if let Some(r) = scales.iter().position(|s| !s.to_f32().is_finite()) {
        return Err(format!("weight_scale of row {r} is not finite; the checkpoint is damaged"));
    }
    Ok(())
}

/// Builds the Q4_0 (4-bit) or Q8_0 (8-bit) matrix holding exactly `scale · q` for a THUDM layer:
/// `weight` the stored int8 bytes, `scales` the fp16 `weight_scale`, `rows × cols` the layer.
/// Needs `cols` to be a multiple of 32 (else use [`dequantize`]).
pub fn to_qmatrix(bits: u8, weight: &[u8], scales: &[f16], rows: usize, cols: usize) -> Result<QMatrix, String> {
    check(bits, weight, scales, rows, cols)?;
    if !cols.is_multiple_of(QK) {
        return Err(format!("rows of {cols} weights are not whole blocks of {QK}"));
    }
    let blocks = cols / QK;
    let (format, block_bytes) = if bits == 4 { (QuantFormat::Q4_0, Q4_0_BYTES) } else { (QuantFormat::Q8_0, Q8_0_BYTES) };
    let per_row = if bits == 4 { cols / 2 } else { cols };
    let mut out = vec![0u8; rows * blocks * block_bytes];
    for (r, (dst, src)) in out.chunks_exact_mut(blocks * block_bytes).zip(weight.chunks_exact(per_row)).enumerate() {
        let d = scales[r].to_bits().to_le_bytes();
        for (b, block) in dst.chunks_exact_mut(block_bytes).enumerate() {
            block[..2].copy_from_slice(&d);
            let first = b * QK;
            if bits == 4 {
                // ggml Q4_0: byte j holds weight j (low nibble) and weight j + 16 (high), offset 8.
                for j in 0..QK / 2 {
                    let lo = (nibble(src, first + j) + 8) as u8;
                    let hi = (nibble(src, first + j + QK / 2) + 8) as u8;
                    block[2 + j] = lo | (hi << 4);
                }
            } else {
                block[2..].copy_from_slice(&src[first..first + QK]);
            }
        }
    }
    QMatrix::from_bytes(format, rows, cols, QBytes::Owned(out)).map_err(|e| e.to_string())
}

/// The f32 weights `scale · q` of a THUDM layer, row-major `rows × cols` (exact).
pub fn dequantize(bits: u8, weight: &[u8], scales: &[f16], rows: usize, cols: usize) -> Result<Vec<f32>, String> {
    check(bits, weight, scales, rows, cols)?;
    let per_row = if bits == 4 { cols / 2 } else { cols };
    let mut out = Vec::with_capacity(rows * cols);
    for (r, src) in weight.chunks_exact(per_row).enumerate() {
        let s = scales[r].to_f32();
        for c in 0..cols {
            let q = if bits == 4 { nibble(src, c) } else { src[c] as i8 };
            out.push(s * q as f32);
        }
    }
    Ok(out)
}

/// Quantizes a row-major `rows × cols` matrix exactly as THUDM's `QuantizedLinear` does from fp16
/// weights: the values are first rounded to f16, `scale = f16(max |w| / (2^(bits-1) - 1))`,
/// `q = round_ties_even(f16(w / scale))`; 4-bit values are then packed two per byte, high
/// nibble first. Returns the int8 bytes (`[rows, cols]` or `[rows, cols / 2]`) and the scales.
/// An all-zero row gets scale 0 and zeros (THUDM's code would divide by zero there).
/// Used to write THUDM-format test checkpoints.
pub fn quantize_like_thudm(w: &[f32], rows: usize, cols: usize, bits: u8) -> (Vec<u8>, Vec<f16>) {
    let qmax = ((1i32 << (bits - 1)) - 1) as f32;
    let mut bytes = Vec::with_capacity(rows * cols);
    let mut scales = Vec::with_capacity(rows);
    for row in w.chunks_exact(cols) {
        let row: Vec<f32> = row.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = f16::from_f32(amax / qmax);
        scales.push(scale);
        let s = scale.to_f32();
        let q: Vec<i8> = row
            .iter()
            .map(|&v| if s == 0.0 { 0 } else { f16::from_f32(v / s).to_f32().round_ties_even() as i8 })
            .collect();
        if bits == 4 {
            for pair in q.chunks(2) {
                let hi = (pair[0] as u8) << 4;
                let lo = pair.get(1).map_or(0, |&v| (v as u8) & 0x0F);
                bytes.push(hi | lo);
            }
        } else {
            bytes.extend(q.iter().map(|&v| v as u8));
        }
    }
    (bytes, scales)
}

/// Where an int8 (`CharStorage`) tensor of a PyTorch zip checkpoint lives.
#[derive(Debug, Clone)]
pub struct PthInt8 {
    /// Shape.
    pub shape: Vec<usize>,
    /// The storage's entry in the zip archive.
    pub entry: String,
    /// First element within the storage.
    pub offset: usize,
}

/// The int8 tensors of a PyTorch `.bin` (zip) file, by name. Other tensors are left to candle.
pub fn pth_int8_tensors(path: &Path) -> Result<HashMap<String, PthInt8>, String> {
    use candle_core::pickle::{Object, Stack};
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .filter(|n| n.ends_with("data.pkl"))
        .collect();
    let mut found = HashMap::new();
    for pkl in names {
        let dir = pkl.trim_end_matches(".pkl").to_string();
        let entry = zip.by_name(&pkl).map_err(|e| e.to_string())?;
        let mut stack = Stack::empty();
        stack.read_loop(&mut std::io::BufReader::new(entry)).map_err(|e| e.to_string())?;
        let Ok(Object::Dict(items)) = stack.finalize() else { continue };
        for (name, value) in items {
            let Object::Unicode(name) = name else { continue };
            if let Some(info) = char_tensor(value, &dir) {
                found.insert(name, info);
            }
        }
    }
    Ok(found)
}

/// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` over a `CharStorage`,
/// possibly wrapped in `_rebuild_parameter`; `None` for anything else.
fn char_tensor(value: candle_core::pickle::Object, dir: &str) -> Option<PthInt8> {
    use candle_core::pickle::Object;
    let (mut callable, mut args) = value.reduce().ok()?;
    if let Object::Class { module_name, class_name } = &callable {
        if module_name == "torch._utils" && class_name == "_rebuild_parameter" {
            let inner = args.tuple().ok()?.into_iter().next()?;
            (callable, args) = inner.reduce().ok()?;
        }
    }
    match &callable {
        Object::Class { module_name, class_name } if module_name == "torch._utils" && class_name == "_rebuild_tensor_v2" => {}
        _ => return None,
    }
    let mut args = args.tuple().ok()?.into_iter();
    let storage = args.next()?.persistent_load().ok()?.tuple().ok()?;
    let offset = args.next()?.int_or_long().ok()? as usize;
    let shape = Vec::<usize>::try_from(args.next()?).ok()?;
    let stride = Vec::<usize>::try_from(args.next()?).ok()?;
    let class = storage.get(1)?.clone().class().ok()?;
    if class.1 != "CharStorage" {
        return None;
    }
    let key = storage.get(2)?.clone().unicode().ok()?;
    // Only plain row-major tensors (what `torch.save` writes for these weights).
    let mut want = 1;
    for (d, s) in shape.iter().zip(&stride).rev() {
        if *d > 1 && *s != want {
            return None;
        }
        want *= d;
    }
    Some(PthInt8 { shape, entry: format!("{dir}/{key}"), offset })
}

/// Reads the bytes of an int8 tensor found by [`pth_int8_tensors`].
pub fn read_pth_int8(path: &Path, info: &PthInt8) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
    let entry = zip.by_name(&info.entry).map_err(|e| format!("{}: {e}", info.entry))?;
    let len: usize = info.shape.iter().product();
    let mut bytes = Vec::with_capacity(len);
    let mut reader = entry.take((info.offset + len) as u64);
    std::io::copy(&mut (&mut reader).take(info.offset as u64), &mut std::io::sink()).map_err(|e| e.to_string())?;
    reader.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() != len {
        return Err(format!("{}: storage holds fewer than the {len} bytes the tensor needs (truncated?)", info.entry));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::testutil::random_vec;

    #[test]
    fn packing_follows_thudm_high_nibble_first_signed() {
        let w = [-7.0f32, 7.0, 1.0, -1.0];
        let (bytes, scales) = quantize_like_thudm(&w, 1, 4, 4);
        assert_eq!(scales[0].to_f32(), 1.0);
        assert_eq!(bytes, vec![0x97, 0x1F]);
        let (b8, _) = quantize_like_thudm(&w, 1, 4, 8);
        assert_eq!(b8.iter().map(|&b| b as i8).collect::<Vec<_>>(), vec![-127, 127, 18, -18]);
    }

    #[test]
    fn q4_0_and_q8_0_hold_exactly_the_thudm_values() {
        let (rows, cols) = (5, 96);
        let w = random_vec(11, rows * cols, 0.3);
        for bits in [4u8, 8] {
            let (bytes, scales) = quantize_like_thudm(&w, rows, cols, bits);
            let exact = dequantize(bits, &bytes, &scales, rows, cols).unwrap();
            let q = to_qmatrix(bits, &bytes, &scales, rows, cols).unwrap();
            assert_eq!(q.format(), if bits == 4 { QuantFormat::Q4_0 } else { QuantFormat::Q8_0 });
            assert_eq!(q.dequantize(), exact, "{bits}-bit");
            let err = w.iter().zip(&exact).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            let step = scales.iter().fold(0f32, |m, s| m.max(s.to_f32()));
            // Half a step, plus the fp16 rounding of w / scale that THUDM applies before rounding.
            assert!(err > 0.0 && err <= 0.6 * step, "{bits}-bit error {err} vs step {step}");
        }
    }

    #[test]
    fn malformed_layers_are_refused_with_reasons() {
        let (bytes, scales) = quantize_like_thudm(&random_vec(3, 4 * 64, 1.0), 4, 64, 4);
        assert!(to_qmatrix(4, &bytes, &scales[..3], 4, 64).unwrap_err().contains("one per row"));
        assert!(to_qmatrix(4, &bytes[..100], &scales, 4, 64).unwrap_err().contains("bytes"));
        assert!(to_qmatrix(4, &bytes, &scales, 4, 63).is_err());
        assert!(to_qmatrix(3, &bytes, &scales, 4, 64).unwrap_err().contains("quantization_bit"));
        let mut bad = scales.clone();
        bad[2] = f16::NAN;
        assert!(to_qmatrix(4, &bytes, &bad, 4, 64).unwrap_err().contains("row 2"));
        assert!(bits_from_shape(&[4, 40], 4, 64).is_err());
        assert_eq!(bits_from_shape(&[4, 32], 4, 64), Ok(4));
        assert_eq!(bits_from_shape(&[4, 64], 4, 64), Ok(8));
    }
}
