//! A dialogue as a training example: the prompt in the model's chat format (labels -100) and
//! the last answer plus the end token as targets.
use doctorglm_datasets::Dialogue;
use doctorglm_models::tokenizer::Tokenizer;
use doctorglm_models::train::IGNORE_INDEX;

/// One tokenized example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Prompt ids then answer ids.
    pub ids: Vec<u32>,
    /// -100 on the prompt, the answer ids (and end token) as targets.
    pub labels: Vec<i64>,
}

impl Example {
    /// Number of target tokens.
    pub fn targets(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }
}

/// How many leading prompt tokens are format markers kept when a prompt is cut
/// (`[gMASK] sop` for ChatGLM2/3 and GLM-4; ChatGLM-6B puts its markers at the end).
fn kept_head(prompt: &[u32], tok: &Tokenizer) -> usize {
    let sp = tok.special_tokens();
    if prompt.len() >= 2 && prompt[0] == sp.gmask && prompt[1] == sp.sop {
        2
    } else {
        0
    }
}

/// Tokenizes a dialogue: earlier turns become chat history, the last question the query,
/// the last answer the target. The prompt is cut to `max_source` tokens keeping its head
/// markers and its end (the last question and the assistant marker); the answer is cut to
/// `max_target - 1` tokens and ended with the tokenizer's first end token. `None` when the
/// dialogue has no turn or an empty answer.
pub fn encode_dialogue(tok: &Tokenizer, dialogue: &Dialogue, max_source: usize, max_target: usize) -> Option<Example> {
    let (last, earlier) = dialogue.turns.split_last()?;
    let history: Vec<(String, String)> = earlier.iter().map(|t| (t.user.clone(), t.assistant.clone())).collect();
    let mut prompt = tok.build_chat(dialogue.system.as_deref(), &history, &last.user);
    if prompt.len() > max_source {
        let head = kept_head(&prompt, tok);
        let tail_len = max_source - head;
        let tail = prompt[prompt.len() - tail_len..].to_vec();
        prompt.truncate(head);
        prompt.extend(tail);
    }
    let mut answer = tok.encode(last.assistant.trim());
    if answer.is_empty() {
        return None;
    }
    answer.truncate(max_target.saturating_sub(1).max(1));
    answer.extend(tok.special_tokens().eos.first().copied());
    let mut labels = vec![IGNORE_INDEX; prompt.len()];
    labels.extend(answer.iter().map(|&id| id as i64));
    let mut ids = prompt;
    ids.extend(answer);
    Some(Example { ids, labels })
}

/// Tokenizes many dialogues; returns the examples and how many dialogues were skipped.
pub fn encode_all(tok: &Tokenizer, dialogues: &[Dialogue], max_source: usize, max_target: usize) -> (Vec<Example>, usize) {
    let mut out = Vec::with_capacity(dialogues.len());
    let mut skipped = 0;
    for d in dialogues {
        match encode_dialogue(tok, d, max_source, max_target) {
            Some(e) => out.push(e),
            None => skipped += 1,
        }
    }
    (out, skipped)
}
