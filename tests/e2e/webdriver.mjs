// A small W3C WebDriver client over HTTP (Node's fetch) for driving the app through
// tauri-driver, plus tauri-driver process management. No dependencies.
import { spawn } from "node:child_process";
import { writeFileSync, mkdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import net from "node:net";

const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** Starts tauri-driver (which starts WebKitWebDriver) with `env`; resolves once it listens. */
export async function startDriver({ driverPath = "tauri-driver", env = {} } = {}) {
  const port = await freePort();
  const nativePort = await freePort();
  const proc = spawn(driverPath, ["--port", String(port), "--native-port", String(nativePort)], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  proc.stdout.on("data", (d) => (log += d));
  proc.stderr.on("data", (d) => (log += d));
  const exited = new Promise((resolve) => proc.on("exit", (code) => resolve(code)));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`tauri-driver exited with ${proc.exitCode}:\n${log}`);
    try {
      await fetch(`${base}/status`);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`tauri-driver did not listen on ${port} within 20 s:\n${log}`);
      await sleep(200);
    }
  }
  return {
    base,
    log: () => log,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        await Promise.race([exited, sleep(5000)]);
        if (proc.exitCode === null) proc.kill("SIGKILL");
      }
    },
  };
}

/** One WebDriver command; a command that hangs fails after `timeout` ms. */
async function call(base, method, path, body, timeout = 120_000) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeout),
  });
  const json = await res.json().catch(() => ({}));
  if (!res.ok || (json.value && json.value.error)) {
    const v = json.value ?? {};
    throw new Error(`WebDriver ${method} ${path} failed: ${v.error ?? res.status}: ${v.message ?? JSON.stringify(json)}`);
  }
  return json.value;
}

/** A WebDriver session on the app. */
export class Session {
  constructor(base, id, artifacts, prefix = "") {
    this.base = base;
    this.id = id;
    this.artifacts = artifacts;
    this.prefix = prefix;
  }

  /** Launches `application` through the driver at `base`; screenshots go to `artifacts`. */
  static async start(base, application, artifacts, prefix = "") {
    const value = await call(base, "POST", "/session", {
      capabilities: { alwaysMatch: { "tauri:options": { application } } },
    });
    return new Session(base, value.sessionId, artifacts, prefix);
  }

  cmd(method, path, body) {
    return call(this.base, method, `/session/${this.id}${path}`, body);
  }

  async end() {
    await this.cmd("DELETE", "").catch(() => {});
  }

  /** Runs `script` in the page and returns its value. */
  exec(script, ...args) {
    return this.cmd("POST", "/execute/sync", { script, args });
  }

  async findAll(css) {
    const list = await this.cmd("POST", "/elements", { using: "css selector", value: css });
    return list.map((e) => new Element(this, e[ELEMENT]));
  }

  /** Waits until `css` matches an element (and `predicate(element)` holds); fails with `what`. */
  async waitFor(css, { timeout = 20_000, what = css, predicate } = {}) {
    const deadline = Date.now() + timeout;
    let lastError = "";
    for (;;) {
      try {
        for (const el of await this.findAll(css)) {
          if (!predicate || (await predicate(el))) return el;
        }
      } catch (e) {
        lastError = String(e);
      }
      if (Date.now() > deadline) {
        await this.screenshot(`FAILED-${what.replace(/[^a-z0-9]+/gi, "-")}`).catch(() => {});
        throw new Error(`timed out after ${timeout} ms waiting for ${what} (${css}) ${lastError}`);
      }
      await sleep(150);
    }
  }

  /** Waits until `fn()` returns a truthy value, which it returns. */
  async until(fn, { timeout = 20_000, what = "a condition" } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const v = await fn().catch(() => undefined);
      if (v) return v;
      if (Date.now() > deadline) {
        await this.screenshot(`FAILED-${what.replace(/[^a-z0-9]+/gi, "-")}`).catch(() => {});
        throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
      }
      await sleep(100);
    }
  }

  /** Saves a PNG of the window to the artifacts folder. */
  async screenshot(name) {
    const png = await this.cmd("GET", "/screenshot");
    mkdirSync(this.artifacts, { recursive: true });
    const file = `${this.artifacts}/${this.prefix ? `${this.prefix}-` : ""}${name}.png`;
    writeFileSync(file, Buffer.from(png, "base64"));
    return file;
  }
}

export class Element {
  constructor(session, id) {
    this.s = session;
    this.id = id;
  }
  click() {
    return this.s.cmd("POST", `/element/${this.id}/click`, {});
  }
  type(text) {
    return this.s.cmd("POST", `/element/${this.id}/value`, { text });
  }
  clear() {
    return this.s.cmd("POST", `/element/${this.id}/clear`, {});
  }
  text() {
    return this.s.cmd("GET", `/element/${this.id}/text`);
  }
  attr(name) {
    return this.s.cmd("GET", `/element/${this.id}/attribute/${name}`);
  }
  /** textContent, through script: all the text, also where CSS clips it (WebDriver's text is
   * only what is rendered, e.g. a title cut by `text-overflow: ellipsis`). */
  textContent() {
    return this.s.exec("return arguments[0].textContent", { [ELEMENT]: this.id });
  }
  /** innerHTML, through script. */
  html() {
    return this.s.exec("return arguments[0].innerHTML", { [ELEMENT]: this.id });
  }
}
