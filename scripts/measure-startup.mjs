// Measures the desktop app's start-up and idle memory (a measurement, not a test).
//
//   xvfb-run -a node scripts/measure-startup.mjs [--app PATH] [--runs 10] [--idle 3] [--cold]
//   (scripts/measure-startup.sh builds the release app and runs this under Xvfb)
//
// Each run starts the app with no arguments (the window) on one data folder and times, from
// spawning the process, until the interface reports ready: the UI calls the `ui_ready` command
// after its first render with data (settings, presets, models), and the app logs
// `interface ready elapsed_ms=…` (time since `main`). After `--idle` seconds it reads the memory
// of the app and its WebKit processes (RSS, and PSS which counts shared pages once), then ends
// them. Prints each run, then median and p95.
//
// `--cold` drops the app's files from the page cache before each run (the executable, the
// shared libraries it and WebKit's helper processes load, and those helpers; GNU dd's
// `iflag=nocache count=0`), as after a reboot. Pages other running programs have mapped stay.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const root = path.resolve(import.meta.dirname, "..");
const args = process.argv.slice(2);
function opt(name, fallback) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const app = path.resolve(
  opt("app", path.join(process.env.CARGO_TARGET_DIR ?? path.join(root, "target"), "release/doctorglm")),
);
const runs = Number(opt("runs", "10"));
const idleSeconds = Number(opt("idle", "3"));
const timeoutMs = 60_000;
const cold = args.includes("--cold");

if (!process.env.DISPLAY && !process.env.WAYLAND_DISPLAY) {
  console.error("no display: run under xvfb-run (scripts/measure-startup.sh does)");
  process.exit(2);
}

/** Children of every process, from /proc. */
function childrenMap() {
  const map = new Map();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (!map.has(ppid)) map.set(ppid, []);
      map.get(ppid).push(Number(entry));
    } catch {
      // the process ended meanwhile
    }
  }
  return map;
}

/** `pid` and all its descendants. */
function tree(pid) {
  const map = childrenMap();
  const out = [];
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop();
    out.push(p);
    stack.push(...(map.get(p) ?? []));
  }
  return out;
}

function kib(file, field) {
  const m = readFileSync(file, "utf8").match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  return m ? Number(m[1]) : 0;
}

/** Memory of a process tree: [{pid, name, rssKiB, pssKiB}]. */
function memory(pid) {
  const rows = [];
  for (const p of tree(pid)) {
    try {
      const name = readFileSync(`/proc/${p}/comm`, "utf8").trim();
      rows.push({ pid: p, name, rssKiB: kib(`/proc/${p}/status`, "VmRSS"), pssKiB: kib(`/proc/${p}/smaps_rollup`, "Pss") });
    } catch {
      // ended meanwhile
    }
  }
  return rows;
}

/** Shared libraries `exe` loads (from ldd). */
function libraries(exe) {
  const out = spawnSync("ldd", [exe], { encoding: "utf8" }).stdout ?? "";
  return [...out.matchAll(/=>\s+(\/\S+)/g)].map((m) => m[1]);
}

/** The files a cold start reads: the app, WebKit's helper executables, and their libraries. */
function startFiles() {
  const files = new Set([app]);
  const appLibs = libraries(app);
  const webkit = appLibs.find((l) => /libwebkit2gtk-4\.1\.so/.test(l));
  const helpers = [];
  if (webkit) {
    const dir = path.join(path.dirname(webkit), "webkit2gtk-4.1");
    try {
      for (const f of readdirSync(dir)) helpers.push(path.join(dir, f));
    } catch {
      // no helper folder here
    }
  }
  for (const exe of [app, ...helpers]) {
    files.add(exe);
    for (const lib of exe === app ? appLibs : libraries(exe)) files.add(lib);
  }
  return [...files];
}

/** Asks the kernel to drop these files' pages from the page cache. */
function evict(files) {
  for (const f of files) spawnSync("dd", [`if=${f}`, "iflag=nocache", "count=0", "status=none"]);
}

const ansi = /\x1b\[[0-9;]*m/g;

async function once(dataDir) {
  const started = performance.now();
  const child = spawn(app, [], {
    env: {
      ...process.env,
      DOCTORGLM_DATA_DIR: dataDir,
      RUST_LOG: "doctorglm::startup=info",
      NO_COLOR: "1",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "interface ready" within ${timeoutMs} ms:\n${log}`)), timeoutMs);
    child.stderr.on("data", (d) => {
      log += d;
      const m = log.replace(ansi, "").match(/interface ready.*elapsed_ms=(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ wallMs: performance.now() - started, appMs: Number(m[1]) });
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the app exited with ${code} before it was ready:\n${log}`));
    });
  });
  child.removeAllListeners("exit");
  await sleep(idleSeconds * 1000);
  const mem = memory(child.pid);
  const exited = new Promise((resolve) => child.on("exit", resolve));
  // End the processes this script started: the app, then any WebKit helper still running.
  for (const { pid } of mem) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
  await Promise.race([exited, sleep(5000)]);
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  return { ...ready, mem };
}

function quantile(values, q) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
}
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const dataDir = mkdtempSync(path.join(tmpdir(), "doctorglm-startup-"));
const results = [];
try {
  const coldFiles = cold ? startFiles() : [];
  console.log(`app: ${app}\nruns: ${runs}, idle ${idleSeconds} s before reading memory`);
  console.log(cold ? `cold: ${coldFiles.length} files dropped from the page cache before each run\n` : "");
  console.log("run  spawn→ready ms  main→ready ms  RSS MiB (all)  PSS MiB (all)  processes");
  for (let i = 1; i <= runs; i++) {
    if (cold) evict(coldFiles);
    const r = await once(dataDir);
    const rss = r.mem.reduce((a, m) => a + m.rssKiB, 0) / 1024;
    const pss = r.mem.reduce((a, m) => a + m.pssKiB, 0) / 1024;
    results.push({ ...r, rss, pss });
    const names = r.mem.map((m) => `${m.name} ${(m.pssKiB / 1024).toFixed(0)}`).join(", ");
    console.log(
      `${String(i).padStart(3)}  ${r.wallMs.toFixed(0).padStart(13)}  ${String(r.appMs).padStart(12)}  ${rss.toFixed(0).padStart(13)}  ${pss.toFixed(0).padStart(13)}  ${names}`,
    );
    await sleep(300);
  }
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
const wall = results.map((r) => r.wallMs);
const inApp = results.map((r) => r.appMs);
console.log(
  `\nstart to interactive window (spawn→ready): median ${median(wall).toFixed(0)} ms, p95 ${quantile(wall, 0.95).toFixed(0)} ms, first run ${wall[0].toFixed(0)} ms` +
    `\n  of which main→ready (inside the app): median ${median(inApp).toFixed(0)} ms` +
    `\nidle memory, app + WebKit processes: RSS median ${median(results.map((r) => r.rss)).toFixed(0)} MiB, PSS median ${median(results.map((r) => r.pss)).toFixed(0)} MiB`,
);
