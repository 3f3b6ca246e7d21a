//! Every importer on every real export in `../shared/data/exports/`, with counts checked
//! against the files (counted independently when the data was described).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use doctorglm_datasets::encoding::TextEncoding;
use doctorglm_datasets::import::{self, FileFormat, Layout, ReadOptions};
use doctorglm_datasets::{Control, DatasetError, Location};

fn export(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/exports").join(name)
}

struct Expect {
    file: &'static str,
    format: FileFormat,
    encoding: Option<TextEncoding>,
    layout: Layout,
    records: usize,
    imported: usize,
    max_turns: usize,
}

fn check(e: &Expect) -> import::ImportOutcome {
    let path = export(e.file);
    let inspection = import::inspect(&path, &ReadOptions::default(), 5, &mut Control::none())
        .unwrap_or_else(|err| panic!("{}: {err}", e.file));
    assert_eq!(inspection.format, e.format, "{}", e.file);
    assert_eq!(inspection.encoding, e.encoding, "{}", e.file);
    assert_eq!(inspection.records, e.records, "{}", e.file);
    assert_eq!(inspection.preview.len(), 5, "{}", e.file);
    let (layout, mapping) = inspection.suggested.clone().unwrap_or_else(|| panic!("{}: no mapping", e.file));
    assert_eq!(layout, e.layout, "{}", e.file);
    let outcome = import::import(&path, Some(&mapping), &ReadOptions::default(), &mut Control::none())
        .unwrap_or_else(|err| panic!("{}: {err}", e.file));
    assert_eq!(outcome.records, e.records, "{}", e.file);
    assert_eq!(outcome.dialogues.len(), e.imported, "{}: rejected {:?}", e.file, &outcome.rejected[..outcome.rejected.len().min(3)]);
    assert_eq!(outcome.dialogues.len() + outcome.rejected.len(), e.records, "{}: nothing silently dropped", e.file);
    let max_turns = outcome.dialogues.iter().map(|d| d.turns.len()).max().unwrap_or(0);
    assert_eq!(max_turns, e.max_turns, "{}", e.file);
    for d in &outcome.dialogues {
        assert!(d.origin.is_some());
        for t in &d.turns {
            assert!(!t.user.trim().is_empty() && !t.assistant.trim().is_empty(), "{}: empty turn in {:?}", e.file, d.origin);
        }
    }
    outcome
}

#[test]
fn cmd_gbk_csv() {
    let out = check(&Expect {
        file: "cmd-internal-medicine-sample.gbk.csv",
        format: FileFormat::Csv,
        encoding: Some(TextEncoding::Gb18030),
        layout: Layout::Cmd,
        records: 7644,
        imported: 7644,
        max_turns: 1,
    });
    let first = &out.dialogues[0];
    assert_eq!(first.department.as_deref(), Some("心血管科"));
    assert_eq!(first.title.as_deref(), Some("高血压患者能吃党参吗？"));
    assert!(first.turns[0].user.starts_with("我有高血压这两天女婿来的时候"));
    assert!(first.turns[0].assistant.starts_with("高血压病人可以口服党参的。"));
    assert_eq!(first.origin, Some(Location::Line(2)));
    let liver = out.dialogues.iter().filter(|d| d.department.as_deref() == Some("肝病科")).count();
    assert_eq!(liver, 3121);
}

#[test]
fn genmedgpt_alpaca_en_and_zh() {
    let en = check(&Expect {
        file: "genmedgpt-5k.en.alpaca.json",
        format: FileFormat::Json,
        encoding: Some(TextEncoding::Utf8),
        layout: Layout::Alpaca,
        records: 5452,
        imported: 5452,
        max_turns: 1,
    });
    let q = &en.dialogues[0].turns[0].user;
    assert!(q.starts_with("If you are a doctor, please answer the medical questions"), "{q}");
    assert!(q.contains("\nDoctor, I have been experiencing sudden and frequent panic attacks."), "{q}");
    assert_eq!(en.dialogues[1].origin, Some(Location::Line(7)), "records of this file span 5 lines each");
    check(&Expect {
        file: "genmedgpt-5k.zh.alpaca.json",
        format: FileFormat::Json,
        encoding: Some(TextEncoding::Utf8),
        layout: Layout::Alpaca,
        records: 5397,
        imported: 5397,
        max_turns: 1,
    });
}

#[test]
fn medicalgpt_sharegpt_jsonl() {
    let out = check(&Expect {
        file: "medicalgpt-sft-1k.sharegpt.jsonl",
        format: FileFormat::Jsonl,
        encoding: Some(TextEncoding::Utf8),
        layout: Layout::ShareGpt,
        records: 1000,
        imported: 1000,
        max_turns: 1,
    });
    assert!(out.dialogues[0].turns[0].user.starts_with("治疗阳痿吃什么药呢？"));
    assert_eq!(out.dialogues[999].origin, Some(Location::Line(1000)));
}

#[test]
fn huatuo_multi_turn() {
    let out = check(&Expect {
        file: "huatuo-liver-cancer-multiturn.json",
        format: FileFormat::Json,
        encoding: Some(TextEncoding::Utf8),
        layout: Layout::HuatuoMultiTurn,
        records: 1000,
        imported: 1000,
        max_turns: 6,
    });
    // Turn counts as in the file: 292 single-turn, 285 two-turn, 272 three-turn, ...
    let count = |n: usize| out.dialogues.iter().filter(|d| d.turns.len() == n).count();
    assert_eq!([count(1), count(2), count(3), count(4), count(5), count(6)], [292, 285, 272, 126, 22, 3]);
    let first = &out.dialogues[0];
    assert_eq!(first.turns.len(), 2);
    assert_eq!(first.turns[0].user, "我听说免疫疗法是治疗晚期肝癌的一种很有效的方法，真的吗？");
    assert!(first.turns[0].assistant.starts_with("是的，免疫疗法是一种新兴的治疗方法"));
    assert_eq!(first.turns[1].user, "但是，这是否适用于所有的肝癌患者？");
    assert!(first.turns.iter().all(|t| !t.user.contains("<bot>") && !t.assistant.contains("<user>")));
}

#[test]
fn cmexam_xlsx_reports_its_one_bad_answer() {
    let out = check(&Expect {
        file: "cmexam-val.xlsx",
        format: FileFormat::Xlsx,
        encoding: None,
        layout: Layout::MultipleChoice,
        records: 6811,
        imported: 6810,
        max_turns: 1,
    });
    assert_eq!(out.rejected.len(), 1);
    assert!(matches!(out.rejected[0].location, Location::Row(r) if r > 1), "{:?}", out.rejected[0]);
    assert!(out.rejected[0].reason.contains("not among the option letters"), "{}", out.rejected[0]);
    let first = &out.dialogues[0];
    assert_eq!(first.origin, Some(Location::Row(2)));
    assert!(first.turns[0].user.contains("\nA 原发病\nB 出血部位\nC 出血量"), "{}", first.turns[0].user);
    assert!(!first.turns[0].user.contains("\\n"));
    assert!(first.turns[0].assistant.starts_with("答案：C 出血量\n解析："), "{}", first.turns[0].assistant);
}

#[test]
fn progress_is_reported_and_cancel_stops() {
    let path = export("cmd-internal-medicine-sample.gbk.csv");
    let mut last = None;
    {
        let mut control = Control::none().with_progress(|p| last = Some(p));
        import::import(&path, None, &ReadOptions::default(), &mut control).map(|_| ()).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(last.map(|p| (p.done, p.total)), Some((7644, Some(7644))));
    let cancel = AtomicBool::new(false);
    let mut calls = 0;
    let result = {
        let mut control = Control::none().with_cancel(&cancel).with_progress(|_| {
            calls += 1;
            cancel.store(true, Ordering::Relaxed);
        });
        import::import(&path, None, &ReadOptions::default(), &mut control)
    };
    assert!(matches!(result, Err(DatasetError::Cancelled)));
    assert_eq!(calls, 1);
}
