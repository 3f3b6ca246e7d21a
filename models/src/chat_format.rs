//! Chat prompts in each family's format, as token ids.
//!
//! - ChatGLM-6B: `[Round i]\n问：{q}\n答：{a}\n` per past turn, then `[Round n]\n问：{query}\n答：`,
//!   encoded as one text, then `[gMASK] <sop>`. It has no system role: the system message is
//!   dropped. A first question with neither history nor system message is the bare query
//!   (THUDM's `chat()`); with a system message the round header is kept, as the golden chats have it.
//! - ChatGLM3 and GLM-4: `[gMASK] sop`, then per message the role token, the encoded `"\n"` and
//!   the encoded content (`<|system|>` first when there is a system message), then `<|assistant|>`.
//!
//! Special tokens are inserted by id only; the texts themselves never produce them.
use crate::tokenizer::{TokenizerFamily, Tokenizer};

/// The ChatGLM-6B prompt text for a conversation.
pub fn chatglm6b_prompt(system: Option<&str>, history: &[(String, String)], query: &str) -> String {
    if history.is_empty() && system.is_none() {
        return query.to_string();
    }
    let mut prompt = String::new();
    for (i, (q, a)) in history.iter().enumerate() {
        prompt.push_str(&format!("[Round {i}]\n问：{q}\n答：{a}\n"));
    }
    prompt.push_str(&format!("[Round {}]\n问：{query}\n答：", history.len()));
    prompt
}

/// The prompt ids of a conversation: optional system message, past (question, answer) turns, query.
pub fn build_chat(tok: &Tokenizer, system: Option<&str>, history: &[(String, String)], query: &str) -> Vec<u32> {
    let sp = tok.special_tokens();
    if tok.family() == TokenizerFamily::ChatGlm6b {
        let mut ids = tok.encode(&chatglm6b_prompt(system, history, query));
        ids.extend([sp.gmask, sp.sop]);
        return ids;
    }
    let mut ids = vec![sp.gmask, sp.sop];
    let mut message = |role: Option<u32>, content: &str| {
        ids.extend(role);
        ids.extend(tok.encode("\n"));
        ids.extend(tok.encode(content));
    };
    if let Some(system) = system {
        message(sp.system, system);
    }
    for (q, a) in history {
        message(sp.user, q);
        message(sp.assistant, a);
    }
    message(sp.user, query);
    ids.extend(sp.assistant);
    ids
}
