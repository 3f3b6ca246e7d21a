//! De-identification: finds personal data in dialogue text, replaces it with typed placeholders
//! (`[姓名]`, `[身份证号]`, `[电话]`, …) and reports what was replaced for the user to review.
//!
//! - [`idcard`]: resident ID number checksums (ISO 7064 MOD 11-2) and birth-date checks.
//! - [`names`]: Chinese names by surname + context cue, with a deny list of medical words.
//! - [`patterns`]: regex detectors for the other kinds.
//! - [`normalize`]: full-width forms folded to ASCII before detection, with offsets mapped back.
//! - [`synthetic`]: a seeded, labelled corpus that measures recall and precision.
//! - [`heldout`]: a second labelled corpus shaped like real notes and exports, kept out of tuning.

pub mod heldout;
pub mod idcard;
pub mod names;
pub mod normalize;
pub mod patterns;
pub mod synthetic;

use std::collections::BTreeMap;

use aho_corasick::{AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::progress::Control;
use crate::record::{Dialogue, Location};

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// An email address.
    Email,
    /// A Chinese resident identity card number.
    IdNumber,
    /// A medical record, admission or outpatient number.
    MedicalRecordNumber,
    /// A mobile or landline phone number.
    Phone,
    /// A date of birth.
    BirthDate,
    /// A postal address.
    Address,
    /// A personal name.
    Name,
}

impl PiiKind {
    /// Every kind, in priority order (an earlier kind wins an overlap).
    pub const ALL: [PiiKind; 7] = [
        PiiKind::Email,
        PiiKind::IdNumber,
        PiiKind::MedicalRecordNumber,
        PiiKind::Phone,
        PiiKind::BirthDate,
        PiiKind::Address,
        PiiKind::Name,
    ];

    /// The placeholder that replaces it.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "[邮箱]",
            PiiKind::IdNumber => "[身份证号]",
            PiiKind::MedicalRecordNumber => "[病历号]",
            PiiKind::Phone => "[电话]",
            PiiKind::BirthDate => "[出生日期]",
            PiiKind::Address => "[地址]",
            PiiKind::Name => "[姓名]",
        }
    }

    fn priority(self) -> usize {
        PiiKind::ALL.iter().position(|k| *k == self).unwrap_or(usize::MAX)
    }
}

/// A piece of personal data found in a text: byte range and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Start byte.
    pub start: usize,
    /// End byte (exclusive).
    pub end: usize,
    /// What it is.
    pub kind: PiiKind,
}

/// One replacement shown to the user for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeidExample {
    /// What was found.
    pub kind: PiiKind,
    /// The original, partly masked (张*, 1101**********002X).
    pub masked: String,
    /// The replaced text around it.
    pub context: String,
    /// Where the dialogue came from.
    pub origin: Option<Location>,
}

/// What de-identification found and replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeidReport {
    /// Replacements by kind.
    pub counts: BTreeMap<PiiKind, usize>,
    /// Dialogues in which anything was replaced.
    pub dialogues_changed: usize,
    /// Dialogues looked at.
    pub dialogues: usize,
    /// Up to [`Deidentifier::examples_per_kind`] examples of each kind.
    pub examples: Vec<DeidExample>,
}

impl DeidReport {
    /// Replacements of all kinds.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }
}

/// Finds and replaces personal data.
pub struct Deidentifier {
    names: names::NameFinder,
    patterns: patterns::Patterns,
    /// Examples kept per kind in a report.
    pub examples_per_kind: usize,
}

impl Default for Deidentifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Deidentifier {
    /// Builds every detector.
    pub fn new() -> Self {
        Deidentifier { names: names::NameFinder::new(), patterns: patterns::Patterns::new(), examples_per_kind: 5 }
    }

    /// Personal data in `text`, sorted, not overlapping (higher-priority and longer spans win).
    /// Detection runs on the text with full-width forms folded to ASCII (１３８ → 138).
    pub fn find(&self, text: &str) -> Vec<Span> {
        let norm = normalize::Normalized::new(text);
        let t = norm.text.as_str();
        let mut raw = Vec::new();
        self.patterns.find(t, &mut raw);
        raw.extend(self.names.find(t).into_iter().map(|(s, e)| (s, e, PiiKind::Name)));
        resolve(raw.into_iter().map(|(s, e, k)| (norm.original(s), norm.original(e), k)).collect())
    }

    /// Replaces the spans of `text` by placeholders.
    pub fn redact(&self, text: &str) -> (String, Vec<Span>) {
        let spans = self.find(text);
        (apply(text, &spans), spans)
    }

    /// De-identifies one dialogue in place; names found anywhere in it are masked everywhere in it.
    pub fn dialogue(&self, d: &mut Dialogue, report: &mut DeidReport) {
        let mut fields: Vec<&mut String> = Vec::new();
        if let Some(s) = d.system.as_mut() {
            fields.push(s);
        }
        if let Some(s) = d.title.as_mut() {
            fields.push(s);
        }
        for t in d.turns.iter_mut() {
            fields.push(&mut t.user);
            fields.push(&mut t.assistant);
        }
        let mut found: Vec<Vec<Span>> = fields.iter().map(|f| self.find(f)).collect();
        // Names (two characters or more) seen once are masked wherever else they occur.
        let mut seen: Vec<String> = Vec::new();
        for (f, spans) in fields.iter().zip(&found) {
            for s in spans.iter().filter(|s| s.kind == PiiKind::Name) {
                let n = &f[s.start..s.end];
                if n.chars().count() >= 2 && !seen.iter().any(|x| x == n) {
                    seen.push(n.to_string());
                }
            }
        }
        if !seen.is_empty() {
            if let Ok(ac) = AhoCorasickBuilder::new().match_kind(MatchKind::LeftmostLongest).build(&seen) {
                for (f, spans) in fields.iter().zip(found.iter_mut()) {
                    let mut extra: Vec<(usize, usize, PiiKind)> =
                        spans.iter().map(|s| (s.start, s.end, s.kind)).collect();
                    let before = extra.len();
                    extra.extend(ac.find_iter(f.as_str()).map(|m| (m.start(), m.end(), PiiKind::Name)));
                    if extra.len() > before {
                        *spans = resolve(extra);
                    }
                }
            }
        }
        report.dialogues += 1;
        let mut changed = false;
        for (f, spans) in fields.into_iter().zip(found) {
            if spans.is_empty() {
                continue;
            }
            changed = true;
            let redacted = apply(f, &spans);
            let mut shift: isize = 0;
            for s in &spans {
                *report.counts.entry(s.kind).or_insert(0) += 1;
                let have = report.examples.iter().filter(|e| e.kind == s.kind).count();
                let start = (s.start as isize + shift) as usize;
                let placeholder = s.kind.placeholder();
                if have < self.examples_per_kind {
                    report.examples.push(DeidExample {
                        kind: s.kind,
                        masked: partly_masked(&f[s.start..s.end]),
                        context: context(&redacted, start, start + placeholder.len()),
                        origin: d.origin,
                    });
                }
                shift += placeholder.len() as isize - (s.end - s.start) as isize;
            }
            *f = redacted;
        }
        if changed {
            report.dialogues_changed += 1;
        }
    }

    /// De-identifies every dialogue in place, with progress and cancellation.
    pub fn dialogues(&self, dialogues: &mut [Dialogue], control: &mut Control<'_>) -> Result<DeidReport> {
        let mut report = DeidReport::default();
        let total = dialogues.len();
        for (i, d) in dialogues.iter_mut().enumerate() {
            control.tick(i + 1, Some(total))?;
            self.dialogue(d, &mut report);
        }
        control.finish(total, Some(total))?;
        tracing::info!(total = report.total(), changed = report.dialogues_changed, "de-identified");
        Ok(report)
    }
}

/// Keeps non-overlapping spans: higher priority first, then longer.
fn resolve(mut raw: Vec<(usize, usize, PiiKind)>) -> Vec<Span> {
    raw.sort_by_key(|&(s, e, k)| (k.priority(), std::cmp::Reverse(e - s), s));
    let mut kept: Vec<Span> = Vec::new();
    for (start, end, kind) in raw {
        if start >= end || kept.iter().any(|k| start < k.end && k.start < end) {
            continue;
        }
        kept.push(Span { start, end, kind });
    }
    kept.sort_by_key(|s| s.start);
    kept
}

fn apply(text: &str, spans: &[Span]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for s in spans {
        out.push_str(&text[at..s.start]);
        out.push_str(s.kind.placeholder());
        at = s.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The original with its middle masked: 张* , 138*******8, 1101************2X.
pub fn partly_masked(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let keep_head = if n <= 3 { 1 } else { (n / 4).max(1) };
    let keep_tail = if n >= 6 { n / 6 } else { 0 };
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < keep_head || i >= n - keep_tail || c.is_whitespace() { *c } else { '*' })
        .collect()
}

fn context(text: &str, start: usize, end: usize) -> String {
    let before: String = text[..start].chars().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
    let after: String = text[end..].chars().take(15).collect();
    format!("{before}{}{after}", &text[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(text: &str) -> String {
        Deidentifier::new().redact(text).0
    }

    #[test]
    fn every_kind_is_replaced() {
        assert_eq!(redact("身份证号：11010519491231002X，请核对"), "身份证号：[身份证号]，请核对");
        assert_eq!(redact("手机13812345678或0571-87654321"), "手机[电话]或[电话]");
        assert_eq!(redact("邮箱 zhang.wei@163.com 已发"), "邮箱 [邮箱] 已发");
        assert_eq!(redact("住院号：ZY20230012，床号3"), "住院号：[病历号]，床号3");
        assert_eq!(redact("出生日期：1985年3月12日"), "出生日期：[出生日期]");
        assert_eq!(redact("他1978-05-06出生"), "他[出生日期]出生");
        assert_eq!(redact("家住浙江省杭州市西湖区文三路123号，"), "家住[地址]，");
        assert_eq!(redact("现住杭州市西湖区文三路8号2栋301室。"), "现住[地址]。");
        assert_eq!(redact("患者王伟，男，45岁"), "患者[姓名]，男，45岁");
        assert_eq!(redact("My name is John Smith and"), "My name is [姓名] and");
    }

    #[test]
    fn clinical_text_is_left_alone() {
        for text in [
            "血压150/95mmHg，空腹血糖7.8mmol/L，白细胞12.5×10^9/L",
            "患者于2023年5月3日就诊，住院3天",
            "上消化道出血，社区医院转诊，存在误区",
            "服用阿司匹林100mg，每日1次，3号床",
            "身高170cm，体重65kg，心率90次/分",
            "订单123456789012345678已付款",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn grouped_and_full_width_numbers_are_found() {
        assert_eq!(redact("身份证 1101 0519 4912 3100 2X。"), "身份证 [身份证号]。");
        assert_eq!(redact("证件号 110105-19491231-002x，已登记"), "证件号 [身份证号]，已登记");
        assert_eq!(redact("１１０１０５１９４９１２３１００２Ｘ，本人"), "[身份证号]，本人");
        assert_eq!(redact("Tel: +86-13812345678 11010519491231002X，"), "Tel: [电话] [身份证号]，");
        assert_eq!(redact("手机 138 1234 5678。"), "手机 [电话]。");
        assert_eq!(redact("电话0755-8888 6666或(+86)13912345678"), "电话[电话]或[电话]");
        assert_eq!(redact("座机 010 6512 3456 转 8021。"), "座机 [电话]。");
        assert_eq!(redact("有事打１３８１２３４５６７８找我"), "有事打[电话]找我");
        // A grouped number that fails the checksum is not an ID number.
        assert_eq!(redact("编号 1101 0519 4912 3100 21。"), "编号 1101 0519 4912 3100 21。");
    }

    #[test]
    fn record_numbers_under_their_many_labels() {
        assert_eq!(redact("住 院 号：0012345。"), "住 院 号：[病历号]。");
        assert_eq!(redact("（病案号 A0123456）"), "（病案号 [病历号]）");
        assert_eq!(redact("门诊ID:MZ230001234 复诊"), "门诊ID:[病历号] 复诊");
        assert_eq!(redact("住院号/病案号：2023-045678。"), "住院号/病案号：[病历号]。");
        assert_eq!(redact("就诊卡号为J1234567，"), "就诊卡号为[病历号]，");
    }

    #[test]
    fn birth_dates_with_short_and_chinese_numeral_years() {
        assert_eq!(redact("八五年出生，高血压"), "[出生日期]出生，高血压");
        assert_eq!(redact("85年3月生，属牛"), "[出生日期]生，属牛");
        assert_eq!(redact("一九八五年三月出生"), "[出生日期]出生");
        assert_eq!(redact("出生日期：19850312。"), "出生日期：[出生日期]。");
        assert_eq!(redact("出生年月：1985.03。"), "出生年月：[出生日期]。");
        assert_eq!(redact("1963年生人，吸烟"), "[出生日期]生人，吸烟");
        assert_eq!(redact("birthday 1977/02/15."), "birthday [出生日期].");
    }

    #[test]
    fn addresses_without_house_numbers() {
        assert_eq!(redact("家住湖南省邵阳市隆回县桃洪镇李家村，务农。"), "家住[地址]，务农。");
        assert_eq!(redact("现住深圳市南山区粤海街道。"), "现住[地址]。");
        assert_eq!(redact("住在南山区科技园路附近。"), "住在[地址]附近。");
        assert_eq!(redact("户籍地：顺庆区红旗街。"), "户籍地：[地址]。");
        assert_eq!(redact("居住地 龙岗区碧桂园。"), "居住地 [地址]。");
        assert_eq!(redact("来自淮阳县白楼镇王庄村3组，"), "来自[地址]，");
    }

    #[test]
    fn names_without_a_patient_cue() {
        assert_eq!(redact("陈建华，男，62岁，因胸痛入院。"), "[姓名]，男，62岁，因胸痛入院。");
        assert_eq!(redact("欧阳志明（女，45岁）复诊"), "[姓名]（女，45岁）复诊");
        assert_eq!(redact("床号 12\t丁家豪\t男\t78岁"), "床号 12\t[姓名]\t男\t78岁");
        assert_eq!(redact("同事小李今天发烧"), "同事小[姓名]今天发烧");
        assert_eq!(redact("老魏说他头晕"), "老[姓名]说他头晕");
        assert_eq!(redact("小上官今天咳嗽"), "小[姓名]今天咳嗽");
        assert_eq!(redact("已通知詹红霞本人。"), "已通知[姓名]本人。");
        assert_eq!(redact("。上官秀珍之女代诉：母亲心悸"), "。[姓名]之女代诉：母亲心悸");
        assert_eq!(redact("。于少华之女代诉"), "。[姓名]之女代诉");
        assert_eq!(redact("经治医师：彭春生。"), "经治医师：[姓名]。");
        assert_eq!(redact("。常某某，男，89岁"), "。[姓名]，男，89岁");
        assert_eq!(redact("常某某医生"), "[姓名]某某医生");
        assert_eq!(redact("Patient John Smith presented with fever."), "Patient [姓名] presented with fever.");
    }

    #[test]
    fn look_alikes_in_real_notes_are_left_alone() {
        for text in [
            "5年生存率约30%，10年生存率更低",
            "乳腺小叶增生，老陈醋泡黑豆，小柴胡汤加减",
            "小于5mm的结节，肾小管损伤，骨小梁稀疏",
            "在人民路社区卫生服务中心打针",
            "深圳市南山区医疗集团组织义诊",
            "血小板 138×10^9/L，胰岛素 8-8-8 U 皮下注射",
            "老姜红糖水，小儿肺炎支原体感染",
            "我是糜烂性胃炎，与患者谈话时不倾听",
            "尿路感染和膀胱炎区别大吗",
            "非药物性镇痛和药物性镇痛两大类",
            "于2019年确诊糖尿病，1985年开始吸烟",
            "出生时体重3.2kg，足月顺产",
            "入院时间：2023-05-12 09:30，血压 138/88 mmHg",
            "患儿，男，5岁，发热2天",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn names_propagate_within_a_dialogue_and_are_reported() {
        let mut d = Dialogue::single("患者张伟，头痛三天。张伟平时血压高。", "张伟您好，建议测血压。");
        d.origin = Some(Location::Line(7));
        let mut report = DeidReport::default();
        Deidentifier::new().dialogue(&mut d, &mut report);
        assert_eq!(d.turns[0].user, "患者[姓名]，头痛三天。[姓名]平时血压高。");
        assert_eq!(d.turns[0].assistant, "[姓名]您好，建议测血压。");
        assert_eq!(report.counts.get(&PiiKind::Name), Some(&3));
        assert_eq!(report.dialogues_changed, 1);
        assert_eq!(report.examples[0].masked, "张*");
        assert!(report.examples[0].context.contains("患者[姓名]，头痛"), "{:?}", report.examples[0]);
        assert_eq!(report.examples[0].origin, Some(Location::Line(7)));
    }

    #[test]
    fn partial_masks() {
        assert_eq!(partly_masked("张伟"), "张*");
        assert_eq!(partly_masked("13812345678"), "13********8");
        assert_eq!(partly_masked("11010519491231002X"), "1101***********02X");
    }
}
