import { describe, it, expect } from "vitest";
import { renderMarkdown } from "./markdown";

function mount(html: string): HTMLElement {
  const div = document.createElement("div");
  div.innerHTML = html;
  return div;
}

describe("renderMarkdown", () => {
  it("renders Markdown structure", () => {
    const el = mount(renderMarkdown("# 高血压\n\n- **rest**\n- `salt`\n\n| a | b |\n|---|---|\n| 1 | 2 |"));
    expect(el.querySelector("h1")?.textContent).toBe("高血压");
    expect(el.querySelectorAll("li")).toHaveLength(2);
    expect(el.querySelector("strong")?.textContent).toBe("rest");
    expect(el.querySelector("td")?.textContent).toBe("1");
  });

  it("keeps an <img onerror> inert", () => {
    const html = renderMarkdown('Answer <img src=x onerror="window.__pwned=1"> end');
    expect(html).not.toContain("onerror");
    expect(html).not.toContain("<img");
    const el = mount(html);
    expect(el.querySelector("img")).toBeNull();
    expect(el.textContent).toContain("Answer");
  });

  it("drops <script> and its code", () => {
    const html = renderMarkdown("before<script>window.__pwned=2</script>after");
    expect(html).not.toMatch(/<script/i);
    expect(mount(html).querySelector("script")).toBeNull();
  });

  it("removes event handlers, javascript: links, iframes, styles and forms", () => {
    const html = renderMarkdown(
      '<a href="javascript:alert(1)" onclick="x()">link</a> [md](http://example.com) ' +
        '<iframe src="http://e"></iframe><style>body{}</style><form><input></form><svg onload="x()"></svg>' +
        '<p style="color:red" data-x="1">styled</p>',
    );
    const el = mount(html);
    expect(el.querySelectorAll("[onclick],[onload],[style],[data-x]")).toHaveLength(0);
    expect(el.querySelectorAll("iframe,style,form,input,svg")).toHaveLength(0);
    expect(html).not.toContain("javascript:");
    const links = el.querySelectorAll("a");
    expect(links).toHaveLength(2);
    links.forEach((a) => expect(a.hasAttribute("href")).toBe(false));
    expect(links[1].getAttribute("title")).toBe("http://example.com");
  });
});
