//! A seeded synthetic corpus of clinical sentences with personal data inserted at known places,
//! and the recall / precision of a [`Deidentifier`] on it.

use std::collections::BTreeMap;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{idcard, Deidentifier, PiiKind, Span};

/// A text and the personal data in it.
#[derive(Debug, Clone)]
pub struct LabelledText {
    /// The text.
    pub text: String,
    /// Where the personal data is.
    pub entities: Vec<Span>,
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "高", "林", "罗",
    "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾", "肖", "田", "董", "袁", "潘", "蒋", "蔡", "余",
    "杜", "叶", "程", "苏", "魏", "吕", "丁", "任", "沈", "姚", "卢", "姜", "崔", "钟", "谭", "陆", "汪", "范", "金", "石",
    "欧阳", "司马", "诸葛",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀兰", "霞",
    "平", "刚", "桂英", "华", "建国", "志强", "丹", "萍", "鹏", "辉", "玲", "宇", "浩", "欣怡", "婷", "晨", "子涵", "雨萱",
    "梓轩", "博文", "文", "斌", "红梅", "海燕", "国庆", "建华", "晓东", "思远", "佳琪", "振宇", "俊杰", "雪", "琳", "凯",
];
const SYMPTOMS: &[&str] = &["头痛", "反复咳嗽", "胸闷气短", "腹痛腹泻", "发热", "关节疼痛", "失眠", "皮疹瘙痒", "头晕乏力", "胃胀反酸"];
const PROVINCES: &[(&str, &[&str])] = &[
    ("浙江省", &["杭州市", "宁波市", "温州市"]),
    ("江苏省", &["南京市", "苏州市", "无锡市"]),
    ("广东省", &["广州市", "深圳市", "佛山市"]),
    ("四川省", &["成都市", "绵阳市"]),
    ("湖北省", &["武汉市", "宜昌市"]),
    ("山东省", &["济南市", "青岛市"]),
    ("河南省", &["郑州市", "洛阳市"]),
    ("湖南省", &["长沙市", "株洲市"]),
];
const DISTRICTS: &[&str] = &["西湖区", "鼓楼区", "天河区", "南山区", "武侯区", "江汉区", "岳麓区", "金水区", "历下区", "海曙区", "姑苏区", "滨湖区", "桐庐县", "长兴县"];
const ROADS: &[&str] = &["文三路", "中山路", "人民路", "解放路", "建设大道", "和平街", "长江路", "黄河路", "延安路", "学院路", "新华街", "胜利巷"];
const REGIONS: &[u32] = &[110101, 110105, 310104, 330106, 440305, 510107, 420106, 320102, 370102, 410105, 430104];
const DOMAINS: &[&str] = &["163.com", "qq.com", "126.com", "hospital.org.cn", "gmail.com", "sina.com"];
const PINYIN: &[&str] = &["zhangwei", "li.na", "wangfang", "liuyang", "chen_jie", "yang.min", "huangli", "zhao123", "wu.hao", "sunli"];

/// Sentences without personal data, full of the traps: surname characters in medical words,
/// numbers, visit dates, places that are not addresses.
const DISTRACTORS: &[&str] = &[
    "高血压患者应低盐饮食，规律服药。",
    "患者高血压病史10年，血压控制尚可。",
    "患者常有头晕，无恶心呕吐。",
    "患者方可出院，门诊随访。",
    "患者白细胞12.5×10^9/L，中性粒细胞比例升高。",
    "患者于2023年5月3日就诊，住院3天。",
    "常规检查未见明显异常。",
    "马上去医院做个心电图。",
    "石膏固定4周后复查X线。",
    "黄疸指数升高，建议查肝功能。",
    "周期性发作，每次持续2小时。",
    "金银花泡水可以清热。",
    "何首乌不宜长期大量服用。",
    "全身乏力，关节疼痛。",
    "安静休息，明显好转。",
    "万古霉素1g静滴，每12小时一次。",
    "血压150/95mmHg，心率90次/分。",
    "空腹血糖7.8mmol/L，糖化血红蛋白6.9%。",
    "服用阿司匹林100mg，每日1次。",
    "上消化道出血，社区医院转诊。",
    "主治医生建议手术治疗。",
    "可以向医生咨询具体用药。",
    "请问医生，这种情况严重吗？",
    "家庭医生每月随访一次。",
    "我是高血压患者，能吃党参吗？",
    "体温38.5℃，咽部充血。",
    "3号床患者今日出院。",
    "建议到市区的三甲医院就诊。",
    "检查编号20230512001已出结果。",
    "孩子出生后3天出现黄疸。",
    "存在一些用药误区，需要纠正。",
    "王不留行、白术、黄芪煎服。",
    "患者明显消瘦，周身乏力。",
    "血常规示血红蛋白95g/L。",
];

/// One item chosen at random.
pub(super) fn pick<'a, T: ?Sized>(rng: &mut ChaCha8Rng, items: &'a [&'a T]) -> &'a T {
    items.choose(rng).copied().unwrap_or(items[0])
}

fn name(rng: &mut ChaCha8Rng) -> String {
    format!("{}{}", pick(rng, SURNAMES), pick(rng, GIVEN))
}

fn id_number(rng: &mut ChaCha8Rng) -> String {
    let region = *REGIONS.choose(rng).unwrap_or(&110101);
    let year = rng.random_range(1940..2012);
    let month = rng.random_range(1..=12);
    let day = rng.random_range(1..=28);
    if rng.random_bool(0.15) {
        format!("{region:06}{:02}{month:02}{day:02}{:03}", year % 100, rng.random_range(1..1000))
    } else {
        idcard::make18(region, year, month, day, rng.random_range(1..1000))
    }
}

fn phone(rng: &mut ChaCha8Rng) -> String {
    let prefix = ["138", "139", "150", "186", "177", "135", "199", "131"];
    let p = prefix.choose(rng).copied().unwrap_or("138");
    let a: u32 = rng.random_range(1000..10000);
    let b: u32 = rng.random_range(1000..10000);
    match rng.random_range(0..7) {
        0 => format!("{p}-{a}-{b}"),
        1 => format!("+86 {p} {a} {b}"),
        2 => format!("0571-{}", rng.random_range(80_000_000..90_000_000)),
        3 => format!("(010){}", rng.random_range(60_000_000..70_000_000)),
        4 => format!("0755-{}", rng.random_range(2_000_000..3_000_000)),
        _ => format!("{p}{a}{b}"),
    }
}

fn address(rng: &mut ChaCha8Rng) -> String {
    let (prov, cities) = PROVINCES.choose(rng).copied().unwrap_or(PROVINCES[0]);
    let city = pick(rng, cities);
    let district = pick(rng, DISTRICTS);
    let road = pick(rng, ROADS);
    let n = rng.random_range(1..400);
    let building = if rng.random_bool(0.5) {
        format!("{}栋{}室", rng.random_range(1..30), rng.random_range(101..2800))
    } else {
        String::new()
    };
    match rng.random_range(0..4) {
        0 => format!("{prov}{city}{district}{road}{n}号{building}"),
        1 => format!("{city}{district}{road}{n}号{building}"),
        2 => format!("北京市朝阳区{road}{n}号{building}"),
        _ => format!("{city}{district}{road}{n}号"),
    }
}

fn birth_date(rng: &mut ChaCha8Rng) -> (String, bool) {
    let y = rng.random_range(1935..2020);
    let m = rng.random_range(1..=12);
    let d = rng.random_range(1..=28);
    let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    match rng.random_range(0..5) {
        0 => (format!("{y}年{m}月{d}日"), false),
        1 => (format!("{y}-{m:02}-{d:02}"), false),
        2 => (format!("{y}年{m}月"), false),
        3 => (format!("{m:02}/{d:02}/{y}"), true),
        _ => (format!("{} {d}, {y}", months[(m - 1) as usize]), true),
    }
}

fn mrn(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..4) {
        0 => format!("ZY{}", rng.random_range(2_015_000_000u64..2_024_999_999)),
        1 => format!("{}", rng.random_range(10_000_000u64..99_999_999)),
        2 => format!("MZ-{}", rng.random_range(10_000..99_999)),
        _ => format!("{}", rng.random_range(100_000u64..999_999)),
    }
}

fn email(rng: &mut ChaCha8Rng) -> String {
    format!("{}{}@{}", pick(rng, PINYIN), rng.random_range(1..999), pick(rng, DOMAINS))
}

/// A sentence with one piece of personal data of `kind`, as (before, value, after).
fn sentence(rng: &mut ChaCha8Rng, kind: PiiKind) -> (String, String, String) {
    let symptom = pick(rng, SYMPTOMS);
    let age = rng.random_range(18..90);
    let (b, v, a): (&str, String, String) = match kind {
        PiiKind::Name => {
            let n = name(rng);
            let surname_only = pick(rng, SURNAMES).to_string();
            return match rng.random_range(0..9) {
                0 => ("患者".into(), n, format!("，男，{age}岁，因{symptom}入院。")),
                1 => ("姓名：".into(), n, "，性别：女。".into()),
                2 => (String::new(), n, "先生今天来复诊。".into()),
                3 => (String::new(), surname_only, format!("女士您好，您的{symptom}需要复查。")),
                4 => ("我叫".into(), n, format!("，最近{symptom}。")),
                5 => ("主治医生：".into(), n, "。".into()),
                6 => ("家属".into(), n, "表示同意手术。".into()),
                7 => ("谢谢".into(), n, "医生的耐心解答！".into()),
                _ => ("病人".into(), n, format!("主诉{symptom}两周。")),
            };
        }
        PiiKind::IdNumber => {
            let id = id_number(rng);
            match rng.random_range(0..4) {
                0 => ("身份证号：", id, "。".into()),
                1 => ("身份证", id, "，医保已登记。".into()),
                2 => ("证件号码", id, "。".into()),
                _ => ("患者提供的号码为", id, "，已核实。".into()),
            }
        }
        PiiKind::Phone => {
            let p = phone(rng);
            match rng.random_range(0..5) {
                0 => ("电话：", p, "。".into()),
                1 => ("有事请打我手机", p, "。".into()),
                2 => ("联系方式 ", p, "（白天）。".into()),
                3 => ("请拨打", p, "预约复查。".into()),
                _ => ("家属电话", p, "，请通知。".into()),
            }
        }
        PiiKind::Address => {
            let addr = address(rng);
            match rng.random_range(0..4) {
                0 => ("患者家住", addr, "，近期搬家。".into()),
                1 => ("住址：", addr, "。".into()),
                2 => ("现住", addr, "，独居。".into()),
                _ => ("地址是", addr, "，请寄送报告。".into()),
            }
        }
        PiiKind::BirthDate => {
            let (d, english) = birth_date(rng);
            if english {
                match rng.random_range(0..2) {
                    0 => ("DOB: ", d, ". ".into()),
                    _ => ("Date of birth: ", d, ". ".into()),
                }
            } else {
                match rng.random_range(0..3) {
                    0 => ("出生日期：", d, "。".into()),
                    1 => ("孩子生日是", d, "，现在发烧。".into()),
                    _ => ("患者", d, "出生，既往体健。".into()),
                }
            }
        }
        PiiKind::MedicalRecordNumber => {
            let m = mrn(rng);
            match rng.random_range(0..5) {
                0 => ("病历号：", m, "。".into()),
                1 => ("住院号", m, "，床号12。".into()),
                2 => ("门诊号: ", m, "。".into()),
                3 => ("MRN: ", m, ". ".into()),
                _ => ("病案号为", m, "，请调阅。".into()),
            }
        }
        PiiKind::Email => {
            let e = email(rng);
            match rng.random_range(0..3) {
                0 => ("邮箱：", e, "。".into()),
                1 => ("报告发到", e, "就行。".into()),
                _ => ("email: ", e, " thanks. ".into()),
            }
        }
    };
    (b.to_string(), v, a)
}

const EN_NAMES: &[&str] = &["John Smith", "Mary Johnson", "David Lee", "Linda Brown", "James Wilson", "Susan Clark"];

/// A sentence of a held-out template set written after the detectors and never tuned against:
/// names without cues, numbers with spaces, addresses without numbers, two-digit years.
fn hard_sentence(rng: &mut ChaCha8Rng, kind: PiiKind) -> (String, String, String) {
    let symptom = pick(rng, SYMPTOMS);
    let (b, v, a): (&str, String, String) = match kind {
        PiiKind::Name => {
            let n = name(rng);
            match rng.random_range(0..7) {
                0 => ("", n, "今天来复查血压。".into()),
                1 => ("请转告", n, "明天空腹抽血。".into()),
                2 => ("", n, "的检查结果出来了。".into()),
                3 => ("联系人：", n, "（女儿）。".into()),
                4 => ("我是", n, format!("的家属，他{symptom}。")),
                5 => ("Patient ", pick(rng, EN_NAMES).to_string(), " presented with fever. ".into()),
                _ => ("病人家属", n, "说昨晚又发烧了。".into()),
            }
        }
        PiiKind::IdNumber => {
            let id = id_number(rng);
            match rng.random_range(0..3) {
                0 => ("", id, "，这是我的证件。".into()),
                1 => ("ID: ", id, ". ".into()),
                _ => {
                    let spaced = if id.len() == 18 { format!("{} {} {}", &id[..6], &id[6..14], &id[14..]) } else { id };
                    ("身份证：", spaced, "。".into())
                }
            }
        }
        PiiKind::Phone => {
            let a: u32 = rng.random_range(1000..10000);
            let b: u32 = rng.random_range(1000..10000);
            match rng.random_range(0..4) {
                0 => ("电话 ", format!("138 {a} {b}"), "。".into()),
                1 => ("座机 ", format!("0571 {a} {b}"), "。".into()),
                2 => ("tel:", format!("+86139{a}{b}"), " ".into()),
                _ => ("打", format!("1{}{a}{b}", rng.random_range(30..100)), "找我。".into()),
            }
        }
        PiiKind::Address => {
            let road = pick(rng, ROADS);
            let district = pick(rng, DISTRICTS);
            match rng.random_range(0..4) {
                0 => ("住在", format!("杭州{district}{road}"), "附近。".into()),
                1 => ("家在", format!("{district}望京西园{}区", rng.random_range(1..9)), "。".into()),
                2 => ("地址：", format!("浙江杭州{road}{}号", rng.random_range(1..999)), "。".into()),
                _ => ("我在", format!("上海徐汇区{road}"), "上班。".into()),
            }
        }
        PiiKind::BirthDate => {
            let y = rng.random_range(1940..2010);
            let m = rng.random_range(1..=12);
            let d = rng.random_range(1..=28);
            match rng.random_range(0..4) {
                0 => ("", format!("{}年{m}月", y % 100), "生，属马。".into()),
                1 => ("出生：", format!("{y}.{m}.{d}"), "。".into()),
                2 => ("birthday ", format!("{y}/{m:02}/{d:02}"), ". ".into()),
                _ => ("老人（", format!("{y}年"), "生）最近胸闷。".into()),
            }
        }
        PiiKind::MedicalRecordNumber => {
            let m = mrn(rng);
            match rng.random_range(0..3) {
                0 => ("病历号 No.", m, "。".into()),
                1 => ("住院号码：", m, "。".into()),
                _ => ("ID号 ", m, "，请核对。".into()),
            }
        }
        PiiKind::Email => {
            let e = format!("{}@{}", pick(rng, PINYIN).to_uppercase(), pick(rng, &["med.zju.edu.cn", "HOSPITAL.ORG", "mail.example.cn"]));
            match rng.random_range(0..2) {
                0 => ("邮箱", e, "。".into()),
                _ => ("", e, " 是我的邮箱。".into()),
            }
        }
    };
    (b.to_string(), v, a)
}

/// `n` texts from the held-out hard templates (see [`corpus`] for the layout).
pub fn hard_corpus(seed: u64, n: usize) -> Vec<LabelledText> {
    build_corpus(seed, n, hard_sentence)
}

/// `n` texts: each mixes distractor sentences with one or two labelled sentences.
pub fn corpus(seed: u64, n: usize) -> Vec<LabelledText> {
    build_corpus(seed, n, sentence)
}

/// Makes one labelled sentence of a kind: (text before, the value, text after).
pub(super) type SentenceFn = fn(&mut ChaCha8Rng, PiiKind) -> (String, String, String);

fn build_corpus(seed: u64, n: usize, sentence: SentenceFn) -> Vec<LabelledText> {
    let recipe = Recipe { seed, sentence, distractors: DISTRACTORS, kind_at: |i, j| i + j * 3 };
    recipe.texts(n)
}

/// How a labelled corpus is put together; the synthetic and held-out sets differ only in these.
pub(super) struct Recipe {
    /// Seed of the generator.
    pub seed: u64,
    /// Writes the labelled sentences.
    pub sentence: SentenceFn,
    /// Unlabelled look-alike sentences mixed in.
    pub distractors: &'static [&'static str],
    /// Index into `PiiKind::ALL` of text `i`'s `j`-th labelled sentence.
    pub kind_at: fn(usize, usize) -> usize,
}

impl Recipe {
    /// `n` texts, each one or two labelled sentences shuffled among one to three distractors.
    pub fn texts(&self, n: usize) -> Vec<LabelledText> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        (0..n)
            .map(|i| {
                let mut text = String::new();
                let mut entities = Vec::new();
                let labelled = 1 + usize::from(rng.random_bool(0.4));
                let distract = rng.random_range(1..4);
                let mut slots: Vec<Option<PiiKind>> = (0..labelled)
                    .map(|j| Some(PiiKind::ALL[(self.kind_at)(i, j) % PiiKind::ALL.len()]))
                    .chain((0..distract).map(|_| None))
                    .collect();
                slots.shuffle(&mut rng);
                for slot in slots {
                    match slot {
                        None => text.push_str(pick(&mut rng, self.distractors)),
                        Some(kind) => {
                            let (b, v, a) = (self.sentence)(&mut rng, kind);
                            text.push_str(&b);
                            entities.push(Span { start: text.len(), end: text.len() + v.len(), kind });
                            text.push_str(&v);
                            text.push_str(&a);
                        }
                    }
                }
                LabelledText { text, entities }
            })
            .collect()
    }
}

/// Recall and precision of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct KindScore {
    /// Inserted entities.
    pub entities: usize,
    /// Entities fully covered by a span of the same kind.
    pub found: usize,
    /// Spans of this kind reported.
    pub reported: usize,
    /// Reported spans that overlap an entity of the same kind.
    pub correct: usize,
}

impl KindScore {
    /// found / entities.
    pub fn recall(&self) -> f64 {
        if self.entities == 0 { 1.0 } else { self.found as f64 / self.entities as f64 }
    }

    /// correct / reported.
    pub fn precision(&self) -> f64 {
        if self.reported == 0 { 1.0 } else { self.correct as f64 / self.reported as f64 }
    }
}

/// Scores `deid` on `corpus`, by kind.
pub fn evaluate(deid: &Deidentifier, corpus: &[LabelledText]) -> BTreeMap<PiiKind, KindScore> {
    let mut scores: BTreeMap<PiiKind, KindScore> = PiiKind::ALL.iter().map(|k| (*k, KindScore::default())).collect();
    for doc in corpus {
        let found = deid.find(&doc.text);
        for e in &doc.entities {
            let s = scores.entry(e.kind).or_default();
            s.entities += 1;
            if found.iter().any(|f| f.kind == e.kind && f.start <= e.start && f.end >= e.end) {
                s.found += 1;
            }
        }
        for f in &found {
            let s = scores.entry(f.kind).or_default();
            s.reported += 1;
            if doc.entities.iter().any(|e| e.kind == f.kind && f.start < e.end && e.start < f.end) {
                s.correct += 1;
            }
        }
    }
    scores
}

/// Texts where an entity was missed or a span was wrong, for debugging the detectors.
pub fn mistakes<'a>(deid: &Deidentifier, corpus: &'a [LabelledText]) -> Vec<(&'a str, String)> {
    let mut out = Vec::new();
    for doc in corpus {
        let found = deid.find(&doc.text);
        for e in &doc.entities {
            if !found.iter().any(|f| f.kind == e.kind && f.start <= e.start && f.end >= e.end) {
                out.push((doc.text.as_str(), format!("missed {:?} '{}'", e.kind, &doc.text[e.start..e.end])));
            }
        }
        for f in &found {
            if !doc.entities.iter().any(|e| e.kind == f.kind && f.start < e.end && e.start < f.end) {
                out.push((doc.text.as_str(), format!("false {:?} '{}'", f.kind, &doc.text[f.start..f.end])));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_seeded_and_ids_are_valid() {
        let a = corpus(7, 50);
        let b = corpus(7, 50);
        assert_eq!(a.iter().map(|d| &d.text).collect::<Vec<_>>(), b.iter().map(|d| &d.text).collect::<Vec<_>>());
        for d in &a {
            for e in d.entities.iter().filter(|e| e.kind == PiiKind::IdNumber) {
                assert!(idcard::is_valid(&d.text[e.start..e.end]));
            }
        }
    }

    #[test]
    fn recall_and_precision_per_kind() {
        let deid = Deidentifier::new();
        let docs = corpus(20_261_125, 3000);
        let scores = evaluate(&deid, &docs);
        let misses = mistakes(&deid, &docs);
        for (kind, s) in &scores {
            assert!(s.entities >= 300, "{kind:?}: {s:?}");
            assert!(s.recall() >= 0.95, "{kind:?} recall {:.3}; e.g. {:?}", s.recall(), &misses[..misses.len().min(10)]);
            assert!(s.precision() >= 0.9, "{kind:?} precision {:.3}; e.g. {:?}", s.precision(), &misses[..misses.len().min(10)]);
        }
    }
}
