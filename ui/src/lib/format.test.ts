import { describe, it, expect } from "vitest";
import { formatBytes, formatCount } from "./format";

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
});
