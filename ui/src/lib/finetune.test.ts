import { describe, it, expect } from "vitest";
import {
  STEPS, applyEvent, backTo, blankMapping, canAdvance, canGoBack, changedSettings, chartScale, downsample, formatEta,
  histogramBars, initialTraining, resumingRun, JobInbox, initialWizard, linePath, mappingComplete, next, overLimitShare, paperDefaults,
  progressFraction, project, settingsProblems, withFiles, withoutFile, yTicks, type WizardState,
} from "./finetune";
import type { FileInspection, Histogram, Mapping, PrepareResult, TrainResult } from "./finetune-types";

const qa: Mapping = { shape: { kind: "question_answer", question: ["instruction", "input"], answer: "output" } };

function file(path: string, columns = ["instruction", "input", "output"], mapping: Mapping | null = qa): FileInspection {
  return { path, format: "json", encoding: "utf-8", columns, records: 10, unreadable: [], preview: [], layout: "alpaca", mapping, notes: [] };
}

function hist(limit: number, counts: number[], open = 0): Histogram {
  const w = Math.max(1, Math.floor(limit / 16));
  const bins = counts.map((count, i) => ({ from: i * w, to: (i + 1) * w, count }));
  bins.push({ from: w * 32, to: 5000, count: open });
  return { limit, bins, over_limit: 0, total: counts.reduce((a, b) => a + b, 0) + open, max: 4999, mean: 0, p50: 0, p95: 0 };
}

const prepared = (train: number): PrepareResult => ({
  dir: "/d",
  manifest: {
    format_version: 1, sources: [], deid: { applied: true, counts: {}, dialogues_changed: 0 },
    cleaning: { input: train, kept: train, removed: {}, examples: [] }, train, validation: 1,
    histograms: { source: hist(512, [1]), target: hist(100, [1]), exact_tokenizer: false },
  },
  deid: { counts: { name: 2 }, dialogues_changed: 1, dialogues: train, examples: [] },
  sample: [],
});

const done = (reason: TrainResult["reason"]): TrainResult => ({
  reason, steps: 5, totalSteps: 5, best: null, collapseSeen: false, output: "/o", adapterDir: "/o/adapter", name: "a",
  adapterId: reason === "cancelled" ? null : "adapter-1", baseId: "model-1", runId: 1,
  tokensPerSec: 100, elapsedSecs: 3, tokensSeen: 300,
});

describe("wizard steps", () => {
  it("walks import → result only when each step is satisfied", () => {
    let s: WizardState = initialWizard();
    expect(s.step).toBe("import");
    expect(canAdvance(s)).toBe(false);
    expect(next(s)).toBe(s);
    s = next(withFiles(s, [file("/a.json")]));
    expect(s.step).toBe("mapping");
    s = next(s);
    expect(s.step).toBe("deid");
    expect(canAdvance(s)).toBe(false); // nothing prepared
    s = { ...s, prepared: prepared(20) };
    expect(canAdvance(s)).toBe(false); // not reviewed
    s = next({ ...s, deidConfirmed: true });
    expect(s.step).toBe("cleaning");
    s = next(s);
    expect(s.step).toBe("settings");
    expect(canAdvance(s)).toBe(false); // no base model
    s = { ...s, baseId: "model-1" };
    expect(canAdvance({ ...s, settings: { ...s.settings, rank: 0 } })).toBe(false);
    s = next(s);
    expect(s.step).toBe("training");
    s = { ...s, jobId: "train-1" };
    expect(canGoBack(s)).toBe(false);
    expect(backTo(s, "settings")).toBe(s);
    s = { ...s, result: done("cancelled"), jobId: null };
    expect(canAdvance(s)).toBe(false); // a cancelled job has no adapter yet
    s = next({ ...s, result: done("early_stopped") });
    expect(s.step).toBe("result");
    expect(canGoBack(s)).toBe(false);
    expect(STEPS.at(-1)).toBe("result");
  });

  it("refuses an incomplete mapping and an empty training split", () => {
    let s = withFiles(initialWizard(), [file("/a.csv", ["ask", "answer"], null)]);
    s = next(s);
    expect(s.step).toBe("mapping");
    expect(canAdvance(s)).toBe(false);
    s = { ...s, mappings: [{ shape: { kind: "question_answer", question: ["ask"], answer: "answer" } }] };
    expect(canAdvance(s)).toBe(true);
    expect(canAdvance({ ...s, step: "cleaning", prepared: prepared(0) })).toBe(false);
  });

  it("going back before the review drops the prepared data and the confirmation", () => {
    let s: WizardState = { ...withFiles(initialWizard(), [file("/a.json")]), step: "cleaning", prepared: prepared(5), deidConfirmed: true };
    const toDeid = backTo(s, "deid");
    expect(toDeid.prepared).not.toBeNull();
    expect(toDeid.deidConfirmed).toBe(true);
    s = backTo(s, "mapping");
    expect(s.step).toBe("mapping");
    expect(s.prepared).toBeNull();
    expect(s.deidConfirmed).toBe(false);
    expect(backTo(s, "settings")).toBe(s); // not forwards
  });

  it("continuing an unfinished run goes straight to training, never over a running job", () => {
    const s = resumingRun(initialWizard(), "train-9");
    expect([s.step, s.jobId]).toEqual(["training", "train-9"]);
    expect(resumingRun(s, "train-10")).toBe(s);
    expect(canGoBack(s)).toBe(false);
    expect(next({ ...s, jobId: null, result: done("completed") }).step).toBe("result");
  });

  it("adds, replaces and removes files with their mappings", () => {
    let s = withFiles(initialWizard(), [file("/a.json"), file("/b.json", ["q", "a"], null)]);
    expect(s.mappings).toEqual([qa, null]);
    s = withFiles(s, [file("/b.json", ["conversations"], { shape: { kind: "conversation", field: "conversations" } })]);
    expect(s.files.length).toBe(2);
    expect(s.mappings[1]?.shape.kind).toBe("conversation");
    s = withoutFile(s, "/a.json");
    expect(s.files.map((f) => f.path)).toEqual(["/b.json"]);
    expect(s.mappings.length).toBe(1);
  });
});

describe("mappings", () => {
  it("needs the required fields and existing columns", () => {
    expect(mappingComplete(null, ["a"])).toBe(false);
    expect(mappingComplete(qa, ["instruction", "input", "output"])).toBe(true);
    expect(mappingComplete(qa, ["instruction", "output"])).toBe(false);
    expect(mappingComplete({ ...qa, department: "dept" }, ["instruction", "input", "output"])).toBe(false);
    expect(mappingComplete(blankMapping("question_answer"), ["x"])).toBe(false);
    const mc = blankMapping("multiple_choice");
    expect(mappingComplete(mc, ["Q"])).toBe(false);
    if (mc.shape.kind === "multiple_choice") Object.assign(mc.shape, { question: "Q", options: "O", answer: "A" });
    expect(mappingComplete(mc, ["Q", "O", "A"])).toBe(true);
  });
});

describe("settings", () => {
  it("defaults are the paper's and valid", () => {
    const d = paperDefaults();
    expect([d.optimizer, d.lr, d.rank, d.alpha, d.batch_size, d.epochs, d.max_source, d.max_target, d.warmup_steps, d.weight_decay])
      .toEqual(["lion", 2e-5, 8, 16, 4, 1, 512, 100, 0, 0]);
    expect(d.target_modules).toEqual(["query_key_value"]);
    expect(settingsProblems(d)).toEqual([]);
    expect(changedSettings(d)).toEqual([]);
  });

  it("names bad values and changed settings", () => {
    const s = { ...paperDefaults(), lr: 0, rank: 2.5, target_modules: [" "], max_steps: 0 };
    expect(settingsProblems(s)).toEqual(["ft.err.lr", "ft.err.rank", "ft.err.maxSteps", "ft.err.modules"]);
    expect(changedSettings({ ...paperDefaults(), rank: 16, probe: [] })).toEqual(["rank", "probe"]);
  });

  it("memory settings: default f32 base without checkpointing; a quantized base cannot be bf16", () => {
    const d = paperDefaults();
    expect([d.base_quantization, d.gradient_checkpointing, d.dtype]).toEqual(["f32", false, "auto"]);
    expect(settingsProblems({ ...d, base_quantization: "q4_0", gradient_checkpointing: true })).toEqual([]);
    expect(settingsProblems({ ...d, base_quantization: "q4_0", dtype: "bf16" })).toEqual(["ft.err.quantDtype"]);
    expect(settingsProblems({ ...d, dtype: "bf16" })).toEqual([]);
  });
});

describe("training view", () => {
  it("follows the runner's events", () => {
    let v = initialTraining();
    v = applyEvent(v, { event: "started", total_steps: 10, start_step: 4, train_examples: 40, validation_examples: 2, skipped: 0 });
    expect(progressFraction(v)).toBeCloseTo(0.4);
    v = applyEvent(v, { event: "step", step: 5, total_steps: 10, epoch: 0, loss: 3.5, lr: 2e-5, tokens_per_sec: 100, eta_secs: 50 });
    v = applyEvent(v, { event: "step", step: 6, total_steps: 10, epoch: 0, loss: 3.0, lr: 2e-5, tokens_per_sec: 110, eta_secs: 40 });
    v = applyEvent(v, { event: "evaluation", step: 6, validation_loss: 3.2, best: true, probe: [{ question: "q", answer: "北京", has_keyword: true, collapse: [] }], collapse: false });
    v = applyEvent(v, { event: "paused" });
    expect(v.paused).toBe(true);
    v = applyEvent(v, { event: "resumed" });
    v = applyEvent(v, { event: "evaluation", step: 8, validation_loss: 3.4, best: false, probe: [], collapse: true });
    v = applyEvent(v, { event: "checkpoint", step: 8, dir: "/c" });
    expect(v.loss).toEqual([{ x: 5, y: 3.5 }, { x: 6, y: 3.0 }]);
    expect(v.validation).toEqual([{ x: 6, y: 3.2 }, { x: 8, y: 3.4 }]);
    expect(v.best).toEqual({ step: 6, loss: 3.2 });
    expect(v.collapse).toBe(true);
    expect(v.paused).toBe(false);
    expect(v.probes.map((p) => p.step)).toEqual([6, 8]);
    expect([v.etaSecs, v.tokensPerSec, v.lastCheckpoint]).toEqual([40, 110, 8]);
  });

  it("a resumed run replaces the steps it repeats", () => {
    let v = initialTraining();
    for (const step of [1, 2, 3]) v = applyEvent(v, { event: "step", step, total_steps: 5, epoch: 0, loss: step, lr: 1, tokens_per_sec: 1, eta_secs: 1 });
    v = applyEvent(v, { event: "step", step: 3, total_steps: 5, epoch: 0, loss: 9, lr: 1, tokens_per_sec: 1, eta_secs: 1 });
    expect(v.loss.map((p) => p.y)).toEqual([1, 2, 9]);
  });

  it("formats ETAs", () => {
    expect(formatEta(null)).toBe("—");
    expect(formatEta(Infinity)).toBe("—");
    expect(formatEta(12.4)).toBe("12s");
    expect(formatEta(185)).toBe("3m 05s");
    expect(formatEta(3720)).toBe("1h 02m");
  });
});

describe("curves", () => {
  it("puts both series on one scale inside the padding", () => {
    const train = [{ x: 1, y: 4 }, { x: 10, y: 2 }];
    const val = [{ x: 5, y: 3 }, { x: 10, y: 1 }];
    const s = chartScale([train, val], 200, 100, 10);
    expect(s.xMin).toBe(1);
    expect(s.xMax).toBe(10);
    expect(s.yMin).toBeLessThan(1);
    expect(s.yMax).toBeGreaterThan(4);
    for (const p of [...train, ...val]) {
      const q = project(p, s);
      expect(q.x).toBeGreaterThanOrEqual(10);
      expect(q.x).toBeLessThanOrEqual(190);
      expect(q.y).toBeGreaterThanOrEqual(10);
      expect(q.y).toBeLessThanOrEqual(90);
    }
    // Lower loss is drawn lower on screen (larger y).
    expect(project({ x: 10, y: 1 }, s).y).toBeGreaterThan(project({ x: 10, y: 4 }, s).y);
    const ticks = yTicks(s, 4);
    expect(ticks.length).toBe(5);
    expect(ticks[0]).toBe(s.yMin);
    expect(ticks[4]).toBeCloseTo(s.yMax);
  });

  it("draws a flat or single point series and breaks at NaN", () => {
    const s = chartScale([[{ x: 3, y: 2 }]], 100, 100, 0);
    expect(s.xMax).toBeGreaterThan(s.xMin);
    expect(s.yMax).toBeGreaterThan(s.yMin);
    const empty = chartScale([], 100, 100);
    expect([empty.xMin, empty.xMax]).toEqual([0, 1]);
    const d = linePath([{ x: 0, y: 1 }, { x: 1, y: NaN }, { x: 2, y: 1 }, { x: 3, y: 2 }], chartScale([[{ x: 0, y: 1 }, { x: 3, y: 2 }]], 100, 100, 0));
    expect(d.match(/M/g)?.length).toBe(2);
    expect(d.match(/L/g)?.length).toBe(1);
  });

  it("downsamples long series keeping the ends", () => {
    const pts = Array.from({ length: 1000 }, (_, i) => ({ x: i, y: i }));
    const d = downsample(pts, 50);
    expect(d.length).toBe(50);
    expect(d[0]).toEqual(pts[0]);
    expect(d.at(-1)).toEqual(pts[999]);
    expect(downsample(pts.slice(0, 10), 50).length).toBe(10);
  });
});

describe("histogram", () => {
  it("scales bars to the peak, marks bins over the limit and narrows the open bin", () => {
    const counts = Array.from({ length: 32 }, (_, i) => (i === 3 ? 10 : i === 20 ? 5 : 0));
    const h = hist(512, counts, 2);
    const { bars, limitX, xMax } = histogramBars(h, 330, 100);
    expect(bars.length).toBe(33);
    expect(bars[3].height).toBe(100);
    expect(bars[20].height).toBe(50);
    expect(bars[3].over).toBe(false);
    expect(bars[20].over).toBe(true);
    const last = bars.at(-1)!;
    expect(last.open).toBe(true);
    expect(last.to - last.from).toBe(32);
    expect(xMax).toBe(33 * 32);
    expect(limitX).toBeCloseTo((512 / xMax) * 330);
    for (const b of bars) expect(b.x + b.width).toBeLessThanOrEqual(330);
  });

  it("share over the limit", () => {
    expect(overLimitShare({ ...hist(100, [1]), over_limit: 3, total: 12 })).toBe(0.25);
    expect(overLimitShare({ ...hist(100, []), total: 0 })).toBe(0);
  });
});

describe("job inbox", () => {
  it("keeps early payloads per job, in order, until taken; forgets the oldest jobs", () => {
    const inbox = new JobInbox<number>(2);
    inbox.push("a", 1);
    inbox.push("b", 2);
    inbox.push("a", 3);
    expect(inbox.take("a")).toEqual([1, 3]);
    expect(inbox.take("a")).toEqual([]);
    inbox.push("c", 4);
    inbox.push("d", 5);
    expect(inbox.take("b")).toEqual([]);
    expect(inbox.take("c")).toEqual([4]);
  });
});
