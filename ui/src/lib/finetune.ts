// The fine-tuning wizard's logic, kept out of the component so it can be tested: the step
// machine, column mappings, the paper's settings and their checks, the training view built
// from runner events, loss-curve scaling and histogram bars for inline SVG.
import type {
  FileInspection, FinetuneSettings, Histogram, Mapping, PrepareResult, RunnerEvent, ProbeAnswer, TrainResult,
} from "./finetune-types";

export const STEPS = ["import", "mapping", "deid", "cleaning", "settings", "training", "result"] as const;
export type Step = (typeof STEPS)[number];

export interface WizardState {
  step: Step;
  /** Inspected export files. */
  files: FileInspection[];
  /** The mapping chosen for each file (same order as `files`). */
  mappings: (Mapping | null)[];
  /** The prepared dataset and its reports. */
  prepared: PrepareResult | null;
  /** The user has reviewed the de-identification report. */
  deidConfirmed: boolean;
  /** The base model (registry id) to train on. */
  baseId: string | null;
  settings: FinetuneSettings;
  /** The running training job. */
  jobId: string | null;
  result: TrainResult | null;
}

/** The DoctorGLM paper's settings (LoRA r 8, alpha 16 on query_key_value, Lion 2e-5, batch 4, 1 epoch, 512/100, no warm-up, no decay); the app's evaluation defaults. Mirrors `FinetuneSettings::default()`. */
export function paperDefaults(): FinetuneSettings {
  return {
    optimizer: "lion", lr: 2e-5, weight_decay: 0, rank: 8, alpha: 16, target_modules: ["query_key_value"],
    batch_size: 4, grad_accum: 1, epochs: 1, max_steps: null, max_source: 512, max_target: 100,
    schedule: "constant", warmup_steps: 0, max_grad_norm: 1.0, eval_every: 100, patience: 3, min_delta: 0,
    checkpoint_every: 50, eval_max_examples: 200, seed: 42,
    probe: [
      { question: "中国的首都是哪座城市？", expected: ["北京"] },
      { question: "1+1等于几？", expected: ["2", "二"] },
      { question: "一年有几个月？", expected: ["12", "十二"] },
    ],
    probe_max_tokens: 32,
    base_quantization: "f32", gradient_checkpointing: false, dtype: "auto",
  };
}

export function initialWizard(settings: FinetuneSettings = paperDefaults()): WizardState {
  return { step: "import", files: [], mappings: [], prepared: null, deidConfirmed: false, baseId: null, settings, jobId: null, result: null };
}

/** Settings problems, as i18n keys (empty when the settings can be used). */
export function settingsProblems(s: FinetuneSettings): string[] {
  const p: string[] = [];
  const positiveInt = (v: number) => Number.isInteger(v) && v >= 1;
  if (!(Number.isFinite(s.lr) && s.lr > 0)) p.push("ft.err.lr");
  if (!positiveInt(s.rank)) p.push("ft.err.rank");
  if (!(Number.isFinite(s.alpha) && s.alpha > 0)) p.push("ft.err.alpha");
  if (!positiveInt(s.batch_size) || !positiveInt(s.grad_accum)) p.push("ft.err.batch");
  if (!positiveInt(s.epochs)) p.push("ft.err.epochs");
  if (s.max_steps !== null && !positiveInt(s.max_steps)) p.push("ft.err.maxSteps");
  if (!(Number.isInteger(s.max_source) && s.max_source >= 4) || !(Number.isInteger(s.max_target) && s.max_target >= 2)) p.push("ft.err.lengths");
  if (s.target_modules.filter((m) => m.trim()).length === 0) p.push("ft.err.modules");
  if (!(Number.isFinite(s.weight_decay) && s.weight_decay >= 0)) p.push("ft.err.decay");
  if (s.base_quantization !== "f32" && s.dtype === "bf16") p.push("ft.err.quantDtype");
  return p;
}

/** Names of the settings that differ from the paper's. */
export function changedSettings(s: FinetuneSettings, base: FinetuneSettings = paperDefaults()): (keyof FinetuneSettings)[] {
  return (Object.keys(base) as (keyof FinetuneSettings)[]).filter((k) => JSON.stringify(s[k]) !== JSON.stringify(base[k]));
}

/** The columns a mapping reads. */
export function mappingColumns(m: Mapping): string[] {
  const s = m.shape;
  const cols: (string | null | undefined)[] =
    s.kind === "question_answer" ? [...s.question, s.answer, s.history]
    : s.kind === "conversation" ? [s.field]
    : [s.question, s.options, s.answer, s.explanation];
  cols.push(m.department, m.title, m.system);
  return cols.filter((c): c is string => !!c);
}

/** Whether a mapping names its required fields and only columns the file has. */
export function mappingComplete(m: Mapping | null, columns: string[]): boolean {
  if (!m) return false;
  const s = m.shape;
  const required =
    s.kind === "question_answer" ? s.question.length > 0 && !!s.answer
    : s.kind === "conversation" ? !!s.field
    : !!s.question && !!s.options && !!s.answer;
  return required && mappingColumns(m).every((c) => columns.includes(c));
}

/** An empty mapping of a shape, for the editor. */
export function blankMapping(kind: Mapping["shape"]["kind"]): Mapping {
  const shape: Mapping["shape"] =
    kind === "question_answer" ? { kind, question: [], answer: "", history: null, inline_turns: false }
    : kind === "conversation" ? { kind, field: "" }
    : { kind, question: "", options: "", answer: "", explanation: null };
  return { shape, department: null, title: null, system: null };
}

/** Whether the wizard may go on from its current step. */
export function canAdvance(s: WizardState): boolean {
  switch (s.step) {
    case "import":
      return s.files.length > 0;
    case "mapping":
      return s.files.length > 0 && s.files.every((f, i) => mappingComplete(s.mappings[i] ?? null, f.columns));
    case "deid":
      return !!s.prepared && s.deidConfirmed;
    case "cleaning":
      return !!s.prepared && s.prepared.manifest.train > 0;
    case "settings":
      return !!s.prepared && !!s.baseId && settingsProblems(s.settings).length === 0 && !s.jobId;
    case "training":
      return !!s.result && s.result.reason !== "cancelled" && !s.jobId;
    case "result":
      return false;
  }
}

/** The next step, when allowed. */
export function next(s: WizardState): WizardState {
  if (!canAdvance(s)) return s;
  return { ...s, step: STEPS[STEPS.indexOf(s.step) + 1] };
}

/** Whether the user may go back from here (never while a job trains, nor from the result). */
export function canGoBack(s: WizardState): boolean {
  return s.step !== "import" && s.step !== "result" && !s.jobId;
}

/** Goes back to an earlier step; going back before the de-identification drops the prepared dataset (it must be prepared again from the new choices). */
export function backTo(s: WizardState, step: Step): WizardState {
  if (!canGoBack(s) || STEPS.indexOf(step) >= STEPS.indexOf(s.step)) return s;
  const out = { ...s, step, result: step === "training" ? s.result : null };
  if (STEPS.indexOf(step) < STEPS.indexOf("deid")) {
    out.prepared = null;
    out.deidConfirmed = false;
  }
  return out;
}

/** Jumps to the training step to follow a job that continues an earlier run from its checkpoint. */
export function resumingRun(s: WizardState, jobId: string): WizardState {
  if (s.jobId) return s;
  return { ...s, step: "training", jobId, result: null };
}

/** Adds inspected files (a file already there is replaced), each with its suggested mapping. */
export function withFiles(s: WizardState, files: FileInspection[]): WizardState {
  const all = [...s.files];
  const mappings = [...s.mappings];
  for (const f of files) {
    const i = all.findIndex((x) => x.path === f.path);
    if (i >= 0) {
      all[i] = f;
      mappings[i] = f.mapping;
    } else {
      all.push(f);
      mappings.push(f.mapping);
    }
  }
  return { ...s, files: all, mappings, prepared: null, deidConfirmed: false };
}

/** Removes a file. */
export function withoutFile(s: WizardState, path: string): WizardState {
  const i = s.files.findIndex((f) => f.path === path);
  if (i < 0) return s;
  return { ...s, files: s.files.filter((_, j) => j !== i), mappings: s.mappings.filter((_, j) => j !== i), prepared: null, deidConfirmed: false };
}

// ---- Training view -------------------------------------------------------------------------

export interface Point { x: number; y: number }

export interface TrainingView {
  totalSteps: number;
  startStep: number;
  step: number;
  trainExamples: number;
  validationExamples: number;
  loss: Point[];
  validation: Point[];
  lr: number | null;
  tokensPerSec: number | null;
  etaSecs: number | null;
  paused: boolean;
  probes: { step: number; answers: ProbeAnswer[] }[];
  best: { step: number; loss: number } | null;
  collapse: boolean;
  lastCheckpoint: number | null;
}

export function initialTraining(): TrainingView {
  return {
    totalSteps: 0, startStep: 0, step: 0, trainExamples: 0, validationExamples: 0, loss: [], validation: [], lr: null,
    tokensPerSec: null, etaSecs: null, paused: false, probes: [], best: null, collapse: false, lastCheckpoint: null,
  };
}

/** The view after one runner event. */
export function applyEvent(v: TrainingView, e: RunnerEvent): TrainingView {
  switch (e.event) {
    case "started":
      return {
        ...v, totalSteps: e.total_steps, startStep: e.start_step, step: e.start_step, trainExamples: e.train_examples,
        validationExamples: e.validation_examples, paused: false,
      };
    case "step":
      return {
        ...v, step: e.step, totalSteps: e.total_steps, lr: e.lr, tokensPerSec: e.tokens_per_sec, etaSecs: e.eta_secs,
        loss: [...v.loss.filter((p) => p.x < e.step), { x: e.step, y: e.loss }],
      };
    case "evaluation": {
      const validation = e.validation_loss === null ? v.validation : [...v.validation.filter((p) => p.x < e.step), { x: e.step, y: e.validation_loss }];
      const best = e.best && e.validation_loss !== null ? { step: e.step, loss: e.validation_loss } : v.best;
      return { ...v, validation, best, collapse: v.collapse || e.collapse, probes: [...v.probes, { step: e.step, answers: e.probe }] };
    }
    case "checkpoint":
      return { ...v, lastCheckpoint: e.step };
    case "paused":
      return { ...v, paused: true };
    case "resumed":
      return { ...v, paused: false };
  }
}

/** Done so far, 0..1. */
export function progressFraction(v: TrainingView): number {
  return v.totalSteps > 0 ? Math.min(1, v.step / v.totalSteps) : 0;
}

/** "1h 02m", "3m 05s", "12s"; "—" when unknown. */
export function formatEta(secs: number | null): string {
  if (secs === null || !Number.isFinite(secs) || secs < 0) return "—";
  const s = Math.round(secs);
  const pad = (n: number) => String(n).padStart(2, "0");
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  return `${s}s`;
}

// ---- Charts --------------------------------------------------------------------------------

export interface Scale {
  xMin: number; xMax: number; yMin: number; yMax: number;
  width: number; height: number; pad: number;
}

/** One scale for every series (so train and validation loss compare), over finite values; a flat or single-point range is widened so it draws. */
export function chartScale(series: Point[][], width: number, height: number, pad = 28): Scale {
  const pts = series.flat().filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  if (pts.length === 0) return { xMin: 0, xMax: 1, yMin: 0, yMax: 1, width, height, pad };
  let xMin = Math.min(...pts.map((p) => p.x));
  let xMax = Math.max(...pts.map((p) => p.x));
  let yMin = Math.min(...pts.map((p) => p.y));
  let yMax = Math.max(...pts.map((p) => p.y));
  if (xMax === xMin) { xMin -= 1; xMax += 1; }
  if (yMax === yMin) {
    const d = Math.abs(yMin) * 0.1 || 1;
    yMin -= d;
    yMax += d;
  } else {
    const m = (yMax - yMin) * 0.05;
    yMin -= m;
    yMax += m;
  }
  return { xMin, xMax, yMin, yMax, width, height, pad };
}

/** Pixel position of a point (y grows downwards in SVG). */
export function project(p: Point, s: Scale): { x: number; y: number } {
  const w = s.width - 2 * s.pad;
  const h = s.height - 2 * s.pad;
  return {
    x: s.pad + ((p.x - s.xMin) / (s.xMax - s.xMin)) * w,
    y: s.pad + (1 - (p.y - s.yMin) / (s.yMax - s.yMin)) * h,
  };
}

/** Keeps at most `max` points, spread evenly, always with the first and the last. */
export function downsample(points: Point[], max: number): Point[] {
  if (points.length <= max || max < 2) return points;
  const out: Point[] = [];
  const stride = (points.length - 1) / (max - 1);
  for (let i = 0; i < max; i++) out.push(points[Math.round(i * stride)]);
  return out;
}

/** An SVG path through the points; a non-finite value breaks the line. */
export function linePath(points: Point[], s: Scale, max = 400): string {
  let d = "";
  let pen = false;
  for (const p of downsample(points, max)) {
    if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) {
      pen = false;
      continue;
    }
    const q = project(p, s);
    d += `${pen ? "L" : "M"}${q.x.toFixed(1)},${q.y.toFixed(1)}`;
    pen = true;
  }
  return d;
}

/** `n` + 1 evenly spaced y values from the bottom to the top of the scale. */
export function yTicks(s: Scale, n = 4): number[] {
  return Array.from({ length: n + 1 }, (_, i) => s.yMin + ((s.yMax - s.yMin) * i) / n);
}

export interface Bar { x: number; y: number; width: number; height: number; from: number; to: number; count: number; over: boolean; open: boolean }

/** Bars of a token histogram in a `width` × `height` box, and where the max-length line goes.
 * A bin starting at or past the limit is marked `over`; the last, open-ended bin (everything
 * past twice the limit) is drawn as wide as the others and marked `open`. */
export function histogramBars(h: Histogram, width: number, height: number): { bars: Bar[]; limitX: number; xMax: number } {
  const typical = h.bins.length > 0 ? Math.max(1, h.bins[0].to - h.bins[0].from) : 1;
  const shown = h.bins.map((b) => (b.to - b.from > typical * 1.5 ? { ...b, to: b.from + typical, open: true } : { ...b, open: false }));
  const xMax = Math.max(h.limit, ...shown.map((b) => b.to), 1);
  const peak = Math.max(1, ...shown.map((b) => b.count));
  const sx = (v: number) => (v / xMax) * width;
  const bars = shown.map((b) => {
    const bh = (b.count / peak) * height;
    return {
      x: sx(b.from), y: height - bh, width: Math.max(1, sx(b.to) - sx(b.from) - 1), height: bh,
      from: b.from, to: b.to, count: b.count, over: b.from >= h.limit, open: b.open,
    };
  });
  return { bars, limitX: sx(h.limit), xMax };
}

/** Share of examples over the limit, 0..1. */
export function overLimitShare(h: Histogram): number {
  return h.total > 0 ? h.over_limit / h.total : 0;
}

/** Holds event payloads of jobs whose id the page does not know yet: a job can report (even
 * finish) before the command that started it has returned its id. `take` hands them over once
 * the id is known; only the newest `limit` jobs are kept. */
export class JobInbox<T> {
  private byJob = new Map<string, T[]>();
  constructor(private limit = 8) {}

  push(jobId: string, payload: T): void {
    const list = this.byJob.get(jobId) ?? [];
    list.push(payload);
    this.byJob.delete(jobId);
    this.byJob.set(jobId, list);
    while (this.byJob.size > this.limit) {
      const oldest = this.byJob.keys().next().value as string;
      this.byJob.delete(oldest);
    }
  }

  take(jobId: string): T[] {
    const list = this.byJob.get(jobId) ?? [];
    this.byJob.delete(jobId);
    return list;
  }
}
