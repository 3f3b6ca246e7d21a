//! GGUF files of quantized weights: a streaming writer (one tensor in memory at a time) and a
//! memory-mapped reader built on candle's GGUF header parser.
//!
//! Used for the quantization cache: weights are quantized once, written here with metadata
//! (source fingerprint, quantization, engine version) and memory-mapped on later starts.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::GgmlDType;

use super::error::{QuantError, Result};
use super::format::QuantFormat;
use super::matrix::{QBytes, QMatrix};

/// Alignment of the data section and of each tensor (GGUF's default).
const ALIGN: u64 = 32;

/// The element type of a tensor in a GGUF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    /// Plain f32.
    F32,
    /// Plain f16.
    F16,
    /// Plain bf16.
    BF16,
    /// A quantized format.
    Quant(QuantFormat),
}

impl GgufType {
    fn ggml_id(self) -> u32 {
        match self {
            GgufType::F32 => 0,
            GgufType::F16 | GgufType::Quant(QuantFormat::F16) => 1,
            GgufType::BF16 => 30,
            GgufType::Quant(QuantFormat::Q4_0) => 2,
            GgufType::Quant(QuantFormat::Q8_0) => 8,
            GgufType::Quant(QuantFormat::Q4K) => 12,
        }
    }

    /// Bytes of a `[.., cols]` tensor of `elems` elements.
    fn byte_len(self, elems: usize, cols: usize) -> Result<usize> {
        Ok(match self {
            GgufType::F32 => elems * 4,
            GgufType::F16 | GgufType::BF16 => elems * 2,
            GgufType::Quant(f) => f.row_bytes(cols)? * (elems / cols.max(1)),
        })
    }
}

/// Name, shape (row-major, as PyTorch writes it) and type of one tensor to write.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Shape, outermost first (`[rows, cols]` for a weight matrix).
    pub shape: Vec<usize>,
    /// Element type.
    pub ty: GgufType,
}

/// Writes a GGUF file tensor by tensor. The file appears under its final name only after
/// [`GgufWriter::finish`] (it is written to `NAME.partial` first), so a cancelled or failed
/// write never leaves a truncated cache behind.
pub struct GgufWriter {
    out: BufWriter<File>,
    partial: PathBuf,
    path: PathBuf,
    specs: Vec<TensorSpec>,
    lens: Vec<usize>,
    next: usize,
    /// Bytes of the current tensor written so far (by [`GgufWriter::write_part`]).
    filled: usize,
    data_start: u64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> QuantError + '_ {
    move |source| QuantError::Io { path: path.display().to_string(), source }
}

fn put_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn pad(w: &mut (impl Write + Seek)) -> std::io::Result<()> {
    let pos = w.stream_position()?;
    let n = pos.div_ceil(ALIGN) * ALIGN - pos;
    w.write_all(&vec![0u8; n as usize])
}

impl GgufWriter {
    /// Starts `path` with string metadata and the list of tensors that will follow, in order.
    pub fn create(path: &Path, metadata: &[(&str, &str)], specs: Vec<TensorSpec>) -> Result<GgufWriter> {
        let mut lens = Vec::with_capacity(specs.len());
        for s in &specs {
            let elems: usize = s.shape.iter().product();
            lens.push(s.ty.byte_len(elems, s.shape.last().copied().unwrap_or(1))?);
        }
        let partial = path.with_extension("partial");
        let mut out = BufWriter::new(File::create(&partial).map_err(io(&partial))?);
        let header = (|| -> std::io::Result<u64> {
            out.write_all(b"GGUF")?;
            out.write_all(&3u32.to_le_bytes())?;
            out.write_all(&(specs.len() as u64).to_le_bytes())?;
            out.write_all(&(metadata.len() as u64).to_le_bytes())?;
            for (k, v) in metadata {
                put_str(&mut out, k)?;
                out.write_all(&8u32.to_le_bytes())?; // string
                put_str(&mut out, v)?;
            }
            let mut offset = 0u64;
            for (s, len) in specs.iter().zip(&lens) {
                put_str(&mut out, &s.name)?;
                out.write_all(&(s.shape.len() as u32).to_le_bytes())?;
                for d in s.shape.iter().rev() {
                    out.write_all(&(*d as u64).to_le_bytes())?;
                }
                out.write_all(&s.ty.ggml_id().to_le_bytes())?;
                out.write_all(&offset.to_le_bytes())?;
                offset = (offset + *len as u64).div_ceil(ALIGN) * ALIGN;
            }
            pad(&mut out)?;
            out.stream_position()
        })()
        .map_err(io(&partial))?;
        Ok(GgufWriter { out, partial, path: path.to_path_buf(), specs, lens, next: 0, filled: 0, data_start: header })
    }

    /// Name of the next tensor expected, if any.
    pub fn next_name(&self) -> Option<&str> {
        self.specs.get(self.next).map(|s| s.name.as_str())
    }

    /// Writes the next tensor's bytes (quantized blocks, or little-endian f32/f16 values).
    pub fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let expected = self.lens.get(self.next).copied().unwrap_or(0);
        if self.filled != 0 || bytes.len() != expected {
            return Err(self.unexpected(name, bytes.len()));
        }
        self.write_part(name, bytes)
    }

    /// Writes the next piece of the current tensor's bytes; the tensor is complete (and the next
    /// one starts) once its whole length has been written. Lets a large tensor be converted and
    /// written a few rows at a time.
    pub fn write_part(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let fits = self.specs.get(self.next).is_some_and(|s| s.name == name) && self.filled + bytes.len() <= self.lens[self.next];
        if !fits {
            return Err(self.unexpected(name, bytes.len()));
        }
        let err = io(&self.partial);
        self.out.write_all(bytes).map_err(&err)?;
        self.filled += bytes.len();
        if self.filled == self.lens[self.next] {
            pad(&mut self.out).map_err(&err)?;
            self.next += 1;
            self.filled = 0;
        }
        Ok(())
    }

    fn unexpected(&self, name: &str, len: usize) -> QuantError {
        let reason = match self.specs.get(self.next) {
            Some(spec) => format!(
                "expected tensor {} of {} bytes ({} written), got {name} of {len}",
                spec.name, self.lens[self.next], self.filled
            ),
            None => format!("tensor {name} was not announced"),
        };
        QuantError::BadFile { path: self.partial.display().to_string(), reason }
    }

    /// Checks every tensor was written, flushes and moves the file to its final name.
    pub fn finish(mut self) -> Result<()> {
        if self.next != self.specs.len() {
            return Err(QuantError::BadFile {
                path: self.partial.display().to_string(),
                reason: format!("only {} of {} tensors written", self.next, self.specs.len()),
            });
        }
        let err = io(&self.partial);
        let done = self
            .out
            .flush()
            .and_then(|_| self.out.get_ref().sync_all())
            .map_err(&err)
            .and_then(|_| std::fs::rename(&self.partial, &self.path).map_err(io(&self.path)));
        if done.is_err() {
            let _ = std::fs::remove_file(&self.partial);
        }
        let _ = self.data_start;
        done
    }

    /// Abandons the file (removes the partial file).
    pub fn abandon(self) {
        let partial = self.partial.clone();
        drop(self);
        let _ = std::fs::remove_file(partial);
    }
}

/// One tensor of a memory-mapped GGUF file.
#[derive(Debug, Clone)]
pub enum GgufTensor {
    /// A quantized matrix whose bytes stay in the mapping.
    Quant(QMatrix),
    /// A plain f32/f16 tensor: shape, type and its bytes in the mapping.
    Plain {
        /// Shape, outermost first.
        shape: Vec<usize>,
        /// F32 or F16.
        ty: GgufType,
        /// The bytes.
        data: QBytes,
    },
    /// A ggml block type without our kernels (Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, Q6_K, Q8_K):
    /// its bytes in the mapping, dequantized by candle when used.
    Foreign {
        /// Shape, outermost first.
        shape: Vec<usize>,
        /// The ggml type.
        dtype: GgmlDType,
        /// The bytes.
        data: QBytes,
    },
}

impl GgufTensor {
    /// Converts a plain tensor to a candle tensor (copies); quantized ones are dequantized.
    /// Types without our kernels are dequantized by candle.
    pub fn to_tensor(&self, device: &candle_core::Device) -> Result<candle_core::Tensor> {
        match self {
            GgufTensor::Quant(m) => m.dequantize_tensor(device),
            GgufTensor::Plain { shape, ty, data } => {
                let dt = match ty {
                    GgufType::F16 => candle_core::DType::F16,
                    GgufType::BF16 => candle_core::DType::BF16,
                    _ => candle_core::DType::F32,
                };
                Ok(candle_core::Tensor::from_raw_buffer(data.as_slice(), dt, shape, device)?)
            }
            GgufTensor::Foreign { shape, dtype, data } => {
                let q = candle_core::quantized::ggml_file::qtensor_from_ggml(*dtype, data.as_slice(), shape.clone(), &candle_core::Device::Cpu)?;
                Ok(q.dequantize(device)?)
            }
        }
    }
}

impl GgufTensor {
    /// Shape, outermost first.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            GgufTensor::Quant(m) => vec![m.rows(), m.cols()],
            GgufTensor::Plain { shape, .. } | GgufTensor::Foreign { shape, .. } => shape.clone(),
        }
    }
}

/// A GGUF file mapped into memory: its string metadata and tensors.
pub struct GgufFile {
    /// String-valued metadata (other value types are left out).
    pub metadata: HashMap<String, String>,
    /// Tensors by name.
    pub tensors: HashMap<String, GgufTensor>,
}

/// Maps `path` and describes its tensors without copying their data.
pub fn open(path: &Path) -> Result<GgufFile> {
    let err = io(path);
    let mut f = File::open(path).map_err(&err)?;
    let bad = |reason: String| QuantError::BadFile { path: path.display().to_string(), reason };
    let content = gguf_file::Content::read(&mut f).map_err(|e| bad(format!("not a readable GGUF file ({e})")))?;
    // SAFETY: the mapping is read-only and private to this process; the cache files are written
    // to a `.partial` name and renamed into place, never modified in place, so the bytes behind
    // the mapping do not change while it lives.
    let map = Arc::new(unsafe { memmap2::Mmap::map(&f) }.map_err(&err)?);
    let mut metadata = HashMap::new();
    for (k, v) in &content.metadata {
        if let Value::String(s) = v {
            metadata.insert(k.clone(), s.clone());
        }
    }
    let mut tensors = HashMap::new();
    for (name, info) in &content.tensor_infos {
        let shape = info.shape.dims().to_vec();
        let elems: usize = shape.iter().product();
        let cols = shape.last().copied().unwrap_or(1);
        let ty = match info.ggml_dtype {
            GgmlDType::F32 => GgufType::F32,
            GgmlDType::F16 => GgufType::F16,
            GgmlDType::BF16 => GgufType::BF16,
            d => match QuantFormat::from_ggml_dtype(d) {
                Some(f) => GgufType::Quant(f),
                None => {
                    let len = elems / d.block_size() * d.type_size();
                    let start = (content.tensor_data_offset + info.offset) as usize;
                    if !elems.is_multiple_of(d.block_size()) || start + len > map.len() {
                        return Err(bad(format!("tensor {name} ({d:?}) runs past the end of the file or is not whole blocks")));
                    }
                    let data = QBytes::Mapped { map: map.clone(), start, len };
                    tensors.insert(name.clone(), GgufTensor::Foreign { shape, dtype: d, data });
                    continue;
                }
            },
        };
        let len = ty.byte_len(elems, cols)?;
        let start = (content.tensor_data_offset + info.offset) as usize;
        if start + len > map.len() {
            return Err(bad(format!("tensor {name} runs past the end of the file (truncated?)")));
        }
        let data = QBytes::Mapped { map: map.clone(), start, len };
        let t = match ty {
            GgufType::Quant(format) => GgufTensor::Quant(QMatrix::from_bytes(format, elems / cols, cols, data)?),
            _ => GgufTensor::Plain { shape, ty, data },
        };
        tensors.insert(name.clone(), t);
    }
    Ok(GgufFile { metadata, tensors })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::testutil::random_vec;

    #[test]
    fn written_files_read_back_here_and_in_candle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.gguf");
        let w = random_vec(5, 8 * 256, 1.0);
        let q = QMatrix::quantize(&w, 8, 256, QuantFormat::Q4_0).unwrap();
        let norm: Vec<u8> = random_vec(6, 7, 1.0).iter().flat_map(|v| v.to_le_bytes()).collect();
        let specs = vec![
            TensorSpec { name: "a.weight".into(), shape: vec![8, 256], ty: GgufType::Quant(QuantFormat::Q4_0) },
            TensorSpec { name: "n.weight".into(), shape: vec![7], ty: GgufType::F32 },
        ];
        let mut gw = GgufWriter::create(&path, &[("doctorglm.quantization", "Q4_0")], specs).unwrap();
        assert!(gw.write_tensor("n.weight", &norm).is_err(), "out of order");
        gw.write_tensor("a.weight", &q.bytes()).unwrap();
        gw.write_tensor("n.weight", &norm).unwrap();
        gw.finish().unwrap();
        assert!(!path.with_extension("partial").exists());

        let g = open(&path).unwrap();
        assert_eq!(g.metadata["doctorglm.quantization"], "Q4_0");
        let GgufTensor::Quant(m) = &g.tensors["a.weight"] else { panic!("not quantized") };
        assert_eq!((m.rows(), m.cols()), (8, 256));
        assert_eq!(m.bytes(), q.bytes());
        let n = g.tensors["n.weight"].to_tensor(&candle_core::Device::Cpu).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(n, random_vec(6, 7, 1.0));

        // candle reads the same file.
        let mut f = File::open(&path).unwrap();
        let c = gguf_file::Content::read(&mut f).unwrap();
        let t = c.tensor(&mut f, "a.weight", &candle_core::Device::Cpu).unwrap();
        assert_eq!(t.shape().dims(), &[8, 256]);
        assert_eq!(t.dequantize(&candle_core::Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), q.dequantize());
    }

    #[test]
    fn truncated_and_unfinished_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        let specs = vec![TensorSpec { name: "x".into(), shape: vec![64], ty: GgufType::F32 }];
        let gw = GgufWriter::create(&path, &[], specs.clone()).unwrap();
        assert!(gw.finish().is_err());
        let mut gw = GgufWriter::create(&path, &[], specs).unwrap();
        gw.write_tensor("x", &[0u8; 256]).unwrap();
        gw.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        assert!(matches!(open(&path), Err(QuantError::BadFile { .. })));
        std::fs::write(&path, b"not a gguf").unwrap();
        assert!(matches!(open(&path), Err(QuantError::BadFile { .. })));
    }
}
