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

/// Words just before a place that make it someone's residence.
const ADDRESS_CUES: &[&str] = &["家住", "住址", "现住", "住在", "居住地", "居住在", "户籍地", "户籍", "籍贯", "来自", "老家", "家在", "地址", "现居", "住"];

/// Characters that do not occur in the name of a place (they make 药物性镇 or 膀胱炎区 words).
const NOT_PLACE: &str = "性炎症病痛药疗治感染的所有是了为想要知别";

/// Endings in 区 of things that are not districts (XX社区, XX病区, 误区).
const NOT_COUNTY: &[&str] = &["社区", "小区", "园区", "病区", "景区", "疫区", "校区", "厂区", "误区", "盲区", "分区", "禁区", "灾区"];

/// Words in 区 that are not districts when alone (南山区 and 东城区 are districts).
const NOT_COUNTY_WORD: &[&str] = &["城区", "市区", "郊区", "山区", "牧区", "林区", "矿区", "新区", "老区"];

/// Characters that may stand inside a place name but not begin one (李家村, 隆回县, 来安县).
const PLACE_INNER: &str = "家回来去自从";

/// Han characters that may begin a place name: not cue words (住, 在, 于, 家, 址 …) nor unit suffixes.
const PLACE_CHAR: &str = r"[\p{Han}&&[^住在于是的了我你他她从到往来去回返赴家址为与及自省市区县路街号室栋层村镇乡巷弄]]";

fn date_pattern() -> String {
    let month = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?";
    [
        r"\d{4}\s*年\s*\d{1,2}\s*月(?:\s*\d{1,2}\s*[日号])?".to_string(),
        format!(r"{CN_YEAR}年(?:{CN_MONTH}月(?:{CN_DAY}[日号])?)?"),
        r"\d{2}年\d{1,2}月(?:\d{1,2}[日号])?".to_string(),
        r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}".to_string(),
        r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])".to_string(),
        r"\d{4}[-/.]\d{1,2}".to_string(),
        r"\d{1,2}/\d{1,2}/\d{4}".to_string(),
        format!(r"{month}\s+\d{{1,2}},?\s+\d{{4}}"),
        format!(r"\d{{1,2}}\s+{month}\s+\d{{4}}"),
        r"\d{4}\s*年".to_string(),
    ]
    .join("|")
}

/// A year in Chinese numerals, two or four of them (八五, 一九八五).
const CN_YEAR: &str = "[〇零○一二三四五六七八九]{2}(?:[〇零○一二三四五六七八九]{2})?";
const CN_MONTH: &str = "(?:十[一二]?|[一二三四五六七八九])";
const CN_DAY: &str = "(?:[一二]?十[一二三四五六七八九]?|三十一?|[一二三四五六七八九])";

/// Words before a number that say it is a medical record, admission or outpatient number:
/// 住院号, 住 院 号, 门诊ID, 病案号码, 住院编号, 就诊卡号, 住院号/病案号, ID号, MRN.
fn mrn_label() -> String {
    let unit = r"(?:住\s?院|门\s?诊|急\s?诊|病\s?案|病\s?历|就\s?诊(?:\s?卡)?|登\s?记|住院病案|健康档案)";
    let suffix = r"(?:号\s?码|号|编\s?号|ID|id|卡号)";
    let other = r"病人ID|患者ID|病人编号|患者编号|ID号|IP号|MRN|[Mm]edical [Rr]ecord (?:[Nn]umber|[Nn]o\.?)|[Hh]ospital [Nn]umber";
    format!(r"(?:{unit}\s?{suffix}|{other})(?:\s?/\s?(?:{unit}\s?{suffix}|{other}))?")
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
        let admin = format!(r"{place}(?:{place}|[{PLACE_INNER}]){{0,5}}?(?:自治区|自治州|自治县|特别行政区|省|市|区|县|旗|镇|乡|街道|村)");
        let road = format!(r"(?:{place}|\d){{1,10}}?(?:大道|大街|胡同|路|街|巷|弄)");
        let number = r"(?:[A-Za-z]?\d+|[一二三四五六七八九十]+)(?:号楼|号院|号|弄|栋|幢|单元|楼|层|室|组|区)(?:[-之]\d+)?";
        let community = format!(r"{place}{{2,8}}?(?:小区|花园|公寓|大厦|新村|家园|社区|新城|苑|园)");
        // A street office (粤海街道) before a road, a road before the other units, so that
        // 红旗街 is a road and not the banner 红旗 followed by a stray 街.
        let office = format!(r"{place}(?:{place}|[{PLACE_INNER}]){{0,5}}?街道");
        let part = format!("(?:{office}|{road}|{admin}|{number}|{community})");
        Patterns {
            email: build(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
            digits: build(r"\d(?:[ -]?\d){13,16}(?:[ -]?[\dXx])?"),
            id_context: build(r"(?:身份证|证件|公民身份)(?:号码|号)?\s*(?:是|为|[:：])?\s*$"),
            mobile: build(r"(?:(?:\(\+?86\)|\+86|0086|\+ 86)[-\s]?)?1[3-9]\d(?:[-\s]?\d{4}){2}"),
            landline: build(r"(?:\(0(?:10|2\d|[3-9]\d{2})\)|0(?:10|2\d|[3-9]\d{2})[-\s])\s?[1-9]\d{2,3}[-\s]?\d{4}(?:-\d{1,4}|\s?转\s?\d{1,5})?"),
            phone_context: build(r"(?:电话|座机|手机|联系方式|联系电话|[Tt]el|[Pp]hone)(?:号码|号)?\s*(?:是|为|[:：])?\s*(0\d{9,11})"),
            mrn: build(&format!(r"{}\s*(?:是|为|[:：#]|[Nn][Oo]\.?)?\s*([A-Za-z]{{0,4}}-?\d[A-Za-z0-9-]{{3,19}})", mrn_label())),
            birth_before: build(&format!(
                r"(?:出生日期|出生年月日|出生年月|出生于|生于|生日|出生|DOB|D\.O\.B\.?|[Dd]ate of [Bb]irth|[Bb]irth ?[Dd]ate|[Bb]irthday|[Bb]orn on|[Bb]orn in|[Bb]orn)\s*(?:是|为|在|[:：])?\s*({date})"
            )),
            birth_after: build(&format!(r"({date}|\d{{2}}\s*年)\s*(?:出生|生人|生的|生(?:[,.。;、)\s]|$))")),
            address: build(&format!(r"(?:(?:{PROVINCES})(?:省|市|自治区|特别行政区|壮族自治区|回族自治区|维吾尔自治区)?)?{part}+")),
            address_part: build(&part),
            english_name: build(r"(?:\b(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+|\b(?:[Mm]y name is|[Pp]atient [Nn]ame:?|\bName:|Patient)\s*)([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)"),
        }
    }

    /// Every pattern match as (start, end, kind); overlaps are resolved by the caller.
    pub fn find(&self, text: &str, out: &mut Vec<(usize, usize, PiiKind)>) {
        for m in self.email.find_iter(text) {
            out.push((m.start(), m.end(), PiiKind::Email));
        }
        // A failed candidate is retried from its next digit group, so that a phone number
        // written just before an ID number (138 1234 5678 4403…) does not hide it.
        let mut at = 0;
        while let Some(m) = self.digits.find_at(text, at) {
            if let Some(end) = self.id_number_end(text, m.start(), m.as_str()) {
                out.push((m.start(), end, PiiKind::IdNumber));
                at = end;
            } else {
                at = match m.as_str().find([' ', '-']) {
                    Some(i) => m.start() + i + 1,
                    None => m.end(),
                };
            }
        }
        for m in self.mobile.find_iter(text).chain(self.landline.find_iter(text)) {
            // Not a group inside a longer run of digit groups (1101 0519 4912 3100 2X).
            let in_run = text[..m.start()].trim_end_matches([' ', '-']).len() + 1 == m.start()
                && text[..m.start()].trim_end_matches([' ', '-']).ends_with(|c: char| c.is_ascii_digit());
            if bounded(text, m.start(), m.end()) && !in_run {
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
            let head = &text[floor(text, m.start().saturating_sub(15))..m.start()];
            let cue = ADDRESS_CUES.iter().any(|c| head.ends_with(c) || head.trim_end_matches([':', ' ', '：']).ends_with(c));
            let province = PROVINCES.split('|').any(|p| m.as_str().starts_with(p));
            if self.is_address(m.as_str(), cue, province) {
                out.push((m.start(), m.end(), PiiKind::Address));
            }
        }
        for c in self.english_name.captures_iter(text) {
            if let Some(g) = c.get(1) {
                out.push((g.start(), g.end(), PiiKind::Name));
            }
        }
    }

    /// Where a resident ID number that starts at `start` ends, if `s` (digits, maybe grouped by
    /// spaces or hyphens: 4403 0119 8501 0112 3X, 440301-19850101-123X) begins with one. The
    /// separators are dropped before the checksum; a grouped 15-digit number needs a cue.
    fn id_number_end(&self, text: &str, start: usize, s: &str) -> Option<usize> {
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let symbols: Vec<(usize, char)> = s.char_indices().filter(|(_, c)| *c != ' ' && *c != '-').collect();
        let grouped = symbols.len() != s.len();
        let context = self.id_context.is_match(&text[floor(text, start.saturating_sub(30))..start]);
        for n in [18, 15] {
            if symbols.len() < n || symbols[..n - 1].iter().any(|(_, c)| !c.is_ascii_digit()) {
                continue;
            }
            let (i, c) = symbols[n - 1];
            let end = start + i + c.len_utf8();
            if !bounded(text, start, end) {
                continue;
            }
            let id: String = symbols[..n].iter().map(|(_, c)| *c).collect();
            let valid = idcard::is_valid(&id);
            let whole = n == symbols.len();
            if (valid && (n == 18 || !grouped || context)) || (!grouped && whole && context) {
                return Some(end);
            }
        }
        None
    }

    /// An address must reach street level: a road with a house number, a residential compound,
    /// or a unit number after a district; a province or city alone is not personal.
    ///
    /// Without a house number, a place is an address when it reaches a town, street office or
    /// village under a higher level (隆回县桃洪镇李家村, 南山区粤海街道), names a road inside a
    /// district or county (南山区科技园路), or follows a residence cue (家住, 住址, 户籍地, 来自 …)
    /// and goes below the city (周口淮阳县, 龙湖花园).
    fn is_address(&self, s: &str, cue: bool, province: bool) -> bool {
        let parts: Vec<&str> = self.address_part.find_iter(s).map(|m| m.as_str()).collect();
        let is_street = |p: &str| ["路", "街", "巷", "弄", "胡同", "大道"].iter().any(|x| p.ends_with(x));
        let is_number = |p: &str| p.starts_with(|c: char| c.is_ascii_alphanumeric() || "一二三四五六七八九十".contains(c));
        let is_community = |p: &str| ["小区", "花园", "公寓", "大厦", "新村", "家园", "新城", "苑", "园"].iter().any(|x| p.ends_with(x));
        let is_admin = |p: &str| !is_street(p) && !is_number(p) && !is_community(p);
        let street_then_number = parts
            .iter()
            .enumerate()
            .any(|(i, p)| is_street(p) && parts[i + 1..].iter().any(|q| is_number(q)));
        let community = parts.iter().any(|p| is_community(p));
        let admins = parts.iter().filter(|p| is_admin(p)).count();
        let numbers = parts.iter().filter(|p| is_number(p)).count();
        // Without a house number every part must look like a place name: short, and not a
        // word such as 社区, 病区 or 误区 (药物性镇痛 and 膀胱炎区别 are not places).
        let short = |p: &str| p.chars().count() <= 5 && !p.contains(|c: char| NOT_PLACE.contains(c));
        let named = parts.iter().all(|p| short(p) && !NOT_COUNTY.iter().any(|x| p.ends_with(x)) && !NOT_COUNTY_WORD.contains(p));
        let is_town = |p: &str| ["街道", "镇", "乡", "村"].iter().any(|x| p.ends_with(x)) && !is_street(p) && !is_number(p);
        let is_county = |p: &str| ["区", "县", "旗"].iter().any(|x| p.ends_with(x)) && is_admin(p);
        let towns = parts.iter().filter(|p| is_town(p)).count();
        let county = parts.iter().any(|p| is_county(p));
        let streets = parts.iter().filter(|p| is_street(p)).count();
        let levels = admins + usize::from(province);
        street_then_number
            || (community && (admins >= 1 || numbers >= 1 || cue))
            || (admins >= 2 && numbers >= 1)
            || (named && towns >= 1 && levels >= 2)
            || (named && county && streets >= 1)
            || (named && cue && (county || towns >= 1) && levels + streets >= 2)
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
