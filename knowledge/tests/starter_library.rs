//! The shipped starter library: every file loads, and the designer finds the paper's examples.
use doctorglm_knowledge::library::starter_library_dir;
use doctorglm_knowledge::{CancelToken, DesignerOptions, KnowledgeIndex, Library, PromptDesigner, SectionKind, TermKind};

fn library() -> Library {
    Library::load(starter_library_dir()).expect("knowledge/library must exist")
}

#[test]
fn every_starter_document_loads_and_follows_the_format() {
    let lib = library();
    assert!(lib.skipped.is_empty(), "files not in the library format: {:#?}", lib.skipped);
    assert!(lib.len() >= 200, "only {} documents", lib.len());
    for d in lib.documents() {
        for kind in [SectionKind::Overview, SectionKind::Symptoms, SectionKind::Diagnosis, SectionKind::Treatment] {
            assert!(d.section(kind).is_some_and(|s| !s.body.is_empty()), "{} lacks {:?}", d.id, kind);
        }
        assert!(d.name_en.is_some(), "{} has no English name", d.id);
        assert!(!d.symptoms.is_empty(), "{} has no symptoms list", d.id);
        assert!(d.attribution.contains("verify"), "{} attribution", d.id);
    }
}

#[test]
fn the_designer_grounds_the_papers_examples() {
    let lib = library();
    let mut index = KnowledgeIndex::in_memory().unwrap();
    index.sync(&lib, &mut (), &CancelToken::new()).unwrap();
    let designer = PromptDesigner::new(lib, Some(index), &[]).unwrap();
    let options = DesignerOptions::default();
    for (question, disease) in [
        ("扁桃体炎怎么治疗？孩子发烧三天了", "扁桃体炎"),
        ("我有前列腺炎，尿频尿急怎么办", "前列腺炎"),
        ("Is tonsillitis contagious?", "扁桃体炎"),
    ] {
        let p = designer.design(question, &options, None).unwrap();
        let top = p.diseases.first().unwrap_or_else(|| panic!("nothing ranked for {question}"));
        assert!(top.name.contains(disease), "{question}: top is {} ({:?})", top.name, p.diseases);
        let system = p.system.as_deref().unwrap();
        assert!(system.contains(&top.name) && system.contains("治疗"), "{system}");
        assert!(!p.sources.is_empty());
    }
    // Symptoms alone, one of them negated: a ranking with evidence, never the negated word.
    let p = designer.design("宝宝拉肚子，腹泻，呕吐，没有发热", &options, None).unwrap();
    assert!(p.keywords.iter().any(|k| k.kind == TermKind::Symptom && k.text == "发热" && k.negated), "{:?}", p.keywords);
    assert!(!p.diseases.is_empty());
    assert!(p.diseases.iter().all(|d| !d.evidence.iter().any(|e| e == "发热")));
    assert!(!p.diseases[0].evidence.is_empty(), "{:?}", p.diseases);
    assert!(p.diseases.iter().any(|d| d.evidence.iter().any(|e| e == "腹泻") && d.evidence.iter().any(|e| e == "呕吐")), "{:?}", p.diseases);
}
