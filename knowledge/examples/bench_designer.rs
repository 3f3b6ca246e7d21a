//! Benchmark: index build time and designer latency on a generated 10,000-document library.
//!
//! `cargo run --release -p doctorglm-knowledge --example bench_designer [-- DOCS QUERIES]`
//!
//! Prints seconds and, as ratios that survive a noisy machine, the designer's latency against
//! keyword extraction alone and against a bare index query, measured in the same process.
use std::time::{Duration, Instant};

use doctorglm_knowledge::document::{Document, Section, SectionKind};
use doctorglm_knowledge::{CancelToken, DesignerOptions, KnowledgeIndex, Library, PromptDesigner};

const PARTS: [&str; 24] = [
    "肺", "支气管", "胃", "十二指肠", "结肠", "肝", "胆囊", "胰腺", "肾", "膀胱", "前列腺", "甲状腺", "心肌", "关节", "皮肤",
    "鼻窦", "咽", "扁桃体", "中耳", "角膜", "子宫", "乳腺", "脊柱", "神经",
];
const KINDS: [&str; 10] = ["炎", "结石", "囊肿", "肿瘤", "功能紊乱", "感染", "溃疡", "增生", "损伤", "综合征"];
const QUALIFIERS: [&str; 42] = [
    "急性", "慢性", "反复性", "过敏性", "病毒性", "细菌性", "真菌性", "萎缩性", "肥厚性", "出血性", "坏死性", "化脓性", "特发性", "继发性",
    "原发性", "遗传性", "先天性", "老年性", "儿童", "妊娠期", "职业性", "药物性", "酒精性", "代谢性", "免疫性", "结核性", "梗阻性", "单纯性",
    "复杂性", "弥漫性", "局限性", "间质性", "阻塞性", "非特异性", "糜烂性", "钙化性", "囊性", "纤维性", "增殖性", "渗出性", "亚急性", "隐匿性",
];
const SYMPTOMS: [&str; 60] = [
    "发热", "咳嗽", "咳痰", "咽痛", "流涕", "鼻塞", "头痛", "头晕", "乏力", "胸痛", "胸闷", "心悸", "气促", "呼吸困难", "腹痛", "腹泻",
    "腹胀", "恶心", "呕吐", "便秘", "便血", "黄疸", "食欲减退", "体重下降", "尿频", "尿急", "尿痛", "血尿", "腰痛", "关节痛", "关节肿胀",
    "皮疹", "瘙痒", "脱屑", "水肿", "盗汗", "寒战", "耳痛", "耳鸣", "听力下降", "视力下降", "眼痛", "鼻出血", "声音嘶哑", "吞咽困难",
    "反酸", "烧心", "口干", "多饮", "多尿", "失眠", "焦虑", "肌肉酸痛", "麻木", "抽搐", "意识障碍", "月经不调", "白带增多", "阴道出血", "排尿困难",
];

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn generate(n: usize, rng: &mut Rng) -> Vec<Document> {
    let mut docs = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::new();
    let mut i = 0;
    while docs.len() < n {
        i += 1;
        let name = format!("{}{}{}", QUALIFIERS[(i / 240) % QUALIFIERS.len()], PARTS[i % PARTS.len()], KINDS[(i / PARTS.len()) % KINDS.len()]);
        let name = if seen.contains(&name) { format!("{name}{}型", i / 10_000 + 2) } else { name };
        if !seen.insert(name.clone()) {
            continue;
        }
        let symptoms: Vec<String> = (0..6).map(|_| rng.pick(&SYMPTOMS).to_string()).collect();
        let text = |label: &str, rng: &mut Rng| {
            format!("{label}：{}，{}，可伴{}。病程长短不一，需结合检查判断。", rng.pick(&SYMPTOMS), rng.pick(&SYMPTOMS), rng.pick(&SYMPTOMS))
        };
        let sections = vec![
            Section { kind: SectionKind::Overview, heading: "概述".into(), body: format!("{name}是一种累及{}的疾病。{}", PARTS[i % PARTS.len()], text("常见", rng)) },
            Section { kind: SectionKind::Symptoms, heading: "症状".into(), body: format!("主要表现为{}。{}", symptoms.join("、"), text("部分患者", rng)) },
            Section { kind: SectionKind::Diagnosis, heading: "诊断".into(), body: "根据病史、体格检查、血常规和影像学检查诊断，需与相似疾病鉴别。".into() },
            Section { kind: SectionKind::Treatment, heading: "治疗".into(), body: "去除病因，对症治疗；细菌感染时选用敏感抗生素；病情加重、持续高热或出现意识改变时应及时就医。".into() },
            Section { kind: SectionKind::Prevention, heading: "预防".into(), body: "规律作息，均衡饮食，戒烟限酒，按时复查。".into() },
        ];
        docs.push(Document {
            id: format!("gen-{i}"),
            name,
            name_en: None,
            aliases: vec![],
            department: Some("内科".into()),
            symptoms,
            language: "zh".into(),
            source: "generated".into(),
            attribution: "generated for a benchmark".into(),
            sections,
        });
    }
    docs
}

/// CPU time of this thread (not wall time: a busy machine's preemptions do not count).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n_docs = args.first().copied().unwrap_or(10_000);
    let n_queries = args.get(1).copied().unwrap_or(2_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let tmp = std::env::temp_dir().join(format!("doctorglm-bench-{}", std::process::id()));
    let lib_dir = tmp.join("library");
    std::fs::create_dir_all(&lib_dir)?;

    let t = Instant::now();
    let mut library = Library::load(&lib_dir)?;
    for d in generate(n_docs, &mut rng) {
        library.add(d, "generated").map_err(|e| format!("cannot write: {e}"))?;
    }
    let write_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let library = Library::load(&lib_dir)?;
    let load_s = t.elapsed().as_secs_f64();

    // Warm the segmenter's dictionary outside the timings.
    let _ = doctorglm_knowledge::segment::jieba().cut("预热", false);
    let t = Instant::now();
    let mut index = KnowledgeIndex::open(tmp.join("index"))?;
    let report = index.sync(&library, &mut (), &CancelToken::new())?;
    let build_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let _resync = index.sync(&library, &mut (), &CancelToken::new())?;
    let resync_s = t.elapsed().as_secs_f64();

    let names: Vec<String> = library.documents().map(|d| d.name.clone()).collect();
    let designer = PromptDesigner::new(library, Some(index), &[])?;
    let questions: Vec<String> = (0..n_queries)
        .map(|i| {
            if i % 4 == 0 {
                format!("医生您好，我得了{}，平时{}，该怎么治疗？", names[(rng.next() % names.len() as u64) as usize], rng.pick(&SYMPTOMS))
            } else {
                format!("孩子{}三天了，{}，没有{}，{}，怎么办？", rng.pick(&SYMPTOMS), rng.pick(&SYMPTOMS), rng.pick(&SYMPTOMS), rng.pick(&SYMPTOMS))
            }
        })
        .collect();
    let options = DesignerOptions::default();
    let mut design = Vec::with_capacity(n_queries);
    let mut design_cpu = Vec::with_capacity(n_queries);
    let mut extract = Vec::with_capacity(n_queries);
    let mut answered = 0;
    for q in &questions {
        let (t, c) = (Instant::now(), thread_cpu());
        let p = designer.design(q, &options, None)?;
        design.push(t.elapsed());
        design_cpu.push(thread_cpu().saturating_sub(c));
        answered += usize::from(p.system.is_some());
        let t = Instant::now();
        std::hint::black_box(designer.extractor().extract(q));
        extract.push(t.elapsed());
    }
    design.sort();
    design_cpu.sort();
    extract.sort();
    let (c50, c95) = (percentile(&design_cpu, 0.5), percentile(&design_cpu, 0.95));
    let (p50, p95) = (percentile(&design, 0.5), percentile(&design, 0.95));
    let (e50, e95) = (percentile(&extract, 0.5), percentile(&extract, 0.95));
    println!("library: {n_docs} generated documents (write {write_s:.2} s, load {load_s:.2} s)");
    println!(
        "index build: {build_s:.2} s ({:.0} docs/s; added {}), no-change re-sync: {resync_s:.3} s",
        n_docs as f64 / build_s,
        report.added
    );
    println!("designer over {n_queries} questions ({answered} with a description):");
    println!("  design      p50 {:.3} ms  p95 {:.3} ms", p50.as_secs_f64() * 1e3, p95.as_secs_f64() * 1e3);
    println!("  design CPU  p50 {:.3} ms  p95 {:.3} ms (thread CPU time)", c50.as_secs_f64() * 1e3, c95.as_secs_f64() * 1e3);
    println!("  extraction  p50 {:.3} ms  p95 {:.3} ms", e50.as_secs_f64() * 1e3, e95.as_secs_f64() * 1e3);
    println!(
        "  ratio design/extraction: p50 {:.1}x, p95 {:.1}x; p95 target 10 ms: wall {}, CPU {}",
        p50.as_secs_f64() / e50.as_secs_f64().max(1e-9),
        p95.as_secs_f64() / e95.as_secs_f64().max(1e-9),
        if p95 < Duration::from_millis(10) { "met" } else { "NOT met" },
        if c95 < Duration::from_millis(10) { "met" } else { "NOT met" }
    );
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}
