// End-to-end test of the Knowledge tab (see harness.mjs): a real document file from
// ../shared/data/knowledge (GBK JSON lines, 100 diseases) is imported through the window;
// the progress bar shows while it runs, the import report says what was imported and what
// was skipped and why, and the imported documents are found by search and open. After a
// restart they are still found. Screenshots go to tests/artifacts/knowledge-*.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { paths, AppUnderTest } from "./harness.mjs";

const file = path.resolve(paths.root, "../shared/data/knowledge/qasystem-medical-first100.gbk.jsonl");
const IMPORTED = "肺泡蛋白质沉积症"; // in the file, not in the starter library
const app = new AppUnderTest({ prefix: "knowledge" });
let s;

before(async () => {
  s = await app.launch();
});
after(() => app.dispose());

const items = () => s.findAll('[data-testid="knowledge-item"]');

async function search(text) {
  const box = await s.waitFor('[data-testid="knowledge-search"]');
  await box.clear();
  await box.type(text);
}

async function itemsNamed(name) {
  const found = [];
  for (const item of await items()) if ((await item.textContent()).includes(name)) found.push(item);
  return found;
}

test("import a document file: progress, the report, then found by search", async () => {
  await (await s.waitFor('[data-testid="tab-knowledge"]')).click();
  await s.waitFor('[data-testid="knowledge-tab"]');
  // The starter library is there; the disease to import is not.
  await s.until(async () => (await items()).length > 0, { what: "the starter library's documents" });
  await search(IMPORTED);
  await s.until(async () => (await itemsNamed(IMPORTED)).length === 0, {
    what: "no document named like the one to import",
  });

  // Record what the page shows while the import runs: every progress bar value and message.
  await s.exec(`
    const root = document.querySelector('[data-testid="knowledge-tab"]');
    window.__progress = [];
    new MutationObserver(() => {
      const bar = root.querySelector("progress");
      if (bar) window.__progress.push([bar.value, bar.nextElementSibling?.textContent ?? ""]);
    }).observe(root, { subtree: true, childList: true, attributes: true, characterData: true });
    return true;`);
  const pathBox = await s.waitFor('[data-testid="knowledge-tab"] section .card input');
  await pathBox.type(file);
  await (await s.waitFor('[data-testid="knowledge-tab"] section .card button.primary', {
    predicate: async (e) => (await e.attr("disabled")) === null,
  })).click();

  const report = await s.waitFor('[data-testid="knowledge-tab"] section .card .notice', {
    what: "the import report",
    timeout: 180_000,
  });
  const text = await report.text();
  const [imported, skipped, files] = (text.match(/\d+/g) ?? []).map(Number);
  assert.ok(imported >= 80 && imported <= 100, `report: ${text}`);
  assert.ok(skipped >= 1, `report: ${text}`);
  assert.equal(imported + skipped >= 100, true, `report: ${text}`);
  assert.equal(files, 1, `report: ${text}`);
  // Skipped records are listed with the reason (百日咳 is in the starter library).
  const skippedList = await s.exec(
    "return [...document.querySelectorAll('[data-testid=\"knowledge-tab\"] section .card ul li')].map((li) => li.textContent)",
  );
  assert.ok(skippedList.some((l) => l.includes("百日咳")), `skipped: ${skippedList.join(" | ")}`);
  const seen = await s.exec("return window.__progress");
  assert.ok(seen.length > 0, "a progress bar was shown while importing");
  assert.ok(seen.every(([v]) => v >= 0 && v <= 1), `progress values: ${JSON.stringify(seen.slice(0, 5))}`);
  assert.ok(await s.exec("return document.querySelector('[data-testid=\"knowledge-tab\"] progress') === null"), "the bar goes away");
  assert.equal(await s.exec("return document.querySelector('[data-testid=\"knowledge-tab\"] .error')"), null, "no error shown");
  // The list refreshes itself after the import: the search still in the box now finds it.
  const [item] = await s.until(async () => {
    const found = await itemsNamed(IMPORTED);
    return found.length ? found : undefined;
  }, { what: `${IMPORTED} in the search results after the import` });
  await s.screenshot("01-import-report");

  // It opens.
  await item.click();
  const doc = await s.waitFor('[data-testid="knowledge-document"]', { what: "the opened document" });
  const body = await doc.textContent();
  assert.ok(body.includes(IMPORTED), body.slice(0, 200));
  assert.ok(body.length > IMPORTED.length + 100, "the document has its sections");
  await s.screenshot("02-found-by-search");
});

test("after a restart the imported documents are still found", async () => {
  s = await app.restart();
  await (await s.waitFor('[data-testid="tab-knowledge"]')).click();
  await search(IMPORTED);
  const found = await s.until(async () => {
    const f = await itemsNamed(IMPORTED);
    return f.length ? f : undefined;
  }, { what: `${IMPORTED} after a restart` });
  assert.equal(found.length, 1);
  await s.screenshot("03-found-after-restart");
});
