// End-to-end tests: the real app window (WebKitGTK) driven through tauri-driver and
// WebKitWebDriver under Xvfb. Run by tests/e2e/run.sh (which sets the paths below).
//
// 1. first start: the app says how to import a model;
// 2. import the tiny ChatGLM3 from ../shared/fixtures through the Models tab;
// 3. ask a question, watch the answer stream in and the sources panel appear;
//    the answer holds `<img src=x onerror=…>` and `<script>`, which must stay inert;
// 4. restart the app and find the conversation by search.
// Screenshots of each step go to tests/artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { paths, AppUnderTest } from "./harness.mjs";

// The test answer streams word by word from the debug build's scripted engine
// (DOCTORGLM_TEST_ANSWER); it carries HTML a model might produce.
const ANSWER =
  "**Hypertension** care starts with lifestyle changes. " +
  '<img src=x onerror="window.__pwned=1;document.title=\'pwned\'"> ' +
  "<script>window.__pwned=2;document.title='pwned'</script> Check the blood pressure again.";
const QUESTION = "What helps hypertension in adults?";

const app = new AppUnderTest({ env: { DOCTORGLM_TEST_ANSWER: ANSWER } });
let s;

before(async () => {
  s = await app.launch();
});
after(() => app.dispose());

test("first start without a model says how to import one", async () => {
  const notice = await s.waitFor('[data-testid="no-model"]', { what: "the no-model notice" });
  const text = await notice.text();
  assert.match(text, /doctorglm models import/, `notice was: ${text}`);
  const reminder = await (await s.waitFor('[data-testid="reminder"]')).text();
  assert.ok(reminder.length > 10, "the clinician reminder is shown");
  await s.screenshot("01-first-start");
});

test("import the tiny model from the fixtures", async () => {
  await (await s.waitFor('[data-testid="tab-models"]')).click();
  const input = await s.waitFor('[data-testid="model-path"]');
  await input.type(path.join(paths.fixtures, "models/chatglm3-tiny"));
  await (await s.waitFor('[data-testid="model-import"]', { predicate: async (e) => (await e.attr("disabled")) === null })).click();
  const name = await s.waitFor('[data-testid="model-name"]', {
    what: "the imported model's card",
    timeout: 60_000,
    predicate: async (e) => (await e.text()) === "chatglm3-tiny",
  });
  assert.ok(name);
  const arch = await (await s.waitFor('[data-testid="model-architecture"]')).text();
  assert.equal(arch, "chatglm3");
  const adapters = await s.findAll('[data-testid="adapter-item"]');
  assert.equal(adapters.length, 2, "the LoRA and P-tuning adapters inside the folder are imported");
  await s.screenshot("02-model-imported");
});

test("ask a question: the answer streams, sources appear, model HTML stays inert", async () => {
  await (await s.waitFor('[data-testid="tab-chat"]')).click();
  const box = await s.waitFor('[data-testid="composer"]');
  await box.type(QUESTION);
  await (await s.waitFor('[data-testid="send"]', { predicate: async (e) => (await e.attr("disabled")) === null })).click();

  // Streaming: a partial answer is visible before the end.
  const partial = await s.waitFor('[data-testid="answer"][data-streaming="true"]', {
    what: "a partial answer while streaming",
    predicate: async (e) => (await e.text()).length > 0,
  });
  const partialText = await partial.text();
  await s.screenshot("03-answer-streaming");
  assert.ok(partialText.length < ANSWER.length, `partial answer: ${partialText}`);

  // The end: the saved answer replaces the stream; copy/regenerate appear.
  await s.waitFor('[data-testid="answer"][data-streaming="false"] [data-testid="regenerate"]', {
    what: "the finished answer",
    timeout: 60_000,
  });
  const body = await s.waitFor('[data-testid="answer-body"]');
  const text = await body.text();
  assert.match(text, /Hypertension care starts/);
  assert.match(text, /Check the blood pressure again/);
  const html = await body.html();
  assert.match(html, /<strong>Hypertension<\/strong>/, "Markdown is rendered");
  assert.doesNotMatch(html, /<img|<script|onerror/i, `answer HTML: ${html}`);
  const pwned = await s.exec("return [window.__pwned === undefined, document.title]");
  assert.deepEqual(pwned, [true, "DoctorGLM"], "no script from the answer ran");

  const sources = await s.waitFor('[data-testid="sources"]', { what: "the sources panel" });
  assert.ok((await sources.text()).length > 0);
  await s.screenshot("04-answer-done");
});

test("after a restart the conversation is found by search", async () => {
  s = await app.restart();
  const search = await s.waitFor('[data-testid="search"]');
  // The search filters: a word no message holds finds nothing.
  await search.type("pneumothorax");
  await s.until(async () => (await s.findAll('[data-testid="conversation-item"]')).length === 0, {
    what: "an empty result for a word that is in no conversation",
  });
  await search.clear();
  await search.type("hypertension");
  const item = await s.waitFor('[data-testid="conversation-item"]', {
    what: "the conversation in the search results",
    predicate: async (e) => /hypertension/i.test(await e.textContent()),
  });
  await item.click();
  const q = await s.waitFor('[data-testid="question"]', {
    what: "the saved question",
    predicate: async (e) => (await e.text()).includes(QUESTION),
  });
  assert.ok(q);
  const answers = await s.findAll('[data-testid="answer-body"]');
  assert.equal(answers.length, 1);
  assert.doesNotMatch(await answers[0].html(), /<img|<script/i);
  await s.screenshot("05-found-after-restart");
});
