// Assembles a streamed answer from `chat` events. Pure functions, so they are tested without
// Tauri: the component keeps one `StreamState` per running job.
import type { ChatPayload, Message, Sources } from "./types";

export interface StreamState {
  jobId: string;
  conversationId: string | null;
  question: Message | null;
  sources: Sources | null;
  sourcesArrived: boolean;
  text: string;
  /** What the model load is doing, until the first token. */
  loading: string | null;
  answer: Message | null;
  error: string | null;
  done: boolean;
}

/** The state before any event of `jobId`. */
export function newStream(jobId: string): StreamState {
  return {
    jobId,
    conversationId: null,
    question: null,
    sources: null,
    sourcesArrived: false,
    text: "",
    loading: null,
    answer: null,
    error: null,
    done: false,
  };
}

/** Applies one event; events of other jobs and events after the end leave the state alone. */
export function applyChatPayload(state: StreamState, payload: ChatPayload): StreamState {
  if (payload.jobId !== state.jobId || state.done) return state;
  if (payload.error !== undefined) return { ...state, error: payload.error, done: true };
  const ev = payload.event;
  if (!ev) return state;
  switch (ev.type) {
    case "started":
      return { ...state, conversationId: ev.conversationId, question: ev.question };
    case "sources":
      return { ...state, sources: ev.sources, sourcesArrived: true };
    case "loading":
      return { ...state, loading: ev.message };
    case "token":
      return { ...state, text: state.text + ev.text, loading: null };
    case "done":
      return { ...state, answer: ev.answer, text: ev.answer.content, sources: ev.answer.sources ?? state.sources, loading: null, done: true };
    default:
      return state; // an event this window does not know (a newer app) changes nothing
  }
}
