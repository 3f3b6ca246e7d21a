import { describe, it, expect } from "vitest";
import { applyChatPayload, newStream } from "./stream";
import type { ChatPayload, Message } from "./types";

const q: Message = { id: "m1", role: "user", content: "What is asthma?", createdAt: 1 };

describe("stream assembly", () => {
  it("assembles tokens in order and ends with the saved answer", () => {
    const events: ChatPayload[] = [
      { jobId: "j", event: { type: "started", conversationId: "c1", question: q } },
      { jobId: "j", event: { type: "sources", sources: { keywords: ["asthma"], diseases: [{ name: "Asthma", score: 2 }], sections: [] } } },
      { jobId: "j", event: { type: "token", text: "Asth" } },
      { jobId: "other", event: { type: "token", text: "XXX" } },
      { jobId: "j", event: { type: "token", text: "ma is" } },
    ];
    let s = events.reduce(applyChatPayload, newStream("j"));
    expect(s.text).toBe("Asthma is");
    expect(s.conversationId).toBe("c1");
    expect(s.sources?.diseases[0].name).toBe("Asthma");
    expect(s.done).toBe(false);
    const answer: Message = { id: "m2", role: "assistant", content: "Asthma is a disease.", createdAt: 2 };
    s = applyChatPayload(s, { jobId: "j", event: { type: "done", answer } });
    expect(s.done).toBe(true);
    expect(s.text).toBe("Asthma is a disease.");
    // Nothing changes after the end.
    expect(applyChatPayload(s, { jobId: "j", event: { type: "token", text: "!" } })).toBe(s);
  });

  it("shows the model load until the first token, and ignores unknown events", () => {
    let s = applyChatPayload(newStream("j"), { jobId: "j", event: { type: "loading", fraction: 0.5, message: "quantizing m to q4_0 (3/6)" } });
    expect(s.loading).toBe("quantizing m to q4_0 (3/6)");
    s = applyChatPayload(s, { jobId: "j", event: { type: "token", text: "Hi" } });
    expect(s.loading).toBeNull();
    expect(s.text).toBe("Hi");
    const unknown = { jobId: "j", event: { type: "from-a-newer-app" } } as unknown as ChatPayload;
    expect(applyChatPayload(s, unknown)).toBe(s);
  });

  it("an error ends the stream and keeps what arrived", () => {
    let s = applyChatPayload(newStream("j"), { jobId: "j", event: { type: "token", text: "partial" } });
    s = applyChatPayload(s, { jobId: "j", error: "the engine failed" });
    expect(s).toMatchObject({ done: true, error: "the engine failed", text: "partial" });
  });
});
