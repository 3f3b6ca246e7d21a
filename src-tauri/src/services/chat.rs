//! One question answered: the question is committed to the store first (it survives any
//! failure after), the designer builds the prompt, the engine streams the answer into the
//! store (saved every few hundred milliseconds, then a final commit with status `complete`,
//! `cancelled` or `error`) with its sources, model, adapter, settings, token counts and timings.
use super::conversations::{self, parse_id, Message, Role, Timings};
use super::designer::{self, Sources};
use super::engine::{self, Device, Turn, Weights};
use super::generation::GenerationSettings;
use super::registry::{new_id, now_ms, Registry};
use super::{AppContext, CancelFlag, Progress};
use crate::error::{AppError, AppResult};
use crate::store::{self, AnswerEnd, AnswerMeta, MessageId, MessageStatus};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How often a streaming answer is committed while it is generated (each commit is durable).
pub const SAVE_INTERVAL: Duration = Duration::from_millis(300);

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
    /// How the weights are held on the CPU (quantized on the first load and cached).
    #[serde(default)]
    pub weights: Weights,
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
    /// The model is being loaded (quantized on its first load in a format), before any token.
    Loading {
        /// Done so far, 0..=1.
        fraction: f32,
        /// What is happening, for people.
        message: String,
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
    // The question is committed before anything can fail or take long.
    let (conversation_id, question_msg) = if request.save {
        let (id, m) = conversations::save_question(ctx, request.conversation_id.as_deref(), question)?;
        (Some(id), m)
    } else {
        (None, unsaved(Role::User, question))
    };
    on_event(ChatEvent::Started { conversation_id: conversation_id.clone(), question: question_msg });
    let conversation = conversation_id.as_deref().map(|id| parse_id("conversation", id)).transpose()?;

    let mut meta = AnswerMeta {
        model: Some(model.info.name.clone()),
        adapter: adapter.as_ref().map(|a| a.info.name.clone()),
        settings: serde_json::to_value(&request.settings).ok(),
        keywords: None,
        sources: None,
    };
    let designed = match designer::design(ctx, question, request.settings.use_designer, model.info.architecture) {
        Ok(d) => d,
        Err(e) => {
            if let Some(c) = conversation {
                record_failure(ctx, c, &meta, &e);
            }
            return Err(e);
        }
    };
    meta.keywords = designed.sources.as_ref().and_then(|s| serde_json::to_value(&s.keywords).ok());
    meta.sources = designed.sources.as_ref().and_then(|s| serde_json::to_value(s).ok());
    on_event(ChatEvent::Sources { sources: designed.sources.clone() });

    let answer_id = conversation.map(|c| ctx.store().begin_answer(c, &meta)).transpose()?;
    let started = Instant::now();
    let mut first_token_ms = None;
    let mut text = String::new();
    let mut last_save = Instant::now();
    // Both the load's progress and the token callback report through `on_event`, one after the other.
    let events = std::cell::RefCell::new(&mut *on_event);
    let on_load = |p: Progress| (events.borrow_mut())(ChatEvent::Loading { fraction: p.fraction, message: p.message });
    let result = engine::with_backend(ctx, &model, adapter.as_ref(), request.device, request.weights, &on_load, cancel, |backend| {
        backend.generate(
            &history,
            designed.system.as_deref(),
            &designed.prompt,
            &request.settings,
            &mut |piece| {
                first_token_ms.get_or_insert_with(|| started.elapsed().as_millis() as u64);
                text.push_str(piece);
                (events.borrow_mut())(ChatEvent::Token { text: piece.to_string() });
                if let Some(id) = answer_id {
                    if last_save.elapsed() >= SAVE_INTERVAL {
                        // A failed interim save is not fatal: the final commit below carries the text.
                        if let Err(e) = ctx.store().update_answer(id, &text) {
                            tracing::warn!(id, error = %e, "could not save the answer so far");
                        }
                        last_save = Instant::now();
                    }
                }
            },
            cancel,
        )
    });
    let total_ms = started.elapsed().as_millis() as u64;
    let (status, error, stats) = match result {
        Ok(stats) => (if cancel.is_cancelled() { MessageStatus::Cancelled } else { MessageStatus::Complete }, None, stats),
        Err(AppError::Cancelled) => (MessageStatus::Cancelled, None, Default::default()),
        Err(e) => {
            if let Some(id) = answer_id {
                let end = AnswerEnd {
                    status: MessageStatus::Error,
                    error: Some(e.to_string()),
                    total_ms: Some(total_ms as i64),
                    first_token_ms: first_token_ms.map(|t| t as i64),
                    ..AnswerEnd::complete(text.clone())
                };
                if let Err(se) = ctx.store().finish_answer(id, &end) {
                    tracing::warn!(id, error = %se, "could not record the failed answer");
                }
            }
            return Err(e);
        }
    };
    let timings = Timings { first_token_ms: first_token_ms.unwrap_or(0), total_ms, tokens: stats.tokens };
    let answer = match answer_id {
        Some(id) => {
            let end = AnswerEnd {
                status,
                content: text,
                error,
                prompt_tokens: (stats.prompt_tokens > 0).then_some(stats.prompt_tokens as i64),
                completion_tokens: Some(stats.tokens as i64),
                first_token_ms: Some(timings.first_token_ms as i64),
                total_ms: Some(total_ms as i64),
            };
            ctx.store().finish_answer(id, &end)?;
            conversations::message(ctx, id)?
        }
        None => {
            let mut m = unsaved(Role::Assistant, &text);
            m.sources = designed.sources;
            m.model = meta.model;
            m.adapter = meta.adapter;
            m.settings = Some(request.settings.clone());
            m.stopped = status == MessageStatus::Cancelled;
            m.status = status;
            m.timings = Some(timings);
            m
        }
    };
    on_event(ChatEvent::Done { answer: answer.clone() });
    Ok(answer)
}

/// Records an answer that failed before generation began (the question stays saved).
fn record_failure(ctx: &AppContext, conversation: store::ConversationId, meta: &AnswerMeta, e: &AppError) {
    let store = ctx.store();
    let result = store.begin_answer(conversation, meta).and_then(|id: MessageId| {
        store.finish_answer(id, &AnswerEnd { status: MessageStatus::Error, error: Some(e.to_string()), ..AnswerEnd::complete("") })
    });
    if let Err(se) = result {
        tracing::warn!(error = %se, "could not record the failed answer");
    }
}

/// A message that is not kept (side-by-side comparisons).
fn unsaved(role: Role, content: &str) -> Message {
    Message {
        id: new_id("unsaved"),
        role,
        content: content.to_string(),
        created_at: now_ms(),
        sources: None,
        model: None,
        adapter: None,
        settings: None,
        timings: None,
        stopped: false,
        status: MessageStatus::Complete,
        error: None,
    }
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
        // Failed or empty answers are not shown to the model as earlier turns.
        .filter(|w| matches!(w[1].status, MessageStatus::Complete | MessageStatus::Cancelled) && !w[1].content.is_empty())
        .map(|w| Turn { user: w[0].content.clone(), assistant: w[1].content.clone() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> std::path::PathBuf {
        std::env::var_os("DOCTORGLM_FIXTURES")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
    }

    fn with_tiny_model() -> (tempfile::TempDir, AppContext) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AppContext::open(dir.path()).unwrap();
        crate::services::models::import_model(&ctx, &fixtures().join("models/chatglm3-tiny"), &|_| {}, &CancelFlag::new()).unwrap();
        (dir, ctx)
    }

    fn tiny_settings() -> GenerationSettings {
        let mut settings = crate::services::generation::Preset::Conservative.settings();
        settings.max_new_tokens = 6;
        settings
    }

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
    fn the_tiny_model_answers_and_the_exchange_is_found_after_reopening() {
        let (dir, ctx) = with_tiny_model();
        let req = AskRequest { question: "高血压怎么治疗？".into(), settings: tiny_settings(), save: true, ..Default::default() };
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
                    ChatEvent::Loading { .. } => "loading",
                    ChatEvent::Token { .. } => "token",
                    ChatEvent::Done { .. } => "done",
                })
            },
            &CancelFlag::new(),
        )
        .unwrap();
        assert_eq!(&kinds[..2], ["started", "sources"]);
        assert_eq!(kinds[2], "loading", "the first answer loads (and quantizes) the model: {kinds:?}");
        assert_eq!(kinds.last(), Some(&"done"));
        let cached = engine::cache_file(&engine::cache_dir(&ctx), &Registry::load(&ctx).unwrap().models[0].id, Weights::Q4_0);
        assert!(cached.is_file(), "the Q4_0 weights are cached at {}", cached.display());
        assert_eq!(answer.content, streamed);
        assert_eq!(answer.status, MessageStatus::Complete);
        assert!(answer.timings.as_ref().unwrap().tokens <= 6);
        assert!(answer.sources.as_ref().unwrap().diseases[0].name.contains("高血压"));
        assert_eq!(answer.model.as_deref(), Some("chatglm3-tiny"));
        assert_eq!(answer.settings.as_ref(), Some(&req.settings));
        drop(ctx);

        // A new process: the store is reopened, the conversation is found by search.
        let ctx = AppContext::open(dir.path()).unwrap();
        let convs = conversations::list(&ctx, Some("高血压怎么")).unwrap();
        assert_eq!(convs.len(), 1);
        assert_eq!(convs[0].message_count, 2);
        assert!(convs[0].highlights.iter().any(|s| s.hit), "{:?}", convs[0]);
        let conv = conversations::get(&ctx, &convs[0].id).unwrap();
        assert_eq!(conv.messages[0].content, "高血压怎么治疗？");
        assert_eq!(conv.messages[1], answer, "the answer read back is the answer returned");
        let stored = ctx.store().message(answer.id.parse().unwrap()).unwrap();
        assert!(stored.prompt_tokens.unwrap() > 0);
        assert_eq!(stored.keywords, serde_json::to_value(&answer.sources.as_ref().unwrap().keywords).ok());
        assert!(stored.total_ms.is_some() && stored.first_token_ms.is_some());

        // Continuing the conversation adds to it.
        let more = AskRequest { conversation_id: Some(convs[0].id.clone()), question: "需要吃药吗".into(), ..req.clone() };
        ask(&ctx, &more, &mut |_| {}, &CancelFlag::new()).unwrap();
        assert_eq!(conversations::get(&ctx, &convs[0].id).unwrap().messages.len(), 4);
    }

    #[test]
    fn the_question_survives_a_failed_generation() {
        let (_dir, ctx) = with_tiny_model();
        // The model's folder disappears after import: loading it fails.
        let model = Registry::load(&ctx).unwrap().models.remove(0);
        let mut info = model.info.clone();
        info.path = std::path::PathBuf::from("no/such/folder");
        ctx.store().set_model_info(model.id.parse().unwrap(), &serde_json::to_value(&info).unwrap()).unwrap();
        let req = AskRequest { question: "头痛三天了怎么办".into(), settings: tiny_settings(), save: true, ..Default::default() };
        let err = ask(&ctx, &req, &mut |_| {}, &CancelFlag::new()).unwrap_err();
        assert!(matches!(err, AppError::Engine(_)), "{err}");
        let convs = conversations::list(&ctx, Some("头痛三天")).unwrap();
        assert_eq!(convs.len(), 1, "the question was committed before generation");
        let conv = conversations::get(&ctx, &convs[0].id).unwrap();
        assert_eq!(conv.messages[0].content, "头痛三天了怎么办");
        assert_eq!(conv.messages[1].status, MessageStatus::Error);
        assert!(conv.messages[1].error.as_deref().unwrap_or("").contains("engine"), "{:?}", conv.messages[1]);
        assert_eq!(turns_of(&conv.messages), vec![], "a failed answer is no earlier turn");
    }

    #[test]
    fn a_cancelled_answer_is_kept_as_cancelled() {
        let (_dir, ctx) = with_tiny_model();
        let cancel = CancelFlag::new();
        cancel.cancel();
        let req = AskRequest { question: "发热咳嗽".into(), settings: tiny_settings(), save: true, ..Default::default() };
        let answer = ask(&ctx, &req, &mut |_| {}, &cancel).unwrap();
        assert_eq!(answer.status, MessageStatus::Cancelled);
        assert!(answer.stopped);
        let convs = conversations::list(&ctx, None).unwrap();
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
            unsaved(Role::User, "q1"),
            unsaved(Role::Assistant, "a1"),
            unsaved(Role::User, "q2"),
        ];
        assert_eq!(turns_of(&msgs), vec![Turn { user: "q1".into(), assistant: "a1".into() }]);
    }
}
