// Shared set-up for end-to-end test files: where things are, a fresh data folder, and starting
// and stopping the real app window through tauri-driver. A test file does:
//
//   import { paths, AppUnderTest } from "./harness.mjs";
//   const app = new AppUnderTest({ env: { DOCTORGLM_TEST_ANSWER: "..." } });
//   before(() => app.launch());   after(() => app.dispose());
//   test("...", async () => { const s = app.session; await s.waitFor(...); await s.screenshot("x"); });
//
// Each AppUnderTest has its own data folder (removed by dispose()); `restart()` quits the app and
// starts it again on the same folder; `cli([...])` runs a `doctorglm` subcommand on that folder
// (e.g. to import a model before launching). Screenshots go to tests/artifacts/<prefix>-<name>.png.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { startDriver, Session } from "./webdriver.mjs";

const root = path.resolve(import.meta.dirname, "../..");

/** Paths the tests use; run.sh sets the environment variables. */
export const paths = {
  root,
  app: process.env.DOCTORGLM_APP ?? path.join(process.env.CARGO_TARGET_DIR ?? path.join(root, "target"), "debug/doctorglm"),
  fixtures: process.env.DOCTORGLM_FIXTURES ?? path.resolve(root, "../shared/fixtures"),
  artifacts: process.env.DOCTORGLM_ARTIFACTS ?? path.join(root, "tests/artifacts"),
  driver: process.env.TAURI_DRIVER ?? "tauri-driver",
};

/** Ids of the app's processes running on `dataDir` (Linux /proc; none elsewhere). */
function appProcesses(dataDir) {
  let app;
  try {
    app = realpathSync(paths.app);
  } catch {
    return [];
  }
  const found = [];
  let entries = [];
  try {
    entries = readdirSync("/proc");
  } catch {
    return found;
  }
  for (const pid of entries.filter((e) => /^\d+$/.test(e))) {
    try {
      if (!readlinkSync(`/proc/${pid}/exe`).startsWith(app)) continue;
      if (readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").includes(`DOCTORGLM_DATA_DIR=${dataDir}`)) found.push(Number(pid));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

/** The app under test: one data folder, started and restarted through tauri-driver. */
export class AppUnderTest {
  /**
   * @param {{ env?: Record<string, string>, prefix?: string }} options — extra environment for
   *   the app; `prefix` is put before screenshot names (default: none).
   */
  constructor({ env = {}, prefix = "" } = {}) {
    this.dataDir = mkdtempSync(path.join(tmpdir(), "doctorglm-e2e-"));
    this.env = { DOCTORGLM_DATA_DIR: this.dataDir, ...env };
    this.prefix = prefix;
    this.driver = undefined;
    /** @type {Session | undefined} */
    this.session = undefined;
  }

  /** Runs `doctorglm <args>` (the CLI of the binary under test) on this data folder; returns stdout. */
  cli(args) {
    const env = { ...process.env, ...this.env };
    delete env.DOCTORGLM_TEST_ANSWER;
    return execFileSync(paths.app, args, { env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  }

  /** Starts the driver and the app, and waits until the interface has loaded. */
  async launch({ timeout = 90_000 } = {}) {
    this.driver = await startDriver({ driverPath: paths.driver, env: this.env });
    try {
      this.session = await Session.start(this.driver.base, paths.app, paths.artifacts, this.prefix);
    } catch (e) {
      const log = this.driver.log();
      await this.driver.stop();
      this.driver = undefined;
      throw new Error(`${e}\n--- tauri-driver log ---\n${log}`);
    }
    await this.session.waitFor('[data-testid="app"][data-ready="true"]', { what: "the app to load", timeout });
    return this.session;
  }

  /** Closes the app and the driver (the data folder stays). An app still running 15 s after
   * its session ended is killed (it would hold the driver's output pipes and keep the test
   * process alive); a line on the test output says so. */
  async quit() {
    await this.session?.end();
    const deadline = Date.now() + 15_000;
    while (appProcesses(this.dataDir).length && Date.now() < deadline) await sleep(100);
    const left = appProcesses(this.dataDir);
    if (left.length) {
      console.log(`# the app (pid ${left.join(", ")}) did not exit within 15 s after its WebDriver session ended: killed`);
      for (const pid of left) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // exited meanwhile
        }
      }
    }
    await this.driver?.stop();
    this.session = undefined;
    this.driver = undefined;
  }

  /** Quits and launches again on the same data folder. */
  async restart() {
    await this.quit();
    return this.launch();
  }

  /** Quits and removes the data folder. */
  async dispose() {
    await this.quit();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
