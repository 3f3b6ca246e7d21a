use super::*;
use std::path::PathBuf;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/knowledge").join(rel)
}

fn counts(records: &[Parsed]) -> (usize, Vec<&SkippedItem>) {
    (records.iter().filter(|r| r.is_ok()).count(), records.iter().filter_map(|r| r.as_ref().err()).collect())
}

fn docs(records: Vec<Parsed>) -> Vec<Document> {
    records.into_iter().filter_map(|r| r.ok()).collect()
}

#[test]
fn qasystem_gbk_jsonl() {
    let (format, decoded, records) = parse_file(&data("qasystem-medical-first100.gbk.jsonl")).unwrap();
    assert_eq!(format, Format::QaSystemJsonl);
    assert_eq!(decoded.encoding, "gb18030");
    assert_eq!(records.len(), 100);
    let (ok, skipped) = counts(&records);
    assert!(ok >= 95, "only {ok} imported; skipped: {skipped:?}");
    let docs = docs(records);
    let d = docs.iter().find(|d| d.name == "肺泡蛋白质沉积症").expect("first record");
    assert!(d.section(SectionKind::Overview).unwrap().body.contains("Rosen-Castle-man-Liebow"));
    assert!(!d.symptoms.is_empty());
    assert!(d.id.starts_with("qasystem-"));
    assert!(docs.iter().all(|d| crate::document::is_valid_id(&d.id)));
}

#[test]
fn health39_gb18030_csv() {
    let (format, decoded, records) = parse_file(&data("39health-diseases.gb18030.csv")).unwrap();
    assert_eq!((format, decoded.encoding), (Format::Csv, "gb18030"));
    assert_eq!(decoded.replaced, 0);
    assert_eq!(records.len(), 14_336);
    let (ok, skipped) = counts(&records);
    assert!(ok >= 14_000, "only {ok}; first skipped: {:?}", skipped.iter().take(3).collect::<Vec<_>>());
    let docs = docs(records);
    let d = docs.iter().find(|d| d.name == "阳痿").unwrap();
    assert!(d.aliases.contains(&"勃起功能障碍".to_string()));
    assert!(d.section(SectionKind::Diagnosis).unwrap().body.contains("前列腺B超"));
    assert!(!d.to_markdown().contains("[详细]"));
}

#[test]
fn chatdoctor_english_csv() {
    let (_, _, records) = parse_file(&data("chatdoctor-diseases.en.csv")).unwrap();
    assert_eq!(records.len(), 796);
    let docs = docs(records);
    assert!(docs.len() >= 780, "{}", docs.len());
    let d = docs.iter().find(|d| d.name == "Panic disorder").unwrap();
    assert_eq!(d.language, "en");
    assert!(d.symptoms.contains(&"shortness of breath".to_string()));
    assert!(d.section(SectionKind::Treatment).unwrap().body.contains("Lorazepam"));
}

#[test]
fn medquad_xml_folder() {
    let (format, _, records) = parse_file(&data("medquad-mplus-health-topics/0000001.xml")).unwrap();
    assert_eq!(format, Format::MedQuadXml);
    let d = docs(records).pop().unwrap();
    assert_eq!(d.name, "A1C");
    assert!(d.aliases.contains(&"HbA1C".to_string()));
    assert!(d.section(SectionKind::Overview).unwrap().body.starts_with("A1C is a blood test"));
    // The whole folder through the importer.
    let dir = tempfile::tempdir().unwrap();
    let mut lib = Library::load(dir.path()).unwrap();
    let mut reports = 0;
    let report = import_path(&mut lib, &data("medquad-mplus-health-topics"), &mut |_p: Progress| reports += 1, &CancelToken::new()).unwrap();
    assert!(report.files.len() >= 975, "{} files read", report.files.len());
    assert!(report.imported.len() >= 900, "{} imported, skipped {:?}", report.imported.len(), report.skipped.iter().take(3).collect::<Vec<_>>());
    assert_eq!(reports, 982); // 981 documents and LICENSE.txt
    assert!(report.skipped.iter().any(|s| s.location.ends_with("LICENSE.txt") && s.reason.contains("licence")));
    assert_eq!(Library::load(dir.path()).unwrap().len(), report.imported.len());
}

#[test]
fn html_split_by_section_headings() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("page.html");
    std::fs::write(
        &p,
        "<!DOCTYPE html><html><head><title>站点 - 扁桃体炎</title><script>var x='不要';</script></head><body>\
         <nav>首页 目录</nav><h1>扁桃体炎</h1><p>扁桃体的炎症。</p>\
         <h2>症状和体征</h2><ul><li>咽痛</li><li>发热</li></ul>\
         <h2>诊断</h2><p>临床评估。</p><h3>咽拭子检查</h3><p>快速抗原检测。</p>\
         <h2>治疗</h2><p>抗生素（细菌性时）。</p><h2>参考文献</h2><p>略</p></body></html>",
    )
    .unwrap();
    let (format, _, records) = parse_file(&p).unwrap();
    assert_eq!(format, Format::Html);
    let d = docs(records).pop().unwrap();
    assert_eq!(d.name, "扁桃体炎");
    assert_eq!(d.section(SectionKind::Overview).unwrap().body, "扁桃体的炎症。");
    assert_eq!(d.section(SectionKind::Symptoms).unwrap().body, "咽痛\n发热");
    assert!(d.section(SectionKind::Diagnosis).unwrap().body.contains("快速抗原检测"));
    assert!(d.section(SectionKind::Treatment).unwrap().body.contains("抗生素"));
    let md = d.to_markdown();
    assert!(!md.contains("不要") && !md.contains("首页"), "{md}");
    std::fs::write(dir.path().join("empty.html"), "<html><body><p>text</p></body></html>").unwrap();
    let (_, _, r) = parse_file(&dir.path().join("empty.html")).unwrap();
    assert!(r[0].as_ref().unwrap_err().reason.contains("no title"));
}

#[test]
fn markdown_and_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("note.md");
    std::fs::write(&p, "# 荨麻疹\n\n皮肤风团。\n\n## 症状\n瘙痒，风团。\n\n## 治疗\n抗组胺药。\n").unwrap();
    let (_, _, r) = parse_file(&p).unwrap();
    let d = docs(r).pop().unwrap();
    assert_eq!(d.name, "荨麻疹");
    assert_eq!(d.sections.len(), 3);
    let txt = dir.path().join("Common cold.txt");
    std::fs::write(&txt, "A viral infection of the nose and throat.").unwrap();
    let d = docs(parse_file(&txt).unwrap().2).pop().unwrap();
    assert_eq!((d.name.as_str(), d.id.as_str(), d.language.as_str()), ("Common cold", "md-common-cold", "en"));
    std::fs::write(dir.path().join("blank.txt"), "  \n").unwrap();
    let r = parse_file(&dir.path().join("blank.txt")).unwrap().2;
    assert!(r[0].as_ref().unwrap_err().reason.contains("empty"));
}

#[test]
fn hostile_inputs_give_reasons() {
    let dir = tempfile::tempdir().unwrap();
    // Truncated JSON lines (cut in the middle of a record, GBK).
    let full = std::fs::read(data("qasystem-medical-first100.gbk.jsonl")).unwrap();
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, &full[..full.len() / 3]).unwrap();
    let (_, _, r) = parse_file(&cut).unwrap();
    let (ok, skipped) = counts(&r);
    assert!(ok >= 10);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].reason.contains("not a JSON object") && skipped[0].location.contains("line"));
    // Binary junk named .csv.
    let junk: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    std::fs::write(dir.path().join("junk.csv"), &junk).unwrap();
    let err = parse_file(&dir.path().join("junk.csv")).unwrap_err().to_string();
    assert!(err.contains("binary") || err.contains("not valid"), "{err}");
    // A huge line.
    let huge = format!("{{\"name\":\"x\",\"desc\":\"{}\"}}\n{{\"name\":\"感冒\",\"desc\":\"常见病\"}}\n", "很".repeat(MAX_RECORD_BYTES));
    std::fs::write(dir.path().join("huge.jsonl"), huge).unwrap();
    let (_, _, r) = parse_file(&dir.path().join("huge.jsonl")).unwrap();
    let (ok, skipped) = counts(&r);
    assert_eq!(ok, 1);
    assert!(skipped[0].reason.contains("longer than"), "{skipped:?}");
    // Truncated XML.
    let xml = std::fs::read_to_string(data("medquad-mplus-health-topics/0000001.xml")).unwrap();
    std::fs::write(dir.path().join("cut.xml"), &xml[..xml.len() / 2]).unwrap();
    let (_, _, r) = parse_file(&dir.path().join("cut.xml")).unwrap();
    assert!(r[0].as_ref().unwrap_err().reason.contains("not well-formed XML"));
    // A CSV without a name column, and an unknown format.
    std::fs::write(dir.path().join("t.csv"), "a,b\n1,2\n").unwrap();
    assert!(parse_file(&dir.path().join("t.csv")).unwrap_err().to_string().contains("disease-name column"));
    std::fs::write(dir.path().join("x.bin"), "plain words").unwrap();
    assert!(parse_file(&dir.path().join("x.bin")).unwrap_err().to_string().contains("unknown format"));
    // Text in an encoding that is neither UTF-8 nor Chinese nor UTF-16, mostly high bytes.
    let latin: Vec<u8> = (0..3000u32).map(|i| 0x80 + (i % 0x7f) as u8).collect();
    std::fs::write(dir.path().join("odd.md"), &latin).unwrap();
    if let Ok((_, d, _)) = parse_file(&dir.path().join("odd.md")) {
        // If a legacy single-byte encoding explains it, it must say which.
        assert_ne!(d.encoding, "UTF-8");
    }
}

#[test]
fn imports_never_overwrite_and_can_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let lib_dir = dir.path().join("lib");
    let mut lib = Library::load({
        std::fs::create_dir_all(&lib_dir).unwrap();
        &lib_dir
    })
    .unwrap();
    let src = data("qasystem-medical-first100.gbk.jsonl");
    let first = import_path(&mut lib, &src, &mut (), &CancelToken::new()).unwrap();
    assert!(first.imported.len() >= 95);
    let written = first.imported[0].path.clone();
    let before = std::fs::read(&written).unwrap();
    let mut lib = Library::load(&lib_dir).unwrap();
    let again = import_path(&mut lib, &src, &mut (), &CancelToken::new()).unwrap();
    assert!(again.imported.is_empty());
    assert!(again.skipped.iter().filter(|s| s.reason.contains("already exists")).count() >= 95);
    assert_eq!(std::fs::read(&written).unwrap(), before);
    // Cancel after the third record: three are written, the report says cancelled.
    let other = dir.path().join("lib2");
    std::fs::create_dir_all(&other).unwrap();
    let mut lib = Library::load(&other).unwrap();
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let report = import_path(&mut lib, &src, &mut |p: Progress| if p.done == 3 { c2.cancel() }, &cancel).unwrap();
    assert!(report.cancelled);
    assert_eq!(report.imported.len() + report.skipped.len(), 3);
    assert_eq!(Library::load(&other).unwrap().len(), report.imported.len());
}
