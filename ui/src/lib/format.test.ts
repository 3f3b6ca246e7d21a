import { describe, it, expect } from "vitest";
import { formatBytes, formatCount, keyStorageText } from "./format";
import { translate } from "./i18n";

describe("format", () => {
  it("bytes", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(4 * 1024 ** 3)).toBe("4.0 GiB");
  });
  it("counts", () => {
    expect(formatCount(6_200_000_000)).toBe("6.2B");
    expect(formatCount(8_650_000)).toBe("8.7M");
    expect(formatCount(999)).toBe("999");
  });
  it("key storage says where the key is, with the reason when there is no keyring", () => {
    const file = keyStorageText({ kind: "keyring_unavailable", reason: "no D-Bus session", key_file: "config/doctorglm/store.key" });
    expect(file.key).toBe("settings.key.file");
    expect(translate("en", file.key, file.params)).toContain("no D-Bus session");
    expect(translate("zh", file.key, file.params)).toContain("config/doctorglm/store.key");
    expect(keyStorageText({ kind: "keyring" }).key).toBe("settings.key.keyring");
    expect(keyStorageText({ kind: "passphrase" }).key).toBe("settings.key.passphrase");
  });
});
