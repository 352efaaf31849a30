// Debian's chromium, headless and offline, driven by playwright-core: every browser test's
// script imports `launch` from here. Chromium's background networking is off because this
// machine's network is closed (its lookups would fail, many at a time).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "kassa-browser-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

// Fail the script (exit 1) with a message the pytest side shows.
export function check(condition, message) {
  if (!condition) {
    throw new Error(`check failed: ${message}`);
  }
}
