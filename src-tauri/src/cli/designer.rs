//! `doctorglm designer QUESTION`: what the prompt designer makes of a question.
use clap::{Args, ValueEnum};
use doctorglm_knowledge::{DesignerOptions, PromptDesigner, PromptStyle};

use super::knowledge::LibraryArgs;

/// Prompt style for the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StyleArg {
    /// A system message (ChatGLM3, GLM-4).
    System,
    /// Text before the question (ChatGLM-6B).
    Leading,
}

/// Arguments of `doctorglm designer`.
#[derive(Debug, Args)]
pub struct DesignerArgs {
    /// The question.
    pub question: String,
    /// Print `{keywords, diseases, prompt, system, user_text, sources}` as JSON.
    #[arg(long)]
    pub json: bool,
    /// Budget of the disease description, in approximate tokens.
    #[arg(long, default_value_t = 400)]
    pub budget: usize,
    /// Where the description goes.
    #[arg(long, value_enum, default_value = "system")]
    pub style: StyleArg,
    /// How many diseases to rank.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Pass the question through unchanged (designer off).
    #[arg(long)]
    pub off: bool,
    #[command(flatten)]
    pub lib: LibraryArgs,
}

/// Runs `doctorglm designer`.
pub fn run(args: DesignerArgs) -> anyhow::Result<()> {
    let library = args.lib.load_library()?;
    let index = args.lib.synced_index(&library)?;
    let designer = PromptDesigner::new(library, Some(index), &args.lib.lexicon_files()?)?;
    let options = DesignerOptions {
        enabled: !args.off,
        token_budget: args.budget,
        style: match args.style {
            StyleArg::System => PromptStyle::SystemMessage,
            StyleArg::Leading => PromptStyle::LeadingText,
        },
        top_k: args.top_k,
        ..Default::default()
    };
    let p = designer.design(&args.question, &options, None)?;
    if args.json {
        let keywords: Vec<_> = p
            .keywords
            .iter()
            .map(|k| serde_json::json!({"text": k.text, "kind": k.kind, "negated": k.negated, "start": k.start, "end": k.end}))
            .collect();
        let diseases: Vec<_> = p
            .diseases
            .iter()
            .map(|d| serde_json::json!({"id": d.id, "name": d.name, "score": d.score, "evidence": d.evidence}))
            .collect();
        let out = serde_json::json!({
            "keywords": keywords,
            "diseases": diseases,
            "prompt": p.full_text(),
            "system": p.system,
            "user_text": p.user_text,
            "sources": p.sources,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for k in &p.keywords {
            println!("keyword: {} ({:?}{})", k.text, k.kind, if k.negated { ", negated" } else { "" });
        }
        for d in &p.diseases {
            println!("disease: {} {:.3} [{}]", d.name, d.score, d.evidence.join(", "));
        }
        if let Some(s) = &p.system {
            println!("--- system ---\n{s}");
        }
        println!("--- user ---\n{}", p.user_text);
    }
    Ok(())
}
