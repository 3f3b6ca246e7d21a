// Typed calls to the fine-tuning commands (src-tauri/src/commands.rs, "Fine-tuning") and the
// `finetune` event of training jobs. Preparing a dataset reports through `progress`/`job-done`.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type { FileInspection, FinetunePayload, FinetuneSettings, PrepareRequest, TrainRequest, UnfinishedRun } from "./finetune-types";

export const finetuneApi = {
  inspect: (path: string) => invoke<FileInspection>("finetune_inspect", { path }),
  prepare: (request: PrepareRequest) => invoke<string>("finetune_prepare", { request }),
  defaults: () => invoke<FinetuneSettings>("finetune_defaults"),
  start: (request: TrainRequest) => invoke<string>("finetune_start", { request }),
  resumeJob: (output: string) => invoke<string>("finetune_resume_job", { output, overrides: null }),
  unfinished: () => invoke<UnfinishedRun[]>("finetune_unfinished"),
  pause: (jobId: string) => invoke<boolean>("finetune_pause", { jobId }),
  resume: (jobId: string) => invoke<boolean>("finetune_continue", { jobId }),
  cancel: (jobId: string) => invoke<boolean>("finetune_cancel", { jobId }),
};

/** Listens to training jobs' updates. */
export function onFinetune(cb: (p: FinetunePayload) => void): Promise<UnlistenFn> {
  return listen<FinetunePayload>("finetune", (e) => cb(e.payload));
}
