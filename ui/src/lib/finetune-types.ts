// Types of the fine-tuning commands (src-tauri/src/services/finetune.rs and the datasets and
// finetune crates they return). Field case follows the Rust serialization: the app's own
// structs are camelCase, the crates' structs snake_case.

export type FileFormat = "csv" | "xlsx" | "json" | "jsonl";
export type Layout = "alpaca" | "huatuo-multi-turn" | "share-gpt" | "cmd" | "multiple-choice" | "generic";
export type Location = { kind: "line" | "row"; number: number };
export interface RowIssue { location: Location; reason: string }

export type Shape =
  | { kind: "question_answer"; question: string[]; answer: string; history?: string | null; inline_turns?: boolean }
  | { kind: "conversation"; field: string }
  | { kind: "multiple_choice"; question: string; options: string; answer: string; explanation?: string | null };

export interface Mapping {
  shape: Shape;
  department?: string | null;
  title?: string | null;
  system?: string | null;
}

export interface FileInspection {
  path: string;
  format: FileFormat;
  encoding: string | null;
  columns: string[];
  records: number;
  unreadable: RowIssue[];
  preview: [string, string][][];
  layout: Layout | null;
  mapping: Mapping | null;
  notes: string[];
}

export type Dedup = "none" | "exact" | "near";

export interface PrepareOptions {
  validationFraction: number;
  seed: number;
  maxSourceTokens: number;
  maxTargetTokens: number;
  dropOverLimits: boolean;
  minChars: number;
  dedup: Dedup;
  skipDeid: boolean;
}

export interface PrepareRequest {
  sources: { path: string; mapping: Mapping | null }[];
  output?: string | null;
  options: PrepareOptions;
  tokenizerModel?: string | null;
}

export type PiiKind = "email" | "id_number" | "medical_record_number" | "phone" | "birth_date" | "address" | "name";

export interface DeidExample { kind: PiiKind; masked: string; context: string; origin: Location | null }
export interface DeidReport {
  counts: Partial<Record<PiiKind, number>>;
  dialogues_changed: number;
  dialogues: number;
  examples: DeidExample[];
}

export interface Bin { from: number; to: number; count: number }
export interface Histogram {
  limit: number;
  bins: Bin[];
  over_limit: number;
  total: number;
  max: number;
  mean: number;
  p50: number;
  p95: number;
}

export interface SourceFile {
  name: string;
  sha256: string;
  bytes: number;
  format: FileFormat;
  encoding: string | null;
  mapping: Mapping;
  records: number;
  imported: number;
  rejected_count: number;
  rejected: RowIssue[];
}

export interface CleanReport {
  input: number;
  kept: number;
  removed: Record<string, number>;
  examples: [string, Location | null][];
}

export interface Manifest {
  format_version: number;
  sources: SourceFile[];
  deid: { applied: boolean; counts: Partial<Record<PiiKind, number>>; dialogues_changed: number };
  cleaning: CleanReport;
  train: number;
  validation: number;
  histograms: { source: Histogram; target: Histogram; exact_tokenizer: boolean };
}

export interface Turn { user: string; assistant: string }
export interface Dialogue { turns: Turn[]; system?: string; department?: string; title?: string }

export interface PrepareResult {
  dir: string;
  manifest: Manifest;
  deid: DeidReport;
  sample: Dialogue[];
}

export interface ProbeQuestion { question: string; expected: string[] }
export type Collapse = "empty" | "repetitive" | "keyword_lost";
export interface ProbeAnswer { question: string; answer: string; has_keyword: boolean; collapse: Collapse[] }

export interface FinetuneSettings {
  optimizer: "lion" | "adamw";
  lr: number;
  weight_decay: number;
  rank: number;
  alpha: number;
  target_modules: string[];
  batch_size: number;
  grad_accum: number;
  epochs: number;
  max_steps: number | null;
  max_source: number;
  max_target: number;
  schedule: "constant" | "linear" | "cosine";
  warmup_steps: number;
  max_grad_norm: number | null;
  eval_every: number;
  patience: number | null;
  min_delta: number;
  checkpoint_every: number;
  eval_max_examples: number | null;
  seed: number;
  probe: ProbeQuestion[];
  probe_max_tokens: number;
  /** How the frozen base is held: full precision or quantized while loading (CPU). */
  base_quantization: "f32" | "f16" | "q8_0" | "q4_0";
  /** Recompute activations in the backward pass (less memory, slower). */
  gradient_checkpointing: boolean;
  /** Compute dtype of the base and activations ("auto": bf16 on a GPU, f32 on the CPU). */
  dtype: "auto" | "f32" | "bf16";
}

export interface TrainRequest {
  base: string;
  dataset: string;
  output?: string | null;
  name?: string | null;
  settings: FinetuneSettings;
  device: "cpu" | "gpu";
  register: boolean;
}

export type RunnerEvent =
  | { event: "started"; total_steps: number; start_step: number; train_examples: number; validation_examples: number; skipped: number }
  | { event: "step"; step: number; total_steps: number; epoch: number; loss: number; lr: number; tokens_per_sec: number; eta_secs: number }
  | { event: "evaluation"; step: number; validation_loss: number | null; best: boolean; probe: ProbeAnswer[]; collapse: boolean }
  | { event: "checkpoint"; step: number; dir: string }
  | { event: "paused" }
  | { event: "resumed" };

export type StopReason = "completed" | "early_stopped" | "cancelled";

export interface TrainResult {
  reason: StopReason;
  steps: number;
  totalSteps: number;
  best: [number, number] | null;
  collapseSeen: boolean;
  output: string;
  adapterDir: string;
  name: string;
  adapterId: string | null;
  baseId: string;
  runId: number | null;
  tokensPerSec: number | null;
  elapsedSecs: number;
  tokensSeen: number;
}

export type JobUpdate =
  | { type: "event"; event: RunnerEvent }
  | { type: "done"; result: TrainResult }
  | { type: "error"; message: string };

export interface FinetunePayload { jobId: string; update: JobUpdate }

export interface UnfinishedRun {
  runId: number;
  name: string;
  output: string;
  status: "cancelled" | "interrupted" | "paused" | "failed";
  step: number;
  createdAt: number;
}
