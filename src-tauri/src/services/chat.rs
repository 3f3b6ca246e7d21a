//! One question answered: the question is saved first, the designer builds the prompt, the
//! engine streams the answer, and the answer is saved with its sources, model, adapter,
//! settings and timings. Stopping keeps what was generated so far, marked as stopped.
use super::conversations::{self, new_message, Message, Role, Timings};
use super::designer::{self, Sources};
use super::engine::{self, Device, Turn};
use super::generation::GenerationSettings;
use super::registry::Registry;
use super::{AppContext, CancelFlag};
use crate::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// A question and how to answer it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct AskRequest {
    /// The conversation to continue; None starts a new one.
    pub conversation_id: Option<String>,
    /// The question.
    pub question: String,
    /// The model; None uses the most recently imported one.
    pub model_id: Option<String>,
    /// The adapter; None answers with the base alone.
    pub adapter_id: Option<String>,
    /// Generation settings.
    pub settings: GenerationSettings,
    /// CPU or GPU.
    pub device: Device,
    /// Keep the exchange in the history (false for side-by-side comparisons).
    pub save: bool,
}

/// What happens while a question is answered, in order.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ChatEvent {
    /// The question was saved (when saving) and work began.
    #[serde(rename_all = "camelCase")]
    Started {
        /// The conversation (None when not saving).
        conversation_id: Option<String>,
        /// The saved question.
        question: Message,
    },
    /// The designer's sources (before any token).
    Sources {
        /// None when the designer was off or found nothing.
        sources: Option<Sources>,
    },
    /// A piece of the answer.
    Token {
        /// Decoded text.
        text: String,
    },
    /// The answer is complete (or stopped) and saved.
    Done {
        /// The answer as saved.
        answer: Message,
    },
}

/// Answers a question, reporting each step to `on_event`. Returns the answer.
pub fn ask(
    ctx: &AppContext,
    request: &AskRequest,
    on_event: &mut dyn FnMut(ChatEvent),
    cancel: &CancelFlag,
) -> AppResult<Message> {
    let question = request.question.trim();
    if question.is_empty() {
        return Err(AppError::Invalid("the question is empty".into()));
    }
    request.settings.validate().map_err(AppError::Invalid)?;
    let registry = Registry::load(ctx)?;
    let model = match &request.model_id {
        Some(id) => registry.model(id)?.clone(),
        None => registry.models.last().cloned().ok_or(AppError::NoModel)?,
    };
    let adapter = match &request.adapter_id {
        Some(id) => {
            let a = registry.adapter(id)?.clone();
            if a.base_id != model.id {
                return Err(AppError::Invalid(format!("adapter {} belongs to another base model", a.info.name)));
            }
            Some(a)
        }
        None => None,
    };

    let history = match &request.conversation_id {
        Some(id) => turns_of(&conversations::get(ctx, id)?.messages),
        None => Vec::new(),
    };
    let question_msg = new_message(Role::User, question);
    let conversation_id = if request.save {
        Some(conversations::append(ctx, request.conversation_id.as_deref(), question_msg.clone())?)
    } else {
        None
    };
    on_event(ChatEvent::Started { conversation_id: conversation_id.clone(), question: question_msg });

    let designed = designer::design(ctx, question, request.settings.use_designer, model.info.architecture)?;
    on_event(ChatEvent::Sources { sources: designed.sources.clone() });

    let started = Instant::now();
    let mut first_token_ms = None;
    let mut text = String::new();
    let stats = engine::with_backend(ctx, &model, adapter.as_ref(), request.device, cancel, |backend| {
        backend.generate(
            &history,
            designed.system.as_deref(),
            &designed.prompt,
            &request.settings,
            &mut |piece| {
                first_token_ms.get_or_insert_with(|| started.elapsed().as_millis() as u64);
                text.push_str(piece);
                on_event(ChatEvent::Token { text: piece.to_string() });
            },
            cancel,
        )
    })?;

    let mut answer = new_message(Role::Assistant, text);
    answer.sources = designed.sources;
    answer.model = Some(model.info.name.clone());
    answer.adapter = adapter.map(|a| a.info.name);
    answer.settings = Some(request.settings.clone());
    answer.stopped = cancel.is_cancelled();
    answer.timings = Some(Timings {
        first_token_ms: first_token_ms.unwrap_or(0),
        total_ms: started.elapsed().as_millis() as u64,
        tokens: stats.tokens,
    });
    if let Some(id) = &conversation_id {
        conversations::append(ctx, Some(id), answer.clone())?;
    }
    on_event(ChatEvent::Done { answer: answer.clone() });
    Ok(answer)
}

/// Answers the last question of a conversation again (its last answer is dropped first).
pub fn regenerate(
    ctx: &AppContext,
    mut request: AskRequest,
    on_event: &mut dyn FnMut(ChatEvent),
    cancel: &CancelFlag,
) -> AppResult<Message> {
    let id = request.conversation_id.clone().ok_or_else(|| AppError::Invalid("choose a conversation to regenerate".into()))?;
    request.question = conversations::pop_last_answer(ctx, &id)?;
    request.save = true;
    ask(ctx, &request, on_event, cancel)
}

fn turns_of(messages: &[Message]) -> Vec<Turn> {
    messages
        .windows(2)
        .filter(|w| w[0].role == Role::User && w[1].role == Role::Assistant)
        .map(|w| Turn { user: w[0].content.clone(), assistant: w[1].content.clone() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_model_the_question_is_refused_with_advice_and_nothing_saved() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let req = AskRequest { question: "What is asthma?".into(), save: true, ..Default::default() };
        let err = ask(&ctx, &req, &mut |_| {}, &CancelFlag::new()).unwrap_err();
        assert!(err.to_string().contains("models import"), "{err}");
        assert!(conversations::list(&ctx, None).unwrap().is_empty());
    }

    #[test]
    fn the_tiny_model_answers_with_sources_and_the_exchange_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let fixtures = std::env::var_os("DOCTORGLM_FIXTURES")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
        crate::services::models::import_model(&ctx, &fixtures.join("models/chatglm3-tiny"), &|_| {}, &CancelFlag::new()).unwrap();
        let mut settings = crate::services::generation::Preset::Conservative.settings();
        settings.max_new_tokens = 6;
        let req = AskRequest { question: "高血压怎么治疗？".into(), settings, save: true, ..Default::default() };
        let mut kinds = Vec::new();
        let mut streamed = String::new();
        let answer = ask(
            &ctx,
            &req,
            &mut |e| {
                if let ChatEvent::Token { text } = &e {
                    streamed.push_str(text);
                }
                kinds.push(match e {
                    ChatEvent::Started { .. } => "started",
                    ChatEvent::Sources { .. } => "sources",
                    ChatEvent::Token { .. } => "token",
                    ChatEvent::Done { .. } => "done",
                })
            },
            &CancelFlag::new(),
        )
        .unwrap();
        assert_eq!(&kinds[..2], ["started", "sources"]);
        assert_eq!(kinds.last(), Some(&"done"));
        assert_eq!(answer.content, streamed);
        assert!(answer.timings.as_ref().unwrap().tokens <= 6);
        assert!(answer.sources.as_ref().unwrap().diseases[0].name.contains("高血压"));
        assert_eq!(answer.model.as_deref(), Some("chatglm3-tiny"));
        let convs = conversations::list(&ctx, Some("高血压")).unwrap();
        assert_eq!(convs.len(), 1);
        assert_eq!(convs[0].message_count, 2);
    }

    #[test]
    fn empty_question_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        let req = AskRequest { question: "   ".into(), ..Default::default() };
        assert!(matches!(ask(&ctx, &req, &mut |_| {}, &CancelFlag::new()), Err(AppError::Invalid(_))));
    }

    #[test]
    fn turns_pair_questions_with_answers() {
        let msgs = vec![
            new_message(Role::User, "q1"),
            new_message(Role::Assistant, "a1"),
            new_message(Role::User, "q2"),
        ];
        assert_eq!(turns_of(&msgs), vec![Turn { user: "q1".into(), assistant: "a1".into() }]);
    }
}
