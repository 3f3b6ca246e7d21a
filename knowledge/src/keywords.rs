//! Keyword extraction: diseases and symptoms found in a question by the lexicon, plus disease
//! words found by segmentation (jieba words ending in 炎, 病, 症 ...), each marked negated when
//! a negation ("没有咳嗽", "无发热", "不发烧", "denies fever", "no cough") governs it.
use std::sync::Arc;

use jieba_rs::Jieba;
use serde::Serialize;

use crate::lexicon::{Lexicon, TermKind};
use crate::segment::{is_word, jieba};

/// A disease or symptom found in a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Keyword {
    /// The words as they appear in the text.
    pub text: String,
    /// Disease or symptom.
    pub kind: TermKind,
    /// Whether a negation governs it (then it is not evidence).
    pub negated: bool,
    /// Offset of the first character, in characters (Unicode scalar values).
    pub start: usize,
    /// Offset after the last character, in characters.
    pub end: usize,
    /// Library documents the keyword names (for diseases named by a document).
    pub doc_ids: Vec<String>,
}

/// Chinese negation cues (whole jieba tokens).
const ZH_NEGATIONS: [&str; 16] =
    ["没有", "没", "无", "不", "未", "否认", "未见", "并无", "从无", "毫无", "未曾", "不伴", "无明显", "非", "别无", "未有"];
/// Words after a negation cue that end its scope ("无明显诱因出现发热": 发热 is present).
const ZH_SCOPE_ENDS: [&str; 12] = ["出现", "伴有", "伴", "但", "但是", "却", "可是", "不过", "而", "后", "又", "现"];
/// English negation cues.
const EN_NEGATIONS: [&str; 10] = ["no", "not", "denies", "denied", "deny", "without", "never", "negative", "none", "absent"];
/// English words that end a negation's scope.
const EN_SCOPE_ENDS: [&str; 6] = ["but", "however", "although", "though", "yet", "except"];
/// Characters that end a clause.
const CLAUSE_ENDS: &[char] = &['，', ',', '。', '.', '；', ';', '！', '!', '？', '?', '\n', '：', ':', '（', '(', '）', ')'];
/// Endings that make a segmented word a disease.
const DISEASE_SUFFIXES: [&str; 16] =
    ["炎", "病", "综合征", "综合症", "癌", "瘤", "感染", "中毒", "骨折", "畸形", "缺乏症", "结石", "梗死", "衰竭", "疝", "血症"];

/// Words with a disease ending that name no disease (发病, 致病, 疾病).
const NOT_DISEASE_WORDS: [&str; 6] = ["发病", "致病", "患病", "得病", "原发病", "疾病"];

/// Words after a symptom that belong to it in clinical writing (休克 + 表现, 昏迷 + 状态,
/// 痛风 + 发作).
const FINDING_TAILS: [&str; 3] = ["表现", "状态", "发作"];

/// Modifiers that belong to a disease or symptom when they precede it (急性 + 扁桃体炎,
/// 新生儿 + 低血糖, 阵发性 + 黑蒙): onset, course, severity, age group.
const MODIFIERS: [&str; 30] = [
    "急性", "慢性", "亚急性", "重症", "重度", "轻度", "中度", "先天性", "原发性", "继发性", "难治性", "复发性", "反复发作性", "小儿", "儿童",
    "新生儿", "婴儿", "婴幼儿", "幼儿", "成人", "老年", "晚期", "早期", "持续", "阵发性", "间歇性", "进行性", "严重", "频繁", "剧烈",
];

/// Words after a symptom that belong to it (咳嗽 + 剧烈, 黄疸 + 不退).
const SYMPTOM_TAILS: [&str; 4] = ["剧烈", "加重", "不退", "频繁"];

/// Words right after a term that make it part of a microbe or test name (流感 + 病毒,
/// 肺炎 + 衣原体, 沙眼 + 衣原体): such a match is not a disease or symptom.
/// A bare 菌 counts too (结核 + 菌).
const MICROBE_TAILS: [&str; 13] = ["病毒", "杆菌", "球菌", "衣原体", "支原体", "螺旋体", "抗体", "抗原", "疫苗", "病原", "真菌", "链球菌", "菌"];

/// Endings that make a term a disease whatever list it came from (遗尿症, 支气管哮喘).
const DISEASE_FORMS: [&str; 12] = ["综合征", "综合症", "血症", "缺损", "哮喘", "畸形", "症", "病", "瘤", "炎", "疝", "癌"];
/// Endings of findings: a term ending so is a symptom (电解质紊乱, 智力低下, 呼吸衰竭).
const SYMPTOM_FORMS: [&str; 30] = [
    "紊乱", "低下", "失常", "衰竭", "休克", "异常", "增高", "升高", "降低", "减少", "增多", "增大", "肿大", "缺乏", "不良", "困难", "改变", "减弱",
    "消失", "出血", "疼痛", "啰音", "不适", "减退", "障碍", "亢进", "延迟", "下降", "麻木", "肿胀",
];
/// Endings that keep a lexicon disease a disease even when a symptom list has it too.
const STRONG_DISEASE_FORMS: [&str; 8] = ["感染", "中毒", "损伤", "伤", "结石", "梗死", "骨折", "障碍"];
/// Words never joined to the left of a disease (所有 + 先天性心脏病).
const NOT_JOINED: [&str; 12] = ["所有", "国际", "各种", "多种", "其他", "一些", "部分", "常见", "主要", "本症", "该病", "上述"];

/// The kind a term's form says (CMeEE's convention: named conditions are diseases, findings
/// are symptoms): a disease ending (症, 病, 炎 ...) makes a disease, a finding ending (紊乱,
/// 低下, 衰竭 ...) a symptom; a disease term that a symptom list also has and that has no
/// disease ending is a symptom (遗尿, 休克 as listed by both). Terms naming a library
/// document keep their kind (the designer ranks them).
fn kind_by_form(word: &str, kind: TermKind, listed_as_symptom: bool) -> TermKind {
    if word.ends_with("症状") {
        kind
    } else if DISEASE_FORMS.iter().any(|s| word.ends_with(s)) {
        TermKind::Disease
    } else if SYMPTOM_FORMS.iter().any(|s| word.ends_with(s))
        || (kind == TermKind::Disease && listed_as_symptom && !STRONG_DISEASE_FORMS.iter().any(|s| word.ends_with(s)))
    {
        TermKind::Symptom
    } else {
        kind
    }
}

type Span = (usize, usize, TermKind, Vec<String>);

/// Nouns for people, never part of a disease or symptom phrase.
const PERSON_NOUNS: [&str; 10] = ["患儿", "患者", "病人", "孩子", "宝宝", "小孩", "医生", "病例", "本病", "病人家属"];

/// Words that jieba tags as nouns but that never belong to a disease or symptom phrase:
/// naming verbs (又称 + 小脑扁桃体疝), causes (遗传因素 + 遗尿症, 病原 + 肺炎), verbs of
/// testing and causing (检测, 引起, 导致, 产生), 经, 如, measure words (76 + 名 + 胸壁肿瘤).
const NOT_PART: [&str; 21] = [
    "名", "例", "又称", "称为", "人类", "病原", "因素", "检测", "引起", "导致", "产生", "经", "如", "即", "所致", "合并", "发展成", "处于", "区分", "表现",
    "出现",
];

/// Whether a tagged word may start or continue a phrase to the left: nouns (also jieba's
/// place words `s` and set phrases `l`: 胸壁, 冠状动脉, 脑肿瘤; body regions that it tags as
/// localities, 面部), distinguishing words.
fn joins_left(w: &str, tag: &str) -> bool {
    is_han(w)
        && !PERSON_NOUNS.contains(&w)
        && !NOT_PART.contains(&w)
        && (tag.starts_with('n')
            || matches!(tag, "b" | "an" | "vn" | "l" | "s")
            || (tag == "f" && w.ends_with('部') && w.chars().count() >= 2))
}

fn is_han(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// End of the span before `i` (0 for the first), the limit of extensions to the left.
fn floor(spans: &[Span], i: usize) -> usize {
    spans[..i].iter().map(|s| s.1).filter(|&e| e <= spans[i].0).max().unwrap_or(0)
}

/// Extends spans to the left over modifiers (急性, 新生儿, 阵发性, any 2+ character …性 word,
/// distinguishing words), and symptoms to the right over intensity words (剧烈, 不退).
fn extend_with_modifiers(text: &str, tagged: &[(usize, usize, &str)], spans: &mut [Span]) {
    for i in 0..spans.len() {
        let floor = floor(spans, i);
        let mut start = spans[i].0;
        loop {
            if let Some(m) = MODIFIERS.iter().find(|m| start >= floor + m.len() && text[..start].ends_with(*m)) {
                start -= m.len();
                continue;
            }
            match tagged.iter().find(|t| t.1 == start) {
                Some(&(ps, pe, tag)) if ps >= floor => {
                    let w = &text[ps..pe];
                    if !NOT_JOINED.contains(&w) && (tag == "b" || (w.ends_with('性') && w.chars().count() >= 2 && is_han(w))) {
                        start = ps;
                        continue;
                    }
                }
                _ => {}
            }
            break;
        }
        spans[i].0 = start;
        if spans[i].2 == TermKind::Symptom {
            let end = spans[i].1;
            let next = spans.get(i + 1).map_or(text.len(), |s| s.0);
            if let Some(t) = SYMPTOM_TAILS.iter().find(|t| text[end..].starts_with(*t) && end + t.len() <= next) {
                spans[i].1 = end + t.len();
            }
        }
    }
}

/// Moves the start of a lexicon match that begins inside a jieba word to that word's start
/// (脑 + 肿瘤 read as 脑肿瘤, 冠状 + 动脉畸形), and its end to the end of a word with a
/// disease ending it stops inside (肾性糖尿 + 病 read as 糖尿病), then decides the kind again
/// by the new form; a span that then overlaps the one before is merged into it.
fn snap_to_words(text: &str, tagged: &[(usize, usize, &str)], spans: Vec<Span>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for mut sp in spans {
        let mut moved = false;
        if let Some(&(ws, _, _)) = tagged.iter().find(|t| t.0 < sp.0 && sp.0 < t.1 && is_han(&text[t.0..t.1])) {
            sp.0 = ws;
            moved = true;
        }
        if let Some(&(_, we, _)) = tagged.iter().find(|t| {
            let w = &text[t.0..t.1];
            t.0 < sp.1 && sp.1 < t.1 && is_han(w) && DISEASE_FORMS.iter().any(|f| w.ends_with(f))
        }) {
            sp.1 = we;
            moved = true;
        }
        if moved && sp.3.is_empty() {
            sp.2 = kind_by_form(&text[sp.0..sp.1], sp.2, false);
        }
        match out.last_mut() {
            Some(prev) if sp.0 < prev.1 => prev.1 = prev.1.max(sp.1),
            _ => out.push(sp),
        }
    }
    out
}

/// Joins 高/低 right before a span (高 + 氨血症, 低 + 钙惊厥: the names are 高氨血症,
/// 低钙惊厥), then a modifier before it (新生儿 + 高氨血症).
fn join_high_low(text: &str, spans: &mut [Span]) {
    for i in 0..spans.len() {
        let floor = floor(spans, i);
        let (start, end) = (spans[i].0, spans[i].1);
        let word = &text[start..end];
        if word.starts_with(['高', '低']) {
            continue;
        }
        if let Some(c) = text[floor..start].chars().next_back().filter(|c| matches!(c, '高' | '低')) {
            let mut s = start - c.len_utf8();
            if let Some(m) = MODIFIERS.iter().find(|m| s >= floor + m.len() && text[..s].ends_with(*m)) {
                s -= m.len();
            }
            spans[i].0 = s;
        }
    }
}

/// Extends symptoms over 表现/状态/发作 right after them (昏迷 + 状态).
fn extend_finding_tails(text: &str, spans: &mut [Span]) {
    for i in 0..spans.len() {
        if spans[i].2 != TermKind::Symptom {
            continue;
        }
        let end = spans[i].1;
        let next = spans.get(i + 1).map_or(text.len(), |s| s.0);
        if let Some(t) = FINDING_TAILS.iter().find(|t| text[end..].starts_with(*t) && end + t.len() <= next) {
            spans[i].1 = end + t.len();
        }
    }
}

/// Extends diseases and symptoms to the left over nouns (胸壁 + 肿瘤, 冠状动脉 + 畸形,
/// 面部 + 血管痣) and over Latin letters before 综合征/病/症 (Reye + 综合征).
fn join_nouns_left(text: &str, tagged: &[(usize, usize, &str)], spans: &mut [Span]) {
    for i in 0..spans.len() {
        let floor = floor(spans, i);
        let mut start = spans[i].0;
        while let Some(&(ps, pe, tag)) = tagged.iter().find(|t| t.1 == start) {
            let w = &text[ps..pe];
            if ps < floor || NOT_JOINED.contains(&w) || !joins_left(w, tag) || spans[i].1 - ps > 60 {
                break;
            }
            start = ps;
        }
        if ["综合征", "病", "症"].iter().any(|s| text[start..].starts_with(s)) {
            let letters = text[floor..start].chars().rev().take_while(char::is_ascii_alphabetic).count();
            if letters >= 2 {
                start -= letters;
            }
        }
        spans[i].0 = start;
    }
}

/// Words that make a body part or function into a symptom (呼吸音 + 减弱, 肝 + 肿大).
const SYMPTOM_HEADS: [&str; 40] = [
    "肿大", "减弱", "增高", "升高", "降低", "减少", "增多", "减退", "异常", "出血", "障碍", "困难", "疼痛", "肿胀", "麻木", "增大", "消失",
    "延迟", "不适", "紊乱", "亢进", "下降", "变慢", "减慢", "不足", "损害", "缺乏", "抵抗", "增宽", "突出", "阴影", "饱满", "变淡", "变薄",
    "延长", "缩短", "扩大", "堆积", "委靡", "萎靡",
];

/// Symptom phrases found by segmentation: nouns followed by a symptom head (呼吸音减弱).
fn symptom_phrases(text: &str, tagged: &[(usize, usize, &str)], spans: &[Span]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for (i, &(ts, te, _)) in tagged.iter().enumerate() {
        let w = &text[ts..te];
        if !SYMPTOM_HEADS.iter().any(|h| w.ends_with(h)) {
            continue;
        }
        let mut s = ts;
        let mut j = i;
        while j > 0 {
            let (ps, pe, tag) = tagged[j - 1];
            if joins_left(&text[ps..pe], tag) && te - ps <= 45 {
                s = ps;
                j -= 1;
            } else {
                break;
            }
        }
        if s == ts && w.chars().count() <= 2 {
            continue;
        }
        let e = te;
        if spans.iter().chain(out.iter()).any(|&(a, b, _, _)| a < e && s < b) {
            continue;
        }
        out.push((s, e, TermKind::Symptom, vec![]));
    }
    out
}

/// Upper-case acronyms in brackets right after a disease: 急性髓系白血病（AML）.
fn acronyms(text: &str, spans: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    for sp in spans.iter().filter(|s| s.2 == TermKind::Disease) {
        let rest = &text[sp.1..];
        let Some(inner) = rest.strip_prefix('（').or_else(|| rest.strip_prefix('(')) else { continue };
        let len = inner.find(['）', ')']).unwrap_or(usize::MAX);
        if len == usize::MAX || !(2..=10).contains(&len) {
            continue;
        }
        let word = &inner[..len];
        let upper = word.chars().filter(char::is_ascii_uppercase).count();
        if word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && upper >= 2 {
            let s = sp.1 + (rest.len() - inner.len());
            out.push((s, s + len, TermKind::Disease, sp.3.clone()));
        }
    }
    out
}

/// Options of the extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Also use the clinical phrase rules: kinds by form (症/病/炎 … diseases, 紊乱/低下/衰竭 …
    /// symptoms), microbe names dropped (流感病毒, 结核菌), matches inside a jieba word
    /// widened to the word (脑肿瘤), modifiers joined (急性, 新生儿, 阵发性, 剧烈, …性) and
    /// intensity words (剧烈, 不退), jieba words ending in a disease suffix (炎, 病, 综合征 …;
    /// not 发病, 疾病) with nouns joined on the left, nouns + symptom heads (呼吸音减弱),
    /// nouns and body regions joined to diseases and symptoms (胸壁肿瘤, 面部血管痣) but not
    /// causes or naming words (病原, 因素, 又称), 高/低 + …血症, finding words after symptoms
    /// (昏迷状态), and bracketed acronyms after a disease.
    pub segmentation: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions { segmentation: true }
    }
}

/// Finds diseases and symptoms in text.
#[derive(Debug, Clone)]
pub struct KeywordExtractor {
    lexicon: Lexicon,
    jieba: Arc<Jieba>,
    options: ExtractOptions,
}

impl KeywordExtractor {
    /// An extractor over a lexicon.
    pub fn new(lexicon: Lexicon) -> Self {
        KeywordExtractor { lexicon, jieba: jieba(), options: ExtractOptions::default() }
    }

    /// Changes the options.
    pub fn with_options(mut self, options: ExtractOptions) -> Self {
        self.options = options;
        self
    }

    /// The lexicon.
    pub fn lexicon(&self) -> &Lexicon {
        &self.lexicon
    }

    /// Keywords in text order (non-overlapping).
    pub fn extract(&self, text: &str) -> Vec<Keyword> {
        // Byte offset -> char offset table.
        let mut char_at: Vec<usize> = vec![0; text.len() + 1];
        let mut n = 0;
        for (b, _) in text.char_indices() {
            char_at[b] = n;
            n += 1;
        }
        char_at[text.len()] = n;
        let rules = self.options.segmentation;
        let mut spans: Vec<Span> = self
            .lexicon
            .find(text)
            .into_iter()
            .filter(|m| !rules || !MICROBE_TAILS.iter().any(|t| text[m.end..].starts_with(t)))
            .map(|m| {
                let kind = if rules && m.term.doc_ids.is_empty() {
                    kind_by_form(&text[m.start..m.end], m.term.kind, m.term.listed_as_symptom)
                } else {
                    m.term.kind
                };
                (m.start, m.end, kind, m.term.doc_ids.clone())
            })
            .collect();
        if rules {
            // Words with their part-of-speech tags and byte offsets.
            let tagged: Vec<(usize, usize, &str)> =
                self.jieba.tag(text, true).into_iter().map(|t| (t.byte_start, t.byte_end, t.tag)).collect();
            spans = snap_to_words(text, &tagged, spans);
            extend_with_modifiers(text, &tagged, &mut spans);
            let mut extra = Vec::new();
            for (i, &(ts, te, _)) in tagged.iter().enumerate() {
                let w = &text[ts..te];
                if !DISEASE_SUFFIXES.iter().any(|s| w.ends_with(s)) || NOT_DISEASE_WORDS.contains(&w) {
                    continue;
                }
                // Extend left over nouns and distinguishing words (急性, 支气管 + 肺炎).
                let mut s = ts;
                let mut j = i;
                while j > 0 {
                    let (ps, pe, tag) = tagged[j - 1];
                    if joins_left(&text[ps..pe], tag) && te - ps <= 60 {
                        s = ps;
                        j -= 1;
                    } else {
                        break;
                    }
                }
                let e = te;
                if text[s..e].chars().count() < 3 {
                    continue;
                }
                if spans.iter().any(|&(a, b, _, _)| a < e && s < b) {
                    continue;
                }
                extra.push((s, e, kind_by_form(&text[s..e], TermKind::Disease, false), vec![]));
            }
            spans.extend(extra);
            spans.sort_by_key(|s| s.0);
            let found = symptom_phrases(text, &tagged, &spans);
            spans.extend(found);
            spans.sort_by_key(|s| s.0);
            join_nouns_left(text, &tagged, &mut spans);
            spans.extend(acronyms(text, &spans));
            spans.sort_by_key(|s| s.0);
            join_high_low(text, &mut spans);
            extend_finding_tails(text, &mut spans);
        }
        spans
            .into_iter()
            .map(|(s, e, kind, doc_ids)| Keyword {
                text: text[s..e].to_string(),
                kind,
                negated: self.is_negated(text, s),
                start: char_at[s],
                end: char_at[e],
                doc_ids,
            })
            .collect()
    }

    /// Whether a negation cue governs the word starting at byte `start`: a cue earlier in the
    /// same clause, with no scope-ending word between the cue and the word.
    fn is_negated(&self, text: &str, start: usize) -> bool {
        let clause_start = text[..start].rfind(CLAUSE_ENDS).map(|i| i + text[i..].chars().next().map_or(1, char::len_utf8)).unwrap_or(0);
        let prefix = &text[clause_start..start];
        if prefix.trim().is_empty() {
            return false;
        }
        // "don't" → "do not" so the segmenter sees the cue as a word.
        let prefix = prefix.replace("n't", " not").replace("n’t", " not");
        let mut negated = false;
        for tok in self.jieba.cut(&prefix, false) {
            let w = tok.word.trim();
            if !is_word(w) {
                continue;
            }
            let lower = w.to_ascii_lowercase();
            if ZH_NEGATIONS.contains(&w) || EN_NEGATIONS.contains(&lower.as_str()) {
                negated = true;
            } else if ZH_SCOPE_ENDS.contains(&w) || EN_SCOPE_ENDS.contains(&lower.as_str()) {
                negated = false;
            }
        }
        negated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexicon::LexiconBuilder;

    fn extractor() -> KeywordExtractor {
        let mut b = LexiconBuilder::new();
        for s in ["咳嗽", "发热", "发烧", "咽痛", "腹痛", "fever", "cough", "sore throat"] {
            b.add(s, TermKind::Symptom, None, true);
        }
        b.add("扁桃体炎", TermKind::Disease, Some("tonsillitis"), true);
        KeywordExtractor::new(b.build().unwrap())
    }

    fn found(text: &str) -> Vec<(String, TermKind, bool)> {
        extractor().extract(text).into_iter().map(|k| (k.text, k.kind, k.negated)).collect()
    }

    #[test]
    fn finds_diseases_and_symptoms_with_char_offsets() {
        let k = extractor().extract("孩子扁桃体炎，咽痛发热");
        assert_eq!(k.len(), 3);
        assert_eq!((k[0].text.as_str(), k[0].start, k[0].end), ("扁桃体炎", 2, 6));
        assert_eq!(k[0].doc_ids, vec!["tonsillitis"]);
        assert_eq!((k[2].text.as_str(), k[2].kind, k[2].start), ("发热", TermKind::Symptom, 9));
    }

    #[test]
    fn marks_chinese_negation() {
        let s = TermKind::Symptom;
        assert_eq!(found("没有咳嗽"), vec![("咳嗽".into(), s, true)]);
        assert_eq!(found("无发热"), vec![("发热".into(), s, true)]);
        assert_eq!(found("不发烧，咽痛"), vec![("发烧".into(), s, true), ("咽痛".into(), s, false)]);
        assert_eq!(found("否认发热、咳嗽"), vec![("发热".into(), s, true), ("咳嗽".into(), s, true)]);
        assert_eq!(found("无明显诱因出现腹痛"), vec![("腹痛".into(), s, false)]);
        assert_eq!(found("没有发热但是咳嗽"), vec![("发热".into(), s, true), ("咳嗽".into(), s, false)]);
    }

    #[test]
    fn marks_english_negation() {
        let s = TermKind::Symptom;
        assert_eq!(found("Denies fever. Has a cough"), vec![("fever".into(), s, true), ("cough".into(), s, false)]);
        assert_eq!(found("no cough or fever, but sore throat"), vec![("cough".into(), s, true), ("fever".into(), s, true), ("sore throat".into(), s, false)]);
        assert_eq!(found("I don't have a fever"), vec![("fever".into(), s, true)]);
    }

    #[test]
    fn segmentation_finds_symptom_phrases() {
        assert_eq!(found("患儿食欲减退"), vec![("食欲减退".into(), TermKind::Symptom, false)]);
        assert_eq!(found("视力下降明显"), vec![("视力下降".into(), TermKind::Symptom, false)]);
    }

    #[test]
    fn modifiers_and_acronyms_join_diseases() {
        let k = found("慢性扁桃体炎（CT）反复发作");
        assert_eq!(k[0], ("慢性扁桃体炎".into(), TermKind::Disease, false));
        assert_eq!(k[1], ("CT".into(), TermKind::Disease, false));
        assert_eq!(extractor().extract("慢性扁桃体炎")[0].doc_ids, vec!["tonsillitis"]);
    }

    #[test]
    fn segmentation_adds_unknown_disease_words() {
        let k = found("医生说是支气管肺炎");
        assert!(k.iter().any(|(t, kind, _)| t.ends_with("肺炎") && *kind == TermKind::Disease), "{k:?}");
        let off = extractor().with_options(ExtractOptions { segmentation: false }).extract("医生说是支气管肺炎");
        assert!(off.is_empty());
    }

    fn clinical() -> KeywordExtractor {
        let mut b = LexiconBuilder::new();
        for d in ["遗尿", "遗尿症", "电解质紊乱", "流感", "肺炎", "低血糖", "休克", "肿瘤", "结核"] {
            b.add(d, TermKind::Disease, None, false);
        }
        for s in ["咳嗽", "黄疸", "遗尿", "低血糖", "血管痣", "昏迷", "钙惊厥", "肾性糖尿"] {
            b.add(s, TermKind::Symptom, None, false);
        }
        b.add("高血压", TermKind::Disease, Some("hypertension"), true);
        KeywordExtractor::new(b.build().unwrap())
    }

    fn clinical_found(text: &str) -> Vec<(String, TermKind)> {
        clinical().extract(text).into_iter().map(|k| (k.text, k.kind)).collect()
    }

    #[test]
    fn the_form_of_a_term_decides_its_kind() {
        let (d, s) = (TermKind::Disease, TermKind::Symptom);
        // Listed as a disease and a symptom, no disease ending: a symptom; with 症: a disease.
        assert_eq!(clinical_found("夜间遗尿"), vec![("遗尿".into(), s)]);
        assert_eq!(clinical_found("原发性遗尿症"), vec![("原发性遗尿症".into(), d)]);
        // A finding ending makes a symptom whatever the list said.
        assert_eq!(clinical_found("电解质紊乱"), vec![("电解质紊乱".into(), s)]);
        // A library document's name keeps its kind (the designer ranks it).
        assert_eq!(clinical_found("高血压"), vec![("高血压".into(), d)]);
        assert_eq!(clinical().extract("高血压")[0].doc_ids, vec!["hypertension"]);
    }

    #[test]
    fn microbe_names_are_not_diseases() {
        assert_eq!(clinical_found("A型流感病毒和肺炎衣原体"), vec![]);
        assert_eq!(clinical_found("得了流感"), vec![("流感".into(), TermKind::Disease)]);
    }

    #[test]
    fn phrases_extend_over_modifiers_and_intensity_words() {
        let (d, s) = (TermKind::Disease, TermKind::Symptom);
        assert_eq!(clinical_found("真菌性肺炎"), vec![("真菌性肺炎".into(), d)]);
        assert_eq!(clinical_found("新生儿低血糖"), vec![("新生儿低血糖".into(), s)]);
        assert_eq!(clinical_found("咳嗽剧烈，黄疸不退"), vec![("咳嗽剧烈".into(), s), ("黄疸不退".into(), s)]);
        assert_eq!(clinical_found("可引起Reye综合征"), vec![("Reye综合征".into(), d)]);
    }

    #[test]
    fn a_match_inside_a_word_starts_at_the_word() {
        // jieba reads 脑肿瘤 as one word: the lexicon's 肿瘤 becomes 脑肿瘤.
        assert_eq!(clinical_found("诊断为脑肿瘤"), vec![("脑肿瘤".into(), TermKind::Disease)]);
        // A match ending inside a word with a disease ending takes the whole word.
        assert_eq!(clinical_found("肾性糖尿病"), vec![("肾性糖尿病".into(), TermKind::Disease)]);
    }

    #[test]
    fn place_words_and_set_phrases_join_as_nouns() {
        // 胸壁 is a place word (s) for jieba.
        assert_eq!(clinical_found("胸壁肿瘤切除后"), vec![("胸壁肿瘤".into(), TermKind::Disease)]);
        // Symptoms take body parts on the left too.
        assert_eq!(clinical_found("可见面部血管痣"), vec![("面部血管痣".into(), TermKind::Symptom)]);
    }

    #[test]
    fn causes_and_naming_words_are_not_joined() {
        let d = TermKind::Disease;
        assert_eq!(clinical_found("排除其他病原肺炎"), vec![("肺炎".into(), d)]);
        assert_eq!(clinical_found("遗传因素遗尿症儿童常有家族史"), vec![("遗尿症".into(), d)]);
    }

    #[test]
    fn microbes_written_with_a_bare_jun_are_not_diseases() {
        assert_eq!(clinical_found("对结核菌无作用"), vec![]);
        assert_eq!(clinical_found("肺结核"), vec![("肺结核".into(), TermKind::Disease)]);
    }

    #[test]
    fn onset_words_are_not_diseases() {
        assert_eq!(clinical_found("男女发病均等"), vec![]);
        assert_eq!(clinical_found("全身性疾病"), vec![]);
    }

    #[test]
    fn high_and_low_join_blood_conditions() {
        // Found by segmentation (氨 + 血症), then 高 and the age group joined.
        assert_eq!(clinical_found("新生儿高氨血症鉴别诊断"), vec![("新生儿高氨血症".into(), TermKind::Disease)]);
        assert_eq!(clinical_found("可出现低钙惊厥"), vec![("低钙惊厥".into(), TermKind::Symptom)]);
    }

    #[test]
    fn finding_words_extend_symptoms() {
        let s = TermKind::Symptom;
        assert_eq!(clinical_found("患儿处于昏迷状态"), vec![("昏迷状态".into(), s)]);
        assert_eq!(clinical_found("剧烈咳嗽"), vec![("剧烈咳嗽".into(), s)]);
    }
}
