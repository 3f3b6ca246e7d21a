//! `doctorglm ask`: one question, answer streamed to stdout.
use crate::services::chat::{self, AskRequest, ChatEvent};
use crate::services::engine::{Device, Weights};
use crate::services::generation::{GenerationSettings, Preset};
use crate::services::{AppContext, CancelFlag};
use std::io::Write;

/// Options shared by `ask` and `chat`.
#[derive(Debug, clap::Args)]
pub struct GenerationArgs {
    /// Model id (see `doctorglm models list`); default: the last imported.
    #[arg(long)]
    pub model: Option<String>,
    /// Adapter id to apply over the model.
    #[arg(long)]
    pub adapter: Option<String>,
    /// Generation preset.
    #[arg(long, value_enum, default_value = "balanced")]
    pub preset: Preset,
    /// Override the preset's temperature.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Override the preset's top-p.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Most new tokens.
    #[arg(long)]
    pub max_new_tokens: Option<u32>,
    /// Do not use the disease library (prompt designer).
    #[arg(long)]
    pub no_designer: bool,
    /// CPU or GPU.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
    /// Weights on the CPU: converted on the first load in a format (quantized, or f16) and cached in the data folder, or f32.
    #[arg(long, value_enum, default_value = "q4_0")]
    pub weights: Weights,
}

impl GenerationArgs {
    /// The settings these options describe.
    pub fn settings(&self) -> GenerationSettings {
        let mut s = self.preset.settings();
        if let Some(t) = self.temperature {
            s.temperature = t;
        }
        if let Some(p) = self.top_p {
            s.top_p = p;
        }
        if let Some(n) = self.max_new_tokens {
            s.max_new_tokens = n;
        }
        s.use_designer = !self.no_designer;
        s
    }
}

/// `doctorglm ask` options.
#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// The question.
    pub question: String,
    /// Print the answer and its sources as JSON instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Do not keep the exchange in the history.
    #[arg(long)]
    pub no_save: bool,
    #[command(flatten)]
    pub generation: GenerationArgs,
}

/// Prints streamed events as text.
pub fn print_event(event: ChatEvent) {
    match event {
        ChatEvent::Token { text } => {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
        ChatEvent::Sources { sources: Some(s) } if !s.diseases.is_empty() => {
            let names: Vec<&str> = s.diseases.iter().map(|d| d.name.as_str()).collect();
            eprintln!("[sources: {}]", names.join(", "));
        }
        _ => {}
    }
}

/// Runs `doctorglm ask`.
pub fn run(args: AskArgs) -> anyhow::Result<()> {
    let ctx = AppContext::open_default()?;
    let request = AskRequest {
        question: args.question.clone(),
        model_id: args.generation.model.clone(),
        adapter_id: args.generation.adapter.clone(),
        settings: args.generation.settings(),
        device: args.generation.device,
        weights: args.generation.weights,
        save: !args.no_save,
        ..Default::default()
    };
    if args.json {
        let answer = chat::ask(&ctx, &request, &mut |_| {}, &CancelFlag::new())?;
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        chat::ask(&ctx, &request, &mut print_event, &CancelFlag::new())?;
        println!();
    }
    eprintln!("Answers need a clinician's judgement.");
    Ok(())
}
