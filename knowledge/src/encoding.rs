//! Text decoding with encoding detection: UTF-8 (with or without BOM), UTF-16 (BOM, or
//! detected from its zero bytes), GBK / GB18030, with `chardetng` as the last guess.
use encoding_rs::{Encoding, GB18030, UTF_16BE, UTF_16LE, UTF_8};

/// Text decoded from bytes, with what was found on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The text.
    pub text: String,
    /// The encoding used, by name ("UTF-8", "GB18030", "UTF-16LE" ...).
    pub encoding: &'static str,
    /// Whether a byte order mark was present.
    pub had_bom: bool,
    /// How many malformed sequences were replaced by U+FFFD (0 for clean input).
    pub replaced: usize,
}

/// Why bytes could not be decoded as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// NUL bytes or other binary content.
    #[error("this looks like a binary file, not text (it contains {0} NUL bytes and no UTF-16 byte order mark)")]
    Binary(usize),
    /// Too many malformed sequences in every encoding we tried.
    #[error("the text is not valid {encoding}: {replaced} malformed sequences in {len} bytes; save it as UTF-8 and retry")]
    Malformed {
        /// The best guess.
        encoding: &'static str,
        /// Malformed sequences.
        replaced: usize,
        /// Input length.
        len: usize,
    },
}

/// Decodes bytes of unknown encoding. A few malformed sequences (a file cut in the middle of
/// a character) are replaced and counted; many make it an error.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    if let Some((enc, bom_len)) = Encoding::for_bom(bytes) {
        let (text, had_errors) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        let replaced = if had_errors { count_replacements(&text) } else { 0 };
        return check(Decoded { text: text.into_owned(), encoding: enc.name(), had_bom: true, replaced }, bytes.len());
    }
    if let Some(enc) = sniff_utf16(bytes) {
        let (text, had_errors) = enc.decode_without_bom_handling(bytes);
        let replaced = if had_errors { count_replacements(&text) } else { 0 };
        return check(Decoded { text: text.into_owned(), encoding: enc.name(), had_bom: false, replaced }, bytes.len());
    }
    let nuls = bytes.iter().filter(|&&b| b == 0).count();
    if nuls > 0 {
        return Err(DecodeError::Binary(nuls));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(Decoded { text: text.to_string(), encoding: UTF_8.name(), had_bom: false, replaced: 0 });
    }
    // UTF-8 cut in the middle of its last character.
    if let Err(e) = std::str::from_utf8(bytes) {
        if e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4 && e.valid_up_to() > 0 {
            let text = String::from_utf8_lossy(bytes).into_owned();
            return check(Decoded { text, encoding: UTF_8.name(), had_bom: false, replaced: 1 }, bytes.len());
        }
    }
    // Not UTF-8. GB18030 (a superset of GBK and GB2312, and what encoding_rs uses for the
    // "GBK" label) when it decodes cleanly or nearly so, else chardetng's guess, else the best.
    let (text, had_errors) = GB18030.decode_without_bom_handling(bytes);
    let replaced = if had_errors { count_replacements(&text) } else { 0 };
    if replaced <= 2 + bytes.len() / 2000 {
        return check(Decoded { text: text.into_owned(), encoding: GB18030.name(), had_bom: false, replaced }, bytes.len());
    }
    let mut candidates: Vec<&'static Encoding> = vec![UTF_8, GB18030];
    let mut det = chardetng::EncodingDetector::new();
    det.feed(bytes, true);
    let guess = det.guess(None, true);
    if !candidates.contains(&guess) && guess != encoding_rs::GBK {
        candidates.push(guess);
    }
    let mut best: Option<Decoded> = None;
    for enc in candidates {
        let (text, had_errors) = enc.decode_without_bom_handling(bytes);
        let replaced = if had_errors { count_replacements(&text) } else { 0 };
        let better = best.as_ref().is_none_or(|b| replaced < b.replaced);
        if better {
            best = Some(Decoded { text: text.into_owned(), encoding: enc.name(), had_bom: false, replaced });
        }
        if replaced == 0 {
            break;
        }
    }
    match best {
        Some(d) => check(d, bytes.len()),
        None => Err(DecodeError::Malformed { encoding: "UTF-8", replaced: 0, len: bytes.len() }),
    }
}

fn check(d: Decoded, len: usize) -> Result<Decoded, DecodeError> {
    // Accept a handful of bad sequences (cut files), refuse junk.
    let tolerated = 2 + len / 2000;
    if d.replaced > tolerated {
        return Err(DecodeError::Malformed { encoding: d.encoding, replaced: d.replaced, len });
    }
    if d.replaced > 0 {
        tracing::warn!(encoding = d.encoding, replaced = d.replaced, "malformed sequences replaced while decoding");
    }
    // Control characters other than whitespace mean binary content decoded by luck.
    let controls = d.text.chars().filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}')).count();
    if controls > 2 + d.text.len() / 1000 {
        return Err(DecodeError::Binary(controls));
    }
    Ok(d)
}

fn count_replacements(text: &str) -> usize {
    text.chars().filter(|&c| c == '\u{fffd}').count()
}

/// UTF-16 without BOM: ASCII-heavy UTF-16 has a NUL in every other byte.
fn sniff_utf16(bytes: &[u8]) -> Option<&'static Encoding> {
    if bytes.len() < 4 || !bytes.len().is_multiple_of(2) {
        return None;
    }
    let sample = &bytes[..bytes.len().min(4096)];
    let pairs = sample.len() / 2;
    let even_nul = sample.iter().step_by(2).filter(|&&b| b == 0).count();
    let odd_nul = sample.iter().skip(1).step_by(2).filter(|&&b| b == 0).count();
    if odd_nul * 10 >= pairs * 4 && even_nul * 10 < pairs {
        Some(UTF_16LE)
    } else if even_nul * 10 >= pairs * 4 && odd_nul * 10 < pairs {
        Some(UTF_16BE)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_utf8_with_and_without_bom() {
        let d = decode("发热 fever".as_bytes()).unwrap();
        assert_eq!((d.text.as_str(), d.encoding, d.had_bom), ("发热 fever", "UTF-8", false));
        let mut b = vec![0xEF, 0xBB, 0xBF];
        b.extend_from_slice("咳嗽".as_bytes());
        let d = decode(&b).unwrap();
        assert_eq!((d.text.as_str(), d.had_bom), ("咳嗽", true));
    }

    #[test]
    fn decodes_gbk_and_gb18030() {
        let (gbk, _, _) = encoding_rs::GBK.encode("扁桃体炎，咽痛，发热三天了。医生建议多喝水。");
        let d = decode(&gbk).unwrap();
        assert_eq!(d.text, "扁桃体炎，咽痛，发热三天了。医生建议多喝水。");
        assert_eq!(d.encoding, "gb18030");
        // A four-byte GB18030 sequence (not in GBK).
        let (gb, _, _) = GB18030.encode("病名𠀀测试文字足够长以便识别");
        assert_eq!(decode(&gb).unwrap().text, "病名𠀀测试文字足够长以便识别");
    }

    #[test]
    fn decodes_utf16_with_bom_and_sniffed() {
        let mut le = vec![0xFF, 0xFE];
        for u in "fever 发热".encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(decode(&le).unwrap().text, "fever 发热");
        let mut be_nobom = Vec::new();
        for u in "name,alias\nflu,influenza\n".encode_utf16() {
            be_nobom.extend_from_slice(&u.to_be_bytes());
        }
        let d = decode(&be_nobom).unwrap();
        assert_eq!((d.text.as_str(), d.encoding), ("name,alias\nflu,influenza\n", "UTF-16BE"));
    }

    #[test]
    fn refuses_binary_junk() {
        let junk: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let err = decode(&junk).unwrap_err();
        assert!(matches!(err, DecodeError::Binary(_) | DecodeError::Malformed { .. }), "{err:?}");
        assert!(matches!(decode(b"PK\x03\x04\x00\x00rest"), Err(DecodeError::Binary(_))));
    }

    #[test]
    fn tolerates_a_character_cut_at_the_end() {
        let (gbk, _, _) = encoding_rs::GBK.encode("病毒性感冒，咽痛，发热三天了，流鼻涕。");
        let mut gbk = gbk.into_owned();
        gbk.pop();
        let d = decode(&gbk).unwrap();
        assert!(d.text.starts_with("病毒性感冒"));
        assert_eq!(d.replaced, 1);
    }
}
