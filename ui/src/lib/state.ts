// App-wide stores: imported models, preferences, presets. Loaded once at start and refreshed
// after imports; each tab reads them.
import { writable, get } from "svelte/store";
import { api } from "./api";
import { language } from "./i18n";
import type { GenerationSettings, PresetName, Registry, Settings } from "./types";

export const registry = writable<Registry>({ models: [], adapters: [] });
export const settings = writable<Settings>({ language: "zh", device: "cpu", weights: "q4_0", preset: "balanced" });
export const presets = writable<Record<PresetName, GenerationSettings> | null>(null);
/** A model and adapter the Chat tab selects when it opens next (the fine-tuning wizard's "Use it in chat"). */
export const pendingChat = writable<{ modelId: string; adapterId: string | null } | null>(null);

/** Loads the registry again (after an import or removal). */
export async function refreshRegistry(): Promise<void> {
  registry.set(await api.listModels());
}

/** Loads everything at start. */
export async function loadAll(): Promise<void> {
  const [s, p] = await Promise.all([api.getSettings(), api.presets()]);
  settings.set(s);
  language.set(s.language);
  presets.set(p);
  await refreshRegistry();
}

/** Changes preferences and saves them. */
export async function updateSettings(change: Partial<Settings>): Promise<void> {
  const next = { ...get(settings), ...change };
  settings.set(next);
  language.set(next.language);
  await api.saveSettings(next);
}

/** The adapters of one model. */
export function adaptersOf(reg: Registry, modelId: string | null | undefined) {
  return reg.adapters.filter((a) => a.baseId === modelId);
}
