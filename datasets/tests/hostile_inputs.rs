//! Inputs a hospital export can really arrive as: truncated, binary, mislabelled, oversized,
//! empty, half-broken. Each gives a clear error or a row-level issue, never a silent drop.

use doctorglm_datasets::encoding::TextEncoding;
use doctorglm_datasets::import::{self, FileFormat, ReadOptions};
use doctorglm_datasets::{Control, DatasetError, Location};

fn read(name: &str, bytes: &[u8]) -> Result<import::ImportOutcome, DatasetError> {
    read_with(name, bytes, &ReadOptions::default())
}

fn read_with(name: &str, bytes: &[u8], options: &ReadOptions) -> Result<import::ImportOutcome, DatasetError> {
    let (table, notes) = import::read_bytes(name, bytes, options, &mut Control::none())?;
    let inspection = import::inspect_table(&table, notes, 3);
    let mapping = inspection
        .suggested
        .map(|s| s.1)
        .ok_or_else(|| DatasetError::Mapping("no mapping suggested".into()))?;
    import::import_table(&table, &mapping, &mut Control::none())
}

fn message(r: Result<import::ImportOutcome, DatasetError>) -> String {
    match r {
        Ok(o) => panic!("expected an error, got {} dialogues and {:?}", o.dialogues.len(), o.rejected),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_json_names_the_place() {
    let text = r#"[{"instruction": "头痛怎么办", "input": "", "output": "休息"},
 {"instruction": "发烧怎么办", "input": "", "outp"#;
    let err = message(read("a.json", text.as_bytes()));
    assert!(err.contains("invalid JSON at line 2"), "{err}");
    assert!(err.contains("is the file complete"), "{err}");
}

#[test]
fn a_truncated_last_jsonl_line_is_reported_and_the_rest_imported() {
    let text = "{\"ask\": \"头痛怎么办\", \"answer\": \"休息\"}\n{\"ask\": \"发烧\", \"answer\": \"降温\"}\n{\"ask\": \"咳嗽\", \"ans";
    let out = read("a.jsonl", text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.dialogues.len(), 2);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].location, Location::Line(3));
    assert!(out.rejected[0].reason.contains("invalid JSON"), "{}", out.rejected[0].reason);
}

#[test]
fn binary_junk_is_refused() {
    // A deterministic pseudo-random byte soup, as a damaged or wrong file would be.
    let mut x: u32 = 12345;
    let junk: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    let err = message(read("export.csv", &junk));
    assert!(err.contains("not a text export") || err.contains("not valid"), "{err}");
    let err = message(read("export.xlsx", b"PK\x03\x04 this is not really a zip archive"));
    assert!(err.contains("spreadsheet"), "{err}");
}

#[test]
fn gbk_file_is_detected_and_a_wrong_forced_encoding_is_explained() {
    let (gbk, _, _) = encoding_rs::GB18030.encode("department,title,ask,answer\n内科,头痛,头痛三天怎么办？,多休息，必要时就医。\n");
    // Named .json but holds a GBK CSV: read by content, with a note.
    let (table, notes) = import::read_bytes("export.json", &gbk, &ReadOptions::default(), &mut Control::none())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(table.format, FileFormat::Csv);
    assert_eq!(table.encoding, Some(TextEncoding::Gb18030));
    assert_eq!(notes.len(), 1, "{notes:?}");
    let out = read("export.csv", &gbk).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.dialogues[0].turns[0].user, "头痛三天怎么办？");
    // The user insists it is UTF-8.
    let forced = ReadOptions { encoding: Some(TextEncoding::Utf8), ..Default::default() };
    let err = message(read_with("export.csv", &gbk, &forced));
    assert!(err.contains("not valid UTF-8") && err.contains("line 2") && err.contains("GB18030"), "{err}");
}

#[test]
fn utf16_with_bom_imports() {
    let mut bytes = vec![0xFF, 0xFE];
    for u in "问题\t回答\n头痛怎么办\t多休息\n".encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    let out = read("export.txt", &bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.encoding, Some(TextEncoding::Utf16Le));
    assert_eq!(out.dialogues[0].turns[0].assistant, "多休息");
}

#[test]
fn a_huge_field_is_reported_with_its_line() {
    let huge = "很".repeat(200_001);
    let text = format!("ask,answer\n头痛,休息\n发烧,{huge}\n咳嗽,喝水\n");
    let out = read("a.csv", text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.dialogues.len(), 2);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].location, Location::Line(3));
    assert!(out.rejected[0].reason.contains("200001 characters"), "{}", out.rejected[0].reason);
}

#[test]
fn empty_files_are_refused() {
    for bytes in [&b""[..], b"   \n\n", b"\xEF\xBB\xBF", b"\xEF\xBB\xBF\r\n"] {
        let err = message(read("a.csv", bytes));
        assert!(err.contains("empty"), "{bytes:?}: {err}");
    }
    let err = message(read("a.json", b"[]"));
    assert!(err.contains("holds no records"), "{err}");
}

#[test]
fn broken_rows_are_reported_not_dropped() {
    let text = "ask,answer\n头痛,休息\n只有一列\n,空问题的回答\n发烧,\n咳嗽,喝水,多余\n腹泻,补液\n";
    let out = read("a.csv", text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.dialogues.len(), 2);
    let lines: Vec<(Location, &str)> = out.rejected.iter().map(|r| (r.location, r.reason.as_str())).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0].0, Location::Line(3));
    assert!(lines[0].1.contains("1 fields, the header has 2"));
    assert!(lines[1].1.contains("question is empty"));
    assert!(lines[2].1.contains("answer"));
    assert_eq!(lines[3].0, Location::Line(6));
    assert_eq!(out.dialogues.len() + out.rejected.len(), 6);
}

#[test]
fn malformed_multi_turn_records_say_what_is_wrong() {
    let text = r#"[
{"instruction": " <user>: 头痛 <bot>: 休息 <user>: 还痛", "input": "", "output": "就医"},
{"instruction": " <user>: 头痛 <user>: 还痛", "input": "", "output": "就医"},
{"instruction": " <user>: 头痛 <bot>: 休息", "input": "", "output": "就医"}
]"#;
    let out = read("h.json", text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.dialogues.len(), 1);
    assert_eq!(out.dialogues[0].turns.len(), 2);
    assert_eq!(out.rejected.len(), 2);
    assert_eq!(out.rejected[0].location, Location::Line(3));
    assert!(out.rejected[0].reason.contains("should be <bot>"), "{}", out.rejected[0].reason);
    assert!(out.rejected[1].reason.contains("ends with a <bot>"), "{}", out.rejected[1].reason);
    let sharegpt = "{\"conversations\": [{\"from\": \"human\", \"value\": \"头痛\"}]}\n{\"conversations\": [{\"from\": \"alien\", \"value\": \"x\"}, {\"from\": \"gpt\", \"value\": \"y\"}]}\n{\"conversations\": [{\"from\": \"human\", \"value\": \"头痛\"}, {\"from\": \"gpt\", \"value\": \"休息\"}]}\n";
    let out = read("s.jsonl", sharegpt.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.dialogues.len(), 1);
    assert!(out.rejected[0].reason.contains("unanswered"), "{}", out.rejected[0].reason);
    assert!(out.rejected[1].reason.contains("unknown role 'alien'"), "{}", out.rejected[1].reason);
}

#[test]
fn a_mapping_to_a_missing_column_is_refused() {
    let (table, _) = import::read_bytes("a.csv", "ask,answer\n头痛,休息\n".as_bytes(), &ReadOptions::default(), &mut Control::none())
        .unwrap_or_else(|e| panic!("{e}"));
    let mapping = import::Mapping {
        shape: import::Shape::QuestionAnswer { question: vec!["问题".into()], answer: "answer".into(), history: None, inline_turns: false },
        department: None,
        title: None,
        system: None,
    };
    let err = import::import_table(&table, &mapping, &mut Control::none()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("no column '问题'") && err.contains("ask, answer"), "{err}");
}
