// Typed calls to the Tauri commands (src-tauri/src/commands.rs) and its events.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type {
  About, AdapterRecord, AskRequest, ChatPayload, Conversation, DonePayload,
  DocumentSummary, GenerationSettings, ImportSummary, LibraryDocument, ModelInfo, ModelRecord, PresetName, ProgressPayload, Registry, Settings,
  ConversationPage, LockState, StoreStatus,
} from "./types";

/** Conversations per page of the list (the app allows up to 200). */
export const CONVERSATION_PAGE = 50;

export const api = {
  /** Tells the app the interface is up (it logs the start-up time). */
  uiReady: () => invoke<number>("ui_ready"),
  sendMessage: (request: AskRequest, jobId: string) => invoke<string>("send_message", { request, jobId }),
  regenerate: (request: AskRequest, jobId: string) => invoke<string>("regenerate", { request, jobId }),
  cancelJob: (jobId: string) => invoke<boolean>("cancel_job", { jobId }),
  /** A page of conversations (`limit` after `offset`); `nextOffset` is null after the last page. */
  listConversations: (query?: string, offset = 0, limit = CONVERSATION_PAGE) =>
    invoke<ConversationPage>("list_conversations", { query: query || null, offset, limit }),
  getConversation: (id: string) => invoke<Conversation>("get_conversation", { id }),
  deleteConversation: (id: string) => invoke<void>("delete_conversation", { id }),
  exportConversation: (id: string, format: "markdown" | "json") => invoke<string>("export_conversation", { id, format }),
  listModels: () => invoke<Registry>("list_models"),
  importModel: (path: string, jobId: string) => invoke<string>("import_model", { path, jobId }),
  checkModel: (path: string) => invoke<ModelInfo>("check_model", { path }),
  importAdapter: (baseId: string, path: string) => invoke<AdapterRecord>("import_adapter", { baseId, path }),
  removeModel: (id: string) => invoke<void>("remove_model", { id }),
  presets: () => invoke<Record<PresetName, GenerationSettings>>("presets"),
  getSettings: () => invoke<Settings>("get_settings"),
  saveSettings: (value: Settings) => invoke<void>("save_settings", { value }),
  about: () => invoke<About>("about_info"),
  storeStatus: () => invoke<StoreStatus>("store_status"),
  /** Whether the store waits for its passphrase (the window then shows the unlock screen). */
  storeLock: () => invoke<LockState>("store_lock"),
  /** Opens a locked store; rejects (the store stays locked) when the passphrase is wrong. */
  unlockStore: (passphrase: string) => invoke<void>("unlock_store", { passphrase }),
  renameConversation: (id: string, title: string) => invoke<void>("rename_conversation", { id, title }),
  knowledgeSearch: (query: string) => invoke<DocumentSummary[]>("knowledge_search", { query }),
  knowledgeDocument: (id: string) => invoke<LibraryDocument>("knowledge_document", { id }),
  knowledgeImport: (path: string, jobId: string) => invoke<string>("knowledge_import", { path, jobId }),
};

export const events = {
  chat: (cb: (p: ChatPayload) => void): Promise<UnlistenFn> => listen<ChatPayload>("chat", (e) => cb(e.payload)),
  progress: (cb: (p: ProgressPayload) => void): Promise<UnlistenFn> => listen<ProgressPayload>("progress", (e) => cb(e.payload)),
  jobDone: <T = ModelRecord>(cb: (p: DonePayload<T>) => void): Promise<UnlistenFn> =>
    listen<DonePayload<T>>("job-done", (e) => cb(e.payload)),
};

let jobCounter = 0;
/** A new job id for a command that starts a job (send_message, import_model, …). The page
 * chooses the id and starts matching events before it calls the command, because a job can
 * report, and even finish, before the command's answer arrives. */
export function newJobId(): string {
  jobCounter += 1;
  return `job-${Date.now().toString(36)}-${jobCounter}-${Math.random().toString(36).slice(2, 8)}`;
}

/** A message for people from a rejected command (commands reject with a string). */
export function errorText(e: unknown): string {
  if (typeof e === "string") return e;
  if (e instanceof Error) return e.message;
  return JSON.stringify(e);
}
