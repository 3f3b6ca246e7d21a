//! File formats of exports and their detection from content (the name is only a hint).

use serde::{Deserialize, Serialize};

/// The container format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Comma-, tab- or semicolon-separated values with a header row.
    Csv,
    /// An Excel workbook (.xlsx, also .xls / .ods through calamine); the first row is the header.
    Xlsx,
    /// One JSON document: an array of records, or an object holding one.
    Json,
    /// JSON Lines: one record per line.
    Jsonl,
}

/// What the content says the format is, with a note when the file name disagrees.
pub fn sniff(name: &str, bytes: &[u8]) -> (FileFormat, Option<String>) {
    let by_name = by_extension(name);
    let by_content = by_content(bytes);
    let chosen = by_content.or(by_name).unwrap_or(FileFormat::Csv);
    let note = match (by_name, by_content) {
        (Some(n), Some(c)) if n != c && !(n == FileFormat::Json && c == FileFormat::Jsonl) => Some(format!(
            "the file is named like {n:?} but its content is {c:?}; it is read as {c:?}"
        )),
        _ => None,
    };
    (chosen, note)
}

fn by_extension(name: &str) -> Option<FileFormat> {
    let lower = name.to_ascii_lowercase();
    let ext = lower.rsplit('.').next()?;
    match ext {
        "csv" | "tsv" | "txt" => Some(FileFormat::Csv),
        "xlsx" | "xlsm" | "xls" | "ods" => Some(FileFormat::Xlsx),
        "json" => Some(FileFormat::Json),
        "jsonl" | "ndjson" => Some(FileFormat::Jsonl),
        _ => None,
    }
}

fn by_content(bytes: &[u8]) -> Option<FileFormat> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        return Some(FileFormat::Xlsx);
    }
    // Look at the first non-blank ASCII character (any text encoding keeps ASCII visible
    // except UTF-16, where NUL bytes are skipped too).
    let first = bytes
        .iter()
        .copied()
        .skip_while(|b| matches!(b, 0xEF | 0xBB | 0xBF | 0xFF | 0xFE))
        .find(|b| !b.is_ascii_whitespace() && *b != 0)?;
    match first {
        b'[' => Some(FileFormat::Json),
        b'{' => {
            // JSONL when a second non-blank line starts with '{' after the first closes.
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1 << 20)]);
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let first_line = lines.next()?;
            let second = lines.next();
            if serde_json::from_str::<serde_json::Value>(first_line).is_ok()
                && second.is_some_and(|l| l.starts_with('{'))
            {
                Some(FileFormat::Jsonl)
            } else {
                Some(FileFormat::Json)
            }
        }
        _ => Some(FileFormat::Csv),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_wins_over_name() {
        assert_eq!(sniff("a.csv", b"[{\"a\":1}]").0, FileFormat::Json);
        assert!(sniff("a.csv", b"[{\"a\":1}]").1.is_some());
        assert_eq!(sniff("a.json", b"{\"a\":1}\n{\"a\":2}\n").0, FileFormat::Jsonl);
        assert_eq!(sniff("a.jsonl", b"{\"a\":\n1}\n").0, FileFormat::Json);
        assert_eq!(sniff("a.txt", b"PK\x03\x04rest").0, FileFormat::Xlsx);
        assert_eq!(sniff("a.json", "ask,answer\n".as_bytes()).0, FileFormat::Csv);
    }
}
