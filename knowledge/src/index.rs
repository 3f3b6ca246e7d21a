//! The tantivy index of the library: Chinese (jieba) and English (lower-case, stemmed)
//! analysis in one analyzer, names and aliases boosted, incremental by file hash, versioned
//! (rebuilt when [`SCHEMA_VERSION`] changes), rebuildable.
//!
//! On disk, under the index folder: `manifest.json` (schema version and the hash of every
//! indexed document) and `tantivy/` (the index itself).
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING};
use tantivy::tokenizer::{Language, LowerCaser, RemoveLongFilter, Stemmer, TextAnalyzer};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::document::{Document, SectionKind};
use crate::error::{KnowledgeError, Result};
use crate::library::Library;
use crate::progress::{CancelToken, Progress, ProgressSink};
use crate::segment::JiebaTokenizer;

/// Version of the schema and analysis; a different version on disk triggers a rebuild.
pub const SCHEMA_VERSION: u32 = 1;
/// Name of the analyzer registered with tantivy.
pub const ANALYZER: &str = "doctorglm_zh_en";
const MANIFEST: &str = "manifest.json";
const WRITER_HEAP: usize = 50_000_000;

/// Boosts of the fields in a free-text search.
const BOOST_NAME: f32 = 4.0;
const BOOST_ALIASES: f32 = 3.0;
const BOOST_SYMPTOMS: f32 = 1.5;
const BOOST_BODY: f32 = 1.0;

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    name: Field,
    aliases: Field,
    symptoms: Field,
    body: Field,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    schema_version: u32,
    docs: BTreeMap<String, String>,
}

/// What a [`KnowledgeIndex::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Whether the index was rebuilt from scratch (new, or a schema version change).
    pub rebuilt: bool,
    /// Documents added.
    pub added: usize,
    /// Documents re-indexed because their file changed.
    pub updated: usize,
    /// Documents removed from the index because they left the library.
    pub removed: usize,
    /// Documents left as they were.
    pub unchanged: usize,
}

/// A search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// Document id.
    pub id: String,
    /// Disease name.
    pub name: String,
    /// BM25 score (with field boosts).
    pub score: f32,
}

/// The index of a library.
pub struct KnowledgeIndex {
    dir: Option<PathBuf>,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    manifest: Manifest,
    analyzer: TextAnalyzer,
}

impl std::fmt::Debug for KnowledgeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeIndex").field("dir", &self.dir).field("docs", &self.manifest.docs.len()).finish()
    }
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(JiebaTokenizer::new())
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        .filter(Stemmer::new(Language::English))
        .build()
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let id = b.add_text_field("id", STRING | STORED);
    let name = b.add_text_field("name", text.clone().set_stored());
    let aliases = b.add_text_field("aliases", text.clone());
    let symptoms = b.add_text_field("symptoms", text.clone());
    let body = b.add_text_field("body", text);
    (b.build(), Fields { id, name, aliases, symptoms, body })
}

impl KnowledgeIndex {
    /// Opens the index in `dir`, creating it (or rebuilding it when its schema version
    /// differs). Call [`KnowledgeIndex::sync`] to bring it up to date with a library.
    pub fn open(dir: impl Into<PathBuf>) -> Result<KnowledgeIndex> {
        let dir = dir.into();
        let err = |reason: String| KnowledgeError::Index { path: dir.clone(), reason };
        std::fs::create_dir_all(&dir).map_err(|e| KnowledgeError::io("create index folder", &dir, e))?;
        let manifest_path = dir.join(MANIFEST);
        let tantivy_dir = dir.join("tantivy");
        let manifest: Option<Manifest> =
            std::fs::read(&manifest_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let usable = manifest.as_ref().is_some_and(|m| m.schema_version == SCHEMA_VERSION) && tantivy_dir.join("meta.json").is_file();
        let (schema, fields) = schema();
        let (index, manifest) = if usable {
            let index = Index::open_in_dir(&tantivy_dir).map_err(|e| err(format!("cannot open: {e}; delete the folder to rebuild")))?;
            (index, manifest.unwrap_or_default())
        } else {
            if tantivy_dir.exists() {
                tracing::info!(dir = %dir.display(), "index schema changed or index damaged: rebuilding");
                std::fs::remove_dir_all(&tantivy_dir).map_err(|e| KnowledgeError::io("remove old index", &tantivy_dir, e))?;
            }
            std::fs::create_dir_all(&tantivy_dir).map_err(|e| KnowledgeError::io("create index folder", &tantivy_dir, e))?;
            let index = Index::create_in_dir(&tantivy_dir, schema).map_err(|e| err(format!("cannot create: {e}")))?;
            (index, Manifest { schema_version: SCHEMA_VERSION, docs: BTreeMap::new() })
        };
        Self::finish(Some(dir), index, fields, manifest)
    }

    /// A fresh index in memory (tests, benchmarks, a library without an index folder).
    pub fn in_memory() -> Result<KnowledgeIndex> {
        let (schema, fields) = schema();
        let index = Index::create_in_ram(schema);
        Self::finish(None, index, fields, Manifest { schema_version: SCHEMA_VERSION, docs: BTreeMap::new() })
    }

    fn finish(dir: Option<PathBuf>, index: Index, fields: Fields, manifest: Manifest) -> Result<KnowledgeIndex> {
        index.tokenizers().register(ANALYZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| KnowledgeError::Index { path: dir.clone().unwrap_or_default(), reason: format!("cannot open a reader: {e}") })?;
        Ok(KnowledgeIndex { dir, index, reader, fields, manifest, analyzer: analyzer() })
    }

    fn err(&self, reason: impl std::fmt::Display) -> KnowledgeError {
        KnowledgeError::Index { path: self.dir.clone().unwrap_or_else(|| "(in memory)".into()), reason: reason.to_string() }
    }

    /// Number of documents indexed.
    pub fn len(&self) -> usize {
        self.manifest.docs.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.manifest.docs.is_empty()
    }

    /// Brings the index up to date with the library: adds new documents, re-indexes changed
    /// ones (by file hash), removes the ones gone. Cancelling leaves the index as it was.
    pub fn sync(&mut self, library: &Library, progress: &mut dyn ProgressSink, cancel: &CancelToken) -> Result<SyncReport> {
        let mut report = SyncReport { rebuilt: self.manifest.docs.is_empty(), ..Default::default() };
        let mut writer: IndexWriter<TantivyDocument> =
            self.index.writer_with_num_threads(1, WRITER_HEAP).map_err(|e| self.err(format!("cannot open a writer: {e}")))?;
        let mut new_docs = BTreeMap::new();
        let total = library.len();
        for (i, loaded) in library.loaded().iter().enumerate() {
            if cancel.is_cancelled() {
                let _ = writer.rollback();
                return Err(KnowledgeError::Cancelled);
            }
            let id = &loaded.doc.id;
            match self.manifest.docs.get(id) {
                Some(h) if *h == loaded.hash => report.unchanged += 1,
                old => {
                    if old.is_some() {
                        writer.delete_term(Term::from_field_text(self.fields.id, id));
                        report.updated += 1;
                    } else {
                        report.added += 1;
                    }
                    writer.add_document(self.to_tantivy(&loaded.doc)).map_err(|e| self.err(format!("cannot add {id}: {e}")))?;
                }
            }
            new_docs.insert(id.clone(), loaded.hash.clone());
            if (i + 1) % 100 == 0 || i + 1 == total {
                progress.report(Progress { done: i + 1, total: Some(total), message: "indexing".into() });
            }
        }
        let live: HashSet<&String> = new_docs.keys().collect();
        for id in self.manifest.docs.keys().filter(|id| !live.contains(id)) {
            writer.delete_term(Term::from_field_text(self.fields.id, id));
            report.removed += 1;
        }
        if report.added + report.updated + report.removed > 0 {
            writer.commit().map_err(|e| self.err(format!("cannot commit: {e}")))?;
            self.reader.reload().map_err(|e| self.err(format!("cannot reload: {e}")))?;
        }
        drop(writer);
        self.manifest.docs = new_docs;
        self.save_manifest()?;
        tracing::info!(?report, "index synchronised");
        Ok(report)
    }

    /// Deletes everything and indexes the library again.
    pub fn rebuild(&mut self, library: &Library, progress: &mut dyn ProgressSink, cancel: &CancelToken) -> Result<SyncReport> {
        let mut writer: IndexWriter<TantivyDocument> =
            self.index.writer_with_num_threads(1, WRITER_HEAP).map_err(|e| self.err(format!("cannot open a writer: {e}")))?;
        writer.delete_all_documents().map_err(|e| self.err(e))?;
        writer.commit().map_err(|e| self.err(e))?;
        drop(writer);
        self.manifest.docs.clear();
        let mut r = self.sync(library, progress, cancel)?;
        r.rebuilt = true;
        Ok(r)
    }

    fn save_manifest(&self) -> Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let path = dir.join(MANIFEST);
        let tmp = dir.join("manifest.json.tmp");
        let bytes = serde_json::to_vec(&self.manifest).map_err(|e| self.err(e))?;
        std::fs::write(&tmp, bytes).map_err(|e| KnowledgeError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| KnowledgeError::io("write", &path, e))
    }

    fn to_tantivy(&self, d: &Document) -> TantivyDocument {
        let f = self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.id, &d.id);
        doc.add_text(f.name, &d.name);
        let mut aliases: Vec<&str> = d.aliases.iter().map(String::as_str).collect();
        if let Some(en) = &d.name_en {
            aliases.push(en);
        }
        doc.add_text(f.aliases, aliases.join("\n"));
        let mut symptoms = d.symptoms.join("\n");
        if let Some(s) = d.section(SectionKind::Symptoms) {
            symptoms.push('\n');
            symptoms.push_str(&s.body);
        }
        doc.add_text(f.symptoms, symptoms);
        let body: Vec<&str> = d.sections.iter().map(|s| s.body.as_str()).collect();
        doc.add_text(f.body, body.join("\n"));
        doc
    }

    /// The analyzed terms of a text (distinct, in order).
    pub fn analyze(&self, text: &str) -> Vec<String> {
        let mut a = self.analyzer.clone();
        let mut stream = a.token_stream(text);
        let mut out: Vec<String> = Vec::new();
        while stream.advance() {
            let t = &stream.token().text;
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }

    fn field_query(&self, field: Field, terms: &[String], boost: f32) -> Option<Box<dyn Query>> {
        if terms.is_empty() {
            return None;
        }
        let subs: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(Term::from_field_text(field, t), IndexRecordOption::WithFreqs));
                (Occur::Should, q)
            })
            .collect();
        Some(Box::new(BoostQuery::new(Box::new(BooleanQuery::new(subs)), boost)))
    }

    fn run(&self, query: &dyn Query, limit: usize) -> Result<Vec<Hit>> {
        if limit == 0 {
            return Ok(vec![]);
        }
        let searcher = self.reader.searcher();
        let top = searcher.search(query, &TopDocs::with_limit(limit).order_by_score()).map_err(|e| self.err(format!("search failed: {e}")))?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr).map_err(|e| self.err(format!("cannot read a stored document: {e}")))?;
            let get = |f: Field| doc.get_first(f).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            hits.push(Hit { id: get(self.fields.id), name: get(self.fields.name), score });
        }
        Ok(hits)
    }

    /// Free-text search over names (boosted), aliases (boosted), symptoms and text. Any input
    /// is accepted (no query syntax).
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<Hit>> {
        let terms = self.analyze(text);
        let f = self.fields;
        let subs: Vec<(Occur, Box<dyn Query>)> = [(f.name, BOOST_NAME), (f.aliases, BOOST_ALIASES), (f.symptoms, BOOST_SYMPTOMS), (f.body, BOOST_BODY)]
            .into_iter()
            .filter_map(|(field, boost)| self.field_query(field, &terms, boost))
            .map(|q| (Occur::Should, q))
            .collect();
        if subs.is_empty() {
            return Ok(vec![]);
        }
        self.run(&BooleanQuery::new(subs), limit)
    }

    /// BM25 over the symptom lists and symptom sections only, for a set of symptom phrases.
    pub fn search_symptoms(&self, symptoms: &[&str], limit: usize) -> Result<Vec<Hit>> {
        let mut terms: Vec<String> = Vec::new();
        for s in symptoms {
            for t in self.analyze(s) {
                if !terms.contains(&t) {
                    terms.push(t);
                }
            }
        }
        match self.field_query(self.fields.symptoms, &terms, 1.0) {
            Some(q) => self.run(q.as_ref(), limit),
            None => Ok(vec![]),
        }
    }

    /// The index folder, when on disk.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::tests::doc;

    fn library(dir: &Path) -> Library {
        std::fs::create_dir_all(dir).unwrap();
        let mut lib = Library::load(dir).unwrap();
        lib.add(doc("tonsillitis", "扁桃体炎", &["急性扁桃体炎", "Tonsillitis"], &["咽痛", "发热"], "咽痛，吞咽时加重，发热，扁桃体肿大。"), "ent").unwrap();
        lib.add(doc("gastroenteritis", "急性胃肠炎", &["胃肠炎"], &["腹泻", "呕吐"], "腹泻，呕吐，腹痛，可有发热。"), "im").unwrap();
        lib.add(doc("migraine", "偏头痛", &["Migraine headaches"], &["头痛"], "反复发作的单侧搏动性头痛，伴恶心。"), "im").unwrap();
        lib
    }

    #[test]
    fn searches_chinese_and_english_with_names_first() {
        let dir = tempfile::tempdir().unwrap();
        let lib = library(&dir.path().join("lib"));
        let mut index = KnowledgeIndex::open(dir.path().join("index")).unwrap();
        let r = index.sync(&lib, &mut (), &CancelToken::new()).unwrap();
        assert_eq!((r.rebuilt, r.added, r.unchanged), (true, 3, 0));
        assert_eq!(index.search("扁桃体炎怎么治疗", 3).unwrap()[0].id, "tonsillitis");
        // English, stemmed: "headache" finds "headaches".
        assert_eq!(index.search("migraine headache", 3).unwrap()[0].id, "migraine");
        assert_eq!(index.search_symptoms(&["腹泻", "呕吐"], 3).unwrap()[0].id, "gastroenteritis");
        assert!(index.search("", 3).unwrap().is_empty());
        assert!(index.search("AND OR \"( :", 3).is_ok());
    }

    #[test]
    fn syncs_incrementally_and_rebuilds_on_version_change() {
        let dir = tempfile::tempdir().unwrap();
        let lib_dir = dir.path().join("lib");
        let lib = library(&lib_dir);
        let index_dir = dir.path().join("index");
        KnowledgeIndex::open(&index_dir).unwrap().sync(&lib, &mut (), &CancelToken::new()).unwrap();
        // Reopen: nothing to do.
        let mut index = KnowledgeIndex::open(&index_dir).unwrap();
        assert_eq!(index.len(), 3);
        let r = index.sync(&lib, &mut (), &CancelToken::new()).unwrap();
        assert_eq!((r.rebuilt, r.added, r.updated, r.unchanged), (false, 0, 0, 3));
        // Change one file, delete another.
        let p = lib_dir.join("im/migraine.md");
        let text = std::fs::read_to_string(&p).unwrap().replace("伴恶心", "伴畏光畏声");
        std::fs::write(&p, text).unwrap();
        std::fs::remove_file(lib_dir.join("im/gastroenteritis.md")).unwrap();
        let lib = Library::load(&lib_dir).unwrap();
        let r = index.sync(&lib, &mut (), &CancelToken::new()).unwrap();
        assert_eq!((r.updated, r.removed, r.unchanged), (1, 1, 1));
        assert_eq!(index.search("畏光", 3).unwrap()[0].id, "migraine");
        assert!(index.search("腹泻", 3).unwrap().is_empty());
        // A different schema version on disk forces a rebuild.
        let m = index_dir.join(MANIFEST);
        let text = std::fs::read_to_string(&m).unwrap().replace(&format!("\"schema_version\":{SCHEMA_VERSION}"), "\"schema_version\":0");
        std::fs::write(&m, text).unwrap();
        let mut index = KnowledgeIndex::open(&index_dir).unwrap();
        assert!(index.is_empty());
        let r = index.sync(&lib, &mut (), &CancelToken::new()).unwrap();
        assert_eq!((r.rebuilt, r.added), (true, 2));
        assert_eq!(index.search("畏光", 3).unwrap().len(), 1);
    }

    #[test]
    fn cancelled_sync_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let lib = library(&dir.path().join("lib"));
        let mut index = KnowledgeIndex::open(dir.path().join("index")).unwrap();
        let cancel = CancelToken::new();
        cancel.cancel();
        assert!(matches!(index.sync(&lib, &mut (), &cancel), Err(KnowledgeError::Cancelled)));
        assert!(index.is_empty());
        assert!(index.search("扁桃体炎", 3).unwrap().is_empty());
    }
}
