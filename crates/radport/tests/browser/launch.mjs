// One Chromium launch for the browser test (e2e.mjs) and the gallery benchmark
// (bench/gallery.mjs): Debian's Chromium, headless, in a fresh profile, with the flags a machine
// without outside network needs (no background networking, updates or sync).
import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A persistent context in a new profile directory under the temp dir (`prefix`XXXXXX). */
export async function launchChromium(prefix) {
  const profile = mkdtempSync(join(tmpdir(), prefix));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return { context, profile };
}
