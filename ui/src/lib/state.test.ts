import { describe, it, expect, vi, beforeEach } from "vitest";
import { get } from "svelte/store";

const calls: { cmd: string; args?: unknown }[] = [];
vi.mock("@tauri-apps/api/core", () => ({
  invoke: vi.fn(async (cmd: string, args?: unknown) => {
    calls.push({ cmd, args });
    switch (cmd) {
      case "get_settings": return { language: "en", device: "cpu", weights: "q4_0", preset: "diverse" };
      case "presets": return { balanced: { temperature: 0.7 } };
      case "list_models":
        return {
          models: [{ id: "m1", info: { name: "tiny" }, importedAt: 1 }],
          adapters: [{ id: "a1", baseId: "m1" }, { id: "a2", baseId: "m2" }],
        };
      default: return null;
    }
  }),
}));
vi.mock("@tauri-apps/api/event", () => ({ listen: vi.fn() }));

import { adaptersOf, loadAll, registry, settings, updateSettings } from "./state";
import { language } from "./i18n";

describe("state stores", () => {
  beforeEach(() => { calls.length = 0; });

  it("loadAll fills settings, language, registry", async () => {
    await loadAll();
    expect(get(settings).preset).toBe("diverse");
    expect(get(language)).toBe("en");
    expect(get(registry).models[0].id).toBe("m1");
    expect(adaptersOf(get(registry), "m1").map((a) => a.id)).toEqual(["a1"]);
  });

  it("updateSettings saves and switches the language", async () => {
    await updateSettings({ language: "zh" });
    expect(get(language)).toBe("zh");
    const save = calls.find((c) => c.cmd === "save_settings");
    expect(save?.args).toEqual({ value: { language: "zh", device: "cpu", weights: "q4_0", preset: "diverse" } });
  });
});
