//! Weight files of a Hugging Face folder: safetensors (memory-mapped) or PyTorch `.bin`
//! (zip pickle), single or sharded with `*.index.json`. Every tensor is checked for presence
//! and shape, and errors name the tensor and the file.
use crate::error::{ModelError, Result};
use candle_core::pickle::PthTensors;
use candle_core::safetensors::MmapedSafetensors;
use crate::quant::gguf::GgufTensor;
use crate::quant::thudm_int4::{self, PthInt8};
use crate::quant::QMatrix;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

enum Backend {
    Safetensors(MmapedSafetensors),
    Pth(PthTensors),
    /// A llama.cpp GGUF file, its tensors renamed to the checkpoint names (`quant::gguf_import`).
    Gguf(HashMap<String, GgufTensor>),
}

struct WeightFile {
    path: PathBuf,
    backend: Backend,
    /// Byte ranges of a safetensors file's tensors, read from its header on first use.
    raw: std::sync::OnceLock<std::result::Result<HashMap<String, RawTensor>, String>>,
    /// Int8 tensors of a PyTorch file (THUDM int4/int8 weights), which candle's reader skips.
    int8: HashMap<String, PthInt8>,
}

/// Where a safetensors tensor's bytes are in its file.
#[derive(Debug, Clone)]
struct RawTensor {
    dtype: DType,
    start: u64,
    len: u64,
}

/// Reads a tensor's rows as f32, a few at a time, without holding the whole tensor (safetensors
/// files are read with positioned reads, so the mapping's pages never count as this process's
/// memory); PyTorch `.bin` tensors are read whole once, then converted row by row.
pub struct RowReader {
    rows: usize,
    cols: usize,
    source: RowSource,
}

enum RowSource {
    File { file: std::fs::File, path: PathBuf, name: String, dtype: DType, start: u64, buf: Vec<u8> },
    Tensor(Tensor),
}

impl RowReader {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows `first..first + n` as row-major f32 values in `out` (replacing its contents).
    pub fn read(&mut self, first: usize, n: usize, out: &mut Vec<f32>) -> Result<()> {
        let cols = self.cols;
        if first + n > self.rows {
            return Err(ModelError::Input(format!("rows {first}..{} of a tensor of {} rows", first + n, self.rows)));
        }
        out.clear();
        out.resize(n * cols, 0.0);
        match &mut self.source {
            RowSource::Tensor(t) => {
                let part = t.narrow(0, first, n)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                out.copy_from_slice(&part);
            }
            RowSource::File { file, path, name, dtype, start, buf } => {
                use std::io::{Read, Seek, SeekFrom};
                let size = dtype.size_in_bytes();
                buf.resize(n * cols * size, 0);
                let io = |source| ModelError::Io { path: path.clone(), source };
                file.seek(SeekFrom::Start(*start + (first * cols * size) as u64)).map_err(io)?;
                file.read_exact(buf).map_err(|e| ModelError::BadTensor {
                    name: name.clone(),
                    file: path.clone(),
                    reason: format!("reading its bytes failed ({e}); the file may be truncated"),
                })?;
                convert_to_f32(*dtype, buf, out);
            }
        }
        Ok(())
    }
}

/// Little-endian f16 / bf16 / f32 bytes to f32 values.
fn convert_to_f32(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    use rayon::prelude::*;
    const PAR: usize = 1 << 16;
    match dtype {
        DType::F16 => out.par_chunks_mut(PAR).zip(bytes.par_chunks(2 * PAR)).for_each(|(o, b)| {
            for (o, b) in o.iter_mut().zip(b.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }),
        DType::BF16 => out.par_chunks_mut(PAR).zip(bytes.par_chunks(2 * PAR)).for_each(|(o, b)| {
            for (o, b) in o.iter_mut().zip(b.chunks_exact(2)) {
                *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }),
        _ => out.par_chunks_mut(PAR).zip(bytes.par_chunks(4 * PAR)).for_each(|(o, b)| {
            for (o, b) in o.iter_mut().zip(b.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }),
    }
}

/// The tensors of a model folder, opened lazily per tensor.
pub struct WeightStore {
    files: Vec<WeightFile>,
    /// Tensor name → index into `files`.
    routing: HashMap<String, usize>,
    dir: PathBuf,
}

const SAFETENSORS_INDEX: &str = "model.safetensors.index.json";
const PTH_INDEX: &str = "pytorch_model.bin.index.json";

impl WeightStore {
    /// Opens the weights of a folder: a sharded index if present, else a single file.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let candidates = [
            (SAFETENSORS_INDEX, true),
            ("model.safetensors", false),
            (PTH_INDEX, true),
            ("pytorch_model.bin", false),
        ];
        for (name, is_index) in candidates {
            let path = dir.join(name);
            if path.is_file() {
                return if is_index { Self::open_index(&path) } else { Self::open_files(dir, &[path]) };
            }
        }
        Err(ModelError::NoWeights { dir: dir.to_path_buf() })
    }

    /// Opens the shards named by a `*.index.json` and routes tensors as its `weight_map` says.
    pub fn open_index(index: &Path) -> Result<Self> {
        let bad = |reason: String| ModelError::Index { path: index.to_path_buf(), reason };
        let text = std::fs::read_to_string(index)
            .map_err(|source| ModelError::Io { path: index.to_path_buf(), source })?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("no `weight_map` object".into()))?;
        let dir = index.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut shard_names: Vec<String> = Vec::new();
        let mut wanted: Vec<(String, String)> = Vec::new();
        for (tensor, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| bad(format!("the file of {tensor} is not a string")))?;
            if file.contains('/') || file.contains('\\') || file.contains("..") {
                return Err(bad(format!("shard name {file:?} leaves the folder")));
            }
            if !shard_names.iter().any(|s| s == file) {
                shard_names.push(file.to_string());
            }
            wanted.push((tensor.clone(), file.to_string()));
        }
        let paths: Vec<PathBuf> = shard_names.iter().map(|s| dir.join(s)).collect();
        let mut store = Self::open_files(&dir, &paths)?;
        // The index is authoritative: a tensor it places in a shard must be in that shard.
        for (tensor, file) in wanted {
            let idx = shard_names.iter().position(|s| *s == file).unwrap_or(0);
            if store.has_in_file(&tensor, idx) {
                store.routing.insert(tensor, idx);
            } else {
                return Err(ModelError::MissingTensor { name: tensor, file: dir.join(file) });
            }
        }
        Ok(store)
    }

    /// Opens the given weight files (safetensors or PyTorch) and routes every tensor they hold.
    pub fn open_files(dir: &Path, paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        let mut routing = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let file = open_file(path)?;
            for name in file.names() {
                routing.insert(name, i);
            }
            files.push(file);
        }
        Ok(Self { files, routing, dir: dir.to_path_buf() })
    }

    /// A store over tensors already read from one file (a GGUF file, renamed to checkpoint names).
    pub fn from_gguf_tensors(path: &Path, tensors: HashMap<String, GgufTensor>) -> Self {
        let routing = tensors.keys().map(|n| (n.clone(), 0)).collect();
        let file = WeightFile { path: path.to_path_buf(), backend: Backend::Gguf(tensors), raw: Default::default(), int8: HashMap::new() };
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Self { files: vec![file], routing, dir }
    }

    /// The bytes of a tensor stored as int8 (safetensors `I8`, PyTorch `CharStorage`), or `None`
    /// when it is stored in another type.
    pub fn int8_bytes(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let Some(&idx) = self.routing.get(name) else {
            return Err(ModelError::MissingTensor { name: name.to_string(), file: self.dir.clone() });
        };
        let file = &self.files[idx];
        let bad = |reason: String| ModelError::BadTensor { name: name.to_string(), file: file.path.clone(), reason };
        if let Some(info) = file.int8.get(name) {
            return thudm_int4::read_pth_int8(&file.path, info).map(Some).map_err(bad);
        }
        match &file.backend {
            Backend::Safetensors(st) => {
                let view = st.get(name).map_err(|e| bad(e.to_string()))?;
                Ok((format!("{:?}", view.dtype()) == "I8").then(|| view.data().to_vec()))
            }
            _ => Ok(None),
        }
    }

    /// Whether a tensor is a GGUF block-format tensor (not a plain float one).
    pub fn is_gguf_block(&self, name: &str) -> bool {
        let Some(&idx) = self.routing.get(name) else { return false };
        matches!(&self.files[idx].backend, Backend::Gguf(t) if matches!(t.get(name), Some(GgufTensor::Quant(_) | GgufTensor::Foreign { .. })))
    }

    /// A matrix stored quantized in a GGUF file: our block formats as they are (memory-mapped);
    /// other ggml block types (Q6_K, Q5_K, …) dequantized by candle and requantized to Q8_0
    /// (when rows are whole 32-weight blocks; else `None` and the caller loads f32).
    pub fn stored_qmatrix(&self, name: &str) -> Result<Option<QMatrix>> {
        let Some(&idx) = self.routing.get(name) else { return Ok(None) };
        let file = &self.files[idx];
        let Backend::Gguf(t) = &file.backend else { return Ok(None) };
        match t.get(name) {
            Some(GgufTensor::Quant(q)) => Ok(Some(q.clone())),
            Some(g @ GgufTensor::Foreign { shape, dtype, .. }) if shape.len() == 2 && shape[1] % 32 == 0 => {
                tracing::info!("{name}: {dtype:?} has no kernel here; requantized to Q8_0");
                let bad = |reason: String| ModelError::BadTensor { name: name.to_string(), file: file.path.clone(), reason };
                let w = g.to_tensor(&Device::Cpu).map_err(|e| bad(e.to_string()))?;
                let q = QMatrix::quantize_tensor(&w, crate::quant::QuantFormat::Q8_0).map_err(|e| bad(e.to_string()))?;
                Ok(Some(q))
            }
            _ => Ok(None),
        }
    }

    fn has_in_file(&self, name: &str, idx: usize) -> bool {
        self.files.get(idx).is_some_and(|f| f.contains(name))
    }

    /// Whether a tensor of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.routing.contains_key(name)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.routing.len()
    }

    /// Whether the folder holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.routing.is_empty()
    }

    /// Names of every tensor.
    pub fn names(&self) -> Vec<String> {
        self.routing.keys().cloned().collect()
    }

    /// The file holding a tensor (or the folder when no file holds it).
    pub fn file_of(&self, name: &str) -> PathBuf {
        match self.routing.get(name) {
            Some(&i) => self.files[i].path.clone(),
            None => self.dir.clone(),
        }
    }

    /// Shape of a stored tensor.
    pub fn shape_of(&self, name: &str) -> Result<Vec<usize>> {
        let idx = *self.routing.get(name).ok_or_else(|| ModelError::MissingTensor {
            name: name.to_string(),
            file: self.dir.clone(),
        })?;
        self.files[idx].shape(name)
    }

    /// An error naming the tensor and its file unless it is stored with exactly `shape`.
    fn check_shape(&self, name: &str, shape: &[usize]) -> Result<()> {
        let found = self.shape_of(name)?;
        if found != shape {
            return Err(ModelError::ShapeMismatch {
                name: name.to_string(),
                file: self.file_of(name),
                expected: shape.to_vec(),
                found,
            });
        }
        Ok(())
    }

    /// Loads a tensor of the given shape, converted to `dtype`, onto `device`.
    pub fn get(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        self.check_shape(name, shape)?;
        self.get_any_shape(name, dtype, device)
    }

    /// The dtype a tensor is stored in.
    pub fn dtype_of(&self, name: &str) -> Result<DType> {
        let idx = *self.routing.get(name).ok_or_else(|| ModelError::MissingTensor {
            name: name.to_string(),
            file: self.dir.clone(),
        })?;
        let file = &self.files[idx];
        match &file.backend {
            Backend::Safetensors(_) => {
                let raw = file.raw.get_or_init(|| safetensors_ranges(&file.path));
                let raw = raw.as_ref().map_err(|reason| ModelError::BadWeightFile { path: file.path.clone(), reason: reason.clone() })?;
                Ok(raw.get(name).map_or(DType::F32, |r| r.dtype))
            }
            Backend::Pth(pth) => Ok(pth
                .tensor_infos()
                .get(name)
                .map(|i| i.dtype)
                .unwrap_or(DType::F32)),
            Backend::Gguf(t) => Ok(match t.get(name) {
                Some(GgufTensor::Plain { ty: crate::quant::gguf::GgufType::F16, .. }) => DType::F16,
                Some(GgufTensor::Plain { ty: crate::quant::gguf::GgufType::BF16, .. }) => DType::BF16,
                _ => DType::F32,
            }),
        }
    }

    /// A reader of the rows of a 2-D tensor of the given shape (checked), for converting a large
    /// tensor a few rows at a time.
    pub fn rows(&self, name: &str, shape: [usize; 2]) -> Result<RowReader> {
        self.check_shape(name, &shape)?;
        let [rows, cols] = shape;
        let idx = self.routing[name];
        let file = &self.files[idx];
        if let Backend::Safetensors(_) = file.backend {
            let raw = file.raw.get_or_init(|| safetensors_ranges(&file.path));
            let raw = raw.as_ref().map_err(|reason| ModelError::BadWeightFile { path: file.path.clone(), reason: reason.clone() })?;
            if let Some(r) = raw.get(name).filter(|r| matches!(r.dtype, DType::F16 | DType::BF16 | DType::F32)) {
                if r.len != (rows * cols * r.dtype.size_in_bytes()) as u64 {
                    return Err(ModelError::BadTensor {
                        name: name.to_string(),
                        file: file.path.clone(),
                        reason: format!("{} bytes for a {rows}×{cols} tensor of {:?}", r.len, r.dtype),
                    });
                }
                let f = std::fs::File::open(&file.path).map_err(|source| ModelError::Io { path: file.path.clone(), source })?;
                let source = RowSource::File {
                    file: f,
                    path: file.path.clone(),
                    name: name.to_string(),
                    dtype: r.dtype,
                    start: r.start,
                    buf: Vec::new(),
                };
                return Ok(RowReader { rows, cols, source });
            }
        }
        let keep = match self.dtype_of(name)? {
            d @ (DType::F16 | DType::BF16) => d,
            _ => DType::F32,
        };
        let t = self.get_any_shape(name, keep, &Device::Cpu)?;
        Ok(RowReader { rows, cols, source: RowSource::Tensor(t) })
    }

    /// Loads a tensor whatever its shape, converted to `dtype`, onto `device`.
    pub fn get_any_shape(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let idx = *self.routing.get(name).ok_or_else(|| ModelError::MissingTensor {
            name: name.to_string(),
            file: self.dir.clone(),
        })?;
        let file = &self.files[idx];
        let bad = |reason: String| ModelError::BadTensor {
            name: name.to_string(),
            file: file.path.clone(),
            reason,
        };
        if let Some(info) = file.int8.get(name) {
            let bytes = thudm_int4::read_pth_int8(&file.path, info).map_err(bad)?;
            let values: Vec<f32> = bytes.iter().map(|&b| b as i8 as f32).collect();
            return Ok(Tensor::from_vec(values, info.shape.as_slice(), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)?);
        }
        let tensor = match &file.backend {
            Backend::Gguf(t) => match t.get(name) {
                Some(g) => g.to_tensor(&Device::Cpu).map_err(|e| bad(e.to_string()))?,
                None => return Err(ModelError::MissingTensor { name: name.to_string(), file: file.path.clone() }),
            },
            Backend::Safetensors(st) => st.load(name, &Device::Cpu).map_err(|e| bad(e.to_string()))?,
            Backend::Pth(pth) => pth
                .get(name)
                .map_err(|e| bad(e.to_string()))?
                .ok_or_else(|| ModelError::MissingTensor { name: name.to_string(), file: file.path.clone() })?,
        };
        Ok(tensor.to_dtype(dtype)?.to_device(device)?)
    }
}

impl WeightFile {
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = match &self.backend {
            Backend::Safetensors(st) => st.tensors().into_iter().map(|(n, _)| n).collect(),
            Backend::Pth(pth) => pth.tensor_infos().keys().cloned().collect(),
            Backend::Gguf(t) => t.keys().cloned().collect(),
        };
        names.extend(self.int8.keys().cloned());
        names
    }

    fn contains(&self, name: &str) -> bool {
        if self.int8.contains_key(name) {
            return true;
        }
        match &self.backend {
            Backend::Gguf(t) => t.contains_key(name),
            Backend::Safetensors(st) => st.get(name).is_ok(),
            Backend::Pth(pth) => pth.tensor_infos().contains_key(name),
        }
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let missing = || ModelError::MissingTensor { name: name.to_string(), file: self.path.clone() };
        if let Some(info) = self.int8.get(name) {
            return Ok(info.shape.clone());
        }
        match &self.backend {
            Backend::Gguf(t) => Ok(t.get(name).ok_or_else(missing)?.shape()),
            Backend::Safetensors(st) => Ok(st.get(name).map_err(|_| missing())?.shape().to_vec()),
            Backend::Pth(pth) => {
                Ok(pth.tensor_infos().get(name).ok_or_else(missing)?.layout.dims().to_vec())
            }
        }
    }
}

fn open_file(path: &Path) -> Result<WeightFile> {
    if !path.is_file() {
        return Err(ModelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    let bad = |reason: String| ModelError::BadWeightFile { path: path.to_path_buf(), reason };
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    // The parsers come from candle; a damaged file must give an error, never a panic.
    let opened = std::panic::catch_unwind(|| {
        if is_safetensors {
            // SAFETY: the mapping is read-only; weight files are not modified while a model is loaded.
            unsafe { MmapedSafetensors::new(path) }.map(Backend::Safetensors)
        } else {
            PthTensors::new(path, None).map(Backend::Pth)
        }
    });
    let backend = match opened {
        Ok(Ok(backend)) => backend,
        Ok(Err(e)) => return Err(bad(e.to_string())),
        Err(_) => return Err(bad("the file could not be parsed".into())),
    };
    let int8 = match &backend {
        Backend::Pth(_) => thudm_int4::pth_int8_tensors(path).unwrap_or_else(|e| {
            tracing::warn!("{}: int8 tensors not read: {e}", path.display());
            HashMap::new()
        }),
        _ => HashMap::new(),
    };
    Ok(WeightFile { path: path.to_path_buf(), backend, raw: Default::default(), int8 })
}

/// Reads a safetensors header: each tensor's dtype and absolute byte range in the file.
fn safetensors_ranges(path: &Path) -> std::result::Result<HashMap<String, RawTensor>, String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let file_len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| format!("no safetensors header ({e})"))?;
    let n = u64::from_le_bytes(len);
    if n > file_len.saturating_sub(8) || n > 100 << 20 {
        return Err(format!("safetensors header of {n} bytes does not fit the file"));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| format!("truncated safetensors header ({e})"))?;
    let json: serde_json::Value = serde_json::from_slice(&header).map_err(|e| format!("safetensors header is not JSON ({e})"))?;
    let obj = json.as_object().ok_or("safetensors header is not a JSON object")?;
    let base = 8 + n;
    let mut out = HashMap::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dtype = match v.get("dtype").and_then(|d| d.as_str()) {
            Some("F16") => DType::F16,
            Some("BF16") => DType::BF16,
            Some("F32") => DType::F32,
            _ => DType::F64, // another dtype: read through candle instead
        };
        let offsets = v
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)))
            .ok_or_else(|| format!("tensor {name} has no data_offsets"))?;
        if offsets.1 < offsets.0 || base + offsets.1 > file_len {
            return Err(format!("tensor {name} lies outside the file (truncated?)"));
        }
        out.insert(name.clone(), RawTensor { dtype, start: base + offsets.0, len: offsets.1 - offsets.0 });
    }
    Ok(out)
}
