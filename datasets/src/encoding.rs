//! Text encodings of exports: detection (BOM, UTF-8 validity, chardetng) and decoding with encoding_rs.

use encoding_rs::{Encoding, GB18030, UTF_16BE, UTF_16LE, UTF_8};
use serde::{Deserialize, Serialize};

use crate::error::{DatasetError, Result};

/// The encodings hospital exports come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextEncoding {
    /// UTF-8 without a byte-order mark.
    Utf8,
    /// UTF-8 with a byte-order mark (Excel's "CSV UTF-8").
    Utf8Bom,
    /// GB18030, the superset of GBK and GB2312 (Excel's CSV on Chinese Windows).
    Gb18030,
    /// UTF-16 little-endian (with or without BOM; Excel's "Unicode text").
    Utf16Le,
    /// UTF-16 big-endian.
    Utf16Be,
    /// Big5 (traditional Chinese), detected by chardetng.
    Big5,
}

impl TextEncoding {
    /// The encoding_rs encoding that decodes it.
    fn encoding(self) -> &'static Encoding {
        match self {
            TextEncoding::Utf8 | TextEncoding::Utf8Bom => UTF_8,
            TextEncoding::Gb18030 => GB18030,
            TextEncoding::Utf16Le => UTF_16LE,
            TextEncoding::Utf16Be => UTF_16BE,
            TextEncoding::Big5 => encoding_rs::BIG5,
        }
    }

    /// A name a person recognises.
    pub fn label(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Utf8Bom => "UTF-8 (BOM)",
            TextEncoding::Gb18030 => "GB18030/GBK",
            TextEncoding::Utf16Le => "UTF-16LE",
            TextEncoding::Utf16Be => "UTF-16BE",
            TextEncoding::Big5 => "Big5",
        }
    }
}

impl std::fmt::Display for TextEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Guesses the encoding of `bytes` without decoding everything twice.
///
/// Order: BOM, valid UTF-8, UTF-16 without BOM (many NUL bytes in one lane), then chardetng.
/// Binary data (NUL bytes, control characters) is an error.
pub fn detect(bytes: &[u8]) -> Result<TextEncoding> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Ok(TextEncoding::Utf8Bom);
    }
    if bytes.starts_with(&[0xFF, 0xFE]) {
        return Ok(TextEncoding::Utf16Le);
    }
    if bytes.starts_with(&[0xFE, 0xFF]) {
        return Ok(TextEncoding::Utf16Be);
    }
    if let Some(enc) = utf16_without_bom(bytes) {
        return Ok(enc);
    }
    if let Some(offset) = binary_offset(bytes) {
        return Err(DatasetError::Binary { offset });
    }
    if std::str::from_utf8(bytes).is_ok() {
        return Ok(TextEncoding::Utf8);
    }
    let mut det = chardetng::EncodingDetector::new();
    det.feed(bytes, true);
    let guess = det.guess(Some(b"cn"), true);
    let enc = if guess == encoding_rs::BIG5 { TextEncoding::Big5 } else { TextEncoding::Gb18030 };
    tracing::debug!(guess = guess.name(), chosen = enc.label(), "encoding guessed");
    Ok(enc)
}

/// Decodes `bytes` as `enc`, failing at the first undecodable sequence (never replacing silently).
pub fn decode(bytes: &[u8], enc: TextEncoding) -> Result<String> {
    let body = strip_bom(bytes, enc);
    let encoding = enc.encoding();
    match encoding.decode_without_bom_handling_and_without_replacement(body) {
        Some(text) => Ok(text.into_owned()),
        None => {
            let offset = first_bad_offset(body, encoding);
            let line = body[..offset.min(body.len())].iter().filter(|&&b| b == b'\n').count() + 1;
            let hint = match detect(bytes) {
                Ok(other) if other != enc => {
                    if decode_ok(bytes, other) {
                        format!("; the file looks like {}, choose that encoding", other.label())
                    } else {
                        String::new()
                    }
                }
                Err(DatasetError::Binary { .. }) => "; the file looks binary".to_string(),
                _ => "; the file may be damaged or in another encoding".to_string(),
            };
            Err(DatasetError::Decode { encoding: enc.label().to_string(), offset, line, hint })
        }
    }
}

/// Detects and decodes in one step.
pub fn decode_detected(bytes: &[u8]) -> Result<(String, TextEncoding)> {
    let enc = detect(bytes)?;
    let text = decode(bytes, enc)?;
    if text.trim().is_empty() {
        return Err(DatasetError::Empty);
    }
    Ok((text, enc))
}

fn decode_ok(bytes: &[u8], enc: TextEncoding) -> bool {
    enc.encoding().decode_without_bom_handling_and_without_replacement(strip_bom(bytes, enc)).is_some()
}

fn strip_bom(bytes: &[u8], enc: TextEncoding) -> &[u8] {
    let bom: &[u8] = match enc {
        TextEncoding::Utf8Bom | TextEncoding::Utf8 => &[0xEF, 0xBB, 0xBF],
        TextEncoding::Utf16Le => &[0xFF, 0xFE],
        TextEncoding::Utf16Be => &[0xFE, 0xFF],
        _ => &[],
    };
    bytes.strip_prefix(bom).unwrap_or(bytes)
}

/// Byte offset of the first sequence `encoding` cannot decode.
fn first_bad_offset(bytes: &[u8], encoding: &'static Encoding) -> usize {
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(4096);
    let mut read_total = 0;
    loop {
        out.clear();
        let (result, read) =
            decoder.decode_to_string_without_replacement(&bytes[read_total..], &mut out, true);
        read_total += read;
        match result {
            encoding_rs::DecoderResult::InputEmpty => return bytes.len(),
            encoding_rs::DecoderResult::OutputFull => {
                out.reserve(4096);
                if out.capacity() > (64 << 20) {
                    return read_total;
                }
            }
            encoding_rs::DecoderResult::Malformed(bad, pending) => {
                return read_total.saturating_sub(bad as usize + pending as usize);
            }
        }
    }
}

/// UTF-16 text without a BOM: most bytes in one lane of the first KiB are zero.
fn utf16_without_bom(bytes: &[u8]) -> Option<TextEncoding> {
    let sample = &bytes[..bytes.len().min(1024) & !1];
    if sample.len() < 8 {
        return None;
    }
    let pairs = sample.len() / 2;
    let even_zero = sample.iter().step_by(2).filter(|&&b| b == 0).count();
    let odd_zero = sample.iter().skip(1).step_by(2).filter(|&&b| b == 0).count();
    if odd_zero * 10 >= pairs * 7 && even_zero * 10 < pairs {
        Some(TextEncoding::Utf16Le)
    } else if even_zero * 10 >= pairs * 7 && odd_zero * 10 < pairs {
        Some(TextEncoding::Utf16Be)
    } else {
        None
    }
}

/// Offset of a byte that no text export contains: NUL, or many C0 control characters.
fn binary_offset(bytes: &[u8]) -> Option<usize> {
    let sample = &bytes[..bytes.len().min(64 * 1024)];
    if let Some(pos) = sample.iter().position(|&b| b == 0) {
        return Some(pos);
    }
    let controls: Vec<usize> = sample
        .iter()
        .enumerate()
        .filter(|(_, &b)| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0C))
        .map(|(i, _)| i)
        .collect();
    if !controls.is_empty() && controls.len() * 100 >= sample.len().max(1) {
        return controls.first().copied();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_boms_and_gbk() {
        assert_eq!(detect(b"\xEF\xBB\xBFa,b\n").ok(), Some(TextEncoding::Utf8Bom));
        assert_eq!(detect("问题,回答\n".as_bytes()).ok(), Some(TextEncoding::Utf8));
        let (gbk, _, _) = GB18030.encode("问题,回答\n高血压患者能吃党参吗？,可以。\n");
        assert_eq!(detect(&gbk).ok(), Some(TextEncoding::Gb18030));
        assert_eq!(decode(&gbk, TextEncoding::Gb18030).ok().as_deref(), Some("问题,回答\n高血压患者能吃党参吗？,可以。\n"));
        let mut le = vec![0xFF, 0xFE];
        for u in "问题,answer\n".encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(decode_detected(&le).ok().map(|x| x.1), Some(TextEncoding::Utf16Le));
        let mut be = Vec::new();
        for u in "question,answer\nwhat,that\n".encode_utf16() {
            be.extend_from_slice(&u.to_be_bytes());
        }
        assert_eq!(decode_detected(&be).ok(), Some(("question,answer\nwhat,that\n".into(), TextEncoding::Utf16Be)));
    }

    #[test]
    fn gbk_forced_as_utf8_is_a_clear_error() {
        let (gbk, _, _) = GB18030.encode("ask,answer\n头痛怎么办,多休息\n");
        let err = decode(&gbk, TextEncoding::Utf8).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not valid UTF-8"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("GB18030"), "{err}");
    }

    #[test]
    fn binary_and_empty_are_errors() {
        assert!(matches!(detect(b"PK\x03\x04\x00\x00junk"), Err(DatasetError::Binary { offset: 4 })));
        assert!(matches!(decode_detected(b"\xEF\xBB\xBF  \n"), Err(DatasetError::Empty)));
    }
}
