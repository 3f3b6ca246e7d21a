// Model output is untrusted: it is rendered as Markdown, then sanitized. No script, no event
// handler, no image, no form, no frame, no style survives; links are made inert (the app never
// navigates away or opens a browser), their target shown as a tooltip.
import { marked } from "marked";
import DOMPurify from "dompurify";

const ALLOWED_TAGS = [
  "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote",
  "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
  "table", "thead", "tbody", "tr", "th", "td", "a", "span",
];
const ALLOWED_ATTR = ["title", "align", "start"];

let hooked = false;
function installHooks(): void {
  if (hooked) return;
  hooked = true;
  DOMPurify.addHook("uponSanitizeElement", (node, data) => {
    // Keep the text of a link but never a navigable href.
    if (data.tagName === "a" && node instanceof Element) {
      const href = node.getAttribute("href");
      if (href && /^(https?:|mailto:)/i.test(href)) node.setAttribute("title", href);
      node.removeAttribute("href");
    }
  });
}

/** Renders untrusted Markdown (with any embedded HTML) to safe HTML. */
export function renderMarkdown(text: string): string {
  installHooks();
  const html = marked.parse(text, { async: false, gfm: true, breaks: true }) as string;
  return DOMPurify.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    KEEP_CONTENT: true,
  });
}
