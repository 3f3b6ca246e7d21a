//! Personal names: Chinese surnames next to context cues (患者, 姓名, 先生, 女士, 医生, …),
//! with a deny list of ordinary words that begin with a surname character (高血压, 常规, 方可, …).
//! Without such cues: a full name right before the sex (王伟，男，62岁 / 王伟（女 / a tab-separated
//! row), before 本人/之女/代诉, after 通知/转告/经治医师, and a surname after 小/老 (小王今天…)
//! when a function word or punctuation follows it.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Common single-character surnames (the great majority of the population).
const SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝阎钮谈仝揭郗粟冼晋展逯蔺綦鄢扈禹练茅储糜贝郁戈惠竺阙訾蒯隗檀奚乐厉";

/// Two-character surnames.
const COMPOUND: &[&str] = &[
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "夏侯", "长孙", "宇文", "司徒", "端木", "独孤", "南宫", "西门", "轩辕", "呼延",
    "万俟", "闻人", "赫连", "公羊", "澹台", "公冶", "宗政", "濮阳", "淳于", "太叔", "申屠", "仲孙", "钟离", "鲜于", "闾丘", "司空", "亓官", "司寇", "颛孙",
    "巫马", "公西", "漆雕", "壤驷", "公良", "拓跋", "夹谷", "宰父", "谷梁", "东郭", "羊舌", "微生", "梁丘", "左丘", "第五", "百里", "东门", "南门",
];

/// Words before a name.
const BEFORE: &[&str] = &[
    "患者", "病人", "病患", "姓名", "名字是", "名字叫", "我叫", "我是", "家属", "联系人", "主治医生", "主治医师", "管床医生", "主管医生", "经治医生", "病友", "儿子", "女儿", "丈夫", "妻子", "老公", "老婆", "母亲", "父亲", "爱人", "就诊人",
    "经治医师", "上级医师", "主管护士", "责任护士", "记录者", "记录人", "签名", "签字人", "代诉人", "陪同人", "陪同", "申请人", "送检人", "通知", "转告", "告知", "交代",
    "医师:", "医生:", "护士:", "医师 ", "医生 ",
];

/// Words after a full name (surname and given name): 王伟本人, 王伟之女, 王伟代诉.
const AFTER_FULL: &[&str] = &["本人", "之女", "之子", "之母", "之父", "之妻", "之夫", "代诉", "代述", "的家属"];

/// Surnames that stand for a person after 小 or 老 (小王, 老李): every surname but those that
/// make ordinary words with 小/老 (小时, 小于, 小叶, 老师, 老姜, 老陈醋 is caught by the next character).
const FAMILIAR_DENY: &str = "管梁柳钱岳时于叶柴金毛白米麦苏关康方孔童车商卫师司姜牛马黄万安和成单全华石高左包宁鲁宫解应平伴公乡汤";

/// Characters that may follow 小王 / 老李 (besides punctuation and the end).
const FAMILIAR_NEXT: &str = "今昨明说讲问让叫来去到在又也还都就已曾和与跟同的是家给从把被对最这那要想会能过打说他她们说请帮住出";

/// Words after a name.
const AFTER: &[&str] = &[
    "先生", "女士", "小姐", "医生", "医师", "大夫", "护士", "主任", "教授", "老师", "同学", "阿姨", "叔叔", "师傅", "老先生", "老太太", "同志", "某某", "某",
];

/// Ordinary words that start with a surname character and follow cues like 患者 or 我是.
const DENY: &[&str] = &[
    "许多", "许久", "陈述", "陈旧", "陈皮", "周边", "关系", "谢解", "管床", "祝健", "许可", "谢谢", "谢意", "查明", "查清", "查找", "严令", "祝您", "祝你", "解惑", "解答", "商讨", "商议", "高血", "高烧", "高热", "高压", "高龄", "高度", "高危", "高脂", "高尿", "高钾", "高钙", "高糖", "高原", "高中", "高兴", "高级", "高峰",
    "常有", "常见", "常规", "常常", "常年", "常用", "常伴", "常感", "常出", "常在", "常会",
    "方可", "方面", "方法", "方案", "方便", "方式", "方能",
    "白细", "白带", "白天", "白色", "白内", "白癜", "白斑", "白发", "白蛋",
    "于是", "于今", "周期", "周围", "周身", "周末", "周岁", "金属", "金黄", "金银", "马上", "石膏", "石头",
    "黄疸", "黄色", "黄体", "黄斑", "黄芪", "黄连", "何时", "何种", "何处", "安全", "安静", "安眠", "安定",
    "明显", "明天", "明确", "明日", "全身", "全部", "全天", "全麻", "华法", "关节", "关于", "关注", "宁可", "万一",
    "文化", "向来", "和其", "和家", "和医", "成人", "成年", "成功", "成为", "成分", "时间", "时常", "时候", "时有", "时而",
    "平时", "平均", "平卧", "曾经", "曾有", "曾因", "曾在", "应该", "应当", "应用", "应在", "单纯", "单位", "单侧",
    "齐全", "苗条", "冷汗", "冷痛", "冷热", "甘油", "连续", "路上", "毛发", "毛囊", "毛细", "包括", "包块", "车祸",
    "古怪", "吉利", "简单", "尤其", "阳性", "阳痿", "严重", "龙胆", "左侧", "左右", "左下", "左上", "柳氮", "解决", "解释",
    "解除", "游泳", "温度", "温和", "康复", "牛奶", "施行", "易感", "易于", "乔装", "任何", "任意", "沈阳", "陆续", "江西",
    "钱财", "孔隙", "秦皮", "雷尼", "谷丙", "谷草", "谷氨", "贾某", "段时", "熊胆", "盛行", "史上", "师兄", "商量", "申请",
    "杜仲", "蒲公", "司机", "查体", "查出", "查看", "查过", "麻醉", "麻木", "麻疹", "池塘", "迟发", "迟缓", "邢台", "管理",
    "冯氏", "宫颈", "宫腔", "宫外", "宫缩", "卫生", "米饭", "费用", "党参", "景天", "戚属", "项目", "车前", "麦冬", "艾灸",
    "艾滋", "穆斯", "农村", "农药", "宗教", "桂枝", "桂圆", "全血", "边缘", "闵行", "师范", "仲景", "巫婆", "沙眼", "沙门",
    "荣誉", "桑叶", "桑葚", "郎中", "明白", "骆驼", "蓝色", "曲张", "曲霉", "翁维", "房颤", "房室", "房间", "房事", "屈光",
    "屈曲", "饶恕", "符合", "舒张", "舒适", "舒服", "纪律", "梅毒", "童年", "凌晨", "毕竟", "季节", "霍乱", "涂片", "涂抹",
    "成长", "苗头", "谷物", "盛夏", "冉冉", "蓝光", "辛辣", "管道", "柴胡", "蒙脱", "华佗", "喻为", "祁连", "滕州", "尤为",
    "时期", "司他", "卓越", "古代", "吉林", "简易", "连锁", "芦荟", "麦粒", "褚橙", "娄底", "窦性", "窦道", "窦房", "岑溪",
    "景象", "党员", "宫寒", "冷静", "冷水", "席卷", "卫健", "米诺", "柏树", "宗旨", "瞿麦", "全科", "佟某", "应激", "臧器",
    "闵某", "苟且", "边界", "卞某", "姬某", "师傅", "和平", "和缓", "仇恨", "商业", "刁难", "沙丁", "荣昌", "巫山", "寇某",
    "桑拿", "郎酸", "甄别", "丛生", "仲裁", "虞某", "敖某", "巩固", "明天", "佘某", "池州", "查询", "麻烦", "苑某", "迟到",
    "糜烂", "谈话", "谈论", "谈及", "谈到", "谈谈", "于某", "任职", "付出", "付款", "方向", "余下", "余生", "余量", "叶酸", "叶片", "程度", "程序", "苏醒", "苏打", "魏某",
    "吕某", "丁香", "丁酸", "沈某", "姚某", "卢某", "姜汤", "姜黄", "崔某", "钟表", "谭某", "陆某", "汪某", "范围", "范某",
    "夏天", "夏季", "夏枯", "韦某", "邹某", "孟鲁", "熊猫", "秦某", "邱某", "江苏", "江湖", "尹某", "薛某", "闫某", "段落",
    "雷公", "侯某", "龙眼", "龙骨", "史某", "陶瓷", "黎明", "贺某", "顾虑", "毛病", "郝某", "龚某", "邵某", "万分", "严格",
    "覃某", "武汉", "戴上", "戴口", "莫名", "孔某", "向上", "向下", "汤药", "汤剂", "常温", "温水", "康某", "施某", "文章",
    "牛黄", "牛肉", "樊某", "葛根", "邢某", "安排", "安慰", "齐某", "易怒", "乔某", "伍某", "庞大", "颜色", "颜面", "倪某",
    "庄某", "聂某", "章节", "鲁某", "岳母", "岳父", "翟某", "殷红", "詹某", "申某", "欧美", "耿某", "关心", "兰花", "焦虑",
    "焦急", "俞某", "左旋", "柳某", "甘草", "甘露", "祝福", "包皮", "包扎", "宁夏", "尚可", "尚未", "尚无", "尚不", "符某",
    "阮某", "柯某", "纪某", "梅花", "童某", "凌某", "毕业", "单身", "季某", "裴某", "霍某", "涂药", "成都", "成熟", "苗某",
    "谷维", "盛某", "曲线", "翁某", "冉某", "骆某", "蓝莓", "路某", "游走", "游离", "辛苦", "靳某", "管子", "柴某", "蒙古",
    "鲍鱼", "华某", "喻某", "祁某", "蒲黄", "房某", "滕某", "屈某", "饶某", "解剖", "牟某", "艾司", "尤某", "阳光", "时候",
    "穆某", "农民", "司某", "卓某", "古某", "吉某", "缪某", "简直", "车上", "项某", "连接", "连日", "芦某", "麦某", "褚某",
    "娄某", "窦某", "戚某", "岑某", "景某", "党某", "宫内", "费某", "卜某", "冷某", "晏某", "席某", "卫某", "米某", "柏某",
    "宗某", "瞿某", "桂某", "全某", "应某", "臧某", "明某", "和某", "关某", "高某", "白某", "石某", "黄某",
];

/// Characters that end a given name (function words, verbs and nouns that follow names).
const STOP: &str = "或因于在的是有说诉男女今近自主反出入来到已曾无和与及经被患感发突以昨前年岁月日天诊住体血头腹胸咳伴又也还都就才对从给让把将等先老医护大夫主教同阿叔师某称表示同意家属儿丈妻母父爱签生士姐问我你您他她们吗呢吧啊了过着个些这那里上下中为去回做吃喝看治疗病症状术检查服用药";

/// Surname characters that, alone before 医生/先生, are function words.
const FUNCTION: &str = "向和于与对给跟找问让叫被请是应时常尚全单成才过查易可能左右";

/// Surnames that are also everyday words; after a cue they need the name to end at punctuation.
const AMBIGUOUS: &str = "应于和向常时曾尚全单成明安方高白关宁万文平能可才过华金石马黄周何江查许谢师易商祝严苗任康安管边包游戚阳解";

/// Characters after which a name before 医生/先生 may start (besides punctuation).
const BOUNDARY: &str = "找问请给向和跟是让叫被位个这那谢的与对了去见到";

/// Finds name spans (byte ranges) in `text`.
pub struct NameFinder {
    surnames: std::collections::HashSet<char>,
    stop: std::collections::HashSet<char>,
    deny: std::collections::HashSet<&'static str>,
    before: AhoCorasick,
    after: AhoCorasick,
    after_full: AhoCorasick,
    demographic: regex::Regex,
}

fn is_han(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

impl NameFinder {
    /// Builds the finder (surname set, cue automata).
    pub fn new() -> Self {
        let build = |pats: &[&str]| {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(pats)
                .unwrap_or_else(|_| AhoCorasick::new(Vec::<&str>::new()).unwrap_or_else(|_| unreachable!()))
        };
        NameFinder {
            surnames: SURNAMES.chars().collect(),
            stop: STOP.chars().collect(),
            deny: DENY.iter().copied().collect(),
            before: build(BEFORE),
            after: build(AFTER),
            after_full: build(AFTER_FULL),
            // "王伟，男，62岁", "王伟（女，45岁）", "12\t王伟\t男\t": sex right after a name.
            demographic: regex::Regex::new(r"[,\t (]\s?[男女]性?[,\t )、;0-9]").unwrap_or_else(|e| panic!("bad built-in pattern: {e}")),
        }
    }

    /// Length in bytes of the surname starting at `rest`, if any.
    fn surname_len(&self, rest: &str) -> Option<usize> {
        if let Some(c) = COMPOUND.iter().find(|c| rest.starts_with(**c)) {
            return Some(c.len());
        }
        let c = rest.chars().next()?;
        self.surnames.contains(&c).then(|| c.len_utf8())
    }

    /// A name that starts at `start` after a cue: surname + one or two given characters.
    fn name_at(&self, text: &str, start: usize) -> Option<(usize, usize)> {
        let rest = &text[start..];
        let sl = self.surname_len(rest)?;
        let mut end = start + sl;
        let mut given = 0;
        let mut next = text[end..].chars();
        for c in text[end..].chars().take(2) {
            next.next();
            // A second given character that elsewhere ends a name (春生, 家豪 …) is kept when
            // punctuation or the end follows it (经治医师：彭春生。).
            let fenced = given == 1 && next.clone().next().is_none_or(|n| !is_han(n) && !n.is_ascii_alphanumeric());
            if !is_han(c) || (self.stop.contains(&c) && !fenced) {
                break;
            }
            if given == 0 {
                let pair = &text[start..end + c.len_utf8()];
                if self.deny.contains(pair) {
                    return None;
                }
            }
            end += c.len_utf8();
            given += 1;
        }
        // "某"/"某某" after a surname is an anonymised name and is masked too.
        let after = &text[end..];
        if given == 0 && after.starts_with('某') {
            end += if after.starts_with("某某") { 6 } else { 3 };
            given = 1;
        }
        // Function words that are rare surnames (应, 于, 常 …) are not names after a cue.
        if rest.chars().next().is_some_and(|c| FUNCTION.contains(c)) && sl == 3 {
            return None;
        }
        (given > 0).then_some((start, end))
    }

    /// A name that ends at `end` before an after-cue (先生, 女士, 医生, …).
    /// With `full`, a surname alone is not enough (the cue follows full names: 本人, ，男).
    fn name_before(&self, text: &str, end: usize, full: bool) -> Option<(usize, usize)> {
        let head = &text[..end];
        let chars: Vec<(usize, char)> = head.char_indices().rev().take(5).collect();
        // Candidates: 4 (compound surnames only), 3, 2 and 1 characters before the cue.
        for n in [4usize, 3, 2, 1] {
            if chars.len() < n || (full && n == 1) {
                continue;
            }
            let (start, _) = chars[n - 1];
            let cand = &text[start..end];
            if !cand.chars().all(is_han) {
                continue;
            }
            let Some(sl) = self.surname_len(cand) else { continue };
            if (n == 4 && sl != 6) || (full && sl == cand.len()) {
                continue;
            }
            let prev = chars.get(n).map(|x| x.1);
            // A full name bounded by punctuation before and a full-name cue after (。顾春生之女,
            // ，丁家豪，女) may hold characters that elsewhere end a name (生, 家) or be a
            // function-word surname (于少华); so may 常某某 (某 marks an anonymised name).
            let fenced = (full || text[end..].starts_with('某')) && prev.is_none_or(|p| !is_han(p));
            let given: Vec<char> = cand[sl..].chars().collect();
            if given.iter().any(|c| self.stop.contains(c)) && !(full && fenced) {
                continue;
            }
            if given.first().is_some_and(|g| self.deny.contains(&cand[..sl + g.len_utf8()])) {
                continue;
            }
            // A lone surname character that is also a function word (向医生, 和医生) is not a name.
            if sl == 3 && cand.chars().next().is_some_and(|c| FUNCTION.contains(c)) && !fenced {
                continue;
            }
            // A single surname, or an everyday-word surname, must start after punctuation or a
            // boundary word (谢谢李医生, 找王医生), not inside a word (检查医生, 及时向医生).
            let starts_clean = prev.is_none_or(|p| !is_han(p) || BOUNDARY.contains(p));
            let ambiguous = cand.chars().next().is_some_and(|c| AMBIGUOUS.contains(c)) && sl == 3;
            if (n == 1 || ambiguous) && !starts_clean || (n == 1 && prev.is_some_and(|p| cand.starts_with(p))) {
                continue;
            }
            return Some((start, end));
        }
        None
    }

    /// Surnames used as names after 小 or 老 (小王今天…, 老李的…), when the next character
    /// ends the name (punctuation or a function word), so that 小叶增生 or 老陈醋 stay.
    fn familiar(&self, text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, c) in text.char_indices() {
            if c != '小' && c != '老' {
                continue;
            }
            let rest = &text[i + c.len_utf8()..];
            let Some(sl) = self.surname_len(rest) else { continue };
            if rest[..sl].chars().count() == 1 && FAMILIAR_DENY.contains(&rest[..sl]) {
                continue;
            }
            let ok = match rest[sl..].chars().next() {
                None => true,
                Some(n) => (!is_han(n) && !n.is_ascii_alphanumeric()) || FAMILIAR_NEXT.contains(n),
            };
            if ok {
                let start = i + c.len_utf8();
                out.push((start, start + sl));
            }
        }
        out
    }

    /// All name spans in `text`, in order, not overlapping.
    pub fn find(&self, text: &str) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        for m in self.before.find_iter(text) {
            let mut start = m.end();
            // "姓名：张三", "患者 张三"
            for sep in [":", "：", " ", "　", "为", "是"] {
                if text[start..].starts_with(sep) {
                    start += sep.len();
                    break;
                }
            }
            let separated = start > m.end();
            let label = separated && matches!(&text[m.start()..m.end()], "姓名" | "就诊人");
            if label {
                // After a label anything of 2-4 Han characters is a name, surname list or not.
                let end = text[start..]
                    .char_indices()
                    .take_while(|(i, c)| is_han(*c) && *i < 12)
                    .map(|(i, c)| start + i + c.len_utf8())
                    .last();
                if let Some(end) = end {
                    if text[start..end].chars().count() >= 2 {
                        spans.push((start, end));
                        continue;
                    }
                }
            }
            if let Some(span) = self.name_at(text, start) {
                spans.push(span);
            }
        }
        for m in self.after.find_iter(text) {
            if let Some(span) = self.name_before(text, m.start(), false) {
                spans.push(span);
            }
        }
        for start in self.after_full.find_iter(text).map(|m| m.start()).chain(self.demographic.find_iter(text).map(|m| m.start())) {
            if let Some(span) = self.name_before(text, start, true) {
                spans.push(span);
            }
        }
        spans.extend(self.familiar(text));
        spans.sort();
        let mut out: Vec<(usize, usize)> = Vec::new();
        for s in spans {
            match out.last_mut() {
                Some(last) if s.0 < last.1 => last.1 = last.1.max(s.1),
                _ => out.push(s),
            }
        }
        out
    }
}

impl Default for NameFinder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<&str> {
        NameFinder::new().find(text).into_iter().map(|(s, e)| &text[s..e]).collect()
    }

    #[test]
    fn names_with_cues() {
        assert_eq!(names("患者王伟头痛3天"), vec!["王伟"]);
        assert_eq!(names("患者张小明，男，45岁"), vec!["张小明"]);
        assert_eq!(names("姓名：欧阳娜娜，性别女"), vec!["欧阳娜娜"]);
        assert_eq!(names("李医生您好，请问"), vec!["李"]);
        assert_eq!(names("谢谢陈建国医生"), vec!["陈建国"]);
        assert_eq!(names("王女士你好"), vec!["王"]);
        assert_eq!(names("家属张某某签字"), vec!["张某某"]);
    }

    #[test]
    fn medical_words_are_not_names() {
        for text in [
            "患者高血压病史10年",
            "患者常有头晕",
            "患者方可出院",
            "患者白细胞升高",
            "患者于2020年手术",
            "我是高血压患者",
            "主治医生建议手术",
            "向医生咨询",
            "家庭医生签约",
            "患者周身乏力",
            "患者明显消瘦",
            "看医生了吗",
        ] {
            assert!(names(text).is_empty(), "{text}: {:?}", names(text));
        }
    }
}
