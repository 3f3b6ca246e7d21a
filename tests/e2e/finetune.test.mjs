// End-to-end test of the fine-tuning wizard in the real window (see app.test.mjs for the
// harness): a real export from ../shared/data/exports goes through columns, the
// de-identification review (Next stays disabled until it is confirmed), cleaning with its
// histograms and settings, then trains the tiny ChatGLM3 for a few steps; the result is
// registered and "Use it in chat" selects the new adapter in the Chat tab.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startDriver, Session } from "./webdriver.mjs";

const root = path.resolve(import.meta.dirname, "../..");
const app = process.env.DOCTORGLM_APP ?? path.join(root, "target/debug/doctorglm");
const fixtures = process.env.DOCTORGLM_FIXTURES ?? path.resolve(root, "../shared/fixtures");
const exportFile = path.resolve(root, "../shared/data/exports/medicalgpt-sft-1k.sharegpt.jsonl");
const artifacts = path.join(root, "tests/artifacts");
const driverPath = process.env.TAURI_DRIVER ?? "tauri-driver";

const dataDir = mkdtempSync(path.join(tmpdir(), "doctorglm-e2e-ft-"));
const env = { DOCTORGLM_DATA_DIR: dataDir };
let driver;
let s;
let modelId;

const enabled = async (e) => (await e.attr("disabled")) === null;

// Screenshots are evidence, not the test: one that does not come back within 20 s (WebKit
// under Xvfb can hang on it) is skipped, and so are the rest.
let screenshots = process.env.DOCTORGLM_E2E_SCREENSHOTS !== "0";
async function shot(name) {
  if (!screenshots) return;
  const timeout = new Promise((resolve) => setTimeout(() => resolve("timeout"), 20_000));
  const r = await Promise.race([s.screenshot(name).catch((e) => `failed: ${e}`), timeout]);
  if (typeof r === "string" && !r.endsWith(".png")) {
    console.log(`# screenshot ${name} skipped (${r}); no more screenshots`);
    screenshots = false;
  }
}

async function next() {
  await (await s.waitFor('[data-testid="ft-next"]', { what: "an enabled Next", predicate: enabled, timeout: 60_000 })).click();
}

/** Replaces a number field's value and leaves it, so its change event fires. */
async function setField(testid, value) {
  const el = await s.waitFor(`[data-testid="${testid}"]`);
  await el.clear();
  await el.type(value);
  await (await s.waitFor('[data-testid="ft-paper"]')).click();
}

before(async () => {
  // The base model is imported through the CLI (the Models tab import is app.test.mjs's job).
  execFileSync(app, ["models", "import", path.join(fixtures, "models/chatglm3-tiny")], { env: { ...process.env, ...env } });
  const registry = JSON.parse(execFileSync(app, ["models", "list", "--json"], { env: { ...process.env, ...env } }).toString());
  modelId = registry.models[0].id;
  driver = await startDriver({ driverPath, env });
  s = await Session.start(driver.base, app, artifacts);
  await s.waitFor('[data-testid="app"][data-ready="true"]', { what: "the app to load", timeout: 60_000 });
});

after(async () => {
  await s?.end();
  await driver?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

test("files, columns and de-identification review", async () => {
  await (await s.waitFor('[data-testid="tab-finetune"]')).click();
  await (await s.waitFor('[data-testid="ft-path"]')).type(exportFile);
  await (await s.waitFor('[data-testid="ft-add"]', { predicate: enabled })).click();
  const file = await s.waitFor('[data-testid="ft-file"]', { what: "the inspected file" });
  assert.match(await file.text(), /1000/);
  await shot("ft-01-files");
  await next();
  await s.waitFor('[data-testid="ft-mapping"]', { what: "the column mapping" });
  const preview = await (await s.waitFor('[data-testid="ft-preview"]')).text();
  assert.match(preview, /conversations/);
  await shot("ft-02-columns");
  await next(); // prepares the data
  const summary = await s.waitFor('[data-testid="ft-deid-summary"]', { what: "the de-identification report", timeout: 120_000 });
  assert.match(await summary.text(), /1000/);
  const nextButton = await s.waitFor('[data-testid="ft-next"]');
  assert.notEqual(await nextButton.attr("disabled"), null, "Next waits for the review to be confirmed");
  await shot("ft-03-deid");
  await (await s.waitFor('[data-testid="ft-deid-confirm"]')).click();
  await next();
});

test("cleaning report with histograms, then settings with the paper's defaults", async () => {
  const split = await (await s.waitFor('[data-testid="ft-split"]', { what: "the split" })).text();
  assert.match(split, /950/);
  const bars = await s.findAll('[data-testid="ft-hist-target"] rect');
  assert.ok(bars.length >= 32, `histogram bars: ${bars.length}`);
  await shot("ft-04-cleaning");
  await next();
  const paper = await (await s.waitFor('[data-testid="ft-paper"]')).text();
  assert.match(paper, /2e-5/);
  await (await s.waitFor(`[data-testid="ft-base"] option[value="${modelId}"]`)).click();
  await (await s.waitFor('[data-testid="ft-name"]')).type("e2e-ward");
  await (await s.waitFor('[data-testid="ft-advanced"]')).click();
  await setField("ft-max-steps", "4");
  await setField("ft-eval-every", "2");
  await setField("ft-max-source", "64");
  await setField("ft-max-target", "16");
  await shot("ft-05-settings");
});

test("training shows curves and probe answers, and the adapter is usable in chat", async () => {
  await next(); // starts training
  await s.waitFor('[data-testid="ft-training"]', { what: "the training view" });
  await s.waitFor('[data-testid="ft-probe-answers"]', { what: "probe answers", timeout: 300_000 });
  const registered = await s.waitFor('[data-testid="ft-registered"]', { what: "the registered adapter", timeout: 300_000 });
  assert.match(await registered.text(), /e2e-ward/);
  const curve = await s.exec("return document.querySelector('[data-testid=train-curve]').getAttribute('d')");
  assert.ok((curve.match(/L/g) ?? []).length >= 3, `training curve: ${curve}`);
  await shot("ft-06-result");
  await (await s.waitFor('[data-testid="ft-use-in-chat"]', { predicate: enabled })).click();
  const chosen = await s.until(
    () => s.exec("const a = document.querySelector('[data-testid=config-a-adapter]'); return a && a.selectedOptions[0] && a.selectedOptions[0].textContent"),
    { what: "the new adapter chosen in chat" },
  );
  assert.match(chosen, /e2e-ward/);
  await shot("ft-07-chat");
});
