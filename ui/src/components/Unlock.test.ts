import { afterEach, describe, expect, it, vi } from "vitest";
import { flushSync, mount, tick, unmount } from "svelte";
import Unlock from "./Unlock.svelte";

let component: Record<string, unknown> | null = null;
afterEach(() => {
  if (component) unmount(component);
  component = null;
  document.body.innerHTML = "";
});

function render(props: { reason?: string | null; unlock: (p: string) => Promise<void>; onUnlocked: () => void }) {
  const target = document.createElement("div");
  document.body.appendChild(target);
  component = mount(Unlock, { target, props });
  flushSync();
  return target;
}

function type(target: HTMLElement, value: string) {
  const input = target.querySelector<HTMLInputElement>('[data-testid="unlock-passphrase"]')!;
  input.value = value;
  input.dispatchEvent(new Event("input", { bubbles: true }));
  flushSync();
  return input;
}

async function submit(target: HTMLElement) {
  target.querySelector<HTMLFormElement>('[data-testid="unlock"]')!.dispatchEvent(new Event("submit", { cancelable: true }));
  for (let i = 0; i < 5; i++) await tick();
  flushSync();
}

describe("Unlock", () => {
  it("sends the typed passphrase and reports success", async () => {
    const unlock = vi.fn(async () => {});
    const onUnlocked = vi.fn();
    const target = render({ reason: "the key was not found", unlock, onUnlocked });
    expect(target.querySelector('[data-testid="unlock-reason"]')?.textContent).toContain("the key was not found");
    const input = type(target, "correct horse 电池");
    expect(input.type).toBe("password");
    await submit(target);
    expect(unlock).toHaveBeenCalledWith("correct horse 电池");
    expect(onUnlocked).toHaveBeenCalledOnce();
    expect(input.value).toBe("");
  });

  it("shows why a wrong passphrase failed, clears it and stays locked", async () => {
    const unlock = vi.fn(async () => {
      throw "the key or passphrase is wrong. Nothing was changed.";
    });
    const onUnlocked = vi.fn();
    const target = render({ unlock, onUnlocked });
    const input = type(target, "wrong");
    await submit(target);
    expect(unlock).toHaveBeenCalledOnce();
    expect(onUnlocked).not.toHaveBeenCalled();
    expect(target.querySelector('[role="alert"]')?.textContent).toContain("passphrase is wrong");
    expect(input.value).toBe("");
    expect(input.disabled).toBe(false);
  });

  it("does nothing with an empty passphrase", async () => {
    const unlock = vi.fn(async () => {});
    const target = render({ unlock, onUnlocked: () => {} });
    expect(target.querySelector<HTMLButtonElement>('[data-testid="unlock-submit"]')!.disabled).toBe(true);
    await submit(target);
    expect(unlock).not.toHaveBeenCalled();
  });
});
