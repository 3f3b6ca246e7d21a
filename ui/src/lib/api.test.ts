import { describe, expect, it } from "vitest";
import { newJobId } from "./api";

describe("newJobId", () => {
  it("gives distinct ids the app accepts (1-100 of letters, digits, - and _)", () => {
    const ids = Array.from({ length: 1000 }, () => newJobId());
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{1,100}$/);
  });
});
