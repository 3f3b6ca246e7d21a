// Number formatting for the Models tab, and the Settings tab's key-storage line.
import type { Key } from "./i18n";
import type { KeyStorage } from "./types";

/** Bytes as KiB/MiB/GiB with one decimal. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** A parameter count as 6.2B, 130.5M, 12.3K. */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

/** The i18n key and parameters that say where the database key is kept. */
export function keyStorageText(key: KeyStorage): { key: Key; params: Record<string, string> } {
  switch (key.kind) {
    case "keyring":
      return { key: "settings.key.keyring", params: {} };
    case "keyring_unavailable":
      return { key: "settings.key.file", params: { reason: key.reason, file: key.key_file } };
    case "passphrase":
      return { key: "settings.key.passphrase", params: {} };
    default:
      return { key: "settings.key.provided", params: {} };
  }
}
