import { describe, it, expect } from "vitest";
import { get } from "svelte/store";
import { dictionaries, language, t, translate, type Key } from "./i18n";

describe("i18n", () => {
  it("has every key in both languages, none empty", () => {
    const en = Object.keys(dictionaries.en).sort();
    const zh = Object.keys(dictionaries.zh).sort();
    expect(zh).toEqual(en);
    for (const lang of ["en", "zh"] as const) {
      for (const k of en) expect(dictionaries[lang][k as Key].trim()).not.toBe("");
    }
  });

  it("fills placeholders and leaves unknown ones", () => {
    expect(translate("en", "models.imported", { name: "chatglm3-tiny" })).toBe("Imported chatglm3-tiny.");
    expect(translate("zh", "models.imported", { name: "x" })).toBe("已导入 x。");
    expect(translate("en", "chat.timings", { first: 5 })).toContain("{tokens}");
  });

  it("follows the language store", () => {
    language.set("en");
    expect(get(t)("tab.chat")).toBe("Chat");
    language.set("zh");
    expect(get(t)("tab.chat")).toBe("问诊");
  });

  it("the clinician reminder exists in both languages", () => {
    expect(translate("en", "reminder")).toMatch(/clinician/);
    expect(translate("zh", "reminder")).toMatch(/临床医生/);
  });
});
