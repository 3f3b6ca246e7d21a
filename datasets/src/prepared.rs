//! The prepared dataset: `train.jsonl`, `validation.jsonl` (one [`Dialogue`] per line) and
//! `manifest.json` (sources with hashes, counts, settings, de-identification and cleaning
//! reports, token histograms); and [`prepare`], the whole pipeline from files to that dataset.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clean::{self, CleanReport, CleanSettings, TokenCounter, TokenHistograms};
use crate::deid::{DeidReport, Deidentifier, PiiKind};
use crate::encoding::TextEncoding;
use crate::error::{DatasetError, Result};
use crate::import::{self, FileFormat, Mapping, ReadOptions, RowIssue};
use crate::progress::Control;
use crate::record::Dialogue;

/// Version of the on-disk layout.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the training file.
pub const TRAIN_FILE: &str = "train.jsonl";
/// Name of the validation file.
pub const VALIDATION_FILE: &str = "validation.jsonl";
/// Name of the manifest.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One source file, identified by name (never a full path) and content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// File name.
    pub name: String,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Format read.
    pub format: FileFormat,
    /// Text encoding, for text formats.
    pub encoding: Option<TextEncoding>,
    /// The mapping used.
    pub mapping: Mapping,
    /// Records in the file.
    pub records: usize,
    /// Dialogues imported.
    pub imported: usize,
    /// Records rejected (each listed in `rejected`, up to 1,000).
    pub rejected_count: usize,
    /// Rejected records with line/row and reason.
    pub rejected: Vec<RowIssue>,
}

/// What de-identification did, without the examples (they hold fragments of personal data).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeidSummary {
    /// Whether de-identification ran.
    pub applied: bool,
    /// Replacements by kind.
    pub counts: BTreeMap<PiiKind, usize>,
    /// Dialogues changed.
    pub dialogues_changed: usize,
}

/// Everything about how the dataset was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Source files.
    pub sources: Vec<SourceFile>,
    /// Cleaning settings.
    pub settings: CleanSettings,
    /// De-identification summary.
    pub deid: DeidSummary,
    /// Cleaning report.
    pub cleaning: CleanReport,
    /// Dialogues in `train.jsonl`.
    pub train: usize,
    /// Dialogues in `validation.jsonl`.
    pub validation: usize,
    /// Token-length histograms of train + validation.
    pub histograms: TokenHistograms,
}

/// A dataset ready for training.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedDataset {
    /// How it was made.
    pub manifest: Manifest,
    /// Training dialogues.
    pub train: Vec<Dialogue>,
    /// Validation dialogues.
    pub validation: Vec<Dialogue>,
}

/// Settings of the whole pipeline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PrepareSettings {
    /// How files are read.
    pub read: ReadOptions,
    /// Cleaning and split.
    pub clean: CleanSettings,
    /// Skip de-identification (only for data that is already anonymous; the manifest records it).
    pub skip_deid: bool,
}

/// SHA-256 (hex) and size of a file.
pub fn file_sha256(path: &Path) -> Result<(String, u64)> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Read { path: path.to_path_buf(), source })?;
    let hex = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, bytes.len() as u64))
}

/// Imports every source, de-identifies, cleans and splits; returns the dataset and the full
/// de-identification report (with examples for review; the manifest keeps only counts).
pub fn prepare(
    sources: &[(PathBuf, Option<Mapping>)],
    settings: &PrepareSettings,
    tokens: Option<TokenCounter<'_>>,
    control: &mut Control<'_>,
) -> Result<(PreparedDataset, DeidReport)> {
    let mut files = Vec::new();
    let mut dialogues = Vec::new();
    for (path, mapping) in sources {
        let table = import::read_file(path, &settings.read, control)?;
        let mapping = match mapping {
            Some(m) => m.clone(),
            None => {
                let sample = &table.records[..table.records.len().min(50)];
                import::mapping::suggest(&table.columns, sample)
                    .ok_or_else(|| {
                        DatasetError::Mapping(format!("{}: no question and answer columns were recognised; choose them", path.display()))
                    })?
                    .1
            }
        };
        let outcome = import::import_table(&table, &mapping, control)?;
        let (sha256, bytes) = file_sha256(path)?;
        files.push(SourceFile {
            name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            sha256,
            bytes,
            format: outcome.format,
            encoding: outcome.encoding,
            mapping,
            records: outcome.records,
            imported: outcome.dialogues.len(),
            rejected_count: outcome.rejected.len(),
            rejected: outcome.rejected.into_iter().take(1000).collect(),
        });
        dialogues.extend(outcome.dialogues);
    }
    let report = if settings.skip_deid {
        DeidReport::default()
    } else {
        Deidentifier::new().dialogues(&mut dialogues, control)?
    };
    let (kept, cleaning) = clean::clean(dialogues, &settings.clean, tokens);
    let histograms = clean::token_histograms(&kept, &settings.clean, tokens);
    let (train, validation) = clean::split(kept, settings.clean.validation_fraction, settings.clean.seed)?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        sources: files,
        settings: settings.clean.clone(),
        deid: DeidSummary {
            applied: !settings.skip_deid,
            counts: report.counts.clone(),
            dialogues_changed: report.dialogues_changed,
        },
        cleaning,
        train: train.len(),
        validation: validation.len(),
        histograms,
    };
    Ok((PreparedDataset { manifest, train, validation }, report))
}

impl PreparedDataset {
    /// Writes the three files into `dir` (created if missing); each file is written to a
    /// temporary name and renamed, so a crash never leaves a half-written file under the real name.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| DatasetError::Write { path: dir.to_path_buf(), source })?;
        write_jsonl(&dir.join(TRAIN_FILE), &self.train)?;
        write_jsonl(&dir.join(VALIDATION_FILE), &self.validation)?;
        let manifest = serde_json::to_vec_pretty(&self.manifest)
            .map_err(|e| DatasetError::Write { path: dir.join(MANIFEST_FILE), source: std::io::Error::other(e) })?;
        write_atomic(&dir.join(MANIFEST_FILE), &manifest)
    }

    /// Reads a dataset written by [`PreparedDataset::write`], checking counts against the manifest.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|source| DatasetError::Read { path: path.clone(), source })?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| DatasetError::Damaged { path: path.clone(), message: e.to_string() })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(DatasetError::Damaged {
                path,
                message: format!("format version {} (this program reads {FORMAT_VERSION})", manifest.format_version),
            });
        }
        let train = read_jsonl(&dir.join(TRAIN_FILE))?;
        let validation = read_jsonl(&dir.join(VALIDATION_FILE))?;
        if train.len() != manifest.train || validation.len() != manifest.validation {
            return Err(DatasetError::Damaged {
                path: dir.to_path_buf(),
                message: format!(
                    "the manifest lists {} training and {} validation dialogues, the files hold {} and {}",
                    manifest.train,
                    manifest.validation,
                    train.len(),
                    validation.len()
                ),
            });
        }
        Ok(PreparedDataset { manifest, train, validation })
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let err = |source| DatasetError::Write { path: path.to_path_buf(), source };
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

fn write_jsonl(path: &Path, dialogues: &[Dialogue]) -> Result<()> {
    let mut out = Vec::new();
    for d in dialogues {
        serde_json::to_writer(&mut out, d)
            .map_err(|e| DatasetError::Write { path: path.to_path_buf(), source: std::io::Error::other(e) })?;
        out.push(b'\n');
    }
    write_atomic(path, &out)
}

fn read_jsonl(path: &Path) -> Result<Vec<Dialogue>> {
    let f = std::fs::File::open(path).map_err(|source| DatasetError::Read { path: path.to_path_buf(), source })?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| DatasetError::Read { path: path.to_path_buf(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let d: Dialogue = serde_json::from_str(&line)
            .map_err(|e| DatasetError::Damaged { path: path.to_path_buf(), message: format!("line {}: {e}", i + 1) })?;
        out.push(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_and_detect_damage() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(dir) = dir else { panic!("no temp dir") };
        let csv = dir.path().join("export.csv");
        let text = "科室,标题,问题,回答\n内科,头痛,患者张伟头痛三天，电话13812345678，怎么办？,建议多休息，必要时就医。\n内科,头痛,患者张伟头痛三天，电话13812345678，怎么办？,建议多休息，必要时就医。\n内科,发热,发烧39度怎么办？,物理降温，及时就医。\n内科,咳嗽,咳嗽一周了,可以查个血常规。\n";
        std::fs::write(&csv, text).unwrap_or_else(|e| panic!("{e}"));
        let settings = PrepareSettings {
            clean: CleanSettings { validation_fraction: 0.34, ..Default::default() },
            ..Default::default()
        };
        let (ds, report) = prepare(&[(csv.clone(), None)], &settings, None, &mut Control::none()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.counts.get(&PiiKind::Name), Some(&2));
        assert_eq!(report.counts.get(&PiiKind::Phone), Some(&2));
        assert_eq!(ds.manifest.cleaning.removed.get(&clean::Removal::ExactDuplicate), Some(&1));
        assert_eq!((ds.train.len(), ds.validation.len()), (2, 1));
        assert_eq!(ds.manifest.sources[0].name, "export.csv");
        assert_eq!(ds.manifest.sources[0].sha256.len(), 64);
        let all: Vec<&Dialogue> = ds.train.iter().chain(&ds.validation).collect();
        assert!(all.iter().all(|d| !d.turns[0].user.contains("张伟") && !d.turns[0].user.contains("138123")));
        assert!(all.iter().any(|d| d.turns[0].user.contains("[姓名]") && d.turns[0].user.contains("[电话]")));
        let out = dir.path().join("prepared");
        ds.write(&out).unwrap_or_else(|e| panic!("{e}"));
        let back = PreparedDataset::read(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, ds);
        let manifest = std::fs::read_to_string(out.join(MANIFEST_FILE)).unwrap_or_default();
        assert!(!manifest.contains("张伟"), "the manifest holds no personal data");
        std::fs::write(out.join(TRAIN_FILE), "{\"turns\": [}\n").unwrap_or_else(|e| panic!("{e}"));
        let err = PreparedDataset::read(&out).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("damaged") && err.contains("line 1"), "{err}");
    }
}
