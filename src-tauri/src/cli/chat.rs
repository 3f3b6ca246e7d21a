//! `doctorglm chat`: a conversation in the terminal.
use super::ask::{print_event, GenerationArgs};
use crate::services::chat::{self, AskRequest, ChatEvent};
use crate::error::AppError;
use crate::services::{models, AppContext, CancelFlag};
use std::io::{BufRead, Write};

/// `doctorglm chat` options.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// Continue this conversation (id from the app or `export`).
    #[arg(long)]
    pub conversation: Option<String>,
    #[command(flatten)]
    pub generation: GenerationArgs,
}

/// An empty line, `/quit` or `/exit` ends the conversation (they are never asked as questions).
fn ends_the_conversation(line: &str) -> bool {
    matches!(line.trim(), "" | "/quit" | "/exit")
}

/// Runs `doctorglm chat`.
pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let ctx = AppContext::open_default()?;
    // Nothing could be answered: say so before the first question is typed.
    if args.generation.model.is_none() && models::list(&ctx)?.models.is_empty() {
        return Err(AppError::NoModel.into());
    }
    let mut conversation_id = args.conversation.clone();
    eprintln!("DoctorGLM — answers need a clinician's judgement. An empty line, /quit or Ctrl-D ends the conversation.");
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || ends_the_conversation(&line) {
            break;
        }
        let request = AskRequest {
            conversation_id: conversation_id.clone(),
            question: line.trim().to_string(),
            model_id: args.generation.model.clone(),
            adapter_id: args.generation.adapter.clone(),
            settings: args.generation.settings(),
            device: args.generation.device,
            weights: args.generation.weights,
            save: true,
        };
        let result = chat::ask(
            &ctx,
            &request,
            &mut |event| {
                if let ChatEvent::Started { conversation_id: Some(id), .. } = &event {
                    conversation_id = Some(id.clone());
                }
                print_event(event)
            },
            &CancelFlag::new(),
        );
        println!();
        if let Err(e) = result {
            eprintln!("error: {e}");
        }
    }
    if let Some(id) = conversation_id {
        eprintln!("conversation {id} saved");
    }
    Ok(())
}
