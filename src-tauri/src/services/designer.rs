//! The bridge to the prompt designer (`doctorglm-knowledge`): a question in, a prompt (system
//! message + user turn) and its sources (keywords, ranked diseases, document sections) out.
use super::inspect::Architecture;
use super::AppContext;
use crate::error::{AppError, AppResult};
use doctorglm_knowledge::{CancelToken, DesignerOptions, KnowledgeIndex, Library, PromptDesigner, PromptStyle};
use serde::{Deserialize, Serialize};

/// A disease the designer ranked for the question.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RankedDisease {
    /// Disease name.
    pub name: String,
    /// Ranking score (higher is better).
    pub score: f32,
}

/// A document section the prompt drew on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceSection {
    /// The disease (document) it belongs to.
    pub disease: String,
    /// Section heading.
    pub title: String,
    /// The text used.
    pub text: String,
}

/// What the designer used for one answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sources {
    /// Keywords extracted from the question.
    pub keywords: Vec<String>,
    /// Diseases, best first.
    pub diseases: Vec<RankedDisease>,
    /// Sections put into the prompt.
    pub sections: Vec<SourceSection>,
}

/// The designer's output: the text to send to the model, and where it came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DesignedPrompt {
    /// The system message (ChatGLM3, GLM-4) holding the disease description, if any.
    pub system: Option<String>,
    /// The user turn for the model (for ChatGLM-6B the description leads it).
    pub prompt: String,
    /// The sources, None when the designer was off or found nothing.
    pub sources: Option<Sources>,
}

/// The user's own library (where imports go): `knowledge-library` in the data folder.
pub fn user_library_dir(ctx: &AppContext) -> std::path::PathBuf {
    ctx.data_dir().join(crate::cli::knowledge::USER_LIBRARY)
}

/// Loads the starter library (or `$DOCTORGLM_LIBRARY`) with the user's library on top.
pub fn load_library(ctx: &AppContext) -> AppResult<Library> {
    let starter = crate::cli::knowledge::default_library_dir();
    let user = user_library_dir(ctx);
    Library::load_with_user(&starter, &user).map_err(|e| {
        AppError::Designer(format!("cannot load the starter library at {} with your library at {}: {e}", starter.display(), user.display()))
    })
}

/// Builds the designer over the starter library plus the user's library, with its search
/// index under the data folder brought up to date with them (incrementally).
fn build(ctx: &AppContext) -> AppResult<PromptDesigner> {
    let library = load_library(ctx)?;
    let index_dir = ctx.data_dir().join(crate::cli::knowledge::INDEX);
    let index = match KnowledgeIndex::open(&index_dir) {
        Ok(mut index) => match index.sync(&library, &mut |_: doctorglm_knowledge::Progress| {}, &CancelToken::new()) {
            Ok(_) => Some(index),
            Err(e) => {
                tracing::warn!("the library index could not be updated, ranking without it: {e}");
                None
            }
        },
        Err(e) => {
            tracing::warn!("the library index could not be opened, ranking without it: {e}");
            None
        }
    };
    PromptDesigner::new(library, index, &[]).map_err(|e| AppError::Designer(e.to_string()))
}

/// Runs `f` on the designer (library + index), building it on first use.
pub fn with_designer<R>(ctx: &AppContext, f: impl FnOnce(&PromptDesigner) -> R) -> AppResult<R> {
    let mut slot = ctx.designer.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(build(ctx)?);
    }
    let designer = slot.as_ref().ok_or_else(|| AppError::Designer("no designer".into()))?;
    Ok(f(designer))
}

/// Drops the designer so the next use reloads the library and syncs the index (after an import).
pub fn invalidate(ctx: &AppContext) {
    *ctx.designer.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

/// Builds the prompt for a question; with `enabled` false the question is sent as it is.
/// ChatGLM-6B has no system role, so its description leads the question.
pub fn design(ctx: &AppContext, question: &str, enabled: bool, architecture: Architecture) -> AppResult<DesignedPrompt> {
    if !enabled {
        return Ok(DesignedPrompt { system: None, prompt: question.to_string(), sources: None });
    }
    with_designer(ctx, |designer| design_with(designer, question, architecture))?
}

fn design_with(designer: &PromptDesigner, question: &str, architecture: Architecture) -> AppResult<DesignedPrompt> {
    let options = DesignerOptions {
        style: match architecture {
            Architecture::Chatglm6b => PromptStyle::LeadingText,
            _ => PromptStyle::SystemMessage,
        },
        ..Default::default()
    };
    let p = designer.design(question, &options, None).map_err(|e| AppError::Designer(e.to_string()))?;
    let sections = p
        .sources
        .iter()
        .filter_map(|src| {
            let doc = designer.library().get(&src.doc_id)?;
            let section = doc.section(src.section)?;
            let text: String = section.body.chars().skip(src.span.0).take(src.span.1.saturating_sub(src.span.0)).collect();
            Some(SourceSection { disease: src.title.clone(), title: section.heading.clone(), text })
        })
        .collect();
    let sources = Sources {
        keywords: p.keywords.iter().filter(|k| !k.negated).map(|k| k.text.clone()).collect(),
        diseases: p.diseases.iter().map(|d| RankedDisease { name: d.name.clone(), score: d.score }).collect(),
        sections,
    };
    let empty = sources.keywords.is_empty() && sources.diseases.is_empty();
    Ok(DesignedPrompt { system: p.system, prompt: p.user_text, sources: (!empty).then_some(sources) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_disease_is_ranked_and_cited() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let off = design(&ctx, "高血压怎么治疗？", false, Architecture::Chatglm3).unwrap();
        assert_eq!((off.prompt.as_str(), off.system.is_none(), off.sources.is_none()), ("高血压怎么治疗？", true, true));
        let on = design(&ctx, "高血压怎么治疗？", true, Architecture::Chatglm3).unwrap();
        let sources = on.sources.expect("sources for a disease the starter library has");
        assert!(sources.keywords.iter().any(|k| k.contains("高血压")), "{sources:?}");
        assert!(sources.diseases[0].name.contains("高血压"), "{sources:?}");
        assert!(!sources.sections.is_empty() && sources.sections.iter().all(|s| !s.text.is_empty()));
        assert!(on.system.is_some(), "ChatGLM3 gets the description as a system message");
        let v1 = design(&ctx, "高血压怎么治疗？", true, Architecture::Chatglm6b).unwrap();
        assert!(v1.system.is_none() && v1.prompt.ends_with("高血压怎么治疗？") && v1.prompt.len() > "高血压怎么治疗？".len());
    }
}
