// Shared set-up for end-to-end test files: where things are, a fresh data folder, and starting
// and stopping the real app window through tauri-driver. A test file does:
//
//   import { paths, AppUnderTest } from "./harness.mjs";
//   const app = new AppUnderTest({ env: { DOCTORGLM_TEST_ANSWER: "..." } });
//   before(() => app.launch());   after(() => app.dispose());
//   test("...", async () => { const s = app.session; await s.waitFor(...); await s.screenshot("x"); });
//
// Each AppUnderTest has its own data folder (removed by dispose()); `restart()` quits the app and
// starts it again on the same folder. Screenshots go to tests/artifacts/<prefix>-<name>.png.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
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

  /** Closes the app and the driver (the data folder stays). */
  async quit() {
    await this.session?.end();
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
