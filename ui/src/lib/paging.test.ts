import { describe, expect, it } from "vitest";
import { appendPage, nearEnd, refreshLimit } from "./paging";
import type { ConversationSummary } from "./types";

const c = (id: string): ConversationSummary => ({ id, title: id, updatedAt: 0, messageCount: 0, snippet: null });

describe("conversation list paging", () => {
  it("appends a page without repeating conversations", () => {
    const list = appendPage([c("1"), c("2")], { items: [c("2"), c("3")], nextOffset: 4 });
    expect(list.map((x) => x.id)).toEqual(["1", "2", "3"]);
    expect(appendPage([], { items: [], nextOffset: null })).toEqual([]);
  });

  it("refreshes as many as are shown, within one page and 200", () => {
    expect(refreshLimit(0, 50)).toBe(50);
    expect(refreshLimit(120, 50)).toBe(120);
    expect(refreshLimit(900, 50)).toBe(200);
  });

  it("loads more near the end of the scrolled list", () => {
    expect(nearEnd({ scrollTop: 900, clientHeight: 100, scrollHeight: 1000 })).toBe(true);
    expect(nearEnd({ scrollTop: 0, clientHeight: 100, scrollHeight: 1000 })).toBe(false);
  });
});
