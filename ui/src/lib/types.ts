// Types mirroring the Rust services' JSON (src-tauri/src/services).

export type Role = "user" | "assistant";

export interface RankedDisease { name: string; score: number }
export interface SourceSection { disease: string; title: string; text: string }
export interface Sources { keywords: string[]; diseases: RankedDisease[]; sections: SourceSection[] }

export interface GenerationSettings {
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  noRepeatNgram: number;
  maxNewTokens: number;
  seed: number;
  useDesigner: boolean;
}

export interface Timings { firstTokenMs: number; totalMs: number; tokens: number }

export interface Message {
  id: string;
  role: Role;
  content: string;
  createdAt: number;
  sources?: Sources | null;
  model?: string | null;
  adapter?: string | null;
  settings?: GenerationSettings | null;
  timings?: Timings | null;
  stopped?: boolean;
  status?: "streaming" | "complete" | "cancelled" | "error" | "interrupted";
  error?: string | null;
}

export interface Conversation { id: string; title: string; createdAt: number; updatedAt: number; messages: Message[] }
export interface SnippetSpan { text: string; hit: boolean }
export interface ConversationSummary {
  id: string; title: string; updatedAt: number; messageCount: number; snippet?: string | null; highlights?: SnippetSpan[];
}

export type Device = "cpu" | "gpu";
/** How the weights are held on the CPU: quantized on the first load (and cached) or f32. */
export type Weights = "q4_0" | "q4_k" | "q8_0" | "f16" | "f32";
export type PresetName = "conservative" | "balanced" | "diverse";

export interface AskRequest {
  conversationId?: string | null;
  question: string;
  modelId?: string | null;
  adapterId?: string | null;
  settings: GenerationSettings;
  device: Device;
  weights: Weights;
  save: boolean;
}

export type ChatEvent =
  | { type: "started"; conversationId: string | null; question: Message }
  | { type: "sources"; sources: Sources | null }
  | { type: "loading"; fraction: number; message: string }
  | { type: "token"; text: string }
  | { type: "done"; answer: Message };

export interface ChatPayload { jobId: string; event?: ChatEvent; error?: string }
export interface ProgressPayload { jobId: string; fraction: number; message: string }
export interface DonePayload<T> { jobId: string; result?: T; error?: string; cancelled: boolean }

export interface ModelInfo {
  path: string;
  name: string;
  architecture: "chatglm6b" | "chatglm3" | "glm4";
  hiddenSize: number;
  numLayers: number;
  vocabSize: number;
  dtype: string;
  parameters: number;
  diskBytes: number;
  weightFormat: string;
  weightFiles: string[];
  tokenizerFile: string;
  memoryInt4Bytes: number;
  memoryF16Bytes: number;
  adaptersFound: string[];
}

export type AdapterKind =
  | { kind: "lora"; r: number; alpha: number; target_modules: string[] }
  | { kind: "ptuning-v2"; pre_seq_len: number };

export interface AdapterInfo { path: string; name: string; adapter: AdapterKind; baseModelHint?: string | null; diskBytes: number }
export interface ModelRecord { id: string; info: ModelInfo; importedAt: number }
export interface AdapterRecord { id: string; baseId: string; info: AdapterInfo; importedAt: number }
export interface Registry { models: ModelRecord[]; adapters: AdapterRecord[] }

export type Language = "zh" | "en";
export interface Settings { language: Language; device: Device; weights: Weights; preset: PresetName }

export interface About {
  version: string;
  tauriVersion: string;
  dataDir: string;
  keyring: string;
  gpu: boolean;
  components: { name: string; license: string }[];
}

export interface DocumentSummary { id: string; name: string; nameEn?: string | null; department?: string | null; sections: number }
export interface LibraryDocument {
  id: string;
  name: string;
  name_en?: string | null;
  aliases: string[];
  department?: string | null;
  symptoms: string[];
  source: string;
  attribution: string;
  sections: { kind: unknown; heading: string; body: string }[];
}
export interface ImportSummary { imported: string[]; skipped: string[]; files: number; cancelled: boolean }

/** Where the store's database key is kept (services::storage::StoreStatus.key). */
export type KeyStorage =
  | { kind: "keyring" }
  | { kind: "keyring_unavailable"; reason: string; key_file: string }
  | { kind: "passphrase" }
  | { kind: "provided" };

/** One page of the conversation list (services::conversations::ConversationPage). */
export interface ConversationPage {
  items: ConversationSummary[];
  nextOffset: number | null;
}

/** Whether the store waits for its passphrase (commands::LockState). */
export interface LockState {
  locked: boolean;
  reason: string | null;
}

export interface StoreStatus {
  key: KeyStorage;
  keyDescription: string;
  database: string;
  databaseBytes: number;
  schemaVersion: number;
  conversations: number;
  messages: number;
  recoveredMessages: number;
}
