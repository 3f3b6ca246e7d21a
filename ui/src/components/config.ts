// One answering configuration (model, adapter, preset and settings), as the Chat tab and the
// side-by-side comparison use it.
import type { GenerationSettings, PresetName } from "../lib/types";

export interface AnswerConfig {
  modelId: string | null;
  adapterId: string | null;
  preset: PresetName | "custom";
  settings: GenerationSettings;
}

export const fallbackSettings: GenerationSettings = {
  temperature: 0.7, topP: 0.8, topK: 0, repetitionPenalty: 1.1, noRepeatNgram: 0, maxNewTokens: 512, seed: 42, useDesigner: true,
};
