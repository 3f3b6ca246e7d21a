//! Pattern detectors: emails, resident ID numbers, phones, medical record numbers, birth dates
//! and addresses, each a regex plus checks that a regex alone cannot make (checksums, boundaries).

use regex::Regex;

use super::idcard;
use super::PiiKind;

/// Compiled patterns for every kind except names.
pub struct Patterns {
    email: Regex,
    digits: Regex,
    id_context: Regex,
    mobile: Regex,
    landline: Regex,
    phone_context: Regex,
    mrn: Regex,
    birth_before: Regex,
    birth_after: Regex,
    address: Regex,
    address_part: Regex,
    english_name: Regex,
}

const PROVINCES: &str = "北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南|广东|海南|四川|贵州|云南|陕西|甘肃|青海|台湾|内蒙古|广西|西藏|宁夏|新疆|香港|澳门";

/// Han characters that may begin a place name: not cue words (住, 在, 于, 家, 址 …) nor unit suffixes.
const PLACE_CHAR: &str = r"[\p{Han}&&[^住在于是的了我你他她从到往来去回返赴家址为与及自省市区县路街号室栋层村镇乡巷弄]]";

fn date_pattern() -> String {
    let month = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?";
    [
        r"\d{4}\s*年\s*\d{1,2}\s*月(?:\s*\d{1,2}\s*[日号])?".to_string(),
        r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}".to_string(),
        r"\d{1,2}/\d{1,2}/\d{4}".to_string(),
        format!(r"{month}\s+\d{{1,2}},?\s+\d{{4}}"),
        format!(r"\d{{1,2}}\s+{month}\s+\d{{4}}"),
        r"\d{4}\s*年".to_string(),
    ]
    .join("|")
}

fn build(p: &str) -> Regex {
    // The patterns are constants of this file; a failure is a programming error caught by tests.
    Regex::new(p).unwrap_or_else(|e| panic!("bad built-in pattern {p}: {e}"))
}

impl Patterns {
    /// Compiles every pattern.
    pub fn new() -> Self {
        let date = date_pattern();
        let place = PLACE_CHAR;
        let admin = format!(r"{place}{{1,6}}?(?:自治区|自治州|自治县|特别行政区|省|市|区|县|旗|镇|乡|街道|村)");
        let road = format!(r"(?:{place}|\d){{1,10}}?(?:大道|大街|胡同|路|街|巷|弄)");
        let number = r"(?:[A-Za-z]?\d+|[一二三四五六七八九十]+)(?:号楼|号院|号|弄|栋|幢|单元|楼|层|室|组)(?:[-之]\d+)?";
        let community = format!(r"{place}{{2,8}}?(?:小区|花园|公寓|大厦|新村|家园|社区|苑)");
        let part = format!("(?:{admin}|{road}|{number}|{community})");
        Patterns {
            email: build(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
            digits: build(r"\d{15,18}[Xx]?"),
            id_context: build(r"(?:身份证|证件|公民身份)(?:号码|号)?\s*(?:是|为|[:：])?\s*$"),
            mobile: build(r"(?:(?:\+|00)?86[-\s]?)?1[3-9]\d(?:[-\s]?\d{4}){2}"),
            landline: build(r"(?:\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3}[-－])\s?\d{7,8}(?:-\d{1,4})?"),
            phone_context: build(r"(?:电话|座机|手机|联系方式|联系电话|[Tt]el|[Pp]hone)(?:号码|号)?\s*(?:是|为|[:：])?\s*(0\d{9,11})"),
            mrn: build(r"(?:病历号|病案号|住院号|门诊号|就诊号|就诊卡号|登记号|病人ID|患者ID|MRN|[Mm]edical [Rr]ecord (?:[Nn]umber|[Nn]o\.?)|[Hh]ospital [Nn]umber)(?:码)?\s*(?:是|为|[:：#]|[Nn]o\.?)?\s*([A-Za-z]{0,4}-?\d[A-Za-z0-9-]{3,19})"),
            birth_before: build(&format!(
                r"(?:出生日期|出生年月日|出生年月|出生于|生于|生日|出生|DOB|D\.O\.B\.?|[Dd]ate of [Bb]irth|[Bb]orn on|[Bb]orn in|[Bb]orn)\s*(?:是|为|在|[:：])?\s*({date})"
            )),
            birth_after: build(&format!(r"({date})\s*(?:出生|生人)")),
            address: build(&format!(r"(?:(?:{PROVINCES})(?:省|市|自治区|特别行政区|壮族自治区|回族自治区|维吾尔自治区)?)?{part}+")),
            address_part: build(&part),
            english_name: build(r"(?:\b(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+|\b(?:[Mm]y name is|[Pp]atient [Nn]ame:?|\bName:)\s*)([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)"),
        }
    }

    /// Every pattern match as (start, end, kind); overlaps are resolved by the caller.
    pub fn find(&self, text: &str, out: &mut Vec<(usize, usize, PiiKind)>) {
        for m in self.email.find_iter(text) {
            out.push((m.start(), m.end(), PiiKind::Email));
        }
        for m in self.digits.find_iter(text) {
            if !bounded(text, m.start(), m.end()) {
                continue;
            }
            let s = m.as_str();
            let context = self.id_context.is_match(&text[floor(text, m.start().saturating_sub(30))..m.start()]);
            if idcard::is_valid(s) || (context && (s.len() == 18 || s.len() == 15)) {
                out.push((m.start(), m.end(), PiiKind::IdNumber));
            }
        }
        for m in self.mobile.find_iter(text).chain(self.landline.find_iter(text)) {
            if bounded(text, m.start(), m.end()) {
                out.push((m.start(), m.end(), PiiKind::Phone));
            }
        }
        for c in self.phone_context.captures_iter(text) {
            if let Some(g) = c.get(1) {
                if bounded(text, g.start(), g.end()) {
                    out.push((g.start(), g.end(), PiiKind::Phone));
                }
            }
        }
        for c in self.mrn.captures_iter(text) {
            if let Some(g) = c.get(1) {
                out.push((g.start(), g.end(), PiiKind::MedicalRecordNumber));
            }
        }
        for c in self.birth_before.captures_iter(text).chain(self.birth_after.captures_iter(text)) {
            if let Some(g) = c.get(1) {
                out.push((g.start(), g.end(), PiiKind::BirthDate));
            }
        }
        for m in self.address.find_iter(text) {
            if self.is_address(m.as_str()) {
                out.push((m.start(), m.end(), PiiKind::Address));
            }
        }
        for c in self.english_name.captures_iter(text) {
            if let Some(g) = c.get(1) {
                out.push((g.start(), g.end(), PiiKind::Name));
            }
        }
    }

    /// An address must reach street level: a road with a house number, a residential compound,
    /// or a unit number after a district; a province or city alone is not personal.
    fn is_address(&self, s: &str) -> bool {
        let parts: Vec<&str> = self.address_part.find_iter(s).map(|m| m.as_str()).collect();
        let is_street = |p: &str| ["路", "街", "巷", "弄", "胡同", "大道"].iter().any(|x| p.ends_with(x));
        let is_number = |p: &str| p.starts_with(|c: char| c.is_ascii_alphanumeric() || "一二三四五六七八九十".contains(c));
        let is_community = |p: &str| ["小区", "花园", "公寓", "大厦", "新村", "家园", "苑"].iter().any(|x| p.ends_with(x));
        let is_admin = |p: &str| !is_street(p) && !is_number(p) && !is_community(p);
        let street_then_number = parts
            .iter()
            .enumerate()
            .any(|(i, p)| is_street(p) && parts[i + 1..].iter().any(|q| is_number(q)));
        let community = parts.iter().any(|p| is_community(p));
        let admins = parts.iter().filter(|p| is_admin(p)).count();
        let numbers = parts.iter().filter(|p| is_number(p)).count();
        street_then_number || (community && (admins >= 1 || numbers >= 1)) || (admins >= 2 && numbers >= 1)
    }
}

impl Default for Patterns {
    fn default() -> Self {
        Self::new()
    }
}

/// Rounds `i` down to a char boundary.
fn floor(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The match is not part of a longer run of ASCII letters or digits.
fn bounded(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !after.is_some_and(|c| c.is_ascii_alphanumeric())
}
