//! The library on disk: a folder (with sub-folders) of Markdown disease documents.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::document::{is_valid_id, Document};
use crate::error::{KnowledgeError, Result};

/// A file of the library folder that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// A document as loaded from the library folder, with its file.
#[derive(Debug, Clone)]
pub struct LoadedDocument {
    /// The document.
    pub doc: Document,
    /// Its file.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes (hex), used by the index to find changed files.
    pub hash: String,
}

/// The library: every valid document of a folder, by id.
#[derive(Debug, Clone, Default)]
pub struct Library {
    root: PathBuf,
    docs: Vec<LoadedDocument>,
    by_id: HashMap<String, usize>,
    /// Files that were not loaded, with reasons.
    pub skipped: Vec<SkippedFile>,
}

/// Markdown files under `root` (recursive, sorted, hidden folders and README files skipped).
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("md")))
        .filter(|p| !p.file_stem().is_some_and(|s| s.to_string_lossy().eq_ignore_ascii_case("readme")))
        .collect();
    files.sort();
    files
}

impl Library {
    /// An empty library rooted at `root` (nothing is read).
    pub fn empty(root: impl Into<PathBuf>) -> Self {
        Library { root: root.into(), ..Default::default() }
    }

    /// Loads every `.md` document under `root`. Bad files are skipped with a reason (see
    /// [`Library::skipped`]); a missing folder is an error.
    pub fn load(root: impl Into<PathBuf>) -> Result<Library> {
        let root = root.into();
        if !root.is_dir() {
            return Err(KnowledgeError::io(
                "open library folder",
                &root,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
            ));
        }
        let mut lib = Library::empty(root.clone());
        for path in markdown_files(&root) {
            match load_file(&path) {
                Ok(loaded) => {
                    if let Some(&i) = lib.by_id.get(&loaded.doc.id) {
                        let first = lib.docs[i].path.display().to_string();
                        lib.skipped.push(SkippedFile {
                            path,
                            reason: format!("id `{}` is already used by {first}", loaded.doc.id),
                        });
                        continue;
                    }
                    lib.by_id.insert(loaded.doc.id.clone(), lib.docs.len());
                    lib.docs.push(loaded);
                }
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "skipping library file");
                    lib.skipped.push(SkippedFile { path, reason });
                }
            }
        }
        tracing::info!(root = %root.display(), docs = lib.docs.len(), skipped = lib.skipped.len(), "library loaded");
        Ok(lib)
    }

    /// Loads the starter library, then the user's library folder on top of it (a missing
    /// folder is an empty user library). [`Library::add`] writes into the user's folder, never
    /// into the starter library. A user document whose id a starter document already has is
    /// skipped with the reason.
    pub fn load_with_user(starter: impl Into<PathBuf>, user: impl Into<PathBuf>) -> Result<Library> {
        let mut lib = Library::load(starter)?;
        let user = user.into();
        if user.is_dir() {
            let mine = Library::load(&user)?;
            lib.skipped.extend(mine.skipped);
            for loaded in mine.docs {
                if let Some(&i) = lib.by_id.get(&loaded.doc.id) {
                    let first = lib.docs[i].path.display().to_string();
                    lib.skipped.push(SkippedFile {
                        path: loaded.path,
                        reason: format!("id `{}` is already used by {first}", loaded.doc.id),
                    });
                    continue;
                }
                lib.by_id.insert(loaded.doc.id.clone(), lib.docs.len());
                lib.docs.push(loaded);
            }
        }
        lib.root = user;
        Ok(lib)
    }

    /// The folder new documents are written to (the user's library for a layered library).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// All documents in file order.
    pub fn documents(&self) -> impl Iterator<Item = &Document> {
        self.docs.iter().map(|d| &d.doc)
    }

    /// All documents with their files and hashes.
    pub fn loaded(&self) -> &[LoadedDocument] {
        &self.docs
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether the library has no documents.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// A document by id.
    pub fn get(&self, id: &str) -> Option<&Document> {
        self.by_id.get(id).map(|&i| &self.docs[i].doc)
    }

    /// A document whose name or alias equals `name` (case-insensitive for ASCII).
    pub fn find_by_name(&self, name: &str) -> Option<&Document> {
        let name = name.trim();
        self.documents().find(|d| d.all_names().any(|n| n.eq_ignore_ascii_case(name)))
    }

    /// Adds a document in memory only (tests, benchmarks).
    pub fn insert_in_memory(&mut self, doc: Document) -> std::result::Result<(), String> {
        if self.by_id.contains_key(&doc.id) {
            return Err(format!("id `{}` already exists", doc.id));
        }
        let path = self.root.join(format!("{}.md", doc.id));
        self.by_id.insert(doc.id.clone(), self.docs.len());
        self.docs.push(LoadedDocument { hash: hash_hex(doc.to_markdown().as_bytes()), doc, path });
        Ok(())
    }

    /// Writes a new document to `<root>/<folder>/<id>.md` and adds it. Never overwrites: an
    /// existing id, file or disease name is refused with the reason.
    pub fn add(&mut self, doc: Document, folder: &str) -> std::result::Result<PathBuf, String> {
        if !is_valid_id(&doc.id) {
            return Err(format!("id `{}` is not lowercase ASCII kebab-case", doc.id));
        }
        if let Some(existing) = self.get(&doc.id) {
            return Err(format!("a document with id `{}` already exists ({})", doc.id, existing.name));
        }
        if let Some(existing) = self.documents().find(|d| d.name == doc.name) {
            return Err(format!("a document named {} already exists (id `{}`)", doc.name, existing.id));
        }
        let dir = self.root.join(folder);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create folder {}: {e}", dir.display()))?;
        let path = dir.join(format!("{}.md", doc.id));
        let text = doc.to_markdown();
        write_new_file(&dir.join(format!(".{}.md.partial", doc.id)), &path, text.as_bytes())?;
        self.by_id.insert(doc.id.clone(), self.docs.len());
        self.docs.push(LoadedDocument { doc, path: path.clone(), hash: hash_hex(text.as_bytes()) });
        Ok(path)
    }
}

/// Writes `bytes` to `path` whole or not at all, never replacing an existing file: the bytes go
/// to `tmp` (a hidden name the loader ignores), which is then hard-linked to `path` (fails if
/// `path` exists) and removed. A process killed meanwhile leaves at most the hidden `tmp`.
fn write_new_file(tmp: &Path, path: &Path, bytes: &[u8]) -> std::result::Result<(), String> {
    if path.exists() {
        return Err(format!("{} already exists (not overwriting)", path.display()));
    }
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(tmp)?;
        std::io::Write::write_all(&mut f, bytes)
    };
    write().map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let linked = match std::fs::hard_link(tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(format!("{} already exists (not overwriting)", path.display())),
        // File systems without hard links: rename (the existence check above guards it).
        Err(_) => std::fs::rename(tmp, path).map_err(|e| format!("cannot create {}: {e}", path.display())),
    };
    let _ = std::fs::remove_file(tmp);
    linked
}

fn load_file(path: &Path) -> std::result::Result<LoadedDocument, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let decoded = crate::encoding::decode(&bytes).map_err(|e| e.to_string())?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let doc = Document::parse_markdown(&decoded.text, &stem)?;
    if doc.id != stem {
        return Err(format!("id `{}` differs from the file name `{stem}.md`", doc.id));
    }
    Ok(LoadedDocument { doc, path: path.to_path_buf(), hash: hash_hex(&bytes) })
}

/// SHA-256 of bytes as lowercase hex.
pub fn hash_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The starter library shipped in the source tree (`knowledge/library`), for development and
/// tests; installed builds pass their own path.
pub fn starter_library_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("library")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::document::{Section, SectionKind};

    /// A small document for tests.
    pub(crate) fn doc(id: &str, name: &str, aliases: &[&str], symptoms: &[&str], symptom_text: &str) -> Document {
        Document {
            id: id.into(),
            name: name.into(),
            name_en: None,
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            department: Some("内科".into()),
            symptoms: symptoms.iter().map(|s| s.to_string()).collect(),
            language: "zh".into(),
            source: "test".into(),
            attribution: "test".into(),
            sections: vec![
                Section { kind: SectionKind::Overview, heading: "概述".into(), body: format!("{name}是一种常见病。") },
                Section { kind: SectionKind::Symptoms, heading: "症状".into(), body: symptom_text.into() },
                Section { kind: SectionKind::Diagnosis, heading: "诊断".into(), body: "根据病史和查体诊断。".into() },
                Section { kind: SectionKind::Treatment, heading: "治疗".into(), body: "对症治疗，必要时就医。".into() },
                Section { kind: SectionKind::Prevention, heading: "预防".into(), body: "注意休息。".into() },
            ],
        }
    }

    #[test]
    fn loads_skips_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let mut lib = Library::load(dir.path()).unwrap();
        assert!(lib.is_empty());
        lib.add(doc("flu", "流行性感冒", &["流感"], &["发热"], "高热"), "internal-medicine").unwrap();
        let err = lib.add(doc("flu", "别的", &[], &[], ""), "internal-medicine").unwrap_err();
        assert!(err.contains("already exists"), "{err}");
        let err = lib.add(doc("flu-2", "流行性感冒", &[], &[], ""), "x").unwrap_err();
        assert!(err.contains("named"), "{err}");
        std::fs::write(dir.path().join("broken.md"), "no front matter").unwrap();
        std::fs::create_dir_all(dir.path().join("x")).unwrap();
        std::fs::write(dir.path().join("x").join("other.md"), "---\nid: wrong\nname: a\n---\n").unwrap();
        let lib = Library::load(dir.path()).unwrap();
        assert_eq!(lib.len(), 1);
        assert_eq!(lib.get("flu").unwrap().aliases, vec!["流感"]);
        assert_eq!(lib.find_by_name("流感").unwrap().id, "flu");
        assert_eq!(lib.skipped.len(), 2, "{:?}", lib.skipped);
        assert!(lib.skipped.iter().any(|s| s.reason.contains("differs from the file name")));
        assert!(Library::load(dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_layered_library_writes_only_into_the_user_folder() {
        let starter = tempfile::tempdir().unwrap();
        let user = tempfile::tempdir().unwrap();
        let user_dir = user.path().join("knowledge-library");
        Library::load(starter.path()).unwrap().add(doc("flu", "流行性感冒", &["流感"], &["发热"], "高热"), "x").unwrap();
        let before: Vec<_> = walkdir::WalkDir::new(starter.path()).into_iter().filter_map(|e| e.ok()).map(|e| e.into_path()).collect();
        // No user folder yet: the starter documents alone.
        let mut lib = Library::load_with_user(starter.path(), &user_dir).unwrap();
        assert_eq!((lib.len(), lib.root()), (1, user_dir.as_path()));
        let err = lib.add(doc("flu-2", "流行性感冒", &[], &[], ""), "x").unwrap_err();
        assert!(err.contains("named"), "a starter name is taken: {err}");
        let path = lib.add(doc("cold", "普通感冒", &[], &["鼻塞"], "鼻塞"), "imported").unwrap();
        assert!(path.starts_with(&user_dir), "{}", path.display());
        let after: Vec<_> = walkdir::WalkDir::new(starter.path()).into_iter().filter_map(|e| e.ok()).map(|e| e.into_path()).collect();
        assert_eq!(before, after, "the starter library is never written");
        // No temporary file is left beside the document.
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["cold.md"]);
        // A user document reusing a starter id is skipped with the reason.
        std::fs::write(user_dir.join("flu.md"), doc("flu", "别的", &[], &[], "").to_markdown()).unwrap();
        let lib = Library::load_with_user(starter.path(), &user_dir).unwrap();
        assert_eq!(lib.len(), 2);
        assert_eq!(lib.get("cold").unwrap().name, "普通感冒");
        assert!(lib.skipped.iter().any(|s| s.reason.contains("already used")), "{:?}", lib.skipped);
    }
}
