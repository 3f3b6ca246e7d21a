// End-to-end tests of the Chat tab with the real tiny ChatGLM3 from ../shared/fixtures (no
// scripted answers; see harness.mjs and app.test.mjs):
//
// 1. regenerate: the last answer is replaced by a new one made with the settings now chosen,
//    and the question is not repeated;
// 2. side by side: the same question answered by the base model and by the base with the
//    fixture's LoRA adapter; each column matches what `doctorglm ask` answers with the same
//    configuration, and nothing of the comparison is saved.
// Screenshots go to tests/artifacts/chat-*.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { paths, AppUnderTest } from "./harness.mjs";

const app = new AppUnderTest({ prefix: "chat" });
let s;
let lora; // the fixture LoRA adapter's registry record
const COMPARE_QUESTION = "头痛三天了，怎么办？";
let expected; // what the CLI answers to COMPARE_QUESTION: { base, lora }

// The advanced number fields of a configuration, in ConfigControls' order.
const FIELD = { maxNewTokens: 5, seed: 6 };

/** The text a person reads: Markdown rendering aside (spaces, emphasis marks, HTML). */
const plain = (t) => t.replace(/[\s*_#`>\[\]()<&|~-]/g, "");

function askCli(question, extra) {
  const out = app.cli(["ask", question, "--json", "--no-save", "--preset", "conservative", "--max-new-tokens", "4", ...extra]);
  return JSON.parse(out).content;
}

before(async () => {
  app.cli(["models", "import", path.join(paths.fixtures, "models/chatglm3-tiny")]);
  const registry = JSON.parse(app.cli(["models", "list", "--json"]));
  lora = registry.adapters.find((a) => a.info.adapter.kind === "lora");
  assert.ok(lora, "the fixture folder's LoRA adapter was imported with the model");
  expected = { base: askCli(COMPARE_QUESTION, []), lora: askCli(COMPARE_QUESTION, ["--adapter", lora.id]) };
  s = await app.launch();
});
after(() => app.dispose());

/** Chooses `value` in the <select> `css` by clicking its option (as a person would). */
async function choose(css, value) {
  await (await s.waitFor(`${css} option[value="${value}"]`, { what: `option ${value} of ${css}` })).click();
  await s.until(async () => (await s.exec("return document.querySelector(arguments[0]).value", css)) === value, {
    what: `${css} to hold ${value}`,
  });
}

/** Sets an advanced number field of configuration `config` (config-a or config-b). */
async function setNumber(config, field, value) {
  const details = await s.waitFor(`[data-testid="${config}"] details`);
  if ((await details.attr("open")) === null) await (await s.waitFor(`[data-testid="${config}"] details summary`)).click();
  const input = (await s.findAll(`[data-testid="${config}"] details input[type="number"]`))[FIELD[field]];
  await input.clear();
  await input.type(String(value));
  assert.equal(await s.exec(`return document.querySelectorAll('[data-testid="${config}"] details input[type="number"]')[${FIELD[field]}].value`), String(value));
}

/** The finished answers on screen. */
const finished = () => s.findAll('[data-testid="answer"][data-streaming="false"]');

/** Tokens reported under an answer ("… 4 tokens …" / "… 4 个词元 …"). */
async function tokensOf(answer) {
  const meta = await s.exec("return arguments[0].querySelector('.meta').textContent", { "element-6066-11e4-a52e-4f735466cecf": answer.id });
  const m = /(\d+)\s*(tokens|个词元)/.exec(meta);
  assert.ok(m, `no token count in: ${meta}`);
  return { tokens: Number(m[1]), meta };
}

async function bodyText(answer) {
  return s.exec("return arguments[0].querySelector('[data-testid=\"answer-body\"]').textContent", {
    "element-6066-11e4-a52e-4f735466cecf": answer.id,
  });
}

test("regenerate replaces the last answer with one made with the current settings", async () => {
  await choose('[data-testid="config-a-preset"]', "conservative");
  await setNumber("config-a", "maxNewTokens", 3);
  await (await s.waitFor('[data-testid="composer"]')).type("高血压怎么治疗？");
  await (await s.waitFor('[data-testid="send"]', { predicate: async (e) => (await e.attr("disabled")) === null })).click();
  await s.waitFor('[data-testid="answer"][data-streaming="false"] [data-testid="regenerate"]', {
    what: "the first answer",
    timeout: 120_000,
  });
  const [first] = await finished();
  const before = { text: await bodyText(first), ...(await tokensOf(first)) };
  assert.ok(before.tokens >= 1 && before.tokens <= 3, before.meta);
  assert.ok(before.text.trim().length > 0, "the tiny model said something");
  await s.screenshot("01-first-answer");

  // More tokens this time: the new answer must be the one made with 9.
  await setNumber("config-a", "maxNewTokens", 9);
  await (await s.waitFor('[data-testid="regenerate"]')).click();
  const after = await s.until(
    async () => {
      const done = await finished();
      if (done.length !== 1 || (await s.findAll('[data-testid="answer"][data-streaming="true"]')).length) return undefined;
      const t = await tokensOf(done[0]);
      return t.tokens > 3 ? { text: await bodyText(done[0]), ...t } : undefined;
    },
    { what: "the regenerated answer", timeout: 120_000 },
  );
  assert.ok(after.tokens <= 9, after.meta);
  assert.notEqual(after.text, before.text, "the answer was replaced");
  const questions = await s.findAll('[data-testid="question"]');
  assert.equal(questions.length, 1, "the question is not repeated");
  assert.equal(await questions[0].text(), "高血压怎么治疗？");
  assert.equal((await s.findAll('[data-testid="answer"]')).length, 1, "one answer: the old one is gone");
  await s.screenshot("02-regenerated");

  // The store holds the same: the question and the new answer only.
  const items = await s.findAll('[data-testid="conversation-item"]');
  assert.equal(items.length, 1);
  await items[0].click();
  await s.until(async () => (await finished()).length === 1 && (await bodyText((await finished())[0])) === after.text, {
    what: "the reopened conversation to show the regenerated answer",
  });
  assert.equal((await s.findAll('[data-testid="question"]')).length, 1);
});

test("side by side: base and LoRA adapter answer the same question; nothing is saved", async () => {
  assert.notEqual(plain(expected.base), plain(expected.lora), "the fixture adapter changes the answer (CLI)");
  const conversationsBefore = (await s.findAll('[data-testid="conversation-item"]')).length;
  await (await s.waitFor('[data-testid="new-conversation"]')).click();
  await (await s.waitFor('[data-testid="compare"]')).click();
  await s.waitFor('[data-testid="config-b"]', { what: "the second configuration" });
  for (const config of ["config-a", "config-b"]) {
    await choose(`[data-testid="${config}-preset"]`, "conservative");
    await setNumber(config, "maxNewTokens", 4);
  }
  // Configuration A keeps the base alone (no adapter is the default).
  await choose('[data-testid="config-b-adapter"]', lora.id);

  await (await s.waitFor('[data-testid="composer"]')).type(COMPARE_QUESTION);
  await (await s.waitFor('[data-testid="send"]', { predicate: async (e) => (await e.attr("disabled")) === null })).click();
  await s.waitFor('[data-testid="compare-results"]', { what: "the side-by-side columns" });
  const answers = await s.until(
    async () => {
      const done = await s.findAll('[data-testid="compare-results"] [data-testid="answer"][data-streaming="false"]');
      return done.length === 2 ? done : undefined;
    },
    { what: "both columns' answers", timeout: 120_000 },
  );
  const [a, b] = [await tokensOf(answers[0]), await tokensOf(answers[1])];
  assert.match(a.meta, /chatglm3-tiny/);
  assert.doesNotMatch(a.meta, /\+/, `column A is the base alone: ${a.meta}`);
  assert.match(b.meta, new RegExp(`chatglm3-tiny \\+ ${lora.info.name}`), `column B uses the adapter: ${b.meta}`);
  const [textA, textB] = [await bodyText(answers[0]), await bodyText(answers[1])];
  assert.equal(plain(textA), plain(expected.base), `column A: ${textA} / CLI: ${expected.base}`);
  assert.equal(plain(textB), plain(expected.lora), `column B: ${textB} / CLI: ${expected.lora}`);
  const questions = await s.findAll('[data-testid="compare-results"] [data-testid="question"]');
  assert.equal(questions.length, 2, "each column shows the question");
  for (const q of questions) assert.equal(await q.text(), COMPARE_QUESTION);
  // The sources panel shows what the designer found for the compared question, also after
  // picking an answer.
  const diseases = async () => (await s.findAll('[data-testid="sources-diseases"]')).length && (await (await s.waitFor('[data-testid="sources-diseases"]')).textContent());
  await s.until(async () => /头痛/.test((await diseases()) || ""), { what: "the compared question's sources in the panel" });
  await s.exec("arguments[0].querySelector('[data-testid=\"answer-body\"]').click(); return true", {
    "element-6066-11e4-a52e-4f735466cecf": answers[1].id,
  });
  assert.match((await diseases()) || "", /头痛/, "column B's sources after picking its answer");
  await s.screenshot("03-side-by-side");

  // Comparisons are not kept in the history.
  await (await s.waitFor('[data-testid="search"]')).type("头痛三天");
  await s.until(async () => (await s.findAll('[data-testid="conversation-item"]')).length === 0, {
    what: "no saved conversation with the compared question",
  });
  const search = await s.waitFor('[data-testid="search"]');
  await search.clear();
  await search.type("高血压");
  await s.until(async () => (await s.findAll('[data-testid="conversation-item"]')).length === conversationsBefore, {
    what: "the conversation list as before",
  });
});
