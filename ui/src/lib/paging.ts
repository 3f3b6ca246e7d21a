// Paging of the conversation list: pages are appended as the list scrolls or "More" is
// pressed; a refresh reloads as many as are shown.
import type { ConversationPage, ConversationSummary } from "./types";

/** The list with `page` appended; a conversation already listed is not repeated (the list
 * may have changed between pages). */
export function appendPage(list: ConversationSummary[], page: ConversationPage): ConversationSummary[] {
  const seen = new Set(list.map((c) => c.id));
  return [...list, ...page.items.filter((c) => !seen.has(c.id))];
}

/** How many conversations a refresh asks for: those shown (at least one page, at most 200). */
export function refreshLimit(shown: number, page: number): number {
  return Math.min(200, Math.max(page, shown));
}

/** Whether a scrolled element is near enough its end to load the next page. */
export function nearEnd(el: { scrollTop: number; clientHeight: number; scrollHeight: number }, margin = 80): boolean {
  return el.scrollTop + el.clientHeight >= el.scrollHeight - margin;
}
