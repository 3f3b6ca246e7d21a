//! Weight files of a Hugging Face folder: safetensors (memory-mapped) or PyTorch `.bin`
//! (zip pickle), single or sharded with `*.index.json`. Every tensor is checked for presence
//! and shape, and errors name the tensor and the file.
use crate::error::{ModelError, Result};
use candle_core::pickle::PthTensors;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

enum Backend {
    Safetensors(MmapedSafetensors),
    Pth(PthTensors),
}

struct WeightFile {
    path: PathBuf,
    backend: Backend,
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

    /// Loads a tensor of the given shape, converted to `dtype`, onto `device`.
    pub fn get(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let found = self.shape_of(name)?;
        if found != shape {
            return Err(ModelError::ShapeMismatch {
                name: name.to_string(),
                file: self.file_of(name),
                expected: shape.to_vec(),
                found,
            });
        }
        self.get_any_shape(name, dtype, device)
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
        let tensor = match &file.backend {
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
        match &self.backend {
            Backend::Safetensors(st) => st.tensors().into_iter().map(|(n, _)| n).collect(),
            Backend::Pth(pth) => pth.tensor_infos().keys().cloned().collect(),
        }
    }

    fn contains(&self, name: &str) -> bool {
        match &self.backend {
            Backend::Safetensors(st) => st.get(name).is_ok(),
            Backend::Pth(pth) => pth.tensor_infos().contains_key(name),
        }
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let missing = || ModelError::MissingTensor { name: name.to_string(), file: self.path.clone() };
        match &self.backend {
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
    Ok(WeightFile { path: path.to_path_buf(), backend })
}
