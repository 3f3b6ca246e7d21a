//! `doctorglm designer` and `doctorglm knowledge ...` run as a person would, each test on a
//! fresh data folder (`$DOCTORGLM_DATA_DIR`), with real files from `../shared/data`.
mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{command, json, run, shared_data, text};
use serde_json::Value;

fn starter_library() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../knowledge/library")
}

/// Every file under `dir`, sorted, with its size.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut v: Vec<(PathBuf, u64)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(files(&p));
            } else {
                v.push((p.clone(), e.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
    }
    v.sort();
    v
}

fn md_count(dir: &Path) -> usize {
    files(dir).iter().filter(|(p, _)| p.extension().is_some_and(|x| x == "md")).count()
}

#[test]
fn designer_json_names_the_disease_first_and_marks_negation() {
    let data = tempfile::tempdir().unwrap();
    let q = "孩子扁桃体炎，发烧三天，没有咳嗽，怎么治疗？";
    let v = json(&run(data.path(), &["designer", "--json", q]));
    let keywords = v["keywords"].as_array().expect("keywords array");
    for k in keywords {
        assert!(k["text"].is_string() && k["kind"].is_string() && k["negated"].is_boolean(), "{k}");
    }
    let find = |t: &str| keywords.iter().find(|k| k["text"].as_str().is_some_and(|x| x.contains(t))).cloned();
    let tonsillitis = find("扁桃体炎").expect("the named disease is a keyword");
    assert_eq!((tonsillitis["kind"].as_str(), tonsillitis["negated"].as_bool()), (Some("disease"), Some(false)));
    let cough = find("咳嗽").expect("the negated symptom is still reported");
    assert_eq!((cough["kind"].as_str(), cough["negated"].as_bool()), (Some("symptom"), Some(true)));
    assert_eq!(find("发烧").expect("发烧 is a symptom")["negated"], false);

    let diseases = v["diseases"].as_array().expect("diseases array");
    assert_eq!(diseases[0]["name"], "扁桃体炎", "a named disease comes first: {v:#}");
    assert!(diseases[0]["score"].as_f64().is_some_and(|s| s >= 100.0), "{}", diseases[0]);
    for d in diseases {
        assert!(d["name"].is_string() && d["score"].is_number() && d["evidence"].is_array(), "{d}");
        let evidence: Vec<&str> = d["evidence"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(!evidence.iter().any(|e| e.contains("咳嗽")), "a negated symptom is no evidence: {d}");
    }
    let prompt = v["prompt"].as_str().expect("prompt text");
    assert!(prompt.contains(q) && prompt.contains("扁桃体炎") && prompt.len() > q.len() * 2, "{prompt}");
    let sources = v["sources"].as_array().expect("sources array");
    assert!(!sources.is_empty(), "{v:#}");
    assert!(sources.iter().all(|s| s["doc_id"] == "tonsillitis" || s.to_string().contains("tonsillitis")), "{sources:?}");
    // The index lives in the data folder.
    assert!(data.path().join("knowledge-index").is_dir());
}

#[test]
fn designer_off_passes_the_question_unchanged() {
    let data = tempfile::tempdir().unwrap();
    let v = json(&run(data.path(), &["designer", "--json", "--off", "高血压怎么治疗？"]));
    assert_eq!(v["prompt"], "高血压怎么治疗？");
    assert_eq!(v["sources"].as_array().map(Vec::len), Some(0));
}

#[test]
fn import_writes_to_the_user_library_never_the_starter_one() {
    let data = tempfile::tempdir().unwrap();
    let starter_before = files(&starter_library());
    let file = shared_data().join("knowledge/qasystem-medical-first100.gbk.jsonl");
    let out = run(data.path(), &["knowledge", "import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let user = data.path().join("knowledge-library");
    let report = text(&out);
    assert!(report.contains("QaSystemJsonl"), "the format is reported: {report}");
    assert!(report.to_lowercase().contains("gb18030") || report.to_lowercase().contains("gbk"), "the encoding is reported: {report}");
    // "N imported, M skipped into DIR": N documents are in the user library.
    let line = report.lines().find(|l| l.contains(" imported, ")).expect("a summary line");
    let imported: usize = line.split(' ').next().unwrap().parse().unwrap();
    assert!(imported >= 80, "{line}");
    assert!(line.contains(&user.display().to_string()), "{line}");
    assert_eq!(md_count(&user), imported);
    assert_eq!(files(&starter_library()), starter_before, "the starter library is untouched");
    // 百日咳 is in the starter library: skipped, with the reason.
    assert!(report.contains("百日咳") && report.contains("already exists"), "{report}");

    // Search sees the starter library and the imported documents.
    let hits = json(&run(data.path(), &["knowledge", "search", "--json", "肺泡蛋白质沉积症"]));
    assert_eq!(hits[0]["name"], "肺泡蛋白质沉积症", "{hits:#}");
    let hits = json(&run(data.path(), &["knowledge", "search", "--json", "高血压"]));
    assert_eq!(hits[0]["id"], "hypertension", "{hits:#}");
    // The designer uses the imported documents too.
    let v = json(&run(data.path(), &["designer", "--json", "肺泡蛋白质沉积症怎么治疗？"]));
    assert_eq!(v["diseases"][0]["name"], "肺泡蛋白质沉积症", "{v:#}");

    // Importing again adds nothing and overwrites nothing.
    let before = files(&user);
    let out = run(data.path(), &["knowledge", "import", "--json", file.to_str().unwrap()]);
    let report = json(&out);
    assert_eq!(report["imported"].as_array().map(Vec::len), Some(0));
    assert!(report["skipped"].as_array().unwrap().len() >= 100, "{report:#}");
    assert_eq!(files(&user), before);
}

#[test]
fn import_a_csv_table_and_an_explicit_library() {
    let data = tempfile::tempdir().unwrap();
    let lib = data.path().join("mine");
    let file = shared_data().join("knowledge/chatdoctor-diseases.en.csv");
    let out = run(data.path(), &["knowledge", "import", file.to_str().unwrap(), "--library", lib.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(md_count(&lib) > 500, "{}", md_count(&lib));
    assert!(!data.path().join("knowledge-library").exists(), "--library replaces the user library");
    let hits = json(&run(data.path(), &["knowledge", "search", "--json", "asthma", "--library", lib.to_str().unwrap()]));
    assert!(hits[0]["name"].as_str().is_some_and(|n| n.to_lowercase().contains("asthma")), "{hits:#}");
}

#[test]
fn search_prints_ranked_hits() {
    let data = tempfile::tempdir().unwrap();
    let out = run(data.path(), &["knowledge", "search", "hypertension"]);
    assert!(out.status.success(), "{}", text(&out));
    let first = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string();
    assert!(first.contains("hypertension"), "{}", text(&out));
    let out = run(data.path(), &["knowledge", "search", "zzzqqq"]);
    assert!(out.status.success() && text(&out).contains("no documents match"), "{}", text(&out));
}

#[test]
fn eval_ner_scores_dis_and_sym() {
    let data = tempfile::tempdir().unwrap();
    let file = shared_data().join("eval/cmeee-dev-500.cblue.json");
    let out = run(data.path(), &["knowledge", "eval-ner", file.to_str().unwrap(), "--records", "0..60"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("60 texts") && t.contains("dis") && t.contains("sym"), "{t}");
    let r = json(&run(data.path(), &["knowledge", "eval-ner", "--json", file.to_str().unwrap(), "--records", "0..60"]));
    assert_eq!(r["texts"], 60);
    for kind in ["dis", "sym", "all"] {
        let s = &r[kind];
        let (tp, predicted, gold) = (s["true_positives"].as_u64().unwrap(), s["predicted"].as_u64().unwrap(), s["gold"].as_u64().unwrap());
        assert!(tp > 0 && tp <= predicted && tp <= gold, "{kind}: {s}");
    }
    assert_eq!(r["all"]["gold"].as_u64(), Some(r["dis"]["gold"].as_u64().unwrap() + r["sym"]["gold"].as_u64().unwrap()));
    // With the QASystemOnMedicalKG lexicon more gold entities are found.
    let lex = shared_data().join("knowledge/qasystem-lexicon");
    let dis = format!("dis:{}", lex.join("disease.txt").display());
    let sym = format!("sym:{}", lex.join("symptom.txt").display());
    let more = json(&run(
        data.path(),
        &["knowledge", "eval-ner", "--json", file.to_str().unwrap(), "--records", "0..60", "--lexicon", &dis, "--lexicon", &sym],
    ));
    assert!(more["all"]["true_positives"].as_u64() > r["all"]["true_positives"].as_u64(), "{more} vs {r}");
}

#[test]
fn bad_inputs_fail_with_a_clear_message() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("nothing-here.jsonl");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["knowledge".into(), "import".into(), missing.display().to_string()], "does not exist"),
        (
            vec!["knowledge".into(), "eval-ner".into(), shared_data().join("knowledge/qasystem-lexicon/deny.txt").display().to_string()],
            "not a CBLUE NER file",
        ),
        (vec!["knowledge".into(), "eval-ner".into(), missing.display().to_string()], "nothing-here.jsonl"),
        (
            vec![
                "knowledge".into(),
                "eval-ner".into(),
                shared_data().join("eval/cmeee-dev-500.cblue.json").display().to_string(),
                "--records".into(),
                "400..900".into(),
            ],
            "--records takes START..END",
        ),
        (vec!["designer".into(), "发热".into(), "--lexicon".into(), "sym:/no/such/lexicon.txt".into()], "lexicon file"),
        (vec!["designer".into(), "发热".into(), "--lexicon".into(), "terms.txt".into()], "prefix it with `dis:` or `sym:`"),
        (vec!["knowledge".into(), "search".into(), "发热".into(), "--library".into(), missing.display().to_string()], "cannot load the library"),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(data.path(), &args);
        assert!(!out.status.success(), "{args:?} should fail: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: expected {expected:?} in {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Ctrl-C during an import stops it between documents: every file written is whole and
/// loads, nothing half-written is left, and the exit status says it did not finish.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_an_import_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let user = data.path().join("knowledge-library");
    let file = shared_data().join("knowledge/39health-diseases.gb18030.csv");
    let mut child = command(data.path(), &["knowledge", "import", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until documents are being written, then press Ctrl-C (SIGINT).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while md_count(&user) < 20 {
        assert!(std::time::Instant::now() < deadline, "the import wrote nothing in 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the import ended before it could be interrupted");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "a cancelled import is not a success: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled"), "{}", text(&out));
    let written = md_count(&user);
    assert!(written < 14_000, "it stopped early ({written} documents)");
    let all = files(&user);
    assert!(all.iter().all(|(p, _)| p.extension().is_some_and(|x| x == "md")), "no temporary files are left: {all:?}");
    let lib = doctorglm_knowledge::Library::load(&user).unwrap();
    assert_eq!((lib.len(), lib.skipped.len()), (written, 0), "every written document loads: {:?}", lib.skipped);
}

/// `doctorglm knowledge search 高血压 | head -1`: the reader leaves early; the command ends
/// quietly (killed by SIGPIPE like other tools), without a panic message.
#[cfg(unix)]
#[test]
fn a_reader_that_leaves_early_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let data = tempfile::tempdir().unwrap();
    let mut child = command(data.path(), &["knowledge", "search", "高血压"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the doctorglm binary starts");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success() || out.status.signal() == Some(libc::SIGPIPE), "{:?} {stderr}", out.status);
}
